//! The component contract, after the OpenTelemetry Collector's: receivers, processors, exporters
//! and extensions, built by factories from their own config section. `start` returns quickly and
//! leaves long work to tasks the component owns; `shutdown` is idempotent, safe without `start`,
//! stops accepting data and flushes what the component holds downstream. Data moves by
//! `consume(batch)`, whose error says whether retrying can help.

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::activity::Activity;
use crate::cache::Cache;
use crate::config::{ComponentConfig, ConfigError};
use crate::otlp_logs::ResourceLogs;
use crate::otlp_metrics::ResourceMetrics;
use crate::otlp_trace::ResourceSpans;
use crate::telemetry::{ComponentMetrics, Telemetry};

/// What travels through a pipeline: activities until the span builder, spans after it; logs
/// and metrics for components that report rather than trace (cluster reports).
#[derive(Clone, Debug)]
pub enum Batch {
    Activities(Vec<Activity>),
    Spans(Vec<ResourceSpans>),
    Logs(Vec<ResourceLogs>),
    Metrics(Vec<ResourceMetrics>),
}

impl Batch {
    /// Number of items: activities, or spans / log records / metrics summed over resources and
    /// scopes.
    pub fn len(&self) -> usize {
        match self {
            Batch::Activities(a) => a.len(),
            Batch::Spans(r) => r.iter().flat_map(|r| &r.scope_spans).map(|s| s.spans.len()).sum(),
            Batch::Logs(r) => r.iter().flat_map(|r| &r.scope_logs).map(|s| s.log_records.len()).sum(),
            Batch::Metrics(r) => r.iter().flat_map(|r| &r.scope_metrics).map(|s| s.metrics.len()).sum(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn kind(&self) -> DataKind {
        match self {
            Batch::Activities(_) => DataKind::Activities,
            Batch::Spans(_) => DataKind::Spans,
            Batch::Logs(_) => DataKind::Logs,
            Batch::Metrics(_) => DataKind::Metrics,
        }
    }
}

/// The kinds of data a pipeline can carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum DataKind {
    Activities,
    Spans,
    Logs,
    Metrics,
}

impl fmt::Display for DataKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DataKind::Activities => "activities",
            DataKind::Spans => "spans",
            DataKind::Logs => "logs",
            DataKind::Metrics => "metrics",
        })
    }
}

/// Why a batch was not accepted.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum ConsumeError {
    /// Try again later (queue full, backend unavailable); `retry_after` is a hint.
    #[error("{message} (retryable)")]
    Retryable {
        message: String,
        retry_after: Option<Duration>,
    },
    /// The data can never be accepted (malformed, wrong kind); do not retry.
    #[error("{message}")]
    Permanent { message: String },
}

impl ConsumeError {
    pub fn retryable(message: impl Into<String>) -> Self {
        ConsumeError::Retryable {
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        ConsumeError::Permanent { message: message.into() }
    }

    pub fn is_retryable(&self) -> bool {
        matches!(self, ConsumeError::Retryable { .. })
    }
}

/// Anything data can be handed to: a processor, an exporter, a pipeline's entrance.
#[async_trait]
pub trait Consumer: Send + Sync {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError>;
}

/// An error starting or stopping a component.
#[derive(Debug, thiserror::Error)]
#[error("{component}: {message}")]
pub struct ComponentError {
    pub component: String,
    pub message: String,
}

impl ComponentError {
    pub fn new(component: impl fmt::Display, message: impl fmt::Display) -> Self {
        ComponentError {
            component: component.to_string(),
            message: message.to_string(),
        }
    }
}

/// Lifecycle shared by every component.
#[async_trait]
pub trait Component: Send + Sync {
    /// Starts background work and returns quickly.
    async fn start(&self, _host: &Host) -> Result<(), ComponentError> {
        Ok(())
    }

    /// Stops accepting data and flushes what is held downstream. Idempotent; safe without start.
    async fn shutdown(&self) -> Result<(), ComponentError> {
        Ok(())
    }
}

pub trait Receiver: Component {}

pub trait Processor: Component + Consumer {}

pub trait Exporter: Component + Consumer {}

/// Extensions offer services to other components through the host.
pub trait Extension: Component {
    /// The cache this extension provides, if it is a cache.
    fn cache(&self) -> Option<Arc<dyn Cache>> {
        None
    }

    fn as_any(&self) -> &dyn Any;
}

/// What a running component can reach: the extensions (by ID) and the process telemetry.
#[derive(Clone, Default)]
pub struct Host {
    extensions: BTreeMap<ComponentId, Arc<dyn Extension>>,
    telemetry: Telemetry,
}

impl Host {
    pub fn new(extensions: BTreeMap<ComponentId, Arc<dyn Extension>>, telemetry: Telemetry) -> Self {
        Host { extensions, telemetry }
    }

