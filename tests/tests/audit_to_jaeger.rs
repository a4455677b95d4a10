//! Issue 2 end to end: the built `kausal` binary with a real YAML config receives audit
//! EventLists on its webhook and serves traces over the Jaeger HTTP API, also after a restart;
//! bad input and bad configuration get clear errors.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use kausal_tests::audit_gen::{deployment_story, event_list};
use kausal_tests::process::{Kausal, free_port, run_to_end};
use serde_json::Value;

struct Ports {
    webhook: u16,
    query: u16,
}

fn config(ports: &Ports) -> String {
    format!(
        r#"
receivers:
  kubeaudit:
    endpoint: 127.0.0.1:{webhook}
    cluster: dev
    max_body_size: 1MiB
processors:
  ownerlinker: {{}}
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
      receivers: [kubeaudit]
      processors: [ownerlinker, spanbuilder]
      exporters: [spanstore]
"#,
        webhook = ports.webhook,
        query = ports.query
    )
}

fn start(dir: &std::path::Path, ports: &Ports) -> Result<Kausal> {
    let mut k = Kausal::start(dir, &config(ports))?;
    k.wait_for_port(ports.webhook, Duration::from_secs(30))?;
    k.wait_for_port(ports.query, Duration::from_secs(30))?;
    Ok(k)
}

