//! Receivers `clusterreport` and `clusterreport_gauges`: cluster reports after Kong's Kubernetes
//! telemetry library — workflows of jobs (platform, object counts, service meshes, process
//! state, fixed values, custom counts) run at start and every `interval` by the elected replica.
//! `clusterreport` emits each report as one OTLP log record, `clusterreport_gauges` one gauge
//! per count. This file only registers the factories; the job engine (`jobs`) and report
//! shapes (`report`) are public for `kausal report run`.

use std::sync::Arc;

use kausal_core::Consumer;
use kausal_core::component::{CreateContext, DataKind, Receiver, ReceiverFactory};
use kausal_core::config::{ComponentConfig, ConfigError};

pub mod cluster;
pub mod config;
pub mod jobs;
pub mod leader;
pub mod receiver;
pub mod report;

pub use config::Config;
pub use receiver::{ClusterReportReceiver, Output};

fn validate(config: &ComponentConfig) -> Result<(), ConfigError> {
    config.parse::<Config>()?.validate(config)
}

/// Factory of `clusterreport` receivers (reports as OTLP logs).
pub struct Factory;

impl ReceiverFactory for Factory {
    fn type_name(&self) -> &'static str {
        "clusterreport"
    }

    fn description(&self) -> &'static str {
        "cluster reports (platform, object counts, service meshes, custom counts) as one OTLP log record per report"
    }

    fn output(&self) -> DataKind {
        DataKind::Logs
    }

    fn validate(&self, config: &ComponentConfig) -> Result<(), ConfigError> {
        validate(config)
    }

    fn create(
        &self,
        ctx: CreateContext,
        config: &ComponentConfig,
        next: Arc<dyn Consumer>,
    ) -> Result<Arc<dyn Receiver>, ConfigError> {
        Ok(Arc::new(ClusterReportReceiver::new(
            ctx,
            config,
            next,
            Output::Logs,
        )?))
    }
}

/// Factory of `clusterreport_gauges` receivers (one gauge per count of each report).
pub struct GaugesFactory;

impl ReceiverFactory for GaugesFactory {
    fn type_name(&self) -> &'static str {
        "clusterreport_gauges"
    }

    fn description(&self) -> &'static str {
        "cluster reports as OTLP gauges, one per count (same settings as clusterreport)"
    }

    fn output(&self) -> DataKind {
        DataKind::Metrics
    }

    fn validate(&self, config: &ComponentConfig) -> Result<(), ConfigError> {
        validate(config)
    }

    fn create(
        &self,
        ctx: CreateContext,
        config: &ComponentConfig,
        next: Arc<dyn Consumer>,
    ) -> Result<Arc<dyn Receiver>, ConfigError> {
        Ok(Arc::new(ClusterReportReceiver::new(
            ctx,
            config,
            next,
            Output::Gauges,
        )?))
    }
}
