//! A report as one line: `<14>signal=<signal>;key=value;…;` — syslog priority 14 (user.info),
//! then the signal, then every value of the body with nested keys joined by dots, in key order.
//! Arrays join their items with commas. `%`, `;`, `=` and line breaks inside keys and values are
//! percent-encoded so one report is always one parseable line. Pure.

use std::collections::BTreeMap;

use kausal_core::otlp_common::{AnyValue, any_value};

/// The record attribute naming the report's signal.
pub const SIGNAL_ATTRIBUTE: &str = "kausal.report.signal";

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '%' => out.push_str("%25"),
            ';' => out.push_str("%3B"),
            '=' => out.push_str("%3D"),
            '\n' => out.push_str("%0A"),
            '\r' => out.push_str("%0D"),
            c => out.push(c),
        }
    }
    out
}

fn scalar(v: &any_value::Value) -> String {
    match v {
        any_value::Value::StringValue(s) => s.clone(),
        any_value::Value::BoolValue(b) => b.to_string(),
        any_value::Value::IntValue(i) => i.to_string(),
        any_value::Value::DoubleValue(d) => d.to_string(),
        any_value::Value::BytesValue(b) => b.iter().map(|x| format!("{x:02x}")).collect(),
        any_value::Value::ArrayValue(a) => a
            .values
            .iter()
            .filter_map(|v| v.value.as_ref())
            .map(scalar)
            .collect::<Vec<_>>()
            .join(","),
        any_value::Value::KvlistValue(l) => l
            .values
            .iter()
            .map(|kv| {
                format!(
                    "{}:{}",
                    kv.key,
                    kv.value
                        .as_ref()
                        .and_then(|v| v.value.as_ref())
                        .map(scalar)
                        .unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join(","),
        #[allow(unreachable_patterns)]
        _ => String::new(),
    }
}

fn flatten_into(prefix: &str, value: &AnyValue, out: &mut BTreeMap<String, String>) {
    match &value.value {
        Some(any_value::Value::KvlistValue(list)) => {
            for kv in &list.values {
                let key = if prefix.is_empty() {
                    kv.key.clone()
                } else {
                    format!("{prefix}.{}", kv.key)
                };
                match &kv.value {
                    Some(v) => flatten_into(&key, v, out),
                    None => {
                        out.insert(key, String::new());
                    }
                }
            }
        }
        Some(v) => {
            let key = if prefix.is_empty() {
                "body".to_string()
            } else {
                prefix.to_string()
            };
            out.insert(key, scalar(v));
        }
        None => {
            if !prefix.is_empty() {
                out.insert(prefix.to_string(), String::new());
            }
        }
    }
}

/// Body values by dotted key, sorted.
pub fn flatten(body: Option<&AnyValue>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Some(b) = body {
        flatten_into("", b, &mut out);
    }
    out
}

/// The line for one report, newline-terminated.
pub fn line(signal: &str, body: Option<&AnyValue>) -> String {
    let mut out = format!("<14>signal={};", escape(signal));
    for (k, v) in flatten(body) {
        if k == "signal" {
            continue;
        }
        out.push_str(&escape(&k));
        out.push('=');
        out.push_str(&escape(&v));
        out.push(';');
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use kausal_core::otlp_common::{ArrayValue, KeyValue, KeyValueList};

    fn kv(key: &str, v: any_value::Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            key_strindex: 0,
            value: Some(AnyValue { value: Some(v) }),
        }
    }

    fn list(items: Vec<KeyValue>) -> any_value::Value {
        any_value::Value::KvlistValue(KeyValueList { values: items })
    }

    #[test]
    fn nested_keys_flatten_sorted_with_dots() {
        let body = AnyValue {
            value: Some(list(vec![
                kv(
                    "state",
                    list(vec![
                        kv("uptime_seconds", any_value::Value::IntValue(42)),
                        kv("hostname", any_value::Value::StringValue("a;b=c".into())),
                    ]),
                ),
                kv(
                    "cluster-state",
                    list(vec![kv("k8s_pods_count", any_value::Value::IntValue(7))]),
                ),
                kv(
                    "mesh",
                    list(vec![kv(
                        "istio",
                        list(vec![kv("control_plane", any_value::Value::BoolValue(true))]),
                    )]),
                ),
                kv(
                    "tags",
                    any_value::Value::ArrayValue(ArrayValue {
                        values: vec![
                            AnyValue {
                                value: Some(any_value::Value::StringValue("x".into())),
                            },
                            AnyValue {
                                value: Some(any_value::Value::DoubleValue(1.5)),
                            },
                        ],
                    }),
                ),
            ])),
        };
        assert_eq!(
            line("kausal-ping", Some(&body)),
            "<14>signal=kausal-ping;cluster-state.k8s_pods_count=7;mesh.istio.control_plane=true;state.hostname=a%3Bb%3Dc;state.uptime_seconds=42;tags=x,1.5;\n"
        );
    }

    #[test]
    fn scalar_and_empty_bodies() {
        let body = AnyValue {
            value: Some(any_value::Value::StringValue("line\nbreak".into())),
        };
        assert_eq!(line("s", Some(&body)), "<14>signal=s;body=line%0Abreak;\n");
        assert_eq!(line("s", None), "<14>signal=s;\n");
    }
}
