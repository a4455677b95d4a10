//! The deployment controller: one ReplicaSet per pod template (named `<deployment>-<hash>`,
//! labelled `pod-template-hash`), rolling updates bounded by maxSurge/maxUnavailable, scaling
//! (proportional during a rollout), revision annotations, history cleanup and status with the
//! Available/Progressing conditions. The decisions are `reconcile_deployment`, a pure function
//! of the Deployment and its ReplicaSets; one call takes one step, like one sync of the real
//! controller. Recreate strategy, pausing and rollbacks are not modelled.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::client::{ApiClient, DeleteParams, ListParams, resources};
use crate::clock::Clock;

use super::events::EventRecorder;
use super::informer::{Informer, ObjectName, WorkQueue, object_name, run_queue};
use super::meta;

pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
pub const DESIRED_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/max-replicas";
pub const POD_TEMPLATE_HASH_LABEL: &str = "pod-template-hash";

/// One write the deployment controller decided on.
#[derive(Clone, Debug, PartialEq)]
pub enum DeploymentAction {
    /// Set the Deployment's `deployment.kubernetes.io/revision` annotation.
    SetRevision(String),
    /// Create the new ReplicaSet; `event` is the ScalingReplicaSet message when it starts above 0.
    CreateReplicaSet { replica_set: Value, event: Option<String> },
    /// Set a ReplicaSet's replicas and annotations; `event` is the ScalingReplicaSet message.
    UpdateReplicaSet { name: String, replicas: i64, annotations: BTreeMap<String, String>, event: Option<String> },
    /// Delete an old, empty ReplicaSet beyond revisionHistoryLimit.
    DeleteReplicaSet { name: String, uid: String },
    /// Replace the Deployment's status.
    UpdateStatus(Value),
}

fn spec_replicas(o: &Value) -> i64 {
    o["spec"]["replicas"].as_i64().unwrap_or(1)
}
fn status_i64(o: &Value, field: &str) -> i64 {
    o["status"][field].as_i64().unwrap_or(0)
}
fn revision(rs: &Value) -> i64 {
    meta::annotation(rs, REVISION_ANNOTATION).and_then(|r| r.parse().ok()).unwrap_or(0)
}

/// maxSurge (rounded up) and maxUnavailable (rounded down) for `d`; both zero becomes
/// maxUnavailable 1, as the real controller does.
pub fn surge_and_unavailable(d: &Value) -> (i64, i64) {
    let replicas = spec_replicas(d);
    let rolling = &d["spec"]["strategy"]["rollingUpdate"];
    let surge = meta::resolve_int_or_percent(&rolling["maxSurge"], replicas, true, "25%");
    let unavailable = meta::resolve_int_or_percent(&rolling["maxUnavailable"], replicas, false, "25%");
    if surge == 0 && unavailable == 0 { (0, 1) } else { (surge, unavailable.min(replicas)) }
}

/// The template with the pod-template-hash label removed, for comparing RS templates.
fn template_without_hash(template: &Value) -> Value {
    let mut t = template.clone();
    if let Some(labels) = t["metadata"]["labels"].as_object_mut() {
        labels.remove(POD_TEMPLATE_HASH_LABEL);
        if labels.is_empty() {
            t["metadata"].as_object_mut().map(|m| m.remove("labels"));
        }
    }
    t
}

/// The pod-template-hash of `d`'s current template.
pub fn pod_template_hash(d: &Value) -> String {
    let collisions = d["status"]["collisionCount"].as_i64().unwrap_or(0);
    meta::template_hash(&d["spec"]["template"], collisions)
}

/// How many replicas the new ReplicaSet may have now (the real `NewRSNewReplicas`).
fn new_rs_new_replicas(d: &Value, all_replicas: i64, new_replicas: i64) -> i64 {
    let desired = spec_replicas(d);
    let (surge, _) = surge_and_unavailable(d);
    let max_total = desired + surge;
    if all_replicas >= max_total {
        return new_replicas;
    }
    let scale_up = (max_total - all_replicas).min(desired - new_replicas);
    new_replicas + scale_up.max(0)
}

fn scaling_message(name: &str, from: i64, to: i64) -> String {
    if to > from { format!("Scaled up replica set {name} to {to}") } else { format!("Scaled down replica set {name} to {to}") }
}

