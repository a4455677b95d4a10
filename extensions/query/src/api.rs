//! The Jaeger HTTP query API over the span store: services (= display modes), operations
//! (= clusters), trace search by object tags and trace lookup by id. Handlers only parse, call
//! the store on a blocking thread, assemble and render; the decisions live in `assemble.rs`
//! and the parsing functions below, which take the current time as an argument.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use kausal_core::Nanos;
use kausal_store::{canonical_tag, Store, StoreError, SHORT_TAGS};

use crate::assemble::TimeRange;
use crate::jaeger::{self, Operation, ResponseError};
use crate::reader::{ObjectQueryKey, Reader, REDIRECT_MARGIN};
use crate::mode::{all_modes, DisplayMode, QueryTraceId, Scope, TraceIdError, View};

/// Tuning of the query API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryOptions {
    /// Search range when the request gives neither `start` nor `lookback`.
    pub default_lookback: Duration,
    /// Traces per search when the request gives no `limit`.
    pub default_limit: usize,
    /// Upper bound on `limit`.
    pub max_limit: usize,
    /// Link hops followed from a trace's root.
    pub max_depth: usize,
    /// Objects per trace, root included, when a trace is fetched by id.
    pub max_objects: usize,
    /// Linked objects followed per search result (Kelemetry's follow-link limit); the trace
    /// fetched by id follows up to `max_objects`.
    pub link_budget: usize,
}

impl Default for QueryOptions {
    fn default() -> Self {
        QueryOptions {
            default_lookback: Duration::from_secs(3600),
            default_limit: 20,
            max_limit: 1000,
            max_depth: 3,
            max_objects: 2000,
            link_budget: 10,
        }
    }
}

/// The Jaeger-compatible routes (`/api/...`), ready to be served or nested.
pub fn router(store: Arc<Store>, options: QueryOptions) -> Router {
    let api = Arc::new(Reader::new(store, options));
    Router::new()
        .route("/api/services", get(services))
        .route("/api/operations", get(operations))
        .route("/api/services/{service}/operations", get(service_operations))
        .route("/api/traces", get(search))
        .route("/api/traces/{trace_id}", get(trace_by_id))
        .route("/api/v1/trace", get(trace_of_object))
        .route("/api/v1/durations", get(durations))
        .route("/redirect", get(redirect))
        .with_state(api)
        .merge(crate::ui::router())
}

/// An answer other than 200, in Jaeger's error envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError { status: StatusCode::BAD_REQUEST, message: message.into() }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError { status: StatusCode::NOT_FOUND, message: message.into() }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "query: store read failed");
        ApiError { status: StatusCode::INTERNAL_SERVER_ERROR, message: format!("store: {e}") }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = jaeger::Response {
            data: serde_json::Value::Null,
            total: 0,
            limit: 0,
            offset: 0,
            errors: Some(vec![ResponseError { code: self.status.as_u16(), msg: self.message }]),
        };
        (self.status, Json(body)).into_response()
    }
}

type Params = Result<Query<Vec<(String, String)>>, QueryRejection>;

fn params(p: Params) -> Result<Vec<(String, String)>, ApiError> {
    p.map(|Query(p)| p).map_err(|e| ApiError::bad_request(format!("bad query string: {e}")))
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
}

async fn services() -> Json<jaeger::Response<Vec<String>>> {
    let names: Vec<String> = all_modes().into_iter().map(DisplayMode::service_name).collect();
    let total = names.len();
    Json(jaeger::Response::new(names, total))
}

async fn operations(State(api): State<Arc<Reader>>, p: Params) -> Result<Json<jaeger::Response<Vec<Operation>>>, ApiError> {
    let p = params(p)?;
    let service = param(&p, "service").ok_or_else(|| ApiError::bad_request("parameter `service` is required"))?;
    mode_of(service)?;
    let clusters = blocking(move || api.clusters()).await?;
    let ops: Vec<Operation> = clusters.into_iter().map(|name| Operation { name, span_kind: String::new() }).collect();
    let total = ops.len();
    Ok(Json(jaeger::Response::new(ops, total)))
}

async fn service_operations(
    State(api): State<Arc<Reader>>,
    Path(service): Path<String>,
) -> Result<Json<jaeger::Response<Vec<String>>>, ApiError> {
    mode_of(&service)?;
    let clusters = blocking(move || api.clusters()).await?;
    let total = clusters.len();
    Ok(Json(jaeger::Response::new(clusters, total)))
}

