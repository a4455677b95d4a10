//! `receivers.otlp` settings, with the collector's layout: `protocols.grpc` and
//! `protocols.http`, each enabled by being present (an empty `grpc:` means all defaults).

use std::path::PathBuf;

use kausal_core::config::{ComponentConfig, ConfigError};
use serde::{Deserialize, Deserializer};

pub const DEFAULT_GRPC_ENDPOINT: &str = "0.0.0.0:4317";
pub const DEFAULT_HTTP_ENDPOINT: &str = "0.0.0.0:4318";
/// The collector's defaults: 4 MiB per gRPC message, 20 MiB per HTTP body.
pub const DEFAULT_MAX_RECV_MSG_SIZE_MIB: usize = 4;
pub const DEFAULT_MAX_REQUEST_BODY_SIZE: usize = 20 * 1024 * 1024;

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub protocols: Protocols,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Protocols {
    #[serde(default, deserialize_with = "present")]
    pub grpc: Option<GrpcConfig>,
    #[serde(default, deserialize_with = "present")]
    pub http: Option<HttpConfig>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcConfig {
    pub endpoint: String,
    pub tls: Option<ServerTlsConfig>,
    /// Largest accepted (decompressed) message, in MiB (the collector's key).
    pub max_recv_msg_size_mib: usize,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        GrpcConfig { endpoint: DEFAULT_GRPC_ENDPOINT.into(), tls: None, max_recv_msg_size_mib: DEFAULT_MAX_RECV_MSG_SIZE_MIB }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub endpoint: String,
    pub tls: Option<ServerTlsConfig>,
    /// Largest accepted body, compressed and decompressed, in bytes or with a unit (`20MiB`).
    #[serde(deserialize_with = "byte_size")]
    pub max_request_body_size: usize,
    /// Path spans are posted to.
    pub traces_url_path: String,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            endpoint: DEFAULT_HTTP_ENDPOINT.into(),
            tls: None,
            max_request_body_size: DEFAULT_MAX_REQUEST_BODY_SIZE,
            traces_url_path: "/v1/traces".into(),
        }
    }
}

/// `tls:` of a server. With `client_ca_file`, clients must present a certificate (mTLS).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
}

/// A key that is present enables the protocol, even with no value.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(d: D) -> Result<Option<T>, D::Error> {
    Ok(Some(Option::<T>::deserialize(d)?.unwrap_or_default()))
}

/// `4194304`, `4MiB`, `512KiB`, `1GiB`.
pub fn parse_byte_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("invalid size {s:?}; expected bytes or e.g. 4MiB"))?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        u => return Err(format!("invalid size unit {u:?} in {s:?}; use B, KiB, MiB or GiB")),
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

fn check_endpoint(endpoint: &str) -> Result<(), String> {
    match endpoint.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
        _ => Err(format!("invalid endpoint {endpoint:?}; expected host:port")),
    }
}

impl Config {
    pub fn validate(&self, section: &ComponentConfig) -> Result<(), ConfigError> {
        let p = &self.protocols;
        if p.grpc.is_none() && p.http.is_none() {
            return Err(section.error("protocols", "enable at least one of grpc and http (an empty `grpc:` uses the defaults)"));
        }
        if let Some(g) = &p.grpc {
            check_endpoint(&g.endpoint).map_err(|m| section.error("protocols.grpc.endpoint", m))?;
            if g.max_recv_msg_size_mib == 0 {
                return Err(section.error("protocols.grpc.max_recv_msg_size_mib", "must be greater than 0"));
            }
        }
        if let Some(h) = &p.http {
            check_endpoint(&h.endpoint).map_err(|m| section.error("protocols.http.endpoint", m))?;
            if h.max_request_body_size == 0 {
                return Err(section.error("protocols.http.max_request_body_size", "must be greater than 0"));
            }
            if !h.traces_url_path.starts_with('/') {
                return Err(section.error("protocols.http.traces_url_path", "must start with '/'"));
            }
        }
        if let (Some(g), Some(h)) = (&p.grpc, &p.http)
            && g.endpoint == h.endpoint
            && !g.endpoint.ends_with(":0")
        {
            return Err(section.error("protocols.http.endpoint", "grpc and http cannot share one endpoint"));
        }
        Ok(())
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
    fn an_empty_protocol_key_enables_it_with_defaults() {
        let c = parse("protocols:\n  grpc:\n  http:\n").unwrap();
        assert_eq!(c.protocols.grpc.unwrap().endpoint, "0.0.0.0:4317");
        let h = c.protocols.http.unwrap();
        assert_eq!((h.endpoint.as_str(), h.max_request_body_size), ("0.0.0.0:4318", 20 << 20));
        let only_http = parse("protocols: {http: {endpoint: '127.0.0.1:9'}}").unwrap();
        assert!(only_http.protocols.grpc.is_none());
    }

    #[test]
    fn mistakes_are_named() {
        assert!(parse("").unwrap_err().path.ends_with("protocols"));
        assert!(parse("protocols: {grpc: {endpoint: nope}}").unwrap_err().path.ends_with("grpc.endpoint"));
        assert!(parse("protocols: {http: {max_request_body_size: 12XB}}").is_err());
        assert!(parse("protocols: {http: {surprise: 1}}").is_err());
    }
}
