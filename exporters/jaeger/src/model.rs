//! OTLP → Jaeger model, pure. One Jaeger batch per OTLP resource: the process is the resource
//! (`service.name` as service name, other resource attributes as process tags); attributes
//! become tags, span events become logs (`event` field first), the parent becomes a CHILD_OF
//! reference and links become FOLLOWS_FROM references. Span kind, status and the
//! instrumentation scope become the tags Jaeger's own OTLP translation uses (`span.kind`,
//! `otel.status_code`, `error`, `otel.scope.name`).

use kausal_core::otlp_common::any_value::Value;
use kausal_core::otlp_common::{AnyValue, KeyValue};
use kausal_core::otlp_trace::{ResourceSpans, Span};
use kausal_proto::jaeger::api_v2 as jaeger;

fn tag(key: &str, value: Option<&AnyValue>) -> jaeger::KeyValue {
    let mut kv = jaeger::KeyValue { key: key.to_string(), ..Default::default() };
    match value.and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => kv.v_str = s.clone(),
        Some(Value::BoolValue(b)) => {
            kv.v_type = jaeger::ValueType::Bool as i32;
            kv.v_bool = *b;
        }
        Some(Value::IntValue(i)) => {
            kv.v_type = jaeger::ValueType::Int64 as i32;
            kv.v_int64 = *i;
        }
        Some(Value::DoubleValue(f)) => {
            kv.v_type = jaeger::ValueType::Float64 as i32;
            kv.v_float64 = *f;
        }
        Some(Value::BytesValue(b)) => {
            kv.v_type = jaeger::ValueType::Binary as i32;
            kv.v_binary = b.clone();
        }
        Some(Value::ArrayValue(a)) => {
            let items: Vec<String> = a.values.iter().map(|v| display(Some(v))).collect();
            kv.v_str = format!("[{}]", items.join(","));
        }
        Some(other) => kv.v_str = format!("{other:?}"),
        None => {}
    }
    kv
}

fn display(v: Option<&AnyValue>) -> String {
    match v.and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => format!("{s:?}"),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(f)) => f.to_string(),
        Some(other) => format!("{other:?}"),
        None => "null".into(),
    }
}

fn str_tag(key: &str, v: &str) -> jaeger::KeyValue {
    jaeger::KeyValue { key: key.to_string(), v_str: v.to_string(), ..Default::default() }
}

fn tags(attributes: &[KeyValue]) -> Vec<jaeger::KeyValue> {
    attributes.iter().map(|kv| tag(&kv.key, kv.value.as_ref())).collect()
}

fn timestamp(nanos: u64) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: (nanos / 1_000_000_000) as i64, nanos: (nanos % 1_000_000_000) as i32 }
}

fn span_kind(kind: i32) -> Option<&'static str> {
    Some(match kind {
        1 => "internal",
        2 => "server",
        3 => "client",
        4 => "producer",
        5 => "consumer",
        _ => return None,
    })
}

fn convert_span(span: &Span, scope: Option<&str>) -> jaeger::Span {
    let mut references = Vec::new();
    if !span.parent_span_id.is_empty() {
        references.push(jaeger::SpanRef {
            trace_id: span.trace_id.clone(),
            span_id: span.parent_span_id.clone(),
            ref_type: jaeger::SpanRefType::ChildOf as i32,
        });
    }
    for l in &span.links {
        references.push(jaeger::SpanRef {
            trace_id: l.trace_id.clone(),
            span_id: l.span_id.clone(),
            ref_type: jaeger::SpanRefType::FollowsFrom as i32,
        });
    }
    let mut t = tags(&span.attributes);
    if let Some(k) = span_kind(span.kind) {
        t.push(str_tag("span.kind", k));
    }
    if let Some(s) = scope.filter(|s| !s.is_empty()) {
        t.push(str_tag("otel.scope.name", s));
    }
    if let Some(status) = &span.status {
        match status.code {
            1 => t.push(str_tag("otel.status_code", "OK")),
            2 => {
                t.push(str_tag("otel.status_code", "ERROR"));
                t.push(jaeger::KeyValue { key: "error".into(), v_type: jaeger::ValueType::Bool as i32, v_bool: true, ..Default::default() });
                if !status.message.is_empty() {
                    t.push(str_tag("otel.status_description", &status.message));
                }
            }
            _ => {}
        }
    }
    let logs = span
        .events
        .iter()
        .map(|e| {
            let mut fields = vec![str_tag("event", &e.name)];
            fields.extend(tags(&e.attributes));
            jaeger::Log { timestamp: Some(timestamp(e.time_unix_nano)), fields }
        })
        .collect();
    let duration = span.end_time_unix_nano.saturating_sub(span.start_time_unix_nano);
    jaeger::Span {
        trace_id: span.trace_id.clone(),
        span_id: span.span_id.clone(),
        operation_name: span.name.clone(),
        references,
        flags: span.flags & 0xff,
        start_time: Some(timestamp(span.start_time_unix_nano)),
        duration: Some(prost_types::Duration { seconds: (duration / 1_000_000_000) as i64, nanos: (duration % 1_000_000_000) as i32 }),
        tags: t,
        logs,
        process: None,
        process_id: String::new(),
        warnings: Vec::new(),
    }
}

