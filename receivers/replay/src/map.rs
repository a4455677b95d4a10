//! Recorded Kubernetes documents as activities: an Event (core/v1 or events.k8s.io/v1) becomes
//! an Event activity on the object it is about, any other object becomes an observation (a
//! snapshot with its owner links), an `audit.k8s.io` Event an audit activity. Pure functions
//! over JSON values; nothing here knows about files or pacing.

use chrono::{DateTime, Utc};
use kausal_core::activity::{
    Activity, ActivityDetail, AuditActivity, Change, ChangeActivity, EventActivity, LINK_CLASS_CHILDREN, Link,
    LinkRole, Nanos, SnapshotPhase, nanos_of,
};
use kausal_core::audit::Event as AuditEvent;
use kausal_core::object::{ObjectKey, ObjectRef, kind_of, resource_of};
use serde_json::Value;

/// Why one document could not be mapped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    #[error("no `kind`/`apiVersion`: not a Kubernetes object of a known kind")]
    UnknownKind,
    #[error("unknown kind {kind:?} in apiVersion {api_version:?} (a built-in API group has no such kind)")]
    NotBuiltIn { kind: String, api_version: String },
    #[error("{kind} has no {what}")]
    Missing { kind: String, what: &'static str },
    #[error("{kind} has no timestamp (eventTime, lastTimestamp, firstTimestamp or creationTimestamp) and the recording gives none")]
    NoTimestamp { kind: String },
    #[error("audit event: {0}")]
    Audit(String),
}

/// Kinds that are cluster-scoped, so an owner of that kind has no namespace.
const CLUSTER_SCOPED_KINDS: &[&str] = &["Node", "Namespace", "PersistentVolume", "ClusterRole", "StorageClass"];

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str().filter(|s| !s.is_empty())
}

fn time_at(v: &Value, path: &[&str]) -> Option<DateTime<Utc>> {
    str_at(v, path).and_then(|s| DateTime::parse_from_rfc3339(s).ok()).map(|t| t.with_timezone(&Utc))
}

/// Maps one document. `recorded_at` is when a recorder saw it (kspan's comment line), if known.
pub fn to_activity(doc: &Value, cluster: &str, recorded_at: Option<Nanos>) -> Result<Activity, MapError> {
    let kind = str_at(doc, &["kind"]).ok_or(MapError::UnknownKind)?;
    let api_version = str_at(doc, &["apiVersion"]).ok_or(MapError::UnknownKind)?;
    if api_version.starts_with("audit.k8s.io/") {
        return audit_activity(doc, cluster);
    }
    if kind == "Event" && (api_version == "v1" || api_version.starts_with("events.k8s.io/")) {
        return event_activity(doc, cluster, recorded_at);
    }
    let (group, resource) = resource_of(api_version, kind);
    if BUILT_IN_GROUPS.contains(&group.as_str()) && kind_of(&group, &resource) != Some(kind) && !EXTRA_BUILT_IN_KINDS.contains(&kind) {
        return Err(MapError::NotBuiltIn { kind: kind.into(), api_version: api_version.into() });
    }
    observation(doc, kind, api_version, cluster, recorded_at)
}

/// API groups whose kinds are all known here; a kind in one of them that is not is a typo or a
/// document from somewhere else, not an object to replay.
const BUILT_IN_GROUPS: &[&str] = &["", "apps", "batch"];

/// Built-in kinds of those groups the shared kind table does not name.
const EXTRA_BUILT_IN_KINDS: &[&str] = &["PodTemplate", "Binding", "ComponentStatus"];

fn object_ref(cluster: &str, api_version: &str, kind: &str, namespace: &str, name: &str, uid: Option<&str>) -> ObjectRef {
    let (group, resource) = resource_of(api_version, kind);
    ObjectRef {
        key: ObjectKey::new(cluster, group, resource, namespace, name),
        uid: uid.map(str::to_string),
        kind: Some(kind.to_string()),
        api_version: Some(api_version.to_string()),
    }
}

