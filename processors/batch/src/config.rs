//! `processors.batch` settings, the collector's keys and defaults.

use std::time::Duration;

use kausal_core::config::{ComponentConfig, ConfigError, duration};
use serde::Deserialize;

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Items (spans or activities) that trigger a send.
    pub send_batch_size: usize,
    /// Send at the latest this long after the first item of a batch arrived.
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// Upper bound of a sent batch; larger ones are split. 0: no bound.
    pub send_batch_max_size: usize,
    /// Items held (buffered and waiting) before new input is refused as retryable.
    pub max_pending_items: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config { send_batch_size: 8192, timeout: Duration::from_millis(200), send_batch_max_size: 0, max_pending_items: 65_536 }
    }
}

impl Config {
    pub fn validate(&self, section: &ComponentConfig) -> Result<(), ConfigError> {
        if self.send_batch_size == 0 {
            return Err(section.error("send_batch_size", "must be at least 1"));
        }
        if self.send_batch_max_size != 0 && self.send_batch_max_size < self.send_batch_size {
            return Err(section.error("send_batch_max_size", "must be 0 or at least send_batch_size"));
        }
        if self.max_pending_items < self.send_batch_size {
            return Err(section.error("max_pending_items", "must be at least send_batch_size"));
        }
        Ok(())
    }
}
