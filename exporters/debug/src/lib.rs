//! Exporter `debug`: prints what reaches it, at the OpenTelemetry Collector's verbosity levels
//! (`basic`: counts; `normal`: one line per span or activity; `detailed`: every attribute,
//! link and event). For looking at a pipeline, not for keeping data.

mod format;

use std::io::Write;
use std::sync::Arc;

use async_trait::async_trait;
use kausal_core::component::{
    Batch, Component, ConsumeError, Consumer, CreateContext, DataKind, Exporter, ExporterFactory,
};
use kausal_core::config::{ComponentConfig, ConfigError};
use kausal_core::telemetry::ComponentMetrics;
use serde::Deserialize;

pub use format::{render, Verbosity};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DebugConfig {
    #[serde(default)]
    pub verbosity: Verbosity,
}

pub struct Factory;

impl ExporterFactory for Factory {
    fn type_name(&self) -> &'static str {
        "debug"
    }

    fn description(&self) -> &'static str {
        "prints spans or activities to standard output at basic, normal or detailed verbosity"
    }

    fn accepts(&self, _input: DataKind) -> bool {
        true
    }

    fn validate(&self, config: &ComponentConfig) -> Result<(), ConfigError> {
        config.parse::<DebugConfig>().map(|_| ())
    }

    fn create(&self, ctx: CreateContext, config: &ComponentConfig) -> Result<Arc<dyn Exporter>, ConfigError> {
        let cfg: DebugConfig = config.parse()?;
        Ok(Arc::new(DebugExporter { verbosity: cfg.verbosity, metrics: ctx.metrics }))
    }
}

struct DebugExporter {
    verbosity: Verbosity,
    metrics: ComponentMetrics,
}

impl Component for DebugExporter {}
impl Exporter for DebugExporter {}

#[async_trait]
impl Consumer for DebugExporter {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        let n = batch.len() as u64;
        self.metrics.received.inc_by(n);
        let text = render(&batch, self.verbosity);
        let mut out = std::io::stdout().lock();
        if let Err(e) = out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
            self.metrics.failed.inc_by(n);
            return Err(ConsumeError::retryable(format!("cannot write to standard output: {e}")));
        }
        self.metrics.sent.inc_by(n);
        Ok(())
    }
}
