//! The `kubeaudit` receiver's configuration: the serde struct with its documented defaults, and
//! `validate`, which checks everything that can be checked without touching the network.
//! Reading certificate and token files happens when the receiver is created (`server.rs`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use kausal_core::audit::Stage;
use kausal_core::config::{ComponentConfig, ConfigError};
use serde::{Deserialize, Deserializer};

use crate::cluster::ClusterResolver;
use crate::filter::Filter;

/// Default listen address: all interfaces, the port kube-apiserver examples use for webhooks.
pub const DEFAULT_ENDPOINT: &str = "0.0.0.0:8443";
/// Default request body limit: 32 MiB.
pub const DEFAULT_MAX_BODY_SIZE: usize = 32 * 1024 * 1024;
/// Resources dropped unless `exclude_resources` is set: high-volume, low-value writes.
pub const DEFAULT_EXCLUDE_RESOURCES: [&str; 3] = ["events", "events.k8s.io/events", "coordination.k8s.io/leases"];
/// Stages that become activities unless `stages` is set.
pub const DEFAULT_STAGES: [Stage; 2] = [Stage::ResponseComplete, Stage::Panic];

/// `receivers.kubeaudit` settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `host:port` to listen on; port 0 picks a free port (see `AuditReceiver::local_addr`).
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
    /// Cluster name for requests that do not name one in the path (`/audit/{cluster}`).
    #[serde(default)]
    pub cluster: Option<String>,
    /// Source address (exact IP or CIDR) → cluster name, used when neither the path nor
    /// `cluster` names the cluster. The most specific match wins.
    #[serde(default)]
    pub clusters_by_source: BTreeMap<String, String>,
    /// Serve HTTPS instead of plain HTTP.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Require `Authorization: Bearer <token>`.
    #[serde(default)]
    pub bearer_token: Option<Secret>,
    /// Like `bearer_token`, read from a file (surrounding whitespace trimmed).
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
    /// Largest accepted request body, in bytes or with a unit (`32MiB`, `512KiB`).
    #[serde(default = "default_max_body_size", deserialize_with = "byte_size")]
    pub max_body_size: usize,
    /// Audit stages that become activities.
    #[serde(default = "default_stages")]
    pub stages: Vec<Stage>,
    /// Only these verbs (empty: all).
    #[serde(default)]
    pub verbs: Vec<String>,
    #[serde(default)]
    pub exclude_verbs: Vec<String>,
    /// Only these resources, as `resource` (core group) or `group/resource`; `*` matches any
    /// run of characters in either part (empty: all).
    #[serde(default)]
    pub resources: Vec<String>,
    #[serde(default = "default_exclude_resources")]
    pub exclude_resources: Vec<String>,
    /// Only these user names, exact or glob (`system:serviceaccount:kube-system:*`).
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub exclude_users: Vec<String>,
    /// Only these user agents, by prefix or glob (`kubectl/`, `*controller-manager*`).
    #[serde(default)]
    pub user_agents: Vec<String>,
    #[serde(default)]
    pub exclude_user_agents: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            endpoint: default_endpoint(),
            cluster: None,
            clusters_by_source: BTreeMap::new(),
            tls: None,
            bearer_token: None,
            bearer_token_file: None,
            max_body_size: DEFAULT_MAX_BODY_SIZE,
            stages: default_stages(),
            verbs: Vec::new(),
            exclude_verbs: Vec::new(),
            resources: Vec::new(),
            exclude_resources: default_exclude_resources(),
            users: Vec::new(),
            exclude_users: Vec::new(),
            user_agents: Vec::new(),
            exclude_user_agents: Vec::new(),
        }
    }
}

/// `tls:` settings. Certificate files are PEM.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// When set, clients must present a certificate signed by one of these CAs.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
}

/// A string that never shows up in `Debug` output or logs.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

fn default_endpoint() -> String {
    DEFAULT_ENDPOINT.to_string()
}

fn default_max_body_size() -> usize {
    DEFAULT_MAX_BODY_SIZE
}

fn default_stages() -> Vec<Stage> {
    DEFAULT_STAGES.to_vec()
}

fn default_exclude_resources() -> Vec<String> {
    DEFAULT_EXCLUDE_RESOURCES.iter().map(|s| s.to_string()).collect()
}

/// Parses `1048576`, `512KiB`, `32MiB`, `1GiB` (also `KB`/`MB`/`GB` as powers of 1000).
pub fn parse_byte_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid size {s:?}; expected bytes or e.g. 512KiB, 32MiB"))?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        u => return Err(format!("invalid size unit {u:?} in {s:?}; use B, KiB, MiB, GiB, KB, MB or GB")),
    };
    n.checked_mul(factor)
        .and_then(|b| usize::try_from(b).ok())
        .ok_or_else(|| format!("size {s:?} is too large"))
}

