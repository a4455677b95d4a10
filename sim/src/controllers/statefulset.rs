//! The statefulset controller with the default `OrderedReady` policy: pods `<sts>-<ordinal>`
//! created one at a time in ordinal order once their predecessors are Running and Ready,
//! removed highest ordinal first, and rolling updates that replace pods from the highest ordinal
//! down (honouring `partition`). Revisions are named `<sts>-<template hash>` and carried in the
//! `controller-revision-hash` label; ControllerRevision objects and volume claims are not made.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::client::{ApiClient, ClientError, DeleteParams, ListParams, resources};
use crate::clock::Clock;

use super::events::EventRecorder;
use super::informer::{Informer, ObjectName, WorkQueue, object_name, run_queue};
use super::meta;

pub const REVISION_LABEL: &str = "controller-revision-hash";
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

#[derive(Clone, Debug, PartialEq)]
pub enum StatefulSetAction {
    CreatePod(Value),
    DeletePod { name: String, uid: String },
    UpdateStatus(Value),
}

/// `<sts>-<hash>` of the current template.
pub fn update_revision(sts: &Value) -> String {
    let collisions = sts["status"]["collisionCount"].as_i64().unwrap_or(0);
    format!("{}-{}", meta::name(sts), meta::template_hash(&sts["spec"]["template"], collisions))
}

/// The ordinal of a pod named `<sts>-<n>`.
pub fn ordinal(sts_name: &str, pod_name: &str) -> Option<i64> {
    pod_name.strip_prefix(sts_name)?.strip_prefix('-')?.parse().ok()
}

fn running_and_ready(pod: &Value) -> bool {
    meta::pod_phase(pod) == "Running" && meta::is_pod_ready(pod) && !meta::is_terminating(pod)
}

/// The pod for `ordinal` at `revision`.
pub fn stateful_pod(sts: &Value, ordinal: i64, revision: &str) -> Value {
    let name = format!("{}-{ordinal}", meta::name(sts));
    let template = &sts["spec"]["template"];
    let mut labels = template["metadata"]["labels"].as_object().cloned().unwrap_or_default();
    labels.insert(REVISION_LABEL.into(), json!(revision));
    labels.insert(POD_NAME_LABEL.into(), json!(name));
    labels.insert(POD_INDEX_LABEL.into(), json!(ordinal.to_string()));
    let mut spec = template["spec"].clone();
    spec["hostname"] = json!(name);
    if let Some(service) = sts["spec"]["serviceName"].as_str().filter(|s| !s.is_empty()) {
        spec["subdomain"] = json!(service);
    }
    let mut metadata = json!({
        "name": name,
        "namespace": meta::namespace(sts),
        "labels": labels,
        "ownerReferences": [meta::OwnerReference::controller_of(sts)],
    });
    if let Some(a) = template["metadata"]["annotations"].as_object() {
        metadata["annotations"] = json!(a);
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec})
}

