//! The HTTP edge of the emulator: authentication by bearer token, impersonation, request
//! routing (discovery, resources, subresources, legacy `/watch/` paths), audit stages around
//! every request, JSON and Table responses, and chunked watch streams. Decisions live in the
//! store and the pure modules; this file only translates between HTTP and them.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use kausal_core::audit::{ObjectReference, Stage, UserInfo};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use super::managed_fields::manager_name;
use super::openapi;
use super::patch::PatchType;
use super::resources::{ResourceType, Subresource, View};
use super::selector::{FieldSelector, LabelSelector};
use super::status::{ApiError, success_status};
use super::store::{
    self, DeleteOptions, DeleteOutcome, ListOptions, Store, WatchEvent, WatchEventType, WatchStart,
    Writer,
};
use super::table::{self, IncludeObject};
use crate::audit::{AuditRecord, Auditor, RequestAttributes, RequestFacts, authorization_reason};
use crate::clock::Clock;

pub type Body = BoxBody<Bytes, Infallible>;

/// kube-apiserver's default request body limit.
const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;
/// Longest a watch runs when the client names no timeout (the apiserver picks 30–60 min).
const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(1800);
/// Watch events coalesced into one chunk when a watcher is behind.
const MAX_EVENTS_PER_CHUNK: usize = 256;

pub struct ServerState {
    pub store: Arc<Store>,
    pub auditor: Arc<Auditor>,
    pub users: RwLock<HashMap<String, UserInfo>>,
    pub clock: Clock,
    pub bookmark_interval: Duration,
    pub server_version: String,
    pub server_address: RwLock<String>,
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

fn json_response(code: u16, value: &Value, audit_id: Option<&str>) -> Response<Body> {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    let mut builder = Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-cache, private");
    if let Some(id) = audit_id {
        builder = builder.header("Audit-Id", id);
    }
    builder
        .body(full(body))
        .unwrap_or_else(|_| Response::new(full(Bytes::new())))
}

fn error_response(e: &ApiError, audit_id: Option<&str>) -> Response<Body> {
    json_response(e.code, &e.to_json(), audit_id)
}

/// Query parameters, percent-decoded.
#[derive(Default, Debug)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Query {
    pub fn parse(q: Option<&str>) -> Query {
        let pairs = q
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((k, v)) => (percent_decode(k), percent_decode(v)),
                None => (percent_decode(p), String::new()),
            })
            .collect();
        Query { pairs }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1"))
    }
}

/// A request for an API resource, from its path.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ResourcePath {
    pub group: String,
    pub version: String,
    pub resource: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
    /// `/api/v1/watch/...`, the deprecated watch form.
    pub legacy_watch: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    Health,
    Version,
    CoreVersions,
    GroupList,
    Group(String),
    ResourceList { group: String, version: String },
    OpenApiV2,
    OpenApiV3Root,
    OpenApiV3 { group: String, version: String },
    Resource(ResourcePath),
    NotFound,
}

/// Maps a URL path to what it addresses (pure).
pub fn route(path: &str) -> Route {
    let segments: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    match segments.as_slice() {
        ["healthz" | "livez" | "readyz", ..] => Route::Health,
        ["version"] => Route::Version,
        ["api"] => Route::CoreVersions,
        ["apis"] => Route::GroupList,
        ["openapi", "v2"] => Route::OpenApiV2,
        ["openapi", "v3"] => Route::OpenApiV3Root,
        ["openapi", "v3", "api", v] => Route::OpenApiV3 {
            group: String::new(),
            version: (*v).to_string(),
        },
        ["openapi", "v3", "apis", g, v] => Route::OpenApiV3 {
            group: (*g).to_string(),
            version: (*v).to_string(),
        },
        ["apis", g] => Route::Group((*g).to_string()),
        ["api", v] => Route::ResourceList {
            group: String::new(),
            version: (*v).to_string(),
        },
        ["apis", g, v] => Route::ResourceList {
            group: (*g).to_string(),
            version: (*v).to_string(),
        },
        ["api", v, rest @ ..] => resource_route("", v, rest),
        ["apis", g, v, rest @ ..] => resource_route(g, v, rest),
        _ => Route::NotFound,
    }
}

fn resource_route(group: &str, version: &str, mut rest: &[&str]) -> Route {
    let mut rp = ResourcePath {
        group: group.to_string(),
        version: version.to_string(),
        ..Default::default()
    };
    if rest.first() == Some(&"watch") {
        rp.legacy_watch = true;
        rest = &rest[1..];
    }
    let namespaced_form = rest.len() >= 3
        && rest[0] == "namespaces"
        && !(group.is_empty() && rest.len() == 3 && matches!(rest[2], "status" | "finalize"));
    if namespaced_form {
        rp.namespace = Some(rest[1].to_string());
        rest = &rest[2..];
    }
    match rest {
        [resource] => rp.resource = (*resource).to_string(),
        [resource, name] => {
            rp.resource = (*resource).to_string();
            rp.name = Some((*name).to_string());
        }
        [resource, name, sub] => {
            rp.resource = (*resource).to_string();
            rp.name = Some((*name).to_string());
            rp.subresource = Some((*sub).to_string());
        }
        _ => return Route::NotFound,
    }
    Route::Resource(rp)
}

