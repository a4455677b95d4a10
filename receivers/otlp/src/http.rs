//! OTLP/HTTP: `POST <traces_url_path>` with `application/x-protobuf` or `application/json`
//! bodies, optionally gzip- or zstd-encoded; the answer uses the request's content type. Body
//! limits apply before and after decompression. Served over HTTP/1.1 and HTTP/2, with TLS
//! when configured.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use kausal_core::component::{ComponentId, ConsumeError};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use prost::Message;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_rustls::TlsAcceptor;

use crate::config::HttpConfig;
use crate::receiver::{DEFAULT_RETRY_AFTER, Shared};

const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
struct HttpState {
    shared: Arc<Shared>,
    limit: usize,
}

pub(crate) fn router(shared: Arc<Shared>, config: &HttpConfig) -> Router {
    Router::new()
        .route(&config.traces_url_path, post(traces))
        .layer(DefaultBodyLimit::max(config.max_request_body_size))
        .with_state(HttpState { shared, limit: config.max_request_body_size })
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Format {
    Protobuf,
    Json,
}

/// `google.rpc.Status`, the body of OTLP/HTTP error answers.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

fn answer(format: Format, status: StatusCode, message: &str, retry_after: Option<Duration>) -> Response {
    // gRPC code numbers in the Status body: 3 INVALID_ARGUMENT, 8 RESOURCE_EXHAUSTED, 14 UNAVAILABLE.
    let code = match status {
        StatusCode::TOO_MANY_REQUESTS => 8,
        StatusCode::SERVICE_UNAVAILABLE => 14,
        _ => 3,
    };
    let (content_type, body) = match format {
        Format::Protobuf => (
            "application/x-protobuf",
            RpcStatus { code, message: message.to_string() }.encode_to_vec(),
        ),
        Format::Json => ("application/json", serde_json::json!({ "code": code, "message": message }).to_string().into_bytes()),
    };
    let mut r = (status, [(header::CONTENT_TYPE, content_type)], body).into_response();
    if let Some(after) = retry_after {
        let secs = after.as_secs_f64().ceil().max(1.0) as u64;
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    r
}

/// Decompresses `body` per `Content-Encoding`, refusing results larger than `limit`.
fn decode_body(headers: &HeaderMap, body: Bytes, limit: usize) -> Result<Vec<u8>, (StatusCode, String)> {
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let mut out = Vec::new();
    let too_large = || (StatusCode::PAYLOAD_TOO_LARGE, format!("decompressed body is larger than {limit} bytes"));
    let take = (limit as u64).saturating_add(1);
    match encoding.as_str() {
        "" | "identity" => return Ok(body.to_vec()),
        "gzip" | "x-gzip" => {
            flate2::read::GzDecoder::new(body.as_ref())
                .take(take)
                .read_to_end(&mut out)
                .map_err(|e| (StatusCode::BAD_REQUEST, format!("invalid gzip body: {e}")))?;
        }
        "zstd" => {
            let decoder = zstd::stream::read::Decoder::new(body.as_ref())
                .map_err(|e| (StatusCode::BAD_REQUEST, format!("invalid zstd body: {e}")))?;
            decoder
                .take(take)
                .read_to_end(&mut out)
                .map_err(|e| (StatusCode::BAD_REQUEST, format!("invalid zstd body: {e}")))?;
        }
        other => {
            return Err((StatusCode::UNSUPPORTED_MEDIA_TYPE, format!("unsupported Content-Encoding {other:?}; use gzip or zstd")));
        }
    }
    if out.len() > limit {
        return Err(too_large());
    }
    Ok(out)
}

async fn traces(State(state): State<HttpState>, headers: HeaderMap, body: Body) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let format = match content_type.as_str() {
        "application/x-protobuf" | "application/protobuf" => Format::Protobuf,
        "application/json" => Format::Json,
        other => {
            return answer(
                Format::Json,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                &format!("unsupported Content-Type {other:?}; use application/x-protobuf or application/json"),
                None,
            );
        }
    };
    let body = match axum::body::to_bytes(body, state.limit).await {
        Ok(b) => b,
        Err(_) => {
            return answer(format, StatusCode::PAYLOAD_TOO_LARGE, &format!("body is larger than {} bytes", state.limit), None);
        }
    };
    let raw = match decode_body(&headers, body, state.limit) {
        Ok(r) => r,
        Err((status, message)) => return answer(format, status, &message, None),
    };
    let request = match format {
        Format::Protobuf => ExportTraceServiceRequest::decode(raw.as_slice()).map_err(|e| e.to_string()),
        Format::Json => serde_json::from_slice::<ExportTraceServiceRequest>(&raw).map_err(|e| e.to_string()),
    };
    let request = match request {
        Ok(r) => r,
        Err(e) => return answer(format, StatusCode::BAD_REQUEST, &format!("invalid OTLP {format:?} body: {e}"), None),
    };
    match state.shared.accept(request.resource_spans).await {
        Ok(()) => {
            let response = ExportTraceServiceResponse { partial_success: None };
            match format {
                Format::Protobuf => {
                    ([(header::CONTENT_TYPE, "application/x-protobuf")], response.encode_to_vec()).into_response()
                }
                Format::Json => ([(header::CONTENT_TYPE, "application/json")], "{}").into_response(),
            }
        }
        Err(ConsumeError::Retryable { message, retry_after: Some(after) }) => {
            answer(format, StatusCode::TOO_MANY_REQUESTS, &message, Some(after))
        }
        Err(ConsumeError::Retryable { message, retry_after: None }) => {
            answer(format, StatusCode::SERVICE_UNAVAILABLE, &message, Some(DEFAULT_RETRY_AFTER))
        }
        Err(ConsumeError::Permanent { message }) => answer(format, StatusCode::BAD_REQUEST, &message, None),
    }
}

/// Accepts connections until `stop`, then lets in-flight requests finish.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<TlsAcceptor>,
    mut stop: oneshot::Receiver<()>,
    id: ComponentId,
) {
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new());
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(component = %id, error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let watcher = graceful.watcher();
        let service = TowerToHyperService::new(router.clone());
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

async fn handshake(acceptor: &TlsAcceptor, stream: TcpStream) -> Result<tokio_rustls::server::TlsStream<TcpStream>, String> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("not finished within {HANDSHAKE_TIMEOUT:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressed_bodies_are_limited_after_decompression() {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut enc, &vec![b'a'; 10_000]).unwrap();
        let gz = Bytes::from(enc.finish().unwrap());
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        assert_eq!(decode_body(&h, gz.clone(), 10_000).unwrap().len(), 10_000);
        assert_eq!(decode_body(&h, gz, 9_999).unwrap_err().0, StatusCode::PAYLOAD_TOO_LARGE);
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("br"));
        assert_eq!(decode_body(&h, Bytes::from_static(b"x"), 10).unwrap_err().0, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
}
