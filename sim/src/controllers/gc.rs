//! The garbage collector: follows ownerReferences across the workload resources. Dependents
//! whose owners are all gone are deleted (Background); dangling references next to live owners
//! are removed; owners deleted with `Orphan` get their dependents' references removed and then
//! the `orphan` finalizer; owners deleted with `Foreground` get their dependents deleted and,
//! once no blocking dependent remains, the `foregroundDeletion` finalizer removed. Decisions
//! are `collect_garbage`, a pure function over a snapshot of the caches; an owner that looks
//! absent is confirmed with a live GET before anything is deleted, as the real collector does.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::client::{ApiClient, ApiResource, ClientError, DeleteParams, ListParams, PatchType, resource_for_kind, resources};

use super::informer::Informer;
use super::meta::{self, OwnerReference};

pub const ORPHAN_FINALIZER: &str = "orphan";
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";

/// An object in the collector's snapshot.
#[derive(Clone, Debug)]
pub struct Tracked {
    pub resource: ApiResource,
    pub object: Arc<Value>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum GcAction {
    /// Delete a dependent whose owners are gone or being deleted in the foreground.
    Delete { resource: ApiResource, namespace: String, name: String, uid: String, policy: &'static str, absent_owners: Vec<OwnerReference> },
    /// Replace a dependent's ownerReferences with `remaining`.
    SetOwnerReferences { resource: ApiResource, namespace: String, name: String, uid: String, remaining: Vec<OwnerReference> },
    /// Remove `finalizer` from an owner.
    RemoveFinalizer { resource: ApiResource, namespace: String, name: String, uid: String, finalizer: &'static str },
}

impl GcAction {
    fn key(&self) -> String {
        match self {
            GcAction::Delete { uid, .. } => format!("delete/{uid}"),
            GcAction::SetOwnerReferences { uid, .. } => format!("refs/{uid}"),
            GcAction::RemoveFinalizer { uid, finalizer, .. } => format!("finalizer/{uid}/{finalizer}"),
        }
    }
}

/// Decides the collector's writes for a snapshot of every tracked object. Owners of kinds the
/// collector does not track are assumed present.
pub fn collect_garbage(objects: &[Tracked], tracked_resources: &[ApiResource]) -> Vec<GcAction> {
    let by_uid: HashMap<&str, &Tracked> = objects.iter().map(|t| (meta::uid(&t.object), t)).collect();
    let mut dependents: HashMap<&str, Vec<&Tracked>> = HashMap::new();
    for t in objects {
        for r in meta::owner_references(&t.object) {
            if let Some(owner) = by_uid.get(r.uid.as_str()) {
                dependents.entry(meta::uid(&owner.object)).or_default().push(t);
            }
        }
    }
    let tracked_kinds: HashSet<(String, &str)> = tracked_resources.iter().map(|r| (r.api_version(), r.kind)).collect();
    let mut actions = Vec::new();
    for t in objects {
        let o = &t.object;
        let uid = meta::uid(o);
        let ns = meta::namespace(o).to_string();
        let deps = dependents.get(uid).cloned().unwrap_or_default();
        if meta::is_terminating(o) {
            let finalizers = meta::finalizers(o);
            if finalizers.iter().any(|f| f == ORPHAN_FINALIZER) {
                for d in &deps {
                    let remaining: Vec<OwnerReference> = meta::owner_references(&d.object).into_iter().filter(|r| r.uid != uid).collect();
                    actions.push(GcAction::SetOwnerReferences {
                        resource: d.resource,
                        namespace: meta::namespace(&d.object).to_string(),
                        name: meta::name(&d.object).to_string(),
                        uid: meta::uid(&d.object).to_string(),
                        remaining,
                    });
                }
                if deps.is_empty() {
                    actions.push(GcAction::RemoveFinalizer { resource: t.resource, namespace: ns.clone(), name: meta::name(o).to_string(), uid: uid.to_string(), finalizer: ORPHAN_FINALIZER });
                }
            } else if finalizers.iter().any(|f| f == FOREGROUND_FINALIZER) {
                let mut blocking = 0;
                for d in &deps {
                    let blocks = meta::owner_references(&d.object).iter().any(|r| r.uid == uid && r.block_owner_deletion == Some(true));
                    if blocks {
                        blocking += 1;
                    }
                    if !meta::is_terminating(&d.object) {
                        let policy = if d.resource == resources::PODS { "Background" } else { "Foreground" };
                        actions.push(GcAction::Delete {
                            resource: d.resource,
                            namespace: meta::namespace(&d.object).to_string(),
                            name: meta::name(&d.object).to_string(),
                            uid: meta::uid(&d.object).to_string(),
                            policy,
                            absent_owners: Vec::new(),
                        });
                    }
                }
                if blocking == 0 {
                    actions.push(GcAction::RemoveFinalizer { resource: t.resource, namespace: ns.clone(), name: meta::name(o).to_string(), uid: uid.to_string(), finalizer: FOREGROUND_FINALIZER });
                }
            }
            continue;
        }
        let refs = meta::owner_references(o);
        if refs.is_empty() {
            continue;
        }
        let judged = |r: &OwnerReference| {
            let resource = resource_for_kind(&r.api_version, &r.kind);
            resource.is_some_and(|res| tracked_kinds.contains(&(res.api_version(), res.kind)))
        };
        let absent: Vec<OwnerReference> = refs.iter().filter(|r| judged(r) && !by_uid.contains_key(r.uid.as_str())).cloned().collect();
        if absent.is_empty() {
            continue;
        }
        if absent.len() == refs.len() {
            actions.push(GcAction::Delete {
                resource: t.resource,
                namespace: ns,
                name: meta::name(o).to_string(),
                uid: uid.to_string(),
                policy: "Background",
                absent_owners: absent,
            });
        } else {
            let remaining = refs.into_iter().filter(|r| !absent.iter().any(|a| a.uid == r.uid)).collect();
            actions.push(GcAction::SetOwnerReferences { resource: t.resource, namespace: ns, name: meta::name(o).to_string(), uid: uid.to_string(), remaining });
        }
    }
    actions
}

/// The resources the collector tracks.
pub const TRACKED: [ApiResource; 8] = [
    resources::NODES,
    resources::PODS,
    resources::REPLICASETS,
    resources::DEPLOYMENTS,
    resources::STATEFULSETS,
    resources::DAEMONSETS,
    resources::JOBS,
    resources::CONFIGMAPS,
];

/// The running collector.
pub struct GarbageCollector {
    client: ApiClient,
    informers: Vec<Informer>,
    recently: Mutex<HashMap<String, Instant>>,
}

impl GarbageCollector {
    /// Starts the collector; `shared` supplies informers other controllers already run (by
    /// resource), the rest are started here.
    pub fn spawn(client: ApiClient, shared: &[Informer], tasks: &mut JoinSet<()>) {
        let dirty = Arc::new(Notify::new());
        let mut informers = Vec::new();
        for resource in TRACKED {
            let informer = match shared.iter().find(|i| i.resource() == resource) {
                Some(i) => i.clone(),
                None => {
                    let i = Informer::new(resource, ListParams::default());
                    i.spawn(client.clone(), tasks);
                    i
                }
            };
            let d = dirty.clone();
            informer.on_change(move |_| d.notify_one());
            informers.push(informer);
        }
        let gc = Arc::new(GarbageCollector { client, informers, recently: Mutex::new(HashMap::new()) });
        tasks.spawn(async move {
            for i in &gc.informers {
                i.wait_synced().await;
            }
            loop {
                tokio::select! {
                    _ = dirty.notified() => {}
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
                // Let a burst of changes settle into one pass.
                tokio::time::sleep(Duration::from_millis(50)).await;
                gc.pass().await;
            }
        });
    }

    async fn pass(&self) {
        let snapshot: Vec<Tracked> = self
            .informers
            .iter()
            .flat_map(|i| {
                let resource = i.resource();
                i.list_shared().into_iter().map(move |object| Tracked { resource, object })
            })
            .collect();
        for action in collect_garbage(&snapshot, &TRACKED) {
            let key = action.key();
            let fresh = self.recently.lock().map(|r| r.get(&key).is_some_and(|t| t.elapsed() < Duration::from_secs(3))).unwrap_or(false);
            if fresh {
                continue;
            }
            if let Ok(mut r) = self.recently.lock() {
                r.retain(|_, t| t.elapsed() < Duration::from_secs(3));
                r.insert(key, Instant::now());
            }
            if let Err(e) = self.apply(action).await {
                tracing::debug!(error = %e, "garbage collector write failed; will retry");
            }
        }
    }

    /// Whether the owner is really gone (404, or a different uid under that name).
    async fn confirm_absent(&self, namespace: &str, owner: &OwnerReference) -> bool {
        let Some(resource) = resource_for_kind(&owner.api_version, &owner.kind) else { return false };
        match self.client.get(&resource, Some(namespace), &owner.name).await {
            Ok(found) => meta::uid(&found) != owner.uid,
            Err(e) => e.is_not_found(),
        }
    }

    async fn apply(&self, action: GcAction) -> Result<(), ClientError> {
        match action {
            GcAction::Delete { resource, namespace, name, uid, policy, absent_owners } => {
                for owner in &absent_owners {
                    if !self.confirm_absent(&namespace, owner).await {
                        return Ok(());
                    }
                }
                let params = DeleteParams { propagation_policy: Some(policy.to_string()), precondition_uid: Some(uid), ..Default::default() };
                match self.client.delete(&resource, Some(&namespace), &name, &params).await {
                    Ok(_) => Ok(()),
                    Err(e) if e.is_not_found() || e.is_conflict() => Ok(()),
                    Err(e) => Err(e),
                }
            }
            GcAction::SetOwnerReferences { resource, namespace, name, uid, remaining } => {
                let patch = json!({"metadata": {"ownerReferences": remaining, "uid": uid}});
                match self.client.patch(&resource, Some(&namespace), &name, PatchType::Merge, &patch).await {
                    Ok(_) => Ok(()),
                    Err(e) if e.is_not_found() => Ok(()),
                    Err(e) => Err(e),
                }
            }
            GcAction::RemoveFinalizer { resource, namespace, name, uid, finalizer } => {
                let current = self.client.get(&resource, Some(&namespace), &name).await?;
                if meta::uid(&current) != uid {
                    return Ok(());
                }
                let remaining: Vec<String> = meta::finalizers(&current).into_iter().filter(|f| f != finalizer).collect();
                let patch = json!({"metadata": {"finalizers": remaining, "resourceVersion": meta::resource_version(&current)}});
                match self.client.patch(&resource, Some(&namespace), &name, PatchType::Merge, &patch).await {
                    Ok(_) => Ok(()),
                    Err(e) if e.is_not_found() => Ok(()),
                    Err(e) => Err(e),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracked(resource: ApiResource, name: &str, uid: &str, owners: Value, extra: Value) -> Tracked {
        let mut object = json!({
            "apiVersion": resource.api_version(), "kind": resource.kind,
            "metadata": {"name": name, "namespace": "default", "uid": uid, "ownerReferences": owners},
        });
        if let (Some(m), Some(e)) = (object["metadata"].as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                m.insert(k.clone(), v.clone());
            }
        }
        Tracked { resource, object: Arc::new(object) }
    }

    fn owner(kind: &str, api_version: &str, name: &str, uid: &str) -> Value {
        json!([{"apiVersion": api_version, "kind": kind, "name": name, "uid": uid, "controller": true, "blockOwnerDeletion": true}])
    }

    #[test]
    fn dependents_of_a_vanished_owner_are_deleted_in_the_background() {
        let objects = [tracked(resources::REPLICASETS, "rs", "rs-uid", owner("Deployment", "apps/v1", "d", "gone"), json!({}))];
        let actions = collect_garbage(&objects, &TRACKED);
        assert!(matches!(&actions[..], [GcAction::Delete { name, policy: "Background", .. }] if name == "rs"));
    }

    #[test]
    fn live_owners_keep_their_dependents() {
        let objects = [
            tracked(resources::DEPLOYMENTS, "d", "d-uid", json!([]), json!({})),
            tracked(resources::REPLICASETS, "rs", "rs-uid", owner("Deployment", "apps/v1", "d", "d-uid"), json!({})),
        ];
        assert!(collect_garbage(&objects, &TRACKED).is_empty());
    }

    #[test]
    fn untracked_owner_kinds_are_assumed_present() {
        let objects = [tracked(resources::PODS, "p", "p-uid", owner("Widget", "example.com/v1", "w", "w-uid"), json!({}))];
        assert!(collect_garbage(&objects, &TRACKED).is_empty());
    }

    #[test]
    fn orphaning_strips_references_then_the_finalizer() {
        let owner_obj = tracked(resources::REPLICASETS, "rs", "rs-uid", json!([]), json!({"deletionTimestamp": "2024-01-01T00:00:00Z", "finalizers": ["orphan"]}));
        let pod = tracked(resources::PODS, "p", "p-uid", owner("ReplicaSet", "apps/v1", "rs", "rs-uid"), json!({}));
        let actions = collect_garbage(&[owner_obj.clone(), pod], &TRACKED);
        assert!(matches!(&actions[..], [GcAction::SetOwnerReferences { name, remaining, .. }] if name == "p" && remaining.is_empty()));
        let actions = collect_garbage(&[owner_obj], &TRACKED);
        assert!(matches!(&actions[..], [GcAction::RemoveFinalizer { finalizer: ORPHAN_FINALIZER, .. }]));
    }

    #[test]
    fn foreground_deletion_waits_for_blocking_dependents() {
        let d = tracked(resources::DEPLOYMENTS, "d", "d-uid", json!([]), json!({"deletionTimestamp": "2024-01-01T00:00:00Z", "finalizers": ["foregroundDeletion"]}));
        let rs = tracked(resources::REPLICASETS, "rs", "rs-uid", owner("Deployment", "apps/v1", "d", "d-uid"), json!({}));
        let actions = collect_garbage(&[d.clone(), rs], &TRACKED);
        assert!(matches!(&actions[..], [GcAction::Delete { name, policy: "Foreground", .. }] if name == "rs"));
        let actions = collect_garbage(&[d], &TRACKED);
        assert!(matches!(&actions[..], [GcAction::RemoveFinalizer { finalizer: FOREGROUND_FINALIZER, .. }]));
    }
}
