//! The `tcplines` exporter's configuration: serde struct, documented defaults, `validate`.

use std::path::PathBuf;
use std::time::Duration;

use kausal_core::config::{ComponentConfig, ConfigError, duration};
use kausal_exporterhelper::RetryConfig;
use serde::Deserialize;

pub const DEFAULT_SIGNAL: &str = "kausal-report";

/// `exporters.tcplines` settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `host:port` of the TLS listener.
    pub endpoint: String,
    /// Signal of records without a `kausal.report.signal` attribute.
    #[serde(default = "default_signal")]
    pub signal: String,
    #[serde(default)]
    pub tls: TlsConfig,
    /// Connecting, handshaking and writing one line.
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
    #[serde(default)]
    pub retry_on_failure: RetryConfig,
}

/// Lowest TLS version offered.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
pub enum TlsVersion {
    #[serde(rename = "1.2")]
    Tls12,
    #[default]
    #[serde(rename = "1.3")]
    Tls13,
}

/// `tls:` — there is no plain-text mode.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// CA bundle (PEM) to verify the server with; the system roots when unset.
    pub ca_file: Option<PathBuf>,
    /// Do not verify the server's certificate (testing only).
    pub insecure_skip_verify: bool,
    /// Name to verify the certificate against; default the endpoint's host.
    pub server_name: Option<String>,
    /// `"1.3"` (default) or `"1.2"`.
    pub min_version: TlsVersion,
}

fn default_signal() -> String {
    DEFAULT_SIGNAL.to_string()
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

impl Config {
    pub fn new(endpoint: impl Into<String>) -> Config {
        Config {
            endpoint: endpoint.into(),
            signal: default_signal(),
            tls: TlsConfig::default(),
            timeout: default_timeout(),
            retry_on_failure: RetryConfig::default(),
        }
    }

    /// (host, port) of `endpoint`; IPv6 hosts in brackets.
    pub fn host_port(&self) -> Result<(String, u16), String> {
        let (host, port) = self
            .endpoint
            .rsplit_once(':')
            .ok_or_else(|| format!("{:?} is not host:port", self.endpoint))?;
        let port: u16 = port
            .parse()
            .map_err(|_| format!("{:?}: port {port:?} is not a number", self.endpoint))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || port == 0 {
            return Err(format!("{:?} is not host:port", self.endpoint));
        }
        Ok((host.to_string(), port))
    }

    pub fn validate(&self, section: &ComponentConfig) -> Result<(), ConfigError> {
        self.host_port().map_err(|m| section.error("endpoint", m))?;
        if self.signal.is_empty() || self.signal.contains([';', '=', '\n', '\r']) {
            return Err(section.error(
                "signal",
                "must be non-empty, without ';', '=' or line breaks",
            ));
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
        let section = ComponentConfig::from_yaml("tcplines", yaml).map_err(|e| e.0[0].clone())?;
        let c: Config = section.parse()?;
        c.validate(&section)?;
        Ok(c)
    }

    #[test]
    fn defaults() {
        let c = parse("endpoint: reports.example.com:61833").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.tls.min_version, TlsVersion::Tls13);
        assert_eq!(
            c.host_port().ok(),
            Some(("reports.example.com".to_string(), 61833))
        );
        assert_eq!(
            parse("endpoint: '[::1]:9'")
                .ok()
                .and_then(|c| c.host_port().ok()),
            Some(("::1".to_string(), 9))
        );
    }

    #[test]
    fn errors_name_the_key() {
        for (yaml, path, msg) in [
            ("endpoint: nohost", "tcplines.endpoint", "host:port"),
            ("endpoint: h:x", "tcplines.endpoint", "not a number"),
            ("endpoint: h:1\nsignal: 'a=b'", "tcplines.signal", "'='"),
            (
                "endpoint: h:1\ntls: {min_version: '1.1'}",
                "tcplines.tls.min_version",
                "1.1",
            ),
            ("endpoint: h:1\ninsecure: true", "tcplines", "insecure"),
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
