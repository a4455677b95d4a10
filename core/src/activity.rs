//! Activities: one thing that happened to one object (an audited request, a Kubernetes Event,
//! an observed change), plus the links linkers found for that object. Receivers produce them,
//! processors enrich them, the span builder turns them into spans. Times are Unix nanoseconds.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::audit::{Level, Stage, StatusCause, UserInfo};
use crate::object::ObjectRef;

/// Unix time in nanoseconds.
pub type Nanos = i64;

pub fn nanos_of(t: chrono::DateTime<chrono::Utc>) -> Nanos {
    t.timestamp_nanos_opt().unwrap_or(if t.timestamp() < 0 { i64::MIN } else { i64::MAX })
}

/// One thing that happened to one object.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Activity {
    pub object: ObjectRef,
    pub start: Nanos,
    pub end: Nanos,
    pub detail: ActivityDetail,
    /// Links of `object` to other objects, found by linkers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<Link>,
    /// The change this activity made (or observed), where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<Change>,
    /// What caused this activity, where a processor (`causal`) found out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<Cause>,
}

impl Activity {
    /// An identity of the activity that is stable across replicas and re-deliveries (audit ID
    /// and stage, Event uid, count and time, resourceVersions of a change): what activity span
    /// IDs are hashed from, and how a [`Cause`] names the activity it points at.
    pub fn span_identity(&self) -> String {
        match &self.detail {
            ActivityDetail::Audit(audit) => format!("audit/{}/{}", audit.audit_id, audit.stage.as_str()),
            ActivityDetail::Event(event) => {
                let id = if event.event_uid.is_empty() { &event.event_name } else { &event.event_uid };
                format!("event/{id}/{}/{}", event.count, self.start)
            }
            ActivityDetail::Change(change) if !change.manager.is_empty() => {
                format!("change/{}/{}/{}/{}", change.manager, change.operation, change.new_resource_version, self.start)
            }
            ActivityDetail::Change(change) => {
                format!("change/{}/{}", change.old_resource_version, change.new_resource_version)
            }
        }
    }
}

/// Class of a span link from an activity to the activity that caused it.
pub const LINK_CLASS_CAUSAL: &str = "causal";

/// The activity (or remote span) an activity was caused by.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Cause {
    /// Another activity kausal holds: its object, start and [`Activity::span_identity`].
    Activity { object: ObjectRef, start: Nanos, identity: String },
    /// A span outside kausal named by a W3C `traceparent` (lower-case hex IDs).
    Remote { trace_id: String, span_id: String },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ActivityDetail {
    Audit(AuditActivity),
    Event(EventActivity),
    Change(ChangeActivity),
}

impl ActivityDetail {
    pub fn source(&self) -> &'static str {
        match self {
            ActivityDetail::Audit(_) => "audit",
            ActivityDetail::Event(_) => "event",
            ActivityDetail::Change(_) => "change",
        }
    }
}

/// An audited API request, reduced to what tracing needs. Request and response bodies are kept
/// (raw) only until the span builder; they never reach a span.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AuditActivity {
    pub audit_id: String,
    pub verb: String,
    pub stage: Stage,
    pub level: Level,
    pub request_uri: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subresource: String,
    pub user: UserInfo,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impersonated_user: Option<UserInfo>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user_agent: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_ips: Vec<String>,
    /// HTTP status code; absent for stages without a response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub causes: Vec<StatusCause>,
    /// resourceVersion named by the request (objectRef), i.e. the version the write started from.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub request_resource_version: String,
    /// resourceVersion of the object in the response, i.e. the version the write produced.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub response_resource_version: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(skip)]
    pub bodies: Option<Arc<AuditBodies>>,
}

/// Raw request/response objects of a Request/RequestResponse-level audit event, for linkers and
/// joiners. Secret bodies are dropped before they get here.
#[derive(Debug, Default)]
pub struct AuditBodies {
    pub request: Option<Box<RawValue>>,
    pub response: Option<Box<RawValue>>,
}

/// A Kubernetes Event (core/v1 or events.k8s.io/v1) about the object.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct EventActivity {
    pub reason: String,
    pub message: String,
    /// `Normal` or `Warning`.
    pub event_type: String,
    /// Reporting component (`source.component` / `reportingController`).
    pub source: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source_host: String,
    pub count: i32,
    /// `namespace/name` of the Event object itself.
    pub event_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub event_uid: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub action: String,
    /// Object named by the Event besides the one it is about (`related` / `regarding` peers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub related: Option<ObjectRef>,
}

/// An observed change of the object between two resourceVersions.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ChangeActivity {
    pub old_resource_version: String,
    pub new_resource_version: String,
    /// The field manager that wrote the change, when it is known from `managedFields` rather
    /// than observed (e.g. a trigger the causal processor reconstructs).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub manager: String,
    /// The managedFields operation (`Update`, `Apply`) that goes with `manager`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub operation: String,
}

/// What a write did to an object: a diff, or a snapshot at creation/deletion.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Change {
    Diff { entries: Vec<DiffEntry> },
    Snapshot { phase: SnapshotPhase, object: serde_json::Value },
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotPhase {
    Creation,
    Deletion,
}

/// One changed JSON path. Values are absent when redacted.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DiffEntry {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new: Option<serde_json::Value>,
    /// Bookkeeping changes (resourceVersion, generation) that readers usually skip.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub verbose: bool,
}

/// Which end of a link the owning object is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkRole {
    /// The peer is this object's parent (e.g. its controller owner).
    Parent,
    /// The peer is this object's child.
    Child,
}

impl LinkRole {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkRole::Parent => "parent",
            LinkRole::Child => "child",
        }
    }

    pub fn parse(s: &str) -> Option<LinkRole> {
        match s {
            "parent" => Some(LinkRole::Parent),
            "child" => Some(LinkRole::Child),
            _ => None,
        }
    }

    pub fn reverse(self) -> LinkRole {
        match self {
            LinkRole::Parent => LinkRole::Child,
            LinkRole::Child => LinkRole::Parent,
        }
    }
}

/// Class of link from owner references.
pub const LINK_CLASS_CHILDREN: &str = "children";

/// A link from the activity's object to `peer`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Link {
    pub peer: ObjectRef,
    pub role: LinkRole,
    /// What kind of relation: `children` (ownership), `node`, or a configured rule's class.
    pub class: String,
    /// Derived from names or timing rather than read from an object.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub inferred: bool,
}
