//! The webhook server: `POST /audit` and `POST /audit/{cluster}`, over HTTP or HTTPS (optionally
//! with client certificates), answering the way kube-apiserver's webhook client understands:
//! a `meta/v1` Status body, 429 + `Retry-After` when the pipeline is full (the apiserver retries),
//! 4xx when retrying cannot help. A batch is acknowledged only after the pipeline accepted all of
//! it; nothing from a refused request goes downstream. Request bodies are never logged.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Extension, Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use kausal_core::audit::DecodeError;
use kausal_core::component::{Component, ComponentError, ComponentId, CreateContext, Host, Receiver};
use kausal_core::config::{ComponentConfig, ConfigError};
use kausal_core::telemetry::ComponentMetrics;
use kausal_core::{Batch, ConsumeError, Consumer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, oneshot};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::cluster::{ClusterResolver, check_cluster_name};
use crate::config::Config;
use crate::decode::decode_body;
use crate::filter::Filter;

/// How long a client has to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for in-flight requests before closing their connections.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
/// Bodies larger than this are decoded off the async worker threads.
const BLOCKING_DECODE_THRESHOLD: usize = 1 << 20;
/// `Retry-After` when the pipeline gives no hint.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// What every request handler needs.
struct Shared {
    id: ComponentId,
    next: Arc<dyn Consumer>,
    metrics: ComponentMetrics,
    filter: Filter,
    clusters: ClusterResolver,
    bearer_token: Option<String>,
    max_body_size: usize,
}

/// The TCP peer of a connection (never a forwarding header).
#[derive(Clone, Copy, Debug)]
struct Peer(SocketAddr);

enum Lifecycle {
    Created,
    Running { stop: oneshot::Sender<()>, task: JoinHandle<()> },
    Stopped,
}

/// The `kubeaudit` receiver.
pub struct AuditReceiver {
    shared: Arc<Shared>,
    endpoint: String,
    tls: Option<TlsAcceptor>,
    local_addr: OnceLock<SocketAddr>,
    lifecycle: Mutex<Lifecycle>,
}

impl AuditReceiver {
    /// Builds the receiver from its config section; reads the TLS and token files.
    pub fn new(ctx: CreateContext, section: &ComponentConfig, next: Arc<dyn Consumer>) -> Result<Self, ConfigError> {
        let config: Config = section.parse()?;
        config.validate(section)?;
        let tls = match &config.tls {
            Some(t) => Some(TlsAcceptor::from(
                crate::tls::server_config(t).map_err(|(key, m)| section.error(&key, m))?,
            )),
            None => None,
        };
        let bearer_token = match (&config.bearer_token, &config.bearer_token_file) {
            (Some(t), _) => Some(t.0.clone()),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| section.error("bearer_token_file", format!("cannot read {}: {e}", path.display())))?;
                let token = text.trim();
                if token.is_empty() {
                    return Err(section.error("bearer_token_file", format!("{} is empty", path.display())));
                }
                Some(token.to_string())
            }
            (None, None) => None,
        };
        Ok(AuditReceiver {
            shared: Arc::new(Shared {
                id: ctx.id,
                next,
                metrics: ctx.metrics,
                filter: config.filter(section)?,
                clusters: config.cluster_resolver(section)?,
                bearer_token,
                max_body_size: config.max_body_size,
            }),
            endpoint: config.endpoint,
            tls,
            local_addr: OnceLock::new(),
            lifecycle: Mutex::new(Lifecycle::Created),
        })
    }

    /// The address the server is bound to, once started (useful with port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr.get().copied()
    }

    fn router(&self) -> Router {
        Router::new()
            .route("/audit", post(audit))
            .route("/audit/{cluster}", post(audit_for_cluster))
            .with_state(self.shared.clone())
    }
}

