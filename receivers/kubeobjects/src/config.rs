//! `receivers.kubeobjects` settings: the cluster and how to reach it, which resources to watch,
//! what to redact, where changes go (cache) and for how long, and optional leader election.

use std::time::Duration;

use kausal_core::component::ComponentId;
use kausal_core::config::{ComponentConfig, ConfigError};
use kausal_kubecommon::{Auth, LeaseConfig};
use serde::Deserialize;

/// Resources not watched unless `exclude` is set: Events are `kubeevents`' job and Leases
/// change every few seconds without telling anything.
pub const DEFAULT_EXCLUDE: [&str; 3] = ["events", "events.events.k8s.io", "leases.coordination.k8s.io"];

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Cluster name put on every object (must match the audit receiver's for joins).
    #[serde(default = "default_cluster")]
    pub cluster: String,
    #[serde(default)]
    pub auth: Auth,
    /// Resources to watch as `resource[.group]` globs (`pods`, `deployments.apps`,
    /// `*.example.com`); empty: every listable and watchable resource.
    #[serde(default)]
    pub include: Vec<String>,
    #[serde(default = "default_exclude")]
    pub exclude: Vec<String>,
    /// Objects whose diffs and snapshots carry paths but no values, as
    /// `resource[.group]/namespace/name` globs (`configmaps/prod/*`). Secrets are always
    /// redacted, and so is any object labelled `kausal.io/redact`.
    #[serde(default)]
    pub redact: Vec<String>,
    /// Cache extension changes are written to; absent: the process's memory cache.
    #[serde(default)]
    pub cache: Option<String>,
    /// How long a change stays joinable in the cache.
    #[serde(default = "default_ttl", with = "kausal_core::config::duration")]
    pub change_ttl: Duration,
    /// Objects whose last version is kept for diffing; the least recently changed are forgotten
    /// first (their next change is then recorded without a diff).
    #[serde(default = "default_max_objects")]
    pub max_objects: usize,
    /// How often discovery is re-run (it also re-runs when a CustomResourceDefinition changes).
    #[serde(default = "default_discovery_interval", with = "kausal_core::config::duration")]
    pub discovery_interval: Duration,
    /// Emit change activities (spans of their own) besides writing them to the cache.
    #[serde(default = "default_true")]
    pub emit_changes: bool,
    /// Watch only while holding this Lease (one replica per cluster watches).
    #[serde(default)]
    pub leader_election: Option<LeaseConfig>,
}

fn default_cluster() -> String {
    "default".into()
}
fn default_exclude() -> Vec<String> {
    DEFAULT_EXCLUDE.iter().map(|s| s.to_string()).collect()
}
fn default_ttl() -> Duration {
    kausal_core::changes::DEFAULT_CHANGE_TTL
}
fn default_max_objects() -> usize {
    200_000
}
fn default_discovery_interval() -> Duration {
    Duration::from_secs(60)
}
fn default_true() -> bool {
    true
}

impl Config {
    pub fn validate(&self, config: &ComponentConfig) -> Result<(), ConfigError> {
        if self.cluster.is_empty() {
            return Err(config.error("cluster", "must not be empty"));
        }
        self.auth.validate().map_err(|(k, m)| config.error(&format!("auth.{k}"), m))?;
        if let Some(le) = &self.leader_election {
            le.validate().map_err(|(k, m)| config.error(&format!("leader_election.{k}"), m))?;
        }
        if let Some(c) = &self.cache {
            ComponentId::parse(c).map_err(|m| config.error("cache", m))?;
        }
        if self.max_objects == 0 {
            return Err(config.error("max_objects", "must be at least 1"));
        }
        if self.change_ttl.is_zero() {
            return Err(config.error("change_ttl", "must be positive"));
        }
        if self.discovery_interval < Duration::from_secs(1) {
            return Err(config.error("discovery_interval", "must be at least 1s"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_unknown_keys() {
        let c = ComponentConfig::from_yaml("kubeobjects", "{}").unwrap();
        let cfg: Config = c.parse().unwrap();
        cfg.validate(&c).unwrap();
        assert_eq!(cfg.exclude, default_exclude());
        assert_eq!(cfg.change_ttl, Duration::from_secs(3600));
        let bad = ComponentConfig::from_yaml("kubeobjects", "{includes: [pods]}").unwrap();
        assert!(bad.parse::<Config>().is_err());
        let both = ComponentConfig::from_yaml("kubeobjects", "{auth: {in_cluster: true, kubeconfig: x}}").unwrap();
        assert!(both.parse::<Config>().unwrap().validate(&both).unwrap_err().path.contains("auth.kubeconfig"));
    }
}
