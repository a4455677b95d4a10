//! The job controller: runs pods until `completions` succeed (at most `parallelism` at a time),
//! fails the Job past `backoffLimit`, and reports status (startTime, active, ready, succeeded,
//! failed, conditions, completionTime) with the `Completed` / `BackoffLimitExceeded` Events.
//! Indexed jobs, pod failure policies and finalizer-based tracking are not modelled.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::client::{ApiClient, ClientError, DeleteParams, ListParams, resources};
use crate::clock::Clock;

use super::events::{EventRecorder, EventType};
use super::informer::{Informer, ObjectName, WorkQueue, object_name, run_queue};
use super::meta;
use super::replicaset::{is_pod_active, pod_from_template};

#[derive(Clone, Debug, PartialEq)]
pub enum JobAction {
    CreatePods(usize),
    DeletePods(Vec<(String, String)>),
    UpdateStatus(Value),
    Event { event_type: EventType, reason: &'static str, message: &'static str },
}

fn finished(job: &Value) -> bool {
    ["Complete", "Failed"].iter().any(|c| meta::condition(job, c).is_some_and(|c| c["status"] == "True"))
}

/// Decides the next step for `job` given the pods it controls.
pub fn reconcile_job(job: &Value, pods: &[Value], now: DateTime<Utc>) -> Vec<JobAction> {
    let mut actions = Vec::new();
    let stamp = meta::time_seconds(now);
    let completions = job["spec"]["completions"].as_i64().unwrap_or(1).max(0);
    let parallelism = job["spec"]["parallelism"].as_i64().unwrap_or(1).max(0);
    let backoff_limit = job["spec"]["backoffLimit"].as_i64().unwrap_or(6);
    let active: Vec<&Value> = pods.iter().filter(|p| is_pod_active(p)).collect();
    let succeeded = pods.iter().filter(|p| meta::pod_phase(p) == "Succeeded").count() as i64;
    let failed = pods.iter().filter(|p| meta::pod_phase(p) == "Failed").count() as i64;
    let mut conditions: Vec<Value> = job["status"]["conditions"].as_array().cloned().unwrap_or_default();
    let mut completion_time = job["status"]["completionTime"].clone();
    let was_finished = finished(job);
    let condition = |kind: &str, reason: &str, message: &str| {
        json!({"type": kind, "status": "True", "lastProbeTime": stamp, "lastTransitionTime": stamp, "reason": reason, "message": message})
    };

    if !was_finished && !meta::is_terminating(job) {
        if failed > backoff_limit {
            conditions.push(condition("FailureTarget", "BackoffLimitExceeded", "Job has reached the specified backoff limit"));
            conditions.push(condition("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit"));
            if !active.is_empty() {
                actions.push(JobAction::DeletePods(active.iter().map(|p| (meta::name(p).to_string(), meta::uid(p).to_string())).collect()));
            }
            actions.push(JobAction::Event { event_type: EventType::Warning, reason: "BackoffLimitExceeded", message: "Job has reached the specified backoff limit" });
        } else if succeeded >= completions {
            conditions.push(condition("SuccessCriteriaMet", "CompletionsReached", "Reached expected number of succeeded pods"));
            conditions.push(condition("Complete", "CompletionsReached", "Reached expected number of succeeded pods"));
            completion_time = json!(stamp);
            actions.push(JobAction::Event { event_type: EventType::Normal, reason: "Completed", message: "Job completed" });
        } else {
            let want = parallelism.min(completions - succeeded).max(0);
            let have = active.len() as i64;
            if want > have {
                actions.push(JobAction::CreatePods((want - have) as usize));
            }
        }
    }
    let start_time = job["status"]["startTime"].as_str().map(str::to_string).unwrap_or_else(|| stamp.clone());
    let mut status = json!({
        "startTime": start_time,
        "active": active.len(),
        "ready": active.iter().filter(|p| meta::is_pod_ready(p)).count(),
        "succeeded": succeeded,
        "failed": failed,
        "terminating": pods.iter().filter(|p| meta::is_terminating(p)).count(),
        "uncountedTerminatedPods": {},
    });
    if !conditions.is_empty() {
        status["conditions"] = json!(conditions);
    }
    if !completion_time.is_null() {
        status["completionTime"] = completion_time;
    }
    if let Some(m) = status.as_object_mut() {
        m.retain(|k, v| k == "ready" || k == "terminating" || v.as_i64() != Some(0));
    }
    if job["status"] != status {
        actions.insert(0, JobAction::UpdateStatus(status));
    }
    actions
}

pub struct JobController {
    client: ApiClient,
    jobs: Informer,
    pods: Informer,
    recorder: EventRecorder,
    clock: Clock,
}

