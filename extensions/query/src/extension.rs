//! The component around the query API: opens the store, binds the endpoint in `start`, serves
//! until `shutdown` (graceful: requests in flight finish).

use std::any::Any;
use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use kausal_core::component::{Component, ComponentError, CreateContext, Extension, ExtensionFactory, Host};
use kausal_core::config::{ComponentConfig, ConfigError};
use kausal_store::{Store, StoreOptions};
use tokio::sync::{Mutex, oneshot};
use tokio::task::JoinHandle;

use crate::config::QueryConfig;

pub struct Factory;

impl ExtensionFactory for Factory {
    fn type_name(&self) -> &'static str {
        "query"
    }

    fn description(&self) -> &'static str {
        "serves the span store over the Jaeger-compatible HTTP query API, Jaeger's gRPC QueryService and Jaeger v2's remote storage API"
    }

    fn validate(&self, config: &ComponentConfig) -> Result<(), ConfigError> {
        config.parse::<QueryConfig>()?.validate(config)
    }

    fn create(&self, ctx: CreateContext, config: &ComponentConfig) -> Result<Arc<dyn Extension>, ConfigError> {
        let cfg: QueryConfig = config.parse()?;
        cfg.validate(config)?;
        Ok(Arc::new(QueryExtension {
            id: ctx.id.to_string(),
            config: cfg,
            running: Mutex::new(None),
            local_addr: std::sync::Mutex::new(None),
            grpc_addr: std::sync::Mutex::new(None),
        }))
    }
}

struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
    grpc_stop: oneshot::Sender<()>,
    grpc_task: JoinHandle<()>,
}

pub struct QueryExtension {
    id: String,
    config: QueryConfig,
    running: Mutex<Option<Running>>,
    local_addr: std::sync::Mutex<Option<SocketAddr>>,
    grpc_addr: std::sync::Mutex<Option<SocketAddr>>,
}

impl QueryExtension {
    /// The gRPC address actually bound, once started (useful with port 0).
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        *self.grpc_addr.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The address actually bound, once started (useful with port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        *self.local_addr.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl Component for QueryExtension {
    async fn start(&self, _host: &Host) -> Result<(), ComponentError> {
        let mut running = self.running.lock().await;
        if running.is_some() {
            return Ok(());
        }
        let dir = self.config.directory.clone();
        // Shares the handle with a `spanstore` exporter on the same directory in this process.
        let store = tokio::task::spawn_blocking(move || Store::open(&dir, StoreOptions::default()))
            .await
            .map_err(|e| ComponentError::new(&self.id, e))?
            .map_err(|e| ComponentError::new(&self.id, format!("cannot open store in {}: {e}", self.config.directory.display())))?;
        let listener = tokio::net::TcpListener::bind(&self.config.endpoint)
            .await
            .map_err(|e| ComponentError::new(&self.id, format!("cannot listen on {}: {e}", self.config.endpoint)))?;
        let addr = listener.local_addr().map_err(|e| ComponentError::new(&self.id, e))?;
        let grpc_endpoint = self.config.grpc_endpoint.as_deref().unwrap_or(crate::config::DEFAULT_GRPC_ENDPOINT);
        let grpc_listener = match tokio::net::TcpListener::bind(grpc_endpoint).await {
            Ok(listener) => Some(listener),
            Err(e) if self.config.grpc_endpoint.is_none() => {
                tracing::error!(
                    extension = %self.id, address = grpc_endpoint, error = %e,
                    "cannot listen on the default gRPC address; the gRPC APIs are off (set grpc_endpoint to require them)"
                );
                None
            }
            Err(e) => return Err(ComponentError::new(&self.id, format!("cannot listen on {grpc_endpoint} (grpc_endpoint): {e}"))),
        };
        let grpc_addr = grpc_listener.as_ref().map(|l| l.local_addr()).transpose().map_err(|e| ComponentError::new(&self.id, e))?;
        *self.local_addr.lock().unwrap_or_else(|p| p.into_inner()) = Some(addr);
        *self.grpc_addr.lock().unwrap_or_else(|p| p.into_inner()) = grpc_addr;
        let (grpc_stop, grpc_stopped) = oneshot::channel::<()>();
        let grpc_task = match grpc_listener {
            Some(listener) => {
                let reader = Arc::new(crate::reader::Reader::new(store.clone(), self.config.options()));
                let id = self.id.clone();
                tokio::spawn(async move {
                    let served = tonic::transport::Server::builder()
                        .add_service(kausal_proto::jaeger::api_v2::query_service_server::QueryServiceServer::new(
                            crate::grpc::QueryService::new(reader.clone()),
                        ))
                        .add_service(kausal_proto::jaeger::storage::v2::trace_reader_server::TraceReaderServer::new(
                            crate::grpc::TraceReader::new(reader),
                        ))
                        .serve_with_incoming_shutdown(tonic::transport::server::TcpIncoming::from(listener), async {
                            let _ = grpc_stopped.await;
                        })
                        .await;
                    if let Err(e) = served {
                        tracing::error!(extension = %id, error = %e, "query gRPC server stopped");
                    }
                })
            }
            None => tokio::spawn(async {}),
        };
        let app = crate::api::router(store, self.config.options());
        let (stop, stopped) = oneshot::channel::<()>();
        let id = self.id.clone();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!(extension = %id, error = %e, "query server stopped");
            }
        });
        tracing::info!(extension = %self.id, address = %addr, grpc_address = ?grpc_addr, "query API listening");
        *running = Some(Running { stop, task, grpc_stop, grpc_task });
        Ok(())
    }

    async fn shutdown(&self) -> Result<(), ComponentError> {
        if let Some(r) = self.running.lock().await.take() {
            let _ = r.stop.send(());
            let _ = r.grpc_stop.send(());
            let _ = r.task.await;
            let _ = r.grpc_task.await;
        }
        Ok(())
    }
}

impl Extension for QueryExtension {
    fn as_any(&self) -> &dyn Any {
        self
    }
}
