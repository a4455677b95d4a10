//! The receiver: a gRPC server (`TraceService/Export`) and an HTTP server (`POST /v1/traces`,
//! protobuf or JSON, gzip/zstd bodies), both handing spans to the pipeline as one batch per
//! request. Backpressure follows the OTLP specification: a retryable refusal becomes gRPC
//! RESOURCE_EXHAUSTED with RetryInfo (pipeline full) or UNAVAILABLE (shutting down), and HTTP
//! 429 or 503 with `Retry-After`; malformed data becomes INVALID_ARGUMENT / 400.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use kausal_core::component::{Batch, Component, ComponentError, ComponentId, Consumer, ConsumeError, CreateContext, Host, Receiver};
use kausal_core::config::{ComponentConfig, ConfigError};
use kausal_core::telemetry::ComponentMetrics;
use kausal_core::otlp_trace::ResourceSpans;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use tokio::net::TcpListener;
use tokio::sync::{Mutex, oneshot};
use tokio::task::JoinHandle;
use tonic::codec::CompressionEncoding;
use tonic::transport::{Certificate, Identity};
use tonic_types::StatusExt;

use crate::config::{Config, GrpcConfig, HttpConfig};

/// Retry-After sent when the pipeline gives no hint.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// What both servers share: where spans go, and the counts.
pub(crate) struct Shared {
    pub id: ComponentId,
    pub next: Arc<dyn Consumer>,
    pub metrics: ComponentMetrics,
}

impl Shared {
    /// Hands one request's spans downstream.
    pub async fn accept(&self, spans: Vec<ResourceSpans>) -> Result<(), ConsumeError> {
        let batch = Batch::Spans(spans);
        let n = batch.len() as u64;
        if n == 0 {
            return Ok(());
        }
        self.metrics.received.inc_by(n);
        match self.next.consume(batch).await {
            Ok(()) => {
                self.metrics.sent.inc_by(n);
                Ok(())
            }
            Err(e) => {
                // The client is told and may retry; nothing was kept here.
                self.metrics.failed.inc_by(n);
                Err(e)
            }
        }
    }
}

enum Lifecycle {
    Created,
    Running { stops: Vec<oneshot::Sender<()>>, tasks: Vec<JoinHandle<()>> },
    Stopped,
}

pub struct OtlpReceiver {
    shared: Arc<Shared>,
    grpc: Option<(GrpcConfig, Option<tonic::transport::ServerTlsConfig>)>,
    http: Option<(HttpConfig, Option<tokio_rustls::TlsAcceptor>)>,
    grpc_addr: OnceLock<SocketAddr>,
    http_addr: OnceLock<SocketAddr>,
    lifecycle: Mutex<Lifecycle>,
}

fn read(path: &std::path::Path, key: &str) -> Result<Vec<u8>, (String, String)> {
    std::fs::read(path).map_err(|e| (key.to_string(), format!("cannot read {}: {e}", path.display())))
}

impl OtlpReceiver {
    pub fn new(ctx: CreateContext, section: &ComponentConfig, next: Arc<dyn Consumer>) -> Result<Self, ConfigError> {
        let config: Config = section.parse()?;
        config.validate(section)?;
        let grpc = match config.protocols.grpc {
            None => None,
            Some(g) => {
                let tls = match &g.tls {
                    None => None,
                    Some(t) => {
                        let err = |(k, m): (String, String)| section.error(&format!("protocols.grpc.{k}"), m);
                        let cert = read(&t.cert_file, "tls.cert_file").map_err(err)?;
                        let key = read(&t.key_file, "tls.key_file").map_err(err)?;
                        let mut s = tonic::transport::ServerTlsConfig::new().identity(Identity::from_pem(cert, key));
                        if let Some(ca) = &t.client_ca_file {
                            s = s.client_ca_root(Certificate::from_pem(read(ca, "tls.client_ca_file").map_err(err)?));
                        }
                        Some(s)
                    }
                };
                Some((g, tls))
            }
        };
        let http = match config.protocols.http {
            None => None,
            Some(h) => {
                let tls = match &h.tls {
                    None => None,
                    Some(t) => Some(tokio_rustls::TlsAcceptor::from(
                        crate::tls::server_config(t).map_err(|(k, m)| section.error(&format!("protocols.http.{k}"), m))?,
                    )),
                };
                Some((h, tls))
            }
        };
        Ok(OtlpReceiver {
            shared: Arc::new(Shared { id: ctx.id, next, metrics: ctx.metrics }),
            grpc,
            http,
            grpc_addr: OnceLock::new(),
            http_addr: OnceLock::new(),
            lifecycle: Mutex::new(Lifecycle::Created),
        })
    }

