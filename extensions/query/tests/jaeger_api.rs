//! The query API as a user meets it: spans for a Deployment rollout are written to a store,
//! the router is served on a real socket, and Jaeger API requests go over HTTP.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use kausal_core::Nanos;
use kausal_extension_query::{router, QueryOptions};
use kausal_store::{Store, StoreOptions};
use serde_json::Value;

#[path = "support/rollout.rs"]
mod rollout;
use rollout::{rollout, MINUTE, SECOND};

fn now() -> Nanos {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as Nanos
}

struct Server {
    base: String,
    client: reqwest::Client,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

async fn serve(store: Arc<Store>) -> Server {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let app = router(store, QueryOptions::default());
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    Server { base, client: reqwest::Client::new(), stop, task }
}

impl Server {
    async fn get(&self, path_and_query: &str) -> (u16, Value) {
        let response = self.client.get(format!("{}{path_and_query}", self.base)).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    async fn shutdown(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap();
    }
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn spans_by_operation(trace: &Value) -> HashMap<String, &Value> {
    trace["spans"].as_array().unwrap().iter().map(|s| (s["operationName"].as_str().unwrap().to_string(), s)).collect()
}

fn parent_of(span: &Value) -> Option<&str> {
    span["references"].as_array().unwrap().first().map(|r| {
        assert_eq!(r["refType"], "CHILD_OF");
        r["spanID"].as_str().unwrap()
    })
}

fn log_events(span: &Value) -> Vec<String> {
    span["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let fields = l["fields"].as_array().unwrap();
            fields.iter().find(|f| f["key"] == "event").unwrap()["value"].as_str().unwrap().to_string()
        })
        .collect()
}

#[tokio::test]
async fn deployment_rollout_reads_as_one_trace() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = now() - 40 * MINUTE;
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let stats = store.write(&rollout(t0)).unwrap();
    assert_eq!(stats.rejected, 0);
    let server = serve(store.clone()).await;

    let (status, services) = server.get("/api/services").await;
    assert_eq!(status, 200);
    let names: Vec<&str> = services["data"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    assert_eq!(names.len(), 20, "5 views x 4 scopes: {names:?}");
    for name in ["tracing", "tracing [children]", "grouped [ancestors]", "tree [object]", "timeline", "causal [object]"] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }
    assert_eq!(services["total"], 20);
    let (_, ops) = server.get("/api/services/tracing/operations").await;
    assert_eq!(ops["data"], serde_json::json!(["prod"]));
    let (_, ops) = server.get("/api/operations?service=tracing").await;
    assert_eq!(ops["data"][0]["name"], "prod");

