//! `processors.diffjoiner` settings.

use std::collections::BTreeMap;
use std::time::Duration;

use kausal_core::component::ComponentId;
use kausal_core::config::{ComponentConfig, ConfigError};
use serde::Deserialize;

use crate::join::JoinMode;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Cache extension the watcher writes changes to; absent: the process's memory cache.
    #[serde(default)]
    pub cache: Option<String>,
    /// How long a write waits for its change to be observed before it goes on without one.
    #[serde(default = "default_wait", with = "kausal_core::config::duration")]
    pub wait: Duration,
    /// How often waiting writes look again.
    #[serde(default = "default_poll", with = "kausal_core::config::duration")]
    pub poll_interval: Duration,
    /// Writes waiting at most; past this the oldest goes on without its change.
    #[serde(default = "default_max_pending")]
    pub max_pending: usize,
    /// Join mode for clusters not listed in `clusters`: `auto` (the response's new
    /// resourceVersion when the audit level recorded it, else the request's old one), `new`
    /// or `old`.
    #[serde(default)]
    pub mode: JoinMode,
    /// Join mode per cluster name.
    #[serde(default)]
    pub clusters: BTreeMap<String, JoinMode>,
}

fn default_wait() -> Duration {
    Duration::from_secs(15)
}
fn default_poll() -> Duration {
    Duration::from_millis(100)
}
fn default_max_pending() -> usize {
    100_000
}

impl Config {
    pub fn validate(&self, config: &ComponentConfig) -> Result<(), ConfigError> {
        if let Some(c) = &self.cache {
            ComponentId::parse(c).map_err(|m| config.error("cache", m))?;
        }
        if self.poll_interval.is_zero() {
            return Err(config.error("poll_interval", "must be positive"));
        }
        if self.max_pending == 0 {
            return Err(config.error("max_pending", "must be at least 1"));
        }
        Ok(())
    }

    pub fn mode_for(&self, cluster: &str) -> JoinMode {
        self.clusters.get(cluster).copied().unwrap_or(self.mode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_modes() {
        let c = ComponentConfig::from_yaml("diffjoiner", "{clusters: {legacy: old}}").unwrap();
        let cfg: Config = c.parse().unwrap();
        cfg.validate(&c).unwrap();
        assert_eq!(cfg.wait, Duration::from_secs(15));
        assert_eq!(cfg.mode_for("legacy"), JoinMode::Old);
        assert_eq!(cfg.mode_for("other"), JoinMode::Auto);
        assert!(ComponentConfig::from_yaml("diffjoiner", "{mode: sideways}").unwrap().parse::<Config>().is_err());
        assert!(ComponentConfig::from_yaml("diffjoiner", "{waiting: 1s}").unwrap().parse::<Config>().is_err());
    }
}
