//! `receivers.kubeevents` settings.

use std::time::Duration;

use kausal_core::component::ComponentId;
use kausal_core::config::{ComponentConfig, ConfigError};
use kausal_kubecommon::{Auth, LeaseConfig};
use serde::Deserialize;

use crate::event::EventApi;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Cluster name put on every activity.
    #[serde(default = "default_cluster")]
    pub cluster: String,
    #[serde(default)]
    pub auth: Auth,
    /// `v1` (core Events) or `events.k8s.io/v1`.
    #[serde(default)]
    pub api: EventApi,
    /// Only these namespaces (empty: all).
    #[serde(default)]
    pub namespaces: Vec<String>,
    #[serde(default)]
    pub exclude_namespaces: Vec<String>,
    /// Field selector passed to the API server (`type=Warning`).
    #[serde(default)]
    pub field_selector: Option<String>,
    /// Label selector passed to the API server.
    #[serde(default)]
    pub label_selector: Option<String>,
    /// Cache extension holding the watermark and the handled occurrences; absent: memory.
    #[serde(default)]
    pub cache: Option<String>,
    /// Without a watermark, Events older than this at start are skipped.
    #[serde(default = "default_max_age", with = "kausal_core::config::duration")]
    pub max_age: Duration,
    /// How long a handled occurrence is remembered (must exceed how long Events live, 1h by
    /// default in kube-apiserver).
    #[serde(default = "default_remember", with = "kausal_core::config::duration")]
    pub remember: Duration,
    /// Watch only while holding this Lease.
    #[serde(default)]
    pub leader_election: Option<LeaseConfig>,
}

fn default_cluster() -> String {
    "default".into()
}
fn default_max_age() -> Duration {
    Duration::from_secs(300)
}
fn default_remember() -> Duration {
    Duration::from_secs(3 * 3600)
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
        if self.remember < self.max_age {
            return Err(config.error("remember", "must be at least max_age"));
        }
        if let Some(ns) = self.namespaces.iter().find(|n| self.exclude_namespaces.contains(n)) {
            return Err(config.error("exclude_namespaces", format!("{ns:?} is both included and excluded")));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_errors() {
        let c = ComponentConfig::from_yaml("kubeevents", "{}").unwrap();
        let cfg: Config = c.parse().unwrap();
        cfg.validate(&c).unwrap();
        assert_eq!((cfg.api, cfg.max_age), (EventApi::CoreV1, Duration::from_secs(300)));
        let v1 = ComponentConfig::from_yaml("kubeevents", "{api: events.k8s.io/v1}").unwrap();
        assert_eq!(v1.parse::<Config>().unwrap().api, EventApi::EventsV1);
        assert!(ComponentConfig::from_yaml("kubeevents", "{api: v2}").unwrap().parse::<Config>().is_err());
        let both = ComponentConfig::from_yaml("kubeevents", "{namespaces: [a], exclude_namespaces: [a]}").unwrap();
        assert!(both.parse::<Config>().unwrap().validate(&both).is_err());
    }
}
