//! Log records as HEC events. Pure: the body becomes `event` (key-value lists as JSON objects),
//! the record time `time` (seconds, millisecond precision), `host` the configured host or the
//! resource's `host.name`, record attributes indexed `fields`.

use kausal_core::otlp::attr_str;
use kausal_core::otlp_common::{AnyValue, any_value};
use kausal_core::otlp_logs::ResourceLogs;
use serde_json::{Map, Value, json};

use crate::config::Config;

/// An OTLP value as JSON.
pub fn any_value_to_json(value: Option<&AnyValue>) -> Value {
    let Some(v) = value.and_then(|v| v.value.as_ref()) else {
        return Value::Null;
    };
    match v {
        any_value::Value::StringValue(s) => json!(s),
        any_value::Value::BoolValue(b) => json!(b),
        any_value::Value::IntValue(i) => json!(i),
        any_value::Value::DoubleValue(d) => json!(d),
        any_value::Value::BytesValue(b) => {
            json!(b.iter().map(|x| format!("{x:02x}")).collect::<String>())
        }
        any_value::Value::ArrayValue(a) => Value::Array(
            a.values
                .iter()
                .map(|v| any_value_to_json(Some(v)))
                .collect(),
        ),
        any_value::Value::KvlistValue(l) => Value::Object(
            l.values
                .iter()
                .map(|kv| (kv.key.clone(), any_value_to_json(kv.value.as_ref())))
                .collect::<Map<String, Value>>(),
        ),
        #[allow(unreachable_patterns)]
        _ => Value::Null,
    }
}

/// One HEC event envelope per log record.
pub fn events(logs: &[ResourceLogs], config: &Config) -> Vec<Value> {
    let mut out = Vec::new();
    for rl in logs {
        let resource_attrs = rl
            .resource
            .as_ref()
            .map(|r| r.attributes.as_slice())
            .unwrap_or_default();
        let host = config
            .host
            .clone()
            .or_else(|| attr_str(resource_attrs, "host.name").map(str::to_string));
        for sl in &rl.scope_logs {
            for record in &sl.log_records {
                let nanos = if record.time_unix_nano != 0 {
                    record.time_unix_nano
                } else {
                    record.observed_time_unix_nano
                };
                let mut envelope = Map::new();
                // HEC takes epoch seconds with a fractional part; milliseconds are what it keeps.
                envelope.insert("time".into(), json!(((nanos / 1_000_000) as f64) / 1000.0));
                if let Some(h) = &host {
                    envelope.insert("host".into(), json!(h));
                }
                envelope.insert("source".into(), json!(config.source));
                envelope.insert("sourcetype".into(), json!(config.sourcetype));
                if let Some(i) = &config.index {
                    envelope.insert("index".into(), json!(i));
                }
                envelope.insert("event".into(), any_value_to_json(record.body.as_ref()));
                let fields: Map<String, Value> = record
                    .attributes
                    .iter()
                    .map(|kv| (kv.key.clone(), any_value_to_json(kv.value.as_ref())))
                    .collect();
                if !fields.is_empty() {
                    envelope.insert("fields".into(), Value::Object(fields));
                }
                out.push(Value::Object(envelope));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use kausal_core::otlp::kv_str;
    use kausal_core::otlp_common::{KeyValue, KeyValueList};
    use kausal_core::otlp_logs::{LogRecord, ScopeLogs};
    use kausal_core::otlp_resource::Resource;

    #[test]
    fn envelope_of_a_record() {
        let body = AnyValue {
            value: Some(any_value::Value::KvlistValue(KeyValueList {
                values: vec![KeyValue {
                    key: "state".into(),
                    key_strindex: 0,
                    value: Some(AnyValue {
                        value: Some(any_value::Value::IntValue(3)),
                    }),
                }],
            })),
        };
        let logs = vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![kv_str("host.name", "node-1")],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord {
                    time_unix_nano: 1_700_000_000_123_456_789,
                    body: Some(body),
                    attributes: vec![kv_str("kausal.report.signal", "ping")],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            schema_url: String::new(),
        }];
        let mut config = Config::new("https://x", "t");
        config.index = Some("main".into());
        let e = events(&logs, &config);
        assert_eq!(
            e,
            vec![
                json!({"time": 1_700_000_000.123, "host": "node-1", "source": "kausal", "sourcetype": "kausal:report", "index": "main", "event": {"state": 3}, "fields": {"kausal.report.signal": "ping"}})
            ]
        );
    }
}