async fn post(client: &reqwest::Client, port: u16, body: Vec<u8>) -> Result<(u16, String)> {
    let r = client
        .post(format!("http://127.0.0.1:{port}/audit"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await?;
    Ok((r.status().as_u16(), r.text().await?))
}

async fn search(client: &reqwest::Client, port: u16, tags: &str) -> Result<Value> {
    let r = client
        .get(format!("http://127.0.0.1:{port}/api/traces"))
        .query(&[("service", "tracing"), ("tags", tags), ("lookback", "2h")])
        .send()
        .await?;
    let status = r.status();
    let body: Value = r.json().await?;
    if !status.is_success() {
        bail!("search failed with {status}: {body}");
    }
    Ok(body)
}

/// Polls until the search returns a trace with at least `min_spans` spans.
async fn wait_for_trace(client: &reqwest::Client, port: u16, tags: &str, min_spans: usize) -> Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let body = search(client, port, tags).await?;
        let spans = body["data"][0]["spans"].as_array().map(|s| s.len()).unwrap_or(0);
        if spans >= min_spans {
            return Ok(body);
        }
        if Instant::now() > deadline {
            bail!("no trace with {min_spans} spans for {tags} in time; last answer: {body}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn service_of<'a>(trace: &'a Value, span: &Value) -> &'a str {
    let pid = span["processID"].as_str().unwrap_or_default();
    trace["processes"][pid]["serviceName"].as_str().unwrap_or_default()
}

fn parent_of(span: &Value) -> Option<String> {
    span["references"]
        .as_array()?
        .iter()
        .find(|r| r["refType"] == "CHILD_OF")
        .and_then(|r| r["spanID"].as_str())
        .map(str::to_string)
}

fn log_names(span: &Value) -> Vec<String> {
    span["logs"]
        .as_array()
        .map(|logs| {
            logs.iter()
                .filter_map(|l| {
                    l["fields"].as_array()?.iter().find(|f| f["key"] == "event").and_then(|f| f["value"].as_str()).map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Checks the trace of Deployment `demo`: root, 2 ReplicaSets beneath, 4 Pods beneath them.
fn check_demo_trace(body: &Value) -> Result<()> {
    let traces = body["data"].as_array().context("data")?;
    if traces.len() != 1 {
        bail!("expected one trace, got {}: {body}", traces.len());
    }
    let trace = &traces[0];
    let spans = trace["spans"].as_array().context("spans")?;
    let roots: Vec<&Value> = spans.iter().filter(|s| parent_of(s).is_none()).collect();
    assert_eq!(roots.len(), 1, "one root: {trace}");
    let root = roots[0];
    assert!(service_of(trace, root).starts_with("deployments"), "root is the Deployment: {root}");
    assert!(root["operationName"].as_str().unwrap_or_default().ends_with("demo"), "{root}");
    let root_id = root["spanID"].as_str().context("spanID")?;
    let replicasets: Vec<&Value> = spans.iter().filter(|s| parent_of(s).as_deref() == Some(root_id)).collect();
    assert_eq!(replicasets.len(), 2, "exactly 2 ReplicaSet children: {trace}");
    for rs in &replicasets {
        assert!(service_of(trace, rs).starts_with("replicasets"), "{rs}");
    }
    let rs_ids: Vec<&str> = replicasets.iter().filter_map(|s| s["spanID"].as_str()).collect();
    let pods: Vec<&Value> = spans
        .iter()
        .filter(|s| parent_of(s).is_some_and(|p| rs_ids.contains(&p.as_str())))
        .collect();
    assert_eq!(pods.len(), 4, "4 Pods under the ReplicaSets: {trace}");
    for p in &pods {
        assert_eq!(service_of(trace, p), "pods", "{p}");
        let names = log_names(p);
        assert!(names.iter().any(|n| n.contains("create")), "pod has its create: {names:?}");
        assert!(names.iter().any(|n| n.contains("binding")), "pod has its binding: {names:?}");
    }
    let logs = log_names(root);
    assert!(
        logs.iter().any(|n| n == "system:serviceaccount:kube-system:deployment-controller update status"),
        "status update present: {logs:?}"
    );
    assert!(
        logs.iter().any(|n| n == "system:serviceaccount:kube-system:deployment-controller update status (Conflict)"),
        "conflict shown as (Conflict): {logs:?}"
    );
    assert!(logs.iter().any(|n| n == "kubernetes-admin create"), "{logs:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_audit_becomes_a_trace_and_survives_restart() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let ports = Ports { webhook: free_port(), query: free_port() };
    let mut kausal = start(dir.path(), &ports)?;
    let client = kausal_tests::http::client();

    let events = deployment_story("default", "demo", chrono::Utc::now() - chrono::Duration::minutes(5));
    for chunk in events.chunks(7) {
        let (status, body) = post(&client, ports.webhook, serde_json::to_vec(&event_list(chunk.to_vec()))?).await?;
        assert_eq!(status, 200, "{body}");
    }
    let tags = r#"{"resource":"deployments","name":"demo"}"#;
    let body = wait_for_trace(&client, ports.query, tags, 7).await?;
    check_demo_trace(&body)?;

    // Services are the display modes; operations are the clusters.
    let services: Value = client.get(format!("http://127.0.0.1:{}/api/services", ports.query)).send().await?.json().await?;
    assert!(services["data"].as_array().is_some_and(|s| s.iter().any(|x| x == "tracing")), "{services}");
    let ops: Value = client
        .get(format!("http://127.0.0.1:{}/api/services/tracing/operations", ports.query))
        .send()
        .await?
        .json()
        .await?;
    assert!(ops["data"].as_array().is_some_and(|s| s.iter().any(|x| x == "dev")), "{ops}");

    // Fetching the trace by its ID gives the same tree.
    let trace_id = body["data"][0]["traceID"].as_str().context("traceID")?.to_string();
    assert_eq!(trace_id.len(), 32);
    assert!(trace_id.starts_with("ff") && &trace_id[10..16] == "e1e3e7", "Kelemetry-style trace id: {trace_id}");
    let by_id: Value = client.get(format!("http://127.0.0.1:{}/api/traces/{trace_id}", ports.query)).send().await?.json().await?;
    check_demo_trace(&by_id)?;

    // Restart: data written before is queryable after.
    let status = kausal.stop()?;
    assert!(status.success(), "graceful stop: {status}\n{}", kausal.stderr());
    drop(kausal);
    let _kausal = start(dir.path(), &ports)?;
    let again = search(&client, ports.query, tags).await?;
    check_demo_trace(&again)?;
    let by_id: Value = client.get(format!("http://127.0.0.1:{}/api/traces/{trace_id}", ports.query)).send().await?.json().await?;
    check_demo_trace(&by_id)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_webhook_input_is_refused_clearly_and_not_stored() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let ports = Ports { webhook: free_port(), query: free_port() };
    let _kausal = start(dir.path(), &ports)?;
    let client = kausal_tests::http::client();

    let (status, body) = post(&client, ports.webhook, b"{\"kind\":\"EventList\",\n \"items\": [ {\"level\": }]}".to_vec()).await?;
    assert_eq!(status, 400);
    assert!(body.contains("line 2") && body.contains("column"), "names line and column: {body}");

    let mut big = deployment_story("default", "toolarge", chrono::Utc::now());
    while serde_json::to_vec(&big)?.len() < 2 << 20 {
        big.extend(deployment_story("default", "toolarge", chrono::Utc::now()));
    }
    let (status, body) = post(&client, ports.webhook, serde_json::to_vec(&event_list(big))?).await?;
    assert_eq!(status, 413, "{body}");

    let mut wrong = event_list(deployment_story("default", "wrongkind", chrono::Utc::now()));
    wrong["kind"] = "PodList".into();
    let (status, body) = post(&client, ports.webhook, serde_json::to_vec(&wrong)?).await?;
    assert_eq!(status, 400);
    assert!(body.contains("PodList"), "{body}");

    // The server keeps serving, and nothing of the refused bodies was stored.
    let good = deployment_story("default", "good", chrono::Utc::now() - chrono::Duration::minutes(1));
    let (status, body) = post(&client, ports.webhook, serde_json::to_vec(&event_list(good))?).await?;
    assert_eq!(status, 200, "{body}");
    wait_for_trace(&client, ports.query, r#"{"name":"good"}"#, 1).await?;
    for name in ["toolarge", "wrongkind"] {
        let found = search(&client, ports.query, &format!(r#"{{"name":"{name}"}}"#)).await?;
        assert_eq!(found["data"].as_array().map(Vec::len), Some(0), "{name} must not be stored: {found}");
    }
    Ok(())
}

#[test]
fn configuration_errors_exit_non_zero_naming_the_key() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let ports = Ports { webhook: free_port(), query: free_port() };
    let write = |name: &str, text: &str| -> Result<String> {
        let p = dir.path().join(name);
        std::fs::write(&p, text)?;
        Ok(p.display().to_string())
    };
    let good = config(&ports);

    let unknown = write("unknown.yaml", &good.replace("    cluster: dev\n", "    cluster: dev\n    clustr: x\n"))?;
    for cmd in ["validate", "run"] {
        let (code, _, err) = run_to_end(dir.path(), &[cmd, "--config", &unknown])?;
        assert_ne!(code, 0);
        assert!(err.contains("receivers.kubeaudit.clustr") && err.contains("unknown key"), "{cmd}: {err}");
        assert!(err.contains("unknown.yaml:6"), "names file and line: {err}");
    }

    let dangling = write("dangling.yaml", &good.replace("exporters: [spanstore]", "exporters: [spanstore, otlp/backend]"))?;
    let (code, _, err) = run_to_end(dir.path(), &["validate", "--config", &dangling])?;
    assert_ne!(code, 0);
    assert!(err.contains("service.pipelines.kube.exporters") && err.contains("\"otlp/backend\" is not defined"), "{err}");

    let env = write("env.yaml", &good.replace("cluster: dev", "cluster: ${env:KAUSAL_TEST_NO_SUCH_VAR}"))?;
    let (code, _, err) = run_to_end(dir.path(), &["run", "--config", &env])?;
    assert_ne!(code, 0);
    assert!(err.contains("receivers.kubeaudit.cluster") && err.contains("KAUSAL_TEST_NO_SUCH_VAR is not set"), "{err}");

    // The good one validates, and print-config shows it resolved.
    let ok = write("ok.yaml", &good.replace("cluster: dev", "cluster: ${env:KAUSAL_TEST_NO_SUCH_VAR:-fallback}"))?;
    let (code, out, err) = run_to_end(dir.path(), &["validate", "--config", &ok])?;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("valid"));
    let (code, out, _) = run_to_end(dir.path(), &["print-config", "--config", &ok])?;
    assert_eq!(code, 0);
    assert!(out.contains("cluster: fallback"), "{out}");
    Ok(())
}