/// One Jaeger batch per resource.
pub fn to_batches(resources: &[ResourceSpans]) -> Vec<jaeger::Batch> {
    resources
        .iter()
        .map(|rs| {
            let attrs = rs.resource.as_ref().map(|r| r.attributes.as_slice()).unwrap_or(&[]);
            let service = kausal_core::otlp::attr_str(attrs, "service.name").unwrap_or("kausal").to_string();
            let process = jaeger::Process {
                service_name: service,
                tags: tags(&attrs.iter().filter(|kv| kv.key != "service.name").cloned().collect::<Vec<_>>()),
            };
            let spans = rs
                .scope_spans
                .iter()
                .flat_map(|ss| {
                    let scope = ss.scope.as_ref().map(|s| s.name.as_str());
                    ss.spans.iter().map(move |s| convert_span(s, scope))
                })
                .collect();
            jaeger::Batch { spans, process: Some(process) }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use kausal_core::otlp::{kv_bool, kv_int, kv_str};
    use kausal_core::otlp_resource::Resource;
    use kausal_core::otlp_trace::{ScopeSpans, Status, span::Event, span::Link};

    use super::*;

    #[test]
    fn an_otlp_resource_becomes_a_jaeger_batch() {
        let rs = ResourceSpans {
            resource: Some(Resource { attributes: vec![kv_str("service.name", "deployments.apps"), kv_str("k8s.cluster.name", "prod")], ..Default::default() }),
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: vec![1; 16],
                    span_id: vec![2; 8],
                    parent_span_id: vec![3; 8],
                    name: "alice update".into(),
                    kind: 2,
                    start_time_unix_nano: 1_500_000_000,
                    end_time_unix_nano: 4_000_000_000,
                    attributes: vec![kv_int("http.response.status_code", 409), kv_bool("retry", true)],
                    events: vec![Event { time_unix_nano: 2_000_000_000, name: "kausal.diff".into(), attributes: vec![kv_str("kausal.diff.lines", "a -> b")], ..Default::default() }],
                    links: vec![Link { trace_id: vec![9; 16], span_id: vec![8; 8], ..Default::default() }],
                    status: Some(Status { code: 2, message: "conflict".into() }),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let b = &to_batches(&[rs])[0];
        let p = b.process.as_ref().unwrap();
        assert_eq!(p.service_name, "deployments.apps");
        assert_eq!(p.tags[0].key, "k8s.cluster.name");
        let s = &b.spans[0];
        assert_eq!(s.references[0].span_id, vec![3; 8]);
        assert_eq!(s.references[0].ref_type, jaeger::SpanRefType::ChildOf as i32);
        assert_eq!(s.references[1].ref_type, jaeger::SpanRefType::FollowsFrom as i32);
        assert_eq!(s.start_time, Some(prost_types::Timestamp { seconds: 1, nanos: 500_000_000 }));
        assert_eq!(s.duration, Some(prost_types::Duration { seconds: 2, nanos: 500_000_000 }));
        assert_eq!((s.tags[0].v_type, s.tags[0].v_int64), (jaeger::ValueType::Int64 as i32, 409));
        assert!(s.tags.iter().any(|t| t.key == "error" && t.v_bool));
        assert!(s.tags.iter().any(|t| t.key == "span.kind" && t.v_str == "server"));
        assert_eq!(s.logs[0].fields[0].v_str, "kausal.diff");
        assert_eq!(s.logs[0].fields[1].v_str, "a -> b");
    }
}
