//! Replaying the OpenShift must-gather namespace and reading it back as a user would: the
//! Deployment `apiserver`'s causal trace shows its three ReplicaSet revisions and, under the
//! report that created each revision-3 pod, the FailedScheduling wait before Scheduled.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use kausal_tests::process::{Kausal, free_port};
use serde_json::Value;

fn tag<'a>(span: &'a Value, key: &str) -> Option<&'a str> {
    span["tags"].as_array()?.iter().find(|t| t["key"] == key)?["value"].as_str()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_of_openshift_shows_revisions_and_scheduling_waits() -> Result<()> {
    let ns = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/real/openshift-must-gather-aws/openshift-apiserver");
    assert!(ns.is_dir(), "recording missing: {} (this test needs ../shared/fixtures/real)", ns.display());
    let dir = tempfile::tempdir()?;
    let ui = free_port();
    let files: Vec<String> =
        ["events.yaml", "deployments.yaml", "replicasets.yaml", "pods.yaml"].iter().map(|f| ns.join(f).display().to_string()).collect();
    let mut args = vec!["replay".to_string(), "--speed".into(), "max".into(), "--ui".into(), format!("127.0.0.1:{ui}"), "--data".into(), "data".into()];
    args.extend(files);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut replay = Kausal::start_args(dir.path(), &args)?;
    replay.wait_for_port(ui, Duration::from_secs(60))?;
    let client = kausal_tests::http::client();
    // 2021-08-03, the day the namespace was gathered, in µs.
    let (start, end) = ("1627948800000000", "1628035200000000");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let body: Value = client
            // The whole day in one trace (a search answers per object window of 30 minutes).
            .get(format!("http://127.0.0.1:{ui}/api/v1/trace"))
            .query(&[
                ("cluster", "replay"),
                ("group", "apps"),
                ("resource", "deployments"),
                ("namespace", "openshift-apiserver"),
                ("name", "apiserver"),
                ("displayMode", "causal"),
                ("start", start),
                ("end", end),
            ])
            .send()
            .await?
            .json()
            .await?;
        let spans = body["spans"].as_array().cloned().unwrap_or_default();
        let by_id: HashMap<&str, &Value> = spans.iter().map(|s| (s["spanID"].as_str().unwrap_or_default(), s)).collect();
        let parent = |s: &Value| s["references"][0]["spanID"].as_str().and_then(|p| by_id.get(p).copied());
        let creations: Vec<&Value> = spans
            .iter()
            .filter(|s| s["operationName"] == "SuccessfulCreate" && tag(s, "k8s.event.message").is_some_and(|m| m.contains("apiserver-5647477f76-")))
            .collect();
        // The causal processor holds activities for its buffer; wait until everything is in.
        let mut problems: Vec<String> = Vec::new();
        if creations.len() != 3 {
            problems.push(format!("{} revision-3 pod creations so far", creations.len()));
        }
        for rs in ["apiserver-65fdcd8694", "apiserver-69d9f9688f", "apiserver-5647477f76"] {
            if !spans.iter().any(|s| {
                s["operationName"] == "ScalingReplicaSet"
                    && tag(s, "k8s.event.message").is_some_and(|m| m.starts_with(&format!("Scaled up replica set {rs} ")))
            }) {
                problems.push(format!("revision {rs} is not in the trace"));
            }
        }
        for created in &creations {
            let under: Vec<&Value> = spans.iter().filter(|s| parent(s).is_some_and(|p| p["spanID"] == created["spanID"])).collect();
            let at = |name: &str| under.iter().filter(|s| s["operationName"] == name).filter_map(|s| s["startTime"].as_i64()).collect::<Vec<_>>();
            let (failed, scheduled) = (at("FailedScheduling"), at("Scheduled"));
            let message = tag(created, "k8s.event.message").unwrap_or_default();
            if failed.is_empty() || scheduled.len() != 1 {
                problems.push(format!("{message}: no FailedScheduling -> Scheduled beneath it yet"));
                continue;
            }
            assert!(failed.iter().all(|f| *f < scheduled[0]), "{message}: the wait comes before Scheduled");
            // The last FailedScheduling lasts until the pod is scheduled.
            let last = under
                .iter()
                .filter(|s| s["operationName"] == "FailedScheduling")
                .max_by_key(|s| s["startTime"].as_i64())
                .map(|s| s["startTime"].as_i64().unwrap_or(0) + s["duration"].as_i64().unwrap_or(0));
            assert_eq!(last, Some(scheduled[0]), "{message}");
        }
        if problems.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            bail!("{problems:?}; last answer: {body}\nstderr:\n{}", replay.stderr());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    replay.stop()?;
    Ok(())
}
