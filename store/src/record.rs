//! What the store keeps, seen from the reading side: object records (one object in one window,
//! with its attributes and links) and activity records (one audit request, Event or change).
//! Also the pure rules that turn incoming OTLP spans into records and merge re-emitted object
//! spans. No I/O here; the tables live in `tables.rs`.

use kausal_core::conventions::{attr, span_type, Window};
use kausal_core::otlp_common::{any_value, AnyValue, KeyValue};
use kausal_core::otlp_trace::{span, Span};
use kausal_core::{LinkRole, Nanos, ObjectKey};

/// One object in one window, as merged from every emission of its object span.
#[derive(Clone, Debug, PartialEq)]
pub struct ObjectRecord {
    pub key: ObjectKey,
    pub window: Window,
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// The object span's name as emitted (`deployments.apps default/demo`).
    pub name: String,
    /// The object span's attributes (merged: newer non-empty values win).
    pub attributes: Vec<KeyValue>,
    /// Links to peer objects in the same window (union of every emission).
    pub links: Vec<ObjectLink>,
}

impl ObjectRecord {
    /// Value of a string (or int/bool, formatted) attribute.
    pub fn attribute(&self, name: &str) -> Option<String> {
        find_attr(&self.attributes, name).and_then(any_value_text)
    }

    pub fn uid(&self) -> Option<String> {
        self.attribute(attr::OBJECT_UID).filter(|s| !s.is_empty())
    }

    pub fn kind(&self) -> Option<String> {
        self.attribute(attr::OBJECT_KIND).filter(|s| !s.is_empty())
    }
}

/// A link from an object to a peer object in the same window.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ObjectLink {
    pub peer: ObjectKey,
    /// The peer's role relative to the linking object: `Parent` means the peer owns it.
    pub role: LinkRole,
    /// `children` for ownership, `node`, or a rule's class.
    pub class: String,
    pub inferred: bool,
    pub peer_uid: Option<String>,
    pub peer_kind: Option<String>,
    pub peer_trace_id: [u8; 16],
    pub peer_span_id: [u8; 8],
}

/// What kind of activity a span records, from `kausal.span.type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ActivityKind {
    Audit,
    Event,
    Change,
    /// A `kausal.span.type` this build does not know; kept and shown as is.
    Other,
}

impl ActivityKind {
    pub fn parse(span_type_value: &str) -> ActivityKind {
        match span_type_value {
            span_type::AUDIT => ActivityKind::Audit,
            span_type::EVENT => ActivityKind::Event,
            span_type::CHANGE => ActivityKind::Change,
            _ => ActivityKind::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ActivityKind::Audit => span_type::AUDIT,
            ActivityKind::Event => span_type::EVENT,
            ActivityKind::Change => span_type::CHANGE,
            ActivityKind::Other => "other",
        }
    }
}

/// One activity span under an object span, kept as the OTLP span it arrived as.
#[derive(Clone, Debug, PartialEq)]
pub struct ActivityRecord {
    pub kind: ActivityKind,
    pub object_span_id: [u8; 8],
    pub span: Span,
}

impl ActivityRecord {
    pub fn start(&self) -> Nanos {
        clamp_nanos(self.span.start_time_unix_nano)
    }

    pub fn end(&self) -> Nanos {
        clamp_nanos(self.span.end_time_unix_nano)
    }
}

/// How a span is classified on arrival.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SpanClass<'a> {
    Object,
    Activity(&'a str),
    /// No `kausal.span.type`: a span from some other OTLP source.
    Foreign,
}

pub(crate) fn classify(span: &Span) -> SpanClass<'_> {
    match find_attr(&span.attributes, attr::SPAN_TYPE).and_then(any_value_str) {
        Some(span_type::OBJECT) => SpanClass::Object,
        Some(other) => SpanClass::Activity(other),
        None => SpanClass::Foreign,
    }
}

/// Why an incoming span was not stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RejectReason {
    #[error("span id is {0} bytes, expected 8")]
    SpanId(usize),
    #[error("trace id is {0} bytes, expected 16")]
    TraceId(usize),
    #[error("activity span has no 8-byte parent span id")]
    NoParent,
    #[error("object span lacks attribute {0}")]
    MissingAttribute(&'static str),
    #[error("span cannot be encoded: {0}")]
    Encode(String),
}

