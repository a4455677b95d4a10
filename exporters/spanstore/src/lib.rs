//! Exporter `spanstore`: writes spans into kausal's embedded on-disk store, which the `query`
//! extension reads. Batches are gathered into group commits (one transaction for whatever
//! arrived while the previous one was being written), and old windows are deleted on a timer.

mod config;
mod writer;

use std::sync::Arc;

use kausal_core::component::{DataKind, Exporter, ExporterFactory, CreateContext};
use kausal_core::config::{ComponentConfig, ConfigError};

pub use config::SpanStoreConfig;
pub use writer::SpanStoreExporter;

pub struct Factory;

impl ExporterFactory for Factory {
    fn type_name(&self) -> &'static str {
        "spanstore"
    }

    fn description(&self) -> &'static str {
        "writes spans to the embedded on-disk span store served by the query extension"
    }

    fn accepts(&self, input: DataKind) -> bool {
        input == DataKind::Spans
    }

    fn validate(&self, config: &ComponentConfig) -> Result<(), ConfigError> {
        config.parse::<SpanStoreConfig>()?.validate(config)
    }

    fn create(&self, ctx: CreateContext, config: &ComponentConfig) -> Result<Arc<dyn Exporter>, ConfigError> {
        let cfg: SpanStoreConfig = config.parse()?;
        cfg.validate(config)?;
        Ok(Arc::new(SpanStoreExporter::new(ctx.id.to_string(), cfg, ctx.metrics)))
    }
}
