//! Processor `ownerlinker`: links each object to its controller owner, read from the
//! ownerReferences of the audit request/response bodies, and remembers owners in a bounded
//! index so later activities of the same object (e.g. Metadata-level ones) link without a body.

mod config;
mod linker;

use std::sync::Arc;

use async_trait::async_trait;
use kausal_core::component::{
    Batch, Component, ConsumeError, Consumer, CreateContext, DataKind, Processor, ProcessorFactory,
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
            next,
            metrics: ctx.metrics,
        }))
    }
}

struct OwnerLinkerProcessor {
    linker: std::sync::Mutex<OwnerLinker>,
    next: Arc<dyn Consumer>,
    metrics: ComponentMetrics,
}

impl Component for OwnerLinkerProcessor {}
impl Processor for OwnerLinkerProcessor {}

#[async_trait]
impl Consumer for OwnerLinkerProcessor {
    async fn consume(&self, mut batch: Batch) -> Result<(), ConsumeError> {
        self.metrics.received.inc_by(batch.len() as u64);
        if let Batch::Activities(activities) = &mut batch {
            let mut linker = self.linker.lock().unwrap_or_else(|p| p.into_inner());
            for a in activities.iter_mut() {
                linker.link(a);
            }
        }
        let n = batch.len() as u64;
        self.next.consume(batch).await?;
        self.metrics.sent.inc_by(n);
        Ok(())
    }
}
