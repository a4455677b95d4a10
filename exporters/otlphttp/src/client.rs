//! The HTTP side: one reqwest client (TLS/mTLS through rustls), the body encoded and
//! compressed per the settings, and the answer mapped as the OTLP/HTTP specification asks:
//! 429, 502, 503 and 504 are retried (after `Retry-After` when given, in seconds or as an HTTP
//! date), every other error status is permanent, and a 2xx body may report a partial success.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kausal_core::otlp_trace::ResourceSpans;
use kausal_exporterhelper::tls::read_client_pem;
use kausal_exporterhelper::{Compression, Delivered, SendError, Transport};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use prost::Message;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};

use crate::config::{Config, Encoding};

pub struct HttpTransport {
    client: reqwest::Client,
    url: String,
    encoding: Encoding,
    compression: Compression,
}

fn tls_config(config: &Config) -> Result<rustls::ClientConfig, (String, String)> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let pem = read_client_pem(&config.tls)?;
    let mut roots = rustls::RootCertStore::empty();
    match &pem.ca {
        Some(ca) => {
            for cert in rustls_pemfile::certs(&mut ca.as_slice()) {
                let cert = cert.map_err(|e| ("tls.ca_file".to_string(), format!("invalid PEM: {e}")))?;
                roots.add(cert).map_err(|e| ("tls.ca_file".to_string(), format!("invalid CA certificate: {e}")))?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ("tls".to_string(), format!("cannot set up TLS: {e}")))?
        .with_root_certificates(roots);
    match pem.identity {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => {
            let certs = rustls_pemfile::certs(&mut cert.as_slice())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ("tls.cert_file".to_string(), format!("invalid PEM: {e}")))?;
            let key = rustls_pemfile::private_key(&mut key.as_slice())
                .map_err(|e| ("tls.key_file".to_string(), format!("invalid PEM: {e}")))?
                .ok_or_else(|| ("tls.key_file".to_string(), "no PRIVATE KEY block found".to_string()))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| ("tls.key_file".to_string(), format!("certificate and key do not fit together: {e}")))
        }
    }
}

impl HttpTransport {
    /// Errors are `(key relative to the section, message)`.
    pub fn new(config: &Config) -> Result<HttpTransport, (String, String)> {
        let url = config.traces_url()?;
        // reqwest is built without a default crypto provider; kausal uses ring throughout.
        let _ = rustls::crypto::ring::default_provider().install_default();
        if config.tls.insecure_skip_verify {
            return Err(("tls.insecure_skip_verify".into(), "not supported; give the server's CA in tls.ca_file".into()));
        }
        let mut headers = HeaderMap::new();
        for (k, v) in &config.headers {
            let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| (format!("headers.{k}"), "invalid header name".to_string()))?;
            let value = HeaderValue::from_str(v).map_err(|_| (format!("headers.{k}"), "invalid header value".to_string()))?;
            headers.insert(name, value);
        }
        let mut builder = reqwest::Client::builder().default_headers(headers).connect_timeout(config.timeout);
        if url.starts_with("https://") {
            builder = builder.tls_backend_preconfigured(tls_config(config)?);
        }
        let client = builder.build().map_err(|e| ("endpoint".to_string(), format!("cannot build the HTTP client: {e}")))?;
        Ok(HttpTransport { client, url, encoding: config.encoding, compression: config.compression })
    }

    fn body(&self, spans: Vec<ResourceSpans>) -> Result<Vec<u8>, SendError> {
        let request = ExportTraceServiceRequest { resource_spans: spans };
        let raw = match self.encoding {
            Encoding::Proto => request.encode_to_vec(),
            Encoding::Json => serde_json::to_vec(&request).map_err(|e| SendError::permanent(format!("cannot encode JSON: {e}")))?,
        };
        match self.compression {
            Compression::None => Ok(raw),
            Compression::Gzip => {
                let mut enc = flate2::write::GzEncoder::new(Vec::with_capacity(raw.len() / 4), flate2::Compression::fast());
                enc.write_all(&raw).and_then(|()| enc.finish()).map_err(|e| SendError::permanent(format!("gzip: {e}")))
            }
            Compression::Zstd => zstd::bulk::compress(&raw, 1).map_err(|e| SendError::permanent(format!("zstd: {e}"))),
        }
    }
}

/// `Retry-After` as seconds or an HTTP date, relative to `now`.
pub fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    (at.with_timezone(&chrono::Utc) - now).to_std().ok()
}

/// Whether an HTTP status may succeed when retried.
pub fn is_retryable(status: u16) -> bool {
    matches!(status, 429 | 502 | 503 | 504)
}

#[async_trait]
impl Transport for HttpTransport {
    async fn send(&self, spans: Vec<ResourceSpans>) -> Result<Delivered, SendError> {
        let body = self.body(spans)?;
        let content_type = match self.encoding {
            Encoding::Proto => "application/x-protobuf",
            Encoding::Json => "application/json",
        };
        let mut request = self.client.post(&self.url).header(CONTENT_TYPE, content_type).body(body);
        match self.compression {
            Compression::None => {}
            Compression::Gzip => request = request.header(CONTENT_ENCODING, "gzip"),
            Compression::Zstd => request = request.header(CONTENT_ENCODING, "zstd"),
        }
        let response = request
            .send()
            .await
            .map_err(|e| SendError::retryable(format!("{}: {e}", self.url)))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, chrono::Utc::now()));
        let is_json = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        let bytes = response.bytes().await.unwrap_or_default();
        if (200..300).contains(&status) {
            let parsed = if bytes.is_empty() {
                None
            } else if is_json {
                serde_json::from_slice::<ExportTraceServiceResponse>(&bytes).ok()
            } else {
                ExportTraceServiceResponse::decode(bytes.as_ref()).ok()
            };
            let partial = parsed.and_then(|r| r.partial_success).unwrap_or_default();
            return Ok(Delivered { rejected_spans: partial.rejected_spans.max(0) as u64, message: partial.error_message });
        }
        let text = String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).into_owned();
        let message = format!("{}: HTTP {status}: {}", self.url, text.trim());
        if is_retryable(status) {
            Err(SendError::Retryable { message, retry_after })
        } else {
            Err(SendError::Permanent { message })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let now = chrono::DateTime::parse_from_rfc3339("2015-10-21T07:28:00Z").unwrap().with_timezone(&chrono::Utc);
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after("soon", now), None);
        assert!(is_retryable(503) && is_retryable(429) && !is_retryable(400) && !is_retryable(500));
    }
}
