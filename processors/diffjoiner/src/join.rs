//! The joining decisions, pure over activities: which stored change a write made (by the
//! response's new resourceVersion or the request's old one), what to attach, which writes
//! were no-ops, and which successful write a 409 Conflict lost to. Cache reads happen in the
//! caller; these functions only name keys and interpret records.

use kausal_core::activity::{Activity, ActivityDetail, AuditActivity};
use kausal_core::cache::CacheKey;
use kausal_core::changes::{self, StoredChange};
use kausal_core::object::ObjectKey;
use serde::Deserialize;

/// How writes find their change.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JoinMode {
    /// The new resourceVersion when the record has it (RequestResponse), else the old one.
    #[default]
    Auto,
    /// By the response's new resourceVersion (RequestResponse level).
    New,
    /// By the request's old resourceVersion (Metadata/Request level).
    Old,
}

/// Annotation put on no-op writes (the write produced the version it started from).
pub const NOOP: &str = "kausal.io/noop";
/// Annotation put on a 409 Conflict: the audit ID of the successful write from the same
/// version, when known; `unknown` otherwise.
pub const CONFLICT_WITH: &str = "kausal.io/conflict-with";
/// Annotation put on writes whose change was not observed within the wait.
pub const JOIN: &str = "kausal.io/join";

/// What one activity needs from the joiner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Need {
    /// Nothing: pass on.
    Nothing,
    /// The change stored under one of these keys, in preference order.
    Change(Vec<CacheKey>),
    /// The audit ID of the successful write of `object` that started from `resource_version`.
    Winner { object: ObjectKey, resource_version: String },
}

#[derive(Deserialize, Default)]
struct Head {
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    metadata: Option<HeadMeta>,
}

#[derive(Deserialize, Default)]
struct HeadMeta {
    #[serde(default, rename = "resourceVersion")]
    resource_version: Option<String>,
}

fn body_resource_version(raw: Option<&serde_json::value::RawValue>) -> Option<String> {
    let head: Head = serde_json::from_str(raw?.get()).ok()?;
    if matches!(head.kind.as_deref(), Some("Status")) {
        return None;
    }
    head.metadata?.resource_version.filter(|v| !v.is_empty())
}

/// The version a write started from: the objectRef's, else the request body's.
pub fn old_version(audit: &AuditActivity) -> Option<String> {
    if !audit.request_resource_version.is_empty() {
        return Some(audit.request_resource_version.clone());
    }
    body_resource_version(audit.bodies.as_ref().and_then(|b| b.request.as_deref()))
}

/// The version a write produced: the response object's (also of a subresource such as Scale,
/// which carries its parent's resourceVersion).
pub fn new_version(audit: &AuditActivity) -> Option<String> {
    if !audit.response_resource_version.is_empty() {
        return Some(audit.response_resource_version.clone());
    }
    body_resource_version(audit.bodies.as_ref().and_then(|b| b.response.as_deref()))
}

fn is_write(verb: &str) -> bool {
    matches!(verb, "create" | "update" | "patch" | "delete")
}

fn succeeded(audit: &AuditActivity) -> bool {
    audit.code.is_some_and(|c| (200..300).contains(&c))
}

/// Decides what `activity` needs, and marks no-op writes on the way.
pub fn need(activity: &mut Activity, mode: JoinMode) -> Need {
    let key = activity.object.key.clone();
    let ActivityDetail::Audit(audit) = &mut activity.detail else { return Need::Nothing };
    if activity.change.is_some() || !is_write(&audit.verb) {
        return Need::Nothing;
    }
    if audit.code == Some(409) {
        return match old_version(audit) {
            Some(rv) => Need::Winner { object: key, resource_version: rv },
            None => {
                audit.annotations.insert(CONFLICT_WITH.into(), "unknown".into());
                Need::Nothing
            }
        };
    }
    if !succeeded(audit) {
        return Need::Nothing;
    }
    let old = old_version(audit);
    let new = new_version(audit);
    match audit.verb.as_str() {
        "create" => {
            let mut keys = Vec::new();
            if let Some(rv) = &new
                && mode != JoinMode::Old
            {
                keys.push(changes::key_by_new(&key, rv));
            }
            keys.push(changes::key_of_creation(&key));
            Need::Change(keys)
        }
        "delete" => Need::Change(vec![changes::key_of_deletion(&key)]),
        _ => {
            if let (Some(o), Some(n)) = (&old, &new)
                && o == n
            {
                audit.annotations.insert(NOOP.into(), "true".into());
                return Need::Nothing;
            }
            let by_new = new.as_ref().map(|rv| changes::key_by_new(&key, rv));
            let by_old = old.as_ref().map(|rv| changes::key_by_old(&key, rv));
            let keys: Vec<CacheKey> = match mode {
                JoinMode::New => by_new.into_iter().collect(),
                JoinMode::Old => by_old.into_iter().collect(),
                JoinMode::Auto => by_new.into_iter().chain(by_old).collect(),
            };
            if keys.is_empty() { Need::Nothing } else { Need::Change(keys) }
        }
    }
}

/// The (object, old version) a successful update started from, for grouping conflicts.
pub fn winner_key(activity: &Activity) -> Option<(ObjectKey, String, String)> {
    let ActivityDetail::Audit(audit) = &activity.detail else { return None };
    if !matches!(audit.verb.as_str(), "update" | "patch") || !succeeded(audit) {
        return None;
    }
    Some((activity.object.key.clone(), old_version(audit)?, audit.audit_id.clone()))
}

/// Attaches a stored change to a write. A stored record whose uid differs from the write's
/// object is from another incarnation of the name and is not attached.
pub fn attach(activity: &mut Activity, stored: StoredChange) -> bool {
    if let (Some(a), Some(b)) = (&activity.object.uid, &stored.uid)
        && a != b
    {
        return false;
    }
    activity.change = Some(stored.change);
    true
}

