//! Processor `diffjoiner`: attaches to each audited write the diff or snapshot its write
//! produced, as stored by `kubeobjects` in the cache. Writes whose change is not there yet
//! wait (bounded time and count) without holding back anything else. This file registers the
//! factory; decisions are in `join`, the waiting in `processor`.

use std::sync::Arc;

use kausal_core::component::{Consumer, CreateContext, DataKind, Processor, ProcessorFactory};
use kausal_core::config::{ComponentConfig, ConfigError};

pub mod config;
pub mod join;
pub mod processor;

pub use config::Config;

pub struct Factory;

impl ProcessorFactory for Factory {
    fn type_name(&self) -> &'static str {
        "diffjoiner"
    }

    fn description(&self) -> &'static str {
        "joins audited writes to the diffs and snapshots the watcher observed for them"
    }

    fn output(&self, input: DataKind) -> Option<DataKind> {
        (input == DataKind::Activities).then_some(DataKind::Activities)
    }

    fn validate(&self, config: &ComponentConfig) -> Result<(), ConfigError> {
        config.parse::<Config>()?.validate(config)
    }

    fn create(
        &self,
        ctx: CreateContext,
        config: &ComponentConfig,
        next: Arc<dyn Consumer>,
    ) -> Result<Arc<dyn Processor>, ConfigError> {
        let cfg: Config = config.parse()?;
        cfg.validate(config)?;
        Ok(Arc::new(processor::DiffJoiner::new(ctx, cfg, next)))
    }
}
