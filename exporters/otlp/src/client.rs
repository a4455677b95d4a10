//! The gRPC side: a lazily connected tonic channel (TLS, mTLS, compression, metadata) and the
//! mapping of an export's answer to the helper's outcomes, as the OTLP specification asks:
//! CANCELLED, DEADLINE_EXCEEDED, ABORTED, OUT_OF_RANGE, UNAVAILABLE and DATA_LOSS are retried;
//! RESOURCE_EXHAUSTED only when the server sent RetryInfo; every other code is permanent.
//! RetryInfo's delay is the minimum wait before the next attempt.

use async_trait::async_trait;
use kausal_core::otlp_trace::ResourceSpans;
use kausal_exporterhelper::tls::read_client_pem;
use kausal_exporterhelper::{Compression, Delivered, SendError, Transport};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use tonic::Code;
use tonic::codec::CompressionEncoding;
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic_types::StatusExt;

use crate::config::Config;

pub struct GrpcTransport {
    client: TraceServiceClient<Channel>,
    headers: Vec<(AsciiMetadataKey, AsciiMetadataValue)>,
    endpoint: String,
}

impl GrpcTransport {
    /// Builds the client without connecting (the first export connects). Errors are
    /// `(key relative to the section, message)`.
    pub fn new(config: &Config) -> Result<GrpcTransport, (String, String)> {
        let (uri, tls) = config.target().map_err(|m| ("endpoint".to_string(), m))?;
        let mut endpoint = Endpoint::from_shared(uri.clone())
            .map_err(|e| ("endpoint".to_string(), format!("invalid endpoint {uri:?}: {e}")))?
            .connect_timeout(config.timeout)
            .tcp_nodelay(true);
        if tls {
            if config.tls.insecure_skip_verify {
                return Err((
                    "tls.insecure_skip_verify".into(),
                    "not supported by the otlp (gRPC) exporter; give the server's CA in tls.ca_file".into(),
                ));
            }
            let pem = read_client_pem(&config.tls)?;
            let mut t = ClientTlsConfig::new();
            t = match pem.ca {
                Some(ca) => t.ca_certificate(Certificate::from_pem(ca)),
                None => t.with_native_roots(),
            };
            if let Some((cert, key)) = pem.identity {
                t = t.identity(Identity::from_pem(cert, key));
            }
            if let Some(name) = &config.tls.server_name_override {
                t = t.domain_name(name.clone());
            }
            endpoint = endpoint
                .tls_config(t)
                .map_err(|e| ("tls".to_string(), format!("cannot set up TLS: {e}")))?;
        }
        let mut client = TraceServiceClient::new(endpoint.connect_lazy());
        match config.compression {
            Compression::None => {}
            Compression::Gzip => client = client.send_compressed(CompressionEncoding::Gzip),
            Compression::Zstd => client = client.send_compressed(CompressionEncoding::Zstd),
        }
        client = client
            .accept_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Zstd)
            .max_decoding_message_size(16 * 1024 * 1024)
            .max_encoding_message_size(usize::MAX);
        let mut headers = Vec::new();
        for (k, v) in &config.headers {
            let key: AsciiMetadataKey = k
                .to_ascii_lowercase()
                .parse()
                .map_err(|_| (format!("headers.{k}"), "invalid gRPC metadata name".to_string()))?;
            let value: AsciiMetadataValue =
                v.parse().map_err(|_| (format!("headers.{k}"), "invalid gRPC metadata value".to_string()))?;
            headers.push((key, value));
        }
        Ok(GrpcTransport { client, headers, endpoint: uri })
    }
}

/// The helper's view of a failed export.
pub fn classify(status: &tonic::Status) -> SendError {
    let retry_after = status.get_details_retry_info().and_then(|r| r.retry_delay);
    let message = format!("{:?}: {}", status.code(), status.message());
    match status.code() {
        Code::Cancelled | Code::DeadlineExceeded | Code::Aborted | Code::OutOfRange | Code::Unavailable | Code::DataLoss => {
            SendError::Retryable { message, retry_after }
        }
        Code::ResourceExhausted if retry_after.is_some() => SendError::Retryable { message, retry_after },
        _ => SendError::Permanent { message },
    }
}

#[async_trait]
impl Transport for GrpcTransport {
    async fn send(&self, spans: Vec<ResourceSpans>) -> Result<Delivered, SendError> {
        let mut request = tonic::Request::new(ExportTraceServiceRequest { resource_spans: spans });
        for (k, v) in &self.headers {
            request.metadata_mut().insert(k.clone(), v.clone());
        }
        let mut client = self.client.clone();
        match client.export(request).await {
            Ok(response) => {
                let partial = response.into_inner().partial_success.unwrap_or_default();
                Ok(Delivered { rejected_spans: partial.rejected_spans.max(0) as u64, message: partial.error_message })
            }
            Err(status) => Err(match classify(&status) {
                SendError::Retryable { message, retry_after } => {
                    SendError::Retryable { message: format!("{}: {message}", self.endpoint), retry_after }
                }
                SendError::Permanent { message } => SendError::Permanent { message: format!("{}: {message}", self.endpoint) },
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn status_codes_follow_the_otlp_specification() {
        assert!(matches!(classify(&tonic::Status::unavailable("down")), SendError::Retryable { retry_after: None, .. }));
        assert!(matches!(classify(&tonic::Status::invalid_argument("bad")), SendError::Permanent { .. }));
        assert!(matches!(classify(&tonic::Status::resource_exhausted("full")), SendError::Permanent { .. }));
        let with_hint = tonic::Status::with_error_details(
            Code::ResourceExhausted,
            "full",
            tonic_types::ErrorDetails::with_retry_info(Some(Duration::from_secs(3))),
        );
        assert_eq!(
            classify(&with_hint),
            SendError::Retryable { message: "ResourceExhausted: full".into(), retry_after: Some(Duration::from_secs(3)) }
        );
        assert!(matches!(classify(&tonic::Status::permission_denied("no")), SendError::Permanent { .. }));
        assert!(matches!(classify(&tonic::Status::data_loss("x")), SendError::Retryable { .. }));
    }
}
