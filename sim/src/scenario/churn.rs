//! The churn generator for load tests: N namespaces × M Deployments, then a steady stream of
//! writes (metadata patches, which the apiserver audits like any update but which leave the
//! workload alone) paced to a target rate by several concurrent writers. It reports the rate it
//! actually achieved; it does not measure anything downstream.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::client::{ApiClient, PatchType, resources};

use super::ScenarioError;

/// What to churn and how fast.
#[derive(Clone, Debug, PartialEq)]
pub struct ChurnConfig {
    pub namespaces: usize,
    pub deployments_per_namespace: usize,
    /// Target writes per second during the churn phase.
    pub writes_per_second: f64,
    pub duration: Duration,
    /// Concurrent writers.
    pub concurrency: usize,
    /// Replicas of each Deployment (0 keeps pods out of the load).
    pub replicas: i64,
    /// Delete the namespaces' Deployments afterwards.
    pub cleanup: bool,
}

impl Default for ChurnConfig {
    fn default() -> Self {
        ChurnConfig {
            namespaces: 4,
            deployments_per_namespace: 10,
            writes_per_second: 500.0,
            duration: Duration::from_secs(10),
            concurrency: 32,
            replicas: 0,
            cleanup: true,
        }
    }
}

/// What the churn phase achieved.
#[derive(Clone, Debug, PartialEq)]
pub struct ChurnReport {
    pub writes: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub writes_per_second: f64,
}

impl std::fmt::Display for ChurnReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} writes ({} errors) in {:.2}s: {:.0} writes/s", self.writes, self.errors, self.elapsed.as_secs_f64(), self.writes_per_second)
    }
}

fn namespace_name(i: usize) -> String {
    format!("churn-{i}")
}
fn deployment_name(j: usize) -> String {
    format!("load-{j}")
}

/// Creates the namespaces and Deployments, churns, and (optionally) cleans up.
pub async fn run_churn(client: &ApiClient, config: &ChurnConfig) -> Result<ChurnReport, ScenarioError> {
    if config.namespaces == 0 || config.deployments_per_namespace == 0 || config.writes_per_second.is_nan() || config.writes_per_second <= 0.0 {
        return Err(ScenarioError::Churn("namespaces, deployments per namespace and the write rate must be positive".into()));
    }
    let fail = |what: &str, e: crate::client::ClientError| ScenarioError::Churn(format!("{what}: {e}"));
    for i in 0..config.namespaces {
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace_name(i)}});
        match client.create(&resources::NAMESPACES, None, &ns).await {
            Ok(_) => {}
            Err(e) if e.code() == Some(409) => {}
            Err(e) => return Err(fail("creating a namespace", e)),
        }
        for j in 0..config.deployments_per_namespace {
            let name = deployment_name(j);
            let d = json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": name, "namespace": namespace_name(i), "labels": {"app": name}},
                "spec": {
                    "replicas": config.replicas,
                    "selector": {"matchLabels": {"app": name}},
                    "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "app", "image": "alpine:3.16"}]}},
                },
            });
            match client.create(&resources::DEPLOYMENTS, Some(&namespace_name(i)), &d).await {
                Ok(_) => {}
                Err(e) if e.code() == Some(409) => {}
                Err(e) => return Err(fail("creating a deployment", e)),
            }
        }
    }

    let sequence = Arc::new(AtomicU64::new(0));
    let writes = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / config.writes_per_second);
    let targets = (config.namespaces * config.deployments_per_namespace) as u64;
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..config.concurrency.max(1) {
        let (client, sequence, writes, errors, config) = (client.clone(), sequence.clone(), writes.clone(), errors.clone(), config.clone());
        workers.spawn(async move {
            loop {
                let k = sequence.fetch_add(1, Ordering::Relaxed);
                let due = interval.mul_f64(k as f64);
                if due >= config.duration {
                    return;
                }
                let now = start.elapsed();
                if due > now {
                    tokio::time::sleep(due - now).await;
                }
                let target = k % targets;
                let ns = namespace_name((target / config.deployments_per_namespace as u64) as usize);
                let name = deployment_name((target % config.deployments_per_namespace as u64) as usize);
                let patch = json!({"metadata": {"annotations": {"kausal.dev/churn": k.to_string()}}});
                match client.patch(&resources::DEPLOYMENTS, Some(&ns), &name, PatchType::Merge, &patch).await {
                    Ok(_) => writes.fetch_add(1, Ordering::Relaxed),
                    Err(_) => errors.fetch_add(1, Ordering::Relaxed),
                };
            }
        });
    }
    while workers.join_next().await.is_some() {}
    let elapsed = start.elapsed();
    let done = writes.load(Ordering::Relaxed);
    let report = ChurnReport {
        writes: done,
        errors: errors.load(Ordering::Relaxed),
        elapsed,
        writes_per_second: done as f64 / elapsed.as_secs_f64().max(1e-9),
    };
    if config.cleanup {
        for i in 0..config.namespaces {
            for j in 0..config.deployments_per_namespace {
                let params = crate::client::DeleteParams::background();
                let _ignored = client.delete(&resources::DEPLOYMENTS, Some(&namespace_name(i)), &deployment_name(j), &params).await;
            }
        }
    }
    tracing::info!(%report, "churn finished");
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_read_well() {
        let r = ChurnReport { writes: 1000, errors: 2, elapsed: Duration::from_secs(2), writes_per_second: 500.0 };
        assert_eq!(r.to_string(), "1000 writes (2 errors) in 2.00s: 500 writes/s");
    }

    #[tokio::test]
    async fn nonsense_configs_are_refused() {
        let identity = crate::client::Identity::kubectl_admin("t");
        let client = ApiClient::new("http://127.0.0.1:9", None, &identity).unwrap_or_else(|e| panic!("{e}"));
        let config = ChurnConfig { writes_per_second: 0.0, ..Default::default() };
        assert!(matches!(run_churn(&client, &config).await, Err(ScenarioError::Churn(_))));
    }
}
