//! Scenarios: YAML scripts of what a user does to the cluster (apply an object, scale, set an
//! image, delete, wait for a condition, sleep), run through the REST API as a kubectl-using
//! administrator, plus the built-ins (`rollout`, `statefulset-update`, `unschedulable`,
//! `crashloop`) and the churn load generator (`churn`). Scenarios only make requests; what
//! follows from them is the control plane's business.
//!
//! ```yaml
//! name: rollout
//! namespace: default        # default namespace for every step
//! loop: false               # run again and again until stopped
//! steps:
//!   - apply: {apiVersion: apps/v1, kind: Deployment, metadata: {name: demo}, spec: {...}}
//!   - wait-for: {deployment-available: demo, timeout: 60s}
//!   - scale: {kind: Deployment, name: demo, replicas: 4}
//!   - set-image: {kind: Deployment, name: demo, container: alpine, image: alpine:3.17}
//!   - delete: {kind: Deployment, name: demo}
//!   - wait-for: {gone: {kind: Deployment, name: demo}}
//!   - sleep: 2s
//! ```

pub mod churn;

use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Value, json};

use crate::client::{ApiClient, ApiResource, ClientError, DeleteParams, ListParams, PatchType, resources};
use crate::clock::Clock;
use crate::controllers::meta;

/// The built-in scenarios by name.
pub const BUILTIN: [(&str, &str); 4] = [
    ("rollout", include_str!("builtin/rollout.yaml")),
    ("statefulset-update", include_str!("builtin/statefulset-update.yaml")),
    ("unschedulable", include_str!("builtin/unschedulable.yaml")),
    ("crashloop", include_str!("builtin/crashloop.yaml")),
];

