//! `kausal demo` — the README's first command — really shows traces: the simulated cluster's
//! rollout reaches kausal through the audit webhook, and the Deployment's trace has its
//! ReplicaSets and Pods beneath it.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use kausal_tests::process::{Kausal, free_port};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_serves_the_rollout_as_a_trace() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (ui, webhook, api) = (free_port(), free_port(), free_port());
    let mut demo = Kausal::start_args(
        dir.path(),
        &[
            "demo",
            "--ui",
            &format!("127.0.0.1:{ui}"),
            "--webhook",
            &format!("127.0.0.1:{webhook}"),
            "--api",
            &format!("127.0.0.1:{api}"),
            "--data",
            "data",
        ],
    )?;
    demo.wait_for_port(ui, Duration::from_secs(60))?;
    let client = kausal_tests::http::client();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let body: Value = client
            .get(format!("http://127.0.0.1:{ui}/api/traces"))
            .query(&[("service", "tracing"), ("tags", r#"{"resource":"deployments","name":"demo"}"#), ("lookback", "1h")])
            .send()
            .await?
            .json()
            .await?;
        let spans = body["data"][0]["spans"].as_array().cloned().unwrap_or_default();
        let service = |s: &Value| {
            let pid = s["processID"].as_str().unwrap_or_default();
            body["data"][0]["processes"][pid]["serviceName"].as_str().unwrap_or_default().to_string()
        };
        let replicasets = spans.iter().filter(|s| service(s).starts_with("replicasets")).count();
        let pods = spans.iter().filter(|s| service(s) == "pods").count();
        if replicasets >= 1 && pods >= 2 {
            let root = spans.iter().find(|s| s["references"].as_array().is_none_or(|r| r.is_empty()));
            let root_logs = root.map(|r| r["logs"].to_string()).unwrap_or_default();
            assert!(root_logs.contains("kubernetes-admin create"), "the Deployment's creation is on its span: {root_logs}");
            assert!(root_logs.contains("deployment-controller"), "the controller's writes are on it too: {root_logs}");
            break;
        }
        if Instant::now() > deadline {
            bail!("no rollout trace from the demo in time; last answer: {body}\nstdout:\n{}\nstderr:\n{}", demo.stdout(), demo.stderr());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(demo.stdout().contains(&format!("http://127.0.0.1:{ui}/")), "prints the URL to open: {}", demo.stdout());
    let status = demo.stop()?;
    assert!(status.success(), "demo stops cleanly on SIGTERM: {status}\n{}", demo.stderr());
    Ok(())
}
