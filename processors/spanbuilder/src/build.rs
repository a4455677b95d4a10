//! The pure span-building step: activities in, OTLP spans out, with the builder remembering
//! which object-span state it has already emitted so that unchanged object spans are not sent
//! again. Time comes from the activities, never from the clock.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use kausal_core::activity::{Activity, ActivityDetail, Cause, Change, LINK_CLASS_CAUSAL, LinkRole, Nanos};
use kausal_core::bounded::BoundedIndex;
use kausal_core::conventions::{
    Window, activity_span_id, attr, object_span_id, object_trace_id, semconv_name_attr, span_type,
};
use kausal_core::object::{ObjectKey, ObjectRef, kind_of};
use kausal_core::otlp_common::{InstrumentationScope, KeyValue};
use kausal_core::otlp_resource::Resource;
use kausal_core::otlp_trace::{ResourceSpans, ScopeSpans, Span, Status, span, status};

use crate::config::SpanBuilderConfig;
use kausal_core::otlp::{http_status_text, kv_bool, kv_int, kv_str, kv_strings};

/// What kausal knows of an object in one window; an object span is emitted when this changes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectState {
    uid: Option<String>,
    kind: Option<String>,
    api_version: Option<String>,
    links: BTreeSet<LinkState>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct LinkState {
    peer: ObjectKey,
    role: LinkRole,
    class: String,
    inferred: bool,
    peer_uid: Option<String>,
    peer_kind: Option<String>,
}

type StateKey = (ObjectKey, Nanos);

/// Object states emitted by one `build`, to be remembered once downstream accepted them.
pub struct Emitted(Vec<(StateKey, ObjectState)>);

pub struct SpanBuilder {
    window: Nanos,
    emitted: BoundedIndex<StateKey, ObjectState>,
}

impl SpanBuilder {
    pub fn new(config: &SpanBuilderConfig) -> Self {
        SpanBuilder {
            window: i64::try_from(config.window.as_nanos()).unwrap_or(i64::MAX),
            emitted: BoundedIndex::new(config.max_objects),
        }
    }

    /// Builds spans for `activities`; object spans only where their state is new or changed.
    pub fn build(&mut self, activities: &[Activity]) -> (Vec<ResourceSpans>, Emitted) {
        let mut touched: HashMap<StateKey, ObjectState> = HashMap::new();
        let mut out = Output::default();
        for a in activities {
            let window = Window::containing(a.start, self.window);
            self.touch(&mut touched, &a.object, window, None);
            for link in &a.links {
                let here = LinkState {
                    peer: link.peer.key.clone(),
                    role: link.role,
                    class: link.class.clone(),
                    inferred: link.inferred,
                    peer_uid: link.peer.uid.clone(),
                    peer_kind: link.peer.kind().map(str::to_string),
                };
                let there = LinkState {
                    peer: a.object.key.clone(),
                    role: link.role.reverse(),
                    class: link.class.clone(),
                    inferred: link.inferred,
                    peer_uid: a.object.uid.clone(),
                    peer_kind: a.object.kind().map(str::to_string),
                };
                self.touch(&mut touched, &a.object, window, Some(here));
                self.touch(&mut touched, &link.peer, window, Some(there));
            }
            out.push(&a.object.key, activity_span(a, window));
        }
        let mut emitted = Vec::new();
        for ((key, start), state) in touched {
            let remembered = self.emitted.get(&(key.clone(), start));
            if remembered != Some(&state) {
                let window = Window { start, length: self.window };
                out.push(&key, object_span(&key, window, &state));
                emitted.push(((key, start), state));
            }
        }
        (out.finish(), Emitted(emitted))
    }

    /// Remembers object states downstream has accepted.
    pub fn remember(&mut self, emitted: Emitted) {
        for (k, state) in emitted.0 {
            self.emitted.insert(k, state);
        }
    }

    fn touch(
        &mut self,
        touched: &mut HashMap<StateKey, ObjectState>,
        object: &ObjectRef,
        window: Window,
        link: Option<LinkState>,
    ) {
        let key = (object.key.clone(), window.start);
        let state = match touched.get_mut(&key) {
            Some(s) => s,
            None => {
                let base = self.emitted.get(&key).cloned().unwrap_or_default();
                touched.entry(key).or_insert(base)
            }
        };
        merge(&mut state.uid, &object.uid);
        merge(&mut state.kind, &object.kind);
        merge(&mut state.api_version, &object.api_version);
        if let Some(link) = link {
            // A newer sighting of the same link with more detail replaces the older one.
            state.links.retain(|l| !(l.peer == link.peer && l.role == link.role && l.class == link.class));
            state.links.insert(link);
        }
    }
}

