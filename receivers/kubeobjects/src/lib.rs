//! Receiver `kubeobjects`: watches a cluster's objects and turns every change into a change
//! activity (a JSON-path diff, or a creation/deletion snapshot) that is also stored in the
//! cache by (object, resourceVersion) for `diffjoiner`. This file only registers the factory.

use std::sync::Arc;

use kausal_core::Consumer;
use kausal_core::component::{CreateContext, DataKind, Receiver, ReceiverFactory};
use kausal_core::config::{ComponentConfig, ConfigError};

pub mod config;
pub mod diff;
pub mod receiver;
pub mod tracker;

pub use config::Config;

pub struct Factory;

impl ReceiverFactory for Factory {
    fn type_name(&self) -> &'static str {
        "kubeobjects"
    }

    fn description(&self) -> &'static str {
        "watches cluster objects (built-ins and CRDs): diffs and snapshots as activities and in the cache"
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
        Ok(Arc::new(receiver::ObjectsReceiver::new(ctx, config, next)?))
    }
}
