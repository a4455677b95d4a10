//! `kausal replay` without `--config`, as a user runs it: kspan's capture goes through the
//! causal processor into the embedded store, and the query API serves it in the `causal`
//! display mode with each Event nested under what caused it.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use kausal_tests::process::{Kausal, free_port};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_serves_kspans_capture_in_the_causal_mode() -> Result<()> {
    let capture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/real/kspan/deployment-2-pods.yaml");
    assert!(capture.exists(), "recording missing: {} (this test needs ../shared/fixtures/real)", capture.display());
    let dir = tempfile::tempdir()?;
    let ui = free_port();
    let mut replay = Kausal::start_args(
        dir.path(),
        &["replay", "--speed", "max", "--ui", &format!("127.0.0.1:{ui}"), "--data", "data", capture.to_str().unwrap_or_default()],
    )?;
    replay.wait_for_port(ui, Duration::from_secs(60))?;
    let client = kausal_tests::http::client();
    // The capture's own time: 2021-05-19 09:42:58 to 09:43:08 UTC, in µs.
    let (start, end) = ("1621417200000000", "1621418400000000");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let body: Value = client
            .get(format!("http://127.0.0.1:{ui}/api/traces"))
            .query(&[("service", "causal"), ("tags", r#"{"resource":"deployments","name":"px"}"#), ("start", start), ("end", end)])
            .send()
            .await?
            .json()
            .await?;
        let spans = body["data"][0]["spans"].as_array().cloned().unwrap_or_default();
        let by_id: HashMap<String, &Value> = spans.iter().map(|s| (s["spanID"].as_str().unwrap_or_default().to_string(), s)).collect();
        let parent_name = |s: &Value| {
            s["references"][0]["spanID"].as_str().and_then(|p| by_id.get(p)).and_then(|p| p["operationName"].as_str()).map(str::to_string)
        };
        let named = |n: &str| spans.iter().filter(move |s| s["operationName"] == n).collect::<Vec<_>>();
        let scheduled = named("Scheduled");
        if scheduled.len() == 2 {
            for s in &scheduled {
                assert_eq!(parent_name(s).as_deref(), Some("SuccessfulCreate"), "a pod is scheduled because it was created: {s}");
            }
            for s in named("SuccessfulCreate") {
                assert_eq!(parent_name(s).as_deref(), Some("ScalingReplicaSet"), "{s}");
            }
            for s in named("ScalingReplicaSet") {
                assert_eq!(parent_name(s).as_deref(), Some("kubectl-client-side-apply Update"), "the root comes from managedFields: {s}");
            }
            for s in named("Killing") {
                assert_eq!(parent_name(s).as_deref(), Some("SuccessfulDelete"), "{s}");
            }
            break;
        }
        if Instant::now() > deadline {
            bail!("no causal trace of the replay in time; last answer: {body}\nstdout:\n{}\nstderr:\n{}", replay.stdout(), replay.stderr());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(replay.stdout().contains(&format!("http://127.0.0.1:{ui}/")), "prints the URL to open: {}", replay.stdout());
    replay.stop()?;
    Ok(())
}
