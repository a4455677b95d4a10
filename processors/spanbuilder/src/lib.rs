//! Processor `spanbuilder`: turns activities into spans. Each object gets one span per time
//! window (deterministic IDs, so replicas agree without talking); each activity becomes a child
//! span of its object's span; links are recorded on both objects. Spans pass through untouched.

mod build;
mod config;

use std::sync::Arc;

use async_trait::async_trait;
use kausal_core::component::{
    Batch, Component, ConsumeError, Consumer, CreateContext, DataKind, Processor, ProcessorFactory,
};
use kausal_core::config::{ComponentConfig, ConfigError};
use kausal_core::telemetry::ComponentMetrics;

pub use build::SpanBuilder;
pub use config::SpanBuilderConfig;

pub struct Factory;

impl ProcessorFactory for Factory {
    fn type_name(&self) -> &'static str {
        "spanbuilder"
    }

    fn description(&self) -> &'static str {
        "turns activities into object spans per time window with activity spans beneath them"
    }

    fn output(&self, _input: DataKind) -> Option<DataKind> {
        Some(DataKind::Spans)
    }

    fn validate(&self, config: &ComponentConfig) -> Result<(), ConfigError> {
        config.parse::<SpanBuilderConfig>()?.validate(config)
    }

    fn create(
        &self,
        ctx: CreateContext,
        config: &ComponentConfig,
        next: Arc<dyn Consumer>,
    ) -> Result<Arc<dyn Processor>, ConfigError> {
        let cfg: SpanBuilderConfig = config.parse()?;
        cfg.validate(config)?;
        Ok(Arc::new(SpanBuilderProcessor {
            builder: std::sync::Mutex::new(SpanBuilder::new(&cfg)),
            next,
            metrics: ctx.metrics,
        }))
    }
}

struct SpanBuilderProcessor {
    builder: std::sync::Mutex<SpanBuilder>,
    next: Arc<dyn Consumer>,
    metrics: ComponentMetrics,
}

impl Component for SpanBuilderProcessor {}
impl Processor for SpanBuilderProcessor {}

#[async_trait]
impl Consumer for SpanBuilderProcessor {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        self.metrics.received.inc_by(batch.len() as u64);
        let (out, emitted) = match batch {
            Batch::Activities(mut activities) => {
                // Requests about collections (list, watch, deletecollection) and creates whose
                // name the audit level did not reveal name no object: there is no span to hang
                // them under.
                let before = activities.len();
                activities.retain(|a| !a.object.key.name.is_empty());
                let nameless = before - activities.len();
                if nameless > 0 {
                    self.metrics.dropped.inc_by(nameless as u64);
                    tracing::debug!(nameless, "activities without an object name dropped");
                }
                let mut builder = self.builder.lock().unwrap_or_else(|p| p.into_inner());
                let (spans, emitted) = builder.build(&activities);
                (Batch::Spans(spans), Some(emitted))
            }
            other => (other, None),
        };
        let n = out.len() as u64;
        if n > 0 {
            // Only once downstream has the object spans may the builder stop re-emitting them;
            // a refused batch comes back as a retry and must produce them again.
            self.next.consume(out).await?;
        }
        if let Some(emitted) = emitted {
            self.builder.lock().unwrap_or_else(|p| p.into_inner()).remember(emitted);
        }
        self.metrics.sent.inc_by(n);
        Ok(())
    }
}
