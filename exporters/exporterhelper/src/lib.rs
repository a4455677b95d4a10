//! Shared library of kausal's network exporters (`otlp`, `otlphttp`, `jaeger`): the settings
//! they have in common, the sending queue (memory or disk), retries with exponential backoff,
//! optional merging of queued batches, and export grouping per owner tree. An exporter supplies
//! a [`Transport`]; [`QueuedExporter`] does the rest. Not a component itself.

pub mod config;
pub mod exporter;
pub mod grouping;
pub mod persist;
pub mod queue;
pub mod retry;
pub mod tls;

pub use config::{BatchConfig, ClientTlsConfig, Compression, Grouping, HelperConfig, QueueConfig, RetryConfig};
pub use exporter::{Delivered, QueuedExporter, SendError, Transport};