async fn trace_by_id(State(api): State<Arc<Reader>>, Path(trace_id): Path<String>) -> Result<Response, ApiError> {
    let id = match QueryTraceId::parse(&trace_id) {
        Ok(id) => id,
        // Not a kausal trace id: maybe a trace received over OTLP, kept as it came.
        Err(e) => match crate::foreign::parse_trace_id(&trace_id).filter(|_| e == TraceIdError::Scheme) {
            Some(raw) => {
                return blocking(move || {
                    let spans = crate::foreign::spans(api.store(), raw)?;
                    json_body(&jaeger::Response::new(vec![crate::foreign::render(&raw, &spans)], 0))
                })
                .await;
            }
            None => return Err(ApiError::bad_request(format!("{trace_id}: {e}"))),
        },
    };
    blocking(move || {
        let trace = api.trace(id)?;
        json_body(&jaeger::Response::new(vec![jaeger::render(&trace, id)], 0))
    })
    .await
}

async fn search(State(api): State<Arc<Reader>>, p: Params) -> Result<Response, ApiError> {
    let request = parse_search(&params(p)?, now_nanos(), api.options())?;
    blocking(move || {
        let found = api.search(&request)?;
        let traces: Vec<jaeger::RenderedTrace> = found.iter().map(|(id, t)| jaeger::render(t, *id)).collect();
        json_body(&jaeger::Response::new(traces, 0))
    })
    .await
}

/// A JSON answer serialized where the data lives (on the blocking thread): rendered traces
/// borrow from the assembled ones.
fn json_body(value: &impl serde::Serialize) -> Result<Response, ApiError> {
    let body = serde_json::to_vec(value).map_err(|e| ApiError::internal(format!("cannot encode the answer: {e}")))?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// `GET /redirect?cluster=&group=&resource=&namespace=&name=&ts=`: 302 to the object's trace
/// in the default mode over `ts` ± 30 minutes.
async fn redirect(State(api): State<Arc<Reader>>, p: Params) -> Result<Response, ApiError> {
    let p = params(p)?;
    let key = parse_object_key(&p)?;
    let ts = param(&p, "ts").ok_or_else(|| ApiError::bad_request("parameter `ts` is required (RFC 3339 or Unix seconds)"))?;
    let ts = parse_timestamp(ts)?;
    let range = TimeRange { start: ts.saturating_sub(REDIRECT_MARGIN), end: ts.saturating_add(REDIRECT_MARGIN) };
    let id = blocking(move || api.locate(&key, range, DisplayMode::default())).await?;
    Ok((StatusCode::FOUND, [(header::LOCATION, format!("/trace/{id}"))]).into_response())
}

/// `GET /api/v1/trace?cluster=&group=&resource=&namespace=&name=&displayMode=` with `ts`
/// (± 30 minutes) or `start`/`end` (Unix µs) or `lookback`: one trace as Jaeger JSON.
async fn trace_of_object(State(api): State<Arc<Reader>>, p: Params) -> Result<Response, ApiError> {
    let p = params(p)?;
    let key = parse_object_key(&p)?;
    let mode = match param(&p, "displayMode") {
        Some(m) => mode_of(m)?,
        None => DisplayMode::default(),
    };
    let range = match param(&p, "ts") {
        Some(ts) => {
            let ts = parse_timestamp(ts)?;
            TimeRange { start: ts.saturating_sub(REDIRECT_MARGIN), end: ts.saturating_add(REDIRECT_MARGIN) }
        }
        None => parse_range(&p, now_nanos(), api.options().default_lookback)?,
    };
    blocking(move || {
        let (id, trace) = api.object_trace(&key, range, mode)?;
        json_body(&jaeger::render(&trace, id))
    })
    .await
}

/// `GET /api/v1/durations?from=<matcher>&to=<matcher>` over `start`/`end` or `lookback`: count
/// and percentiles of the time from each `from` activity to the first `to` activity on its
/// object or below it (see `durations.rs` for the matcher syntax).
async fn durations(State(api): State<Arc<Reader>>, p: Params) -> Result<Json<crate::durations::Summary>, ApiError> {
    let p = params(p)?;
    let matcher = |name: &str| -> Result<crate::durations::Matcher, ApiError> {
        let text = param(&p, name).ok_or_else(|| ApiError::bad_request(format!("parameter `{name}` (an activity matcher) is required")))?;
        crate::durations::Matcher::parse(text).map_err(|e| ApiError::bad_request(format!("parameter `{name}`: {e}")))
    };
    let (from, to) = (matcher("from")?, matcher("to")?);
    let range = parse_range(&p, now_nanos(), api.options().default_lookback)?;
    let summary = blocking(move || api.durations(&from, &to, range)).await?;
    Ok(Json(summary))
}

/// The object key fields of `/redirect` and `/api/v1/trace`; `resource` and `name` are
/// required, the rest narrow the match.
pub fn parse_object_key(p: &[(String, String)]) -> Result<ObjectQueryKey, ApiError> {
    let get = |name: &str| param(p, name).unwrap_or_default().to_string();
    let key = ObjectQueryKey {
        cluster: get("cluster"),
        group: get("group"),
        resource: get("resource"),
        namespace: get("namespace"),
        name: get("name"),
    };
    for (field, value) in [("resource", &key.resource), ("name", &key.name)] {
        if value.is_empty() {
            return Err(ApiError::bad_request(format!("parameter `{field}` is required")));
        }
    }
    Ok(key)
}

/// RFC 3339 (`2024-05-01T12:00:00Z`) or Unix seconds.
pub fn parse_timestamp(ts: &str) -> Result<Nanos, ApiError> {
    if let Ok(seconds) = ts.parse::<i64>() {
        return seconds
            .checked_mul(1_000_000_000)
            .ok_or_else(|| ApiError::bad_request(format!("parameter `ts` is out of range: {ts}")));
    }
    chrono::DateTime::parse_from_rfc3339(ts)
        .ok()
        .and_then(|t| t.timestamp_nanos_opt())
        .ok_or_else(|| ApiError::bad_request(format!("parameter `ts` must be RFC 3339 (2024-05-01T12:00:00Z) or Unix seconds, got `{ts}`")))
}

/// `start`/`end` in Unix microseconds, or `lookback` before `end` (default: now), or the
/// default lookback; refuses inverted ranges.
pub fn parse_range(params: &[(String, String)], now: Nanos, default_lookback: Duration) -> Result<TimeRange, ApiError> {
    let micros = |name: &str| -> Result<Option<Nanos>, ApiError> {
        param(params, name)
            .map(|v| {
                v.parse::<i64>()
                    .map(|us| us.saturating_mul(1_000))
                    .map_err(|_| ApiError::bad_request(format!("parameter `{name}` must be Unix microseconds, got `{v}`")))
            })
            .transpose()
    };
    let end = micros("end")?.unwrap_or(now);
    let start = match micros("start")? {
        Some(start) => start,
        None => {
            let lookback = match param(params, "lookback").filter(|l| *l != "custom") {
                Some(l) => parse_lookback(l)
                    .ok_or_else(|| ApiError::bad_request(format!("parameter `lookback` must look like 1h, 30m or 2d, got `{l}`")))?,
                None => default_lookback,
            };
            end.saturating_sub(Nanos::try_from(lookback.as_nanos()).unwrap_or(Nanos::MAX))
        }
    };
    if start > end {
        return Err(ApiError::bad_request(format!(
            "time range is inverted: start {} µs is after end {} µs",
            start / 1_000,
            end / 1_000
        )));
    }
    Ok(TimeRange { start, end: end.max(start.saturating_add(1)) })
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, ApiError> + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        tracing::error!(error = %e, "query task failed");
        ApiError { status: StatusCode::INTERNAL_SERVER_ERROR, message: "query task failed".into() }
    })?
}