fn replica_annotations(d: &Value) -> BTreeMap<String, String> {
    let (surge, _) = surge_and_unavailable(d);
    let desired = spec_replicas(d);
    BTreeMap::from([
        (DESIRED_REPLICAS_ANNOTATION.to_string(), desired.to_string()),
        (MAX_REPLICAS_ANNOTATION.to_string(), (desired + surge).to_string()),
    ])
}

fn scale_action(d: &Value, rs: &Value, replicas: i64, extra: &BTreeMap<String, String>) -> DeploymentAction {
    let from = spec_replicas(rs);
    let mut annotations = replica_annotations(d);
    annotations.extend(extra.clone());
    DeploymentAction::UpdateReplicaSet {
        name: meta::name(rs).to_string(),
        replicas,
        annotations,
        event: (from != replicas).then(|| scaling_message(meta::name(rs), from, replicas)),
    }
}

/// The new ReplicaSet object for `d` at `revision` with `replicas`.
fn new_replica_set(d: &Value, hash: &str, replicas: i64, revision: i64) -> Value {
    let mut template = d["spec"]["template"].clone();
    template["metadata"]["labels"][POD_TEMPLATE_HASH_LABEL] = json!(hash);
    let mut selector = d["spec"]["selector"].clone();
    selector["matchLabels"][POD_TEMPLATE_HASH_LABEL] = json!(hash);
    let mut annotations: serde_json::Map<String, Value> = replica_annotations(d).into_iter().map(|(k, v)| (k, json!(v))).collect();
    annotations.insert(REVISION_ANNOTATION.to_string(), json!(revision.to_string()));
    json!({
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": format!("{}-{hash}", meta::name(d)),
            "namespace": meta::namespace(d),
            "labels": template["metadata"]["labels"],
            "annotations": annotations,
            "ownerReferences": [meta::OwnerReference::controller_of(d)],
        },
        "spec": {
            "replicas": replicas,
            "minReadySeconds": d["spec"]["minReadySeconds"].as_i64().unwrap_or(0),
            "selector": selector,
            "template": template,
        },
    })
}

