//! The simulated API server seen by a plain HTTPS client: status codes and reasons of bad
//! requests, optimistic concurrency, watch semantics (history replay, bookmarks, 410 after
//! compaction), selectors and pagination, subresources and CRDs.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use kausal_sim::apiserver::{ApiServer, ApiServerConfig, RunningApiServer};
use serde_json::{Value, json};

struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    fn new(server: &RunningApiServer) -> Result<Client> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let ca = reqwest::Certificate::from_pem(server.ca_pem().as_bytes())?;
        let http = reqwest::Client::builder()
            .tls_certs_only(vec![ca])
            .user_agent("apiserver-http-test/v0.1")
            .build()?;
        Ok(Client {
            http,
            base: server.https_url(),
            token: server.admin_token().to_string(),
        })
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        content_type: &str,
        body: Option<String>,
    ) -> Result<(u16, Value)> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.header("Content-Type", content_type).body(b);
        }
        let resp = req.send().await?;
        let code = resp.status().as_u16();
        let text = resp.text().await?;
        let value = serde_json::from_str(&text).with_context(|| format!("not JSON: {text}"))?;
        Ok((code, value))
    }

    async fn get(&self, path: &str) -> Result<(u16, Value)> {
        self.send(reqwest::Method::GET, path, "", None).await
    }

    async fn post(&self, path: &str, body: &Value) -> Result<(u16, Value)> {
        self.send(
            reqwest::Method::POST,
            path,
            "application/json",
            Some(body.to_string()),
        )
        .await
    }

    async fn put(&self, path: &str, body: &Value) -> Result<(u16, Value)> {
        self.send(
            reqwest::Method::PUT,
            path,
            "application/json",
            Some(body.to_string()),
        )
        .await
    }

    async fn patch(&self, path: &str, content_type: &str, body: &Value) -> Result<(u16, Value)> {
        self.send(
            reqwest::Method::PATCH,
            path,
            content_type,
            Some(body.to_string()),
        )
        .await
    }

    /// Opens a watch and returns a reader of its JSON lines.
    async fn watch(&self, path: &str) -> Result<WatchReader> {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await?;
        if resp.status() != 200 {
            bail!("watch answered {}", resp.status());
        }
        Ok(WatchReader {
            resp,
            buffer: Vec::new(),
        })
    }
}

struct WatchReader {
    resp: reqwest::Response,
    buffer: Vec<u8>,
}

impl WatchReader {
    /// The next event, or None when the stream ended.
    async fn next(&mut self) -> Result<Option<Value>> {
        loop {
            if let Some(i) = self.buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=i).collect();
                return Ok(Some(serde_json::from_slice(&line)?));
            }
            match tokio::time::timeout(Duration::from_secs(10), self.resp.chunk()).await?? {
                Some(chunk) => self.buffer.extend_from_slice(&chunk),
                None => return Ok(None),
            }
        }
    }
}

fn deployment(name: &str, replicas: i64) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "main", "image": "alpine:3.16"}]}}}})
}

async fn start(config: ApiServerConfig) -> Result<(RunningApiServer, Client)> {
    let server = ApiServer::start(config).await?;
    let client = Client::new(&server)?;
    Ok((server, client))
}

const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/default/deployments";