/// What went wrong loading or running a scenario; always names the scenario and the step.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("scenario {source_name}: {message}")]
    Parse { source_name: String, message: String },
    #[error("scenario {scenario}, step {index} ({verb}, line {line}): {message}")]
    Invalid { scenario: String, index: usize, verb: &'static str, line: u64, message: String },
    #[error("scenario {scenario}, step {index} ({verb}): {source}")]
    Api { scenario: String, index: usize, verb: &'static str, source: ClientError },
    #[error("scenario {scenario}, step {index} ({verb}): timed out after {timeout:?} waiting for {what}")]
    Timeout { scenario: String, index: usize, verb: &'static str, timeout: Duration, what: String },
    #[error("scenario {0:?} is neither a built-in ({1}) nor a readable file: {2}")]
    Unknown(String, String, std::io::Error),
    #[error("churn: {0}")]
    Churn(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    name: Option<String>,
    namespace: Option<String>,
    #[serde(rename = "loop", default)]
    looping: bool,
    steps: Vec<serde_saphyr::Spanned<StepSpec>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
enum StepSpec {
    Apply(Value),
    Scale(ScaleSpec),
    SetImage(SetImageSpec),
    Delete(TargetSpec),
    WaitFor(WaitForSpec),
    Sleep(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetSpec {
    kind: String,
    name: String,
    namespace: Option<String>,
    /// Background (kubectl's default), Foreground or Orphan.
    propagation: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScaleSpec {
    kind: String,
    name: String,
    namespace: Option<String>,
    replicas: i64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SetImageSpec {
    kind: String,
    name: String,
    namespace: Option<String>,
    container: String,
    image: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct WaitForSpec {
    deployment_available: Option<String>,
    statefulset_ready: Option<String>,
    job_complete: Option<String>,
    pods: Option<PodsSpec>,
    no_pods: Option<String>,
    gone: Option<GoneSpec>,
    event: Option<EventSpec>,
    namespace: Option<String>,
    timeout: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PodsSpec {
    selector: String,
    running: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GoneSpec {
    kind: String,
    name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventSpec {
    reason: String,
    /// Only Events about objects whose name starts with this.
    object: Option<String>,
}

/// A condition a `wait-for` step waits for.
#[derive(Clone, Debug, PartialEq)]
pub enum Condition {
    /// The Deployment's rollout is complete: observed, updated and available at spec.replicas.
    DeploymentAvailable(String),
    /// Every replica ready and on the update revision.
    StatefulSetReady(String),
    JobComplete(String),
    /// Exactly `running` pods matching the selector are Running (and not terminating).
    PodsRunning { selector: String, running: usize },
    /// No pod matches the selector any more.
    NoPods(String),
    /// The object no longer exists.
    Gone { resource: ApiResource, name: String },
    /// An Event with this reason exists (about an object whose name starts with `object`).
    Event { reason: String, object: Option<String> },
}

/// One validated step.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    Apply { resource: ApiResource, object: Value },
    Scale { resource: ApiResource, name: String, replicas: i64 },
    SetImage { resource: ApiResource, name: String, container: String, image: String },
    Delete { resource: ApiResource, name: String, propagation: String },
    WaitFor { condition: Condition, timeout: Duration },
    Sleep(Duration),
}

impl Action {
    pub fn verb(&self) -> &'static str {
        match self {
            Action::Apply { .. } => "apply",
            Action::Scale { .. } => "scale",
            Action::SetImage { .. } => "set-image",
            Action::Delete { .. } => "delete",
            Action::WaitFor { .. } => "wait-for",
            Action::Sleep(_) => "sleep",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub namespace: String,
    pub action: Action,
    /// Line in the scenario file, for error messages.
    pub line: u64,
}

/// A parsed and validated scenario.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    pub name: String,
    pub looping: bool,
    pub steps: Vec<Step>,
}

/// `5s`, `500ms`, `2m`, `1h`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (number, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = number.parse().ok()?;
    if !n.is_finite() || n < 0.0 {
        return None;
    }
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(secs))
}

/// The resource for a kind named in a step (`Deployment`, `deployment`, `deployments`).
pub fn resource_for_step_kind(kind: &str) -> Option<ApiResource> {
    let k = kind.to_ascii_lowercase();
    resources::ALL
        .into_iter()
        .filter(|r| r != &resources::EVENTS_V1)
        .find(|r| r.kind.to_ascii_lowercase() == k || r.plural == k)
}

const DEFAULT_WAIT: Duration = Duration::from_secs(120);

/// Parses and validates a scenario; `source_name` is how errors refer to it (a file path or a
/// built-in's name).
pub fn parse_scenario(yaml: &str, source_name: &str) -> Result<Scenario, ScenarioError> {
    let file: ScenarioFile =
        serde_saphyr::from_str(yaml).map_err(|e| ScenarioError::Parse { source_name: source_name.to_string(), message: e.to_string() })?;
    let name = file.name.clone().unwrap_or_else(|| source_name.to_string());
    let default_ns = file.namespace.clone().unwrap_or_else(|| "default".to_string());
    let mut steps = Vec::new();
    for (i, spanned) in file.steps.into_iter().enumerate() {
        let index = i + 1;
        let line = spanned.referenced.line();
        let invalid = |verb: &'static str, message: String| ScenarioError::Invalid { scenario: name.clone(), index, verb, line, message };
        let kind_resource = |verb: &'static str, kind: &str| {
            resource_for_step_kind(kind).ok_or_else(|| invalid(verb, format!("unknown kind {kind:?}")))
        };
        let (namespace, action) = match spanned.value {
            StepSpec::Apply(object) => {
                let api_version = object["apiVersion"].as_str().unwrap_or_default();
                let kind = object["kind"].as_str().unwrap_or_default();
                let resource = crate::client::resource_for_kind(api_version, kind)
                    .ok_or_else(|| invalid("apply", format!("unknown apiVersion/kind {api_version:?}/{kind:?}")))?;
                if meta::name(&object).is_empty() {
                    return Err(invalid("apply", "the object has no metadata.name".into()));
                }
                let ns = object["metadata"]["namespace"].as_str().map(str::to_string).unwrap_or_else(|| default_ns.clone());
                (ns, Action::Apply { resource, object })
            }
            StepSpec::Scale(s) => {
                if s.replicas < 0 {
                    return Err(invalid("scale", format!("replicas must not be negative, got {}", s.replicas)));
                }
                let resource = kind_resource("scale", &s.kind)?;
                (s.namespace.unwrap_or_else(|| default_ns.clone()), Action::Scale { resource, name: s.name, replicas: s.replicas })
            }
            StepSpec::SetImage(s) => {
                let resource = kind_resource("set-image", &s.kind)?;
                let ns = s.namespace.unwrap_or_else(|| default_ns.clone());
                (ns, Action::SetImage { resource, name: s.name, container: s.container, image: s.image })
            }
            StepSpec::Delete(t) => {
                let resource = kind_resource("delete", &t.kind)?;
                let propagation = t.propagation.unwrap_or_else(|| "Background".to_string());
                if !matches!(propagation.as_str(), "Background" | "Foreground" | "Orphan") {
                    return Err(invalid("delete", format!("propagation must be Background, Foreground or Orphan, got {propagation:?}")));
                }
                (t.namespace.unwrap_or_else(|| default_ns.clone()), Action::Delete { resource, name: t.name, propagation })
            }
            StepSpec::WaitFor(w) => {
                let timeout = match &w.timeout {
                    Some(t) => parse_duration(t).ok_or_else(|| invalid("wait-for", format!("bad timeout {t:?}")))?,
                    None => DEFAULT_WAIT,
                };
                let mut conditions = Vec::new();
                if let Some(n) = w.deployment_available {
                    conditions.push(Condition::DeploymentAvailable(n));
                }
                if let Some(n) = w.statefulset_ready {
                    conditions.push(Condition::StatefulSetReady(n));
                }
                if let Some(n) = w.job_complete {
                    conditions.push(Condition::JobComplete(n));
                }
                if let Some(p) = w.pods {
                    conditions.push(Condition::PodsRunning { selector: p.selector, running: p.running });
                }
                if let Some(s) = w.no_pods {
                    conditions.push(Condition::NoPods(s));
                }
                if let Some(g) = w.gone {
                    conditions.push(Condition::Gone { resource: kind_resource("wait-for", &g.kind)?, name: g.name });
                }
                if let Some(e) = w.event {
                    conditions.push(Condition::Event { reason: e.reason, object: e.object });
                }
                if conditions.len() != 1 {
                    return Err(invalid(
                        "wait-for",
                        format!("needs exactly one condition (deployment-available, statefulset-ready, job-complete, pods, no-pods, gone, event), got {}", conditions.len()),
                    ));
                }
                let condition = conditions.remove(0);
                (w.namespace.unwrap_or_else(|| default_ns.clone()), Action::WaitFor { condition, timeout })
            }
            StepSpec::Sleep(d) => {
                let d = parse_duration(&d).ok_or_else(|| invalid("sleep", format!("bad duration {d:?}")))?;
                (default_ns.clone(), Action::Sleep(d))
            }
        };
        steps.push(Step { namespace, action, line });
    }
    if steps.is_empty() {
        return Err(ScenarioError::Parse { source_name: source_name.to_string(), message: "the scenario has no steps".into() });
    }
    Ok(Scenario { name, looping: file.looping, steps })
}

/// A built-in scenario by name.
pub fn builtin(name: &str) -> Option<Scenario> {
    let (_, yaml) = BUILTIN.iter().find(|(n, _)| *n == name)?;
    parse_scenario(yaml, name).ok()
}

/// A built-in by name, or else a scenario file at that path.
pub fn load_scenario(name_or_path: &str) -> Result<Scenario, ScenarioError> {
    if let Some((_, yaml)) = BUILTIN.iter().find(|(n, _)| *n == name_or_path) {
        return parse_scenario(yaml, name_or_path);
    }
    let text = std::fs::read_to_string(name_or_path).map_err(|e| {
        let names: Vec<&str> = BUILTIN.iter().map(|(n, _)| *n).collect();
        ScenarioError::Unknown(name_or_path.to_string(), names.join(", "), e)
    })?;
    parse_scenario(&text, name_or_path)
}

/// Runs `scenario` once (or, if it loops, until the task is dropped) as `client`, which should
/// act as a kubectl-using administrator.
pub async fn run_scenario(client: &ApiClient, clock: &Clock, scenario: &Scenario) -> Result<(), ScenarioError> {
    loop {
        for (i, step) in scenario.steps.iter().enumerate() {
            let index = i + 1;
            let verb = step.action.verb();
            tracing::info!(scenario = %scenario.name, step = index, verb, "scenario step");
            run_step(client, clock, step).await.map_err(|e| match e {
                StepError::Api(source) => ScenarioError::Api { scenario: scenario.name.clone(), index, verb, source },
                StepError::Timeout { timeout, what } => ScenarioError::Timeout { scenario: scenario.name.clone(), index, verb, timeout, what },
            })?;
        }
        if !scenario.looping {
            return Ok(());
        }
        clock.sleep(Duration::from_secs(2)).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

enum StepError {
    Api(ClientError),
    Timeout { timeout: Duration, what: String },
}

impl From<ClientError> for StepError {
    fn from(e: ClientError) -> Self {
        StepError::Api(e)
    }
}

async fn ensure_namespace(client: &ApiClient, namespace: &str) -> Result<(), ClientError> {
    match client.get(&resources::NAMESPACES, None, namespace).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() => {
            let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}});
            match client.create(&resources::NAMESPACES, None, &ns).await {
                Ok(_) => Ok(()),
                Err(e) if e.code() == Some(409) => Ok(()),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

fn ns_for(resource: &ApiResource, namespace: &str) -> Option<String> {
    resource.namespaced.then(|| namespace.to_string())
}

async fn run_step(client: &ApiClient, clock: &Clock, step: &Step) -> Result<(), StepError> {
    let ns = step.namespace.as_str();
    match &step.action {
        Action::Apply { resource, object } => {
            let namespace = ns_for(resource, ns);
            if let Some(n) = &namespace {
                ensure_namespace(client, n).await?;
            }
            let mut object = object.clone();
            if let Some(n) = &namespace {
                object["metadata"]["namespace"] = json!(n);
            }
            match client.create(resource, namespace.as_deref(), &object).await {
                Ok(_) => {}
                Err(e) if e.code() == Some(409) => {
                    client.patch(resource, namespace.as_deref(), meta::name(&object), PatchType::Merge, &object).await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Action::Scale { resource, name, replicas } => {
            // kubectl scale patches the scale subresource.
            let patch = json!({"spec": {"replicas": replicas}});
            client.patch_subresource(resource, ns_for(resource, ns).as_deref(), name, "scale", PatchType::Merge, &patch).await?;
        }
        Action::SetImage { resource, name, container, image } => {
            // kubectl set image sends a strategic merge patch keyed by container name.
            let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": container, "image": image}]}}}});
            client.patch(resource, ns_for(resource, ns).as_deref(), name, PatchType::Strategic, &patch).await?;
        }
        Action::Delete { resource, name, propagation } => {
            let params = DeleteParams { propagation_policy: Some(propagation.clone()), ..Default::default() };
            match client.delete(resource, ns_for(resource, ns).as_deref(), name, &params).await {
                Ok(_) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
        Action::WaitFor { condition, timeout } => {
            let started = Instant::now();
            loop {
                if condition_met(client, ns, condition).await? {
                    break;
                }
                if started.elapsed() >= *timeout {
                    return Err(StepError::Timeout { timeout: *timeout, what: format!("{condition:?}") });
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
        Action::Sleep(d) => {
            clock.sleep(*d).await;
        }
    }
    Ok(())
}

fn found(result: Result<Value, ClientError>) -> Result<Option<Value>, ClientError> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether a Deployment's rollout is complete (what `kubectl rollout status` waits for).
pub fn deployment_complete(d: &Value) -> bool {
    let want = d["spec"]["replicas"].as_i64().unwrap_or(1);
    let s = &d["status"];
    let n = |f: &str| s[f].as_i64().unwrap_or(0);
    s["observedGeneration"].as_i64().unwrap_or(0) >= meta::generation(d)
        && n("updatedReplicas") == want
        && n("replicas") == want
        && n("availableReplicas") == want
}

/// Whether every StatefulSet replica is ready on the update revision.
pub fn statefulset_ready(s: &Value) -> bool {
    let want = s["spec"]["replicas"].as_i64().unwrap_or(1);
    let st = &s["status"];
    let n = |f: &str| st[f].as_i64().unwrap_or(0);
    st["observedGeneration"].as_i64().unwrap_or(0) >= meta::generation(s)
        && n("readyReplicas") == want
        && n("updatedReplicas") == want
        && n("replicas") == want
        && st["currentRevision"] == st["updateRevision"]
}

async fn condition_met(client: &ApiClient, ns: &str, condition: &Condition) -> Result<bool, ClientError> {
    Ok(match condition {
        Condition::DeploymentAvailable(name) => {
            found(client.get(&resources::DEPLOYMENTS, Some(ns), name).await)?.is_some_and(|d| deployment_complete(&d))
        }
        Condition::StatefulSetReady(name) => {
            found(client.get(&resources::STATEFULSETS, Some(ns), name).await)?.is_some_and(|s| statefulset_ready(&s))
        }
        Condition::JobComplete(name) => found(client.get(&resources::JOBS, Some(ns), name).await)?
            .is_some_and(|j| meta::condition(&j, "Complete").is_some_and(|c| c["status"] == "True")),
        Condition::PodsRunning { selector, running } => {
            let pods = client.list(&resources::PODS, Some(ns), &ListParams::labels(selector.clone())).await?;
            pods.items.iter().filter(|p| meta::pod_phase(p) == "Running" && !meta::is_terminating(p)).count() == *running
        }
        Condition::NoPods(selector) => client.list(&resources::PODS, Some(ns), &ListParams::labels(selector.clone())).await?.items.is_empty(),
        Condition::Gone { resource, name } => found(client.get(resource, ns_for(resource, ns).as_deref(), name).await)?.is_none(),
        Condition::Event { reason, object } => {
            let events = client.list(&resources::EVENTS, Some(ns), &ListParams::default()).await?;
            events.items.iter().any(|e| {
                e["reason"] == reason.as_str()
                    && object.as_ref().is_none_or(|prefix| e["involvedObject"]["name"].as_str().is_some_and(|n| n.starts_with(prefix.as_str())))
            })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_parse() {
        for (name, _) in BUILTIN {
            let s = builtin(name);
            assert!(s.is_some(), "built-in {name} does not parse: {:?}", parse_scenario(BUILTIN.iter().find(|b| b.0 == name).map(|b| b.1).unwrap_or(""), name));
        }
        let rollout = builtin("rollout").unwrap_or_else(|| panic!("rollout"));
        let verbs: Vec<&str> = rollout.steps.iter().map(|s| s.action.verb()).collect();
        assert_eq!(verbs[..5], ["apply", "wait-for", "scale", "wait-for", "set-image"]);
        assert!(matches!(&rollout.steps[2].action, Action::Scale { replicas: 4, name, .. } if name == "demo"));
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = parse_scenario("steps:\n  - scale: {kind: Deployment, name: d, replicas: 2, bogus: 1}\n", "t.yaml");
        assert!(matches!(err, Err(ScenarioError::Parse { .. })), "{err:?}");
        let err = parse_scenario("steps:\n  - teleport: {}\n", "t.yaml");
        assert!(matches!(err, Err(ScenarioError::Parse { .. })), "{err:?}");
    }

    #[test]
    fn semantic_errors_name_the_step_and_line() {
        let yaml = "name: t\nsteps:\n  - sleep: 1s\n  - scale: {kind: Gizmo, name: d, replicas: 2}\n";
        let err = parse_scenario(yaml, "t.yaml").err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(err, "scenario t, step 2 (scale, line 4): unknown kind \"Gizmo\"");
        let yaml = "steps:\n  - wait-for: {deployment-available: a, no-pods: app=a}\n";
        let err = parse_scenario(yaml, "t.yaml").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("step 1 (wait-for") && err.contains("exactly one condition"), "{err}");
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_duration("soon"), None);
    }

    #[test]
    fn rollout_completion_needs_every_counter() {
        let mut d = json!({"metadata": {"generation": 2}, "spec": {"replicas": 2},
            "status": {"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}});
        assert!(deployment_complete(&d));
        d["status"]["replicas"] = json!(3);
        assert!(!deployment_complete(&d));
    }
}
