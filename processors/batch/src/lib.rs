//! Processor `batch`: merges small batches into larger ones by size and time, with the
//! OpenTelemetry Collector's keys (`send_batch_size`, `timeout`, `send_batch_max_size`).
//! This file registers the factory; the work is in `processor.rs` and `split.rs`.

use std::sync::Arc;

use kausal_core::Consumer;
use kausal_core::component::{CreateContext, DataKind, Processor, ProcessorFactory};
use kausal_core::config::{ComponentConfig, ConfigError};

pub mod config;
pub mod processor;
pub mod split;

pub use config::Config;
pub use processor::BatchProcessor;

pub struct Factory;

impl ProcessorFactory for Factory {
    fn type_name(&self) -> &'static str {
        "batch"
    }

    fn description(&self) -> &'static str {
        "merges batches by size and time (send_batch_size, timeout, send_batch_max_size)"
    }

    fn output(&self, input: DataKind) -> Option<DataKind> {
        Some(input)
    }

    fn validate(&self, config: &ComponentConfig) -> Result<(), ConfigError> {
        config.parse::<Config>()?.validate(config)
    }

    fn create(&self, ctx: CreateContext, config: &ComponentConfig, next: Arc<dyn Consumer>) -> Result<Arc<dyn Processor>, ConfigError> {
        let cfg: Config = config.parse()?;
        cfg.validate(config)?;
        Ok(Arc::new(BatchProcessor::new(ctx.id, cfg, next, ctx.metrics)))
    }
}
