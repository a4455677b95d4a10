//! Issue 4 end to end: the built `kausal` binary watches the simulator's objects (`kubeobjects`)
//! and receives its audit webhook (`kubeaudit`); `diffjoiner` attaches to every audited write
//! the diff the watcher observed. Driven with the real `kubectl` against the simulator's
//! kubeconfig, and checked over the Jaeger HTTP API and in the store's files, in both join
//! modes (RequestResponse: new resourceVersion; Metadata: old resourceVersion).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use kausal_sim::audit::Policy;
use kausal_sim::audit::webhook::{BatchConfig, WebhookConfig, WebhookTarget};
use kausal_sim::cluster::{SimCluster, SimClusterHandle};
use kausal_tests::process::{Kausal, free_port};
use serde_json::Value;

const DEPLOYMENT: &str = r#"
name: create-demo
namespace: default
steps:
  - apply:
      apiVersion: apps/v1
      kind: Deployment
      metadata: {name: demo, labels: {app: demo}}
      spec:
        replicas: 2
        selector: {matchLabels: {app: demo}}
        template:
          metadata: {labels: {app: demo}}
          spec: {containers: [{name: alpine, image: "alpine:3.16", resources: {}}]}
  - wait-for: {deployment-available: demo}
"#;

const METADATA_POLICY: &str = r#"
apiVersion: audit.k8s.io/v1
kind: Policy
rules:
  - level: None
    nonResourceURLs: ["/healthz*", "/livez*", "/readyz*", "/version", "/openapi*", "/api", "/api/*", "/apis", "/apis/*"]
  - level: None
    verbs: ["get", "list", "watch"]
  - level: Metadata
"#;

struct Setup {
    _dir: tempfile::TempDir,
    dir: std::path::PathBuf,
    cluster: SimClusterHandle,
    kausal: Kausal,
    query: u16,
    kubeconfig: std::path::PathBuf,
}

fn config(webhook: u16, query: u16, kubeconfig: &Path, mode: &str) -> String {
    format!(
        r#"
receivers:
  kubeaudit:
    endpoint: 127.0.0.1:{webhook}
    cluster: dev
  kubeobjects:
    cluster: dev
    auth: {{kubeconfig: "{kubeconfig}"}}
processors:
  ownerlinker: {{}}
  diffjoiner:
    mode: {mode}
  spanbuilder: {{}}
exporters:
  spanstore:
    directory: ./data
extensions:
  query:
    endpoint: 127.0.0.1:{query}
    directory: ./data
service:
  extensions: [query]
  pipelines:
    kube:
      receivers: [kubeaudit, kubeobjects]
      processors: [ownerlinker, diffjoiner, spanbuilder]
      exporters: [spanstore]
"#,
        kubeconfig = kubeconfig.display()
    )
}

async fn setup(policy: Option<&str>, mode: &str) -> Result<Setup> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().to_path_buf();
    let (webhook, query) = (free_port(), free_port());
    let mut hook = WebhookConfig::new(WebhookTarget { url: format!("http://127.0.0.1:{webhook}/audit"), ..Default::default() });
    hook.batch = BatchConfig { max_batch_wait: Duration::from_millis(200), ..Default::default() };
    let kubeconfig = dir.join("kubeconfig");
    let mut builder = SimCluster::builder().nodes(2).audit_webhook_settings(hook).kubeconfig_out(&kubeconfig);
    if let Some(p) = policy {
        builder = builder.audit_policy(Policy::parse(p)?);
    }
    let cluster = builder.start().await?;
    let mut kausal = Kausal::start(&dir, &config(webhook, query, &kubeconfig, mode))?;
    kausal.wait_for_port(webhook, Duration::from_secs(60))?;
    kausal.wait_for_port(query, Duration::from_secs(60))?;
    Ok(Setup { _dir: tmp, dir, cluster, kausal, query, kubeconfig })
}

