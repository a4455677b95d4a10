//! Configuration of `ownerlinker`.

use kausal_core::config::{ComponentConfig, ConfigError};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnerLinkerConfig {
    /// Objects whose owner is remembered; the least recently seen are forgotten first.
    #[serde(default = "default_max_objects")]
    pub max_objects: usize,
    /// Cache extension where `kubeobjects` keeps object owners; absent: the process's memory
    /// cache.
    #[serde(default)]
    pub cache: Option<String>,
}

fn default_max_objects() -> usize {
    200_000
}

impl OwnerLinkerConfig {
    pub fn validate(&self, config: &ComponentConfig) -> Result<(), ConfigError> {
        if self.max_objects == 0 {
            return Err(config.error("max_objects", "must be at least 1"));
        }
        Ok(())
    }
}
