//! `exporters.otlphttp` settings: the collector's keys (`endpoint`, `traces_endpoint`,
//! `encoding`, `compression`, `headers`, `tls`) and the shared exporter-helper keys.

use std::collections::BTreeMap;
use std::time::Duration;

use kausal_core::config::{ComponentConfig, ConfigError, duration};
use kausal_exporterhelper::config::{
    ClientTlsConfig, Compression, Grouping, HelperConfig, QueueConfig, RetryConfig, default_timeout, validate_headers,
    validate_tls,
};
use serde::Deserialize;

/// Body encoding of the export request.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    #[default]
    Proto,
    Json,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Base URL; spans go to `<endpoint>/v1/traces`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Full URL for spans, overriding `endpoint`.
    #[serde(default)]
    pub traces_endpoint: Option<String>,
    #[serde(default)]
    pub encoding: Encoding,
    #[serde(default)]
    pub compression: Compression,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub tls: ClientTlsConfig,
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

    /// The URL spans are posted to.
    pub fn traces_url(&self) -> Result<String, (String, String)> {
        let (key, url) = match (&self.traces_endpoint, &self.endpoint) {
            (Some(t), _) => ("traces_endpoint", t.clone()),
            (None, Some(e)) => ("endpoint", format!("{}/v1/traces", e.trim_end_matches('/'))),
            (None, None) => return Err(("endpoint".into(), "set endpoint (or traces_endpoint)".into())),
        };
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err((key.into(), format!("{url:?} must start with http:// or https://")));
        }
        Ok(url)
    }

    pub fn validate(&self, section: &ComponentConfig) -> Result<(), ConfigError> {
        self.traces_url().map_err(|(k, m)| section.error(&k, m))?;
        validate_tls(&self.tls, section)?;
        validate_headers(&self.headers, section)?;
        self.helper().validate(section)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<Config, ConfigError> {
        let c = ComponentConfig::from_yaml("otlphttp", yaml).map_err(|e| e.0[0].clone())?;
        let cfg: Config = c.parse()?;
        cfg.validate(&c)?;
        Ok(cfg)
    }

    #[test]
    fn urls_and_defaults() {
        let c = parse("endpoint: https://collector:4318/").unwrap();
        assert_eq!(c.traces_url().unwrap(), "https://collector:4318/v1/traces");
        assert_eq!((c.encoding, c.compression), (Encoding::Proto, Compression::Gzip));
        let c = parse("{endpoint: 'http://a:1', traces_endpoint: 'http://b:2/custom', encoding: json}").unwrap();
        assert_eq!(c.traces_url().unwrap(), "http://b:2/custom");
        assert!(parse("{}").unwrap_err().path.ends_with("endpoint"));
        assert!(parse("endpoint: collector:4318").unwrap_err().path.ends_with("endpoint"));
        assert!(parse("{endpoint: 'http://a:1', encoding: xml}").is_err());
    }
}
