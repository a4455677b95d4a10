//! The gRPC side: `jaeger.api_v2.CollectorService/PostSpans`, one call per Jaeger batch
//! (process). Status codes are classified like OTLP/gRPC's (UNAVAILABLE and friends retried).
//! A retried export sends all of its batches again, so a failure after a partial send can
//! duplicate spans; Jaeger stores spans by id and shows such duplicates once.

use async_trait::async_trait;
use kausal_core::otlp_trace::ResourceSpans;
use kausal_exporterhelper::tls::read_client_pem;
use kausal_exporterhelper::{Delivered, SendError, Transport};
use kausal_proto::jaeger::api_v2::PostSpansRequest;
use kausal_proto::jaeger::api_v2::collector_service_client::CollectorServiceClient;
use tonic::Code;
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::config::Config;
use crate::model::to_batches;

pub struct JaegerTransport {
    client: CollectorServiceClient<Channel>,
    headers: Vec<(AsciiMetadataKey, AsciiMetadataValue)>,
    endpoint: String,
}

impl JaegerTransport {
    pub fn new(config: &Config) -> Result<JaegerTransport, (String, String)> {
        let (uri, tls) = config.target().map_err(|m| ("endpoint".to_string(), m))?;
        let mut endpoint = Endpoint::from_shared(uri.clone())
            .map_err(|e| ("endpoint".to_string(), format!("invalid endpoint {uri:?}: {e}")))?
            .connect_timeout(config.timeout);
        if tls {
            if config.tls.insecure_skip_verify {
                return Err(("tls.insecure_skip_verify".into(), "not supported; give the server's CA in tls.ca_file".into()));
            }
            let pem = read_client_pem(&config.tls)?;
            let mut t = match pem.ca {
                Some(ca) => ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)),
                None => ClientTlsConfig::new().with_native_roots(),
            };
            if let Some((c, k)) = pem.identity {
                t = t.identity(Identity::from_pem(c, k));
            }
            if let Some(n) = &config.tls.server_name_override {
                t = t.domain_name(n.clone());
            }
            endpoint = endpoint.tls_config(t).map_err(|e| ("tls".to_string(), format!("cannot set up TLS: {e}")))?;
        }
        let mut headers = Vec::new();
        for (k, v) in &config.headers {
            let key: AsciiMetadataKey =
                k.to_ascii_lowercase().parse().map_err(|_| (format!("headers.{k}"), "invalid gRPC metadata name".to_string()))?;
            let value: AsciiMetadataValue = v.parse().map_err(|_| (format!("headers.{k}"), "invalid gRPC metadata value".to_string()))?;
            headers.push((key, value));
        }
        Ok(JaegerTransport { client: CollectorServiceClient::new(endpoint.connect_lazy()), headers, endpoint: uri })
    }
}

fn classify(endpoint: &str, status: &tonic::Status) -> SendError {
    let message = format!("{endpoint}: {:?}: {}", status.code(), status.message());
    match status.code() {
        Code::Cancelled | Code::DeadlineExceeded | Code::Aborted | Code::OutOfRange | Code::Unavailable | Code::DataLoss
        | Code::ResourceExhausted => SendError::Retryable { message, retry_after: None },
        _ => SendError::Permanent { message },
    }
}

#[async_trait]
impl Transport for JaegerTransport {
    async fn send(&self, spans: Vec<ResourceSpans>) -> Result<Delivered, SendError> {
        for batch in to_batches(&spans) {
            let mut request = tonic::Request::new(PostSpansRequest { batch: Some(batch) });
            for (k, v) in &self.headers {
                request.metadata_mut().insert(k.clone(), v.clone());
            }
            self.client.clone().post_spans(request).await.map_err(|s| classify(&self.endpoint, &s))?;
        }
        Ok(Delivered::default())
    }
}