fn event_activity(doc: &Value, cluster: &str, recorded_at: Option<Nanos>) -> Result<Activity, MapError> {
    let missing = |what| MapError::Missing { kind: "Event".into(), what };
    // core/v1 names the object `involvedObject`, events.k8s.io/v1 `regarding`.
    let about = doc.get("involvedObject").or_else(|| doc.get("regarding")).ok_or(missing("involvedObject"))?;
    let about_kind = str_at(about, &["kind"]).ok_or(missing("involvedObject.kind"))?;
    let about_name = str_at(about, &["name"]).ok_or(missing("involvedObject.name"))?;
    let about_api = str_at(about, &["apiVersion"]).unwrap_or("v1");
    let namespace = str_at(about, &["namespace"]).unwrap_or("");
    let object = object_ref(cluster, about_api, about_kind, namespace, about_name, str_at(about, &["uid"]));

    // The occurrence this object stands for: eventTime for the new API, else the latest of a
    // deduplicated core/v1 Event, else its first, else when the Event object was created.
    let (stamp, whole_seconds) = match time_at(doc, &["eventTime"]) {
        Some(t) => (Some(t), false),
        None => {
            let t = time_at(doc, &["lastTimestamp"])
                .or_else(|| time_at(doc, &["deprecatedLastTimestamp"]))
                .or_else(|| time_at(doc, &["firstTimestamp"]))
                .or_else(|| time_at(doc, &["metadata", "creationTimestamp"]));
            (t, true)
        }
    };
    let start = match (stamp.map(nanos_of), recorded_at) {
        // Second-precision timestamps tie within a second; when the recorder saw the Event
        // within two seconds of its stamp, its finer clock orders ties the way they happened.
        (Some(t), Some(seen)) if whole_seconds && seen >= t && seen < t + 2_000_000_000 => seen,
        (Some(t), _) => t,
        (None, Some(seen)) => seen,
        (None, None) => return Err(MapError::NoTimestamp { kind: "Event".into() }),
    };
    let end = time_at(doc, &["series", "lastObservedTime"]).map(nanos_of).filter(|e| *e > start).unwrap_or(start);
    let count = doc
        .get("count")
        .and_then(Value::as_i64)
        .or_else(|| doc.pointer("/series/count").and_then(Value::as_i64))
        .unwrap_or(1);
    let source = str_at(doc, &["source", "component"])
        .or_else(|| str_at(doc, &["reportingComponent"]))
        .or_else(|| str_at(doc, &["reportingController"]))
        .or_else(|| str_at(doc, &["deprecatedSource", "component"]))
        .unwrap_or("");
    let event_namespace = str_at(doc, &["metadata", "namespace"]).unwrap_or(namespace);
    let event_name = str_at(doc, &["metadata", "name"]).unwrap_or("");
    let related = doc.get("related").and_then(|r| {
        Some(object_ref(
            cluster,
            str_at(r, &["apiVersion"]).unwrap_or("v1"),
            str_at(r, &["kind"])?,
            str_at(r, &["namespace"]).unwrap_or(""),
            str_at(r, &["name"])?,
            str_at(r, &["uid"]),
        ))
    });
    let detail = EventActivity {
        reason: str_at(doc, &["reason"]).unwrap_or("").to_string(),
        message: str_at(doc, &["message"]).or_else(|| str_at(doc, &["note"])).unwrap_or("").to_string(),
        event_type: str_at(doc, &["type"]).unwrap_or("Normal").to_string(),
        source: source.to_string(),
        source_host: str_at(doc, &["source", "host"]).unwrap_or("").to_string(),
        count: i32::try_from(count).unwrap_or(i32::MAX),
        event_name: format!("{event_namespace}/{event_name}"),
        event_uid: str_at(doc, &["metadata", "uid"]).unwrap_or("").to_string(),
        action: str_at(doc, &["action"]).unwrap_or("").to_string(),
        related,
    };
    Ok(Activity {
        object,
        start,
        end,
        detail: ActivityDetail::Event(detail),
        links: vec![],
        change: None,
        cause: None,
    })
}