    let tags = encode(r#"{"resource":"deployments","name":"demo"}"#);
    let (status, found) = server.get(&format!("/api/traces?service=tracing&tags={tags}")).await;
    assert_eq!(status, 200, "{found}");
    let traces = found["data"].as_array().unwrap();
    assert_eq!(traces.len(), 1, "one object, one trace");
    let trace = &traces[0];
    let trace_id = trace["traceID"].as_str().unwrap().to_string();
    assert_eq!(trace_id.len(), 32);
    assert!(trace_id.starts_with("ff") && &trace_id[10..16] == "e1e3e7", "{trace_id}");

    let spans = spans_by_operation(trace);
    assert_eq!(spans.len(), 7, "deployment, 2 replicasets, 4 pods, each once: {:?}", spans.keys());
    let root = spans["default/demo"];
    assert_eq!(parent_of(root), None);
    let root_id = root["spanID"].as_str().unwrap();
    let process = &trace["processes"][root["processID"].as_str().unwrap()];
    assert_eq!(process["serviceName"], "deployments.apps");
    let sets: Vec<&str> = spans
        .iter()
        .filter(|(_, s)| parent_of(s) == Some(root_id))
        .map(|(op, _)| op.as_str())
        .collect();
    assert_eq!(sets.len(), 2, "exactly two ReplicaSets under the Deployment: {sets:?}");
    for set in ["demo-a", "demo-b"] {
        let set_span = spans[&format!("default/{set}")];
        assert_eq!(parent_of(set_span), Some(root_id));
        assert_eq!(trace["processes"][set_span["processID"].as_str().unwrap()]["serviceName"], "replicasets.apps");
        for i in 1..=2 {
            let pod = spans[&format!("default/{set}-{i}")];
            assert_eq!(parent_of(pod), set_span["spanID"].as_str(), "pod {set}-{i} under {set}");
            assert_eq!(trace["processes"][pod["processID"].as_str().unwrap()]["serviceName"], "pods");
            let events = log_events(pod);
            assert!(events.contains(&"system:kube-scheduler create binding".to_string()), "{events:?}");
        }
    }

    // The Deployment's audit activities are logs on its span, the conflict included, in time
    // order, across both windows: one span from the first to the last activity.
    let events = log_events(root);
    assert_eq!(events.len(), 4, "{events:?}");
    assert_eq!(events[0], "alice create");
    assert_eq!(events[2], "system:serviceaccount:kube-system:deployment-controller update status (Conflict)");
    assert_eq!(events[3], "alice update");
    let conflict = &root["logs"][2]["fields"];
    assert!(conflict.as_array().unwrap().iter().any(|f| f["key"] == "http.response.status_code" && f["value"] == 409));
    let diff = &root["logs"][3]["fields"];
    assert!(diff.as_array().unwrap().iter().any(|f| f["key"] == "kausal.diff.lines"
        && f["value"].as_str().unwrap().contains("nginx:1.26")));
    assert_eq!(root["startTime"], t0 / 1_000);
    assert_eq!(root["duration"], (20 * MINUTE + 5_000_000) / 1_000);
    assert!(root["tags"].as_array().unwrap().iter().any(|t| t["key"] == "k8s.deployment.name" && t["value"] == "demo"));

    // The trace id is a deep link.
    let (status, by_id) = server.get(&format!("/api/traces/{trace_id}")).await;
    assert_eq!(status, 200, "{by_id}");
    assert_eq!(by_id["data"][0]["spans"].as_array().unwrap().len(), 7);

    // Searching by a semantic-convention attribute and by cluster finds the same object.
    let tags = encode(r#"{"k8s.deployment.name":"demo"}"#);
    let (_, found) = server.get(&format!("/api/traces?service=tracing&operation=prod&tags={tags}")).await;
    assert_eq!(found["data"].as_array().unwrap().len(), 1);
    let (_, found) = server.get(&format!("/api/traces?service=tracing&operation=staging&tags={tags}")).await;
    assert_eq!(found["data"].as_array().unwrap().len(), 0);
    // Outside the time range there is nothing.
    let old_end = (t0 - 120 * MINUTE) / 1_000;
    let (_, found) = server.get(&format!("/api/traces?service=tracing&tags={tags}&start={}&end={old_end}", old_end - 1_000_000)).await;
    assert_eq!(found["data"].as_array().unwrap().len(), 0);

    // Data and trace ids survive a restart.
    server.shutdown().await;
    drop(store);
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let server = serve(store).await;
    let (status, by_id) = server.get(&format!("/api/traces/{trace_id}")).await;
    assert_eq!(status, 200, "{by_id}");
    assert_eq!(by_id["data"][0]["spans"].as_array().unwrap().len(), 7);
    server.shutdown().await;
}

#[tokio::test]
async fn bad_queries_get_400_and_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    store.write(&rollout(now() - 40 * MINUTE)).unwrap();
    let server = serve(store).await;
    let cases = [
        ("/api/traces?service=nope", "unknown service"),
        ("/api/traces?tags=%7B%7D", "`service` is required"),
        ("/api/traces?service=tracing&tags=%7Bnot-json", "JSON object"),
        ("/api/traces?service=tracing&start=2000&end=1000", "inverted"),
        ("/api/traces/xyz", "32 hex digits"),
        ("/api/traces/ff00090002e1e3e70123456789abcdef", "unknown display mode"),
        ("/api/services/nope/operations", "unknown service"),
        ("/api/operations", "`service` is required"),
    ];
    for (path, expected) in cases {
        let (status, body) = server.get(path).await;
        assert_eq!(status, 400, "{path}: {body}");
        let msg = body["errors"][0]["msg"].as_str().unwrap_or_default();
        assert!(msg.contains(expected), "{path}: {msg}");
    }
    let (status, body) = server.get("/api/traces/ff20000003e1e3e70123456789abcdef").await;
    assert_eq!(status, 404, "{body}");
    server.shutdown().await;
}

#[tokio::test]
async fn redirect_object_trace_durations_and_ui() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = now() - 40 * MINUTE;
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    store.write(&rollout(t0)).unwrap();
    let server = serve(store).await;
    let ts = t0 / SECOND + 60;
    let no_follow = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();