/// Decides the next step for StatefulSet `sts` given the pods it controls.
pub fn reconcile_stateful_set(sts: &Value, pods: &[Value], now: DateTime<Utc>) -> Vec<StatefulSetAction> {
    let name = meta::name(sts);
    let replicas = sts["spec"]["replicas"].as_i64().unwrap_or(1).max(0);
    let update_rev = update_revision(sts);
    let current_rev = sts["status"]["currentRevision"].as_str().filter(|s| !s.is_empty()).unwrap_or(&update_rev).to_string();
    let mut by_ordinal: Vec<(i64, &Value)> = pods.iter().filter_map(|p| ordinal(name, meta::name(p)).map(|o| (o, p))).collect();
    by_ordinal.sort_by_key(|(o, _)| *o);
    let get = |o: i64| by_ordinal.iter().find(|(i, _)| *i == o).map(|(_, p)| *p);
    let mut actions = Vec::new();

    if !meta::is_terminating(sts) {
        let mut step: Option<StatefulSetAction> = None;
        // Pods that failed are replaced, as the real controller does.
        for (_, p) in &by_ordinal {
            if matches!(meta::pod_phase(p), "Failed" | "Succeeded") && !meta::is_terminating(p) {
                step = Some(StatefulSetAction::DeletePod { name: meta::name(p).to_string(), uid: meta::uid(p).to_string() });
                break;
            }
        }
        if step.is_none() {
            for o in 0..replicas {
                match get(o) {
                    None => {
                        step = Some(StatefulSetAction::CreatePod(stateful_pod(sts, o, &update_rev)));
                        break;
                    }
                    Some(p) if !running_and_ready(p) => break,
                    Some(_) => {}
                }
            }
        }
        let all_ready = (0..replicas).all(|o| get(o).is_some_and(running_and_ready));
        if step.is_none() && all_ready {
            // Scale down, highest ordinal first, one at a time.
            if let Some((_, p)) = by_ordinal.iter().rev().find(|(o, _)| *o >= replicas) {
                if !meta::is_terminating(p) {
                    step = Some(StatefulSetAction::DeletePod { name: meta::name(p).to_string(), uid: meta::uid(p).to_string() });
                }
            } else if sts["spec"]["updateStrategy"]["type"].as_str().unwrap_or("RollingUpdate") == "RollingUpdate" {
                let partition = sts["spec"]["updateStrategy"]["rollingUpdate"]["partition"].as_i64().unwrap_or(0);
                let stale = (partition..replicas).rev().filter_map(get).find(|p| meta::labels(p).get(REVISION_LABEL) != Some(&update_rev));
                if let Some(p) = stale {
                    step = Some(StatefulSetAction::DeletePod { name: meta::name(p).to_string(), uid: meta::uid(p).to_string() });
                }
            }
        }
        actions.extend(step);
    }

    let live: Vec<&Value> = by_ordinal.iter().map(|(_, p)| *p).filter(|p| !meta::is_terminating(p)).collect();
    let min_ready = sts["spec"]["minReadySeconds"].as_i64().unwrap_or(0);
    let ready = live.iter().filter(|p| meta::is_pod_ready(p)).count() as i64;
    let updated = live.iter().filter(|p| meta::labels(p).get(REVISION_LABEL) == Some(&update_rev)).count() as i64;
    let mut current = live.iter().filter(|p| meta::labels(p).get(REVISION_LABEL) == Some(&current_rev)).count() as i64;
    let mut current_revision = current_rev.clone();
    if updated == replicas && ready == replicas && live.len() as i64 == replicas {
        current_revision = update_rev.clone();
        current = updated;
    }
    let mut status = json!({
        "observedGeneration": meta::generation(sts),
        "replicas": live.len(),
        "readyReplicas": ready,
        "currentReplicas": current,
        "updatedReplicas": updated,
        "availableReplicas": live.iter().filter(|p| meta::is_pod_available(p, min_ready, now)).count(),
        "currentRevision": current_revision,
        "updateRevision": update_rev,
        "collisionCount": sts["status"]["collisionCount"].as_i64().unwrap_or(0),
    });
    if let Some(m) = status.as_object_mut() {
        m.retain(|k, v| matches!(k.as_str(), "observedGeneration" | "replicas" | "availableReplicas" | "collisionCount" | "currentRevision" | "updateRevision") || v.as_i64() != Some(0));
    }
    if sts["status"] != status {
        actions.push(StatefulSetAction::UpdateStatus(status));
    }
    actions
}

pub struct StatefulSetController {
    client: ApiClient,
    stateful_sets: Informer,
    pods: Informer,
    recorder: EventRecorder,
    clock: Clock,
}

impl StatefulSetController {
    pub fn spawn(client: ApiClient, pods: Informer, clock: Clock, tasks: &mut JoinSet<()>) {
        let stateful_sets = Informer::new(resources::STATEFULSETS, ListParams::default());
        stateful_sets.spawn(client.clone(), tasks);
        let queue: WorkQueue<ObjectName> = WorkQueue::default();
        let q = queue.clone();
        stateful_sets.on_change(move |s| q.add(object_name(s)));
        let q = queue.clone();
        pods.on_change(move |pod| {
            if let Some(owner) = meta::controller_ref(pod)
                && owner.kind == "StatefulSet"
            {
                q.add((meta::namespace(pod).to_string(), owner.name));
            }
        });
        let controller = Arc::new(StatefulSetController {
            recorder: EventRecorder::new(client.clone(), "statefulset-controller", None, clock.clone()),
            client,
            stateful_sets,
            pods,
            clock,
        });
        tasks.spawn(async move {
            controller.stateful_sets.wait_synced().await;
            controller.pods.wait_synced().await;
            let c = controller.clone();
            let all = move || c.stateful_sets.list_shared().iter().map(|o| object_name(o)).collect::<Vec<_>>();
            run_queue(queue, Duration::from_secs(1), all, 4, |key| {
                let c = controller.clone();
                async move { c.sync(&key).await }
            })
            .await;
        });
    }

    async fn sync(&self, key: &ObjectName) {
        let Some(sts) = self.stateful_sets.get(&key.0, &key.1) else { return };
        let uid = meta::uid(&sts).to_string();
        let pods = self.pods.filter(|p| meta::namespace(p) == key.0 && meta::is_controlled_by(p, &uid));
        for action in reconcile_stateful_set(&sts, &pods, self.clock.now()) {
            if let Err(e) = self.apply(&sts, action).await {
                tracing::debug!(statefulset = %key.1, error = %e, "statefulset sync step failed; will retry");
                return;
            }
        }
    }