#[async_trait::async_trait]
impl Component for AuditReceiver {
    async fn start(&self, _host: &Host) -> Result<(), ComponentError> {
        let mut lifecycle = self.lifecycle.lock().await;
        match *lifecycle {
            Lifecycle::Created => {}
            Lifecycle::Running { .. } => return Ok(()),
            Lifecycle::Stopped => return Err(ComponentError::new(&self.shared.id, "cannot start again after shutdown")),
        }
        let id = &self.shared.id;
        let listener = TcpListener::bind(&self.endpoint)
            .await
            .map_err(|e| ComponentError::new(id, format!("cannot listen on {}: {e}", self.endpoint)))?;
        let addr = listener
            .local_addr()
            .map_err(|e| ComponentError::new(id, format!("cannot read the address bound for {}: {e}", self.endpoint)))?;
        let _ = self.local_addr.set(addr);
        tracing::info!(component = %id, address = %addr, tls = self.tls.is_some(), "audit webhook listening");
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(serve(listener, self.router(), self.tls.clone(), stopped, id.clone()));
        *lifecycle = Lifecycle::Running { stop, task };
        Ok(())
    }

    async fn shutdown(&self) -> Result<(), ComponentError> {
        let mut lifecycle = self.lifecycle.lock().await;
        if let Lifecycle::Running { stop, task } = std::mem::replace(&mut *lifecycle, Lifecycle::Stopped) {
            let _ = stop.send(());
            task.await
                .map_err(|e| ComponentError::new(&self.shared.id, format!("server task failed: {e}")))?;
            tracing::info!(component = %self.shared.id, "audit webhook stopped");
        }
        Ok(())
    }
}

impl Receiver for AuditReceiver {}

/// Accepts connections until `stop`, then lets in-flight requests finish.
async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<TlsAcceptor>,
    mut stop: oneshot::Receiver<()>,
    id: ComponentId,
) {
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // With a timer, hyper applies its default header read timeout to HTTP/1 connections.
    builder.http1().timer(TokioTimer::new());
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    // Usually out of file descriptors; back off instead of spinning.
                    tracing::warn!(component = %id, error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        // Subscribed now, so shutdown also waits for connections still in their TLS handshake.
        let watcher = graceful.watcher();
        let service = TowerToHyperService::new(router.clone().layer(Extension(Peer(peer))));
        let builder = builder.clone();
        let tls = tls.clone();
        let id = id.clone();
        tokio::spawn(async move {
            let result = match tls {
                None => watcher.watch(builder.serve_connection(TokioIo::new(stream), service)).await,
                Some(acceptor) => match handshake(&acceptor, stream).await {
                    Ok(stream) => watcher.watch(builder.serve_connection(TokioIo::new(stream), service)).await,
                    Err(message) => {
                        tracing::debug!(component = %id, %peer, "TLS handshake failed: {message}");
                        return;
                    }
                },
            };
            if let Err(e) = result {
                tracing::debug!(component = %id, %peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_TIMEOUT, graceful.shutdown()).await.is_err() {
        tracing::warn!(component = %id, "requests still in flight after {SHUTDOWN_TIMEOUT:?}; closing their connections");
    }
}

async fn handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
) -> Result<tokio_rustls::server::TlsStream<TcpStream>, String> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("not finished within {HANDSHAKE_TIMEOUT:?}")),
    }
}

async fn audit(State(shared): State<Arc<Shared>>, Extension(peer): Extension<Peer>, req: Request) -> Response {
    shared.handle(None, peer, req).await
}

async fn audit_for_cluster(
    State(shared): State<Arc<Shared>>,
    Extension(peer): Extension<Peer>,
    Path(cluster): Path<String>,
    req: Request,
) -> Response {
    shared.handle(Some(cluster), peer, req).await
}

