//! Configuration of `spanstore`.

use std::path::PathBuf;
use std::time::Duration;

use kausal_core::config::{ComponentConfig, ConfigError, duration};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpanStoreConfig {
    /// Directory of the store; the `query` extension must name the same one.
    #[serde(default = "default_directory")]
    pub directory: PathBuf,
    /// How long spans are kept.
    #[serde(default = "default_retention", deserialize_with = "duration::deserialize")]
    pub retention: Duration,
    /// How often expired windows are deleted.
    #[serde(default = "default_retention_check", deserialize_with = "duration::deserialize")]
    pub retention_check_interval: Duration,
    /// Largest number of spans written in one transaction.
    #[serde(default = "default_max_commit_spans")]
    pub max_commit_spans: usize,
    /// Batches waiting for the writer before senders have to wait.
    #[serde(default = "default_queue_batches")]
    pub queue_batches: usize,
}

fn default_directory() -> PathBuf {
    PathBuf::from("./data")
}
fn default_retention() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}
fn default_retention_check() -> Duration {
    Duration::from_secs(600)
}
fn default_max_commit_spans() -> usize {
    50_000
}
fn default_queue_batches() -> usize {
    256
}

impl SpanStoreConfig {
    pub fn validate(&self, config: &ComponentConfig) -> Result<(), ConfigError> {
        if self.directory.as_os_str().is_empty() {
            return Err(config.error("directory", "must not be empty"));
        }
        if self.retention < Duration::from_secs(60) {
            return Err(config.error("retention", "must be at least 1m"));
        }
        if self.retention_check_interval < Duration::from_secs(1) {
            return Err(config.error("retention_check_interval", "must be at least 1s"));
        }
        if self.max_commit_spans == 0 {
            return Err(config.error("max_commit_spans", "must be at least 1"));
        }
        if self.queue_batches == 0 {
            return Err(config.error("queue_batches", "must be at least 1"));
        }
        Ok(())
    }

    /// Options for opening the store. The store is shared with the `query` extension, which may
    /// open it first; so settings that must hold (retention) are applied by the exporter itself.
    pub fn store_options(&self) -> kausal_store::StoreOptions {
        kausal_store::StoreOptions {
            retention: self.retention,
            ..Default::default()
        }
    }
}