/// The kube verb of a resource request.
pub fn verb(method: &Method, rp: &ResourcePath, query: &Query) -> &'static str {
    match *method {
        Method::GET | Method::HEAD if rp.legacy_watch => "watch",
        Method::GET | Method::HEAD if rp.name.is_none() && query.flag("watch") => "watch",
        Method::GET | Method::HEAD if rp.name.is_none() => "list",
        Method::GET | Method::HEAD => "get",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if rp.name.is_none() => "deletecollection",
        Method::DELETE => "delete",
        _ => "unknown",
    }
}

/// `sourceIPs`: the X-Forwarded-For chain, X-Real-Ip, then the peer address.
pub fn source_ips(headers: &HeaderMap, remote: SocketAddr) -> Vec<String> {
    let mut ips: Vec<String> = headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    if let Some(real) = headers.get("x-real-ip").and_then(|v| v.to_str().ok())
        && !ips.iter().any(|i| i == real.trim())
    {
        ips.push(real.trim().to_string());
    }
    let peer = remote.ip().to_canonical().to_string();
    if !ips.contains(&peer) {
        ips.push(peer);
    }
    ips
}

fn header_str(headers: &HeaderMap, name: impl header::AsHeaderName) -> &str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// The authenticated user, and the impersonated one when `Impersonate-User` is set.
fn authenticate(
    state: &ServerState,
    headers: &HeaderMap,
) -> Result<(UserInfo, Option<UserInfo>), ApiError> {
    let token = header_str(headers, header::AUTHORIZATION)
        .strip_prefix("Bearer ")
        .map(str::trim)
        .ok_or_else(ApiError::unauthorized)?;
    let user = state
        .users
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(token)
        .cloned()
        .ok_or_else(ApiError::unauthorized)?;
    let Some(target) = headers
        .get("impersonate-user")
        .and_then(|v| v.to_str().ok())
    else {
        return Ok((user, None));
    };
    if !user.groups.iter().any(|g| g == "system:masters") {
        return Err(ApiError::forbidden(format!(
            "users \"{target}\" is forbidden: User \"{}\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope",
            user.username
        )));
    }
    let mut groups: Vec<String> = headers
        .get_all("impersonate-group")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect();
    if !groups.iter().any(|g| g == "system:authenticated") {
        groups.push("system:authenticated".to_string());
    }
    let uid = headers
        .get("impersonate-uid")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    Ok((
        user,
        Some(UserInfo {
            username: target.to_string(),
            uid,
            groups,
            ..Default::default()
        }),
    ))
}

fn version_info(git_version: &str) -> Value {
    let trimmed = git_version.trim_start_matches('v');
    let mut parts = trimmed.split('.');
    let major = parts.next().unwrap_or("1");
    let minor = parts.next().unwrap_or("31");
    json!({
        "major": major,
        "minor": minor,
        "gitVersion": git_version,
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2024-08-13T07:28:49Z",
        "goVersion": "go1.22.5",
        "compiler": "gc",
        "platform": "linux/amd64"
    })
}

async fn read_body(req: Request<Incoming>) -> Result<Bytes, ApiError> {
    match Limited::new(req.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                Err(ApiError::request_entity_too_large(MAX_BODY_BYTES))
            } else {
                Err(ApiError::bad_request(format!(
                    "cannot read request body: {e}"
                )))
            }
        }
    }
}

/// Decodes a request body as JSON, or YAML when the content type says so.
fn decode_body(bytes: &[u8], content_type: &str) -> Result<Value, ApiError> {
    let base = content_type.split(';').next().unwrap_or_default().trim();
    if base.contains("yaml") {
        let text = std::str::from_utf8(bytes)
            .map_err(|e| ApiError::bad_request(format!("body is not UTF-8: {e}")))?;
        return serde_saphyr::from_str::<Value>(text)
            .map_err(|e| ApiError::bad_request(format!("error converting YAML to JSON: {e}")));
    }
    if base.contains("protobuf") {
        return Err(ApiError::unsupported_media_type(content_type));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
    })
}