fn merge(into: &mut Option<String>, from: &Option<String>) {
    if let Some(v) = from.as_ref().filter(|v| !v.is_empty()) {
        *into = Some(v.clone());
    }
}

/// Spans grouped by resource (cluster, group-resource).
#[derive(Default)]
struct Output {
    groups: BTreeMap<(String, String), Vec<Span>>,
}

impl Output {
    fn push(&mut self, key: &ObjectKey, span: Span) {
        self.groups
            .entry((key.cluster.clone(), key.group_resource()))
            .or_default()
            .push(span);
    }

    fn finish(self) -> Vec<ResourceSpans> {
        self.groups
            .into_iter()
            .map(|((cluster, service), spans)| ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv_str("service.name", service), kv_str(attr::CLUSTER, cluster)],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "kausal.spanbuilder".to_string(),
                        version: env!("CARGO_PKG_VERSION").to_string(),
                        ..Default::default()
                    }),
                    spans,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            })
            .collect()
    }
}

/// `deployments.apps default/demo`, or `nodes n1` for cluster-scoped objects.
pub fn object_span_name(key: &ObjectKey) -> String {
    if key.namespace.is_empty() {
        format!("{} {}", key.group_resource(), key.name)
    } else {
        format!("{} {}/{}", key.group_resource(), key.namespace, key.name)
    }
}

fn object_span(key: &ObjectKey, window: Window, state: &ObjectState) -> Span {
    let mut attributes = vec![
        kv_str(attr::SPAN_TYPE, span_type::OBJECT),
        kv_str(attr::CLUSTER, &key.cluster),
        kv_str(attr::OBJECT_GROUP, &key.group),
        kv_str(attr::OBJECT_RESOURCE, &key.resource),
        kv_str(attr::OBJECT_NAME, &key.name),
        kv_int(attr::WINDOW_START, window.start),
        kv_int(attr::WINDOW_LENGTH, window.length),
    ];
    if !key.namespace.is_empty() {
        attributes.push(kv_str(attr::NAMESPACE, &key.namespace));
    }
    let kind = state.kind.as_deref().or_else(|| kind_of(&key.group, &key.resource));
    if let Some(kind) = kind {
        attributes.push(kv_str(attr::OBJECT_KIND, kind));
        if let Some((name_attr, uid_attr)) = semconv_name_attr(kind) {
            // k8s.namespace.name is already the namespace attribute of namespaced objects.
            if name_attr != attr::NAMESPACE || key.namespace.is_empty() {
                attributes.push(kv_str(name_attr, &key.name));
            }
            if let Some(uid) = &state.uid {
                attributes.push(kv_str(uid_attr, uid));
            }
        }
    }
    if let Some(uid) = &state.uid {
        attributes.push(kv_str(attr::OBJECT_UID, uid));
    }
    if let Some(v) = &state.api_version {
        attributes.push(kv_str(attr::OBJECT_API_VERSION, v));
    }
    let links = state
        .links
        .iter()
        .map(|l| {
            let mut attributes = vec![
                kv_str(attr::LINK_ROLE, l.role.as_str()),
                kv_str(attr::LINK_CLASS, &l.class),
                kv_bool(attr::LINK_INFERRED, l.inferred),
                kv_str(attr::LINK_PEER_CLUSTER, &l.peer.cluster),
                kv_str(attr::LINK_PEER_GROUP, &l.peer.group),
                kv_str(attr::LINK_PEER_RESOURCE, &l.peer.resource),
                kv_str(attr::LINK_PEER_NAMESPACE, &l.peer.namespace),
                kv_str(attr::LINK_PEER_NAME, &l.peer.name),
            ];
            if let Some(uid) = &l.peer_uid {
                attributes.push(kv_str(attr::LINK_PEER_UID, uid));
            }
            if let Some(kind) = &l.peer_kind {
                attributes.push(kv_str(attr::LINK_PEER_KIND, kind));
            }
            span::Link {
                trace_id: object_trace_id(&l.peer, window).to_vec(),
                span_id: object_span_id(&l.peer, window).to_vec(),
                attributes,
                ..Default::default()
            }
        })
        .collect();
    Span {
        trace_id: object_trace_id(key, window).to_vec(),
        span_id: object_span_id(key, window).to_vec(),
        name: object_span_name(key),
        kind: span::SpanKind::Internal as i32,
        start_time_unix_nano: window.start.max(0) as u64,
        end_time_unix_nano: window.end().max(0) as u64,
        attributes,
        links,
        ..Default::default()
    }
}