/// The identity of an object span: its key, window and ids, read from its attributes.
/// `resource_cluster` is the resource's `k8s.cluster.name`, used when the span lacks one.
pub(crate) fn object_identity(
    span: &Span,
    resource_cluster: Option<&str>,
) -> Result<(ObjectKey, Window, [u8; 16], [u8; 8]), RejectReason> {
    let span_id = span_id_of(&span.span_id)?;
    let trace_id: [u8; 16] = span
        .trace_id
        .as_slice()
        .try_into()
        .map_err(|_| RejectReason::TraceId(span.trace_id.len()))?;
    let get = |name| find_attr(&span.attributes, name).and_then(any_value_str);
    let cluster = get(attr::CLUSTER).or(resource_cluster).unwrap_or("");
    let resource = get(attr::OBJECT_RESOURCE)
        .filter(|s| !s.is_empty())
        .ok_or(RejectReason::MissingAttribute(attr::OBJECT_RESOURCE))?;
    let name = get(attr::OBJECT_NAME)
        .filter(|s| !s.is_empty())
        .ok_or(RejectReason::MissingAttribute(attr::OBJECT_NAME))?;
    let key = ObjectKey::new(
        cluster,
        get(attr::OBJECT_GROUP).unwrap_or(""),
        resource,
        get(attr::NAMESPACE).unwrap_or(""),
        name,
    );
    let start = find_attr(&span.attributes, attr::WINDOW_START)
        .and_then(any_value_int)
        .unwrap_or_else(|| clamp_nanos(span.start_time_unix_nano));
    let length = find_attr(&span.attributes, attr::WINDOW_LENGTH)
        .and_then(any_value_int)
        .unwrap_or_else(|| clamp_nanos(span.end_time_unix_nano).saturating_sub(start))
        .max(1);
    Ok((key, Window { start, length }, trace_id, span_id))
}

/// Decode a stored object span into a record. `None` if it no longer parses (logged by the
/// caller).
pub(crate) fn object_record(span: &Span) -> Result<ObjectRecord, RejectReason> {
    let (key, window, trace_id, span_id) = object_identity(span, None)?;
    let links = span.links.iter().filter_map(object_link).collect();
    Ok(ObjectRecord {
        key,
        window,
        trace_id,
        span_id,
        name: span.name.clone(),
        attributes: span.attributes.clone(),
        links,
    })
}

/// A span link between object spans as an [`ObjectLink`]; `None` for links without the
/// `kausal.link.*` attributes (they are kept in the stored span but not followed).
pub(crate) fn object_link(link: &span::Link) -> Option<ObjectLink> {
    let get = |name| find_attr(&link.attributes, name).and_then(any_value_str);
    let role = LinkRole::parse(get(attr::LINK_ROLE)?)?;
    let peer = ObjectKey::new(
        get(attr::LINK_PEER_CLUSTER).unwrap_or(""),
        get(attr::LINK_PEER_GROUP).unwrap_or(""),
        get(attr::LINK_PEER_RESOURCE)?,
        get(attr::LINK_PEER_NAMESPACE).unwrap_or(""),
        get(attr::LINK_PEER_NAME)?,
    );
    Some(ObjectLink {
        peer,
        role,
        class: get(attr::LINK_CLASS).unwrap_or("").to_string(),
        inferred: find_attr(&link.attributes, attr::LINK_INFERRED)
            .and_then(|v| match v.value.as_ref()? {
                any_value::Value::BoolValue(b) => Some(*b),
                _ => None,
            })
            .unwrap_or(false),
        peer_uid: get(attr::LINK_PEER_UID).filter(|s| !s.is_empty()).map(str::to_string),
        peer_kind: get(attr::LINK_PEER_KIND).filter(|s| !s.is_empty()).map(str::to_string),
        peer_trace_id: link.trace_id.as_slice().try_into().unwrap_or([0; 16]),
        peer_span_id: link.span_id.as_slice().try_into().unwrap_or([0; 8]),
    })
}

/// Merge a re-emitted object span into the stored one: attributes by name (a newer non-empty
/// value wins, an empty one never erases), links as a union keyed by (peer span, role, class)
/// where a newer emission of the same link replaces the older. Returns whether anything
/// changed, so that unchanged re-emissions cost no write.
pub(crate) fn merge_object_span(stored: &mut Span, incoming: &Span) -> bool {
    let mut changed = false;
    if !incoming.name.is_empty() && incoming.name != stored.name {
        stored.name.clone_from(&incoming.name);
        changed = true;
    }
    changed |= merge_attributes(&mut stored.attributes, &incoming.attributes);
    for link in &incoming.links {
        let identity = link_identity(link);
        match stored.links.iter_mut().find(|l| link_identity(l) == identity) {
            Some(existing) if existing != link => {
                *existing = link.clone();
                changed = true;
            }
            Some(_) => {}
            None => {
                stored.links.push(link.clone());
                changed = true;
            }
        }
    }
    if incoming.start_time_unix_nano != 0 && incoming.start_time_unix_nano < stored.start_time_unix_nano {
        stored.start_time_unix_nano = incoming.start_time_unix_nano;
        changed = true;
    }
    if incoming.end_time_unix_nano > stored.end_time_unix_nano {
        stored.end_time_unix_nano = incoming.end_time_unix_nano;
        changed = true;
    }
    changed
}

