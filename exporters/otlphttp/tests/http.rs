//! The OTLP/HTTP exporter against a small fake backend: bodies as protobuf or JSON with gzip or
//! zstd, status codes mapped to retryable or permanent, `Retry-After` honoured, partial
//! success read back.

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use kausal_core::config::ComponentConfig;
use kausal_core::otlp_trace::{ResourceSpans, ScopeSpans, Span};
use kausal_exporter_otlphttp::HttpTransport;
use kausal_exporterhelper::{SendError, Transport};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse};
use prost::Message;

#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<(HeaderMap, ExportTraceServiceRequest)>>>);

async fn backend(answer: (u16, Vec<(&'static str, String)>, Vec<u8>)) -> (String, Seen) {
    let seen = Seen::default();
    let s = seen.clone();
    let app = Router::new().route(
        "/v1/traces",
        post(move |headers: HeaderMap, body: Bytes| {
            let s = s.clone();
            let answer = answer.clone();
            async move {
                let mut raw = Vec::new();
                match headers.get("content-encoding").and_then(|v| v.to_str().ok()) {
                    Some("gzip") => {
                        flate2::read::GzDecoder::new(body.as_ref()).read_to_end(&mut raw).unwrap();
                    }
                    Some("zstd") => raw = zstd::decode_all(body.as_ref()).unwrap(),
                    _ => raw = body.to_vec(),
                }
                let req = if headers["content-type"] == "application/json" {
                    serde_json::from_slice(&raw).unwrap()
                } else {
                    ExportTraceServiceRequest::decode(raw.as_slice()).unwrap()
                };
                s.0.lock().unwrap().push((headers, req));
                let mut r = (StatusCode::from_u16(answer.0).unwrap(), answer.2).into_response();
                for (k, v) in answer.1 {
                    r.headers_mut().insert(k, v.parse().unwrap());
                }
                r
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), seen)
}

fn transport(yaml: &str) -> HttpTransport {
    let c = ComponentConfig::from_yaml("otlphttp", yaml).unwrap();
    HttpTransport::new(&c.parse().unwrap()).unwrap()
}

fn spans() -> Vec<ResourceSpans> {
    vec![ResourceSpans {
        scope_spans: vec![ScopeSpans {
            spans: vec![Span { trace_id: vec![1; 16], span_id: vec![2; 8], name: "op".into(), ..Default::default() }],
            ..Default::default()
        }],
        ..Default::default()
    }]
}

#[tokio::test]
async fn protobuf_json_gzip_zstd_and_headers() {
    let (url, seen) = backend((200, vec![], vec![])).await;
    for (encoding, compression) in [("proto", "gzip"), ("json", "zstd"), ("json", "none"), ("proto", "none")] {
        let t = transport(&format!(
            "{{endpoint: '{url}', encoding: {encoding}, compression: {compression}, headers: {{x-tenant: blue}}}}"
        ));
        let d = t.send(spans()).await.unwrap();
        assert_eq!(d.rejected_spans, 0);
    }
    let seen = seen.0.lock().unwrap();
    assert_eq!(seen.len(), 4);
    for (headers, req) in seen.iter() {
        assert_eq!(req.resource_spans, spans());
        assert_eq!(headers["x-tenant"], "blue");
    }
    assert_eq!(seen[1].0["content-type"], "application/json");
}

#[tokio::test]
async fn statuses_map_to_retryable_or_permanent() {
    let (url, _) = backend((503, vec![("retry-after", "7".into())], b"busy".to_vec())).await;
    match transport(&format!("endpoint: '{url}'")).send(spans()).await.unwrap_err() {
        SendError::Retryable { retry_after, message } => {
            assert_eq!(retry_after, Some(Duration::from_secs(7)));
            assert!(message.contains("503") && message.contains("busy"), "{message}");
        }
        e => panic!("{e:?}"),
    }
    let (url, _) = backend((429, vec![], vec![])).await;
    assert!(matches!(transport(&format!("endpoint: '{url}'")).send(spans()).await, Err(SendError::Retryable { .. })));
    let (url, _) = backend((400, vec![], b"bad span".to_vec())).await;
    assert!(matches!(transport(&format!("endpoint: '{url}'")).send(spans()).await, Err(SendError::Permanent { .. })));
    // Nobody listening: retryable.
    let err = transport("endpoint: 'http://127.0.0.1:1'").send(spans()).await.unwrap_err();
    assert!(matches!(err, SendError::Retryable { .. }), "{err:?}");
}

#[tokio::test]
async fn partial_success_is_reported() {
    let body = ExportTraceServiceResponse {
        partial_success: Some(ExportTracePartialSuccess { rejected_spans: 1, error_message: "too old".into() }),
    }
    .encode_to_vec();
    let (url, _) = backend((200, vec![("content-type", "application/x-protobuf".into())], body)).await;
    let d = transport(&format!("endpoint: '{url}'")).send(spans()).await.unwrap();
    assert_eq!((d.rejected_spans, d.message.as_str()), (1, "too old"));
}