fn mode_of(service: &str) -> Result<DisplayMode, ApiError> {
    DisplayMode::from_service(service).ok_or_else(|| {
        let views: Vec<&str> = View::ALL.iter().map(|v| v.name()).collect();
        let scopes: Vec<&str> = Scope::ALL.iter().map(|s| s.name()).collect();
        ApiError::bad_request(format!(
            "unknown service (display mode) `{service}`: use a view ({}), optionally followed by a scope in brackets ({}), e.g. `tracing [children]`",
            views.join(", "),
            scopes.join(", ")
        ))
    })
}

fn now_nanos() -> Nanos {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| Nanos::try_from(d.as_nanos()).unwrap_or(Nanos::MAX))
        .unwrap_or(0)
}

/// A parsed `/api/traces` search.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchRequest {
    pub mode: DisplayMode,
    /// (attribute, value) pairs, short tags already translated.
    pub filters: Vec<(String, String)>,
    pub range: TimeRange,
    pub limit: usize,
}

/// Parse `/api/traces` parameters: `service` (display mode, required), `operation` (cluster),
/// `tags` (JSON object) and/or repeated `tag=key:value`, `start`/`end` (Unix microseconds),
/// `lookback` (`1h`, `2d`, ...; used when `start` is absent), `limit`. `minDuration` and
/// `maxDuration` are accepted and ignored: objects have no meaningful duration.
pub fn parse_search(params: &[(String, String)], now: Nanos, options: &QueryOptions) -> Result<SearchRequest, ApiError> {
    let service = param(params, "service").ok_or_else(|| ApiError::bad_request("parameter `service` is required"))?;
    let mode = mode_of(service)?;
    let mut filters: Vec<(String, String)> = Vec::new();
    let mut add = |name: &str, value: String| -> Result<(), ApiError> {
        let attribute = canonical_tag(name);
        if !attribute.starts_with("k8s.") {
            let short: Vec<&str> = SHORT_TAGS.iter().map(|(s, _)| *s).collect();
            return Err(ApiError::bad_request(format!(
                "unsupported search tag `{name}`: use {} or a k8s.* object attribute",
                short.join(", ")
            )));
        }
        filters.push((attribute.to_string(), value));
        Ok(())
    };
    if let Some(cluster) = param(params, "operation").filter(|op| *op != "all") {
        add("cluster", cluster.to_string())?;
    }
    if let Some(tags) = param(params, "tags") {
        let parsed: serde_json::Map<String, serde_json::Value> = serde_json::from_str(tags).map_err(|e| {
            ApiError::bad_request(format!("parameter `tags` must be a JSON object of strings: {e}"))
        })?;
        for (name, value) in parsed {
            let value = match value {
                serde_json::Value::String(s) => s,
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                other => {
                    return Err(ApiError::bad_request(format!(
                        "tag `{name}` in `tags` must be a string, got {other}"
                    )));
                }
            };
            add(&name, value)?;
        }
    }
    for (_, tag) in params.iter().filter(|(k, _)| k == "tag") {
        let (name, value) = tag
            .split_once(':')
            .ok_or_else(|| ApiError::bad_request(format!("parameter `tag` must be key:value, got `{tag}`")))?;
        add(name, value.to_string())?;
    }
    let range = parse_range(params, now, options.default_lookback)?;
    let limit = match param(params, "limit") {
        Some(l) => l
            .parse::<usize>()
            .map_err(|_| ApiError::bad_request(format!("parameter `limit` must be a non-negative integer, got `{l}`")))?,
        None => 0,
    };
    let limit = if limit == 0 { options.default_limit } else { limit.min(options.max_limit) };
    Ok(SearchRequest { mode, filters, range, limit })
}

