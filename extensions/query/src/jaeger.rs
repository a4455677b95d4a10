//! Jaeger's JSON model, as the Jaeger UI and the `/api/*` HTTP endpoints of jaeger-query speak
//! it: the response envelope, traces, spans, references, tags, logs and processes, and the
//! rendering of an assembled [`Trace`] into it. Times are microseconds on this side.

use std::borrow::Cow;
use std::collections::BTreeMap;

use kausal_core::conventions::attr;
use serde::ser::{SerializeSeq, SerializeStruct, Serializer};
use serde::Serialize;

use crate::assemble::{Field, FieldValue, Trace, TraceSpan};
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

/// Render an assembled trace under its query-side id: a view that serializes straight into
/// Jaeger JSON from the trace's own fields. Building an owned [`JaegerTrace`] first meant a
/// vector of tags per log, tens of thousands for a large tree, allocated and freed per request.
pub fn render(trace: &Trace, id: QueryTraceId) -> RenderedTrace<'_> {
    let mut processes: BTreeMap<String, Process> = BTreeMap::new();
    let mut process_ids: BTreeMap<Process, String> = BTreeMap::new();
    let span_processes = trace
        .spans
        .iter()
        .map(|span| {
            let process = process_of(&span.object);
            match process_ids.get(&process) {
                Some(id) => id.clone(),
                None => {
                    let id = format!("p{}", process_ids.len() + 1);
                    process_ids.insert(process.clone(), id.clone());
                    processes.insert(id.clone(), process);
                    id
                }
            }
        })
        .collect();
    RenderedTrace { trace, trace_id: id.to_string(), processes, span_processes }
}

/// An assembled trace as Jaeger JSON (see [`render`]); the same document as [`JaegerTrace`].
#[derive(Debug)]
pub struct RenderedTrace<'a> {
    trace: &'a Trace,
    trace_id: String,
    processes: BTreeMap<String, Process>,
    /// The process id of each span, in span order.
    span_processes: Vec<String>,
}

impl Serialize for RenderedTrace<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_struct("JaegerTrace", 4)?;
        t.serialize_field("traceID", &self.trace_id)?;
        t.serialize_field("spans", &SpansJson(self))?;
        t.serialize_field("processes", &self.processes)?;
        t.serialize_field("warnings", &warnings(&self.trace.warnings))?;
        t.end()
    }
}

fn warnings(w: &[String]) -> Option<&[String]> {
    (!w.is_empty()).then_some(w)
}

struct SpansJson<'a>(&'a RenderedTrace<'a>);

impl Serialize for SpansJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let rendered = self.0;
        let mut seq = s.serialize_seq(Some(rendered.trace.spans.len()))?;
        for (span, process_id) in rendered.trace.spans.iter().zip(&rendered.span_processes) {
            seq.serialize_element(&SpanJson { span, trace_id: &rendered.trace_id, process_id })?;
        }
        seq.end()
    }
}

struct SpanJson<'a> {
    span: &'a TraceSpan,
    trace_id: &'a str,
    process_id: &'a str,
}

impl Serialize for SpanJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let span = self.span;
        let references: Vec<Reference> = span
            .parent
            .map(|p| Reference { ref_type: "CHILD_OF", trace_id: self.trace_id.to_string(), span_id: hex(&p) })
            .into_iter()
            .collect();
        let mut t = s.serialize_struct("JaegerSpan", 12)?;
        t.serialize_field("traceID", self.trace_id)?;
        t.serialize_field("spanID", &hex(&span.span_id))?;
        t.serialize_field("flags", &1u32)?;
        t.serialize_field("operationName", &span.operation)?;
        t.serialize_field("references", &references)?;
        t.serialize_field("startTime", &(span.start / 1_000))?;
        t.serialize_field("duration", &((span.end - span.start) / 1_000))?;
        t.serialize_field("tags", &FieldsJson(&span.tags))?;
        t.serialize_field("logs", &LogsJson(&span.logs))?;
        t.serialize_field("processID", self.process_id)?;
        t.serialize_field("warnings", &warnings(&span.warnings))?;
        t.end()
    }
}

struct LogsJson<'a>(&'a [crate::assemble::Log]);

impl Serialize for LogsJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for log in self.0 {
            seq.serialize_element(&LogJson(log))?;
        }
        seq.end()
    }
}

struct LogJson<'a>(&'a crate::assemble::Log);

impl Serialize for LogJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_struct("Log", 2)?;
        t.serialize_field("timestamp", &(self.0.time / 1_000))?;
        t.serialize_field("fields", &FieldsJson(&self.0.fields))?;
        t.end()
    }
}

struct FieldsJson<'a>(&'a [Field]);

impl Serialize for FieldsJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for field in self.0 {
            seq.serialize_element(&key_value(field))?;
        }
        seq.end()
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
