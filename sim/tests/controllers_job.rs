//! The job controller and the kubelet together: a Job with several completions runs its pods to
//! completion, reports status and the `Completed` Event, and its pods end Succeeded.

use std::time::Duration;

use anyhow::{Context, Result};
use kausal_sim::client::{ListParams, resources};
use kausal_sim::cluster::SimCluster;
use kausal_sim::controllers::KubeletTiming;
use kausal_sim::scenario;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_runs_to_completion() -> Result<()> {
    let timing = KubeletTiming { image_pull: Duration::from_millis(100), run_to_completion: Duration::from_millis(200), ..KubeletTiming::default() };
    let cluster = SimCluster::builder().nodes(2).kubelet_timing(timing).start().await?;
    let yaml = r#"
name: job
steps:
  - apply:
      apiVersion: batch/v1
      kind: Job
      metadata: {name: pi}
      spec:
        completions: 3
        parallelism: 2
        template:
          spec:
            restartPolicy: Never
            containers: [{name: pi, image: perl:5.34, command: [perl, -e, "print 1"]}]
  - wait-for: {job-complete: pi, timeout: 60s}
"#;
    let s = scenario::parse_scenario(yaml, "inline")?;
    let outcome = tokio::time::timeout(Duration::from_secs(90), cluster.run_scenario(&s)).await;
    let admin = cluster.admin_client();
    let job = admin.get(&resources::JOBS, Some("default"), "pi").await;
    let pods = admin.list(&resources::PODS, Some("default"), &ListParams::labels("job-name=pi")).await;
    let events = admin.list(&resources::EVENTS, Some("default"), &ListParams::default()).await;
    cluster.shutdown().await;
    outcome.context("the job timed out")??;
    let job = job?;
    assert_eq!(job["status"]["succeeded"], 3);
    assert!(job["status"]["completionTime"].is_string());
    let pods = pods?.items;
    assert_eq!(pods.len(), 3);
    assert!(pods.iter().all(|p| p["status"]["phase"] == "Succeeded"));
    let events = events?.items;
    let created = events.iter().filter(|e| e["reason"] == "SuccessfulCreate" && e["source"]["component"] == "job-controller").count();
    assert_eq!(created, 3);
    assert!(events.iter().any(|e| e["reason"] == "Completed" && e["message"] == "Job completed"));
    Ok(())
}
