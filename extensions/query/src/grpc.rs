//! The gRPC APIs: Jaeger's query service (`jaeger.api_v2.QueryService`) and Jaeger v2's remote
//! storage read API (`jaeger.storage.v2.TraceReader`), so that a Jaeger query service can use
//! kausal as its storage. Both map wire types onto the [`Reader`] and reuse the HTTP API's
//! parsing (`parse_search`), so limits, defaults and error messages are the same; this module
//! decides nothing about traces. Foreign (non-kausal) traces are served over HTTP only.

use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::sync::Arc;

use axum::http::StatusCode;
use futures::Stream;
use kausal_core::conventions::attr;
use kausal_core::{Nanos, ObjectKey};
use kausal_proto::jaeger::api_v2 as v2;
use kausal_proto::jaeger::storage::v2 as storage;
use kausal_proto::opentelemetry::proto::common::v1 as otlp_common;
use kausal_proto::opentelemetry::proto::resource::v1 as otlp_resource;
use kausal_proto::opentelemetry::proto::trace::v1 as otlp;
use prost::Message;
use tonic::{Request, Response, Status};

use crate::api::{parse_search, ApiError};
use crate::assemble::{Field, FieldValue, Trace, TraceSpan};
use crate::mode::{all_modes, DisplayMode, QueryTraceId};
use crate::reader::Reader;

/// Encoded size above which a streamed answer starts a new chunk: well under gRPC's default
/// 4 MiB message limit of the receiving side.
const CHUNK_BYTES: usize = 1 << 20;

type ChunkStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

fn status(e: ApiError) -> Status {
    match e.status {
        StatusCode::BAD_REQUEST => Status::invalid_argument(e.message),
        StatusCode::NOT_FOUND => Status::not_found(e.message),
        _ => Status::internal(e.message),
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, ApiError> + Send + 'static) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("query task failed: {e}")))?
        .map_err(status)
}

fn stream_of<T: Send + 'static>(items: Vec<T>) -> ChunkStream<T> {
    Box::pin(futures::stream::iter(items.into_iter().map(Ok)))
}

fn micros(t: &Option<prost_types::Timestamp>) -> Option<i64> {
    t.as_ref().map(|t| t.seconds.saturating_mul(1_000_000).saturating_add(i64::from(t.nanos) / 1_000))
}

fn timestamp(ns: Nanos) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: ns.div_euclid(1_000_000_000), nanos: ns.rem_euclid(1_000_000_000) as i32 }
}

/// A search as `/api/traces` parameters, so that gRPC searches parse and fail like HTTP ones.
fn search_params(
    service: &str,
    operation: &str,
    tags: &BTreeMap<String, String>,
    start_min: &Option<prost_types::Timestamp>,
    start_max: &Option<prost_types::Timestamp>,
    depth: i32,
) -> Result<Vec<(String, String)>, Status> {
    let mut p = vec![("service".to_string(), service.to_string())];
    if !operation.is_empty() {
        p.push(("operation".into(), operation.to_string()));
    }
    if !tags.is_empty() {
        let json = serde_json::to_string(tags).map_err(|e| Status::internal(format!("cannot encode tags: {e}")))?;
        p.push(("tags".into(), json));
    }
    if let Some(us) = micros(start_min) {
        p.push(("start".into(), us.to_string()));
    }
    if let Some(us) = micros(start_max) {
        p.push(("end".into(), us.to_string()));
    }
    if depth < 0 {
        return Err(Status::invalid_argument(format!("search_depth must not be negative, got {depth}")));
    }
    if depth > 0 {
        p.push(("limit".into(), depth.to_string()));
    }
    Ok(p)
}

fn now_nanos() -> Nanos {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
}

/// The 16 bytes of a query-side trace id.
fn id_bytes(id: QueryTraceId) -> Vec<u8> {
    let text = id.to_string();
    (0..16).filter_map(|i| u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()).collect()
}

