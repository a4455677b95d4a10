//! The `splunk_hec` exporter's configuration: serde struct, documented defaults, `validate`.
//! Reading the CA file happens when the exporter is created.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use kausal_core::config::{ComponentConfig, ConfigError, duration};
use kausal_exporterhelper::RetryConfig;
use serde::Deserialize;

/// HEC's event endpoint, appended when `endpoint` has no path.
pub const EVENT_PATH: &str = "/services/collector/event";
pub const DEFAULT_SOURCE: &str = "kausal";
pub const DEFAULT_SOURCETYPE: &str = "kausal:report";
pub const DEFAULT_MAX_BATCH_EVENTS: usize = 100;

/// `exporters.splunk_hec` settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `https://splunk:8088` (the event path is added) or a full URL.
    pub endpoint: String,
    /// HEC token, sent as `Authorization: Splunk <token>`.
    pub token: Secret,
    /// Index; unset: the token's default index.
    #[serde(default)]
    pub index: Option<String>,
    #[serde(default = "default_source")]
    pub source: String,
    #[serde(default = "default_sourcetype")]
    pub sourcetype: String,
    /// Event host; unset: the record's resource attribute `host.name`.
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub tls: TlsConfig,
    /// Per request.
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
    /// Events per request.
    #[serde(default = "default_max_batch_events")]
    pub max_batch_events: usize,
    #[serde(default)]
    pub retry_on_failure: RetryConfig,
}

/// `tls:` for `https://` endpoints.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// CA bundle (PEM) to verify Splunk with; the system roots when unset.
    pub ca_file: Option<PathBuf>,
    /// Do not verify Splunk's certificate (testing only).
    pub insecure_skip_verify: bool,
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

fn default_source() -> String {
    DEFAULT_SOURCE.to_string()
}
fn default_sourcetype() -> String {
    DEFAULT_SOURCETYPE.to_string()
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_max_batch_events() -> usize {
    DEFAULT_MAX_BATCH_EVENTS
}

impl Config {
    /// A config with defaults for `endpoint` and `token` (the CLI's `--report-server splunk://`).
    pub fn new(endpoint: impl Into<String>, token: impl Into<String>) -> Config {
        Config {
            endpoint: endpoint.into(),
            token: Secret(token.into()),
            index: None,
            source: default_source(),
            sourcetype: default_sourcetype(),
            host: None,
            tls: TlsConfig::default(),
            timeout: default_timeout(),
            max_batch_events: DEFAULT_MAX_BATCH_EVENTS,
            retry_on_failure: RetryConfig::default(),
        }
    }

    /// The URL events are posted to.
    pub fn url(&self) -> Result<String, String> {
        let (scheme, rest) = self.endpoint.split_once("://").ok_or_else(|| {
            format!(
                "{:?} is not a URL; expected e.g. https://splunk:8088",
                self.endpoint
            )
        })?;
        if scheme != "http" && scheme != "https" {
            return Err(format!(
                "scheme {scheme:?} is not supported; use https:// (or http:// for tests)"
            ));
        }
        if rest.is_empty() || rest.starts_with('/') {
            return Err(format!("{:?} names no host", self.endpoint));
        }
        Ok(if rest.contains('/') {
            self.endpoint.clone()
        } else {
            format!("{}{EVENT_PATH}", self.endpoint)
        })
    }

    pub fn validate(&self, section: &ComponentConfig) -> Result<(), ConfigError> {
        self.url().map_err(|m| section.error("endpoint", m))?;
        if self.token.0.trim().is_empty() {
            return Err(section.error("token", "must not be empty"));
        }
        if self.max_batch_events == 0 {
            return Err(section.error("max_batch_events", "must be at least 1"));
        }
        if self.timeout.is_zero() {
            return Err(section.error("timeout", "must be more than 0s"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<Config, ConfigError> {
        let section = ComponentConfig::from_yaml("splunk_hec", yaml).map_err(|e| e.0[0].clone())?;
        let c: Config = section.parse()?;
        c.validate(&section)?;
        Ok(c)
    }

    #[test]
    fn defaults_and_url() {
        let c =
            parse("endpoint: https://splunk:8088\ntoken: abc").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            c.url().unwrap_or_default(),
            "https://splunk:8088/services/collector/event"
        );
        assert_eq!(
            (c.source.as_str(), c.sourcetype.as_str(), c.max_batch_events),
            ("kausal", "kausal:report", 100)
        );
        assert_eq!(format!("{:?}", c.token), "<redacted>");
        let full = parse("endpoint: https://splunk:8088/custom/path\ntoken: abc")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            full.url().unwrap_or_default(),
            "https://splunk:8088/custom/path"
        );
    }

    #[test]
    fn errors_name_the_key() {
        for (yaml, path, msg) in [
            (
                "endpoint: splunk:8088\ntoken: a",
                "splunk_hec.endpoint",
                "not a URL",
            ),
            (
                "endpoint: ftp://x\ntoken: a",
                "splunk_hec.endpoint",
                "not supported",
            ),
            (
                "endpoint: https://x\ntoken: ' '",
                "splunk_hec.token",
                "empty",
            ),
            (
                "endpoint: https://x\ntoken: a\nmax_batch_events: 0",
                "splunk_hec.max_batch_events",
                "at least 1",
            ),
            ("token: a", "splunk_hec", "endpoint"),
        ] {
            let e = parse(yaml)
                .err()
                .unwrap_or_else(|| panic!("{yaml} accepted"));
            assert!(
                e.path.starts_with(path) && e.to_string().contains(msg),
                "{yaml}: {e}"
            );
        }
    }
}
