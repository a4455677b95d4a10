//! Auditing as kube-apiserver does it: a policy decides each request's level and stages,
//! an `AuditRecord` accumulates what the request did (user, objectRef, request and response
//! objects per level, status, authorization annotations) and produces one `audit.k8s.io/v1`
//! `Event` per stage, and the `Auditor` hands those to the log and webhook backends.
//! Authorization itself is not simulated: every authenticated request is allowed, and the
//! annotations say which RBAC binding would have allowed it in a kubeadm cluster.

pub mod log;
pub mod policy;
pub mod webhook;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Timelike, Utc};
use kausal_core::audit::{Event, Level, ObjectReference, Stage, Status, UserInfo};
use serde_json::Value;

pub use self::log::{LogBackend, LogConfig};
pub use self::policy::{AuditDecision, Policy, PolicyError, RequestAttributes};
pub use self::webhook::{
    BatchConfig, WebhookBackend, WebhookConfig, WebhookMode, WebhookStats, WebhookTarget,
};

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit configuration: {0}")]
    Config(String),
    #[error("audit log: {0}")]
    Log(String),
    #[error("audit webhook: {0}")]
    Webhook(String),
    #[error(transparent)]
    Policy(#[from] PolicyError),
}

/// Which policy and backends an API server audits with. No backend: auditing is off.
#[derive(Clone, Debug, Default)]
pub struct AuditConfig {
    /// None uses `policy::DEFAULT_POLICY_YAML`.
    pub policy: Option<Policy>,
    pub log: Option<LogConfig>,
    pub webhook: Option<WebhookConfig>,
}

/// The running audit backends of one API server.
pub struct Auditor {
    policy: Policy,
    log: Option<LogBackend>,
    webhook: Option<WebhookBackend>,
    events_emitted: AtomicU64,
    events_failed: AtomicU64,
}

impl Auditor {
    /// Opens the log and starts the webhook (batch mode spawns a task: call inside a runtime).
    pub fn start(config: AuditConfig) -> Result<Auditor, AuditError> {
        let policy = config.policy.unwrap_or_else(Policy::default_policy);
        let log = config.log.map(LogBackend::open).transpose()?;
        let webhook = config.webhook.map(WebhookBackend::start).transpose()?;
        Ok(Auditor {
            policy,
            log,
            webhook,
            events_emitted: AtomicU64::new(0),
            events_failed: AtomicU64::new(0),
        })
    }

    /// An auditor with no backends (records nothing).
    pub fn disabled() -> Auditor {
        Auditor {
            policy: Policy::default_policy(),
            log: None,
            webhook: None,
            events_emitted: AtomicU64::new(0),
            events_failed: AtomicU64::new(0),
        }
    }

    pub fn enabled(&self) -> bool {
        self.log.is_some() || self.webhook.is_some()
    }

    pub fn decide(&self, attrs: &RequestAttributes<'_>) -> AuditDecision {
        if !self.enabled() {
            return AuditDecision {
                level: Level::None,
                omit_stages: Vec::new(),
                omit_managed_fields: false,
            };
        }
        self.policy.evaluate(attrs)
    }

    /// Whether a failure to record RequestReceived must fail the request (`blocking-strict`).
    pub fn strict(&self) -> bool {
        self.webhook
            .as_ref()
            .is_some_and(|w| w.mode() == WebhookMode::BlockingStrict)
    }

