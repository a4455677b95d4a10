//! Configuration of the `raftcache` extension.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use kausal_core::config::{ComponentConfig, ConfigError, duration};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    pub id: u64,
    /// host:port of the peer's Raft transport (`listen` on that node).
    pub address: String,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum ReadMode {
    /// ReadIndex through the shard leader (default).
    #[default]
    Linearizable,
    /// Served by the local replica when it heard from the shard leader within `max_staleness`.
    Stale,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// CA that signs every peer's certificate (verifies both sides).
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// Name the peers' certificates are issued for.
    #[serde(default = "default_server_name")]
    pub server_name: String,
}

fn default_server_name() -> String {
    "kausal-raftcache".to_string()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RaftCacheConfig {
    /// This node's id (> 0, unique in the cluster).
    pub node_id: u64,
    /// Address the Raft transport (gRPC) listens on.
    pub listen: String,
    /// Address of the admin HTTP API (members, shard leaders, join/leave, cache reads/writes).
    #[serde(default = "default_admin")]
    pub admin_endpoint: String,
    /// The initial members, this node included unless it joins later.
    #[serde(default)]
    pub peers: Vec<Peer>,
    /// Start with no membership and wait to be added through another node's admin API.
    #[serde(default)]
    pub join: bool,
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    #[serde(default = "default_shards")]
    pub shards: u32,
    #[serde(default = "default_tick", deserialize_with = "duration::deserialize")]
    pub tick_interval: Duration,
    #[serde(default = "default_election_ticks")]
    pub election_ticks: usize,
    #[serde(default = "default_heartbeat_ticks")]
    pub heartbeat_ticks: usize,
    #[serde(default = "default_request_timeout", deserialize_with = "duration::deserialize")]
    pub request_timeout: Duration,
    #[serde(default)]
    pub read_consistency: ReadMode,
    #[serde(default = "default_staleness", deserialize_with = "duration::deserialize")]
    pub max_staleness: Duration,
    /// Applied entries per group before it snapshots and compacts its log.
    #[serde(default = "default_snapshot_entries")]
    pub snapshot_entries: u64,
    /// fsync every round (turning it off loses acknowledged writes on power loss).
    #[serde(default = "default_true")]
    pub fsync: bool,
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

fn default_admin() -> String {
    "127.0.0.1:7380".to_string()
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("./data/raftcache")
}
fn default_shards() -> u32 {
    16
}
fn default_tick() -> Duration {
    Duration::from_millis(50)
}
fn default_election_ticks() -> usize {
    20
}
fn default_heartbeat_ticks() -> usize {
    4
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_staleness() -> Duration {
    Duration::from_secs(1)
}
fn default_snapshot_entries() -> u64 {
    10_000
}
fn default_true() -> bool {
    true
}

impl RaftCacheConfig {
    pub fn validate(&self, config: &ComponentConfig) -> Result<(), ConfigError> {
        if self.node_id == 0 {
            return Err(config.error("node_id", "must be at least 1"));
        }
        for (key, addr) in [("listen", &self.listen), ("admin_endpoint", &self.admin_endpoint)] {
            if addr.parse::<SocketAddr>().is_err() {
                return Err(config.error(key, format!("{addr:?} is not an address like 127.0.0.1:7379")));
            }
        }
        if self.shards == 0 || self.shards > 4096 {
            return Err(config.error("shards", "must be between 1 and 4096"));
        }
        if self.heartbeat_ticks == 0 || self.election_ticks <= self.heartbeat_ticks {
            return Err(config.error("election_ticks", "must be greater than heartbeat_ticks (>= 1)"));
        }
        if self.tick_interval < Duration::from_millis(1) {
            return Err(config.error("tick_interval", "must be at least 1ms"));
        }
        if self.snapshot_entries < 2 {
            return Err(config.error("snapshot_entries", "must be at least 2"));
        }
        let mut ids: Vec<u64> = self.peers.iter().map(|p| p.id).collect();
        ids.sort_unstable();
        if ids.windows(2).any(|w| w[0] == w[1]) {
            return Err(config.error("peers", "peer ids must be unique"));
        }
        if ids.contains(&0) {
            return Err(config.error("peers", "peer ids must be at least 1"));
        }
        if !self.join && !ids.contains(&self.node_id) {
            return Err(config.error("peers", format!("must list this node ({}) unless `join: true`", self.node_id)));
        }
        Ok(())
    }

    pub fn ticks(&self, d: Duration) -> u64 {
        (d.as_nanos() / self.tick_interval.as_nanos().max(1)).max(1) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_checks() {
        let c = ComponentConfig::from_yaml(
            "raftcache",
            "node_id: 1\nlisten: 127.0.0.1:7379\npeers: [{id: 1, address: 127.0.0.1:7379}]",
        )
        .unwrap();
        let cfg: RaftCacheConfig = c.parse().unwrap();
        cfg.validate(&c).unwrap();
        assert_eq!(cfg.shards, 16);
        assert_eq!(cfg.read_consistency, ReadMode::Linearizable);
        let bad = ComponentConfig::from_yaml("raftcache", "node_id: 2\nlisten: 127.0.0.1:7379\npeers: [{id: 1, address: a:1}]").unwrap();
        let err = bad.parse::<RaftCacheConfig>().unwrap().validate(&bad).unwrap_err();
        assert!(err.to_string().contains("peers"), "{err}");
        let unknown = ComponentConfig::from_yaml("raftcache", "node_id: 1\nlisten: 127.0.0.1:1\nshard: 3").unwrap();
        assert!(unknown.parse::<RaftCacheConfig>().is_err());
    }
}