/// `alice update status (Conflict)`: user, verb, subresource, and the status text of failures.
pub fn audit_span_name(user: &str, verb: &str, subresource: &str, code: Option<i32>) -> String {
    let mut name = format!("{user} {verb}");
    if !subresource.is_empty() {
        name.push(' ');
        name.push_str(subresource);
    }
    if let Some(code) = code.filter(|c| *c >= 300) {
        match http_status_text(code) {
            Some(text) => name.push_str(&format!(" ({text})")),
            None => name.push_str(&format!(" ({code})")),
        }
    }
    name
}

fn activity_span(a: &Activity, window: Window) -> Span {
    let object_span = object_span_id(&a.object.key, window);
    let (name, identity, mut attributes, status) = match &a.detail {
        ActivityDetail::Audit(audit) => {
            let name = audit_span_name(&audit.user.username, &audit.verb, &audit.subresource, audit.code);
            let mut attrs = vec![
                kv_str(attr::SPAN_TYPE, span_type::AUDIT),
                kv_str(attr::AUDIT_ID, &audit.audit_id),
                kv_str(attr::AUDIT_VERB, &audit.verb),
                kv_str(attr::AUDIT_STAGE, audit.stage.as_str()),
                kv_str(attr::AUDIT_LEVEL, audit.level.as_str()),
                kv_str(attr::AUDIT_REQUEST_URI, &audit.request_uri),
                kv_str(attr::USER_NAME, &audit.user.username),
            ];
            if !audit.subresource.is_empty() {
                attrs.push(kv_str(attr::AUDIT_SUBRESOURCE, &audit.subresource));
            }
            if !audit.user_agent.is_empty() {
                attrs.push(kv_str(attr::USER_AGENT, &audit.user_agent));
            }
            if !audit.source_ips.is_empty() {
                attrs.push(kv_strings(attr::AUDIT_SOURCE_IPS, audit.source_ips.iter().cloned()));
            }
            if let Some(imp) = &audit.impersonated_user {
                attrs.push(kv_str(attr::AUDIT_IMPERSONATED_USER, &imp.username));
            }
            // Marks processors put on writes (no-op, conflict, missing join) become attributes.
            for (k, v) in audit.annotations.iter().filter(|(k, _)| k.starts_with("kausal.io/")) {
                attrs.push(kv_str(k, v));
            }
            let rv = if audit.response_resource_version.is_empty() {
                &audit.request_resource_version
            } else {
                &audit.response_resource_version
            };
            if !rv.is_empty() {
                attrs.push(kv_str(attr::OBJECT_RESOURCE_VERSION, rv));
            }
            let mut status = None;
            if let Some(code) = audit.code {
                attrs.push(kv_int(attr::HTTP_STATUS_CODE, i64::from(code)));
                if code >= 300 {
                    if !audit.reason.is_empty() {
                        attrs.push(kv_str(attr::STATUS_REASON, &audit.reason));
                    }
                    if !audit.message.is_empty() {
                        attrs.push(kv_str(attr::STATUS_MESSAGE, &audit.message));
                    }
                    if !audit.causes.is_empty() {
                        attrs.push(kv_strings(
                            attr::STATUS_CAUSES,
                            audit.causes.iter().map(|c| {
                                let mut s = String::new();
                                if !c.field.is_empty() {
                                    s.push_str(&c.field);
                                    s.push_str(": ");
                                }
                                s.push_str(&c.message);
                                if !c.reason.is_empty() {
                                    s.push_str(&format!(" ({})", c.reason));
                                }
                                s
                            }),
                        ));
                    }
                }
                if code >= 400 {
                    let message = if audit.reason.is_empty() { audit.message.clone() } else { audit.reason.clone() };
                    status = Some(Status { message, code: status::StatusCode::Error as i32 });
                }
            }
            (name, a.span_identity(), attrs, status)
        }
        ActivityDetail::Event(event) => {
            let mut attrs = vec![
                kv_str(attr::SPAN_TYPE, span_type::EVENT),
                kv_str(attr::EVENT_REASON, &event.reason),
                kv_str(attr::EVENT_TYPE, &event.event_type),
                kv_int(attr::EVENT_COUNT, i64::from(event.count)),
                kv_str(attr::EVENT_SOURCE, &event.source),
                kv_str(attr::EVENT_MESSAGE, &event.message),
                kv_str(attr::EVENT_NAME, &event.event_name),
            ];
            if !event.action.is_empty() {
                attrs.push(kv_str("k8s.event.action", &event.action));
            }
            (event.reason.clone(), a.span_identity(), attrs, None)
        }
        ActivityDetail::Change(change) => {
            let mut attrs = vec![
                kv_str(attr::SPAN_TYPE, span_type::CHANGE),
                kv_str(attr::OBJECT_RESOURCE_VERSION, &change.new_resource_version),
            ];
            let name = if !change.manager.is_empty() {
                // A write known from managedFields: who wrote it, not which versions.
                attrs.push(kv_str(attr::MANAGER, &change.manager));
                format!("{} {}", change.manager, change.operation)
            } else if change.old_resource_version.is_empty() {
                "change".to_string()
            } else {
                format!("change {} -> {}", change.old_resource_version, change.new_resource_version)
            };
            (name, a.span_identity(), attrs, None)
        }
    };
    if let Some(uid) = &a.object.uid {
        attributes.push(kv_str(attr::OBJECT_UID, uid));
    }
    let events = a.change.as_ref().map(|c| vec![change_event(c, a.end.max(a.start))]).unwrap_or_default();
    let links = a.cause.as_ref().and_then(|c| cause_link(c, window.length)).into_iter().collect();
    Span {
        trace_id: object_trace_id(&a.object.key, window).to_vec(),
        span_id: activity_span_id(object_span, &identity).to_vec(),
        parent_span_id: object_span.to_vec(),
        name,
        kind: span::SpanKind::Internal as i32,
        start_time_unix_nano: a.start.max(0) as u64,
        end_time_unix_nano: a.end.max(a.start).max(0) as u64,
        attributes,
        events,
        status,
        links,
        ..Default::default()
    }
}

