//! Exporter `splunk_hec`: log records — kausal's cluster reports — to a Splunk HTTP Event
//! Collector, one HEC event per record (`{"time", "host", "source", "sourcetype", "index",
//! "event"}`), several events per request, with `Authorization: Splunk <token>` and retries
//! with backoff. This file only registers the factory.

use std::sync::Arc;

use kausal_core::component::{CreateContext, DataKind, Exporter, ExporterFactory};
use kausal_core::config::{ComponentConfig, ConfigError};

pub mod config;
pub mod event;
pub mod exporter;

pub use config::Config;
pub use exporter::HecExporter;

/// Factory of `splunk_hec` exporters.
pub struct Factory;

impl ExporterFactory for Factory {
    fn type_name(&self) -> &'static str {
        "splunk_hec"
    }

    fn description(&self) -> &'static str {
        "Splunk HTTP Event Collector: one HEC event per log record (cluster reports), batched, retried"
    }

    fn accepts(&self, input: DataKind) -> bool {
        input == DataKind::Logs
    }

    fn validate(&self, config: &ComponentConfig) -> Result<(), ConfigError> {
        config.parse::<Config>()?.validate(config)
    }

    fn create(
        &self,
        ctx: CreateContext,
        config: &ComponentConfig,
    ) -> Result<Arc<dyn Exporter>, ConfigError> {
        let parsed: Config = config.parse()?;
        parsed.validate(config)?;
        let exporter = HecExporter::new(ctx.id.to_string(), parsed, ctx.metrics)
            .map_err(|e| config.error(e.key(), e.to_string()))?;
        Ok(Arc::new(exporter))
    }
}