    // /redirect: 302 to the trace in the default mode, which then loads.
    let url = format!("{}/redirect?cluster=prod&group=apps&resource=deployments&namespace=default&name=demo&ts={ts}", server.base);
    let r = no_follow.get(&url).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 302);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    assert!(location.starts_with("/trace/ff20000003e1e3e7"), "{location}");
    let (status, by_id) = server.get(&format!("/api/traces/{}", &location[7..])).await;
    assert_eq!(status, 200, "{by_id}");
    assert_eq!(by_id["data"][0]["spans"].as_array().unwrap().len(), 7);
    // The same in RFC 3339.
    let rfc = chrono::DateTime::from_timestamp(ts, 0).unwrap().to_rfc3339();
    let r = no_follow.get(format!("{}/redirect?resource=deployments&name=demo&ts={}", server.base, encode(&rfc))).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 302);
    for (query, status, message) in [
        (format!("resource=deployments&name=nope&ts={ts}"), 404, "no object matching"),
        (format!("resource=deployments&name=demo&ts={}", ts - 86_400), 404, "no object matching"),
        ("resource=deployments&name=demo".to_string(), 400, "`ts` is required"),
        ("resource=deployments&name=demo&ts=yesterday".to_string(), 400, "RFC 3339"),
        (format!("name=demo&ts={ts}"), 400, "`resource` is required"),
    ] {
        let r = no_follow.get(format!("{}/redirect?{query}", server.base)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{query}");
        let body: Value = r.json().await.unwrap();
        assert!(body["errors"][0]["msg"].as_str().unwrap().contains(message), "{query}: {body}");
    }

    // /api/v1/trace: one trace, any display mode.
    let (status, trace) = server
        .get(&format!("/api/v1/trace?resource=replicasets&name=demo-b&ts={}&displayMode={}", ts + 20 * 60, encode("tree [ancestors]")))
        .await;
    assert_eq!(status, 200, "{trace}");
    let ops: Vec<&str> = trace["spans"].as_array().unwrap().iter().map(|s| s["operationName"].as_str().unwrap()).collect();
    assert_eq!(ops[0], "default/demo", "the owner is the root: {ops:?}");
    assert!(ops.contains(&"default/demo-b") && !ops.contains(&"default/demo-a"), "{ops:?}");
    assert!(ops.contains(&"alice update"), "tree mode: activities are spans: {ops:?}");
    assert!(trace["traceID"].as_str().unwrap().starts_with("ff00000001e1e3e7"), "{}", trace["traceID"]);
    let (status, body) = server.get(&format!("/api/v1/trace?resource=replicasets&name=demo-b&ts={ts}&displayMode=sideways")).await;
    assert_eq!(status, 400);
    assert!(body["errors"][0]["msg"].as_str().unwrap().contains("unknown service"), "{body}");

    // Durations: from the image update to the first binding of a Pod below the Deployment.
    let from = encode("resource=deployments,verb=update,diff=nginx:1.26");
    let to = encode("resource=pods,subresource=binding");
    let (status, d) = server.get(&format!("/api/v1/durations?from={from}&to={to}&lookback=2h")).await;
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["count"], 1, "{d}");
    assert_eq!(d["p50_ms"], 3200.0, "demo-b-1 is bound 3.2 s after the update: {d}");
    assert_eq!(d["pairs"][0]["to_object"], "prod/pods/default/demo-b-1");
    for (query, message) in [
        (format!("to={to}"), "`from`"),
        (format!("from=colour%3Dred&to={to}"), "unknown field `colour`"),
        (format!("from={from}&to={to}&start=2000&end=1000"), "inverted"),
    ] {
        let (status, body) = server.get(&format!("/api/v1/durations?{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body["errors"][0]["msg"].as_str().unwrap().contains(message), "{query}: {body}");
    }

    // The UI is served from the binary at /, /search and /trace/{id}.
    for path in ["/", "/search?name=demo", &location] {
        let r = server.client.get(format!("{}{path}", server.base)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
        assert!(r.text().await.unwrap().contains("/ui/app.js"), "{path}");
    }
    let js = server.client.get(format!("{}/ui/app.js", server.base)).send().await.unwrap();
    assert_eq!(js.headers()["content-type"], "text/javascript; charset=utf-8");
    server.shutdown().await;
}
