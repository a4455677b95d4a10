//! What the watcher remembers per object (its last sanitized version, compactly serialized,
//! in a bounded LRU index) and the decision what a new sighting means: a creation snapshot, a
//! diff, a deletion snapshot when `deletionTimestamp` first appears, or nothing (same
//! resourceVersion again, as after a relist). Pure: no client, no cache, time passed in.

use kausal_core::activity::{Change, DiffEntry, SnapshotPhase};
use kausal_core::bounded::BoundedIndex;
use kausal_core::changes::{ObjectMeta, OwnerRef};
use kausal_core::object::{ObjectKey, ObjectRef};
use kausal_kubecommon::patterns::glob;
use serde_json::Value;

use crate::diff::{self, Redaction};

/// The last version of an object.
struct Known {
    resource_version: String,
    /// Sanitized object as compact JSON: a third of the memory of a parsed `Value`.
    body: Box<str>,
    deleting: bool,
}

/// One observed change, ready to be stored and emitted.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    pub object: ObjectRef,
    pub old_resource_version: String,
    pub new_resource_version: String,
    /// A diff for updates, a snapshot for creation and deletion.
    pub change: Change,
    /// For an update that also began the deletion: the diff, besides the deletion snapshot.
    pub diff: Option<Vec<DiffEntry>>,
    pub meta: ObjectMeta,
}

/// Which objects are shown redacted beyond Secrets and the label.
#[derive(Clone, Debug, Default)]
pub struct RedactRules {
    patterns: Vec<String>,
}

impl RedactRules {
    pub fn new(patterns: &[String]) -> Self {
        RedactRules { patterns: patterns.to_vec() }
    }

    pub fn redaction(&self, key: &ObjectKey, object: &Value) -> Redaction {
        if diff::is_secret(&key.group, &key.resource) || diff::labelled_redact(object) {
            return Redaction::Values;
        }
        let name = format!("{}/{}/{}", key.group_resource(), key.namespace, key.name);
        if self.patterns.iter().any(|p| glob(p, &name)) { Redaction::Values } else { Redaction::None }
    }
}

pub struct Tracker {
    cluster: String,
    known: BoundedIndex<ObjectKey, Known>,
    redact: RedactRules,
    seed: u64,
}

impl Tracker {
    pub fn new(cluster: &str, max_objects: usize, redact: RedactRules, seed: u64) -> Self {
        Tracker { cluster: cluster.to_string(), known: BoundedIndex::new(max_objects), redact, seed }
    }

