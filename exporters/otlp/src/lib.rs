//! Exporter `otlp`: spans to any OTLP/gRPC endpoint (`TraceService/Export`), with the shared
//! sending queue, retries and grouping of `kausal-exporterhelper`. This file registers the
//! factory; the gRPC client and the status-code mapping live in `client.rs`.

use std::sync::Arc;

use kausal_core::component::{CreateContext, DataKind, Exporter, ExporterFactory};
use kausal_core::config::{ComponentConfig, ConfigError};
use kausal_exporterhelper::QueuedExporter;

pub mod client;
pub mod config;

pub use client::GrpcTransport;
pub use config::Config;

pub struct Factory;

impl ExporterFactory for Factory {
    fn type_name(&self) -> &'static str {
        "otlp"
    }

    fn description(&self) -> &'static str {
        "OTLP/gRPC exporter: spans to a collector or backend, with a sending queue (memory or disk) and retries"
    }

    fn accepts(&self, input: DataKind) -> bool {
        input == DataKind::Spans
    }

    fn validate(&self, config: &ComponentConfig) -> Result<(), ConfigError> {
        config.parse::<Config>()?.validate(config)
    }

    fn create(&self, ctx: CreateContext, config: &ComponentConfig) -> Result<Arc<dyn Exporter>, ConfigError> {
        let cfg: Config = config.parse()?;
        cfg.validate(config)?;
        let transport = GrpcTransport::new(&cfg).map_err(|(key, m)| config.error(&key, m))?;
        Ok(Arc::new(QueuedExporter::new(ctx.id, transport, cfg.helper(), ctx.metrics)))
    }
}