/// The entry point for every request on every listener.
pub async fn handle(
    state: Arc<ServerState>,
    req: Request<Incoming>,
    remote: SocketAddr,
) -> Result<Response<Body>, Infallible> {
    let received = state.clock.now();
    let path = req.uri().path().to_string();
    let request_uri = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| path.clone());
    let query = Query::parse(req.uri().query());
    let r = route(&path);
    if r == Route::Health {
        return Ok(Response::builder()
            .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(full("ok"))
            .unwrap_or_else(|_| Response::new(full("ok"))));
    }
    let (user, impersonated) = match authenticate(&state, req.headers()) {
        Ok(u) => u,
        Err(e) if r == Route::Version => {
            let _ = e;
            (
                UserInfo {
                    username: "system:anonymous".into(),
                    groups: vec!["system:unauthenticated".into()],
                    ..Default::default()
                },
                None,
            )
        }
        Err(e) => {
            tracing::debug!(%path, error = %e, "request refused");
            return Ok(error_response(&e, None));
        }
    };
    let effective = impersonated.clone().unwrap_or_else(|| user.clone());
    let method = req.method().clone();
    let user_agent = header_str(req.headers(), header::USER_AGENT).to_string();
    let resource_path = match &r {
        Route::Resource(rp) => Some(rp.clone()),
        _ => None,
    };
    let verb_name = match &resource_path {
        Some(rp) => verb(&method, rp, &query),
        None => match method {
            Method::GET | Method::HEAD => "get",
            Method::POST => "post",
            Method::PUT => "put",
            Method::PATCH => "patch",
            Method::DELETE => "delete",
            _ => "unknown",
        },
    };
    let attrs = RequestAttributes {
        username: &effective.username,
        groups: &effective.groups,
        verb: verb_name,
        resource_request: resource_path.is_some(),
        api_group: resource_path
            .as_ref()
            .map(|r| r.group.as_str())
            .unwrap_or_default(),
        resource: resource_path
            .as_ref()
            .map(|r| r.resource.as_str())
            .unwrap_or_default(),
        subresource: resource_path
            .as_ref()
            .and_then(|r| r.subresource.as_deref())
            .unwrap_or_default(),
        namespace: resource_path
            .as_ref()
            .and_then(|r| r.namespace.as_deref())
            .unwrap_or_default(),
        name: resource_path
            .as_ref()
            .and_then(|r| r.name.as_deref())
            .unwrap_or_default(),
        path: &path,
    };
    let decision = state.auditor.decide(&attrs);
    let audit_id = match req.headers().get("audit-id").and_then(|v| v.to_str().ok()) {
        Some(id) if !id.is_empty() => id.to_string(),
        _ => store::new_uuid(),
    };
    let object_ref = resource_path.as_ref().map(|rp| ObjectReference {
        resource: rp.resource.clone(),
        namespace: rp.namespace.clone().unwrap_or_default(),
        name: rp.name.clone().unwrap_or_default(),
        api_group: rp.group.clone(),
        api_version: rp.version.clone(),
        subresource: rp.subresource.clone().unwrap_or_default(),
        ..Default::default()
    });
    let mut audit = AuditRecord::new(
        decision,
        RequestFacts {
            audit_id: audit_id.clone(),
            request_uri,
            verb: verb_name.to_string(),
            user: user.clone(),
            impersonated_user: impersonated,
            source_ips: source_ips(req.headers(), remote),
            user_agent: user_agent.clone(),
            object_ref,
            received,
        },
    );
    if let Some(e) = audit.event(Stage::RequestReceived, received)
        && let Err(err) = state.auditor.emit(e).await
        && state.auditor.strict()
    {
        let e = ApiError::internal(format!("failed to record the audit event: {err}"));
        return Ok(error_response(&e, Some(&audit_id)));
    }
    audit.annotate("authorization.k8s.io/decision", "allow");
    audit.annotate(
        "authorization.k8s.io/reason",
        authorization_reason(&effective),
    );

    if let (Some(rp), "watch") = (&resource_path, verb_name) {
        return Ok(serve_watch(state, rp.clone(), &query, audit).await);
    }
    let accept = header_str(req.headers(), header::ACCEPT).to_string();
    let content_type = header_str(req.headers(), header::CONTENT_TYPE).to_string();
    let result = match r {
        Route::Resource(rp) => {
            let body = if matches!(
                method,
                Method::POST | Method::PUT | Method::PATCH | Method::DELETE
            ) {
                read_body(req).await
            } else {
                Ok(Bytes::new())
            };
            match body {
                Ok(body) => {
                    let ctx = RequestContext {
                        verb: verb_name,
                        query: &query,
                        accept: &accept,
                        content_type: &content_type,
                        user_agent: &user_agent,
                    };
                    serve_resource(&state, &rp, &ctx, &body, &mut audit)
                }
                Err(e) => Err(e),
            }
        }
        other => serve_non_resource(&state, other),
    };
    let response = match result {
        Ok((code, value)) => {
            let mut status = success_status(code);
            if verb_name == "delete" && value.get("kind").and_then(Value::as_str) == Some("Status")
            {
                status.status = "Success".to_string();
            }
            audit.set_response_status(status);
            audit.set_response_object(&value);
            json_response(code, &value, Some(&audit_id))
        }
        Err(e) => {
            let mut status = e.to_status();
            status.kind = None;
            status.api_version = None;
            audit.set_response_status(status);
            audit.set_response_object(&e.to_json());
            if e.code >= 500 {
                tracing::warn!(%path, error = %e, "request failed");
            }
            error_response(&e, Some(&audit_id))
        }
    };
    if let Some(e) = audit.event(Stage::ResponseComplete, state.clock.now()) {
        // A failure after the response is decided only gets logged, even in strict mode.
        let _ = state.auditor.emit(e).await;
    }
    Ok(response)
}

