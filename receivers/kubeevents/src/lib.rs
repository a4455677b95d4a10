//! Receiver `kubeevents`: watches Kubernetes Events (core/v1 or events.k8s.io/v1) and emits
//! each occurrence exactly once, across restarts, relists and leader changes, by remembering
//! handled occurrences and a watermark in the cache. This file only registers the factory.

use std::sync::Arc;

use kausal_core::Consumer;
use kausal_core::component::{CreateContext, DataKind, Receiver, ReceiverFactory};
use kausal_core::config::{ComponentConfig, ConfigError};

pub mod config;
pub mod event;
pub mod receiver;

pub use config::Config;

pub struct Factory;

impl ReceiverFactory for Factory {
    fn type_name(&self) -> &'static str {
        "kubeevents"
    }

    fn description(&self) -> &'static str {
        "watches Kubernetes Events; one activity per occurrence, deduplicated through the cache"
    }

    fn output(&self) -> DataKind {
        DataKind::Activities
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
        Ok(Arc::new(receiver::EventsReceiver::new(ctx, config, next)?))
    }
}