/// Decides the next step for Deployment `d` given the ReplicaSets it controls.
pub fn reconcile_deployment(d: &Value, replica_sets: &[Value], now: DateTime<Utc>) -> Vec<DeploymentAction> {
    let mut actions = Vec::new();
    if meta::is_terminating(d) {
        // The garbage collector removes the ReplicaSets; only status is kept current.
        if let Some(status) = compute_status(d, None, replica_sets, now, false) {
            actions.push(DeploymentAction::UpdateStatus(status));
        }
        return actions;
    }
    let hash = pod_template_hash(d);
    let wanted_template = template_without_hash(&d["spec"]["template"]);
    let mut sorted: Vec<&Value> = replica_sets.iter().collect();
    sorted.sort_by_key(|rs| (meta::creation_timestamp(rs), meta::name(rs).to_string()));
    let new_rs = sorted
        .iter()
        .find(|rs| meta::labels(rs).get(POD_TEMPLATE_HASH_LABEL) == Some(&hash))
        .or_else(|| sorted.iter().find(|rs| template_without_hash(&rs["spec"]["template"]) == wanted_template))
        .copied();
    let old: Vec<&Value> = sorted.iter().copied().filter(|rs| Some(meta::uid(rs)) != new_rs.map(meta::uid)).collect();
    let max_old_revision = old.iter().map(|rs| revision(rs)).max().unwrap_or(0);
    let desired = spec_replicas(d);
    let all_replicas: i64 = replica_sets.iter().map(spec_replicas).sum();

    let Some(new_rs) = new_rs else {
        // Create the new ReplicaSet: the first step of a rollout (or of a new Deployment).
        let new_revision = max_old_revision + 1;
        let replicas = new_rs_new_replicas(d, all_replicas, 0);
        let rs = new_replica_set(d, &hash, replicas, new_revision);
        let rs_name = meta::name(&rs).to_string();
        if meta::annotation(d, REVISION_ANNOTATION) != Some(new_revision.to_string().as_str()) {
            actions.push(DeploymentAction::SetRevision(new_revision.to_string()));
        }
        actions.push(DeploymentAction::CreateReplicaSet {
            replica_set: rs.clone(),
            event: (replicas > 0).then(|| format!("Scaled up replica set {rs_name} to {replicas}")),
        });
        let mut all = replica_sets.to_vec();
        all.push(rs);
        let created = all.last().cloned();
        if let Some(status) = compute_status(d, created.as_ref(), &all, now, true) {
            actions.push(DeploymentAction::UpdateStatus(status));
        }
        return actions;
    };

    // Keep the revision annotations in step: the new ReplicaSet is always the newest revision.
    let new_revision = if revision(new_rs) > max_old_revision { revision(new_rs) } else { max_old_revision + 1 };
    let mut revision_extra = BTreeMap::new();
    if revision(new_rs) != new_revision {
        revision_extra.insert(REVISION_ANNOTATION.to_string(), new_revision.to_string());
    }
    if meta::annotation(d, REVISION_ANNOTATION) != Some(new_revision.to_string().as_str()) {
        actions.push(DeploymentAction::SetRevision(new_revision.to_string()));
    }

    let active: Vec<&Value> = sorted.iter().copied().filter(|rs| spec_replicas(rs) > 0).collect();
    let is_scaling_event = active
        .iter()
        .chain(std::iter::once(&new_rs))
        .any(|rs| meta::annotation(rs, DESIRED_REPLICAS_ANNOTATION).is_some_and(|v| v != desired.to_string()));

    let mut scaled = Vec::new();
    if is_scaling_event {
        scaled = scale(d, new_rs, &old, &active, &revision_extra);
    }
    if scaled.is_empty() {
        // Rolling update: scale the new ReplicaSet up, else the old ones down.
        let new_replicas = spec_replicas(new_rs);
        let target = if new_replicas > desired { desired } else { new_rs_new_replicas(d, all_replicas, new_replicas) };
        if target != new_replicas || !revision_extra.is_empty() {
            scaled.push(scale_action(d, new_rs, target, &revision_extra));
        }
        if target == new_replicas {
            scaled.extend(scale_down_old(d, new_rs, &old, all_replicas));
        }
    }
    let scaled_any = !scaled.is_empty();
    actions.extend(scaled.iter().cloned());

    // Project the writes onto the ReplicaSets to compute the status the next state implies.
    let projected: Vec<Value> = replica_sets
        .iter()
        .map(|rs| {
            let mut rs = rs.clone();
            for a in &scaled {
                if let DeploymentAction::UpdateReplicaSet { name, replicas, .. } = a
                    && name == meta::name(&rs)
                {
                    rs["spec"]["replicas"] = json!(replicas);
                }
            }
            rs
        })
        .collect();
    let projected_new = projected.iter().find(|rs| meta::uid(rs) == meta::uid(new_rs));

    if !scaled_any {
        actions.extend(cleanup_history(d, &old));
    }
    if let Some(status) = compute_status(d, projected_new, &projected, now, false) {
        actions.push(DeploymentAction::UpdateStatus(status));
    }
    actions
}

/// Scaling a Deployment whose replicas changed: one active ReplicaSet takes it all; during a
/// rollout the difference is spread proportionally (newest first on the way up).
fn scale(d: &Value, new_rs: &Value, old: &[&Value], active: &[&Value], extra: &BTreeMap<String, String>) -> Vec<DeploymentAction> {
    let desired = spec_replicas(d);
    let mut actions = Vec::new();
    if active.len() <= 1 {
        let target = active.first().copied().unwrap_or(new_rs);
        let rs_extra = if meta::uid(target) == meta::uid(new_rs) { extra.clone() } else { BTreeMap::new() };
        actions.push(scale_action(d, target, desired, &rs_extra));
        return actions;
    }
    let new_saturated = spec_replicas(new_rs) == desired && status_i64(new_rs, "availableReplicas") == desired;
    if new_saturated {
        for rs in old.iter().filter(|rs| spec_replicas(rs) > 0) {
            actions.push(scale_action(d, rs, 0, &BTreeMap::new()));
        }
        return actions;
    }
    let (surge, _) = surge_and_unavailable(d);
    let allowed = desired + surge;
    let current: i64 = active.iter().map(|rs| spec_replicas(rs)).sum();
    let to_add = allowed - current;
    let mut order: Vec<&Value> = active.to_vec();
    // Largest first; ties go to the newest for scale-up, the oldest for scale-down.
    order.sort_by(|a, b| {
        spec_replicas(b).cmp(&spec_replicas(a)).then_with(|| {
            let (ta, tb) = (meta::creation_timestamp(a), meta::creation_timestamp(b));
            if to_add > 0 { tb.cmp(&ta) } else { ta.cmp(&tb) }
        })
    });
    let mut added = 0;
    let mut targets: Vec<(&Value, i64)> = Vec::new();
    for rs in &order {
        let share = if current > 0 { spec_replicas(rs) * to_add / current } else { 0 };
        added += share;
        targets.push((rs, spec_replicas(rs) + share));
    }
    if let Some(first) = targets.first_mut() {
        first.1 = (first.1 + to_add - added).max(0);
    }
    for (rs, replicas) in targets {
        let rs_extra = if meta::uid(rs) == meta::uid(new_rs) { extra.clone() } else { BTreeMap::new() };
        actions.push(scale_action(d, rs, replicas.max(0), &rs_extra));
    }
    if actions.iter().all(|a| matches!(a, DeploymentAction::UpdateReplicaSet { event: None, .. })) {
        // Only annotations change; still worth writing so the scaling event is settled.
        return actions;
    }
    actions
}