/// Why a request was refused; each maps to an HTTP status and a Kubernetes `Status` reason.
#[derive(Debug, thiserror::Error)]
enum Refusal {
    #[error("missing or wrong bearer token")]
    Unauthorized,
    #[error("unsupported Content-Type {0:?}; send application/json")]
    UnsupportedMediaType(String),
    #[error("unsupported Content-Encoding {0:?}; send the body uncompressed")]
    UnsupportedEncoding(String),
    #[error("request body is larger than max_body_size ({limit} bytes)")]
    TooLarge { limit: usize },
    #[error("cannot read the request body: {0}")]
    Body(String),
    #[error("{0}")]
    Cluster(String),
    #[error("{0}")]
    Decode(#[from] DecodeError),
    #[error("pipeline is full, retry later: {message}")]
    Busy { message: String, retry_after: Duration },
    #[error("the pipeline refused the batch: {0}")]
    Refused(String),
    #[error("decoding failed: {0}")]
    Internal(String),
}

impl Refusal {
    fn status(&self) -> (StatusCode, &'static str) {
        match self {
            Refusal::Unauthorized => (StatusCode::UNAUTHORIZED, "Unauthorized"),
            Refusal::UnsupportedMediaType(_) | Refusal::UnsupportedEncoding(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "UnsupportedMediaType")
            }
            Refusal::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "RequestEntityTooLarge"),
            Refusal::Body(_) | Refusal::Cluster(_) | Refusal::Decode(_) | Refusal::Refused(_) => {
                (StatusCode::BAD_REQUEST, "BadRequest")
            }
            Refusal::Busy { .. } => (StatusCode::TOO_MANY_REQUESTS, "TooManyRequests"),
            Refusal::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "InternalError"),
        }
    }

    fn into_response(self) -> Response {
        let (code, reason) = self.status();
        let message = self.to_string();
        match self {
            Refusal::Busy { retry_after, .. } => {
                let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
                let seconds = seconds.max(1);
                let mut response = status_body(code, reason, &message, Some(seconds));
                response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(seconds));
                response
            }
            Refusal::Unauthorized => {
                let mut response = status_body(code, reason, &message, None);
                response.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                response
            }
            _ => status_body(code, reason, &message, None),
        }
    }
}

/// A `meta/v1` Status, which kube-apiserver's webhook client reads from error responses.
fn status_body(code: StatusCode, reason: &str, message: &str, retry_after_seconds: Option<u64>) -> Response {
    let mut status = serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": if code.is_success() { "Success" } else { "Failure" },
        "message": message,
        "code": code.as_u16(),
    });
    if !reason.is_empty() {
        status["reason"] = reason.into();
    }
    if let Some(s) = retry_after_seconds {
        status["details"] = serde_json::json!({ "retryAfterSeconds": s });
    }
    (code, [(CONTENT_TYPE, HeaderValue::from_static("application/json"))], status.to_string()).into_response()
}

impl Shared {
    async fn handle(self: Arc<Self>, path_cluster: Option<String>, peer: Peer, req: Request) -> Response {
        match self.accept(path_cluster, peer, req).await {
            Ok(message) => status_body(StatusCode::OK, "", &message, None),
            Err(refusal) => {
                match &refusal {
                    Refusal::Busy { .. } => {
                        tracing::debug!(component = %self.id, peer = %peer.0, "refused a batch: {refusal}")
                    }
                    _ => tracing::warn!(component = %self.id, peer = %peer.0, "refused a batch: {refusal}"),
                }
                refusal.into_response()
            }
        }
    }

    async fn accept(&self, path_cluster: Option<String>, peer: Peer, req: Request) -> Result<String, Refusal> {
        let (parts, body) = req.into_parts();
        self.check_headers(&parts.headers)?;
        if let Some(c) = &path_cluster {
            check_cluster_name(c).map_err(Refusal::Cluster)?;
        }
        let cluster = self.clusters.resolve(path_cluster.as_deref(), peer.0.ip()).to_string();
        let body = read_body(body, self.max_body_size).await?;

        let decoded = if body.len() > BLOCKING_DECODE_THRESHOLD {
            let filter = self.filter.clone();
            let cluster = cluster.clone();
            tokio::task::spawn_blocking(move || decode_body(&body, &cluster, &filter))
                .await
                .map_err(|e| Refusal::Internal(e.to_string()))??
        } else {
            decode_body(&body, &cluster, &self.filter)?
        };
        let (received, accepted, dropped) = (decoded.received, decoded.activities.len(), decoded.dropped_total());
        self.metrics.received.inc_by(received as u64);
        self.metrics.dropped.inc_by(dropped as u64);
        if dropped > 0 {
            tracing::debug!(component = %self.id, %cluster, dropped = ?decoded.dropped, "events filtered out");
        }
        if accepted > 0 {
            match self.next.consume(Batch::Activities(decoded.activities)).await {
                Ok(()) => {
                    self.metrics.sent.inc_by(accepted as u64);
                }
                Err(e) => {
                    self.metrics.failed.inc_by(accepted as u64);
                    return Err(match e {
                        ConsumeError::Retryable { message, retry_after } => Refusal::Busy {
                            message,
                            retry_after: retry_after.unwrap_or(DEFAULT_RETRY_AFTER),
                        },
                        ConsumeError::Permanent { message } => Refusal::Refused(message),
                    });
                }
            }
        }
        tracing::debug!(component = %self.id, %cluster, received, accepted, dropped, "batch accepted");
        Ok(format!("accepted {accepted} of {received} audit events ({dropped} filtered out)"))
    }