impl JobController {
    pub fn spawn(client: ApiClient, pods: Informer, clock: Clock, tasks: &mut JoinSet<()>) {
        let jobs = Informer::new(resources::JOBS, ListParams::default());
        jobs.spawn(client.clone(), tasks);
        let queue: WorkQueue<ObjectName> = WorkQueue::default();
        let q = queue.clone();
        jobs.on_change(move |j| q.add(object_name(j)));
        let q = queue.clone();
        pods.on_change(move |pod| {
            if let Some(owner) = meta::controller_ref(pod)
                && owner.kind == "Job"
            {
                q.add((meta::namespace(pod).to_string(), owner.name));
            }
        });
        let controller = Arc::new(JobController {
            recorder: EventRecorder::new(client.clone(), "job-controller", None, clock.clone()),
            client,
            jobs,
            pods,
            clock,
        });
        tasks.spawn(async move {
            controller.jobs.wait_synced().await;
            controller.pods.wait_synced().await;
            let c = controller.clone();
            let all = move || c.jobs.list_shared().iter().filter(|j| !finished(j)).map(|o| object_name(o)).collect::<Vec<_>>();
            run_queue(queue, Duration::from_secs(2), all, 4, |key| {
                let c = controller.clone();
                async move { c.sync(&key).await }
            })
            .await;
        });
    }

    async fn sync(&self, key: &ObjectName) {
        let Some(job) = self.jobs.get(&key.0, &key.1) else { return };
        let uid = meta::uid(&job).to_string();
        let pods = self.pods.filter(|p| meta::namespace(p) == key.0 && meta::is_controlled_by(p, &uid));
        for action in reconcile_job(&job, &pods, self.clock.now()) {
            if let Err(e) = self.apply(&job, action).await {
                tracing::debug!(job = %key.1, error = %e, "job sync step failed; will retry");
                return;
            }
        }
    }

    async fn apply(&self, job: &Value, action: JobAction) -> Result<(), ClientError> {
        let ns = meta::namespace(job);
        match action {
            JobAction::CreatePods(count) => {
                let mut template = job["spec"]["template"].clone();
                for (k, v) in [
                    ("batch.kubernetes.io/controller-uid", meta::uid(job)),
                    ("batch.kubernetes.io/job-name", meta::name(job)),
                    ("controller-uid", meta::uid(job)),
                    ("job-name", meta::name(job)),
                ] {
                    template["metadata"]["labels"][k] = json!(v);
                }
                let pod = pod_from_template(job, &template, &format!("{}-", meta::name(job)));
                for _ in 0..count {
                    let created = self.client.create(&resources::PODS, Some(ns), &pod).await?;
                    self.pods.apply_write(&created);
                    self.recorder.normal(job, "SuccessfulCreate", &format!("Created pod: {}", meta::name(&created))).await;
                }
            }
            JobAction::DeletePods(pods) => {
                for (name, uid) in pods {
                    let params = DeleteParams { precondition_uid: Some(uid), ..DeleteParams::background() };
                    match self.client.delete(&resources::PODS, Some(ns), &name, &params).await {
                        Ok(_) => self.recorder.normal(job, "SuccessfulDelete", &format!("Deleted pod: {name}")).await,
                        Err(e) if e.is_not_found() => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            JobAction::UpdateStatus(status) => {
                let mut updated = self.jobs.get(ns, meta::name(job)).unwrap_or_else(|| job.clone());
                updated["status"] = status;
                let written = self.client.update_subresource(&resources::JOBS, Some(ns), meta::name(job), "status", &updated).await?;
                self.jobs.apply_write(&written);
            }
            JobAction::Event { event_type, reason, message } => self.recorder.record(job, None, event_type, reason, message).await,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(completions: i64, parallelism: i64) -> Value {
        json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "pi", "namespace": "default", "uid": "job-uid"},
            "spec": {"completions": completions, "parallelism": parallelism, "backoffLimit": 1,
                     "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "pi", "image": "perl"}]}}},
        })
    }

    fn pod(name: &str, phase: &str) -> Value {
        json!({"metadata": {"name": name, "uid": format!("{name}-uid")}, "status": {"phase": phase}})
    }

    fn now() -> DateTime<Utc> {
        meta::parse_time("2024-01-01T00:00:00Z").unwrap_or_default()
    }

    #[test]
    fn pods_are_started_up_to_parallelism() {
        let actions = reconcile_job(&job(3, 2), &[pod("a", "Succeeded")], now());
        assert!(actions.contains(&JobAction::CreatePods(2)));
        let actions = reconcile_job(&job(3, 2), &[pod("a", "Succeeded"), pod("b", "Succeeded"), pod("c", "Running")], now());
        assert!(!actions.iter().any(|a| matches!(a, JobAction::CreatePods(_))));
    }

    #[test]
    fn enough_successes_complete_the_job() {
        let actions = reconcile_job(&job(1, 1), &[pod("a", "Succeeded")], now());
        assert!(actions.contains(&JobAction::Event { event_type: EventType::Normal, reason: "Completed", message: "Job completed" }));
        let Some(JobAction::UpdateStatus(status)) = actions.first() else { panic!("expected status first: {actions:?}") };
        assert_eq!(status["succeeded"], 1);
        assert_eq!(status["completionTime"], "2024-01-01T00:00:00Z");
        assert!(status["conditions"].as_array().is_some_and(|c| c.iter().any(|c| c["type"] == "Complete")));
    }

    #[test]
    fn too_many_failures_fail_the_job() {
        let actions = reconcile_job(&job(1, 1), &[pod("a", "Failed"), pod("b", "Failed")], now());
        assert!(actions.iter().any(|a| matches!(a, JobAction::Event { reason: "BackoffLimitExceeded", .. })));
    }
}
