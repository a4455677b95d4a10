//! Shared test harness: a receiver on 127.0.0.1:0 in front of a consumer that records batches
//! (or refuses them), and builders for audit events as kube-apiserver writes them.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use kausal_core::activity::{Activity, ActivityDetail, AuditActivity};
use kausal_core::component::{Component, ComponentId, CreateContext, Host};
use kausal_core::config::ComponentConfig;
use kausal_core::telemetry::Telemetry;
use kausal_core::{Batch, ConsumeError, Consumer};
use kausal_receiver_kubeaudit::AuditReceiver;
use serde_json::{Value, json};
use tokio::sync::Notify;

/// What the test consumer does with the next batches.
#[derive(Clone, Debug)]
pub enum Mode {
    Accept,
    Full { retry_after: Option<Duration> },
    Reject,
}

/// Records accepted batches; refuses according to `mode`; optionally holds each call until
/// `release` is notified.
pub struct Collector {
    pub batches: Mutex<Vec<Vec<Activity>>>,
    pub mode: Mutex<Mode>,
    pub calls: Mutex<usize>,
    pub gate: Mutex<Option<Arc<Notify>>>,
    pub entered: Notify,
}

impl Collector {
    pub fn new() -> Arc<Collector> {
        Arc::new(Collector {
            batches: Mutex::new(Vec::new()),
            mode: Mutex::new(Mode::Accept),
            calls: Mutex::new(0),
            gate: Mutex::new(None),
            entered: Notify::new(),
        })
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    pub fn activities(&self) -> Vec<Activity> {
        self.batches.lock().unwrap().iter().flatten().cloned().collect()
    }

    pub fn take(&self) -> Vec<Activity> {
        std::mem::take(&mut *self.batches.lock().unwrap()).into_iter().flatten().collect()
    }
}

#[async_trait]
impl Consumer for Collector {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        *self.calls.lock().unwrap() += 1;
        self.entered.notify_one();
        let gate = self.gate.lock().unwrap().clone();
        if let Some(gate) = gate {
            gate.notified().await;
        }
        let mode = self.mode.lock().unwrap().clone();
        match mode {
            Mode::Accept => {
                let Batch::Activities(a) = batch else {
                    return Err(ConsumeError::permanent("expected activities"));
                };
                self.batches.lock().unwrap().push(a);
                Ok(())
            }
            Mode::Full { retry_after } => Err(ConsumeError::Retryable { message: "queue full".into(), retry_after }),
            Mode::Reject => Err(ConsumeError::permanent("not for this pipeline")),
        }
    }
}

pub struct Running {
    pub receiver: Arc<AuditReceiver>,
    pub collector: Arc<Collector>,
    pub telemetry: Telemetry,
    pub addr: SocketAddr,
}

impl Running {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `kausal_component_items_total` of this receiver for `outcome`.
    pub fn count(&self, outcome: &str) -> u64 {
        let needle = format!(r#"kausal_component_items_total{{kind="receiver",component="kubeaudit",outcome="{outcome}"}} "#);
        let text = self.telemetry.encode();
        text.lines()
            .find_map(|l| l.strip_prefix(&needle))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {outcome} count in:\n{text}"))
    }
}

pub fn receiver(yaml: &str, collector: Arc<Collector>) -> (AuditReceiver, Telemetry) {
    let telemetry = Telemetry::default();
    let ctx = CreateContext {
        id: ComponentId::parse("kubeaudit").unwrap(),
        metrics: telemetry.component("receiver", "kubeaudit"),
        telemetry: telemetry.clone(),
    };
    let section = ComponentConfig::from_yaml("kubeaudit", yaml).unwrap();
    let r = AuditReceiver::new(ctx, &section, collector).unwrap_or_else(|e| panic!("{e}"));
    (r, telemetry)
}

/// Starts a receiver on 127.0.0.1:0 with `extra` config lines.
pub async fn start(extra: &str) -> Running {
    let collector = Collector::new();
    let (receiver, telemetry) = receiver(&format!("endpoint: 127.0.0.1:0\n{extra}"), collector.clone());
    let receiver = Arc::new(receiver);
    receiver.start(&Host::default()).await.unwrap();
    let addr = receiver.local_addr().expect("bound address after start");
    Running { receiver, collector, telemetry, addr }
}

pub fn audit(a: &Activity) -> &AuditActivity {
    match &a.detail {
        ActivityDetail::Audit(x) => x,
        other => panic!("not an audit activity: {other:?}"),
    }
}

/// A ResponseComplete Metadata-level event about `resource` (`group/resource` or `resource`).
pub fn event(id: &str, verb: &str, resource: &str, namespace: &str, name: &str) -> Value {
    let (group, resource) = resource.split_once('/').unwrap_or(("", resource));
    let base = if group.is_empty() { "/api/v1".to_string() } else { format!("/apis/{group}/v1") };
    let ns = if namespace.is_empty() { String::new() } else { format!("/namespaces/{namespace}") };
    let uri = if name.is_empty() { format!("{base}{ns}/{resource}") } else { format!("{base}{ns}/{resource}/{name}") };
    let mut object_ref = json!({"resource": resource, "apiVersion": "v1"});
    if !group.is_empty() {
        object_ref["apiGroup"] = group.into();
    }
    if !namespace.is_empty() {
        object_ref["namespace"] = namespace.into();
    }
    if !name.is_empty() {
        object_ref["name"] = name.into();
    }
    json!({
        "level": "Metadata", "auditID": id, "stage": "ResponseComplete", "requestURI": uri, "verb": verb,
        "user": {"username": "system:serviceaccount:kube-system:deployment-controller", "groups": ["system:serviceaccounts"]},
        "sourceIPs": ["10.0.0.5"], "userAgent": "kube-controller-manager/v1.31.0 (linux/amd64) kubernetes/abc/system:serviceaccount:kube-system:deployment-controller",
        "objectRef": object_ref,
        "responseStatus": {"metadata": {}, "code": 200},
        "requestReceivedTimestamp": "2024-05-01T10:00:00.100000Z",
        "stageTimestamp": "2024-05-01T10:00:00.250000Z",
        "annotations": {"authorization.k8s.io/decision": "allow"}
    })
}

pub fn event_list(items: Vec<Value>) -> Value {
    json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {}, "items": items})
}

pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub fn client() -> reqwest::Client {
    install_crypto();
    reqwest::Client::builder().build().unwrap()
}

pub async fn post(url: &str, body: impl Into<reqwest::Body>) -> (u16, reqwest::header::HeaderMap, String) {
    let r = client()
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.text().await.unwrap())
}
