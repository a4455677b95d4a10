//! The exporter helper seen from a pipeline: a flaky or dead backend, retries with backoff,
//! permanent failures, backpressure from a full queue, and a persistent queue across restarts.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use kausal_core::component::{Batch, Component, ComponentId, Consumer, Host};
use kausal_core::otlp_trace::{ResourceSpans, ScopeSpans, Span};
use kausal_core::telemetry::Telemetry;
use kausal_exporterhelper::{
    BatchConfig, Delivered, HelperConfig, QueueConfig, QueuedExporter, RetryConfig, SendError, Transport,
};

/// A backend that is down (retryable) while `down` is set, and records what it received.
#[derive(Clone, Default)]
struct Backend {
    down: Arc<std::sync::atomic::AtomicBool>,
    permanent: Arc<std::sync::atomic::AtomicBool>,
    attempts: Arc<AtomicUsize>,
    received: Arc<Mutex<Vec<String>>>,
    batches: Arc<AtomicUsize>,
}

#[async_trait]
impl Transport for Backend {
    async fn send(&self, spans: Vec<ResourceSpans>) -> Result<Delivered, SendError> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        if self.permanent.load(Ordering::SeqCst) {
            return Err(SendError::permanent("400 Bad Request"));
        }
        if self.down.load(Ordering::SeqCst) {
            return Err(SendError::Retryable { message: "503".into(), retry_after: None });
        }
        self.batches.fetch_add(1, Ordering::SeqCst);
        let mut r = self.received.lock().unwrap();
        for s in spans.iter().flat_map(|r| &r.scope_spans).flat_map(|s| &s.spans) {
            r.push(s.name.clone());
        }
        Ok(Delivered::default())
    }
}

fn spans(names: &[&str]) -> Batch {
    Batch::Spans(vec![ResourceSpans {
        scope_spans: vec![ScopeSpans {
            spans: names.iter().map(|n| Span { name: n.to_string(), ..Default::default() }).collect(),
            ..Default::default()
        }],
        ..Default::default()
    }])
}

fn fast_retries() -> RetryConfig {
    RetryConfig {
        initial_interval: Duration::from_millis(20),
        max_interval: Duration::from_millis(50),
        max_elapsed_time: Duration::from_secs(30),
        ..RetryConfig::default()
    }
}

fn exporter(backend: &Backend, config: HelperConfig, telemetry: &Telemetry) -> QueuedExporter<Backend> {
    QueuedExporter::new(
        ComponentId::parse("otlp").unwrap(),
        backend.clone(),
        config,
        telemetry.component("exporter", "otlp"),
    )
}

