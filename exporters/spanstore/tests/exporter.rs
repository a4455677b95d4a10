//! The exporter writes what it accepts, and everything accepted before shutdown is in the store
//! when it is opened again.

use kausal_core::component::{Batch, Component, Consumer, Host};
use kausal_core::config::ComponentConfig;
use kausal_core::conventions::{Window, attr, object_span_id, object_trace_id, span_type};
use kausal_core::object::ObjectKey;
use kausal_core::otlp::{kv_int, kv_str};
use kausal_core::otlp_trace::{ResourceSpans, ScopeSpans, Span};
use kausal_core::telemetry::ComponentMetrics;
use kausal_exporter_spanstore::{SpanStoreConfig, SpanStoreExporter};

const WINDOW: i64 = 30 * 60 * 1_000_000_000;

fn spans(key: &ObjectKey, n: usize) -> Vec<ResourceSpans> {
    let start = 1_700_000_000_000_000_000i64;
    let w = Window::containing(start, WINDOW);
    let mut out = vec![Span {
        trace_id: object_trace_id(key, w).to_vec(),
        span_id: object_span_id(key, w).to_vec(),
        name: "pods ns/p".into(),
        start_time_unix_nano: w.start as u64,
        end_time_unix_nano: w.end() as u64,
        attributes: vec![
            kv_str(attr::SPAN_TYPE, span_type::OBJECT),
            kv_str(attr::CLUSTER, &key.cluster),
            kv_str(attr::OBJECT_GROUP, &key.group),
            kv_str(attr::OBJECT_RESOURCE, &key.resource),
            kv_str(attr::NAMESPACE, &key.namespace),
            kv_str(attr::OBJECT_NAME, &key.name),
            kv_int(attr::WINDOW_START, w.start),
            kv_int(attr::WINDOW_LENGTH, w.length),
        ],
        ..Default::default()
    }];
    for i in 0..n {
        out.push(Span {
            trace_id: object_trace_id(key, w).to_vec(),
            span_id: ((i as u64) + 1).to_be_bytes().to_vec(),
            parent_span_id: object_span_id(key, w).to_vec(),
            name: format!("u update {i}"),
            start_time_unix_nano: (start + i as i64) as u64,
            end_time_unix_nano: (start + i as i64 + 10) as u64,
            attributes: vec![kv_str(attr::SPAN_TYPE, span_type::AUDIT)],
            ..Default::default()
        });
    }
    vec![ResourceSpans { resource: None, scope_spans: vec![ScopeSpans { scope: None, spans: out, schema_url: String::new() }], schema_url: String::new() }]
}

#[tokio::test]
async fn accepted_spans_are_durable_after_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let exporter = SpanStoreExporter::new("spanstore".into(), exporter_config(dir.path()), ComponentMetrics::default());
    // Shutdown without start is safe.
    exporter.shutdown().await.unwrap();
    let exporter = SpanStoreExporter::new("spanstore".into(), exporter_config(dir.path()), ComponentMetrics::default());
    exporter.start(&Host::default()).await.unwrap();
    let key = ObjectKey::new("c", "", "pods", "ns", "p");
    for _ in 0..3 {
        exporter.consume(Batch::Spans(spans(&key, 100))).await.unwrap();
    }
    // Activities are refused permanently with a hint.
    let err = exporter.consume(Batch::Activities(vec![])).await.unwrap_err();
    assert!(!err.is_retryable() && err.to_string().contains("spanbuilder"), "{err}");
    exporter.shutdown().await.unwrap();
    exporter.shutdown().await.unwrap();
    drop(exporter);

    let store = kausal_store::Store::open(dir.path(), Default::default()).unwrap();
    let snap = store.read().unwrap();
    let windows = snap.object_windows(&key, 0, i64::MAX).unwrap();
    assert_eq!(windows.len(), 1);
    let w = Window::containing(1_700_000_000_000_000_000, WINDOW);
    let acts = snap.activities(object_span_id(&key, w), 0, i64::MAX).unwrap();
    assert_eq!(acts.len(), 100, "re-sent activity spans are stored once");
}

fn exporter_config(dir: &std::path::Path) -> SpanStoreConfig {
    ComponentConfig::from_yaml("spanstore", &format!("directory: {}\n", dir.display()))
        .unwrap()
        .parse()
        .unwrap()
}
