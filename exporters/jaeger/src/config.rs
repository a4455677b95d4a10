//! `exporters.jaeger` settings: the Jaeger collector's gRPC endpoint (port 14250 by default
//! on Jaeger collectors), TLS, headers, and the shared exporter-helper keys.

use std::collections::BTreeMap;
use std::time::Duration;

use kausal_core::config::{ComponentConfig, ConfigError, duration};
use kausal_exporterhelper::config::{
    ClientTlsConfig, Grouping, HelperConfig, QueueConfig, RetryConfig, default_timeout, validate_headers, validate_tls,
};
use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `host:port`, `http://host:port` (plain text) or `https://host:port`.
    pub endpoint: String,
    #[serde(default)]
    pub tls: ClientTlsConfig,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
    #[serde(default)]
    pub retry_on_failure: RetryConfig,
    #[serde(default)]
    pub sending_queue: QueueConfig,
    #[serde(default)]
    pub grouping: Grouping,
}

impl Config {
    pub fn helper(&self) -> HelperConfig {
        HelperConfig {
            timeout: self.timeout,
            retry_on_failure: self.retry_on_failure.clone(),
            sending_queue: self.sending_queue.clone(),
            grouping: self.grouping,
        }
    }

    /// URI to dial and whether TLS is on (the scheme decides, else `tls.insecure`).
    pub fn target(&self) -> Result<(String, bool), String> {
        let e = self.endpoint.trim();
        let (rest, tls) = match (e.strip_prefix("http://"), e.strip_prefix("https://")) {
            (Some(r), _) => (r, false),
            (_, Some(r)) => (r, true),
            _ => (e, !self.tls.insecure),
        };
        match rest.trim_end_matches('/').rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok() => {}
            _ => return Err(format!("invalid endpoint {e:?}; expected host:port, e.g. jaeger-collector:14250")),
        }
        Ok((format!("{}://{}", if tls { "https" } else { "http" }, rest.trim_end_matches('/')), tls))
    }

    pub fn validate(&self, section: &ComponentConfig) -> Result<(), ConfigError> {
        self.target().map_err(|m| section.error("endpoint", m))?;
        validate_tls(&self.tls, section)?;
        validate_headers(&self.headers, section)?;
        self.helper().validate(section)
    }
}