#[tokio::test]
async fn bad_requests_get_the_apiservers_codes_and_reasons() -> Result<()> {
    let (server, c) = start(ApiServerConfig::default()).await?;
    let (code, s) = c.get("/apis/apps/v1/namespaces/default/widgets").await?;
    assert_eq!(
        (code, s["reason"].as_str(), s["kind"].as_str()),
        (404, Some("NotFound"), Some("Status"))
    );
    let (code, s) = c.get(&format!("{DEPLOYMENTS}/missing")).await?;
    assert_eq!(
        (code, s["message"].as_str()),
        (404, Some("deployments.apps \"missing\" not found"))
    );
    let (code, s) = c
        .send(
            reqwest::Method::POST,
            DEPLOYMENTS,
            "application/json",
            Some("{not json".into()),
        )
        .await?;
    assert_eq!((code, s["reason"].as_str()), (400, Some("BadRequest")));
    assert!(
        s["message"]
            .as_str()
            .unwrap_or_default()
            .contains("json parse error"),
        "{s}"
    );
    let (code, _) = c.post(DEPLOYMENTS, &deployment("demo", 1)).await?;
    assert_eq!(code, 201);
    let (code, s) = c.post(DEPLOYMENTS, &deployment("demo", 1)).await?;
    assert_eq!((code, s["reason"].as_str()), (409, Some("AlreadyExists")));
    let mut bad = deployment("other", 1);
    bad["spec"]["selector"]["matchLabels"]["app"] = json!("nope");
    let (code, s) = c.post(DEPLOYMENTS, &bad).await?;
    assert_eq!((code, s["reason"].as_str()), (422, Some("Invalid")));
    assert_eq!(
        s["details"]["causes"][0]["field"],
        "spec.template.metadata.labels"
    );
    let (code, s) = c
        .post(&format!("{DEPLOYMENTS}/demo"), &deployment("demo", 1))
        .await?;
    assert_eq!(
        (code, s["reason"].as_str()),
        (405, Some("MethodNotAllowed"))
    );
    let (code, s) = c
        .patch(&format!("{DEPLOYMENTS}/demo"), "text/plain", &json!({}))
        .await?;
    assert_eq!(
        (code, s["reason"].as_str()),
        (415, Some("UnsupportedMediaType"))
    );
    let (code, s) = c.get("/api/v1/pods?fieldSelector=spec.bogus%3Dx").await?;
    assert_eq!(
        (code, s["message"].as_str()),
        (400, Some("field label not supported: spec.bogus"))
    );
    let anonymous = c
        .http
        .get(format!("{}{DEPLOYMENTS}", c.base))
        .send()
        .await?;
    assert_eq!(anonymous.status(), 401);
    server.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn stale_update_conflicts_with_the_exact_message() -> Result<()> {
    let (server, c) = start(ApiServerConfig::default()).await?;
    let (_, created) = c.post(DEPLOYMENTS, &deployment("demo", 2)).await?;
    let mut first = created.clone();
    first["spec"]["replicas"] = json!(3);
    let (code, updated) = c.put(&format!("{DEPLOYMENTS}/demo"), &first).await?;
    assert_eq!(code, 200);
    assert_ne!(
        updated["metadata"]["resourceVersion"],
        created["metadata"]["resourceVersion"]
    );
    assert_eq!(updated["metadata"]["generation"], 2);
    let mut stale = created.clone();
    stale["spec"]["replicas"] = json!(5);
    let (code, s) = c.put(&format!("{DEPLOYMENTS}/demo"), &stale).await?;
    assert_eq!(code, 409);
    assert_eq!(s["reason"], "Conflict");
    assert_eq!(
        s["message"],
        "Operation cannot be fulfilled on deployments.apps \"demo\": the object has been modified; please apply your changes to the latest version and try again"
    );
    assert_eq!(
        s["details"],
        json!({"name": "demo", "group": "apps", "kind": "deployments"})
    );
    server.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn watch_replays_sends_bookmarks_and_expires_after_compaction() -> Result<()> {
    let config = ApiServerConfig {
        bookmark_interval: Duration::from_millis(100),
        ..Default::default()
    };
    let (server, c) = start(config).await?;
    let (_, created) = c.post(DEPLOYMENTS, &deployment("demo", 1)).await?;
    let rv = created["metadata"]["resourceVersion"]
        .as_str()
        .context("rv")?
        .to_string();
    c.patch(
        &format!("{DEPLOYMENTS}/demo"),
        "application/merge-patch+json",
        &json!({"spec": {"replicas": 2}}),
    )
    .await?;

    let mut w = c
        .watch(&format!(
            "{DEPLOYMENTS}?watch=1&resourceVersion={rv}&allowWatchBookmarks=true"
        ))
        .await?;
    let e = w.next().await?.context("event")?;
    assert_eq!(e["type"], "MODIFIED");
    assert_eq!(e["object"]["spec"]["replicas"], 2);
    c.patch(
        &format!("{DEPLOYMENTS}/demo/scale"),
        "application/merge-patch+json",
        &json!({"spec": {"replicas": 5}}),
    )
    .await?;
    let mut saw_scale = false;
    let mut saw_bookmark = false;
    while !(saw_scale && saw_bookmark) {
        let e = w.next().await?.context("stream ended early")?;
        match e["type"].as_str() {
            Some("MODIFIED") => saw_scale = e["object"]["spec"]["replicas"] == 5,
            Some("BOOKMARK") => {
                assert_eq!(e["object"]["kind"], "Deployment");
                assert!(
                    e["object"]["metadata"]["resourceVersion"]
                        .as_str()
                        .is_some_and(|r| !r.is_empty())
                );
                saw_bookmark = true;
            }
            other => bail!("unexpected event {other:?}: {e}"),
        }
    }

    let mut current = c.watch(&format!("{DEPLOYMENTS}?watch=true")).await?;
    let e = current.next().await?.context("initial event")?;
    assert_eq!(
        e["type"], "ADDED",
        "a watch without resourceVersion starts with the current state"
    );

    server.force_compact();
    let mut expired = c
        .watch(&format!("{DEPLOYMENTS}?watch=1&resourceVersion={rv}"))
        .await?;
    let e = expired.next().await?.context("error event")?;
    assert_eq!(e["type"], "ERROR");
    assert_eq!(e["object"]["code"], 410);
    assert_eq!(e["object"]["reason"], "Expired");
    assert!(
        expired.next().await?.is_none(),
        "the stream ends after the error"
    );
    server.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn watch_times_out_and_selector_watchers_see_objects_leave() -> Result<()> {
    let (server, c) = start(ApiServerConfig::default()).await?;
    c.post(
        "/api/v1/namespaces/default/pods",
        &json!({"metadata": {"name": "p1"}, "spec": {"containers": [{"name": "c", "image": "i"}]}}),
    )
    .await?;
    let (_, list) = c.get("/api/v1/pods?fieldSelector=spec.nodeName%3D").await?;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1));
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .context("rv")?
        .to_string();
    let mut w = c.watch(&format!("/api/v1/pods?watch=1&fieldSelector=spec.nodeName%3D&resourceVersion={rv}&timeoutSeconds=2")).await?;
    let (code, _) = c.post("/api/v1/namespaces/default/pods/p1/binding", &json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p1"}, "target": {"kind": "Node", "name": "node-1"}})).await?;
    assert_eq!(code, 201);
    let e = w.next().await?.context("event")?;
    assert_eq!(
        e["type"], "DELETED",
        "a bound pod leaves the unscheduled-pods watch"
    );
    assert_eq!(e["object"]["spec"]["nodeName"], "node-1");
    let started = std::time::Instant::now();
    assert!(w.next().await?.is_none());
    assert!(started.elapsed() < Duration::from_secs(5));
    server.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn list_selectors_and_pagination() -> Result<()> {
    let (server, c) = start(ApiServerConfig::default()).await?;
    for (name, tier) in [("a", "web"), ("b", "db"), ("c", "web"), ("d", "cache")] {
        c.post(
            "/api/v1/namespaces/default/configmaps",
            &json!({"metadata": {"name": name, "labels": {"tier": tier}}}),
        )
        .await?;
    }
    let names = |v: &Value| -> Vec<String> {
        v["items"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|i| i["metadata"]["name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (_, web) = c
        .get("/api/v1/namespaces/default/configmaps?labelSelector=tier%20in%20(web,cache)")
        .await?;
    assert_eq!(names(&web), vec!["a", "c", "d"]);
    let (_, not_web) = c
        .get("/api/v1/configmaps?labelSelector=tier!%3Dweb,!missing")
        .await?;
    assert_eq!(names(&not_web), vec!["b", "d"]);
    let (_, by_name) = c
        .get("/api/v1/configmaps?fieldSelector=metadata.name%3Db")
        .await?;
    assert_eq!(names(&by_name), vec!["b"]);
    let (_, page) = c
        .get("/api/v1/namespaces/default/configmaps?limit=3")
        .await?;
    assert_eq!(names(&page), vec!["a", "b", "c"]);
    assert_eq!(page["metadata"]["remainingItemCount"], 1);
    let token = page["metadata"]["continue"].as_str().context("continue")?;
    let (_, rest) = c
        .get(&format!(
            "/api/v1/namespaces/default/configmaps?limit=3&continue={token}"
        ))
        .await?;
    assert_eq!(names(&rest), vec!["d"]);
    assert!(rest["metadata"].get("continue").is_none());
    server.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn patches_status_and_generation() -> Result<()> {
    let (server, c) = start(ApiServerConfig::default()).await?;
    c.post(DEPLOYMENTS, &deployment("demo", 1)).await?;
    let path = format!("{DEPLOYMENTS}/demo");
    let (code, d) = c
        .patch(&path, "application/strategic-merge-patch+json", &json!({"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "alpine:3.17"}]}}}}))
        .await?;
    assert_eq!(code, 200);
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "alpine:3.17"
    );
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["terminationMessagePath"],
        "/dev/termination-log"
    );
    assert_eq!(d["metadata"]["generation"], 2);
    let (_, d) = c
        .patch(
            &path,
            "application/json-patch+json",
            &json!([{"op": "replace", "path": "/spec/replicas", "value": 3}]),
        )
        .await?;
    assert_eq!(d["spec"]["replicas"], 3);
    let (code, s) = c
        .patch(
            &path,
            "application/json-patch+json",
            &json!([{"op": "remove", "path": "/spec/nothing"}]),
        )
        .await?;
    assert_eq!((code, s["reason"].as_str()), (400, Some("BadRequest")));
    let (_, d) = c
        .patch(
            &format!("{path}/status"),
            "application/merge-patch+json",
            &json!({"status": {"replicas": 3, "observedGeneration": 3}, "spec": {"replicas": 9}}),
        )
        .await?;
    assert_eq!(d["status"]["replicas"], 3);
    assert_eq!(d["spec"]["replicas"], 3, "status writes change only status");
    assert_eq!(d["metadata"]["generation"], 3);
    let status_entry = d["metadata"]["managedFields"]
        .as_array()
        .context("managedFields")?
        .iter()
        .find(|e| e["subresource"] == "status")
        .cloned()
        .context("status entry")?;
    assert_eq!(status_entry["manager"], "apiserver-http-test");
    let (_, d) = c
        .patch(
            &path,
            "application/merge-patch+json",
            &json!({"status": {"replicas": 100}}),
        )
        .await?;
    assert_eq!(
        d["status"]["replicas"], 3,
        "main-resource writes ignore status"
    );
    let (_, scale) = c.get(&format!("{path}/scale")).await?;
    assert_eq!(
        (scale["kind"].as_str(), scale["spec"]["replicas"].as_i64()),
        (Some("Scale"), Some(3))
    );
    server.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn crds_become_servable_and_discoverable() -> Result<()> {
    let (server, c) = start(ApiServerConfig {
        http_listen: Some("127.0.0.1:0".parse()?),
        ..Default::default()
    })
    .await?;
    let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced", "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wg"]},
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}});
    let (code, created) = c
        .post(
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            &crd,
        )
        .await?;
    assert_eq!(code, 201);
    assert_eq!(created["status"]["conditions"][1]["type"], "Established");
    let (_, groups) = c.get("/apis").await?;
    assert!(
        groups["groups"]
            .as_array()
            .context("groups")?
            .iter()
            .any(|g| g["name"] == "example.com")
    );
    let (_, resources) = c.get("/apis/example.com/v1").await?;
    assert_eq!(resources["resources"][0]["name"], "widgets");
    let (code, w) = c.post("/apis/example.com/v1/namespaces/default/widgets", &json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w1"}, "spec": {"size": 3}})).await?;
    assert_eq!(code, 201);
    assert_eq!(w["metadata"]["generation"], 1);
    let (_, list) = c.get("/apis/example.com/v1/widgets").await?;
    assert_eq!(list["kind"], "WidgetList");
    let plain = reqwest::Client::new();
    let url = format!(
        "{}/apis/example.com/v1/namespaces/default/widgets/w1",
        server.http_url().context("http listener")?
    );
    let over_http: Value = plain
        .get(url)
        .bearer_auth(server.admin_token())
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(over_http["spec"]["size"], 3);
    let (_, version) = c.get("/version").await?;
    assert_eq!(version["gitVersion"], "v1.31.0");
    server.shutdown().await;
    Ok(())
}
