//! Traces that kausal did not build: spans received over OTLP (SDKs, other collectors,
//! kube-apiserver's tracing) that the store keeps by trace id. Served as they came, by their
//! own 32-hex-digit trace id, so `GET /api/traces/{id}` works for them too; no display modes.

use std::collections::BTreeMap;

use kausal_core::otlp_common::any_value::Value;
use kausal_core::otlp_common::{AnyValue, KeyValue as OtlpKeyValue};
use kausal_core::otlp_trace::Span;
use kausal_store::Store;

use crate::api::ApiError;
use crate::jaeger::{JaegerTrace, JaegerSpan, KeyValue, Log, Process, Reference, TagValue, hex};

/// A 32-hex-digit trace id.
pub fn parse_trace_id(s: &str) -> Option<[u8; 16]> {
    if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The stored foreign spans of `trace_id`, or not found.
pub fn spans(store: &Store, trace_id: [u8; 16]) -> Result<Vec<Span>, ApiError> {
    let spans = store.read()?.foreign_spans(trace_id)?;
    if spans.is_empty() {
        return Err(ApiError::not_found(format!("trace {} not found", hex(&trace_id))));
    }
    Ok(spans)
}

fn value(v: &Option<AnyValue>) -> (&'static str, TagValue<'_>) {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => ("string", s.as_str().into()),
        Some(Value::BoolValue(b)) => ("bool", (*b).into()),
        Some(Value::IntValue(i)) => ("int64", (*i).into()),
        Some(Value::DoubleValue(f)) if f.is_finite() => ("float64", TagValue::Float(*f)),
        Some(Value::DoubleValue(f)) => ("string", f.to_string().into()),
        Some(Value::BytesValue(b)) => ("string", hex(b).into()),
        Some(other) => ("string", format!("{other:?}").into()),
        None => ("string", "".into()),
    }
}

fn tags(attributes: &[OtlpKeyValue]) -> Vec<KeyValue<'_>> {
    attributes
        .iter()
        .map(|kv| {
            let (value_type, value) = value(&kv.value);
            KeyValue { key: kv.key.as_str().into(), value_type, value }
        })
        .collect()
}

/// Jaeger JSON of OTLP spans; the resource is not stored, so one process stands for all.
pub fn render<'a>(trace_id: &[u8; 16], spans: &'a [Span]) -> JaegerTrace<'a> {
    let trace_hex = hex(trace_id);
    let mut processes = BTreeMap::new();
    processes.insert("p1".to_string(), Process { service_name: "otlp".into(), tags: Vec::new() });
    let spans = spans
        .iter()
        .map(|s| {
            let mut t = tags(&s.attributes);
            if let Some(st) = &s.status
                && st.code == 2
            {
                t.push(KeyValue { key: "error".into(), value_type: "bool", value: true.into() });
            }
            JaegerSpan {
                trace_id: trace_hex.clone(),
                span_id: hex(&s.span_id),
                flags: 1,
                operation_name: s.name.as_str().into(),
                references: (!s.parent_span_id.is_empty())
                    .then(|| Reference { ref_type: "CHILD_OF", trace_id: trace_hex.clone(), span_id: hex(&s.parent_span_id) })
                    .into_iter()
                    .chain(s.links.iter().map(|l| Reference {
                        ref_type: "FOLLOWS_FROM",
                        trace_id: hex(&l.trace_id),
                        span_id: hex(&l.span_id),
                    }))
                    .collect(),
                start_time: (s.start_time_unix_nano / 1_000) as i64,
                duration: (s.end_time_unix_nano.saturating_sub(s.start_time_unix_nano) / 1_000) as i64,
                tags: t,
                logs: s
                    .events
                    .iter()
                    .map(|e| {
                        let mut fields = vec![KeyValue { key: "event".into(), value_type: "string", value: e.name.as_str().into() }];
                        fields.extend(tags(&e.attributes));
                        Log { timestamp: (e.time_unix_nano / 1_000) as i64, fields }
                    })
                    .collect(),
                process_id: "p1".into(),
                warnings: None,
            }
        })
        .collect();
    JaegerTrace { trace_id: trace_hex, spans, processes, warnings: None }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_and_spans_render_with_parents() {
        assert_eq!(parse_trace_id("000102030405060708090a0b0c0d0e0f").map(|b| b[15]), Some(15));
        assert_eq!(parse_trace_id("xyz"), None);
        let spans = vec![
            Span { trace_id: vec![1; 16], span_id: vec![2; 8], name: "root".into(), ..Default::default() },
            Span { trace_id: vec![1; 16], span_id: vec![3; 8], parent_span_id: vec![2; 8], name: "child".into(), ..Default::default() },
        ];
        let t = render(&[1; 16], &spans);
        assert_eq!(t.spans[1].references[0].span_id, "0202020202020202");
        assert!(t.spans[0].references.is_empty());
    }
}
