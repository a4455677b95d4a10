//! Span fixtures shaped like the span builder's output (per `kausal_core::conventions`), for
//! tests and benchmarks of the store and the query side. Not used by the store itself.

use kausal_core::conventions::{activity_span_id, attr, object_span_id, object_trace_id, span_type, Window};
use kausal_core::otlp_common::{any_value, AnyValue, ArrayValue, KeyValue};
use kausal_core::otlp_resource::Resource;
use kausal_core::otlp_trace::{span, ResourceSpans, ScopeSpans, Span};
use kausal_core::{LinkRole, Nanos, ObjectKey};

pub fn string(key: &str, value: &str) -> KeyValue {
    kv(key, any_value::Value::StringValue(value.to_string()))
}

pub fn int(key: &str, value: i64) -> KeyValue {
    kv(key, any_value::Value::IntValue(value))
}

pub fn boolean(key: &str, value: bool) -> KeyValue {
    kv(key, any_value::Value::BoolValue(value))
}

pub fn strings(key: &str, values: &[&str]) -> KeyValue {
    let values = values
        .iter()
        .map(|v| AnyValue { value: Some(any_value::Value::StringValue(v.to_string())) })
        .collect();
    kv(key, any_value::Value::ArrayValue(ArrayValue { values }))
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue { key: key.to_string(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
}

/// A link from an object span to a peer's object span in the same window; `role` is the
/// peer's role.
pub fn link(peer: &ObjectKey, peer_kind: &str, window: Window, role: LinkRole) -> span::Link {
    span::Link {
        trace_id: object_trace_id(peer, window).to_vec(),
        span_id: object_span_id(peer, window).to_vec(),
        attributes: vec![
            string(attr::LINK_ROLE, role.as_str()),
            string(attr::LINK_CLASS, kausal_core::activity::LINK_CLASS_CHILDREN),
            boolean(attr::LINK_INFERRED, false),
            string(attr::LINK_PEER_CLUSTER, &peer.cluster),
            string(attr::LINK_PEER_GROUP, &peer.group),
            string(attr::LINK_PEER_RESOURCE, &peer.resource),
            string(attr::LINK_PEER_NAMESPACE, &peer.namespace),
            string(attr::LINK_PEER_NAME, &peer.name),
            string(attr::LINK_PEER_KIND, peer_kind),
        ],
        ..Default::default()
    }
}

/// An object span for `key` in `window`, with its kind's semantic-convention name attribute.
pub fn object_span(key: &ObjectKey, kind: &str, window: Window, links: Vec<span::Link>) -> Span {
    let mut attributes = vec![
        string(attr::SPAN_TYPE, span_type::OBJECT),
        string(attr::CLUSTER, &key.cluster),
        string(attr::OBJECT_GROUP, &key.group),
        string(attr::OBJECT_RESOURCE, &key.resource),
        string(attr::OBJECT_NAME, &key.name),
        string(attr::OBJECT_KIND, kind),
        int(attr::WINDOW_START, window.start),
        int(attr::WINDOW_LENGTH, window.length),
    ];
    if !key.namespace.is_empty() {
        attributes.push(string(attr::NAMESPACE, &key.namespace));
    }
    if let Some((name_attr, _)) = kausal_core::conventions::semconv_name_attr(kind)
        && name_attr != attr::NAMESPACE
    {
        attributes.push(string(name_attr, &key.name));
    }
    let name = if key.namespace.is_empty() {
        format!("{} {}", key.group_resource(), key.name)
    } else {
        format!("{} {}/{}", key.group_resource(), key.namespace, key.name)
    };
    Span {
        trace_id: object_trace_id(key, window).to_vec(),
        span_id: object_span_id(key, window).to_vec(),
        name,
        kind: span::SpanKind::Internal as i32,
        start_time_unix_nano: nanos_u64(window.start),
        end_time_unix_nano: nanos_u64(window.end()),
        attributes,
        links,
        ..Default::default()
    }
}

/// An audit activity span under the object span of `key` in `window`. `code` ≥ 300 adds the
/// status reason; 409 is named `(Conflict)` as the span builder names it.
#[allow(clippy::too_many_arguments)]
pub fn audit_span(
    key: &ObjectKey,
    window: Window,
    audit_id: &str,
    user: &str,
    verb: &str,
    subresource: &str,
    code: i64,
    start: Nanos,
    end: Nanos,
) -> Span {
    let object = object_span_id(key, window);
    let mut name = format!("{user} {verb}");
    if !subresource.is_empty() {
        name.push(' ');
        name.push_str(subresource);
    }
    let mut attributes = vec![
        string(attr::SPAN_TYPE, span_type::AUDIT),
        string(attr::AUDIT_ID, audit_id),
        string(attr::AUDIT_VERB, verb),
        string(attr::AUDIT_STAGE, "ResponseComplete"),
        string(attr::AUDIT_LEVEL, "Metadata"),
        string(attr::USER_NAME, user),
        int(attr::HTTP_STATUS_CODE, code),
    ];
    if !subresource.is_empty() {
        attributes.push(string(attr::AUDIT_SUBRESOURCE, subresource));
    }
    if code == 409 {
        name.push_str(" (Conflict)");
        attributes.push(string(attr::STATUS_REASON, "Conflict"));
        attributes.push(string(
            attr::STATUS_MESSAGE,
            "Operation cannot be fulfilled: the object has been modified; please apply your changes to the latest version and try again",
        ));
    }
    Span {
        trace_id: object_trace_id(key, window).to_vec(),
        span_id: activity_span_id(object, &format!("{audit_id}/ResponseComplete")).to_vec(),
        parent_span_id: object.to_vec(),
        name,
        kind: span::SpanKind::Internal as i32,
        start_time_unix_nano: nanos_u64(start),
        end_time_unix_nano: nanos_u64(end),
        attributes,
        ..Default::default()
    }
}

/// Attach a diff to an activity span as the span builder does.
pub fn with_diff(mut activity: Span, lines: &[&str]) -> Span {
    activity.events.push(span::Event {
        time_unix_nano: activity.end_time_unix_nano,
        name: attr::EVENT_DIFF.to_string(),
        attributes: vec![strings(attr::DIFF_LINES, lines)],
        ..Default::default()
    });
    activity
}

/// One `ResourceSpans` holding `spans`, with the resource attributes of `cluster`.
pub fn resource_spans(cluster: &str, service: &str, spans: Vec<Span>) -> ResourceSpans {
    ResourceSpans {
        resource: Some(Resource {
            attributes: vec![string("service.name", service), string(attr::CLUSTER, cluster)],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
        ..Default::default()
    }
}

fn nanos_u64(t: Nanos) -> u64 {
    u64::try_from(t).unwrap_or(0)
}
