//! `exporters.otlp` settings: where to send (gRPC), how (TLS, headers, compression), and the
//! shared exporter-helper keys (timeout, retry_on_failure, sending_queue, grouping).

use std::collections::BTreeMap;
use std::time::Duration;

use kausal_core::config::{ComponentConfig, ConfigError, duration};
use kausal_exporterhelper::config::{
    ClientTlsConfig, Compression, Grouping, HelperConfig, QueueConfig, RetryConfig, default_timeout, validate_headers,
    validate_tls,
};
use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `host:port`, or `http://host:port` (plain text) / `https://host:port` (TLS).
    pub endpoint: String,
    #[serde(default)]
    pub tls: ClientTlsConfig,
    /// gRPC metadata sent with every export (e.g. `authorization`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub compression: Compression,
    /// Per-attempt deadline.
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

    /// The URI to dial and whether TLS is used: the scheme decides, else `tls.insecure`.
    pub fn target(&self) -> Result<(String, bool), String> {
        let e = self.endpoint.trim();
        let (rest, tls) = if let Some(r) = e.strip_prefix("http://") {
            (r, false)
        } else if let Some(r) = e.strip_prefix("https://") {
            (r, true)
        } else {
            (e, !self.tls.insecure)
        };
        let rest = rest.trim_end_matches('/');
        match rest.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {}
            _ => return Err(format!("invalid endpoint {e:?}; expected host:port, e.g. collector:4317")),
        }
        Ok((format!("{}://{rest}", if tls { "https" } else { "http" }), tls))
    }

    pub fn validate(&self, section: &ComponentConfig) -> Result<(), ConfigError> {
        self.target().map_err(|m| section.error("endpoint", m))?;
        validate_tls(&self.tls, section)?;
        validate_headers(&self.headers, section)?;
        self.helper().validate(section)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<Config, ConfigError> {
        let c = ComponentConfig::from_yaml("otlp", yaml).map_err(|e| e.0[0].clone())?;
        let cfg: Config = c.parse()?;
        cfg.validate(&c)?;
        Ok(cfg)
    }

    #[test]
    fn defaults_follow_the_collector() {
        let c = parse("endpoint: collector:4317").unwrap();
        assert_eq!(c.target().unwrap(), ("https://collector:4317".to_string(), true));
        assert_eq!(c.compression, Compression::Gzip);
        assert_eq!(c.timeout, Duration::from_secs(5));
        assert_eq!(c.retry_on_failure.initial_interval, Duration::from_secs(5));
        assert_eq!(c.retry_on_failure.max_interval, Duration::from_secs(30));
        assert_eq!(c.retry_on_failure.max_elapsed_time, Duration::from_secs(300));
        assert_eq!(c.sending_queue.queue_size, 1000);
        assert_eq!(c.grouping, Grouping::Object);
    }

    #[test]
    fn scheme_and_insecure_decide_tls() {
        assert!(!parse("endpoint: http://c:4317").unwrap().target().unwrap().1);
        assert!(!parse("{endpoint: 'c:4317', tls: {insecure: true}}").unwrap().target().unwrap().1);
    }

    #[test]
    fn mistakes_name_the_key() {
        assert!(parse("endpoint: nowhere").unwrap_err().to_string().contains("exporters.otlp.endpoint") || parse("endpoint: nowhere").unwrap_err().path.ends_with("endpoint"));
        assert!(parse("{endpoint: 'c:1', tls: {cert_file: a.pem}}").unwrap_err().path.ends_with("tls.key_file"));
        assert!(parse("{endpoint: 'c:1', compression: brotli}").is_err());
        assert!(parse("{endpoint: 'c:1', retry_on_failure: {multiplier: 0.5}}").unwrap_err().path.ends_with("multiplier"));
        assert!(parse("{endpoint: 'c:1', surprise: 1}").is_err());
    }
}
