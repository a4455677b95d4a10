//! The receiver seen from clients: kausal's own OTLP/gRPC exporter, and plain HTTP clients
//! posting protobuf, JSON and gzip bodies; spans arrive unchanged, refusals become the
//! protocol's backpressure answers.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use kausal_core::component::{Batch, Component, ComponentId, Consumer, ConsumeError, CreateContext, Host};
use kausal_core::config::ComponentConfig;
use kausal_core::otlp::kv_str;
use kausal_core::otlp_resource::Resource;
use kausal_core::otlp_trace::{ResourceSpans, ScopeSpans, Span};
use kausal_core::telemetry::Telemetry;
use kausal_exporterhelper::{SendError, Transport};
use kausal_receiver_otlp::OtlpReceiver;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

#[derive(Default)]
struct Sink {
    got: Mutex<Vec<ResourceSpans>>,
    refuse: Mutex<Option<ConsumeError>>,
}

#[async_trait]
impl Consumer for Sink {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        if let Some(e) = self.refuse.lock().unwrap().clone() {
            return Err(e);
        }
        if let Batch::Spans(s) = batch {
            self.got.lock().unwrap().extend(s);
        }
        Ok(())
    }
}

fn sample() -> Vec<ResourceSpans> {
    vec![ResourceSpans {
        resource: Some(Resource { attributes: vec![kv_str("service.name", "checkout")], ..Default::default() }),
        scope_spans: vec![ScopeSpans {
            spans: vec![
                Span {
                    trace_id: vec![7; 16],
                    span_id: vec![1; 8],
                    name: "GET /cart".into(),
                    kind: 2,
                    start_time_unix_nano: 1_700_000_000_000_000_000,
                    end_time_unix_nano: 1_700_000_000_500_000_000,
                    attributes: vec![kv_str("http.route", "/cart")],
                    ..Default::default()
                },
                Span {
                    trace_id: vec![7; 16],
                    span_id: vec![2; 8],
                    parent_span_id: vec![1; 8],
                    name: "SELECT".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        }],
        ..Default::default()
    }]
}

async fn start(sink: Arc<Sink>) -> OtlpReceiver {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cfg = ComponentConfig::from_yaml(
        "otlp",
        "protocols: {grpc: {endpoint: '127.0.0.1:0'}, http: {endpoint: '127.0.0.1:0', max_request_body_size: 64KiB}}",
    )
    .unwrap();
    let t = Telemetry::default();
    let ctx = CreateContext { id: ComponentId::parse("otlp").unwrap(), metrics: t.component("receiver", "otlp"), telemetry: t };
    let r = OtlpReceiver::new(ctx, &cfg, sink).unwrap();
    r.start(&Host::default()).await.unwrap();
    r
}

fn grpc_client(addr: std::net::SocketAddr) -> kausal_exporter_otlp::GrpcTransport {
    let cfg = ComponentConfig::from_yaml("otlp", &format!("{{endpoint: 'http://{addr}', compression: zstd}}")).unwrap();
    kausal_exporter_otlp::GrpcTransport::new(&cfg.parse().unwrap()).unwrap()
}

#[tokio::test]
async fn grpc_export_arrives_unchanged() {
    let sink = Arc::new(Sink::default());
    let r = start(sink.clone()).await;
    let client = grpc_client(r.grpc_addr().unwrap());
    let delivered = client.send(sample()).await.unwrap();
    assert_eq!(delivered.rejected_spans, 0);
    assert_eq!(*sink.got.lock().unwrap(), sample());
    r.shutdown().await.unwrap();
}

#[tokio::test]
async fn grpc_backpressure_carries_retry_info() {
    let sink = Arc::new(Sink::default());
    *sink.refuse.lock().unwrap() =
        Some(ConsumeError::Retryable { message: "pipeline full".into(), retry_after: Some(Duration::from_secs(2)) });
    let r = start(sink.clone()).await;
    let err = grpc_client(r.grpc_addr().unwrap()).send(sample()).await.unwrap_err();
    match err {
        SendError::Retryable { retry_after, message } => {
            assert_eq!(retry_after, Some(Duration::from_secs(2)));
            assert!(message.contains("ResourceExhausted"), "{message}");
        }
        other => panic!("expected a retryable error, got {other:?}"),
    }
    *sink.refuse.lock().unwrap() = Some(ConsumeError::permanent("wrong kind"));
    let err = grpc_client(r.grpc_addr().unwrap()).send(sample()).await.unwrap_err();
    assert!(matches!(err, SendError::Permanent { .. }), "{err:?}");
    r.shutdown().await.unwrap();
}

#[tokio::test]
async fn http_accepts_protobuf_json_and_gzip() {
    let sink = Arc::new(Sink::default());
    let r = start(sink.clone()).await;
    let url = format!("http://{}/v1/traces", r.http_addr().unwrap());
    let client = reqwest::Client::new();
    let body = ExportTraceServiceRequest { resource_spans: sample() };

    let resp = client.post(&url).header("content-type", "application/x-protobuf").body(body.encode_to_vec()).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/x-protobuf");

    let json = serde_json::to_vec(&body).unwrap();
    let text = String::from_utf8(json.clone()).unwrap();
    assert!(text.contains("\"traceId\":\"07070707070707070707070707070707\""), "OTLP/JSON uses hex ids: {text}");
    let resp = client.post(&url).header("content-type", "application/json").body(json).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "{}");

    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &body.encode_to_vec()).unwrap();
    let resp = client
        .post(&url)
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "gzip")
        .body(gz.finish().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let got = sink.got.lock().unwrap().clone();
    assert_eq!(got, [sample(), sample(), sample()].concat());
    r.shutdown().await.unwrap();
}

#[tokio::test]
async fn http_refusals_use_status_codes_and_retry_after() {
    let sink = Arc::new(Sink::default());
    let r = start(sink.clone()).await;
    let url = format!("http://{}/v1/traces", r.http_addr().unwrap());
    let client = reqwest::Client::new();
    let body = ExportTraceServiceRequest { resource_spans: sample() }.encode_to_vec();
    let post = |ct: &'static str, b: Vec<u8>| client.post(&url).header("content-type", ct).body(b).send();

    assert_eq!(post("application/x-protobuf", b"\xff\xff\xff".to_vec()).await.unwrap().status(), 400);
    assert_eq!(post("text/plain", body.clone()).await.unwrap().status(), 415);
    assert_eq!(post("application/x-protobuf", vec![0u8; 70 * 1024]).await.unwrap().status(), 413);

    *sink.refuse.lock().unwrap() =
        Some(ConsumeError::Retryable { message: "pipeline full".into(), retry_after: Some(Duration::from_millis(1500)) });
    let resp = post("application/x-protobuf", body.clone()).await.unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "2");
    *sink.refuse.lock().unwrap() = Some(ConsumeError::retryable("shutting down"));
    let json = serde_json::to_vec(&ExportTraceServiceRequest { resource_spans: sample() }).unwrap();
    let resp = post("application/json", json).await.unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
    assert!(resp.text().await.unwrap().contains("shutting down"));
    r.shutdown().await.unwrap();
}
