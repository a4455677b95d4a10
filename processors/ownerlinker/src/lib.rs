//! Processor `ownerlinker`: links each object to its controller owner, read from the
//! ownerReferences of the audit request/response bodies, and remembers owners in a bounded
//! index so later activities of the same object (e.g. Metadata-level ones) link without a body.

mod config;
mod linker;
pub mod watched;

use std::sync::Arc;

use async_trait::async_trait;
use kausal_core::cache::{Cache, process_memory_cache};
use kausal_core::changes;
use kausal_core::component::{
    Batch, Component, ComponentError, ComponentId, ConsumeError, Consumer, CreateContext, DataKind, Host, Processor,
    ProcessorFactory,
};
use kausal_core::config::{ComponentConfig, ConfigError};
use kausal_core::telemetry::ComponentMetrics;

pub use config::OwnerLinkerConfig;
pub use linker::OwnerLinker;

pub struct Factory;

impl ProcessorFactory for Factory {
    fn type_name(&self) -> &'static str {
        "ownerlinker"
    }

    fn description(&self) -> &'static str {
        "links objects to their controller owner from ownerReferences in audit bodies"
    }

    fn output(&self, input: DataKind) -> Option<DataKind> {
        (input == DataKind::Activities).then_some(DataKind::Activities)
    }

    fn validate(&self, config: &ComponentConfig) -> Result<(), ConfigError> {
        config.parse::<OwnerLinkerConfig>()?.validate(config)
    }

    fn create(
        &self,
        ctx: CreateContext,
        config: &ComponentConfig,
        next: Arc<dyn Consumer>,
    ) -> Result<Arc<dyn Processor>, ConfigError> {
        let cfg: OwnerLinkerConfig = config.parse()?;
        cfg.validate(config)?;
        Ok(Arc::new(OwnerLinkerProcessor {
            linker: std::sync::Mutex::new(OwnerLinker::new(cfg.max_objects)),
            cache_id: cfg.cache.clone(),
            cache: std::sync::OnceLock::new(),
            next,
            metrics: ctx.metrics,
        }))
    }
}

struct OwnerLinkerProcessor {
    linker: std::sync::Mutex<OwnerLinker>,
    /// Where the watcher keeps each object's owner (`kubeobjects`); absent: process memory.
    cache_id: Option<String>,
    cache: std::sync::OnceLock<Arc<dyn Cache>>,
    next: Arc<dyn Consumer>,
    metrics: ComponentMetrics,
}

#[async_trait]
impl Component for OwnerLinkerProcessor {
    async fn start(&self, host: &Host) -> Result<(), ComponentError> {
        let cache = match &self.cache_id {
            Some(id) => {
                let id = ComponentId::parse(id).map_err(|m| ComponentError::new("ownerlinker", m))?;
                host.cache(&id).map_err(|m| ComponentError::new("ownerlinker", m))?
            }
            None => process_memory_cache(),
        };
        let _ = self.cache.set(cache);
        Ok(())
    }
}
impl Processor for OwnerLinkerProcessor {}

#[async_trait]
impl Consumer for OwnerLinkerProcessor {
    async fn consume(&self, mut batch: Batch) -> Result<(), ConsumeError> {
        self.metrics.received.inc_by(batch.len() as u64);
        if let Batch::Activities(activities) = &mut batch {
            {
                let mut linker = self.linker.lock().unwrap_or_else(|p| p.into_inner());
                for a in activities.iter_mut() {
                    linker.link(a);
                }
            }
            // What bodies did not tell, the watcher's record may.
            let cache = self.cache.get().cloned().unwrap_or_else(process_memory_cache);
            for a in activities.iter_mut().filter(|a| watched::lacks_owner(a)) {
                if let Ok(Some(entry)) = cache.get(&changes::key_of_meta(&a.object.key)).await
                    && let Ok(meta) = serde_json::from_slice::<changes::ObjectMeta>(&entry.value)
                    && let Some(link) = watched::owner_link(&a.object.key, &meta)
                {
                    a.links.push(link);
                }
            }
        }
        let n = batch.len() as u64;
        self.next.consume(batch).await?;
        self.metrics.sent.inc_by(n);
        Ok(())
    }
}
