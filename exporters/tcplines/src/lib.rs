//! Exporter `tcplines`: each log record (a cluster report) as one line
//! `<14>signal=<signal>;key=value;…;` over a fresh TLS connection to a raw TCP endpoint — the
//! wire format of Kong's telemetry reports. TLS only, 1.3 unless configured otherwise. This file
//! only registers the factory.

use std::sync::Arc;

use kausal_core::component::{CreateContext, DataKind, Exporter, ExporterFactory};
use kausal_core::config::{ComponentConfig, ConfigError};

pub mod config;
pub mod exporter;
pub mod line;
mod tls;

pub use config::Config;
pub use exporter::LinesExporter;

/// Factory of `tcplines` exporters.
pub struct Factory;

impl ExporterFactory for Factory {
    fn type_name(&self) -> &'static str {
        "tcplines"
    }

    fn description(&self) -> &'static str {
        "TLS raw TCP: one `<14>signal=…;k=v;…` line per log record (cluster report), a new connection each"
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
        let exporter = LinesExporter::new(ctx.id.to_string(), parsed, ctx.metrics)
            .map_err(|e| config.error(e.key, e.message))?;
        Ok(Arc::new(exporter))
    }
}