fn kubectl(kubeconfig: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("/usr/bin/kubectl").arg("--kubeconfig").arg(kubeconfig).args(args).output().context("running kubectl")?;
    if !out.status.success() {
        bail!("kubectl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

async fn trace_of(query: u16, resource: &str, name: &str) -> Result<Value> {
    let tags = format!(r#"{{"resource":"{resource}","name":"{name}"}}"#);
    let r = kausal_tests::http::client()
        .get(format!("http://127.0.0.1:{query}/api/traces"))
        .query(&[("service", "tracing"), ("tags", tags.as_str()), ("lookback", "2h")])
        .send()
        .await?;
    Ok(r.json().await?)
}

/// Every activity of the answer's traces, as a map of its fields (the query API renders
/// activities as logs of their object's span: `event` is the activity's name).
fn spans(body: &Value) -> Vec<Value> {
    body["data"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|t| t["spans"].as_array().cloned().unwrap_or_default())
        .flat_map(|sp| sp["logs"].as_array().cloned().unwrap_or_default())
        .map(|log| {
            let fields: serde_json::Map<String, Value> = log["fields"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|f| Some((f["key"].as_str()?.to_string(), f["value"].clone())))
                .collect();
            Value::Object(fields)
        })
        .collect()
}

fn tag<'a>(activity: &'a Value, key: &str) -> Option<&'a Value> {
    activity.get(key)
}

/// Waits until some span of the object's trace satisfies `pred`; returns it.
async fn wait_for_span(s: &Setup, resource: &str, name: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let body = trace_of(s.query, resource, name).await?;
        if let Some(span) = spans(&body).into_iter().find(|sp| pred(sp)) {
            return Ok(span);
        }
        if Instant::now() > deadline {
            bail!("no span {what} in the trace of {resource}/{name}; last answer: {body}\nkausal stderr:\n{}", s.kausal.stderr());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn is_audit(span: &Value, user_contains: &str, verb: &str, subresource: Option<&str>) -> bool {
    tag(span, "k8s.audit.verb").and_then(Value::as_str) == Some(verb)
        && tag(span, "user.name").and_then(Value::as_str).is_some_and(|u| u.contains(user_contains))
        && tag(span, "k8s.audit.subresource").and_then(Value::as_str) == subresource
}

fn logs_text(activity: &Value) -> String {
    activity.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_diffs_join_to_writes_with_request_response_audit() -> Result<()> {
    let s = setup(None, "new").await?;
    wait_for_watcher(&s).await?;
    let scenario = kausal_sim::scenario::parse_scenario(DEPLOYMENT, "create-demo")?;
    s.cluster.run_scenario(&scenario).await?;
    wait_for_span(&s, "deployments", "demo", "with a creation snapshot", |sp| logs_text(sp).contains("kausal.snapshot")).await?;

    kubectl(&s.kubeconfig, &["scale", "deployment", "demo", "--replicas=4"])?;
    let scale = wait_for_span(&s, "deployments", "demo", "of kubectl's scale carrying its diff", |sp| {
        is_audit(sp, "admin", "patch", Some("scale")) && logs_text(sp).contains("spec.replicas 2 -> 4")
    })
    .await?;
    assert!(logs_text(&scale).contains("kausal.diff"), "{scale}");

    let status = wait_for_span(&s, "deployments", "demo", "of the controller's status write with observedGeneration", |sp| {
        is_audit(sp, "deployment-controller", "update", Some("status")) && logs_text(sp).contains("status.observedGeneration 1 -> 2")
    })
    .await?;
    assert!(logs_text(&status).contains("kausal.diff"));

    // A Secret's value goes nowhere: not into diffs, snapshots, spans or the store's files.
    let value = format!("s3cr3t-{}", std::process::id());
    let updated = format!("upd4ted-{}", std::process::id());
    kubectl(&s.kubeconfig, &["create", "secret", "generic", "creds", &format!("--from-literal=password={value}")])?;
    let encoded = base64(updated.as_bytes());
    kubectl(&s.kubeconfig, &["patch", "secret", "creds", "--type", "merge", "-p", &format!(r#"{{"data":{{"password":"{encoded}"}}}}"#)])?;
    // Secrets are audited at Metadata level and a patch names no version, so the diff shows as
    // the observed change: a path without values.
    wait_for_span(&s, "secrets", "creds", "of the secret's change with a redacted diff", |sp| logs_text(sp).contains("data.password changed")).await?;
    let text = trace_of(s.query, "secrets", "creds").await?.to_string();
    assert!(!text.contains(&encoded) && !text.contains(&updated), "secret value in a span: {text}");

    kubectl(&s.kubeconfig, &["delete", "deployment", "demo"])?;
    let delete = wait_for_span(&s, "deployments", "demo", "of the delete carrying a snapshot", |sp| {
        tag(sp, "k8s.audit.verb").and_then(Value::as_str) == Some("delete") && logs_text(sp).contains("kausal.snapshot")
    })
    .await?;
    let snapshot = delete["kausal.snapshot.json"].as_str().map(str::to_string).context("delete carries a snapshot")?;
    let snapshot: Value = serde_json::from_str(&snapshot)?;
    assert_eq!(snapshot["metadata"]["name"], "demo");

    let trace = trace_of(s.query, "deployments", "demo").await?;
    assert!(!trace.to_string().contains("managedFields"), "no diff or snapshot mentions managedFields: {trace}");

    // Every byte the store wrote.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut stored = Vec::new();
    read_all(&s.dir.join("data"), &mut stored)?;
    assert!(!stored.is_empty(), "the store wrote files");
    for needle in [value.as_bytes(), base64(value.as_bytes()).as_bytes(), updated.as_bytes(), encoded.as_bytes()] {
        assert!(!contains(&stored, needle), "secret value {:?} found in the store's files", String::from_utf8_lossy(needle));
    }
    s.cluster.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_diffs_join_by_old_resource_version_with_metadata_audit() -> Result<()> {
    let s = setup(Some(METADATA_POLICY), "old").await?;
    wait_for_watcher(&s).await?;
    let scenario = kausal_sim::scenario::parse_scenario(DEPLOYMENT, "create-demo")?;
    s.cluster.run_scenario(&scenario).await?;
    wait_for_span(&s, "deployments", "demo", "with a creation snapshot", |sp| logs_text(sp).contains("kausal.snapshot")).await?;
    kubectl(&s.kubeconfig, &["scale", "deployment", "demo", "--replicas=4"])?;
    // Metadata level: no bodies; the controller's status update names the version it started
    // from, and that is enough to find its diff.
    let status = wait_for_span(&s, "deployments", "demo", "of the controller's status write with observedGeneration", |sp| {
        is_audit(sp, "deployment-controller", "update", Some("status")) && logs_text(sp).contains("status.observedGeneration 1 -> 2")
    })
    .await?;
    assert_eq!(tag(&status, "k8s.audit.level").and_then(Value::as_str), Some("Metadata"));
    s.cluster.shutdown().await;
    Ok(())
}

/// The watcher lists everything before it reports changes; a ConfigMap whose creation shows up
/// as a snapshot proves it is past that.
async fn wait_for_watcher(s: &Setup) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(90);
    for i in 0.. {
        let name = format!("probe-{i}");
        kubectl(&s.kubeconfig, &["create", "configmap", &name, "--from-literal=k=v"])?;
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            let body = trace_of(s.query, "configmaps", &name).await?;
            if spans(&body).iter().any(|sp| logs_text(sp).contains("kausal.snapshot")) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        if Instant::now() > deadline {
            bail!("the watcher never reported a creation; kausal stderr:\n{}", s.kausal.stderr());
        }
    }
    Ok(())
}

fn read_all(dir: &Path, into: &mut Vec<u8>) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            read_all(&path, into)?;
        } else {
            into.extend(std::fs::read(&path)?);
        }
    }
    Ok(())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