/// The real `reconcileOldReplicaSets`: clean up unhealthy old replicas, then scale old
/// ReplicaSets down while keeping `replicas - maxUnavailable` available.
fn scale_down_old(d: &Value, new_rs: &Value, old: &[&Value], all_replicas: i64) -> Vec<DeploymentAction> {
    let old_count: i64 = old.iter().map(|rs| spec_replicas(rs)).sum();
    if old_count == 0 {
        return Vec::new();
    }
    let desired = spec_replicas(d);
    let (_, max_unavailable) = surge_and_unavailable(d);
    let min_available = desired - max_unavailable;
    let new_unavailable = spec_replicas(new_rs) - status_i64(new_rs, "availableReplicas");
    let max_scaled_down = all_replicas - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return Vec::new();
    }
    let mut targets: BTreeMap<String, (i64, &Value)> = old.iter().map(|rs| (meta::name(rs).to_string(), (spec_replicas(rs), *rs))).collect();
    // Unhealthy replicas first: they do not count towards availability anyway.
    let mut cleaned = 0;
    for rs in old {
        if cleaned >= max_scaled_down {
            break;
        }
        let replicas = spec_replicas(rs);
        let unhealthy = replicas - status_i64(rs, "availableReplicas");
        if replicas == 0 || unhealthy <= 0 {
            continue;
        }
        let down = unhealthy.min(max_scaled_down - cleaned);
        cleaned += down;
        if let Some(t) = targets.get_mut(meta::name(rs)) {
            t.0 = replicas - down;
        }
    }
    let available: i64 = old.iter().map(|rs| status_i64(rs, "availableReplicas")).sum::<i64>() + status_i64(new_rs, "availableReplicas");
    if available > min_available {
        let mut total_down = available - min_available;
        for rs in old {
            if total_down <= 0 {
                break;
            }
            let Some(t) = targets.get_mut(meta::name(rs)) else { continue };
            if t.0 == 0 {
                continue;
            }
            let down = t.0.min(total_down);
            t.0 -= down;
            total_down -= down;
        }
    }
    old.iter()
        .filter_map(|rs| {
            let (target, _) = targets.get(meta::name(rs))?;
            (*target != spec_replicas(rs)).then(|| scale_action(d, rs, *target, &BTreeMap::new()))
        })
        .collect()
}

/// Deletes empty old ReplicaSets beyond `revisionHistoryLimit` (default 10), oldest first.
fn cleanup_history(d: &Value, old: &[&Value]) -> Vec<DeploymentAction> {
    let limit = d["spec"]["revisionHistoryLimit"].as_i64().unwrap_or(10).max(0) as usize;
    let empty: Vec<&&Value> = old
        .iter()
        .filter(|rs| spec_replicas(rs) == 0 && status_i64(rs, "replicas") == 0 && !meta::is_terminating(rs))
        .collect();
    if empty.len() <= limit {
        return Vec::new();
    }
    empty[..empty.len() - limit]
        .iter()
        .map(|rs| DeploymentAction::DeleteReplicaSet { name: meta::name(rs).to_string(), uid: meta::uid(rs).to_string() })
        .collect()
}

fn set_condition(conditions: &mut Vec<Value>, condition: Value, keep_if_same_reason: bool) {
    if let Some(existing) = conditions.iter_mut().find(|c| c["type"] == condition["type"]) {
        if keep_if_same_reason && existing["status"] == condition["status"] && existing["reason"] == condition["reason"] {
            return;
        }
        let mut condition = condition;
        if existing["status"] == condition["status"] {
            condition["lastTransitionTime"] = existing["lastTransitionTime"].clone();
        }
        *existing = condition;
    } else {
        conditions.push(condition);
    }
}

