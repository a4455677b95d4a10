//! The `rollout` scenario end to end against the simulated cluster: every step completes, and
//! the controllers leave the trail a real cluster leaves (ReplicaSets per template, scaling and
//! pod Events from the right components, pods garbage-collected after the delete).

use std::time::Duration;

use anyhow::{Context, Result};
use kausal_sim::client::{ListParams, resources};
use kausal_sim::cluster::SimCluster;
use kausal_sim::controllers::KubeletTiming;
use kausal_sim::scenario;
use serde_json::Value;

fn fast_kubelets() -> KubeletTiming {
    KubeletTiming {
        admit: Duration::from_millis(20),
        image_pull: Duration::from_millis(150),
        container_start: Duration::from_millis(20),
        run_to_completion: Duration::from_millis(300),
        crash_after: Duration::from_millis(100),
        termination: Duration::from_millis(50),
        lease_renew: Duration::from_secs(2),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_runs_and_leaves_a_realistic_trail() -> Result<()> {
    let cluster = SimCluster::builder().nodes(2).kubelet_timing(fast_kubelets()).start().await?;
    let rollout = scenario::builtin("rollout").context("the rollout built-in")?;
    let outcome = tokio::time::timeout(Duration::from_secs(120), cluster.run_scenario(&rollout)).await;
    let admin = cluster.admin_client();
    let events = admin.list(&resources::EVENTS, Some("default"), &ListParams::default()).await?.items;
    cluster.shutdown().await;
    outcome.context("rollout timed out")??;

    let by_reason = |reason: &str| -> Vec<&Value> { events.iter().filter(|e| e["reason"] == reason).collect() };
    let scaling: Vec<String> = by_reason("ScalingReplicaSet").iter().filter_map(|e| e["message"].as_str().map(str::to_string)).collect();
    assert!(scaling.iter().any(|m| m.starts_with("Scaled up replica set demo-") && m.ends_with(" to 2")), "{scaling:#?}");
    assert!(scaling.iter().any(|m| m.ends_with(" to 4")), "{scaling:#?}");
    assert!(scaling.iter().any(|m| m.starts_with("Scaled down replica set demo-") && m.ends_with(" to 0")), "{scaling:#?}");
    for e in by_reason("ScalingReplicaSet") {
        assert_eq!(e["source"]["component"], "deployment-controller");
        assert_eq!(e["involvedObject"]["kind"], "Deployment");
    }
    let creates = by_reason("SuccessfulCreate");
    assert!(creates.len() >= 6, "2 + 2 scaled up + at least 2 for the new template: {}", creates.len());
    for e in &creates {
        assert_eq!(e["source"]["component"], "replicaset-controller");
        assert!(e["message"].as_str().is_some_and(|m| m.starts_with("Created pod: demo-")));
    }
    assert!(!by_reason("SuccessfulDelete").is_empty());
    let scheduled = by_reason("Scheduled");
    assert!(!scheduled.is_empty());
    for e in &scheduled {
        assert_eq!(e["reportingComponent"], "default-scheduler");
        assert!(e["message"].as_str().is_some_and(|m| m.starts_with("Successfully assigned default/demo-")));
    }
    for reason in ["Pulling", "Pulled", "Created", "Started", "Killing"] {
        let found = by_reason(reason);
        assert!(!found.is_empty(), "no {reason} Event");
        assert!(found.iter().all(|e| e["source"]["component"] == "kubelet" && e["source"]["host"].as_str().is_some_and(|h| h.starts_with("node-"))));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_collection_follows_propagation_policies() -> Result<()> {
    let cluster = SimCluster::builder().nodes(1).kubelet_timing(fast_kubelets()).start().await?;
    let yaml = r#"
name: orphan-then-foreground
steps:
  - apply:
      apiVersion: apps/v1
      kind: Deployment
      metadata: {name: keep}
      spec:
        replicas: 1
        selector: {matchLabels: {app: keep}}
        template:
          metadata: {labels: {app: keep}}
          spec: {containers: [{name: c, image: alpine:3.16}]}
  - wait-for: {deployment-available: keep, timeout: 60s}
  - delete: {kind: Deployment, name: keep, propagation: Orphan}
  - wait-for: {gone: {kind: Deployment, name: keep}, timeout: 30s}
"#;
    let s = scenario::parse_scenario(yaml, "inline")?;
    let outcome = tokio::time::timeout(Duration::from_secs(90), cluster.run_scenario(&s)).await;
    let admin = cluster.admin_client();
    let orphans = admin.list(&resources::REPLICASETS, Some("default"), &ListParams::labels("app=keep")).await;
    cluster.shutdown().await;
    outcome.context("scenario timed out")??;
    let orphans = orphans?.items;
    assert_eq!(orphans.len(), 1, "the ReplicaSet survives an Orphan delete");
    assert!(orphans[0]["metadata"]["ownerReferences"].as_array().is_none_or(|r| r.is_empty()), "{:#}", orphans[0]["metadata"]);
    Ok(())
}