/// `90s`, `30m`, `1h`, `2d`, `1w`.
fn parse_lookback(s: &str) -> Option<Duration> {
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = s.split_at(split);
    let n: u64 = number.parse().ok()?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return None,
    };
    Some(Duration::from_secs(n.checked_mul(seconds)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    const NOW: Nanos = 10_000_000_000_000;

    #[test]
    fn search_parameters_parse() {
        let o = QueryOptions::default();
        let r = parse_search(
            &p(&[("service", "tracing"), ("operation", "prod"), ("tags", r#"{"resource":"deployments","k8s.deployment.name":"demo"}"#), ("tag", "namespace:default")]),
            NOW,
            &o,
        )
        .unwrap();
        assert_eq!(
            r.filters,
            p(&[
                ("k8s.cluster.name", "prod"),
                ("k8s.deployment.name", "demo"),
                ("k8s.object.resource", "deployments"),
                ("k8s.namespace.name", "default")
            ])
        );
        assert_eq!(r.range, TimeRange { start: NOW - 3_600_000_000_000, end: NOW });
        assert_eq!(r.limit, 20);
        let r = parse_search(&p(&[("service", "tracing"), ("start", "5"), ("end", "7"), ("limit", "5000")]), NOW, &o).unwrap();
        assert_eq!((r.range, r.limit), (TimeRange { start: 5_000, end: 7_000 }, 1000));
        let r = parse_search(&p(&[("service", "tracing"), ("lookback", "2d")]), NOW, &o).unwrap();
        assert_eq!(r.range.start, NOW - 2 * 86_400 * 1_000_000_000);
    }

    #[test]
    fn bad_searches_say_what_is_wrong() {
        let o = QueryOptions::default();
        let err = |pairs: &[(&str, &str)]| parse_search(&p(pairs), NOW, &o).unwrap_err();
        assert!(err(&[]).message.contains("`service` is required"));
        assert!(err(&[("service", "grouped [sideways]")]).message.contains("unknown service"));
        assert!(err(&[("service", "tracing"), ("tags", "{bad")]).message.contains("JSON object"));
        assert!(err(&[("service", "tracing"), ("tags", r#"{"color":"red"}"#)]).message.contains("unsupported search tag `color`"));
        assert!(err(&[("service", "tracing"), ("start", "9"), ("end", "3")]).message.contains("inverted"));
        assert!(err(&[("service", "tracing"), ("lookback", "soon")]).message.contains("lookback"));
        assert!(err(&[("service", "tracing"), ("end", "x")]).message.contains("`end`"));
        assert_eq!(err(&[("service", "tracing"), ("limit", "-1")]).status, StatusCode::BAD_REQUEST);
    }
}
