//! Audit records of the simulated API server as a webhook receiver and a log reader see them:
//! stages, levels, objects, the EventList wire format, retries and blocking modes, and the
//! same field set as real kube-apiserver recordings (../shared/fixtures/real, khi and falco).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use kausal_sim::apiserver::{ApiServer, ApiServerConfig, RunningApiServer};
use kausal_sim::audit::{
    AuditConfig, LogConfig, Policy, WebhookConfig, WebhookMode, WebhookTarget,
};
use serde_json::{Value, json};

/// A webhook receiver that answers 503 to the first `fail_first` batches.
#[derive(Clone, Default)]
struct Receiver {
    bodies: Arc<Mutex<Vec<Value>>>,
    posts: Arc<AtomicUsize>,
    fail_first: usize,
}

async fn receive(State(r): State<Receiver>, body: Bytes) -> impl IntoResponse {
    let n = r.posts.fetch_add(1, Ordering::SeqCst);
    if n < r.fail_first {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [("Retry-After", "0")],
            "busy",
        )
            .into_response();
    }
    if let Ok(v) = serde_json::from_slice::<Value>(&body) {
        r.bodies.lock().unwrap_or_else(|p| p.into_inner()).push(v);
    }
    (StatusCode::OK, "{}").into_response()
}

impl Receiver {
    async fn start(fail_first: usize) -> Result<(Receiver, SocketAddr)> {
        let r = Receiver {
            fail_first,
            ..Default::default()
        };
        let app = Router::new()
            .route("/audit", post(receive))
            .with_state(r.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok((r, addr))
    }

    fn events(&self) -> Vec<Value> {
        self.bodies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .flat_map(|b| b["items"].as_array().cloned().unwrap_or_default())
            .collect()
    }
}

fn webhook(addr: SocketAddr) -> WebhookConfig {
    let mut w = WebhookConfig::new(WebhookTarget {
        url: format!("http://{addr}/audit"),
        ..Default::default()
    });
    w.batch.max_batch_wait = Duration::from_millis(20);
    w.initial_backoff = Duration::from_millis(10);
    w
}

struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    fn new(server: &RunningApiServer) -> Result<Api> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let ca = reqwest::Certificate::from_pem(server.ca_pem().as_bytes())?;
        let http = reqwest::Client::builder()
            .tls_certs_only(vec![ca])
            .user_agent("kubectl/v1.32.4 (linux/amd64) kubernetes/59526cd")
            .build()?;
        Ok(Api {
            http,
            base: server.https_url(),
            token: server.admin_token().to_string(),
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value)> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header("X-Forwarded-For", "10.1.2.3");
        if let Some(b) = body {
            req = req
                .header("Content-Type", "application/json")
                .body(b.to_string());
        }
        let resp = req.send().await?;
        let code = resp.status().as_u16();
        Ok((code, resp.json().await?))
    }
}

fn deployment() -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "demo", "namespace": "default"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "demo"}},
            "template": {"metadata": {"labels": {"app": "demo"}}, "spec": {"containers": [{"name": "alpine", "image": "alpine:3.16"}]}}}})
}

const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/default/deployments";