fn new_condition(kind: &str, status: bool, reason: &str, message: &str, now: DateTime<Utc>) -> Value {
    let t = meta::time_seconds(now);
    json!({
        "type": kind,
        "status": if status { "True" } else { "False" },
        "lastUpdateTime": t,
        "lastTransitionTime": t,
        "reason": reason,
        "message": message,
    })
}

/// The status `d` should have, or None when it already has it.
fn compute_status(d: &Value, new_rs: Option<&Value>, replica_sets: &[Value], now: DateTime<Utc>, created_new: bool) -> Option<Value> {
    let desired = spec_replicas(d);
    let total_spec: i64 = replica_sets.iter().map(spec_replicas).sum();
    let replicas: i64 = replica_sets.iter().map(|rs| status_i64(rs, "replicas")).sum();
    let ready: i64 = replica_sets.iter().map(|rs| status_i64(rs, "readyReplicas")).sum();
    let available: i64 = replica_sets.iter().map(|rs| status_i64(rs, "availableReplicas")).sum();
    let updated = new_rs.map(|rs| status_i64(rs, "replicas")).unwrap_or(0);
    let old_status = &d["status"];
    let mut conditions: Vec<Value> = old_status["conditions"].as_array().cloned().unwrap_or_default();
    let (_, max_unavailable) = surge_and_unavailable(d);
    if available >= desired - max_unavailable {
        set_condition(&mut conditions, new_condition("Available", true, "MinimumReplicasAvailable", "Deployment has minimum availability.", now), true);
    } else {
        set_condition(&mut conditions, new_condition("Available", false, "MinimumReplicasUnavailable", "Deployment does not have minimum availability.", now), true);
    }
    if let Some(rs) = new_rs {
        let rs_name = meta::name(rs);
        let generation_seen = meta::generation(d);
        let complete = updated == desired && replicas == desired && available == desired;
        let old_replicas = old_status["replicas"].as_i64().unwrap_or(0) - old_status["updatedReplicas"].as_i64().unwrap_or(0);
        let progressing = updated > old_status["updatedReplicas"].as_i64().unwrap_or(0)
            || replicas - updated < old_replicas
            || ready > old_status["readyReplicas"].as_i64().unwrap_or(0)
            || available > old_status["availableReplicas"].as_i64().unwrap_or(0);
        let current = conditions.iter().find(|c| c["type"] == "Progressing").cloned();
        if created_new {
            set_condition(&mut conditions, new_condition("Progressing", true, "NewReplicaSetCreated", &format!("Created new replica set \"{rs_name}\""), now), false);
        } else if complete && generation_seen > 0 {
            if current.as_ref().is_none_or(|c| c["reason"] != "NewReplicaSetAvailable") {
                set_condition(
                    &mut conditions,
                    new_condition("Progressing", true, "NewReplicaSetAvailable", &format!("ReplicaSet \"{rs_name}\" has successfully progressed."), now),
                    false,
                );
            }
        } else if progressing {
            set_condition(
                &mut conditions,
                new_condition("Progressing", true, "ReplicaSetUpdated", &format!("ReplicaSet \"{rs_name}\" is progressing."), now),
                false,
            );
        } else if current.is_none() {
            set_condition(&mut conditions, new_condition("Progressing", true, "FoundNewReplicaSet", &format!("Found new replica set \"{rs_name}\""), now), false);
        } else if let Some(c) = &current {
            let deadline = d["spec"]["progressDeadlineSeconds"].as_i64().unwrap_or(600);
            let last_update = c["lastUpdateTime"].as_str().and_then(meta::parse_time);
            let timed_out = c["reason"] != "NewReplicaSetAvailable"
                && c["reason"] != "ProgressDeadlineExceeded"
                && last_update.is_some_and(|t| t + chrono::Duration::seconds(deadline) < now);
            if timed_out {
                set_condition(
                    &mut conditions,
                    new_condition("Progressing", false, "ProgressDeadlineExceeded", &format!("ReplicaSet \"{rs_name}\" has timed out progressing."), now),
                    false,
                );
            }
        }
    }
    // Available first, then Progressing, as the apiserver returns them.
    conditions.sort_by_key(|c| if c["type"] == "Available" { 0 } else { 1 });
    let mut status = json!({
        "observedGeneration": meta::generation(d),
        "replicas": replicas,
        "updatedReplicas": updated,
        "readyReplicas": ready,
        "availableReplicas": available,
        "unavailableReplicas": (total_spec - available).max(0),
        "conditions": conditions,
    });
    if let Some(c) = d["status"]["collisionCount"].as_i64() {
        status["collisionCount"] = json!(c);
    }
    // Zero counts are omitted on the wire.
    if let Some(m) = status.as_object_mut() {
        m.retain(|k, v| k == "observedGeneration" || v.as_i64() != Some(0));
    }
    let mut old_cmp = d["status"].clone();
    if let Some(m) = old_cmp.as_object_mut() {
        m.retain(|k, v| k == "observedGeneration" || v.as_i64() != Some(0));
    }
    (old_cmp != status).then_some(status)
}

