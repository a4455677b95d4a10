//! The control loops act through the API under their real identities and user agents, so the
//! apiserver's audit log attributes a rollout like a real cluster's does.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, Result};
use kausal_sim::cluster::SimCluster;
use kausal_sim::controllers::KubeletTiming;
use kausal_sim::scenario;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_log_names_each_component() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let log = dir.path().join("audit.log");
    let timing = KubeletTiming { image_pull: Duration::from_millis(100), ..KubeletTiming::default() };
    let cluster = SimCluster::builder().nodes(1).kubelet_timing(timing).audit_log(&log).start().await?;
    let rollout = scenario::builtin("rollout").context("rollout")?;
    let outcome = tokio::time::timeout(Duration::from_secs(120), cluster.run_scenario(&rollout)).await;
    cluster.shutdown().await;
    outcome.context("rollout timed out")??;

    let text = std::fs::read_to_string(&log)?;
    let records: Vec<Value> = text.lines().filter(|l| !l.trim().is_empty()).map(serde_json::from_str).collect::<Result<_, _>>()?;
    let seen: BTreeSet<(String, String)> = records
        .iter()
        .filter_map(|r| Some((r["user"]["username"].as_str()?.to_string(), r["userAgent"].as_str()?.to_string())))
        .collect();
    let writes_by = |user: &str| records.iter().any(|r| r["user"]["username"] == user && matches!(r["verb"].as_str(), Some("create" | "update" | "patch" | "delete")));
    for controller in ["deployment-controller", "replicaset-controller", "generic-garbage-collector"] {
        let user = format!("system:serviceaccount:kube-system:{controller}");
        let ua = format!("kube-controller-manager/v1.31.0 (linux/amd64) kubernetes/abcdef/{user}");
        assert!(seen.contains(&(user.clone(), ua)), "{user} missing from {seen:#?}");
        assert!(writes_by(&user), "{user} made no writes");
    }
    assert!(seen.iter().any(|(u, ua)| u == "system:kube-scheduler" && ua.starts_with("kube-scheduler/v1.31.0 (linux/amd64)")));
    assert!(seen.iter().any(|(u, ua)| u == "system:node:node-1" && ua.starts_with("kubelet/v1.31.0 (linux/amd64)")));
    assert!(writes_by("system:kube-scheduler") && writes_by("system:node:node-1"));
    // The scheduler binds through the binding subresource.
    assert!(records.iter().any(|r| r["user"]["username"] == "system:kube-scheduler" && r["objectRef"]["subresource"] == "binding"));
    Ok(())
}
