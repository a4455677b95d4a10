//! The `raftcache` extension component: starts the node (log store, transport, driver) and its
//! admin API in `start`, offers the replicated cache through the host, stops in `shutdown`.

use std::any::Any;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use kausal_core::cache::Cache;
use kausal_core::component::{Component, ComponentError, CreateContext, Extension, ExtensionFactory, Host};
use kausal_core::config::{ComponentConfig, ConfigError};
use tokio::sync::oneshot;

use crate::cache::RaftCache;
use crate::config::RaftCacheConfig;
use crate::metrics::Metrics;
use crate::node::{Input, NodeHandle, RunningNode};

pub struct Factory;

impl ExtensionFactory for Factory {
    fn type_name(&self) -> &'static str {
        "raftcache"
    }

    fn description(&self) -> &'static str {
        "replicated cache on multi-Raft shared by HA replicas (admin API for members and shard leaders)"
    }

    fn validate(&self, config: &ComponentConfig) -> Result<(), ConfigError> {
        config.parse::<RaftCacheConfig>()?.validate(config)
    }

    fn create(&self, ctx: CreateContext, config: &ComponentConfig) -> Result<Arc<dyn Extension>, ConfigError> {
        let cfg: RaftCacheConfig = config.parse()?;
        cfg.validate(config)?;
        let metrics = Metrics::new();
        ctx.telemetry.with_registry(|r| metrics.register(r));
        let (handle, rx) = crate::node::handle(&cfg);
        let cache: Arc<dyn Cache> = Arc::new(RaftCache::new(handle.clone()));
        Ok(Arc::new(RaftCacheExtension {
            id: ctx.id.to_string(),
            config: cfg,
            metrics,
            handle,
            cache,
            pending_rx: Mutex::new(Some(rx)),
            running: tokio::sync::Mutex::new(None),
        }))
    }
}

struct Running {
    node: RunningNode,
    stop_admin: oneshot::Sender<()>,
    admin: tokio::task::JoinHandle<()>,
}

pub struct RaftCacheExtension {
    id: String,
    config: RaftCacheConfig,
    metrics: Metrics,
    handle: NodeHandle,
    cache: Arc<dyn Cache>,
    pending_rx: Mutex<Option<std::sync::mpsc::Receiver<Input>>>,
    running: tokio::sync::Mutex<Option<Running>>,
}

#[async_trait]
impl Component for RaftCacheExtension {
    async fn start(&self, _host: &Host) -> Result<(), ComponentError> {
        let mut running = self.running.lock().await;
        if running.is_some() {
            return Ok(());
        }
        let Some(rx) = self.pending_rx.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return Err(ComponentError::new(&self.id, "cannot start again after shutdown"));
        };
        let listener = tokio::net::TcpListener::bind(&self.config.admin_endpoint)
            .await
            .map_err(|e| ComponentError::new(&self.id, format!("cannot listen on {}: {e}", self.config.admin_endpoint)))?;
        let node = crate::node::start(&self.config, self.metrics.clone(), self.handle.clone(), rx)
            .await
            .map_err(|e| ComponentError::new(&self.id, e))?;
        let app = crate::admin::router(self.handle.clone(), self.cache.clone());
        let (stop_admin, stopped) = oneshot::channel::<()>();
        let id = self.id.clone();
        let admin = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!(extension = %id, error = %e, "raftcache admin API stopped");
            }
        });
        tracing::info!(
            extension = %self.id,
            node_id = self.config.node_id,
            raft = %self.config.listen,
            admin = %self.config.admin_endpoint,
            "raftcache node started"
        );
        *running = Some(Running { node, stop_admin, admin });
        Ok(())
    }

    async fn shutdown(&self) -> Result<(), ComponentError> {
        if let Some(r) = self.running.lock().await.take() {
            let _ = r.stop_admin.send(());
            let _ = r.admin.await;
            r.node.stop().await;
        }
        Ok(())
    }
}

impl Extension for RaftCacheExtension {
    fn cache(&self) -> Option<Arc<dyn Cache>> {
        Some(self.cache.clone())
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
