//! Receiver `kubeaudit`: kube-apiserver's audit webhook backend posts `audit.k8s.io` EventLists
//! here; each admitted event becomes one audit activity. This file only registers the factory;
//! the server, decoding, cluster resolution and filtering live in their own modules.

use std::sync::Arc;

use kausal_core::component::{CreateContext, DataKind, Receiver, ReceiverFactory};
use kausal_core::config::{ComponentConfig, ConfigError};
use kausal_core::Consumer;

pub mod cluster;
pub mod config;
pub mod decode;
pub mod filter;
pub mod server;
mod tls;

pub use config::Config;
pub use server::AuditReceiver;

/// Factory of `kubeaudit` receivers.
pub struct Factory;

impl ReceiverFactory for Factory {
    fn type_name(&self) -> &'static str {
        "kubeaudit"
    }

    fn description(&self) -> &'static str {
        "kube-apiserver audit webhook (HTTP/HTTPS): audit EventLists in, one activity per audit event out"
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
        Ok(Arc::new(AuditReceiver::new(ctx, config, next)?))
    }
}
