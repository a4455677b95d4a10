//! Exporter `jaeger`: spans to a Jaeger collector over its gRPC API
//! (`jaeger.api_v2.CollectorService/PostSpans`) in the Jaeger model, with the shared sending
//! queue, retries and grouping. This file registers the factory; conversion is in `model.rs`,
//! the client in `client.rs`.

use std::sync::Arc;

use kausal_core::component::{CreateContext, DataKind, Exporter, ExporterFactory};
use kausal_core::config::{ComponentConfig, ConfigError};
use kausal_exporterhelper::QueuedExporter;

pub mod client;
pub mod config;
pub mod model;

pub use client::JaegerTransport;
pub use config::Config;

pub struct Factory;

impl ExporterFactory for Factory {
    fn type_name(&self) -> &'static str {
        "jaeger"
    }

    fn description(&self) -> &'static str {
        "Jaeger gRPC exporter (CollectorService/PostSpans, Jaeger model), with a sending queue and retries"
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
        let transport = JaegerTransport::new(&cfg).map_err(|(k, m)| config.error(&k, m))?;
        Ok(Arc::new(QueuedExporter::new(ctx.id, transport, cfg.helper(), ctx.metrics)))
    }
}
