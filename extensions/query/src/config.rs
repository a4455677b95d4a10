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
    /// Address the gRPC APIs (Jaeger's QueryService, Jaeger v2's remote storage TraceReader)
    /// listen on. Unset: Jaeger query's gRPC port, [`DEFAULT_GRPC_ENDPOINT`], best effort (if it
    /// is taken, e.g. by a second kausal on the machine, the HTTP API still starts and the
    /// error is logged); set: binding it is required.
    #[serde(default)]
    pub grpc_endpoint: Option<String>,
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
/// Jaeger query's gRPC port.
pub const DEFAULT_GRPC_ENDPOINT: &str = "0.0.0.0:16685";

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
        if let Some(grpc) = &self.grpc_endpoint
            && grpc.parse::<std::net::SocketAddr>().is_err()
        {
            return Err(config.error("grpc_endpoint", format!("{grpc:?} is not an address like {DEFAULT_GRPC_ENDPOINT}")));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn validate(yaml: &str) -> Result<QueryConfig, String> {
        let c = ComponentConfig::from_yaml("query", yaml).map_err(|e| format!("{e:?}"))?;
        let parsed: QueryConfig = c.parse().map_err(|e| e.to_string())?;
        parsed.validate(&c).map_err(|e| e.to_string())?;
        Ok(parsed)
    }

    #[test]
    fn grpc_endpoint_has_a_default_and_is_validated() {
        assert_eq!(validate("directory: ./d").map(|c| c.grpc_endpoint), Ok(None));
        assert_eq!(validate("grpc_endpoint: 127.0.0.1:0").map(|c| c.grpc_endpoint), Ok(Some("127.0.0.1:0".to_string())));
        let err = validate("grpc_endpoint: nowhere").unwrap_err();
        assert!(err.contains("grpc_endpoint") && err.contains("0.0.0.0:16685"), "{err}");
    }
}