    pub fn extension(&self, id: &ComponentId) -> Option<&Arc<dyn Extension>> {
        self.extensions.get(id)
    }

    /// The cache offered by extension `id`, or an error naming what is wrong.
    pub fn cache(&self, id: &ComponentId) -> Result<Arc<dyn Cache>, String> {
        let ext = self
            .extensions
            .get(id)
            .ok_or_else(|| format!("extension {id:?} is not enabled in service.extensions"))?;
        ext.cache().ok_or_else(|| format!("extension {id:?} is not a cache"))
    }

    pub fn telemetry(&self) -> &Telemetry {
        &self.telemetry
    }
}

/// `type[/name]`, the ID of a configured component.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ComponentId {
    pub type_name: String,
    pub name: Option<String>,
}

impl ComponentId {
    pub fn parse(s: &str) -> Result<ComponentId, String> {
        let (type_name, name) = match s.split_once('/') {
            Some((t, n)) => (t, Some(n)),
            None => (s, None),
        };
        if type_name.is_empty()
            || !type_name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(format!(
                "invalid component ID {s:?}: the type must be lower-case letters, digits or '_'"
            ));
        }
        if let Some(n) = name
            && (n.is_empty() || n.contains('/') || n.chars().any(char::is_whitespace))
        {
            return Err(format!("invalid component ID {s:?}: the name after '/' must be non-empty, without '/' or spaces"));
        }
        Ok(ComponentId {
            type_name: type_name.to_string(),
            name: name.map(str::to_string),
        })
    }
}

impl fmt::Display for ComponentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(n) => write!(f, "{}/{}", self.type_name, n),
            None => f.write_str(&self.type_name),
        }
    }
}

/// Everything a factory gets to build one component.
pub struct CreateContext {
    pub id: ComponentId,
    pub metrics: ComponentMetrics,
    pub telemetry: Telemetry,
}

/// Builds receivers of one type.
pub trait ReceiverFactory: Send + Sync {
    fn type_name(&self) -> &'static str;
    fn description(&self) -> &'static str;
    /// What the receiver emits.
    fn output(&self) -> DataKind;
    /// Parses and checks the config without creating anything.
    fn validate(&self, config: &ComponentConfig) -> Result<(), ConfigError>;
    fn create(
        &self,
        ctx: CreateContext,
        config: &ComponentConfig,
        next: Arc<dyn Consumer>,
    ) -> Result<Arc<dyn Receiver>, ConfigError>;
}

/// Builds processors of one type. A processor instance belongs to one pipeline.
pub trait ProcessorFactory: Send + Sync {
    fn type_name(&self) -> &'static str;
    fn description(&self) -> &'static str;
    /// What comes out for a given input, or `None` when the input is not accepted.
    fn output(&self, input: DataKind) -> Option<DataKind>;
    fn validate(&self, config: &ComponentConfig) -> Result<(), ConfigError>;
    fn create(
        &self,
        ctx: CreateContext,
        config: &ComponentConfig,
        next: Arc<dyn Consumer>,
    ) -> Result<Arc<dyn Processor>, ConfigError>;
}

/// Builds exporters of one type. One instance serves every pipeline that names it.
pub trait ExporterFactory: Send + Sync {
    fn type_name(&self) -> &'static str;
    fn description(&self) -> &'static str;
    fn accepts(&self, input: DataKind) -> bool;
    fn validate(&self, config: &ComponentConfig) -> Result<(), ConfigError>;
    fn create(&self, ctx: CreateContext, config: &ComponentConfig) -> Result<Arc<dyn Exporter>, ConfigError>;
}

/// Builds extensions of one type.
pub trait ExtensionFactory: Send + Sync {
    fn type_name(&self) -> &'static str;
    fn description(&self) -> &'static str;
    fn validate(&self, config: &ComponentConfig) -> Result<(), ConfigError>;
    fn create(&self, ctx: CreateContext, config: &ComponentConfig) -> Result<Arc<dyn Extension>, ConfigError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn component_ids_parse() {
        assert_eq!(ComponentId::parse("kubeaudit").unwrap().to_string(), "kubeaudit");
        let id = ComponentId::parse("kubeevents/prod").unwrap();
        assert_eq!((id.type_name.as_str(), id.name.as_deref()), ("kubeevents", Some("prod")));
        assert!(ComponentId::parse("").is_err());
        assert!(ComponentId::parse("Kube").is_err());
        assert!(ComponentId::parse("kube/").is_err());
        assert!(ComponentId::parse("kube/a/b").is_err());
    }
}
