//! Processor `memory_limiter`: refuses data (retryable, so sources are pushed back) while the
//! process's memory is above a soft limit, with the collector's keys. Put it first in a
//! pipeline. This file registers the factory; the work is in `processor.rs`.

use std::sync::Arc;

use kausal_core::Consumer;
use kausal_core::component::{CreateContext, DataKind, Processor, ProcessorFactory};
use kausal_core::config::{ComponentConfig, ConfigError};

pub mod config;
pub mod memory;
pub mod processor;

pub use config::Config;
pub use processor::MemoryLimiter;

pub struct Factory;

impl ProcessorFactory for Factory {
    fn type_name(&self) -> &'static str {
        "memory_limiter"
    }

    fn description(&self) -> &'static str {
        "refuses data (retryable) while process memory is above limit_mib/limit_percentage minus the spike limit"
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
        let limits = cfg.limits(memory::total_bytes()).map_err(|(k, m)| config.error(k, m))?;
        Ok(Arc::new(MemoryLimiter::new(ctx.id, cfg, limits, next, ctx.metrics, Arc::new(memory::resident_bytes))))
    }
}