/// Merge attributes by name; returns whether `stored` changed.
pub(crate) fn merge_attributes(stored: &mut Vec<KeyValue>, incoming: &[KeyValue]) -> bool {
    let mut changed = false;
    for kv in incoming {
        if is_empty_value(kv.value.as_ref()) {
            continue;
        }
        match stored.iter_mut().find(|s| s.key == kv.key) {
            Some(existing) if existing.value != kv.value => {
                existing.value.clone_from(&kv.value);
                changed = true;
            }
            Some(_) => {}
            None => {
                stored.push(kv.clone());
                changed = true;
            }
        }
    }
    changed
}

fn link_identity(link: &span::Link) -> (&[u8], Option<&str>, Option<&str>) {
    (
        &link.span_id,
        find_attr(&link.attributes, attr::LINK_ROLE).and_then(any_value_str),
        find_attr(&link.attributes, attr::LINK_CLASS).and_then(any_value_str),
    )
}

fn is_empty_value(v: Option<&AnyValue>) -> bool {
    match v.and_then(|v| v.value.as_ref()) {
        None => true,
        Some(any_value::Value::StringValue(s)) => s.is_empty(),
        Some(_) => false,
    }
}

/// A string attribute.
pub(crate) fn string_kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.to_string())) }),
        ..Default::default()
    }
}

pub(crate) fn span_id_of(bytes: &[u8]) -> Result<[u8; 8], RejectReason> {
    bytes.try_into().map_err(|_| RejectReason::SpanId(bytes.len()))
}

/// Find an attribute by name.
pub fn find_attr<'a>(attrs: &'a [KeyValue], name: &str) -> Option<&'a AnyValue> {
    attrs.iter().find(|kv| kv.key == name).and_then(|kv| kv.value.as_ref())
}

pub fn any_value_str(v: &AnyValue) -> Option<&str> {
    match v.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s),
        _ => None,
    }
}

pub fn any_value_int(v: &AnyValue) -> Option<i64> {
    match v.value.as_ref()? {
        any_value::Value::IntValue(i) => Some(*i),
        any_value::Value::StringValue(s) => s.parse().ok(),
        _ => None,
    }
}

/// A scalar attribute value as text (as matched by tag search); `None` for arrays, maps and
/// bytes.
pub fn any_value_text(v: &AnyValue) -> Option<String> {
    Some(match v.value.as_ref()? {
        any_value::Value::StringValue(s) => s.clone(),
        any_value::Value::IntValue(i) => i.to_string(),
        any_value::Value::BoolValue(b) => b.to_string(),
        any_value::Value::DoubleValue(d) => d.to_string(),
        _ => return None,
    })
}

pub(crate) fn clamp_nanos(t: u64) -> Nanos {
    Nanos::try_from(t).unwrap_or(Nanos::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) }),
            ..Default::default()
        }
    }

    #[test]
    fn attribute_merge_keeps_old_values_against_empty_ones() {
        let mut stored = vec![kv("a", "1"), kv("b", "2")];
        assert!(!merge_attributes(&mut stored, &[kv("a", "1"), kv("b", "")]));
        assert!(merge_attributes(&mut stored, &[kv("b", "3"), kv("c", "4")]));
        assert_eq!(stored, vec![kv("a", "1"), kv("b", "3"), kv("c", "4")]);
    }

    #[test]
    fn link_merge_is_a_union() {
        let link = |id: u8, role: &str| span::Link {
            span_id: vec![id; 8],
            trace_id: vec![id; 16],
            attributes: vec![kv(attr::LINK_ROLE, role), kv(attr::LINK_CLASS, "children")],
            ..Default::default()
        };
        let mut stored = Span { links: vec![link(1, "child")], ..Default::default() };
        let incoming = Span { links: vec![link(2, "child"), link(1, "child")], ..Default::default() };
        assert!(merge_object_span(&mut stored, &incoming));
        assert_eq!(stored.links.len(), 2);
        assert!(!merge_object_span(&mut stored, &incoming), "second merge is a no-op");
    }
}
