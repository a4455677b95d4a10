//! Issue 4 on real data: the hkerma perfspec recording of an ingress-nginx install, audited at
//! Metadata level (no bodies, no watcher), posted to the webhook in batches. Name inference
//! (`linkrules`) has to put the controller's ReplicaSet and its Pod into the Deployment's trace,
//! its two 409 status updates show as conflicts, and the admission Job and its pod stay out.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use kausal_tests::process::{Kausal, free_port};
use serde_json::{Value, json};

const RECORDING: &str = "../../shared/fixtures/real/hkerma-perfspec/hkerma-audit-metadata.ingress-nginx.jsonl";

fn config(webhook: u16, query: u16) -> String {
    format!(
        r#"
receivers:
  kubeaudit:
    endpoint: 127.0.0.1:{webhook}
    cluster: perfspec
processors:
  ownerlinker: {{}}
  linkrules: {{}}
  diffjoiner: {{wait: 1s}}
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
      processors: [ownerlinker, linkrules, diffjoiner, spanbuilder]
      exporters: [spanstore]
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_hkerma_metadata_only_links_by_name_inference() -> Result<()> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(RECORDING);
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let events: Vec<Value> = text.lines().filter(|l| !l.trim().is_empty()).map(serde_json::from_str).collect::<Result<_, _>>()?;
    assert!(events.len() > 100);

    let dir = tempfile::tempdir()?;
    let (webhook, query) = (free_port(), free_port());
    let mut kausal = Kausal::start(dir.path(), &config(webhook, query))?;
    kausal.wait_for_port(webhook, Duration::from_secs(60))?;
    kausal.wait_for_port(query, Duration::from_secs(60))?;
    let client = kausal_tests::http::client();
    for batch in events.chunks(25) {
        let body = json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": batch});
        let r = client.post(format!("http://127.0.0.1:{webhook}/audit")).json(&body).send().await?;
        if !r.status().is_success() {
            bail!("webhook answered {}: {}", r.status(), r.text().await?);
        }
    }

    let (start, end) = ("1674777600000000", "1674950400000000"); // 2023-01-27 .. 2023-01-29, µs
    let deadline = Instant::now() + Duration::from_secs(60);
    let body = loop {
        let body: Value = client
            .get(format!("http://127.0.0.1:{query}/api/traces"))
            .query(&[
                ("service", "tracing"),
                ("tags", r#"{"resource":"deployments","namespace":"ingress-nginx","name":"my-ingress-nginx-controller"}"#),
                ("start", start),
                ("end", end),
            ])
            .send()
            .await?
            .json()
            .await?;
        let text = body.to_string();
        if text.contains("my-ingress-nginx-controller-6585b4f8f7-wltlx") {
            break body;
        }
        if Instant::now() > deadline {
            bail!("the Deployment's trace never reached its pod; last answer: {body}\nstderr:\n{}", kausal.stderr());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let trace = &body["data"][0];
    let spans = trace["spans"].as_array().cloned().unwrap_or_default();
    let name_of = |s: &Value| {
        s["tags"].as_array().into_iter().flatten().find(|t| t["key"] == "k8s.object.name").and_then(|t| t["value"].as_str()).unwrap_or_default().to_string()
    };
    let names: Vec<String> = spans.iter().map(name_of).collect();
    assert!(names.iter().any(|n| n == "my-ingress-nginx-controller-6585b4f8f7"), "the ReplicaSet is in the trace: {names:?}");
    assert!(names.iter().any(|n| n == "my-ingress-nginx-controller-6585b4f8f7-wltlx"), "its Pod is in the trace: {names:?}");
    assert!(!trace.to_string().contains("my-ingress-nginx-admission-create"), "the admission Job and its pod stay out: {names:?}");
    // With Metadata-level records and no watcher nothing but the names can have linked them.

    // The Deployment's own activities: two 409 status updates, shown as conflicts.
    let deployment = spans.iter().find(|s| name_of(s) == "my-ingress-nginx-controller").context("the Deployment's span")?;
    let conflicts = deployment["logs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|l| {
            let fields = l["fields"].as_array().cloned().unwrap_or_default();
            let has = |k: &str, v: &Value| fields.iter().any(|f| f["key"] == k && &f["value"] == v);
            has("http.response.status_code", &json!(409)) && fields.iter().any(|f| f["key"] == "kausal.io/conflict-with")
        })
        .count();
    assert_eq!(conflicts, 2, "two conflicting status updates: {deployment}");
    Ok(())
}