/// The running controller: informers on Deployments and ReplicaSets, one work queue.
pub struct DeploymentController {
    client: ApiClient,
    deployments: Informer,
    replica_sets: Informer,
    recorder: EventRecorder,
    clock: Clock,
}

impl DeploymentController {
    pub fn spawn(client: ApiClient, replica_sets: Informer, clock: Clock, tasks: &mut JoinSet<()>) {
        let deployments = Informer::new(resources::DEPLOYMENTS, ListParams::default());
        deployments.spawn(client.clone(), tasks);
        let queue: WorkQueue<ObjectName> = WorkQueue::default();
        let q = queue.clone();
        deployments.on_change(move |d| q.add(object_name(d)));
        let q = queue.clone();
        replica_sets.on_change(move |rs| {
            if let Some(owner) = meta::controller_ref(rs)
                && owner.kind == "Deployment"
            {
                q.add((meta::namespace(rs).to_string(), owner.name));
            }
        });
        let controller = Arc::new(DeploymentController {
            recorder: EventRecorder::new(client.clone(), "deployment-controller", None, clock.clone()),
            client,
            deployments,
            replica_sets,
            clock,
        });
        tasks.spawn(async move {
            controller.deployments.wait_synced().await;
            controller.replica_sets.wait_synced().await;
            let c = controller.clone();
            let all = move || c.deployments.list_shared().iter().map(|o| object_name(o)).collect::<Vec<_>>();
            run_queue(queue, Duration::from_secs(2), all, 8, |key| {
                let c = controller.clone();
                async move { c.sync(&key).await }
            })
            .await;
        });
    }

    async fn sync(&self, key: &ObjectName) {
        let Some(d) = self.deployments.get(&key.0, &key.1) else { return };
        let owned = self.replica_sets.filter(|rs| meta::namespace(rs) == key.0 && meta::is_controlled_by(rs, meta::uid(&d)));
        let actions = reconcile_deployment(&d, &owned, self.clock.now());
        for action in actions {
            if let Err(e) = self.apply(&d, action).await {
                tracing::debug!(deployment = %key.1, error = %e, "deployment sync step failed; will retry");
                return;
            }
        }
    }