    pub fn len(&self) -> usize {
        self.known.len()
    }

    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }

    /// The key of an object of resource `group`/`resource`.
    pub fn key_of(&self, group: &str, resource: &str, object: &Value) -> Option<ObjectKey> {
        let meta = object.get("metadata")?;
        let name = meta.get("name")?.as_str()?;
        let namespace = meta.get("namespace").and_then(Value::as_str).unwrap_or("");
        Some(ObjectKey::new(&self.cluster, group, resource, namespace, name))
    }

    /// An object was added or modified. `announce_new` says whether an object not seen before
    /// is a creation (a watch event, a relist after a gap) or merely existing (the first list).
    pub fn apply(&mut self, key: ObjectKey, object: Value, announce_new: bool) -> Option<Observed> {
        let redaction = self.redact.redaction(&key, &object);
        let secret = diff::is_secret(&key.group, &key.resource);
        let object = diff::sanitize(object, secret, self.seed);
        let rv = str_at(&object, "/metadata/resourceVersion").to_string();
        let deleting = object.pointer("/metadata/deletionTimestamp").is_some_and(|v| !v.is_null());
        let body: Box<str> = object.to_string().into_boxed_str();
        let previous = self.known.get(&key).map(|k| (k.resource_version.clone(), k.body.clone(), k.deleting));
        self.known.insert(key.clone(), Known { resource_version: rv.clone(), body, deleting });
        let object_ref = object_ref(key, &object);
        let meta = meta_of(&object);
        match previous {
            Some((old_rv, _, _)) if old_rv == rv => None,
            Some((old_rv, old_body, was_deleting)) => {
                let old: Value = serde_json::from_str(&old_body).unwrap_or(Value::Null);
                let entries = diff::diff(&old, &object, redaction);
                if deleting && !was_deleting {
                    Some(Observed {
                        object: object_ref,
                        old_resource_version: old_rv,
                        new_resource_version: rv,
                        change: snapshot(SnapshotPhase::Deletion, &object, redaction),
                        diff: Some(entries),
                        meta,
                    })
                } else {
                    Some(Observed {
                        object: object_ref,
                        old_resource_version: old_rv,
                        new_resource_version: rv,
                        change: Change::Diff { entries },
                        diff: None,
                        meta,
                    })
                }
            }
            None if announce_new => Some(Observed {
                object: object_ref,
                old_resource_version: String::new(),
                new_resource_version: rv,
                change: snapshot(SnapshotPhase::Creation, &object, redaction),
                diff: None,
                meta,
            }),
            None => None,
        }
    }

    /// An object was deleted; `object` is its last state as the watch reported it.
    pub fn delete(&mut self, key: ObjectKey, object: Value) -> Observed {
        let redaction = self.redact.redaction(&key, &object);
        let secret = diff::is_secret(&key.group, &key.resource);
        let object = diff::sanitize(object, secret, self.seed);
        let old_rv = self.known.get(&key).map(|k| k.resource_version.clone()).unwrap_or_default();
        self.known.remove(&key);
        let rv = str_at(&object, "/metadata/resourceVersion").to_string();
        Observed {
            meta: meta_of(&object),
            change: snapshot(SnapshotPhase::Deletion, &object, redaction),
            object: object_ref(key, &object),
            old_resource_version: old_rv,
            new_resource_version: rv,
            diff: None,
        }
    }

    /// Objects of one resource this tracker knows, for finding deletions missed during a gap.
    pub fn known_of(&self, cluster: &str, group: &str, resource: &str) -> Vec<(ObjectKey, Value)> {
        self.known
            .iter()
            .filter(|(k, _)| k.cluster == cluster && k.group == group && k.resource == resource)
            .map(|(k, v)| (k.clone(), serde_json::from_str(&v.body).unwrap_or(Value::Null)))
            .collect()
    }
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn object_ref(key: ObjectKey, object: &Value) -> ObjectRef {
    let s = |p: &str| Some(str_at(object, p).to_string()).filter(|s| !s.is_empty());
    ObjectRef { key, uid: s("/metadata/uid"), kind: s("/kind"), api_version: s("/apiVersion") }
}

fn snapshot(phase: SnapshotPhase, object: &Value, redaction: Redaction) -> Change {
    let object = match redaction {
        Redaction::None => object.clone(),
        Redaction::Values => diff::redact_snapshot(object),
    };
    Change::Snapshot { phase, object }
}

