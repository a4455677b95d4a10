//! `processors.memory_limiter` settings, the collector's keys: a hard limit (`limit_mib` or
//! `limit_percentage` of the machine's or cgroup's memory) and a spike allowance below it
//! (`spike_limit_mib` / `spike_limit_percentage`, default 20% of the limit). Data is refused
//! above the soft limit, `limit - spike`.

use std::time::Duration;

use kausal_core::config::{ComponentConfig, ConfigError, duration};
use serde::Deserialize;

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    #[serde(with = "duration")]
    pub check_interval: Duration,
    pub limit_mib: u64,
    pub spike_limit_mib: u64,
    pub limit_percentage: u64,
    pub spike_limit_percentage: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config { check_interval: Duration::from_secs(1), limit_mib: 0, spike_limit_mib: 0, limit_percentage: 0, spike_limit_percentage: 0 }
    }
}

/// The two limits in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub hard: u64,
    pub soft: u64,
}

impl Config {
    /// Resolves the limits against `total` bytes of memory available to the process.
    pub fn limits(&self, total: u64) -> Result<Limits, (&'static str, String)> {
        const MIB: u64 = 1024 * 1024;
        let hard = match (self.limit_mib, self.limit_percentage) {
            (0, 0) => return Err(("limit_mib", "set limit_mib or limit_percentage".into())),
            (m, 0) => m * MIB,
            (0, p) if p <= 100 => total / 100 * p,
            (0, _) => return Err(("limit_percentage", "must be at most 100".into())),
            _ => return Err(("limit_percentage", "set either limit_mib or limit_percentage, not both".into())),
        };
        let spike = match (self.spike_limit_mib, self.spike_limit_percentage) {
            (0, 0) => hard / 5,
            (m, 0) => m * MIB,
            (0, p) if p <= 100 => total / 100 * p,
            (0, _) => return Err(("spike_limit_percentage", "must be at most 100".into())),
            _ => return Err(("spike_limit_percentage", "set either spike_limit_mib or spike_limit_percentage".into())),
        };
        if spike >= hard {
            return Err(("spike_limit_mib", "the spike limit must be below the limit".into()));
        }
        Ok(Limits { hard, soft: hard - spike })
    }

    pub fn validate(&self, section: &ComponentConfig) -> Result<(), ConfigError> {
        if self.check_interval.is_zero() {
            return Err(section.error("check_interval", "must be greater than 0"));
        }
        self.limits(crate::memory::total_bytes()).map(|_| ()).map_err(|(k, m)| section.error(k, m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_resolve_like_the_collector() {
        let gib = 1024 * 1024 * 1024;
        let c = Config { limit_mib: 1000, ..Config::default() };
        assert_eq!(c.limits(gib).unwrap(), Limits { hard: 1000 << 20, soft: 800 << 20 });
        let c = Config { limit_percentage: 50, spike_limit_percentage: 10, ..Config::default() };
        assert_eq!(c.limits(100 * gib).unwrap(), Limits { hard: 50 * gib, soft: 40 * gib });
        assert_eq!(Config::default().limits(gib).unwrap_err().0, "limit_mib");
        assert_eq!(Config { limit_mib: 10, spike_limit_mib: 10, ..Config::default() }.limits(gib).unwrap_err().0, "spike_limit_mib");
    }
}
