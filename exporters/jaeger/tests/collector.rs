//! The Jaeger exporter against a gRPC CollectorService built from the same proto: batches
//! arrive per process with spans, tags and references; UNAVAILABLE is retryable.

use std::sync::{Arc, Mutex};

use kausal_core::config::ComponentConfig;
use kausal_core::otlp::kv_str;
use kausal_core::otlp_resource::Resource;
use kausal_core::otlp_trace::{ResourceSpans, ScopeSpans, Span};
use kausal_exporter_jaeger::JaegerTransport;
use kausal_exporterhelper::{SendError, Transport};
use kausal_proto::jaeger::api_v2::collector_service_server::{CollectorService, CollectorServiceServer};
use kausal_proto::jaeger::api_v2::{Batch, PostSpansRequest, PostSpansResponse};

#[derive(Clone, Default)]
struct Collector {
    got: Arc<Mutex<Vec<Batch>>>,
    down: bool,
}

#[tonic::async_trait]
impl CollectorService for Collector {
    async fn post_spans(&self, r: tonic::Request<PostSpansRequest>) -> Result<tonic::Response<PostSpansResponse>, tonic::Status> {
        if self.down {
            return Err(tonic::Status::unavailable("restarting"));
        }
        self.got.lock().unwrap().extend(r.into_inner().batch);
        Ok(tonic::Response::new(PostSpansResponse {}))
    }
}

async fn serve(c: Collector) -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(CollectorServiceServer::new(c))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(l)),
    );
    addr
}

fn resource(service: &str, names: &[&str]) -> ResourceSpans {
    ResourceSpans {
        resource: Some(Resource { attributes: vec![kv_str("service.name", service)], ..Default::default() }),
        scope_spans: vec![ScopeSpans {
            spans: names
                .iter()
                .enumerate()
                .map(|(i, n)| Span {
                    trace_id: vec![1; 16],
                    span_id: vec![i as u8 + 1; 8],
                    parent_span_id: if i == 0 { vec![] } else { vec![1; 8] },
                    name: n.to_string(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn transport(addr: std::net::SocketAddr) -> JaegerTransport {
    let c = ComponentConfig::from_yaml("jaeger", &format!("endpoint: 'http://{addr}'")).unwrap();
    JaegerTransport::new(&c.parse().unwrap()).unwrap()
}

#[tokio::test]
async fn batches_arrive_per_process() {
    let c = Collector::default();
    let addr = serve(c.clone()).await;
    transport(addr)
        .send(vec![resource("deployments.apps", &["demo", "alice update"]), resource("pods", &["demo-1"])])
        .await
        .unwrap();
    let got = c.got.lock().unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].process.as_ref().unwrap().service_name, "deployments.apps");
    assert_eq!(got[0].spans[1].operation_name, "alice update");
    assert_eq!(got[0].spans[1].references[0].span_id, vec![1; 8]);
    assert_eq!(got[1].process.as_ref().unwrap().service_name, "pods");
}

#[tokio::test]
async fn unavailable_is_retryable() {
    let addr = serve(Collector { down: true, ..Default::default() }).await;
    let err = transport(addr).send(vec![resource("x", &["a"])]).await.unwrap_err();
    assert!(matches!(err, SendError::Retryable { .. }), "{err:?}");
}