    async fn apply(&self, d: &Value, action: DeploymentAction) -> Result<(), crate::client::ClientError> {
        let ns = Some(meta::namespace(d));
        match action {
            DeploymentAction::SetRevision(revision) => {
                let mut updated = self.deployments.get(meta::namespace(d), meta::name(d)).unwrap_or_else(|| d.clone());
                updated["metadata"]["annotations"][REVISION_ANNOTATION] = json!(revision);
                let written = self.client.update(&resources::DEPLOYMENTS, ns, meta::name(d), &updated).await?;
                self.deployments.apply_write(&written);
            }
            DeploymentAction::CreateReplicaSet { replica_set, event } => {
                match self.client.create(&resources::REPLICASETS, ns, &replica_set).await {
                    Ok(created) => {
                        if let Some(message) = event {
                            self.recorder.normal(d, "ScalingReplicaSet", &message).await;
                        }
                        self.replica_sets.apply_write(&created);
                    }
                    Err(e) if e.code() == Some(409) => {
                        // A ReplicaSet of that name with another template: bump collisionCount.
                        let mut updated = self.deployments.get(meta::namespace(d), meta::name(d)).unwrap_or_else(|| d.clone());
                        let count = updated["status"]["collisionCount"].as_i64().unwrap_or(0) + 1;
                        updated["status"]["collisionCount"] = json!(count);
                        let written = self.client.update_subresource(&resources::DEPLOYMENTS, ns, meta::name(d), "status", &updated).await?;
                        self.deployments.apply_write(&written);
                        return Err(e);
                    }
                    Err(e) => return Err(e),
                }
            }
            DeploymentAction::UpdateReplicaSet { name, replicas, annotations, event } => {
                let Some(mut rs) = self.replica_sets.get(meta::namespace(d), &name) else { return Ok(()) };
                rs["spec"]["replicas"] = json!(replicas);
                for (k, v) in annotations {
                    rs["metadata"]["annotations"][k] = json!(v);
                }
                let written = self.client.update(&resources::REPLICASETS, ns, &name, &rs).await?;
                self.replica_sets.apply_write(&written);
                if let Some(message) = event {
                    self.recorder.normal(d, "ScalingReplicaSet", &message).await;
                }
            }
            DeploymentAction::DeleteReplicaSet { name, uid } => {
                let params = DeleteParams { precondition_uid: Some(uid), ..DeleteParams::background() };
                match self.client.delete(&resources::REPLICASETS, ns, &name, &params).await {
                    Ok(_) | Err(crate::client::ClientError::Api { code: 404, .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            DeploymentAction::UpdateStatus(status) => {
                let mut updated = self.deployments.get(meta::namespace(d), meta::name(d)).unwrap_or_else(|| d.clone());
                updated["status"] = status;
                let written = self.client.update_subresource(&resources::DEPLOYMENTS, ns, meta::name(d), "status", &updated).await?;
                self.deployments.apply_write(&written);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        meta::parse_time("2024-01-01T00:00:00Z").unwrap_or_default()
    }

    fn deployment(replicas: i64, image: &str) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "demo", "namespace": "default", "uid": "d-uid", "generation": 1, "resourceVersion": "1"},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "demo"}},
                "template": {"metadata": {"labels": {"app": "demo"}}, "spec": {"containers": [{"name": "alpine", "image": image}]}},
            },
        })
    }

    fn rs_from(action: &DeploymentAction) -> Value {
        match action {
            DeploymentAction::CreateReplicaSet { replica_set, .. } => replica_set.clone(),
            other => panic!("expected a ReplicaSet creation, got {other:?}"),
        }
    }

    fn with_status(mut rs: Value, uid: &str, created: &str, available: i64) -> Value {
        rs["metadata"]["uid"] = json!(uid);
        rs["metadata"]["creationTimestamp"] = json!(created);
        let replicas = rs["spec"]["replicas"].clone();
        rs["status"] = json!({"replicas": replicas, "readyReplicas": available, "availableReplicas": available});
        rs
    }

    #[test]
    fn a_new_deployment_gets_a_replica_set_with_all_replicas() {
        let d = deployment(2, "alpine:3.16");
        let actions = reconcile_deployment(&d, &[], now());
        assert_eq!(actions[0], DeploymentAction::SetRevision("1".into()));
        let rs = rs_from(&actions[1]);
        let hash = pod_template_hash(&d);
        assert_eq!(meta::name(&rs), format!("demo-{hash}"));
        assert_eq!(rs["spec"]["replicas"], 2);
        assert_eq!(rs["metadata"]["labels"][POD_TEMPLATE_HASH_LABEL], json!(hash));
        assert_eq!(rs["spec"]["selector"]["matchLabels"][POD_TEMPLATE_HASH_LABEL], json!(hash));
        assert_eq!(rs["metadata"]["annotations"][REVISION_ANNOTATION], "1");
        assert_eq!(rs["metadata"]["annotations"][DESIRED_REPLICAS_ANNOTATION], "2");
        assert_eq!(rs["metadata"]["annotations"][MAX_REPLICAS_ANNOTATION], "3");
        assert_eq!(rs["metadata"]["ownerReferences"][0]["controller"], true);
        assert_eq!(rs["metadata"]["ownerReferences"][0]["blockOwnerDeletion"], true);
        match &actions[1] {
            DeploymentAction::CreateReplicaSet { event, .. } => {
                assert_eq!(event.as_deref(), Some(format!("Scaled up replica set demo-{hash} to 2").as_str()))
            }
            _ => unreachable!(),
        }
        match actions.last() {
            Some(DeploymentAction::UpdateStatus(s)) => {
                assert_eq!(s["conditions"][1]["reason"], "NewReplicaSetCreated");
                assert_eq!(s["conditions"][0]["reason"], "MinimumReplicasUnavailable");
            }
            other => panic!("expected status, got {other:?}"),
        }
    }

    #[test]
    fn scaling_up_scales_the_only_replica_set() {
        let mut d = deployment(4, "alpine:3.16");
        let rs = with_status(rs_from(&reconcile_deployment(&deployment(2, "alpine:3.16"), &[], now())[1]), "rs1", "2024-01-01T00:00:00Z", 2);
        d["metadata"]["annotations"] = json!({REVISION_ANNOTATION: "1"});
        let actions = reconcile_deployment(&d, &[rs.clone()], now());
        let scale = actions.iter().find(|a| matches!(a, DeploymentAction::UpdateReplicaSet { .. }));
        match scale {
            Some(DeploymentAction::UpdateReplicaSet { replicas, annotations, event, .. }) => {
                assert_eq!(*replicas, 4);
                assert_eq!(annotations[DESIRED_REPLICAS_ANNOTATION], "4");
                assert_eq!(annotations[MAX_REPLICAS_ANNOTATION], "5");
                assert_eq!(event.as_deref(), Some(format!("Scaled up replica set {} to 4", meta::name(&rs)).as_str()));
            }
            other => panic!("expected a scale, got {other:?}"),
        }
    }

    #[test]
    fn a_rollout_surges_then_scales_old_down_within_max_unavailable() {
        // 4 replicas: maxSurge 1, maxUnavailable 1.
        let old_d = deployment(4, "alpine:3.16");
        let mut old_rs = rs_from(&reconcile_deployment(&old_d, &[], now())[1]);
        old_rs["spec"]["replicas"] = json!(4);
        old_rs["metadata"]["annotations"][DESIRED_REPLICAS_ANNOTATION] = json!("4");
        let old_rs = with_status(old_rs, "rs-old", "2024-01-01T00:00:00Z", 4);
        let mut d = deployment(4, "alpine:3.17");
        d["metadata"]["annotations"] = json!({REVISION_ANNOTATION: "1"});
        let actions = reconcile_deployment(&d, &[old_rs.clone()], now());
        assert_eq!(actions[0], DeploymentAction::SetRevision("2".into()));
        let new_rs = rs_from(&actions[1]);
        assert_eq!(new_rs["spec"]["replicas"], 1);
        assert_eq!(new_rs["metadata"]["annotations"][REVISION_ANNOTATION], "2");

        // Next sync: new RS exists with 0 available; old can go down by one (5 - 3 - 1).
        let new_rs = with_status(new_rs, "rs-new", "2024-01-01T00:01:00Z", 0);
        d["metadata"]["annotations"] = json!({REVISION_ANNOTATION: "2"});
        let actions = reconcile_deployment(&d, &[old_rs.clone(), new_rs.clone()], now());
        let scales: Vec<(String, i64, Option<String>)> = actions
            .iter()
            .filter_map(|a| match a {
                DeploymentAction::UpdateReplicaSet { name, replicas, event, .. } => Some((name.clone(), *replicas, event.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(scales, vec![(meta::name(&old_rs).to_string(), 3, Some(format!("Scaled down replica set {} to 3", meta::name(&old_rs))))]);
    }

    #[test]
    fn a_finished_rollout_reports_new_replica_set_available() {
        let mut d = deployment(2, "alpine:3.16");
        d["metadata"]["annotations"] = json!({REVISION_ANNOTATION: "1"});
        let rs = with_status(rs_from(&reconcile_deployment(&d, &[], now())[0]), "rs1", "2024-01-01T00:00:00Z", 2);
        let actions = reconcile_deployment(&d, &[rs.clone()], now());
        match actions.last() {
            Some(DeploymentAction::UpdateStatus(s)) => {
                assert_eq!(s["availableReplicas"], 2);
                assert_eq!(s["updatedReplicas"], 2);
                assert_eq!(s["conditions"][0]["reason"], "MinimumReplicasAvailable");
                assert_eq!(s["conditions"][1]["reason"], "NewReplicaSetAvailable");
                assert_eq!(s["conditions"][1]["message"], format!("ReplicaSet \"{}\" has successfully progressed.", meta::name(&rs)));
            }
            other => panic!("expected status, got {other:?}"),
        }
    }

    #[test]
    fn surge_and_unavailable_defaults() {
        assert_eq!(surge_and_unavailable(&deployment(2, "x")), (1, 0));
        assert_eq!(surge_and_unavailable(&deployment(4, "x")), (1, 1));
        let mut d = deployment(3, "x");
        d["spec"]["strategy"] = json!({"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}});
        assert_eq!(surge_and_unavailable(&d), (0, 1));
    }
}
