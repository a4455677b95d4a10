//! Configuration of the `query` extension.

use std::path::PathBuf;
use std::time::Duration;

use kausal_core::config::{ComponentConfig, ConfigError, duration};
use serde::Deserialize;

use crate::api::QueryOptions;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryConfig {
    /// Address the HTTP API listens on (Jaeger query's port by default).
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
    /// Store directory; the same as the `spanstore` exporter's.
    #[serde(default = "default_directory")]
    pub directory: PathBuf,
    /// Search range when a request gives neither `start` nor `lookback`.
    #[serde(default = "default_lookback", deserialize_with = "duration::deserialize")]
    pub default_lookback: Duration,
    /// Traces per search when a request gives no `limit`.
    #[serde(default = "default_limit")]
    pub default_limit: usize,
    /// Upper bound on `limit`.
    #[serde(default = "default_max_limit")]
    pub max_limit: usize,
    /// Link hops followed from a trace's root.
    #[serde(default = "default_max_depth")]
    pub max_depth: usize,
    /// Objects per trace fetched by id, root included.
    #[serde(default = "default_max_objects")]
    pub max_objects: usize,
    /// Linked objects followed per search result.
    #[serde(default = "default_link_budget")]
    pub link_budget: usize,
}

fn default_endpoint() -> String {
    "0.0.0.0:16686".to_string()
}
fn default_directory() -> PathBuf {
    PathBuf::from("./data")
}
fn default_lookback() -> Duration {
    QueryOptions::default().default_lookback
}
fn default_limit() -> usize {
    QueryOptions::default().default_limit
}
fn default_max_limit() -> usize {
    QueryOptions::default().max_limit
}
fn default_max_depth() -> usize {
    QueryOptions::default().max_depth
}
fn default_max_objects() -> usize {
    QueryOptions::default().max_objects
}
fn default_link_budget() -> usize {
    QueryOptions::default().link_budget
}


impl QueryConfig {
    pub fn validate(&self, config: &ComponentConfig) -> Result<(), ConfigError> {
        if self.endpoint.parse::<std::net::SocketAddr>().is_err() {
            return Err(config.error("endpoint", format!("{:?} is not an address like 0.0.0.0:16686", self.endpoint)));
        }

        for (key, v) in [
            ("default_limit", self.default_limit),
            ("max_limit", self.max_limit),
            ("max_objects", self.max_objects),
        ] {
            if v == 0 {
                return Err(config.error(key, "must be at least 1"));
            }
        }
        if self.default_limit > self.max_limit {
            return Err(config.error("default_limit", "must not exceed max_limit"));
        }
        Ok(())
    }

    pub fn options(&self) -> QueryOptions {
        QueryOptions {
            default_lookback: self.default_lookback,
            default_limit: self.default_limit,
            max_limit: self.max_limit,
            max_depth: self.max_depth,
            max_objects: self.max_objects,
            link_budget: self.link_budget,
        }
    }
}