fn byte_size<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Num(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Num(n) => usize::try_from(n).map_err(|_| serde::de::Error::custom(format!("size {n} is too large"))),
        Raw::Text(s) => parse_byte_size(&s).map_err(serde::de::Error::custom),
    }
}

impl Config {
    /// Checks the settings; errors name the offending key under `section`'s path.
    pub fn validate(&self, section: &ComponentConfig) -> Result<(), ConfigError> {
        check_endpoint(&self.endpoint).map_err(|m| section.error("endpoint", m))?;
        if self.max_body_size == 0 {
            return Err(section.error("max_body_size", "must be greater than 0"));
        }
        if self.bearer_token.is_some() && self.bearer_token_file.is_some() {
            return Err(section.error("bearer_token_file", "set either bearer_token or bearer_token_file, not both"));
        }
        if self.bearer_token.as_ref().is_some_and(|t| t.0.trim().is_empty()) {
            return Err(section.error("bearer_token", "must not be empty"));
        }
        if self.stages.is_empty() {
            return Err(section.error("stages", "no stage selected; nothing would ever be received"));
        }
        self.cluster_resolver(section)?;
        self.filter(section)?;
        Ok(())
    }

    /// The cluster resolver these settings describe.
    pub fn cluster_resolver(&self, section: &ComponentConfig) -> Result<ClusterResolver, ConfigError> {
        ClusterResolver::new(self.cluster.as_deref(), &self.clusters_by_source)
            .map_err(|(key, message)| section.error(&key, message))
    }

    /// The event filter these settings describe.
    pub fn filter(&self, section: &ComponentConfig) -> Result<Filter, ConfigError> {
        Filter::new(self).map_err(|(key, message)| section.error(&key, message))
    }
}

/// `host:port` with a numeric port; the host is resolved when binding.
fn check_endpoint(endpoint: &str) -> Result<(), String> {
    if endpoint.parse::<std::net::SocketAddr>().is_ok() {
        return Ok(());
    }
    match endpoint.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
        _ => Err(format!("invalid endpoint {endpoint:?}; expected host:port, e.g. {DEFAULT_ENDPOINT}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<Config, ConfigError> {
        let section = ComponentConfig::from_yaml("kubeaudit", yaml).map_err(|e| e.0[0].clone())?;
        let config: Config = section.parse()?;
        config.validate(&section)?;
        Ok(config)
    }

    #[test]
    fn defaults_are_documented_values() {
        let c = parse("").unwrap();
        assert_eq!(c.endpoint, "0.0.0.0:8443");
        assert_eq!(c.max_body_size, 32 << 20);
        assert_eq!(c.stages, vec![Stage::ResponseComplete, Stage::Panic]);
        assert_eq!(c.exclude_resources, ["events", "events.k8s.io/events", "coordination.k8s.io/leases"]);
        assert!(c.tls.is_none() && c.bearer_token.is_none() && c.cluster.is_none());
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_path() {
        let err = parse("endpiont: 1.2.3.4:1\n").unwrap_err();
        assert_eq!(err.path, "kubeaudit.endpiont");
        let err = parse("tls: {cert_file: a, key_file: b, ca: c}\n").unwrap_err();
        assert_eq!(err.path, "kubeaudit.tls.ca");
    }

    #[test]
    fn sizes_accept_units() {
        assert_eq!(parse("max_body_size: 512KiB\n").unwrap().max_body_size, 512 * 1024);
        assert_eq!(parse("max_body_size: 1000\n").unwrap().max_body_size, 1000);
        assert_eq!(parse_byte_size("2MB"), Ok(2_000_000));
        assert!(parse("max_body_size: 3 parsecs\n").is_err());
        assert_eq!(parse("max_body_size: 0\n").unwrap_err().path, "kubeaudit.max_body_size");
    }

    #[test]
    fn bad_values_name_their_key() {
        assert_eq!(parse("endpoint: nowhere\n").unwrap_err().path, "kubeaudit.endpoint");
        assert_eq!(parse("stages: [Done]\n").unwrap_err().path, "kubeaudit.stages.0");
        assert_eq!(parse("stages: []\n").unwrap_err().path, "kubeaudit.stages");
        let err = parse("clusters_by_source: {\"10.0.0.0/33\": prod}\n").unwrap_err();
        assert!(err.path.starts_with("kubeaudit.clusters_by_source"), "{err}");
        let err = parse("bearer_token: a\nbearer_token_file: /x\n").unwrap_err();
        assert_eq!(err.path, "kubeaudit.bearer_token_file");
        assert_eq!(parse("exclude_resources: [\"a/b/c\"]\n").unwrap_err().path, "kubeaudit.exclude_resources");
    }

    #[test]
    fn tokens_do_not_leak_through_debug() {
        let c = parse("bearer_token: hunter2\n").unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