/// An object seen in a recording: a snapshot of it, linked to its controller owner.
fn observation(doc: &Value, kind: &str, api_version: &str, cluster: &str, recorded_at: Option<Nanos>) -> Result<Activity, MapError> {
    let name = str_at(doc, &["metadata", "name"]).ok_or(MapError::Missing { kind: kind.into(), what: "metadata.name" })?;
    let namespace = str_at(doc, &["metadata", "namespace"]).unwrap_or("");
    let object = object_ref(cluster, api_version, kind, namespace, name, str_at(doc, &["metadata", "uid"]));
    // Without a recorder's clock, the object is as of its newest write.
    let newest_write = doc
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|m| time_at(m, &["time"]))
        .max();
    let start = recorded_at
        .or_else(|| newest_write.map(nanos_of))
        .or_else(|| time_at(doc, &["metadata", "creationTimestamp"]).map(nanos_of))
        .ok_or(MapError::NoTimestamp { kind: kind.into() })?;
    let owners = doc.pointer("/metadata/ownerReferences").and_then(Value::as_array);
    let owner = owners.and_then(|refs| {
        refs.iter()
            .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
            .or_else(|| refs.first())
    });
    let links = owner
        .and_then(|o| {
            let kind = str_at(o, &["kind"])?;
            let owner_namespace = if CLUSTER_SCOPED_KINDS.contains(&kind) { "" } else { namespace };
            Some(Link {
                peer: object_ref(cluster, str_at(o, &["apiVersion"])?, kind, owner_namespace, str_at(o, &["name"])?, str_at(o, &["uid"])),
                role: LinkRole::Parent,
                class: LINK_CLASS_CHILDREN.to_string(),
                inferred: false,
            })
        })
        .into_iter()
        .collect();
    let mut body = doc.clone();
    if kind == "Secret"
        && let Some(map) = body.as_object_mut()
    {
        // Secret data never reaches a snapshot.
        map.remove("data");
        map.remove("stringData");
    }
    Ok(Activity {
        object,
        start,
        end: start,
        detail: ActivityDetail::Change(ChangeActivity {
            old_resource_version: String::new(),
            new_resource_version: str_at(doc, &["metadata", "resourceVersion"]).unwrap_or("").to_string(),
            manager: String::new(),
            operation: String::new(),
        }),
        links,
        change: Some(Change::Snapshot { phase: SnapshotPhase::Creation, object: body }),
        cause: None,
    })
}

/// An audit event as an audit activity. Bodies are not kept: a replay has no linkers that need
/// them beyond what the objects in the recording already say.
fn audit_activity(doc: &Value, cluster: &str) -> Result<Activity, MapError> {
    let event: AuditEvent = serde_json::from_value(doc.clone()).map_err(|e| MapError::Audit(e.to_string()))?;
    audit_to_activity(event, cluster)
}

pub fn audit_to_activity(event: AuditEvent, cluster: &str) -> Result<Activity, MapError> {
    let r = event
        .object_ref
        .as_ref()
        .filter(|r| !r.resource.is_empty() && !r.name.is_empty())
        .ok_or(MapError::Audit("no objectRef naming an object (list, watch or a create by generateName)".into()))?;
    let start = event.received_at().map(nanos_of).ok_or(MapError::NoTimestamp { kind: "audit Event".into() })?;
    let end = event.stage_at().map(nanos_of).unwrap_or(start).max(start);
    let mut object = ObjectRef::new(ObjectKey::new(cluster, &r.api_group, &r.resource, &r.namespace, &r.name));
    object.uid = Some(r.uid.clone()).filter(|u| !u.is_empty());
    let code = event.status_code();
    let (reason, message) = event
        .response_status
        .as_ref()
        .map(|s| (s.reason.clone(), s.message.clone()))
        .unwrap_or_default();
    Ok(Activity {
        object,
        start,
        end,
        detail: ActivityDetail::Audit(AuditActivity {
            audit_id: event.audit_id,
            verb: event.verb,
            stage: event.stage,
            level: event.level,
            request_uri: event.request_uri,
            subresource: r.subresource.clone(),
            user: event.user,
            impersonated_user: event.impersonated_user,
            user_agent: event.user_agent,
            source_ips: event.source_ips,
            code,
            reason,
            message,
            causes: vec![],
            request_resource_version: r.resource_version.clone(),
            response_resource_version: String::new(),
            annotations: event.annotations,
            bodies: None,
        }),
        links: vec![],
        change: None,
        cause: None,
    })
}