    /// Where the gRPC server listens, once started (useful with port 0).
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.grpc_addr.get().copied()
    }

    /// Where the HTTP server listens, once started.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr.get().copied()
    }
}

struct GrpcService(Arc<Shared>);

#[tonic::async_trait]
impl TraceService for GrpcService {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        match self.0.accept(request.into_inner().resource_spans).await {
            Ok(()) => Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None })),
            Err(e) => Err(grpc_status(&e)),
        }
    }
}

/// The gRPC answer to a refusal.
pub fn grpc_status(e: &ConsumeError) -> tonic::Status {
    match e {
        ConsumeError::Retryable { message, retry_after: Some(after) } => tonic::Status::with_error_details(
            tonic::Code::ResourceExhausted,
            message.clone(),
            tonic_types::ErrorDetails::with_retry_info(Some(*after)),
        ),
        ConsumeError::Retryable { message, retry_after: None } => tonic::Status::with_error_details(
            tonic::Code::Unavailable,
            message.clone(),
            tonic_types::ErrorDetails::with_retry_info(Some(DEFAULT_RETRY_AFTER)),
        ),
        ConsumeError::Permanent { message } => tonic::Status::invalid_argument(message.clone()),
    }
}

#[async_trait]
impl Component for OtlpReceiver {
    async fn start(&self, _host: &Host) -> Result<(), ComponentError> {
        let mut lifecycle = self.lifecycle.lock().await;
        match *lifecycle {
            Lifecycle::Created => {}
            Lifecycle::Running { .. } => return Ok(()),
            Lifecycle::Stopped => return Err(ComponentError::new(&self.shared.id, "cannot start again after shutdown")),
        }
        let id = self.shared.id.clone();
        let bind = |endpoint: String| {
            let id = id.clone();
            async move {
                let l = TcpListener::bind(&endpoint)
                    .await
                    .map_err(|e| ComponentError::new(&id, format!("cannot listen on {endpoint}: {e}")))?;
                let a = l.local_addr().map_err(|e| ComponentError::new(&id, format!("{endpoint}: {e}")))?;
                Ok::<_, ComponentError>((l, a))
            }
        };
        let mut stops = Vec::new();
        let mut tasks = Vec::new();
        if let Some((g, tls)) = &self.grpc {
            let (listener, addr) = bind(g.endpoint.clone()).await?;
            let _ = self.grpc_addr.set(addr);
            let mut builder = tonic::transport::Server::builder();
            if let Some(t) = tls {
                builder = builder
                    .tls_config(t.clone())
                    .map_err(|e| ComponentError::new(&id, format!("gRPC TLS: {e}")))?;
            }
            let service = TraceServiceServer::new(GrpcService(self.shared.clone()))
                .accept_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Zstd)
                .send_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(g.max_recv_msg_size_mib.saturating_mul(1024 * 1024));
            let (stop, stopped) = oneshot::channel::<()>();
            let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
            let router = builder.add_service(service);
            let id2 = id.clone();
            tasks.push(tokio::spawn(async move {
                if let Err(e) = router
                    .serve_with_incoming_shutdown(incoming, async {
                        let _ = stopped.await;
                    })
                    .await
                {
                    tracing::error!(component = %id2, error = %e, "OTLP gRPC server failed");
                }
            }));
            stops.push(stop);
            tracing::info!(component = %id, address = %addr, tls = tls.is_some(), "OTLP gRPC listening");
        }
        if let Some((h, tls)) = &self.http {
            let (listener, addr) = bind(h.endpoint.clone()).await?;
            let _ = self.http_addr.set(addr);
            let router = crate::http::router(self.shared.clone(), h);
            let (stop, stopped) = oneshot::channel::<()>();
            tasks.push(tokio::spawn(crate::http::serve(listener, router, tls.clone(), stopped, id.clone())));
            stops.push(stop);
            tracing::info!(component = %id, address = %addr, tls = tls.is_some(), "OTLP HTTP listening");
        }
        *lifecycle = Lifecycle::Running { stops, tasks };
        Ok(())
    }

    async fn shutdown(&self) -> Result<(), ComponentError> {
        let mut lifecycle = self.lifecycle.lock().await;
        if let Lifecycle::Running { stops, tasks } = std::mem::replace(&mut *lifecycle, Lifecycle::Stopped) {
            for s in stops {
                let _ = s.send(());
            }
            for t in tasks {
                let _ = t.await;
            }
        }
        *lifecycle = Lifecycle::Stopped;
        Ok(())
    }
}

impl Receiver for OtlpReceiver {}
