//! Receiver `otlp`: OTLP traces in over gRPC (4317) and HTTP (4318, protobuf and JSON), from
//! other collectors, SDKs, or kube-apiserver's own tracing. Spans go into the pipeline as they
//! are. This file registers the factory; the servers live in `receiver.rs` and `http.rs`.

use std::sync::Arc;

use kausal_core::Consumer;
use kausal_core::component::{CreateContext, DataKind, Receiver, ReceiverFactory};
use kausal_core::config::{ComponentConfig, ConfigError};

pub mod config;
mod http;
pub mod receiver;
mod tls;

pub use config::Config;
pub use receiver::OtlpReceiver;

pub struct Factory;

impl ReceiverFactory for Factory {
    fn type_name(&self) -> &'static str {
        "otlp"
    }

    fn description(&self) -> &'static str {
        "OTLP receiver: spans over gRPC (4317) and HTTP (4318, protobuf or JSON), with TLS, body limits and backpressure"
    }

    fn output(&self) -> DataKind {
        DataKind::Spans
    }

    fn validate(&self, config: &ComponentConfig) -> Result<(), ConfigError> {
        config.parse::<Config>()?.validate(config)
    }

    fn create(
        &self,
        ctx: CreateContext,
        config: &ComponentConfig,
        next: Arc<dyn Consumer>,
    ) -> Result<Arc<dyn Receiver>, ConfigError> {
        Ok(Arc::new(OtlpReceiver::new(ctx, config, next)?))
    }
}