/// A trace id from its 16 bytes, refused with a message like the HTTP API's.
fn parse_id(bytes: &[u8]) -> Result<QueryTraceId, Status> {
    if bytes.len() != 16 {
        return Err(Status::invalid_argument(format!("trace_id must be 16 bytes, got {}", bytes.len())));
    }
    let text = crate::jaeger::hex(bytes);
    QueryTraceId::parse(&text).map_err(|e| Status::invalid_argument(format!("trace_id {text}: {e}")))
}

fn mode_of(service: &str) -> Result<DisplayMode, Status> {
    // The same message as the HTTP API: parse a one-parameter search.
    let p = [("service".to_string(), service.to_string())];
    parse_search(&p, 0, &Default::default()).map(|r| r.mode).map_err(status)
}

/// Chunks of consecutive items, each under [`CHUNK_BYTES`] encoded (one item may exceed it).
fn chunked<T: Message>(items: Vec<T>) -> Vec<Vec<T>> {
    let mut out: Vec<Vec<T>> = Vec::new();
    let mut current: Vec<T> = Vec::new();
    let mut size = 0;
    for item in items {
        let len = item.encoded_len();
        if !current.is_empty() && size + len > CHUNK_BYTES {
            out.push(std::mem::take(&mut current));
            size = 0;
        }
        size += len;
        current.push(item);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// `jaeger.api_v2.QueryService`.
pub struct QueryService {
    reader: Arc<Reader>,
}

impl QueryService {
    pub fn new(reader: Arc<Reader>) -> Self {
        QueryService { reader }
    }
}

fn v2_value(field: &Field) -> v2::KeyValue {
    let mut kv = v2::KeyValue { key: field.key.clone(), ..Default::default() };
    match &field.value {
        FieldValue::String(s) => {
            kv.v_type = v2::ValueType::String as i32;
            kv.v_str = s.clone();
        }
        FieldValue::Int(i) => {
            kv.v_type = v2::ValueType::Int64 as i32;
            kv.v_int64 = *i;
        }
        FieldValue::Bool(b) => {
            kv.v_type = v2::ValueType::Bool as i32;
            kv.v_bool = *b;
        }
        FieldValue::Float(f) => {
            kv.v_type = v2::ValueType::Float64 as i32;
            kv.v_float64 = *f;
        }
    }
    kv
}

fn v2_process(key: &ObjectKey) -> v2::Process {
    let string = |k: &str, v: &str| v2::KeyValue { key: k.into(), v_str: v.into(), ..Default::default() };
    let mut tags = vec![string(attr::CLUSTER, &key.cluster)];
    if !key.namespace.is_empty() {
        tags.push(string(attr::NAMESPACE, &key.namespace));
    }
    v2::Process { service_name: key.group_resource(), tags }
}

/// A trace in Jaeger's protobuf model; each span carries its process.
pub fn v2_spans(trace: &Trace, id: QueryTraceId) -> Vec<v2::Span> {
    let trace_id = id_bytes(id);
    let mut processes: HashMap<&ObjectKey, v2::Process> = HashMap::new();
    trace
        .spans
        .iter()
        .enumerate()
        .map(|(i, span)| {
            let process = processes.entry(&span.object).or_insert_with(|| v2_process(&span.object)).clone();
            let mut warnings = span.warnings.clone();
            if i == 0 {
                warnings.extend(trace.warnings.iter().cloned());
            }
            let duration = span.end - span.start;
            v2::Span {
                trace_id: trace_id.clone(),
                span_id: span.span_id.to_vec(),
                operation_name: span.operation.clone(),
                references: span
                    .parent
                    .map(|p| v2::SpanRef { trace_id: trace_id.clone(), span_id: p.to_vec(), ref_type: v2::SpanRefType::ChildOf as i32 })
                    .into_iter()
                    .collect(),
                flags: 1,
                start_time: Some(timestamp(span.start)),
                duration: Some(prost_types::Duration {
                    seconds: duration / 1_000_000_000,
                    nanos: (duration % 1_000_000_000) as i32,
                }),
                tags: span.tags.iter().map(v2_value).collect(),
                logs: span
                    .logs
                    .iter()
                    .map(|l| v2::Log { timestamp: Some(timestamp(l.time)), fields: l.fields.iter().map(v2_value).collect() })
                    .collect(),
                process: Some(process),
                process_id: String::new(),
                warnings,
            }
        })
        .collect()
}

fn v2_chunks(traces: &[(QueryTraceId, Trace)]) -> Vec<v2::SpansResponseChunk> {
    traces
        .iter()
        .flat_map(|(id, trace)| chunked(v2_spans(trace, *id)))
        .map(|spans| v2::SpansResponseChunk { spans })
        .collect()
}

#[tonic::async_trait]
impl v2::query_service_server::QueryService for QueryService {
    type GetTraceStream = ChunkStream<v2::SpansResponseChunk>;
    type FindTracesStream = ChunkStream<v2::SpansResponseChunk>;

    async fn get_trace(&self, request: Request<v2::GetTraceRequest>) -> Result<Response<Self::GetTraceStream>, Status> {
        let id = parse_id(&request.into_inner().trace_id)?;
        let reader = self.reader.clone();
        let chunks = blocking(move || Ok(v2_chunks(&[(id, reader.trace(id)?)]))).await?;
        Ok(Response::new(stream_of(chunks)))
    }

    async fn archive_trace(&self, _: Request<v2::ArchiveTraceRequest>) -> Result<Response<v2::ArchiveTraceResponse>, Status> {
        Err(Status::unimplemented(
            "kausal has no archive storage: its traces are assembled from the span store and expire with its retention",
        ))
    }

    async fn find_traces(&self, request: Request<v2::FindTracesRequest>) -> Result<Response<Self::FindTracesStream>, Status> {
        let query = request.into_inner().query.ok_or_else(|| Status::invalid_argument("query is required"))?;
        let tags: BTreeMap<String, String> = query.tags.into_iter().collect();
        let p = search_params(&query.service_name, &query.operation_name, &tags, &query.start_time_min, &query.start_time_max, query.search_depth)?;
        let reader = self.reader.clone();
        let chunks = blocking(move || {
            let search = parse_search(&p, now_nanos(), reader.options())?;
            Ok(v2_chunks(&reader.search(&search)?))
        })
        .await?;
        Ok(Response::new(stream_of(chunks)))
    }

    async fn get_services(&self, _: Request<v2::GetServicesRequest>) -> Result<Response<v2::GetServicesResponse>, Status> {
        Ok(Response::new(v2::GetServicesResponse { services: all_modes().into_iter().map(DisplayMode::service_name).collect() }))
    }

    async fn get_operations(&self, request: Request<v2::GetOperationsRequest>) -> Result<Response<v2::GetOperationsResponse>, Status> {
        mode_of(&request.into_inner().service)?;
        let reader = self.reader.clone();
        let clusters = blocking(move || reader.clusters()).await?;
        Ok(Response::new(v2::GetOperationsResponse {
            operations: clusters.iter().map(|c| v2::Operation { name: c.clone(), span_kind: String::new() }).collect(),
            operation_names: clusters,
        }))
    }

    async fn get_dependencies(&self, _: Request<v2::GetDependenciesRequest>) -> Result<Response<v2::GetDependenciesResponse>, Status> {
        // Objects own each other; there are no service-to-service calls to count.
        Ok(Response::new(v2::GetDependenciesResponse { dependencies: vec![] }))
    }
}

/// `jaeger.storage.v2.TraceReader`.
pub struct TraceReader {
    reader: Arc<Reader>,
}

impl TraceReader {
    pub fn new(reader: Arc<Reader>) -> Self {
        TraceReader { reader }
    }
}

fn otlp_value(value: &FieldValue) -> otlp_common::AnyValue {
    use otlp_common::any_value::Value;
    otlp_common::AnyValue {
        value: Some(match value {
            FieldValue::String(s) => Value::StringValue(s.clone()),
            FieldValue::Int(i) => Value::IntValue(*i),
            FieldValue::Bool(b) => Value::BoolValue(*b),
            FieldValue::Float(f) => Value::DoubleValue(*f),
        }),
    }
}

fn otlp_attributes(fields: &[Field]) -> Vec<otlp_common::KeyValue> {
    fields.iter().map(|f| otlp_common::KeyValue { key: f.key.clone(), value: Some(otlp_value(&f.value)) }).collect()
}

fn otlp_span(span: &TraceSpan, trace_id: &[u8], extra_warnings: &[String]) -> otlp::Span {
    let mut attributes = otlp_attributes(&span.tags);
    if !extra_warnings.is_empty() {
        attributes.push(otlp_common::KeyValue {
            key: crate::assemble::WARNING_TAG.into(),
            value: Some(otlp_value(&FieldValue::String(extra_warnings.join("\n")))),
        });
    }
    otlp::Span {
        trace_id: trace_id.to_vec(),
        span_id: span.span_id.to_vec(),
        parent_span_id: span.parent.map(|p| p.to_vec()).unwrap_or_default(),
        name: span.operation.clone(),
        kind: otlp::span::SpanKind::Internal as i32,
        start_time_unix_nano: u64::try_from(span.start).unwrap_or(0),
        end_time_unix_nano: u64::try_from(span.end).unwrap_or(0),
        attributes,
        events: span
            .logs
            .iter()
            .map(|l| {
                let name = l.fields.iter().find(|f| f.key == "event").map(|f| f.value.to_text()).unwrap_or_else(|| "log".into());
                let rest: Vec<Field> = l.fields.iter().filter(|f| f.key != "event").cloned().collect();
                otlp::span::Event {
                    time_unix_nano: u64::try_from(l.time).unwrap_or(0),
                    name,
                    attributes: otlp_attributes(&rest),
                    dropped_attributes_count: 0,
                }
            })
            .collect(),
        ..Default::default()
    }
}

fn otlp_resource_of(key: &ObjectKey) -> otlp_resource::Resource {
    let string = |k: &str, v: &str| otlp_common::KeyValue { key: k.into(), value: Some(otlp_value(&FieldValue::String(v.into()))) };
    let mut attributes = vec![string("service.name", &key.group_resource()), string(attr::CLUSTER, &key.cluster)];
    if !key.namespace.is_empty() {
        attributes.push(string(attr::NAMESPACE, &key.namespace));
    }
    otlp_resource::Resource { attributes, dropped_attributes_count: 0 }
}

/// A trace as OTLP, one resource per object type and place (as the Jaeger JSON's processes),
/// split into chunks of consecutive spans that each stay under [`CHUNK_BYTES`].
pub fn otlp_chunks(trace: &Trace, id: QueryTraceId) -> Vec<otlp::TracesData> {
    let trace_id = id_bytes(id);
    let spans: Vec<(String, String, String, otlp::Span)> = trace
        .spans
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let warnings: &[String] = if i == 0 { &trace.warnings } else { &[] };
            (s.object.group_resource(), s.object.cluster.clone(), s.object.namespace.clone(), otlp_span(s, &trace_id, warnings))
        })
        .collect();
    let mut out = Vec::new();
    let mut current: BTreeMap<(String, String, String), Vec<otlp::Span>> = BTreeMap::new();
    let mut keys: HashMap<(String, String, String), ObjectKey> = HashMap::new();
    let mut size = 0;
    let flush = |current: &mut BTreeMap<(String, String, String), Vec<otlp::Span>>, keys: &HashMap<(String, String, String), ObjectKey>, out: &mut Vec<otlp::TracesData>| {
        let resource_spans = std::mem::take(current)
            .into_iter()
            .map(|(k, spans)| otlp::ResourceSpans {
                resource: keys.get(&k).map(otlp_resource_of),
                scope_spans: vec![otlp::ScopeSpans {
                    scope: Some(otlp_common::InstrumentationScope { name: "kausal".into(), ..Default::default() }),
                    spans,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            })
            .collect();
        out.push(otlp::TracesData { resource_spans });
    };
    for ((resource, cluster, namespace), span, object) in spans.into_iter().zip(trace.spans.iter()).map(|((r, c, n, s), t)| ((r, c, n), s, &t.object)) {
        let len = span.encoded_len();
        if !current.is_empty() && size + len > CHUNK_BYTES {
            flush(&mut current, &keys, &mut out);
            size = 0;
        }
        size += len;
        let k = (resource, cluster, namespace);
        keys.entry(k.clone()).or_insert_with(|| object.clone());
        current.entry(k).or_default().push(span);
    }
    if !current.is_empty() {
        flush(&mut current, &keys, &mut out);
    }
    out
}

/// A storage v2 query as a search: attributes must be strings (they become search tags).
fn storage_search(query: Option<storage::TraceQueryParameters>) -> Result<Vec<(String, String)>, Status> {
    let query = query.ok_or_else(|| Status::invalid_argument("query is required"))?;
    let mut tags = BTreeMap::new();
    for kv in &query.attributes {
        match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(storage::any_value::Value::StringValue(s)) => {
                tags.insert(kv.key.clone(), s.clone());
            }
            _ => return Err(Status::invalid_argument(format!("attribute `{}`: only string values can be searched", kv.key))),
        }
    }
    let depth = match query.pagination.as_ref().map(|p| p.page_size).filter(|s| *s > 0) {
        Some(size) => i32::try_from(size).unwrap_or(i32::MAX),
        None => query.search_depth,
    };
    search_params(&query.service_name, &query.operation_name, &tags, &query.start_time_min, &query.start_time_max, depth)
}

#[tonic::async_trait]
impl storage::trace_reader_server::TraceReader for TraceReader {
    type GetTracesStream = ChunkStream<otlp::TracesData>;
    type FindTracesStream = ChunkStream<otlp::TracesData>;

    async fn get_traces(&self, request: Request<storage::GetTracesRequest>) -> Result<Response<Self::GetTracesStream>, Status> {
        let ids: Vec<QueryTraceId> = request.into_inner().query.iter().map(|q| parse_id(&q.trace_id)).collect::<Result<_, _>>()?;
        let reader = self.reader.clone();
        let chunks = blocking(move || {
            let mut out = Vec::new();
            for id in ids {
                match reader.trace(id) {
                    Ok(trace) => out.extend(otlp_chunks(&trace, id)),
                    // Unknown ids are skipped, as the API asks.
                    Err(e) if e.status == StatusCode::NOT_FOUND => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(out)
        })
        .await?;
        Ok(Response::new(stream_of(chunks)))
    }

    async fn get_services(&self, _: Request<storage::GetServicesRequest>) -> Result<Response<storage::GetServicesResponse>, Status> {
        Ok(Response::new(storage::GetServicesResponse {
            services: all_modes().into_iter().map(DisplayMode::service_name).collect(),
        }))
    }

    async fn get_operations(&self, request: Request<storage::GetOperationsRequest>) -> Result<Response<storage::GetOperationsResponse>, Status> {
        mode_of(&request.into_inner().service)?;
        let reader = self.reader.clone();
        let clusters = blocking(move || reader.clusters()).await?;
        Ok(Response::new(storage::GetOperationsResponse {
            operations: clusters.into_iter().map(|name| storage::Operation { name, span_kind: String::new() }).collect(),
        }))
    }

    async fn find_traces(&self, request: Request<storage::FindTracesRequest>) -> Result<Response<Self::FindTracesStream>, Status> {
        let p = storage_search(request.into_inner().query)?;
        let reader = self.reader.clone();
        let chunks = blocking(move || {
            let search = parse_search(&p, now_nanos(), reader.options())?;
            Ok(reader.search(&search)?.iter().flat_map(|(id, trace)| otlp_chunks(trace, *id)).collect())
        })
        .await?;
        Ok(Response::new(stream_of(chunks)))
    }

    async fn find_trace_i_ds(&self, request: Request<storage::FindTraceIDsRequest>) -> Result<Response<storage::FindTraceIDsResponse>, Status> {
        let p = storage_search(request.into_inner().query)?;
        let reader = self.reader.clone();
        let trace_ids = blocking(move || {
            let search = parse_search(&p, now_nanos(), reader.options())?;
            Ok(reader
                .search(&search)?
                .iter()
                .map(|(id, trace)| storage::FoundTraceId {
                    trace_id: id_bytes(*id),
                    start: Some(timestamp(trace.range.start)),
                    end: Some(timestamp(trace.range.end)),
                })
                .collect())
        })
        .await?;
        Ok(Response::new(storage::FindTraceIDsResponse { trace_ids, next_page_token: String::new() }))
    }
}