async fn wait_until(what: &str, f: impl Fn() -> bool) {
    for _ in 0..500 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn an_outage_delays_but_loses_and_duplicates_nothing() {
    let backend = Backend::default();
    backend.down.store(true, Ordering::SeqCst);
    let telemetry = Telemetry::default();
    let config = HelperConfig { retry_on_failure: fast_retries(), ..HelperConfig::default() };
    let e = exporter(&backend, config, &telemetry);
    e.start(&Host::default()).await.unwrap();
    for i in 0..20 {
        e.consume(spans(&[&format!("a{i}"), &format!("b{i}")])).await.unwrap();
    }
    wait_until("retries", || backend.attempts.load(Ordering::SeqCst) > 40).await;
    assert!(backend.received.lock().unwrap().is_empty());
    backend.down.store(false, Ordering::SeqCst);
    wait_until("delivery", || backend.received.lock().unwrap().len() == 40).await;
    e.shutdown().await.unwrap();
    let mut got = backend.received.lock().unwrap().clone();
    got.sort();
    got.dedup();
    assert_eq!(got.len(), 40, "every span exactly once");
    let text = telemetry.encode();
    assert!(text.contains(r#"outcome="sent"} 40"#), "{text}");
}

#[tokio::test]
async fn permanent_failures_are_not_retried_and_are_counted() {
    let backend = Backend::default();
    backend.permanent.store(true, Ordering::SeqCst);
    let telemetry = Telemetry::default();
    let e = exporter(&backend, HelperConfig { retry_on_failure: fast_retries(), ..HelperConfig::default() }, &telemetry);
    e.start(&Host::default()).await.unwrap();
    e.consume(spans(&["x", "y", "z"])).await.unwrap();
    wait_until("the attempt", || e.pending() == 0).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(backend.attempts.load(Ordering::SeqCst), 1);
    assert!(telemetry.encode().contains(r#"outcome="failed"} 3"#));
    e.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_full_queue_pushes_back_with_a_retryable_error() {
    let backend = Backend::default();
    backend.down.store(true, Ordering::SeqCst);
    let config = HelperConfig {
        retry_on_failure: fast_retries(),
        sending_queue: QueueConfig { num_consumers: 1, queue_size: 2, ..QueueConfig::default() },
        ..HelperConfig::default()
    };
    let e = exporter(&backend, config, &Telemetry::default());
    e.start(&Host::default()).await.unwrap();
    // One in flight, two waiting, the fourth is refused.
    let mut refused = None;
    for i in 0..4 {
        if let Err(err) = e.consume(spans(&[&i.to_string()])).await {
            refused = Some(err);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let err = refused.expect("the queue must fill up");
    assert!(err.is_retryable(), "{err}");
    backend.down.store(false, Ordering::SeqCst);
    wait_until("delivery", || backend.received.lock().unwrap().len() == 3).await;
    e.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_persistent_queue_survives_a_restart_during_an_outage() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Backend::default();
    backend.down.store(true, Ordering::SeqCst);
    let config = HelperConfig {
        retry_on_failure: fast_retries(),
        sending_queue: QueueConfig { storage: Some(dir.path().to_path_buf()), ..QueueConfig::default() },
        ..HelperConfig::default()
    };
    let first = exporter(&backend, config.clone(), &Telemetry::default());
    first.start(&Host::default()).await.unwrap();
    for i in 0..10 {
        first.consume(spans(&[&format!("s{i}")])).await.unwrap();
    }
    wait_until("attempts", || backend.attempts.load(Ordering::SeqCst) >= 10).await;
    first.shutdown().await.unwrap();
    drop(first);

    backend.down.store(false, Ordering::SeqCst);
    let second = exporter(&backend, config.clone(), &Telemetry::default());
    second.start(&Host::default()).await.unwrap();
    second.consume(spans(&["after"])).await.unwrap();
    wait_until("delivery", || backend.received.lock().unwrap().len() == 11).await;
    second.shutdown().await.unwrap();
    let mut got = backend.received.lock().unwrap().clone();
    got.sort();
    assert_eq!(got, vec!["after", "s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9"]);

    // Everything was acknowledged: a third start sends nothing again.
    let third = exporter(&backend, config, &Telemetry::default());
    third.start(&Host::default()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    third.shutdown().await.unwrap();
    assert_eq!(backend.received.lock().unwrap().len(), 11);
}

#[tokio::test]
async fn queued_batches_are_merged_by_size_and_time() {
    let backend = Backend::default();
    let config = HelperConfig {
        sending_queue: QueueConfig {
            num_consumers: 1,
            batch: Some(BatchConfig { flush_timeout: Duration::from_millis(300), min_size: 10, max_size: 10 }),
            ..QueueConfig::default()
        },
        ..HelperConfig::default()
    };
    let e = exporter(&backend, config, &Telemetry::default());
    e.start(&Host::default()).await.unwrap();
    for i in 0..25 {
        e.consume(spans(&[&i.to_string()])).await.unwrap();
    }
    wait_until("delivery", || backend.received.lock().unwrap().len() == 25).await;
    // 10 + 10 by size, the last 5 after the flush timeout.
    assert_eq!(backend.batches.load(Ordering::SeqCst), 3);
    e.shutdown().await.unwrap();
}

#[tokio::test]
async fn without_a_queue_consume_waits_for_the_outcome() {
    let backend = Backend::default();
    backend.permanent.store(true, Ordering::SeqCst);
    let config = HelperConfig {
        sending_queue: QueueConfig { enabled: false, ..QueueConfig::default() },
        ..HelperConfig::default()
    };
    let e = exporter(&backend, config, &Telemetry::default());
    e.start(&Host::default()).await.unwrap();
    let err = e.consume(spans(&["x"])).await.unwrap_err();
    assert!(!err.is_retryable());
    backend.permanent.store(false, Ordering::SeqCst);
    e.consume(spans(&["y"])).await.unwrap();
    assert_eq!(*backend.received.lock().unwrap(), vec!["y"]);
}