    fn check_headers(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        if let Some(expected) = &self.bearer_token
            && !bearer_matches(headers.get(AUTHORIZATION), expected.as_bytes())
        {
            return Err(Refusal::Unauthorized);
        }
        if let Some(ct) = headers.get(CONTENT_TYPE) {
            let media = ct.to_str().unwrap_or("").split(';').next().unwrap_or("").trim();
            if !media.eq_ignore_ascii_case("application/json") {
                return Err(Refusal::UnsupportedMediaType(String::from_utf8_lossy(ct.as_bytes()).into_owned()));
            }
        }
        if let Some(ce) = headers.get(CONTENT_ENCODING)
            && !ce.as_bytes().eq_ignore_ascii_case(b"identity")
        {
            return Err(Refusal::UnsupportedEncoding(String::from_utf8_lossy(ce.as_bytes()).into_owned()));
        }
        let declared = headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.max_body_size as u64) {
            return Err(Refusal::TooLarge { limit: self.max_body_size });
        }
        Ok(())
    }
}

/// Reads the whole body, refusing it as soon as it grows past `limit`.
async fn read_body(body: Body, limit: usize) -> Result<bytes::Bytes, Refusal> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(err) = source {
            if err.is::<http_body_util::LengthLimitError>() {
                return Refusal::TooLarge { limit };
            }
            source = err.source();
        }
        Refusal::Body(e.to_string())
    })
}

/// `Authorization: Bearer <token>`, compared in time independent of where they differ.
fn bearer_matches(header: Option<&HeaderValue>, expected: &[u8]) -> bool {
    let Some(value) = header.map(HeaderValue::as_bytes) else {
        return false;
    };
    let Some(space) = value.iter().position(|b| *b == b' ') else {
        return false;
    };
    let (scheme, token) = (&value[..space], value[space + 1..].trim_ascii());
    if !scheme.eq_ignore_ascii_case(b"bearer") || token.len() != expected.len() {
        return false;
    }
    token.iter().zip(expected).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_compare_exactly() {
        let h = |s: &'static str| HeaderValue::from_static(s);
        assert!(bearer_matches(Some(&h("Bearer s3cret")), b"s3cret"));
        assert!(bearer_matches(Some(&h("bearer s3cret")), b"s3cret"));
        assert!(!bearer_matches(Some(&h("Bearer s3cre")), b"s3cret"));
        assert!(!bearer_matches(Some(&h("Bearer s3cret2")), b"s3cret"));
        assert!(!bearer_matches(Some(&h("Basic s3cret")), b"s3cret"));
        assert!(!bearer_matches(Some(&h("s3cret")), b"s3cret"));
        assert!(!bearer_matches(None, b"s3cret"));
    }

    #[test]
    fn busy_answers_carry_retry_after_in_whole_seconds() {
        let r = Refusal::Busy { message: "queue full".into(), retry_after: Duration::from_millis(1500) }.into_response();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[RETRY_AFTER], "2");
        let r = Refusal::Busy { message: "queue full".into(), retry_after: Duration::ZERO }.into_response();
        assert_eq!(r.headers()[RETRY_AFTER], "1");
    }
}
