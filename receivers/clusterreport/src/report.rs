//! A cluster report and its two wire shapes: JSON (what the CLI prints and merges) and OTLP (one
//! log record whose body maps workflow → {key: value}, plus one gauge per count). Pure data; it
//! knows nothing about how the values were gathered.

use std::collections::BTreeMap;

use kausal_core::otlp::kv_str;
use kausal_core::otlp_common::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
use kausal_core::otlp_logs::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use kausal_core::otlp_metrics::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
};
use kausal_core::otlp_resource::Resource;
use serde_json::{Map, Value};

/// The log record attribute naming the report's signal (`tcplines` puts it first on the line).
pub const SIGNAL_ATTRIBUTE: &str = "kausal.report.signal";
/// Instrumentation scope of everything this crate emits.
pub const SCOPE_NAME: &str = "kausal/clusterreport";

/// The values one workflow gathered, by key.
pub type Values = BTreeMap<String, Value>;

/// Workflow name → its values.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    pub workflows: BTreeMap<String, Values>,
    /// (workflow, key) of the values count jobs produced: gauges whatever their names.
    pub count_keys: std::collections::BTreeSet<(String, String)>,
}

impl Report {
    /// `{"workflow": {"key": value}}`.
    pub fn to_json(&self) -> Value {
        Value::Object(
            self.workflows
                .iter()
                .map(|(w, values)| {
                    (
                        w.clone(),
                        Value::Object(values.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
                    )
                })
                .collect(),
        )
    }

    /// Every integer whose key ends in `count` or `_total`, and every count job's value, as
    /// (workflow, key, value): the numbers that become gauges.
    pub fn counts(&self) -> Vec<(String, String, i64)> {
        let mut out = Vec::new();
        for (workflow, values) in &self.workflows {
            for (key, value) in values {
                if let Some(n) = value.as_i64()
                    && (key.ends_with("count")
                        || key.ends_with("_total")
                        || self.count_keys.contains(&(workflow.clone(), key.clone())))
                {
                    out.push((workflow.clone(), key.clone(), n));
                }
            }
        }
        out
    }
}

/// Deep merge: objects merge key by key, anything else in `overlay` replaces what `base` has.
pub fn merge_json(base: &mut Value, overlay: Value) {
    match (base, overlay) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) => merge_json(existing, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

/// A JSON value as an OTLP `AnyValue` (objects become key-value lists, keys in order).
pub fn json_to_any_value(value: &Value) -> AnyValue {
    let v = match value {
        Value::Null => None,
        Value::Bool(b) => Some(any_value::Value::BoolValue(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Some(any_value::Value::IntValue(i)),
            None => Some(any_value::Value::DoubleValue(
                n.as_f64().unwrap_or(f64::NAN),
            )),
        },
        Value::String(s) => Some(any_value::Value::StringValue(s.clone())),
        Value::Array(items) => Some(any_value::Value::ArrayValue(ArrayValue {
            values: items.iter().map(json_to_any_value).collect(),
        })),
        Value::Object(map) => Some(any_value::Value::KvlistValue(KeyValueList {
            values: object_to_kvs(map),
        })),
    };
    AnyValue { value: v }
}

fn object_to_kvs(map: &Map<String, Value>) -> Vec<KeyValue> {
    map.iter()
        .map(|(k, v)| KeyValue {
            key: k.clone(),
            key_strindex: 0,
            value: Some(json_to_any_value(v)),
        })
        .collect()
}

/// What the report is about, beyond its body: resource attributes and the signal name.
#[derive(Clone, Debug, Default)]
pub struct ReportMeta {
    pub signal: String,
    pub resource_attributes: BTreeMap<String, String>,
    /// Nanoseconds since the Unix epoch.
    pub time_unix_nano: u64,
}

fn resource(meta: &ReportMeta) -> Resource {
    Resource {
        attributes: meta
            .resource_attributes
            .iter()
            .map(|(k, v)| kv_str(k, v.clone()))
            .collect(),
        ..Default::default()
    }
}

fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: SCOPE_NAME.to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        ..Default::default()
    }
}

/// The report (as JSON, possibly merged with extra values) as one OTLP log record.
pub fn to_logs(body: &Value, meta: &ReportMeta) -> Vec<ResourceLogs> {
    let record = LogRecord {
        time_unix_nano: meta.time_unix_nano,
        observed_time_unix_nano: meta.time_unix_nano,
        severity_number: SeverityNumber::Info as i32,
        severity_text: "INFO".to_string(),
        body: Some(json_to_any_value(body)),
        attributes: vec![kv_str(SIGNAL_ATTRIBUTE, meta.signal.clone())],
        event_name: "kausal.cluster_report".to_string(),
        ..Default::default()
    };
    vec![ResourceLogs {
        resource: Some(resource(meta)),
        scope_logs: vec![ScopeLogs {
            scope: Some(scope()),
            log_records: vec![record],
            schema_url: String::new(),
        }],
        schema_url: String::new(),
    }]
}

/// One gauge per count, named `kausal.report.<workflow>.<key>`.
pub fn to_metrics(report: &Report, meta: &ReportMeta) -> Vec<ResourceMetrics> {
    let metrics = report
        .counts()
        .into_iter()
        .map(|(workflow, key, n)| Metric {
            name: format!("kausal.report.{workflow}.{key}"),
            description: format!("Value of {key} in the {workflow} workflow of the cluster report"),
            unit: "{item}".to_string(),
            metadata: Vec::new(),
            data: Some(metric::Data::Gauge(Gauge {
                data_points: vec![NumberDataPoint {
                    attributes: Vec::new(),
                    start_time_unix_nano: 0,
                    time_unix_nano: meta.time_unix_nano,
                    exemplars: Vec::new(),
                    flags: 0,
                    value: Some(number_data_point::Value::AsInt(n)),
                }],
            })),
        })
        .collect::<Vec<_>>();
    if metrics.is_empty() {
        return Vec::new();
    }
    vec![ResourceMetrics {
        resource: Some(resource(meta)),
        scope_metrics: vec![ScopeMetrics {
            scope: Some(scope()),
            metrics,
            schema_url: String::new(),
        }],
        schema_url: String::new(),
    }]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_is_deep_and_overlay_wins() {
        let mut base = json!({"a": {"x": 1, "y": 2}, "b": 1});
        merge_json(
            &mut base,
            json!({"a": {"y": 3, "z": 4}, "c": "new", "b": {"now": "object"}}),
        );
        assert_eq!(
            base,
            json!({"a": {"x": 1, "y": 3, "z": 4}, "b": {"now": "object"}, "c": "new"})
        );
    }

    #[test]
    fn body_maps_workflows_to_values() {
        let mut report = Report::default();
        report.workflows.insert(
            "cluster-state".into(),
            [("pod_count".to_string(), json!(3))].into(),
        );
        let logs = to_logs(
            &report.to_json(),
            &ReportMeta {
                signal: "ping".into(),
                ..Default::default()
            },
        );
        let body = logs[0].scope_logs[0].log_records[0]
            .body
            .clone()
            .and_then(|b| b.value);
        let Some(any_value::Value::KvlistValue(list)) = body else {
            panic!("body is not a kvlist: {body:?}")
        };
        assert_eq!(list.values[0].key, "cluster-state");
        let metrics = to_metrics(&report, &ReportMeta::default());
        assert_eq!(
            metrics[0].scope_metrics[0].metrics[0].name,
            "kausal.report.cluster-state.pod_count"
        );
    }
}