/// The span link from an activity span to the span of what caused it: class `causal`, the
/// cause in the role of parent. The cause's IDs are computed the way its own span's were.
fn cause_link(cause: &Cause, window_length: Nanos) -> Option<span::Link> {
    match cause {
        Cause::Activity { object, start, identity } => {
            let window = Window::containing(*start, window_length);
            let mut attributes = vec![
                kv_str(attr::LINK_ROLE, LinkRole::Parent.as_str()),
                kv_str(attr::LINK_CLASS, LINK_CLASS_CAUSAL),
                kv_str(attr::LINK_PEER_CLUSTER, &object.key.cluster),
                kv_str(attr::LINK_PEER_GROUP, &object.key.group),
                kv_str(attr::LINK_PEER_RESOURCE, &object.key.resource),
                kv_str(attr::LINK_PEER_NAMESPACE, &object.key.namespace),
                kv_str(attr::LINK_PEER_NAME, &object.key.name),
            ];
            if let Some(kind) = object.kind() {
                attributes.push(kv_str(attr::LINK_PEER_KIND, kind));
            }
            Some(span::Link {
                trace_id: object_trace_id(&object.key, window).to_vec(),
                span_id: activity_span_id(object_span_id(&object.key, window), identity).to_vec(),
                attributes,
                ..Default::default()
            })
        }
        Cause::Remote { trace_id, span_id } => Some(span::Link {
            trace_id: hex_bytes(trace_id).filter(|b| b.len() == 16)?,
            span_id: hex_bytes(span_id).filter(|b| b.len() == 8)?,
            attributes: vec![
                kv_str(attr::LINK_ROLE, LinkRole::Parent.as_str()),
                kv_str(attr::LINK_CLASS, LINK_CLASS_CAUSAL),
            ],
            ..Default::default()
        }),
    }
}

fn hex_bytes(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

/// A diff line: `spec.replicas 2 -> 4`; values left out when redacted.
pub fn diff_line(entry: &kausal_core::activity::DiffEntry) -> String {
    let show = |v: &Option<serde_json::Value>| v.as_ref().map(|v| v.to_string()).unwrap_or_else(|| "<none>".into());
    if entry.old.is_none() && entry.new.is_none() {
        format!("{} changed", entry.path)
    } else {
        format!("{} {} -> {}", entry.path, show(&entry.old), show(&entry.new))
    }
}

fn change_event(change: &Change, time: Nanos) -> span::Event {
    let attributes: Vec<KeyValue> = match change {
        Change::Diff { entries } => vec![
            kv_strings(attr::DIFF_LINES, entries.iter().map(diff_line)),
            kv_str(attr::DIFF_JSON, serde_json::to_string(entries).unwrap_or_default()),
        ],
        Change::Snapshot { phase, object } => vec![
            kv_str(
                attr::SNAPSHOT_PHASE,
                match phase {
                    kausal_core::activity::SnapshotPhase::Creation => "creation",
                    kausal_core::activity::SnapshotPhase::Deletion => "deletion",
                },
            ),
            kv_str(attr::SNAPSHOT_JSON, object.to_string()),
        ],
    };
    span::Event {
        time_unix_nano: time.max(0) as u64,
        name: match change {
            Change::Diff { .. } => attr::EVENT_DIFF.to_string(),
            Change::Snapshot { .. } => attr::EVENT_SNAPSHOT.to_string(),
        },
        attributes,
        dropped_attributes_count: 0,
    }
}