/// Marks a 409 with the write it lost to.
pub fn mark_conflict(activity: &mut Activity, winner: Option<&str>) {
    if let ActivityDetail::Audit(audit) = &mut activity.detail {
        audit.annotations.insert(CONFLICT_WITH.into(), winner.unwrap_or("unknown").to_string());
    }
}

/// Marks a write whose change did not show up in time.
pub fn mark_unjoined(activity: &mut Activity) {
    if let ActivityDetail::Audit(audit) = &mut activity.detail {
        audit.annotations.insert(JOIN.into(), "missing".into());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use kausal_core::activity::{AuditBodies, Change, DiffEntry};
    use kausal_core::audit::{Level, Stage, UserInfo};
    use kausal_core::object::ObjectRef;
    use serde_json::value::RawValue;

    use super::*;

    pub fn write(verb: &str, code: i32, old: &str, new: &str, response: Option<&str>) -> Activity {
        Activity {
            object: ObjectRef::new(ObjectKey::new("c", "apps", "deployments", "default", "demo")),
            start: 0,
            end: 0,
            detail: ActivityDetail::Audit(AuditActivity {
                audit_id: format!("{verb}-{code}-{old}"),
                verb: verb.into(),
                stage: Stage::ResponseComplete,
                level: Level::Metadata,
                request_uri: String::new(),
                subresource: String::new(),
                user: UserInfo::default(),
                impersonated_user: None,
                user_agent: String::new(),
                source_ips: vec![],
                code: Some(code),
                reason: String::new(),
                message: String::new(),
                causes: vec![],
                request_resource_version: old.into(),
                response_resource_version: new.into(),
                annotations: Default::default(),
                bodies: response.map(|r| Arc::new(AuditBodies { request: None, response: RawValue::from_string(r.into()).ok() })),
            }),
            links: vec![],
            change: None,
            cause: None,
        }
    }

    fn entries(n: &Need) -> Vec<String> {
        match n {
            Need::Change(keys) => keys.iter().map(|k| k.entry.clone()).collect(),
            other => vec![format!("{other:?}")],
        }
    }

    #[test]
    fn modes_choose_keys() {
        assert_eq!(entries(&need(&mut write("update", 200, "5", "6", None), JoinMode::Auto)), vec!["change/new/6", "change/old/5"]);
        assert_eq!(entries(&need(&mut write("update", 200, "5", "6", None), JoinMode::New)), vec!["change/new/6"]);
        assert_eq!(entries(&need(&mut write("update", 200, "5", "", None), JoinMode::Old)), vec!["change/old/5"]);
        assert_eq!(need(&mut write("update", 200, "", "", None), JoinMode::Auto), Need::Nothing);
        assert_eq!(entries(&need(&mut write("delete", 200, "", "", None), JoinMode::Auto)), vec!["change/deletion"]);
        assert_eq!(entries(&need(&mut write("create", 201, "", "3", None), JoinMode::Auto)), vec!["change/new/3", "change/creation"]);
        assert_eq!(need(&mut write("get", 200, "5", "6", None), JoinMode::Auto), Need::Nothing);
        assert_eq!(need(&mut write("update", 422, "5", "", None), JoinMode::Auto), Need::Nothing);
    }

    #[test]
    fn scale_subresource_response_names_the_new_version() {
        let scale = r#"{"kind":"Scale","apiVersion":"autoscaling/v1","metadata":{"name":"demo","resourceVersion":"42"}}"#;
        assert_eq!(entries(&need(&mut write("patch", 200, "", "", Some(scale)), JoinMode::New)), vec!["change/new/42"]);
        let status = r#"{"kind":"Status","metadata":{"resourceVersion":"42"}}"#;
        assert_eq!(need(&mut write("patch", 200, "", "", Some(status)), JoinMode::New), Need::Nothing);
    }

    #[test]
    fn noop_writes_are_marked_and_conflicts_name_their_version() {
        let mut noop = write("update", 200, "7", "7", None);
        assert_eq!(need(&mut noop, JoinMode::Auto), Need::Nothing);
        let ActivityDetail::Audit(a) = &noop.detail else { unreachable!() };
        assert_eq!(a.annotations.get(NOOP).map(String::as_str), Some("true"));

        let mut conflict = write("update", 409, "7", "", None);
        assert!(matches!(need(&mut conflict, JoinMode::Auto), Need::Winner { resource_version, .. } if resource_version == "7"));
        let mut blind = write("update", 409, "", "", None);
        assert_eq!(need(&mut blind, JoinMode::Auto), Need::Nothing);
        let ActivityDetail::Audit(a) = &blind.detail else { unreachable!() };
        assert_eq!(a.annotations.get(CONFLICT_WITH).map(String::as_str), Some("unknown"));
        assert_eq!(winner_key(&write("update", 200, "7", "8", None)).map(|w| w.1), Some("7".to_string()));
    }

    #[test]
    fn attach_refuses_another_incarnation() {
        let mut a = write("update", 200, "5", "6", None);
        a.object.uid = Some("u1".into());
        let rec = |uid: &str| StoredChange {
            old_resource_version: "5".into(),
            new_resource_version: "6".into(),
            observed_at: 0,
            change: Change::Diff { entries: vec![DiffEntry { path: "spec.replicas".into(), old: Some(2.into()), new: Some(4.into()), verbose: false }] },
            uid: Some(uid.into()),
        };
        assert!(!attach(&mut a, rec("u2")));
        assert!(a.change.is_none());
        assert!(attach(&mut a, rec("u1")));
        assert!(a.change.is_some());
    }
}
