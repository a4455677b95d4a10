//! The replicaset controller: keeps `spec.replicas` pods (named by generateName `<rs>-`, with a
//! controller ownerReference) and reports status. Decisions are `reconcile_replica_set`, a
//! pure function of the ReplicaSet and the pods it controls. Adoption of orphaned pods and
//! slow-start batching are not modelled.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::client::{ApiClient, ClientError, DeleteParams, resources};
use crate::clock::Clock;

use super::events::{EventRecorder, EventType};
use super::informer::{Informer, ObjectName, WorkQueue, object_name, run_queue};
use super::meta;

#[derive(Clone, Debug, PartialEq)]
pub enum ReplicaSetAction {
    /// Create this many pods from the template.
    CreatePods(usize),
    /// Delete these pods (name, uid).
    DeletePods(Vec<(String, String)>),
    UpdateStatus(Value),
}

/// A pod that counts towards replicas: not being deleted and not finished.
pub fn is_pod_active(pod: &Value) -> bool {
    !meta::is_terminating(pod) && !matches!(meta::pod_phase(pod), "Succeeded" | "Failed")
}

/// The pod a ReplicaSet (or any pod-template owner) creates.
pub fn pod_from_template(owner: &Value, template: &Value, generate_name: &str) -> Value {
    let mut metadata = json!({
        "generateName": generate_name,
        "namespace": meta::namespace(owner),
        "ownerReferences": [meta::OwnerReference::controller_of(owner)],
    });
    if let Some(labels) = template["metadata"]["labels"].as_object() {
        metadata["labels"] = json!(labels);
    }
    if let Some(annotations) = template["metadata"]["annotations"].as_object() {
        metadata["annotations"] = json!(annotations);
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": template["spec"]})
}

/// Deletion preference, lowest first: unscheduled, pending, not ready, then newest — the real
/// controller's ranking, reduced to what the simulator's pods vary in.
fn deletion_rank(pod: &Value) -> (u8, u8, u8, std::cmp::Reverse<Option<DateTime<Utc>>>) {
    let scheduled = u8::from(pod["spec"]["nodeName"].as_str().is_some_and(|n| !n.is_empty()));
    let phase = match meta::pod_phase(pod) {
        "Pending" => 0,
        "Unknown" => 1,
        _ => 2,
    };
    let ready = u8::from(meta::is_pod_ready(pod));
    (scheduled, phase, ready, std::cmp::Reverse(meta::creation_timestamp(pod)))
}

/// Decides what ReplicaSet `rs` needs given the pods it controls.
pub fn reconcile_replica_set(rs: &Value, pods: &[Value], now: DateTime<Utc>) -> Vec<ReplicaSetAction> {
    let mut actions = Vec::new();
    let active: Vec<&Value> = pods.iter().filter(|p| is_pod_active(p)).collect();
    let desired = rs["spec"]["replicas"].as_i64().unwrap_or(1).max(0) as usize;
    if !meta::is_terminating(rs) {
        if active.len() < desired {
            actions.push(ReplicaSetAction::CreatePods(desired - active.len()));
        } else if active.len() > desired {
            let mut ranked = active.clone();
            ranked.sort_by_key(|p| deletion_rank(p));
            let doomed = ranked[..active.len() - desired]
                .iter()
                .map(|p| (meta::name(p).to_string(), meta::uid(p).to_string()))
                .collect();
            actions.push(ReplicaSetAction::DeletePods(doomed));
        }
    }
    let min_ready = rs["spec"]["minReadySeconds"].as_i64().unwrap_or(0);
    let template_labels = meta::string_map(&rs["spec"]["template"]["metadata"]["labels"]);
    let fully_labeled = active
        .iter()
        .filter(|p| {
            let labels = meta::labels(p);
            template_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
        })
        .count();
    let mut status = json!({
        "replicas": active.len(),
        "fullyLabeledReplicas": fully_labeled,
        "readyReplicas": active.iter().filter(|p| meta::is_pod_ready(p)).count(),
        "availableReplicas": active.iter().filter(|p| meta::is_pod_available(p, min_ready, now)).count(),
        "observedGeneration": meta::generation(rs),
    });
    if let Some(m) = status.as_object_mut() {
        m.retain(|k, v| k == "replicas" || k == "observedGeneration" || v.as_i64() != Some(0));
    }
    let mut current = rs["status"].clone();
    if let Some(m) = current.as_object_mut() {
        m.retain(|k, v| k == "replicas" || k == "observedGeneration" || v.as_i64() != Some(0));
        m.entry("replicas").or_insert(json!(0));
    }
    if current != status {
        actions.push(ReplicaSetAction::UpdateStatus(status));
    }
    actions
}

/// The running controller.
pub struct ReplicaSetController {
    client: ApiClient,
    replica_sets: Informer,
    pods: Informer,
    recorder: EventRecorder,
    clock: Clock,
}

impl ReplicaSetController {
    pub fn spawn(client: ApiClient, replica_sets: Informer, pods: Informer, clock: Clock, tasks: &mut JoinSet<()>) {
        let queue: WorkQueue<ObjectName> = WorkQueue::default();
        let q = queue.clone();
        replica_sets.on_change(move |rs| q.add(object_name(rs)));
        let q = queue.clone();
        pods.on_change(move |pod| {
            if let Some(owner) = meta::controller_ref(pod)
                && owner.kind == "ReplicaSet"
            {
                q.add((meta::namespace(pod).to_string(), owner.name));
            }
        });
        let controller = Arc::new(ReplicaSetController {
            recorder: EventRecorder::new(client.clone(), "replicaset-controller", None, clock.clone()),
            client,
            replica_sets,
            pods,
            clock,
        });
        tasks.spawn(async move {
            controller.replica_sets.wait_synced().await;
            controller.pods.wait_synced().await;
            let c = controller.clone();
            let all = move || c.replica_sets.list_shared().iter().map(|o| object_name(o)).collect::<Vec<_>>();
            run_queue(queue, Duration::from_secs(1), all, 8, |key| {
                let c = controller.clone();
                async move { c.sync(&key).await }
            })
            .await;
        });
    }

    async fn sync(&self, key: &ObjectName) {
        let Some(rs) = self.replica_sets.get(&key.0, &key.1) else { return };
        let rs_uid = meta::uid(&rs).to_string();
        let pods = self.pods.filter(|p| meta::namespace(p) == key.0 && meta::is_controlled_by(p, &rs_uid));
        for action in reconcile_replica_set(&rs, &pods, self.clock.now()) {
            if let Err(e) = self.apply(&rs, action).await {
                tracing::debug!(replicaset = %key.1, error = %e, "replicaset sync step failed; will retry");
                return;
            }
        }
    }

    async fn apply(&self, rs: &Value, action: ReplicaSetAction) -> Result<(), ClientError> {
        let ns = meta::namespace(rs);
        match action {
            ReplicaSetAction::CreatePods(count) => {
                let pod = pod_from_template(rs, &rs["spec"]["template"], &format!("{}-", meta::name(rs)));
                for _ in 0..count {
                    match self.client.create(&resources::PODS, Some(ns), &pod).await {
                        Ok(created) => {
                            self.pods.apply_write(&created);
                            self.recorder.normal(rs, "SuccessfulCreate", &format!("Created pod: {}", meta::name(&created))).await;
                        }
                        Err(e) => {
                            self.recorder.record(rs, None, EventType::Warning, "FailedCreate", &format!("Error creating: {e}")).await;
                            return Err(e);
                        }
                    }
                }
            }
            ReplicaSetAction::DeletePods(pods) => {
                for (name, uid) in pods {
                    let params = DeleteParams { precondition_uid: Some(uid), ..Default::default() };
                    match self.client.delete(&resources::PODS, Some(ns), &name, &params).await {
                        Ok(result) => {
                            if result["kind"] == "Pod" {
                                self.pods.apply_write(&result);
                            } else if let Some(pod) = self.pods.get(ns, &name) {
                                self.pods.apply_delete(&pod);
                            }
                            self.recorder.normal(rs, "SuccessfulDelete", &format!("Deleted pod: {name}")).await;
                        }
                        Err(e) if e.is_not_found() => {}
                        Err(e) => {
                            self.recorder.record(rs, None, EventType::Warning, "FailedDelete", &format!("Error deleting: {e}")).await;
                            return Err(e);
                        }
                    }
                }
            }
            ReplicaSetAction::UpdateStatus(status) => {
                let mut updated = self.replica_sets.get(ns, meta::name(rs)).unwrap_or_else(|| rs.clone());
                updated["status"] = status;
                let written = self.client.update_subresource(&resources::REPLICASETS, Some(ns), meta::name(rs), "status", &updated).await?;
                self.replica_sets.apply_write(&written);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs(replicas: i64) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "demo-abc", "namespace": "default", "uid": "rs-uid", "generation": 2},
            "spec": {"replicas": replicas, "template": {"metadata": {"labels": {"app": "demo"}}, "spec": {"containers": [{"name": "c", "image": "alpine"}]}}},
        })
    }

    fn pod(name: &str, node: Option<&str>, ready: bool, created: &str) -> Value {
        let mut p = json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("{name}-uid"), "labels": {"app": "demo"}, "creationTimestamp": created},
            "spec": {},
            "status": {"phase": if ready { "Running" } else { "Pending" }},
        });
        if let Some(n) = node {
            p["spec"]["nodeName"] = json!(n);
        }
        if ready {
            p["status"]["conditions"] = json!([{"type": "Ready", "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z"}]);
        }
        p
    }

    fn now() -> DateTime<Utc> {
        meta::parse_time("2024-01-01T00:10:00Z").unwrap_or_default()
    }

    #[test]
    fn missing_pods_are_created() {
        let actions = reconcile_replica_set(&rs(3), &[pod("a", Some("n"), true, "2024-01-01T00:00:00Z")], now());
        assert_eq!(actions[0], ReplicaSetAction::CreatePods(2));
    }

    #[test]
    fn surplus_deletes_unscheduled_and_unready_first() {
        let pods = vec![
            pod("ready-old", Some("n"), true, "2024-01-01T00:00:00Z"),
            pod("ready-new", Some("n"), true, "2024-01-01T00:05:00Z"),
            pod("pending", Some("n"), false, "2024-01-01T00:01:00Z"),
            pod("unscheduled", None, false, "2024-01-01T00:01:00Z"),
        ];
        let actions = reconcile_replica_set(&rs(1), &pods, now());
        assert_eq!(
            actions[0],
            ReplicaSetAction::DeletePods(vec![
                ("unscheduled".into(), "unscheduled-uid".into()),
                ("pending".into(), "pending-uid".into()),
                ("ready-new".into(), "ready-new-uid".into()),
            ])
        );
    }

    #[test]
    fn status_counts_ready_and_available() {
        let pods = vec![pod("a", Some("n"), true, "2024-01-01T00:00:00Z"), pod("b", Some("n"), false, "2024-01-01T00:00:00Z")];
        let actions = reconcile_replica_set(&rs(2), &pods, now());
        assert_eq!(
            actions,
            vec![ReplicaSetAction::UpdateStatus(json!({
                "replicas": 2, "fullyLabeledReplicas": 2, "readyReplicas": 1, "availableReplicas": 1, "observedGeneration": 2
            }))]
        );
    }

    #[test]
    fn pods_carry_the_controller_reference() {
        let p = pod_from_template(&rs(1), &rs(1)["spec"]["template"], "demo-abc-");
        assert_eq!(p["metadata"]["generateName"], "demo-abc-");
        assert_eq!(p["metadata"]["ownerReferences"][0]["kind"], "ReplicaSet");
        assert_eq!(p["metadata"]["ownerReferences"][0]["uid"], "rs-uid");
        assert_eq!(p["metadata"]["labels"]["app"], "demo");
    }
}
