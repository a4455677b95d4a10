//! The other built-in scenarios and the churn generator against a running simulated cluster:
//! each completes and leaves the Events its real counterpart would.

use std::time::Duration;

use anyhow::{Context, Result};
use kausal_sim::client::{ListParams, resources};
use kausal_sim::clock::Clock;
use kausal_sim::cluster::{SimCluster, SimClusterHandle};
use kausal_sim::controllers::KubeletTiming;
use kausal_sim::scenario::{self, churn};
use serde_json::Value;

fn fast_kubelets() -> KubeletTiming {
    KubeletTiming {
        admit: Duration::from_millis(20),
        image_pull: Duration::from_millis(100),
        container_start: Duration::from_millis(20),
        run_to_completion: Duration::from_millis(200),
        crash_after: Duration::from_millis(100),
        termination: Duration::from_millis(50),
        lease_renew: Duration::from_secs(2),
    }
}

async fn run_builtin(cluster: &SimClusterHandle, name: &str) -> Result<Vec<Value>> {
    let s = scenario::builtin(name).with_context(|| format!("built-in {name}"))?;
    tokio::time::timeout(Duration::from_secs(120), cluster.run_scenario(&s)).await.with_context(|| format!("{name} timed out"))??;
    Ok(cluster.admin_client().list(&resources::EVENTS, Some("default"), &ListParams::default()).await?.items)
}

fn messages<'a>(events: &'a [Value], reason: &str) -> Vec<&'a str> {
    events.iter().filter(|e| e["reason"] == reason).filter_map(|e| e["message"].as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statefulset_update_creates_in_order_and_updates_in_reverse() -> Result<()> {
    let cluster = SimCluster::builder().nodes(2).kubelet_timing(fast_kubelets()).start().await?;
    let events = run_builtin(&cluster, "statefulset-update").await;
    cluster.shutdown().await;
    let events = events?;
    let mut creates: Vec<(&str, &str)> = events
        .iter()
        .filter(|e| e["reason"] == "SuccessfulCreate" && e["source"]["component"] == "statefulset-controller")
        .filter_map(|e| Some((e["firstTimestamp"].as_str()?, e["message"].as_str()?)))
        .collect();
    creates.sort();
    let first_three: Vec<&str> = creates.iter().take(3).map(|(_, m)| *m).collect();
    assert_eq!(
        first_three,
        ["create Pod web-0 in StatefulSet web successful", "create Pod web-1 in StatefulSet web successful", "create Pod web-2 in StatefulSet web successful"]
    );
    let deletes = messages(&events, "SuccessfulDelete");
    assert_eq!(deletes.first().copied(), Some("delete Pod web-2 in StatefulSet web successful"), "{deletes:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unschedulable_pods_get_failed_scheduling_events() -> Result<()> {
    let cluster = SimCluster::builder().nodes(3).kubelet_timing(fast_kubelets()).start().await?;
    let events = run_builtin(&cluster, "unschedulable").await;
    cluster.shutdown().await;
    let events = events?;
    let failed: Vec<&Value> = events.iter().filter(|e| e["reason"] == "FailedScheduling").collect();
    assert!(!failed.is_empty());
    for e in &failed {
        assert_eq!(e["type"], "Warning");
        assert_eq!(e["reportingComponent"], "default-scheduler");
        assert_eq!(
            e["message"],
            "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod."
        );
    }
    // Retries within the wait are recorded as a series on the first Event.
    assert!(failed.iter().any(|e| e["series"]["count"].as_i64().is_some_and(|c| c >= 1)), "{failed:#?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashloop_backs_off() -> Result<()> {
    let cluster = SimCluster::builder().nodes(1).kubelet_timing(fast_kubelets()).start().await?;
    let events = run_builtin(&cluster, "crashloop").await;
    cluster.shutdown().await;
    let events = events?;
    let backoff: Vec<&Value> = events.iter().filter(|e| e["reason"] == "BackOff").collect();
    assert!(!backoff.is_empty());
    for e in backoff {
        assert_eq!(e["type"], "Warning");
        assert_eq!(e["source"]["component"], "kubelet");
        assert_eq!(e["involvedObject"]["fieldPath"], "spec.containers{crasher}");
        assert!(e["message"].as_str().is_some_and(|m| m.starts_with("Back-off restarting failed container crasher in pod crasher-")));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_clock_fast_forwards_sleeps_and_kubelet_delays() -> Result<()> {
    let slow = KubeletTiming { image_pull: Duration::from_secs(30), ..KubeletTiming::default() };
    let cluster = SimCluster::builder().nodes(1).clock(Clock::virtual_clock()).kubelet_timing(slow).start().await?;
    let yaml = r#"
steps:
  - apply:
      apiVersion: apps/v1
      kind: Deployment
      metadata: {name: slow}
      spec:
        replicas: 1
        selector: {matchLabels: {app: slow}}
        template:
          metadata: {labels: {app: slow}}
          spec: {containers: [{name: c, image: alpine:3.16}]}
  - wait-for: {deployment-available: slow, timeout: 20s}
  - sleep: 1h
"#;
    let s = scenario::parse_scenario(yaml, "inline")?;
    let before = cluster.clock().now();
    let started = std::time::Instant::now();
    let outcome = tokio::time::timeout(Duration::from_secs(30), cluster.run_scenario(&s)).await;
    let advanced = cluster.clock().now() - before;
    let events = cluster.admin_client().list(&resources::EVENTS, Some("default"), &ListParams::default()).await;
    cluster.shutdown().await;
    outcome.context("virtual scenario timed out")??;
    assert!(started.elapsed() < Duration::from_secs(20), "a 30 s pull and a 1 h sleep took {:?} of real time", started.elapsed());
    assert!(advanced >= chrono::Duration::hours(1), "virtual time advanced only {advanced}");
    let pulled = messages(&events?.items, "Pulled").into_iter().map(str::to_string).collect::<Vec<_>>();
    // The virtual 30 s plus the few real microseconds the pull took.
    assert!(pulled.iter().any(|m| m.contains(" in 30") && m.ends_with(" including waiting)")), "{pulled:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_reports_the_rate_it_achieved() -> Result<()> {
    let cluster = SimCluster::builder().nodes(1).start().await?;
    let config = churn::ChurnConfig {
        namespaces: 2,
        deployments_per_namespace: 3,
        writes_per_second: 100.0,
        duration: Duration::from_secs(2),
        concurrency: 4,
        ..Default::default()
    };
    let report = churn::run_churn(&cluster.admin_client(), &config).await;
    cluster.shutdown().await;
    let report = report?;
    assert_eq!(report.errors, 0, "{report}");
    // Paced at 100/s for 2 s: every scheduled write is made, however late a loaded machine
    // makes it; none starts before its slot, so the achieved rate cannot exceed the pace (the
    // last write is due at 1.99 s). Without pacing 200 writes take a small fraction of that.
    assert_eq!(report.writes, 200, "{report}");
    assert!(report.elapsed >= Duration::from_millis(1990), "{report}");
    assert!(report.writes_per_second <= 100.0 * 1.05, "{report}");
    // A stall (writers waiting on each other or on the server) shows as a collapsed rate; the
    // bound is loose because CI shares two cores with the rest of the suite.
    assert!(report.writes_per_second >= 10.0, "{report}");
    Ok(())
}