fn find<'a>(events: &'a [Value], verb: &str, resource: &str, stage: &str) -> Option<&'a Value> {
    events.iter().find(|e| {
        e["verb"] == verb && e["objectRef"]["resource"] == resource && e["stage"] == stage
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_records_carry_request_and_response_with_the_new_resource_version() -> Result<()> {
    let (receiver, addr) = Receiver::start(0).await?;
    let dir = tempfile::tempdir()?;
    let log_path = dir.path().join("audit.log");
    let audit = AuditConfig {
        policy: None,
        log: Some(LogConfig::new(&log_path)),
        webhook: Some(webhook(addr)),
    };
    let server = ApiServer::start(ApiServerConfig {
        audit,
        ..Default::default()
    })
    .await?;
    let api = Api::new(&server)?;
    let (_, created) = api
        .call(reqwest::Method::POST, DEPLOYMENTS, Some(deployment()))
        .await?;
    let old_rv = created["metadata"]["resourceVersion"]
        .as_str()
        .context("rv")?
        .to_string();
    let mut changed = created.clone();
    changed["spec"]["replicas"] = json!(4);
    let (code, updated) = api
        .call(
            reqwest::Method::PUT,
            &format!("{DEPLOYMENTS}/demo"),
            Some(changed),
        )
        .await?;
    assert_eq!(code, 200);
    let new_rv = updated["metadata"]["resourceVersion"]
        .as_str()
        .context("rv")?
        .to_string();
    api.call(reqwest::Method::GET, &format!("{DEPLOYMENTS}/demo"), None)
        .await?;
    api.call(
        reqwest::Method::POST,
        "/api/v1/namespaces/default/secrets",
        Some(json!({"metadata": {"name": "creds"}, "stringData": {"password": "hunter2-very-secret"}, "data": {"token": "c2VjcmV0LXRva2VuLXZhbHVl"}})),
    )
    .await?;
    server.auditor().flush().await;

    let events = receiver.events();
    let update = find(&events, "update", "deployments", "ResponseComplete")
        .context("update ResponseComplete")?;
    assert_eq!(update["level"], "RequestResponse");
    assert_eq!(
        update["requestObject"]["metadata"]["resourceVersion"],
        old_rv.as_str()
    );
    assert_eq!(
        update["responseObject"]["metadata"]["resourceVersion"],
        new_rv.as_str()
    );
    assert_eq!(update["responseObject"]["spec"]["replicas"], 4);
    assert_eq!(update["objectRef"]["resourceVersion"], old_rv.as_str());
    assert_eq!(update["objectRef"]["uid"], created["metadata"]["uid"]);
    assert_eq!(
        update["responseStatus"],
        json!({"metadata": {}, "code": 200})
    );
    assert_eq!(update["user"]["username"], "kubernetes-admin");
    assert_eq!(update["sourceIPs"], json!(["10.1.2.3", "127.0.0.1"]));
    assert_eq!(
        update["annotations"]["authorization.k8s.io/decision"],
        "allow"
    );
    let received = find(&events, "update", "deployments", "RequestReceived")
        .context("update RequestReceived")?;
    assert_eq!(received["auditID"], update["auditID"]);
    assert!(received.get("requestObject").is_none() && received.get("responseStatus").is_none());
    for ts in [
        &update["requestReceivedTimestamp"],
        &update["stageTimestamp"],
    ] {
        let s = ts.as_str().context("timestamp")?;
        let fraction = s
            .split('.')
            .nth(1)
            .context("fraction")?
            .trim_end_matches('Z');
        assert!(fraction.len() <= 6, "microsecond precision: {s}");
    }
    let get = find(&events, "get", "deployments", "ResponseComplete").context("get")?;
    assert_eq!(get["level"], "Metadata");
    assert!(get.get("responseObject").is_none());
    let secret = find(&events, "create", "secrets", "ResponseComplete").context("secret create")?;
    assert_eq!(secret["level"], "Metadata");
    assert_eq!(secret["objectRef"]["name"], "creds");

    let log = std::fs::read_to_string(&log_path)?;
    for (i, line) in log.lines().enumerate() {
        let e = kausal_core::audit::decode_event(line.as_bytes())
            .with_context(|| format!("log line {}", i + 1))?;
        assert_eq!(e.kind.as_deref(), Some("Event"));
    }
    let webhook_text: String = receiver
        .bodies
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(Value::to_string)
        .collect();
    for text in [&log, &webhook_text] {
        assert!(
            !text.contains("hunter2") && !text.contains("c2VjcmV0LXRva2VuLXZhbHVl"),
            "secret data reached an audit record"
        );
    }
    assert_eq!(
        log.lines().count(),
        events.len(),
        "log and webhook saw the same events"
    );
    server.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_batches_are_event_lists_and_retry_on_503() -> Result<()> {
    let (receiver, addr) = Receiver::start(2).await?;
    let audit = AuditConfig {
        webhook: Some(webhook(addr)),
        ..Default::default()
    };
    let server = ApiServer::start(ApiServerConfig {
        audit,
        ..Default::default()
    })
    .await?;
    let api = Api::new(&server)?;
    api.call(reqwest::Method::POST, DEPLOYMENTS, Some(deployment()))
        .await?;
    server.auditor().flush().await;
    let bodies = receiver
        .bodies
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    assert!(!bodies.is_empty(), "batch delivered after retries");
    for b in &bodies {
        let list = kausal_core::audit::decode_event_list(b.to_string().as_bytes())?;
        assert_eq!(list.kind.as_deref(), Some("EventList"));
        assert_eq!(list.api_version.as_deref(), Some("audit.k8s.io/v1"));
    }
    assert!(receiver.posts.load(Ordering::SeqCst) >= 3);
    let stats = server
        .auditor()
        .webhook_stats()
        .context("webhook stats")?
        .retries
        .load(Ordering::Relaxed);
    assert!(stats >= 2, "retries counted: {stats}");
    assert!(
        find(
            &receiver.events(),
            "create",
            "deployments",
            "ResponseComplete"
        )
        .is_some()
    );
    server.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_strict_fails_requests_when_the_webhook_is_down() -> Result<()> {
    let unused = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let mut w = webhook(unused);
    w.max_attempts = 1;
    w.mode = WebhookMode::BlockingStrict;
    let server = ApiServer::start(ApiServerConfig {
        audit: AuditConfig {
            webhook: Some(w.clone()),
            ..Default::default()
        },
        ..Default::default()
    })
    .await?;
    let api = Api::new(&server)?;
    let (code, status) = api
        .call(reqwest::Method::POST, DEPLOYMENTS, Some(deployment()))
        .await?;
    assert_eq!(
        (code, status["reason"].as_str()),
        (500, Some("InternalError"))
    );
    server.shutdown().await;

    w.mode = WebhookMode::Blocking;
    let server = ApiServer::start(ApiServerConfig {
        audit: AuditConfig {
            webhook: Some(w),
            ..Default::default()
        },
        ..Default::default()
    })
    .await?;
    let api = Api::new(&server)?;
    let (code, _) = api
        .call(reqwest::Method::POST, DEPLOYMENTS, Some(deployment()))
        .await?;
    assert_eq!(code, 201, "plain blocking mode only logs the failure");
    server.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_record_response_started_and_impersonation_is_recorded() -> Result<()> {
    let (receiver, addr) = Receiver::start(0).await?;
    let server = ApiServer::start(ApiServerConfig {
        audit: AuditConfig {
            webhook: Some(webhook(addr)),
            ..Default::default()
        },
        ..Default::default()
    })
    .await?;
    let api = Api::new(&server)?;
    let resp = api
        .http
        .get(format!(
            "{}{DEPLOYMENTS}?watch=1&timeoutSeconds=1",
            api.base
        ))
        .bearer_auth(&api.token)
        .send()
        .await?;
    assert_eq!(resp.status(), 200);
    let _ = resp.bytes().await?;
    let impersonated = api
        .http
        .get(format!("{}{DEPLOYMENTS}", api.base))
        .bearer_auth(&api.token)
        .header(
            "Impersonate-User",
            "system:serviceaccount:kube-system:deployment-controller",
        )
        .header("Impersonate-Group", "system:serviceaccounts")
        .send()
        .await?;
    assert_eq!(impersonated.status(), 200);
    tokio::time::sleep(Duration::from_millis(50)).await;
    server.auditor().flush().await;
    let events = receiver.events();
    let stages: Vec<&str> = events
        .iter()
        .filter(|e| e["verb"] == "watch")
        .filter_map(|e| e["stage"].as_str())
        .collect();
    assert_eq!(
        stages,
        vec!["RequestReceived", "ResponseStarted", "ResponseComplete"]
    );
    let list = find(&events, "list", "deployments", "ResponseComplete").context("list")?;
    assert_eq!(list["user"]["username"], "kubernetes-admin");
    assert_eq!(
        list["impersonatedUser"]["username"],
        "system:serviceaccount:kube-system:deployment-controller"
    );
    assert!(
        list["annotations"]["authorization.k8s.io/reason"]
            .as_str()
            .is_some_and(|r| r.contains("deployment-controller"))
    );
    server.shutdown().await;
    Ok(())
}

/// Key paths of an audit event: top level, and one level into the structured fields; the
/// contents of request/response objects and annotations are payload, not schema.
fn key_paths(event: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let Some(top) = event.as_object() else {
        return out;
    };
    for (k, v) in top {
        out.insert(k.clone());
        if matches!(
            k.as_str(),
            "user" | "objectRef" | "responseStatus" | "impersonatedUser"
        ) && let Some(inner) = v.as_object()
        {
            for ik in inner.keys() {
                out.insert(format!("{k}.{ik}"));
            }
        }
    }
    out
}

fn fixtures() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/real")
}

/// Keys of the recordings that no simulated record can have: v1beta1's own fields, the
/// X.509 credential id kube adds to certificate users, and the log shipper's label.
const NOT_COMPARABLE: &[&str] = &["metadata", "timestamp", "user.extra", "user.uid", "job"];

fn comparable(keys: BTreeSet<String>) -> BTreeSet<String> {
    keys.into_iter()
        .filter(|k| !NOT_COMPARABLE.contains(&k.as_str()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_have_the_field_set_of_real_recordings() -> Result<()> {
    let dir = fixtures();
    assert!(dir.exists(), "real fixtures missing at {}", dir.display());
    let khi_text = std::fs::read_to_string(dir.join("khi/oss__test-log.yaml"))?;
    let khi: Value = serde_saphyr::from_str(&khi_text)?;
    let falco_create: Value =
        serde_json::from_slice(&std::fs::read(dir.join("falco/create_deployment.json"))?)?;
    let falco_delete: Value =
        serde_json::from_slice(&std::fs::read(dir.join("falco/delete_deployment.json"))?)?;

    let dir = tempfile::tempdir()?;
    let log_path = dir.path().join("audit.log");
    let policy = Policy::parse(
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: RequestResponse\n  resources: [{group: coordination.k8s.io, resources: [leases]}]\n- level: Request\n  resources: [{group: apps, resources: [deployments]}]\n",
    )?;
    let audit = AuditConfig {
        policy: Some(policy),
        log: Some(LogConfig::new(&log_path)),
        webhook: None,
    };
    let server = ApiServer::start(ApiServerConfig {
        audit,
        ..Default::default()
    })
    .await?;
    let api = Api::new(&server)?;
    let leases = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases";
    let (_, lease) = api
        .call(reqwest::Method::POST, leases, Some(json!({"metadata": {"name": "kube-scheduler"}, "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}})))
        .await?;
    let mut renewed = lease.clone();
    renewed["spec"]["renewTime"] = json!("2025-04-01T13:33:59.445411Z");
    api.call(
        reqwest::Method::PUT,
        &format!("{leases}/kube-scheduler?timeout=5s"),
        Some(renewed),
    )
    .await?;
    api.call(reqwest::Method::POST, DEPLOYMENTS, Some(deployment()))
        .await?;
    api.call(
        reqwest::Method::DELETE,
        &format!("{DEPLOYMENTS}/demo"),
        Some(
            json!({"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}),
        ),
    )
    .await?;
    server.shutdown().await;

    let ours: Vec<Value> = std::fs::read_to_string(&log_path)?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let lease_update =
        find(&ours, "update", "leases", "ResponseComplete").context("lease update")?;
    let create =
        find(&ours, "create", "deployments", "ResponseComplete").context("deployment create")?;
    let delete =
        find(&ours, "delete", "deployments", "ResponseComplete").context("deployment delete")?;
    // Records of 2018 (falco) predate userAgent in audit events; the rest must match exactly.
    let without_user_agent = |mut keys: BTreeSet<String>| {
        keys.remove("userAgent");
        keys.remove("apiVersion");
        keys
    };
    assert_eq!(
        comparable(key_paths(lease_update)),
        comparable(key_paths(&khi)),
        "lease update vs khi"
    );
    assert_eq!(
        without_user_agent(comparable(key_paths(create))),
        without_user_agent(comparable(key_paths(&falco_create))),
        "create vs falco"
    );
    assert_eq!(
        without_user_agent(comparable(key_paths(delete))),
        without_user_agent(comparable(key_paths(&falco_delete))),
        "delete vs falco"
    );
    assert_eq!(delete["requestObject"]["kind"], "DeleteOptions");
    assert_eq!(delete["responseStatus"]["status"], "Success");
    Ok(())
}
