//! Configuration of `spanbuilder`.

use std::time::Duration;

use kausal_core::config::{ComponentConfig, ConfigError, duration};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpanBuilderConfig {
    /// Length of an object span's window, aligned to the clock.
    #[serde(default = "default_window", deserialize_with = "duration::deserialize")]
    pub window: Duration,
    /// (object, window) pairs whose emitted state is remembered, to avoid re-emitting unchanged
    /// object spans. Forgetting only costs a re-emission.
    #[serde(default = "default_max_objects")]
    pub max_objects: usize,
}

impl Default for SpanBuilderConfig {
    fn default() -> Self {
        SpanBuilderConfig {
            window: default_window(),
            max_objects: default_max_objects(),
        }
    }
}

fn default_window() -> Duration {
    Duration::from_secs(30 * 60)
}

fn default_max_objects() -> usize {
    200_000
}

impl SpanBuilderConfig {
    pub fn validate(&self, config: &ComponentConfig) -> Result<(), ConfigError> {
        if self.window < Duration::from_secs(1) {
            return Err(config.error("window", "must be at least 1s"));
        }
        if self.max_objects == 0 {
            return Err(config.error("max_objects", "must be at least 1"));
        }
        Ok(())
    }
}