    /// Hands one event to every backend; the first error is returned after all were tried.
    pub async fn emit(&self, event: Event) -> Result<(), AuditError> {
        self.events_emitted.fetch_add(1, Ordering::Relaxed);
        let mut result = Ok(());
        if let Some(log) = &self.log
            && let Err(e) = log.write(std::slice::from_ref(&event))
        {
            tracing::error!(error = %e, "audit log write failed");
            result = Err(e);
        }
        if let Some(webhook) = &self.webhook
            && let Err(e) = webhook.process(vec![event]).await
        {
            tracing::error!(error = %e, "audit webhook failed");
            if result.is_ok() {
                result = Err(e);
            }
        }
        if result.is_err() {
            self.events_failed.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// Events handed to the backends so far.
    pub fn events_emitted(&self) -> u64 {
        self.events_emitted.load(Ordering::Relaxed)
    }

    pub fn webhook_stats(&self) -> Option<&WebhookStats> {
        self.webhook.as_ref().map(|w| w.stats())
    }

    /// Delivers everything the webhook holds.
    pub async fn flush(&self) {
        if let Some(w) = &self.webhook {
            w.flush().await;
        }
    }

    /// Flushes and stops the backends. Idempotent.
    pub async fn shutdown(&self) {
        if let Some(w) = &self.webhook {
            w.shutdown().await;
        }
    }
}

/// Timestamps in audit events have microsecond precision.
pub fn micro_time(t: DateTime<Utc>) -> DateTime<Utc> {
    let nanos = t.nanosecond() / 1000 * 1000;
    t.with_nanosecond(nanos).unwrap_or(t)
}

/// The `authorization.k8s.io/reason` RBAC would give in a kubeadm cluster.
pub fn authorization_reason(user: &UserInfo) -> String {
    if user.groups.iter().any(|g| g == "system:masters") {
        return "RBAC: allowed by ClusterRoleBinding \"cluster-admin\" of ClusterRole \"cluster-admin\" to Group \"system:masters\"".to_string();
    }
    if let Some(rest) = user.username.strip_prefix("system:serviceaccount:")
        && let Some((ns, name)) = rest.split_once(':')
    {
        return format!(
            "RBAC: allowed by ClusterRoleBinding \"system:controller:{name}\" of ClusterRole \"system:controller:{name}\" to ServiceAccount \"{name}/{ns}\""
        );
    }
    if user.username.starts_with("system:node:") {
        // The Node authorizer allows kubelets and gives no reason.
        return String::new();
    }
    if user.username.starts_with("system:") {
        let u = &user.username;
        return format!(
            "RBAC: allowed by ClusterRoleBinding \"{u}\" of ClusterRole \"{u}\" to User \"{u}\""
        );
    }
    String::new()
}

/// What identifies a request in its audit events.
pub struct RequestFacts {
    pub audit_id: String,
    pub request_uri: String,
    pub verb: String,
    pub user: UserInfo,
    pub impersonated_user: Option<UserInfo>,
    pub source_ips: Vec<String>,
    pub user_agent: String,
    pub object_ref: Option<ObjectReference>,
    pub received: DateTime<Utc>,
}

/// One request's audit trail, from RequestReceived to ResponseComplete.
pub struct AuditRecord {
    decision: AuditDecision,
    event: Event,
}

fn strip_managed_fields(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(Value::Object(m)) = v.get_mut("metadata") {
        m.remove("managedFields");
    }
    if let Some(Value::Array(items)) = v.get_mut("items") {
        for i in items {
            if let Some(Value::Object(m)) = i.get_mut("metadata") {
                m.remove("managedFields");
            }
        }
    }
    v
}

impl AuditRecord {
    pub fn new(decision: AuditDecision, facts: RequestFacts) -> AuditRecord {
        let event = Event {
            kind: None,
            api_version: None,
            metadata: None,
            timestamp: None,
            level: decision.level,
            audit_id: facts.audit_id,
            stage: Stage::RequestReceived,
            request_uri: facts.request_uri,
            verb: facts.verb,
            user: facts.user,
            impersonated_user: facts.impersonated_user,
            source_ips: facts.source_ips,
            user_agent: facts.user_agent,
            object_ref: facts.object_ref,
            response_status: None,
            request_object: None,
            response_object: None,
            request_received_timestamp: Some(micro_time(facts.received)),
            stage_timestamp: None,
            annotations: BTreeMap::new(),
        };
        AuditRecord { decision, event }
    }

    pub fn level(&self) -> Level {
        self.decision.level
    }

    pub fn audit_id(&self) -> &str {
        &self.event.audit_id
    }

    /// Whether an event would be produced for `stage`.
    pub fn wants(&self, stage: Stage) -> bool {
        self.decision.level != Level::None && !self.decision.omit_stages.contains(&stage)
    }

    pub fn annotate(&mut self, key: &str, value: impl Into<String>) {
        self.event.annotations.insert(key.to_string(), value.into());
    }

    /// Records the decoded request object: its identity fills in the objectRef (at Metadata
    /// and above), the object itself is kept from level Request on.
    pub fn set_request_object(&mut self, object: &Value) {
        if self.decision.level < Level::Metadata {
            return;
        }
        if let (Some(r), Some(meta)) = (self.event.object_ref.as_mut(), object.get("metadata")) {
            let field = |k: &str| {
                meta.get(k)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            if r.name.is_empty() {
                r.name = field("name");
            }
            if r.namespace.is_empty() {
                r.namespace = field("namespace");
            }
            if r.uid.is_empty() {
                r.uid = field("uid");
            }
            if r.resource_version.is_empty() {
                r.resource_version = field("resourceVersion");
            }
        }
        if self.decision.level < Level::Request {
            return;
        }
        self.event.request_object = self.raw(object);
    }

    /// Records the response body (kept at RequestResponse only).
    pub fn set_response_object(&mut self, object: &Value) {
        if self.decision.level < Level::RequestResponse {
            return;
        }
        self.event.response_object = self.raw(object);
    }

    pub fn set_response_status(&mut self, status: Status) {
        self.event.response_status = Some(status);
    }

    fn raw(&self, object: &Value) -> Option<Box<serde_json::value::RawValue>> {
        let result = if self.decision.omit_managed_fields {
            serde_json::value::to_raw_value(&strip_managed_fields(object))
        } else {
            serde_json::value::to_raw_value(object)
        };
        result.ok()
    }

    /// The event for `stage` at `now`, or None when the policy leaves the stage out.
    /// RequestReceived is recorded before authorization and the body: it carries neither.
    pub fn event(&self, stage: Stage, now: DateTime<Utc>) -> Option<Event> {
        if !self.wants(stage) {
            return None;
        }
        let mut e = if stage == Stage::RequestReceived {
            Event {
                request_object: None,
                response_object: None,
                response_status: None,
                annotations: BTreeMap::new(),
                ..self.event.clone()
            }
        } else {
            self.event.clone()
        };
        if stage == Stage::ResponseStarted {
            e.response_object = None;
        }
        e.stage = stage;
        e.stage_timestamp = Some(micro_time(now));
        Some(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(level: Level) -> AuditRecord {
        AuditRecord::new(
            AuditDecision {
                level,
                omit_stages: vec![],
                omit_managed_fields: false,
            },
            RequestFacts {
                audit_id: "id".into(),
                request_uri: "/apis/apps/v1/namespaces/default/deployments/demo".into(),
                verb: "update".into(),
                user: UserInfo {
                    username: "kubernetes-admin".into(),
                    groups: vec!["system:masters".into()],
                    ..Default::default()
                },
                impersonated_user: None,
                source_ips: vec!["127.0.0.1".into()],
                user_agent: "kubectl/v1.32.4".into(),
                object_ref: Some(ObjectReference {
                    resource: "deployments".into(),
                    namespace: "default".into(),
                    name: "demo".into(),
                    api_group: "apps".into(),
                    api_version: "v1".into(),
                    ..Default::default()
                }),
                received: Utc::now(),
            },
        )
    }

    #[test]
    fn levels_decide_what_objects_are_kept() {
        let obj = json!({"metadata": {"name": "demo", "uid": "u1", "resourceVersion": "7"}});
        let mut m = record(Level::Metadata);
        m.set_request_object(&obj);
        m.set_response_object(&obj);
        let e = m.event(Stage::ResponseComplete, Utc::now()).unwrap();
        assert!(e.request_object.is_none() && e.response_object.is_none());
        assert_eq!(e.object_ref.as_ref().unwrap().resource_version, "7");
        assert_eq!(e.object_ref.as_ref().unwrap().uid, "u1");
        let mut r = record(Level::Request);
        r.set_request_object(&obj);
        r.set_response_object(&obj);
        let e = r.event(Stage::ResponseComplete, Utc::now()).unwrap();
        assert!(e.request_object.is_some() && e.response_object.is_none());
        let mut rr = record(Level::RequestResponse);
        rr.set_request_object(&obj);
        rr.set_response_object(&obj);
        rr.annotate("authorization.k8s.io/decision", "allow");
        let received = rr.event(Stage::RequestReceived, Utc::now()).unwrap();
        assert!(received.request_object.is_none() && received.annotations.is_empty());
        let done = rr.event(Stage::ResponseComplete, Utc::now()).unwrap();
        assert!(done.response_object.is_some());
        assert_eq!(done.stage_timestamp.unwrap().nanosecond() % 1000, 0);
        assert!(
            record(Level::None)
                .event(Stage::ResponseComplete, Utc::now())
                .is_none()
        );
    }

    #[test]
    fn authorization_reasons_name_the_binding() {
        let admin = UserInfo {
            username: "kubernetes-admin".into(),
            groups: vec!["system:masters".into()],
            ..Default::default()
        };
        assert!(authorization_reason(&admin).contains("cluster-admin"));
        let sa = UserInfo {
            username: "system:serviceaccount:kube-system:deployment-controller".into(),
            ..Default::default()
        };
        assert_eq!(
            authorization_reason(&sa),
            "RBAC: allowed by ClusterRoleBinding \"system:controller:deployment-controller\" of ClusterRole \"system:controller:deployment-controller\" to ServiceAccount \"deployment-controller/kube-system\""
        );
        let node = UserInfo {
            username: "system:node:node-1".into(),
            ..Default::default()
        };
        assert_eq!(authorization_reason(&node), "");
    }
}