/// The controller owner (else the first owner) and identity, for linkers.
pub fn meta_of(object: &Value) -> ObjectMeta {
    let s = |p: &str| Some(str_at(object, p).to_string()).filter(|s| !s.is_empty());
    let owners = object.pointer("/metadata/ownerReferences").and_then(Value::as_array);
    let owner = owners.and_then(|refs| {
        refs.iter()
            .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
            .or_else(|| refs.first())
            .map(|r| OwnerRef {
                api_version: str_at(r, "/apiVersion").to_string(),
                kind: str_at(r, "/kind").to_string(),
                name: str_at(r, "/name").to_string(),
                uid: str_at(r, "/uid").to_string(),
            })
    });
    ObjectMeta { uid: s("/metadata/uid"), kind: s("/kind"), api_version: s("/apiVersion"), owner }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(rv: &str, replicas: i64) -> Value {
        json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"demo","namespace":"default","uid":"u1",
            "resourceVersion":rv,"managedFields":[{"manager":"m"}]},"spec":{"replicas":replicas}})
    }

    fn tracker() -> Tracker {
        Tracker::new("c", 100, RedactRules::new(&["configmaps/prod/*".into()]), 1)
    }

    #[test]
    fn first_list_is_silent_then_diffs_and_relists_are_quiet() {
        let mut t = tracker();
        let key = t.key_of("apps", "deployments", &deployment("1", 2)).unwrap();
        assert_eq!(t.apply(key.clone(), deployment("1", 2), false), None);
        let o = t.apply(key.clone(), deployment("5", 4), true).unwrap();
        assert_eq!((o.old_resource_version.as_str(), o.new_resource_version.as_str()), ("1", "5"));
        let Change::Diff { entries } = &o.change else { panic!("{o:?}") };
        let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, vec!["metadata.resourceVersion", "spec.replicas"]);
        assert!(!format!("{o:?}").contains("managedFields"));
        // The same version again (a relist) is not a change.
        assert_eq!(t.apply(key, deployment("5", 4), true), None);
    }

    #[test]
    fn creation_and_deletion_snapshots() {
        let mut t = tracker();
        let key = t.key_of("apps", "deployments", &deployment("1", 2)).unwrap();
        let created = t.apply(key.clone(), deployment("1", 2), true).unwrap();
        assert!(matches!(&created.change, Change::Snapshot { phase: SnapshotPhase::Creation, object } if object["metadata"]["name"] == "demo"));
        let mut terminating = deployment("2", 2);
        terminating["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
        let begun = t.apply(key.clone(), terminating.clone(), true).unwrap();
        assert!(matches!(begun.change, Change::Snapshot { phase: SnapshotPhase::Deletion, .. }));
        assert!(begun.diff.is_some());
        let gone = t.delete(key.clone(), terminating);
        assert_eq!(gone.old_resource_version, "2");
        assert!(t.is_empty());
    }

    #[test]
    fn secrets_never_leave_values() {
        let mut t = tracker();
        let s = |rv: &str, v: &str| json!({"apiVersion":"v1","kind":"Secret","metadata":{"name":"s","namespace":"default","resourceVersion":rv},"data":{"password":v},"stringData":{"x":v}});
        let key = t.key_of("", "secrets", &s("1", "aHVudGVyMg==")).unwrap();
        let created = t.apply(key.clone(), s("1", "aHVudGVyMg=="), true).unwrap();
        let changed = t.apply(key.clone(), s("2", "c3dvcmRmaXNo"), true).unwrap();
        let deleted = t.delete(key, s("3", "c3dvcmRmaXNo"));
        for o in [created, changed, deleted] {
            let text = serde_json::to_string(&o.change).unwrap();
            assert!(!text.contains("aHVudGVyMg==") && !text.contains("c3dvcmRmaXNo") && !text.contains("fp:"), "{text}");
        }
    }

    #[test]
    fn redaction_by_pattern_and_label() {
        let mut t = tracker();
        let cm = |ns: &str, rv: &str, v: &str, label: bool| {
            let mut o = json!({"kind":"ConfigMap","metadata":{"name":"c","namespace":ns,"resourceVersion":rv},"data":{"k":v}});
            if label {
                o["metadata"]["labels"] = json!({"kausal.io/redact":"true"});
            }
            o
        };
        for (ns, label, hidden) in [("prod", false, true), ("dev", true, true), ("dev2", false, false)] {
            let key = t.key_of("", "configmaps", &cm(ns, "1", "a", label)).unwrap();
            t.apply(key.clone(), cm(ns, "1", "old-value", label), false);
            let o = t.apply(key, cm(ns, "2", "new-value", label), true).unwrap();
            let text = serde_json::to_string(&o.change).unwrap();
            assert_eq!(!text.contains("new-value"), hidden, "{ns}: {text}");
            assert!(text.contains("data.k"));
        }
    }
}
