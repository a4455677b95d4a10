//! Rendering batches as text, a pure function so tests can check exactly what is printed.

use std::fmt::Write;

use kausal_core::activity::{Activity, ActivityDetail};
use kausal_core::component::Batch;
use kausal_core::otlp_common::{AnyValue, KeyValue, any_value::Value};
use kausal_core::otlp_trace::ResourceSpans;
use serde::Deserialize;

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Verbosity {
    Basic,
    #[default]
    Normal,
    Detailed,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn value_text(v: &Option<AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(Value::ArrayValue(a)) => {
            let items: Vec<String> = a.values.iter().map(|v| value_text(&Some(v.clone()))).collect();
            format!("[{}]", items.join(", "))
        }
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn attrs(out: &mut String, indent: &str, attributes: &[KeyValue]) {
    for kv in attributes {
        let _ = writeln!(out, "{indent}{}: {}", kv.key, value_text(&kv.value));
    }
}

fn activity_line(a: &Activity) -> String {
    let what = match &a.detail {
        ActivityDetail::Audit(x) => format!(
            "audit {} {}{} {}",
            x.user.username,
            x.verb,
            if x.subresource.is_empty() { String::new() } else { format!(" {}", x.subresource) },
            x.code.map(|c| c.to_string()).unwrap_or_default()
        ),
        ActivityDetail::Event(x) => format!("event {} {}", x.reason, x.message),
        ActivityDetail::Change(x) => format!("change {} -> {}", x.old_resource_version, x.new_resource_version),
    };
    format!("{} {} links={}", a.object.key, what, a.links.len())
}

fn spans_text(out: &mut String, resources: &[ResourceSpans], detailed: bool) {
    for rs in resources {
        let resource_attrs = rs.resource.as_ref().map(|r| r.attributes.as_slice()).unwrap_or(&[]);
        if detailed {
            let _ = writeln!(out, "Resource:");
            attrs(out, "  ", resource_attrs);
        }
        for ss in &rs.scope_spans {
            for s in &ss.spans {
                let dur_ms = s.end_time_unix_nano.saturating_sub(s.start_time_unix_nano) as f64 / 1e6;
                let _ = writeln!(
                    out,
                    "span {} trace={} id={} parent={} {:.3}ms",
                    s.name,
                    hex(&s.trace_id),
                    hex(&s.span_id),
                    if s.parent_span_id.is_empty() { "-".to_string() } else { hex(&s.parent_span_id) },
                    dur_ms
                );
                if detailed {
                    attrs(out, "    ", &s.attributes);
                    for l in &s.links {
                        let _ = writeln!(out, "    link -> {}", hex(&l.span_id));
                        attrs(out, "      ", &l.attributes);
                    }
                    for e in &s.events {
                        let _ = writeln!(out, "    event {}", e.name);
                        attrs(out, "      ", &e.attributes);
                    }
                }
            }
        }
    }
}

/// The text printed for one batch.
pub fn render(batch: &Batch, verbosity: Verbosity) -> String {
    let mut out = String::new();
    match (batch, verbosity) {
        (Batch::Activities(a), Verbosity::Basic) => {
            let _ = writeln!(out, "{} activities", a.len());
        }
        (Batch::Spans(r), Verbosity::Basic) => {
            let _ = writeln!(out, "{} spans in {} resources", batch.len(), r.len());
        }
        (Batch::Activities(acts), Verbosity::Normal) => {
            for a in acts {
                let _ = writeln!(out, "{}", activity_line(a));
            }
        }
        (Batch::Activities(acts), Verbosity::Detailed) => {
            for a in acts {
                let _ = writeln!(out, "{}", serde_json::to_string(a).unwrap_or_else(|e| format!("<unprintable: {e}>")));
            }
        }
        (Batch::Spans(r), v) => spans_text(&mut out, r, v == Verbosity::Detailed),
        (other, Verbosity::Basic) => {
            let _ = writeln!(out, "{} {}", other.len(), other.kind());
        }
        (Batch::Logs(resources), v) => {
            for rs in resources {
                for sl in &rs.scope_logs {
                    for r in &sl.log_records {
                        let _ = writeln!(out, "log {} {}", r.time_unix_nano, value_text(&r.body));
                        if v == Verbosity::Detailed {
                            attrs(&mut out, "    ", &r.attributes);
                        }
                    }
                }
            }
        }
        (Batch::Metrics(resources), _) => {
            for rs in resources {
                for sm in &rs.scope_metrics {
                    for m in &sm.metrics {
                        let _ = writeln!(out, "metric {} {}", m.name, m.unit);
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use kausal_core::otlp::kv_str;
    use kausal_core::otlp_trace::{ScopeSpans, Span};

    #[test]
    fn renders_each_verbosity() {
        let batch = Batch::Spans(vec![ResourceSpans {
            resource: None,
            scope_spans: vec![ScopeSpans {
                scope: None,
                spans: vec![Span {
                    name: "pods default/p".into(),
                    trace_id: vec![1; 16],
                    span_id: vec![2; 8],
                    start_time_unix_nano: 0,
                    end_time_unix_nano: 2_000_000,
                    attributes: vec![kv_str("k8s.object.name", "p")],
                    ..Default::default()
                }],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }]);
        assert_eq!(render(&batch, Verbosity::Basic), "1 spans in 1 resources\n");
        let normal = render(&batch, Verbosity::Normal);
        assert_eq!(normal, "span pods default/p trace=01010101010101010101010101010101 id=0202020202020202 parent=- 2.000ms\n");
        assert!(render(&batch, Verbosity::Detailed).contains("    k8s.object.name: p\n"));
    }
}