fn serve_non_resource(state: &ServerState, r: Route) -> Result<(u16, Value), ApiError> {
    match r {
        Route::Version => Ok((200, version_info(&state.server_version))),
        Route::CoreVersions => {
            let address = state
                .server_address
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            Ok((
                200,
                state.store.with_registry(|reg| reg.core_versions(&address)),
            ))
        }
        Route::GroupList => Ok((200, state.store.with_registry(|reg| reg.group_list()))),
        Route::Group(g) => state
            .store
            .with_registry(|reg| reg.group(&g))
            .map(|v| (200, v))
            .ok_or_else(ApiError::unknown_resource),
        Route::ResourceList { group, version } => state
            .store
            .with_registry(|reg| reg.resource_list(&group, &version))
            .map(|v| (200, v))
            .ok_or_else(ApiError::unknown_resource),
        Route::OpenApiV3Root => Ok((200, state.store.with_registry(openapi::v3_root))),
        Route::OpenApiV3 { group, version } => state
            .store
            .with_registry(|reg| openapi::v3_group_version(reg, &group, &version))
            .map(|v| (200, v))
            .ok_or_else(ApiError::unknown_resource),
        Route::OpenApiV2 => Ok((200, state.store.with_registry(openapi::v2))),
        Route::Health | Route::Resource(_) | Route::NotFound => Err(ApiError::unknown_resource()),
    }
}

struct RequestContext<'a> {
    verb: &'static str,
    query: &'a Query,
    accept: &'a str,
    content_type: &'a str,
    user_agent: &'a str,
}

fn resolve(state: &ServerState, rp: &ResourcePath) -> Result<ResourceType, ApiError> {
    let rt = state
        .store
        .resource_type(&rp.group, &rp.version, &rp.resource)
        .ok_or_else(ApiError::unknown_resource)?;
    // Namespaced objects are only addressable under /namespaces/{ns}/, cluster ones never are.
    if (!rt.namespaced && rp.namespace.is_some())
        || (rt.namespaced && rp.namespace.is_none() && rp.name.is_some())
    {
        return Err(ApiError::unknown_resource());
    }
    Ok(rt)
}

fn writer(ctx: &RequestContext<'_>, operation: &'static str) -> Writer {
    Writer {
        manager: manager_name(ctx.query.get("fieldManager"), ctx.user_agent),
        operation,
        dry_run: ctx.query.get("dryRun") == Some("All"),
    }
}

fn list_options(rt: &ResourceType, query: &Query) -> Result<ListOptions, ApiError> {
    let label_selector = LabelSelector::parse(query.get("labelSelector").unwrap_or_default())
        .map_err(ApiError::bad_request)?;
    let field_selector = FieldSelector::parse(
        query.get("fieldSelector").unwrap_or_default(),
        &rt.group,
        &rt.plural,
    )
    .map_err(ApiError::bad_request)?;
    let limit = match query.get("limit") {
        Some(l) if !l.is_empty() => Some(
            l.parse::<usize>()
                .map_err(|_| ApiError::bad_request(format!("invalid limit {l:?}")))?,
        )
        .filter(|l| *l > 0),
        _ => None,
    };
    let exact_resource_version = match (
        query.get("resourceVersionMatch"),
        query.get("resourceVersion"),
    ) {
        (Some("Exact"), Some(rv)) => Some(parse_resource_version(rv)?),
        _ => None,
    };
    Ok(ListOptions {
        label_selector,
        field_selector,
        limit,
        continue_token: query
            .get("continue")
            .filter(|c| !c.is_empty())
            .map(str::to_string),
        exact_resource_version,
    })
}

fn parse_resource_version(rv: &str) -> Result<u64, ApiError> {
    rv.parse::<u64>().map_err(|_| {
        ApiError::invalid(
            "meta.k8s.io",
            "ListOptions",
            "",
            vec![super::status::cause(
                "FieldValueInvalid",
                "resourceVersion",
                format!("Invalid value: \"{rv}\": must be a non-negative integer"),
            )],
        )
    })
}

