//! The batch processor between a source and a recording consumer: batches by size, by time,
//! split to the maximum, flushed at shutdown, and retried when downstream pushes back.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use kausal_core::component::{Batch, Component, ComponentId, Consumer, ConsumeError, Host};
use kausal_core::otlp_trace::{ResourceSpans, ScopeSpans, Span};
use kausal_core::telemetry::Telemetry;
use kausal_processor_batch::{BatchProcessor, Config};

#[derive(Default)]
struct Recorder {
    sizes: Mutex<Vec<usize>>,
    refusals_left: AtomicUsize,
}

#[async_trait]
impl Consumer for Recorder {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        if self.refusals_left.load(Ordering::SeqCst) > 0 {
            self.refusals_left.fetch_sub(1, Ordering::SeqCst);
            return Err(ConsumeError::Retryable { message: "full".into(), retry_after: Some(Duration::from_millis(10)) });
        }
        self.sizes.lock().unwrap().push(batch.len());
        Ok(())
    }
}

fn spans(n: usize) -> Batch {
    Batch::Spans(vec![ResourceSpans {
        scope_spans: vec![ScopeSpans { spans: vec![Span::default(); n], ..Default::default() }],
        ..Default::default()
    }])
}

fn processor(config: Config, next: Arc<Recorder>) -> BatchProcessor {
    BatchProcessor::new(ComponentId::parse("batch").unwrap(), config, next, Telemetry::default().component("processor", "batch"))
}

#[tokio::test]
async fn by_size_by_time_split_and_flushed_at_shutdown() {
    let rec = Arc::new(Recorder::default());
    let config = Config { send_batch_size: 100, send_batch_max_size: 150, timeout: Duration::from_millis(300), ..Config::default() };
    let p = processor(config, rec.clone());
    p.start(&Host::default()).await.unwrap();
    for _ in 0..10 {
        p.consume(spans(10)).await.unwrap();
    }
    p.consume(spans(200)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(*rec.sizes.lock().unwrap(), vec![100, 150, 50], "size triggers, max splits");
    p.consume(spans(7)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rec.sizes.lock().unwrap().last(), Some(&7), "timeout flushes");
    p.consume(spans(3)).await.unwrap();
    p.shutdown().await.unwrap();
    assert_eq!(rec.sizes.lock().unwrap().last(), Some(&3), "shutdown flushes");
    assert!(p.consume(spans(1)).await.unwrap_err().is_retryable());
}

#[tokio::test]
async fn downstream_refusals_are_retried_and_pending_input_is_bounded() {
    let rec = Arc::new(Recorder::default());
    rec.refusals_left.store(3, Ordering::SeqCst);
    let config = Config { send_batch_size: 10, max_pending_items: 20, timeout: Duration::from_secs(10), ..Config::default() };
    let p = processor(config, rec.clone());
    p.start(&Host::default()).await.unwrap();
    p.consume(spans(10)).await.unwrap();
    p.consume(spans(10)).await.unwrap();
    // 20 pending while the first batch is being retried: the next is refused.
    let err = p.consume(spans(5)).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(*rec.sizes.lock().unwrap(), vec![10, 10]);
    p.consume(spans(5)).await.unwrap();
    p.shutdown().await.unwrap();
    assert_eq!(*rec.sizes.lock().unwrap(), vec![10, 10, 5]);
}
