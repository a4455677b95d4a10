//! Jaeger's JSON model, as the Jaeger UI and the `/api/*` HTTP endpoints of jaeger-query speak
//! it: the response envelope, traces, spans, references, tags, logs and processes, and the
//! rendering of an assembled [`Trace`] into it. Times are microseconds on this side.

use std::borrow::Cow;
use std::collections::BTreeMap;

use kausal_core::conventions::attr;
use serde::Serialize;

use crate::assemble::{Field, FieldValue, Trace};
use crate::mode::QueryTraceId;

/// The envelope of every Jaeger API answer.
#[derive(Debug, Serialize)]
pub struct Response<T> {
    pub data: T,
    pub total: usize,
    pub limit: usize,
    pub offset: usize,
    pub errors: Option<Vec<ResponseError>>,
}

impl<T> Response<T> {
    pub fn new(data: T, total: usize) -> Self {
        Response { data, total, limit: 0, offset: 0, errors: None }
    }
}

#[derive(Debug, Serialize)]
pub struct ResponseError {
    pub code: u16,
    pub msg: String,
}

/// An entry of `/api/operations`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    pub name: String,
    pub span_kind: String,
}

/// A trace as the Jaeger UI reads it. Borrows the strings of the [`Trace`] it was rendered
/// from: a large trace holds hundreds of thousands of tags, and copying each into an owned
/// value before serializing used to cost more than the serializing.
#[derive(Debug, Serialize)]
pub struct JaegerTrace<'a> {
    #[serde(rename = "traceID")]
    pub trace_id: String,
    pub spans: Vec<JaegerSpan<'a>>,
    pub processes: BTreeMap<String, Process>,
    pub warnings: Option<Cow<'a, [String]>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JaegerSpan<'a> {
    #[serde(rename = "traceID")]
    pub trace_id: String,
    #[serde(rename = "spanID")]
    pub span_id: String,
    pub flags: u32,
    pub operation_name: Cow<'a, str>,
    pub references: Vec<Reference>,
    pub start_time: i64,
    pub duration: i64,
    pub tags: Vec<KeyValue<'a>>,
    pub logs: Vec<Log<'a>>,
    #[serde(rename = "processID")]
    pub process_id: String,
    pub warnings: Option<Cow<'a, [String]>>,
}

#[derive(Debug, Serialize)]
pub struct Reference {
    #[serde(rename = "refType")]
    pub ref_type: &'static str,
    #[serde(rename = "traceID")]
    pub trace_id: String,
    #[serde(rename = "spanID")]
    pub span_id: String,
}

#[derive(Debug, Serialize)]
pub struct KeyValue<'a> {
    pub key: Cow<'a, str>,
    #[serde(rename = "type")]
    pub value_type: &'static str,
    pub value: TagValue<'a>,
}

/// A tag's value, serialized as the bare JSON string, number or boolean.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum TagValue<'a> {
    String(Cow<'a, str>),
    Int(i64),
    Bool(bool),
    Float(f64),
}

impl From<String> for TagValue<'_> {
    fn from(s: String) -> Self {
        TagValue::String(Cow::Owned(s))
    }
}

impl<'a> From<&'a str> for TagValue<'a> {
    fn from(s: &'a str) -> Self {
        TagValue::String(Cow::Borrowed(s))
    }
}

impl From<bool> for TagValue<'_> {
    fn from(b: bool) -> Self {
        TagValue::Bool(b)
    }
}

impl From<i64> for TagValue<'_> {
    fn from(i: i64) -> Self {
        TagValue::Int(i)
    }
}

#[derive(Debug, Serialize)]
pub struct Log<'a> {
    pub timestamp: i64,
    pub fields: Vec<KeyValue<'a>>,
}

#[derive(Debug, Serialize, PartialEq, Eq, PartialOrd, Ord, Clone)]
#[serde(rename_all = "camelCase")]
pub struct Process {
    pub service_name: String,
    pub tags: Vec<ProcessTag>,
}

/// Process tags are always strings here; a separate type keeps `Process` comparable.
#[derive(Debug, Serialize, PartialEq, Eq, PartialOrd, Ord, Clone)]
pub struct ProcessTag {
    pub key: String,
    #[serde(rename = "type")]
    pub value_type: &'static str,
    pub value: String,
}

/// Render an assembled trace under its query-side id.
pub fn render(trace: &Trace, id: QueryTraceId) -> JaegerTrace<'_> {
    let trace_id = id.to_string();
    let mut processes: BTreeMap<String, Process> = BTreeMap::new();
    let mut process_ids: BTreeMap<Process, String> = BTreeMap::new();
    let spans = trace
        .spans
        .iter()
        .map(|span| {
            let process = process_of(&span.object);
            let process_id = match process_ids.get(&process) {
                Some(id) => id.clone(),
                None => {
                    let id = format!("p{}", process_ids.len() + 1);
                    process_ids.insert(process.clone(), id.clone());
                    processes.insert(id.clone(), process);
                    id
                }
            };
            JaegerSpan {
                trace_id: trace_id.clone(),
                span_id: hex(&span.span_id),
                flags: 1,
                operation_name: Cow::Borrowed(span.operation.as_str()),
                references: span
                    .parent
                    .map(|p| Reference { ref_type: "CHILD_OF", trace_id: trace_id.clone(), span_id: hex(&p) })
                    .into_iter()
                    .collect(),
                start_time: span.start / 1_000,
                duration: (span.end - span.start) / 1_000,
                tags: span.tags.iter().map(key_value).collect(),
                logs: span
                    .logs
                    .iter()
                    .map(|l| Log { timestamp: l.time / 1_000, fields: l.fields.iter().map(key_value).collect() })
                    .collect(),
                process_id,
                warnings: (!span.warnings.is_empty()).then_some(Cow::Borrowed(span.warnings.as_slice())),
            }
        })
        .collect();
    JaegerTrace {
        trace_id,
        spans,
        processes,
        warnings: (!trace.warnings.is_empty()).then_some(Cow::Borrowed(trace.warnings.as_slice())),
    }
}

/// One process per object type and place: `deployments.apps` in a cluster and namespace.
fn process_of(key: &kausal_core::ObjectKey) -> Process {
    let mut tags = vec![ProcessTag { key: attr::CLUSTER.into(), value_type: "string", value: key.cluster.clone() }];
    if !key.namespace.is_empty() {
        tags.push(ProcessTag { key: attr::NAMESPACE.into(), value_type: "string", value: key.namespace.clone() });
    }
    Process { service_name: key.group_resource(), tags }
}

fn key_value(field: &Field) -> KeyValue<'_> {
    let (value_type, value) = match &field.value {
        FieldValue::String(s) => ("string", TagValue::from(s.as_str())),
        FieldValue::Int(i) => ("int64", TagValue::Int(*i)),
        FieldValue::Bool(b) => ("bool", TagValue::Bool(*b)),
        // NaN and infinities have no JSON number; Jaeger would show them as text anyway.
        FieldValue::Float(f) if f.is_finite() => ("float64", TagValue::Float(*f)),
        FieldValue::Float(f) => ("string", TagValue::from(f.to_string())),
    };
    KeyValue { key: Cow::Borrowed(field.key.as_str()), value_type, value }
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    out
}