fn subresource(rt: &ResourceType, rp: &ResourcePath) -> Result<Option<Subresource>, ApiError> {
    match &rp.subresource {
        None => Ok(None),
        Some(s) => match Subresource::parse(s) {
            Some(sub) if rt.has_subresource(sub) => Ok(Some(sub)),
            _ => Err(ApiError::unknown_resource()),
        },
    }
}

fn serve_resource(
    state: &ServerState,
    rp: &ResourcePath,
    ctx: &RequestContext<'_>,
    body: &[u8],
    audit: &mut AuditRecord,
) -> Result<(u16, Value), ApiError> {
    let rt = resolve(state, rp)?;
    let sub = subresource(&rt, rp)?;
    let store = &state.store;
    let namespace = rp.namespace.clone().unwrap_or_default();
    let name = rp.name.clone().unwrap_or_default();
    let as_table = table::wants_table(ctx.accept);
    match ctx.verb {
        "get" => {
            let obj = match sub {
                Some(Subresource::Scale) => store.get_scale(&rt, &namespace, &name)?,
                Some(Subresource::Binding) => return Err(ApiError::method_not_allowed()),
                _ => store.get(&rt, &namespace, &name)?,
            };
            if as_table && sub.is_none() {
                let meta = json!({"resourceVersion": obj.pointer("/metadata/resourceVersion").cloned().unwrap_or(json!(""))});
                return Ok((
                    200,
                    table::table(
                        &rt,
                        &[obj],
                        meta,
                        IncludeObject::parse(ctx.query.get("includeObject")),
                        state.clock.now(),
                    ),
                ));
            }
            Ok((200, obj))
        }
        "list" => {
            if sub.is_some() {
                return Err(ApiError::method_not_allowed());
            }
            let opts = list_options(&rt, ctx.query)?;
            let result = store.list(&rt, rp.namespace.as_deref(), &opts)?;
            let mut meta = json!({"resourceVersion": result.resource_version.to_string()});
            if let Some(c) = &result.continue_token {
                meta["continue"] = json!(c);
            }
            if let Some(n) = result.remaining_item_count {
                meta["remainingItemCount"] = json!(n);
            }
            if as_table {
                return Ok((
                    200,
                    table::table(
                        &rt,
                        &result.items,
                        meta,
                        IncludeObject::parse(ctx.query.get("includeObject")),
                        state.clock.now(),
                    ),
                ));
            }
            Ok((
                200,
                json!({"kind": rt.list_kind(), "apiVersion": rt.api_version(), "metadata": meta, "items": result.items}),
            ))
        }
        "create" => {
            if rp.name.is_some() && sub != Some(Subresource::Binding) {
                return Err(ApiError::method_not_allowed());
            }
            let object = decode_body(body, ctx.content_type)?;
            audit.set_request_object(&object);
            if sub == Some(Subresource::Binding) {
                store.bind_pod(&rt, &namespace, &name, &object, &writer(ctx, "Update"))?;
                let mut status = serde_json::to_value(success_status(201)).unwrap_or(json!({}));
                status["kind"] = json!("Status");
                status["apiVersion"] = json!("v1");
                status["status"] = json!("Success");
                return Ok((201, status));
            }
            if sub.is_some() {
                return Err(ApiError::method_not_allowed());
            }
            let created = store.create(&rt, &namespace, object, &writer(ctx, "Update"))?;
            Ok((201, created))
        }
        "update" => {
            let object = decode_body(body, ctx.content_type)?;
            audit.set_request_object(&object);
            match sub {
                Some(Subresource::Binding) => Err(ApiError::method_not_allowed()),
                Some(Subresource::Scale) => {
                    let requested = object.clone();
                    Ok((
                        200,
                        store.update_scale(
                            &rt,
                            &namespace,
                            &name,
                            move |_| Ok(requested),
                            &writer(ctx, "Update"),
                        )?,
                    ))
                }
                _ => Ok((
                    200,
                    store.update(&rt, &namespace, &name, object, sub, &writer(ctx, "Update"))?,
                )),
            }
        }
        "patch" => {
            let patch_type = PatchType::from_content_type(ctx.content_type)
                .ok_or_else(|| ApiError::unsupported_media_type(ctx.content_type))?;
            let patch_body = match patch_type {
                PatchType::Apply => decode_body(body, "application/yaml")?,
                _ => serde_json::from_slice(body)
                    .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?,
            };
            audit.set_request_object(&patch_body);
            let operation = if patch_type == PatchType::Apply {
                "Apply"
            } else {
                "Update"
            };
            if patch_type == PatchType::Apply
                && ctx.query.get("fieldManager").is_none_or(str::is_empty)
            {
                return Err(ApiError::bad_request(
                    "PATCH /apply requires a non-empty fieldManager query parameter",
                ));
            }
            match sub {
                Some(Subresource::Binding) => Err(ApiError::method_not_allowed()),
                Some(Subresource::Scale) => {
                    let change = |current: Value| {
                        let mut scale = current;
                        store::apply_patch(&mut scale, patch_type, &patch_body)
                            .map_err(ApiError::bad_request)?;
                        Ok(scale)
                    };
                    Ok((
                        200,
                        store.update_scale(
                            &rt,
                            &namespace,
                            &name,
                            change,
                            &writer(ctx, operation),
                        )?,
                    ))
                }
                _ => {
                    // Only an apply can create; knowing whether it did needs a lookup, other patches skip it.
                    let existed =
                        patch_type != PatchType::Apply || store.get(&rt, &namespace, &name).is_ok();
                    let out = store.patch(
                        &rt,
                        &namespace,
                        &name,
                        patch_type,
                        &patch_body,
                        sub,
                        &writer(ctx, operation),
                    )?;
                    Ok((if existed { 200 } else { 201 }, out))
                }
            }
        }
        "delete" => {
            if sub.is_some() {
                return Err(ApiError::method_not_allowed());
            }
            let opts = delete_options(ctx.query, body)?;
            if !body.is_empty()
                && let Ok(mut b) = serde_json::from_slice::<Value>(body)
            {
                if let Some(m) = b.as_object_mut() {
                    m.entry("kind").or_insert(json!("DeleteOptions"));
                    m.entry("apiVersion").or_insert(json!("meta.k8s.io/v1"));
                }
                audit.set_request_object(&b);
            }
            match store.delete(&rt, &namespace, &name, &opts, &writer(ctx, "Update"))? {
                DeleteOutcome::Pending(obj) => Ok((200, obj)),
                DeleteOutcome::Deleted(obj) if rt.plural == "pods" || rt.plural == "namespaces" => {
                    Ok((200, obj))
                }
                DeleteOutcome::Deleted(obj) => {
                    let uid = obj.pointer("/metadata/uid").cloned().unwrap_or(json!(""));
                    Ok((
                        200,
                        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                        "details": {"name": name, "group": rt.group, "kind": rt.plural, "uid": uid}}),
                    ))
                }
            }
        }
        "deletecollection" => {
            let opts = delete_options(ctx.query, body)?;
            let list = store.list(&rt, rp.namespace.as_deref(), &list_options(&rt, ctx.query)?)?;
            let mut deleted = Vec::new();
            for item in &list.items {
                let ns = item
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let n = item
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                match store.delete(&rt, &ns, &n, &opts, &writer(ctx, "Update")) {
                    Ok(DeleteOutcome::Deleted(o) | DeleteOutcome::Pending(o)) => deleted.push(o),
                    Err(e) if e.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
            Ok((
                200,
                json!({"kind": rt.list_kind(), "apiVersion": rt.api_version(), "metadata": {"resourceVersion": store.current_resource_version().to_string()}, "items": deleted}),
            ))
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

fn delete_options(query: &Query, body: &[u8]) -> Result<DeleteOptions, ApiError> {
    let mut opts =
        DeleteOptions {
            propagation_policy: query.get("propagationPolicy").map(str::to_string),
            grace_period_seconds: match query.get("gracePeriodSeconds") {
                Some(g) => Some(g.parse().map_err(|_| {
                    ApiError::bad_request(format!("invalid gracePeriodSeconds {g:?}"))
                })?),
                None => None,
            },
            orphan_dependents: query.get("orphanDependents").map(|v| v == "true"),
            ..Default::default()
        };
    if !body.is_empty() {
        let parsed: Value = serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
        })?;
        opts.merge_body(&parsed);
    }
    Ok(opts)
}

/// What one watcher sees of the resource's events.
struct WatchFilter {
    rt: ResourceType,
    namespace: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
}

impl WatchFilter {
    fn in_namespace(&self, obj: &Value) -> bool {
        match &self.namespace {
            Some(ns) if self.rt.namespaced => {
                obj.pointer("/metadata/namespace").and_then(Value::as_str) == Some(ns.as_str())
            }
            _ => true,
        }
    }

    fn view(&self, obj: &Value) -> Value {
        match self.rt.view {
            View::Native => obj.clone(),
            View::EventsV1 => super::events_view::core_to_events_v1(obj),
        }
    }

    fn selected(&self, view: &Value) -> bool {
        self.labels.matches(view) && self.fields.matches(view)
    }

    /// The line this watcher gets for `event`, if any. Selector watchers see an object that
    /// starts or stops matching as ADDED or DELETED, like the apiserver's watch cache.
    fn render(&self, event: &WatchEvent) -> Option<Bytes> {
        if !self.in_namespace(&event.object) {
            return None;
        }
        let plain = self.labels.is_empty() && self.fields.is_empty();
        if plain && self.rt.view == View::Native {
            return Some(event.line.clone());
        }
        let view = self.view(&event.object);
        let now_selected = self.selected(&view);
        let event_type = match (event.event_type, &event.previous) {
            (WatchEventType::Modified, Some(prev)) => {
                let was_selected = self.selected(&self.view(prev));
                match (was_selected, now_selected) {
                    (true, true) => WatchEventType::Modified,
                    (false, true) => WatchEventType::Added,
                    (true, false) => WatchEventType::Deleted,
                    (false, false) => return None,
                }
            }
            (t, _) if now_selected => t,
            _ => return None,
        };
        Some(store::watch_line(event_type, &view))
    }

    fn bookmark(&self, resource_version: u64, initial_events_end: bool) -> Bytes {
        let mut metadata = json!({"resourceVersion": resource_version.to_string()});
        if initial_events_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        store::watch_line(
            WatchEventType::Bookmark,
            &json!({"kind": self.rt.kind, "apiVersion": self.rt.api_version(), "metadata": metadata}),
        )
    }
}

fn watch_response(audit_id: &str, rx: mpsc::Receiver<Bytes>) -> Response<Body> {
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-cache, private")
        .header("Audit-Id", audit_id)
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .unwrap_or_else(|_| Response::new(full(Bytes::new())))
}

async fn serve_watch(
    state: Arc<ServerState>,
    rp: ResourcePath,
    query: &Query,
    mut audit: AuditRecord,
) -> Response<Body> {
    let audit_id = audit.audit_id().to_string();
    let setup = (|| {
        let rt = resolve(&state, &rp)?;
        if rp.subresource.is_some() {
            return Err(ApiError::method_not_allowed());
        }
        let opts = list_options(&rt, query)?;
        let mut fields = opts.field_selector;
        // `/watch/namespaces/ns/pods/name` watches one object.
        if let Some(name) = &rp.name {
            fields.requirements.push(super::selector::FieldRequirement {
                field: "metadata.name".into(),
                value: name.clone(),
                negated: false,
            });
        }
        let start = match query.get("resourceVersion") {
            None | Some("") | Some("0") => WatchStart::Current,
            Some(rv) => WatchStart::After(parse_resource_version(rv)?),
        };
        let send_initial = query.flag("sendInitialEvents");
        let start = if send_initial {
            WatchStart::Current
        } else {
            start
        };
        let timeout = match query.get("timeoutSeconds") {
            Some(t) => Duration::from_secs(
                t.parse::<u64>()
                    .map_err(|_| ApiError::bad_request(format!("invalid timeoutSeconds {t:?}")))?,
            ),
            None => DEFAULT_WATCH_TIMEOUT,
        };
        Ok((
            WatchFilter {
                rt,
                namespace: rp.namespace.clone(),
                labels: opts.label_selector,
                fields,
            },
            start,
            send_initial,
            timeout,
        ))
    })();
    let (filter, start, send_initial, timeout) = match setup {
        Ok(s) => s,
        Err(e) => {
            let mut status = e.to_status();
            status.kind = None;
            status.api_version = None;
            audit.set_response_status(status);
            if let Some(ev) = audit.event(Stage::ResponseComplete, state.clock.now()) {
                let _ = state.auditor.emit(ev).await;
            }
            return error_response(&e, Some(&audit_id));
        }
    };
    let bookmarks = query.flag("allowWatchBookmarks");
    let subscription = state.store.watch(&filter.rt, start);
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    let task_state = state.clone();
    tokio::spawn(async move {
        audit.set_response_status(success_status(200));
        if let Some(ev) = audit.event(Stage::ResponseStarted, task_state.clock.now()) {
            let _ = task_state.auditor.emit(ev).await;
        }
        run_watch(
            &task_state,
            filter,
            subscription,
            send_initial && bookmarks,
            bookmarks,
            timeout,
            tx,
        )
        .await;
        if let Some(ev) = audit.event(Stage::ResponseComplete, task_state.clock.now()) {
            let _ = task_state.auditor.emit(ev).await;
        }
    });
    watch_response(&audit_id, rx)
}

fn error_line(e: &ApiError) -> Bytes {
    store::watch_line(WatchEventType::Error, &e.to_json())
}

async fn run_watch(
    state: &ServerState,
    filter: WatchFilter,
    subscription: Result<store::WatchSubscription, ApiError>,
    initial_events_end: bool,
    bookmarks: bool,
    timeout: Duration,
    tx: mpsc::Sender<Bytes>,
) {
    let mut sub = match subscription {
        Ok(s) => s,
        Err(e) => {
            let _ = tx.send(error_line(&e)).await;
            return;
        }
    };
    let mut last_seen = sub.resource_version;
    let mut chunk = Vec::new();
    for event in &sub.backlog {
        if let Some(line) = filter.render(event) {
            chunk.extend_from_slice(&line);
        }
        last_seen = last_seen.max(event.resource_version);
    }
    if initial_events_end {
        chunk.extend_from_slice(&filter.bookmark(last_seen, true));
    }
    if !chunk.is_empty()
        && tx
            .send(Bytes::from(std::mem::take(&mut chunk)))
            .await
            .is_err()
    {
        return;
    }
    let deadline = tokio::time::Instant::now() + timeout;
    let mut bookmark_tick =
        tokio::time::interval(state.bookmark_interval.max(Duration::from_millis(10)));
    bookmark_tick.tick().await;
    let mut shutdown = state.shutdown.clone();
    loop {
        let mut out = Vec::new();
        tokio::select! {
            received = sub.receiver.recv() => match received {
                Ok(event) => {
                    let mut next = Some(event);
                    let mut count = 0;
                    while let Some(event) = next.take() {
                        if event.resource_version > last_seen {
                            last_seen = event.resource_version;
                            if let Some(line) = filter.render(&event) {
                                out.extend_from_slice(&line);
                            }
                        }
                        count += 1;
                        if count < MAX_EVENTS_PER_CHUNK {
                            next = sub.receiver.try_recv().ok();
                        }
                    }
                }
                Err(broadcast::error::RecvError::Lagged(skipped)) => {
                    tracing::debug!(skipped, resource = %filter.rt.plural, "watcher fell behind; resuming from history");
                    match state.store.watch(&filter.rt, WatchStart::After(last_seen)) {
                        Ok(resumed) => {
                            for event in &resumed.backlog {
                                if event.resource_version > last_seen {
                                    last_seen = event.resource_version;
                                    if let Some(line) = filter.render(event) {
                                        out.extend_from_slice(&line);
                                    }
                                }
                            }
                            sub = resumed;
                        }
                        Err(e) => {
                            let _ = tx.send(error_line(&e)).await;
                            return;
                        }
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = bookmark_tick.tick(), if bookmarks => out.extend_from_slice(&filter.bookmark(last_seen, false)),
            _ = tokio::time::sleep_until(deadline) => return,
            _ = shutdown.changed() => return,
            _ = tx.closed() => return,
        }
        if !out.is_empty() && tx.send(Bytes::from(out)).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_cover_discovery_and_resource_paths() {
        assert_eq!(
            route("/api/v1"),
            Route::ResourceList {
                group: "".into(),
                version: "v1".into()
            }
        );
        assert_eq!(route("/apis/apps"), Route::Group("apps".into()));
        let Route::Resource(rp) = route("/apis/apps/v1/namespaces/default/deployments/demo/scale")
        else {
            panic!()
        };
        assert_eq!(
            (
                rp.namespace.as_deref(),
                rp.name.as_deref(),
                rp.subresource.as_deref()
            ),
            (Some("default"), Some("demo"), Some("scale"))
        );
        let Route::Resource(rp) = route("/api/v1/namespaces/team") else {
            panic!()
        };
        assert_eq!(
            (rp.resource.as_str(), rp.name.as_deref()),
            ("namespaces", Some("team"))
        );
        let Route::Resource(rp) = route("/api/v1/namespaces/team/status") else {
            panic!()
        };
        assert_eq!(
            (rp.resource.as_str(), rp.subresource.as_deref()),
            ("namespaces", Some("status"))
        );
        let Route::Resource(rp) = route("/api/v1/namespaces/team/pods") else {
            panic!()
        };
        assert_eq!(
            (rp.resource.as_str(), rp.namespace.as_deref()),
            ("pods", Some("team"))
        );
        let Route::Resource(rp) = route("/api/v1/watch/namespaces/team/pods") else {
            panic!()
        };
        assert!(rp.legacy_watch);
        assert_eq!(
            route("/apis/apps/v1/namespaces/a/deployments/b/c/d"),
            Route::NotFound
        );
    }

    #[test]
    fn verbs_follow_method_and_shape() {
        let q = Query::parse(Some("watch=true&labelSelector=app%3Ddemo%2Ctier+in+(a)"));
        assert_eq!(q.get("labelSelector"), Some("app=demo,tier in (a)"));
        let Route::Resource(list) = route("/api/v1/pods") else {
            panic!()
        };
        assert_eq!(verb(&Method::GET, &list, &q), "watch");
        assert_eq!(verb(&Method::GET, &list, &Query::default()), "list");
        assert_eq!(
            verb(&Method::DELETE, &list, &Query::default()),
            "deletecollection"
        );
    }

    #[test]
    fn source_ips_honour_forwarding_headers() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "10.0.0.1, 10.0.0.2".parse().unwrap());
        let ips = source_ips(&h, "127.0.0.1:5000".parse().unwrap());
        assert_eq!(ips, vec!["10.0.0.1", "10.0.0.2", "127.0.0.1"]);
    }
}
