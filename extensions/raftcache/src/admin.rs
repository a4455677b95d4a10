//! Admin HTTP API of a raftcache node: members and shard leaders, join/leave (Raft conf
//! changes on every shard), leader transfer, and the cache operations themselves (for operators,
//! tests and the benchmark). JSON in and out; values are UTF-8 text here.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use kausal_core::cache::{Cache, CacheEntry, CacheError, CacheKey, CasOutcome};
use serde::Deserialize;
use serde_json::json;

use crate::node::NodeHandle;

#[derive(Clone)]
struct AdminState {
    node: NodeHandle,
    cache: Arc<dyn Cache>,
}

pub fn router(node: NodeHandle, cache: Arc<dyn Cache>) -> Router {
    Router::new()
        .route("/members", get(members).post(join))
        .route("/members/{id}", axum::routing::delete(leave))
        .route("/shards", get(shards))
        .route("/shards/{shard}/transfer-leader", post(transfer))
        .route("/cache", get(cache_get).put(cache_put).delete(cache_delete))
        .route("/cache/list", get(cache_list))
        .with_state(AdminState { node, cache })
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, Json(json!({ "error": message.to_string() }))).into_response()
}

fn cache_error(e: CacheError) -> Response {
    match e {
        CacheError::Unavailable(m) => error(StatusCode::SERVICE_UNAVAILABLE, m),
        CacheError::Failed(m) => error(StatusCode::INTERNAL_SERVER_ERROR, m),
    }
}

async fn members(State(s): State<AdminState>) -> Response {
    match s.node.status().await {
        Some(st) => Json(json!({
            "node_id": st.node_id,
            "members": st.members.iter().map(|(id, a)| json!({"id": id, "address": a})).collect::<Vec<_>>(),
        }))
        .into_response(),
        None => error(StatusCode::SERVICE_UNAVAILABLE, "node is not running"),
    }
}

async fn shards(State(s): State<AdminState>) -> Response {
    match s.node.status().await {
        Some(st) => Json(json!({ "node_id": st.node_id, "shards": st.shards })).into_response(),
        None => error(StatusCode::SERVICE_UNAVAILABLE, "node is not running"),
    }
}

#[derive(Deserialize)]
struct JoinBody {
    id: u64,
    address: String,
}

async fn join(State(s): State<AdminState>, Json(body): Json<JoinBody>) -> Response {
    if body.id == 0 || body.address.parse::<std::net::SocketAddr>().is_err() {
        return error(StatusCode::BAD_REQUEST, "id must be >= 1 and address like 127.0.0.1:7379");
    }
    let accepted = s.node.membership(body.id, Some(body.address)).await;
    (StatusCode::ACCEPTED, Json(json!({ "proposed_on_shards": accepted }))).into_response()
}

async fn leave(State(s): State<AdminState>, Path(id): Path<u64>) -> Response {
    let accepted = s.node.membership(id, None).await;
    (StatusCode::ACCEPTED, Json(json!({ "proposed_on_shards": accepted }))).into_response()
}

#[derive(Deserialize)]
struct TransferBody {
    to: u64,
}

async fn transfer(State(s): State<AdminState>, Path(shard): Path<u32>, Json(body): Json<TransferBody>) -> Response {
    if s.node.transfer(shard, body.to).await {
        (StatusCode::ACCEPTED, Json(json!({ "transferring": true }))).into_response()
    } else {
        error(StatusCode::CONFLICT, format!("this node does not lead shard {shard}"))
    }
}

#[derive(Deserialize)]
struct KeyQuery {
    object: String,
    #[serde(default)]
    entry: String,
    /// TTL in seconds for writes.
    ttl: Option<f64>,
    /// `create` (if absent) or `cas` (with `expected`) for writes; unconditional otherwise.
    mode: Option<String>,
    expected: Option<u64>,
}

fn entry_json(entry: &str, e: &CacheEntry) -> serde_json::Value {
    json!({
        "entry": entry,
        "value": String::from_utf8_lossy(&e.value),
        "version": e.version,
        "written_at": e.written_at,
        "expires_at": e.expires_at,
    })
}

async fn cache_get(State(s): State<AdminState>, Query(q): Query<KeyQuery>) -> Response {
    match s.cache.get(&CacheKey::new(q.object, q.entry.clone())).await {
        Ok(Some(e)) => Json(entry_json(&q.entry, &e)).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, "no such entry"),
        Err(e) => cache_error(e),
    }
}

async fn cache_list(State(s): State<AdminState>, Query(q): Query<KeyQuery>) -> Response {
    match s.cache.list(&q.object).await {
        Ok(entries) => Json(json!({ "entries": entries.iter().map(|(k, e)| entry_json(k, e)).collect::<Vec<_>>() })).into_response(),
        Err(e) => cache_error(e),
    }
}

async fn cache_put(State(s): State<AdminState>, Query(q): Query<KeyQuery>, body: axum::body::Bytes) -> Response {
    let key = CacheKey::new(q.object, q.entry);
    let ttl = match q.ttl {
        Some(t) if t.is_finite() && t > 0.0 => Some(Duration::from_secs_f64(t)),
        Some(_) => return error(StatusCode::BAD_REQUEST, "ttl must be a positive number of seconds"),
        None => None,
    };
    let value = body.to_vec();
    let outcome = match q.mode.as_deref() {
        None | Some("put") => s.cache.put(&key, value, ttl).await.map(CasOutcome::Written),
        Some("create") => s.cache.create_if_absent(&key, value, ttl).await,
        Some("cas") => match q.expected {
            Some(v) => s.cache.compare_and_set(&key, v, value, ttl).await,
            None => return error(StatusCode::BAD_REQUEST, "mode=cas needs expected=<version>"),
        },
        Some(m) => return error(StatusCode::BAD_REQUEST, format!("unknown mode {m:?}; use put, create or cas")),
    };
    match outcome {
        Ok(CasOutcome::Written(v)) => Json(json!({ "written": true, "version": v })).into_response(),
        Ok(CasOutcome::Mismatch(cur)) => (
            StatusCode::CONFLICT,
            Json(json!({ "written": false, "current": cur.map(|e| entry_json(&key.entry, &e)) })),
        )
            .into_response(),
        Err(e) => cache_error(e),
    }
}

async fn cache_delete(State(s): State<AdminState>, Query(q): Query<KeyQuery>) -> Response {
    match s.cache.delete(&CacheKey::new(q.object, q.entry)).await {
        Ok(existed) => Json(json!({ "deleted": existed })).into_response(),
        Err(e) => cache_error(e),
    }
}
