//! Exporter `otlphttp`: spans to an OTLP/HTTP endpoint as protobuf or JSON, with the shared
//! sending queue, retries and grouping of `kausal-exporterhelper`. This file registers the
//! factory; the HTTP client and the status mapping live in `client.rs`.

use std::sync::Arc;

use kausal_core::component::{CreateContext, DataKind, Exporter, ExporterFactory};
use kausal_core::config::{ComponentConfig, ConfigError};
use kausal_exporterhelper::QueuedExporter;

pub mod client;
pub mod config;

pub use client::HttpTransport;
pub use config::Config;

pub struct Factory;

impl ExporterFactory for Factory {
    fn type_name(&self) -> &'static str {
        "otlphttp"
    }

    fn description(&self) -> &'static str {
        "OTLP/HTTP exporter (protobuf or JSON): spans to a collector or backend, with a sending queue and retries"
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
        let transport = HttpTransport::new(&cfg).map_err(|(key, m)| config.error(&key, m))?;
        Ok(Arc::new(QueuedExporter::new(ctx.id, transport, cfg.helper(), ctx.metrics)))
    }
}