    async fn apply(&self, sts: &Value, action: StatefulSetAction) -> Result<(), ClientError> {
        let ns = meta::namespace(sts);
        let sts_name = meta::name(sts);
        match action {
            StatefulSetAction::CreatePod(pod) => match self.client.create(&resources::PODS, Some(ns), &pod).await {
                Ok(created) => {
                    self.pods.apply_write(&created);
                    let message = format!("create Pod {} in StatefulSet {sts_name} successful", meta::name(&created));
                    self.recorder.normal(sts, "SuccessfulCreate", &message).await;
                }
                Err(e) if e.code() == Some(409) => {}
                Err(e) => {
                    let message = format!("create Pod {} in StatefulSet {sts_name} failed error: {e}", meta::name(&pod));
                    self.recorder.record(sts, None, super::events::EventType::Warning, "FailedCreate", &message).await;
                    return Err(e);
                }
            },
            StatefulSetAction::DeletePod { name, uid } => {
                let params = DeleteParams { precondition_uid: Some(uid), ..Default::default() };
                match self.client.delete(&resources::PODS, Some(ns), &name, &params).await {
                    Ok(result) => {
                        if result["kind"] == "Pod" {
                            self.pods.apply_write(&result);
                        } else if let Some(p) = self.pods.get(ns, &name) {
                            self.pods.apply_delete(&p);
                        }
                        self.recorder.normal(sts, "SuccessfulDelete", &format!("delete Pod {name} in StatefulSet {sts_name} successful")).await;
                    }
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e),
                }
            }
            StatefulSetAction::UpdateStatus(status) => {
                let mut updated = self.stateful_sets.get(ns, sts_name).unwrap_or_else(|| sts.clone());
                updated["status"] = status;
                let written = self.client.update_subresource(&resources::STATEFULSETS, Some(ns), sts_name, "status", &updated).await?;
                self.stateful_sets.apply_write(&written);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sts(replicas: i64, image: &str) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "web", "namespace": "default", "uid": "sts-uid", "generation": 1},
            "spec": {"replicas": replicas, "serviceName": "web", "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "nginx", "image": image}]}}},
        })
    }

    fn ready(mut pod: Value) -> Value {
        pod["metadata"]["uid"] = json!(format!("{}-uid", meta::name(&pod)));
        pod["status"] = json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]});
        pod
    }

    fn now() -> DateTime<Utc> {
        meta::parse_time("2024-01-01T00:00:00Z").unwrap_or_default()
    }

    #[test]
    fn pods_are_created_in_order_once_predecessors_are_ready() {
        let s = sts(3, "nginx:1");
        let actions = reconcile_stateful_set(&s, &[], now());
        let StatefulSetAction::CreatePod(p0) = &actions[0] else { panic!("expected a create, got {actions:?}") };
        assert_eq!(meta::name(p0), "web-0");
        assert_eq!(p0["spec"]["hostname"], "web-0");
        assert_eq!(p0["spec"]["subdomain"], "web");
        assert_eq!(p0["metadata"]["labels"][REVISION_LABEL], json!(update_revision(&s)));

        // web-0 exists but is not ready: nothing is created.
        let mut pending = p0.clone();
        pending["metadata"]["uid"] = json!("u0");
        assert!(!reconcile_stateful_set(&s, &[pending], now()).iter().any(|a| matches!(a, StatefulSetAction::CreatePod(_))));
        let actions = reconcile_stateful_set(&s, &[ready(p0.clone())], now());
        assert!(matches!(&actions[0], StatefulSetAction::CreatePod(p) if meta::name(p) == "web-1"));
    }

    #[test]
    fn updates_replace_the_highest_ordinal_first() {
        let old = sts(3, "nginx:1");
        let rev = update_revision(&old);
        let pods: Vec<Value> = (0..3).map(|o| ready(stateful_pod(&old, o, &rev))).collect();
        let mut new = sts(3, "nginx:2");
        new["status"] = json!({"currentRevision": rev});
        let actions = reconcile_stateful_set(&new, &pods, now());
        assert!(matches!(&actions[0], StatefulSetAction::DeletePod { name, .. } if name == "web-2"));
        match actions.last() {
            Some(StatefulSetAction::UpdateStatus(s)) => {
                assert_eq!(s["currentRevision"], json!(rev));
                assert_eq!(s["updateRevision"], json!(update_revision(&new)));
                assert_eq!(s["currentReplicas"], 3);
            }
            other => panic!("expected status, got {other:?}"),
        }
    }

    #[test]
    fn scale_down_removes_the_highest_ordinal() {
        let s = sts(1, "nginx:1");
        let rev = update_revision(&s);
        let pods: Vec<Value> = (0..3).map(|o| ready(stateful_pod(&s, o, &rev))).collect();
        let actions = reconcile_stateful_set(&s, &pods, now());
        assert!(matches!(&actions[0], StatefulSetAction::DeletePod { name, .. } if name == "web-2"));
    }
}
