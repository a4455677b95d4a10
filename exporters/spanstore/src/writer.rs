//! The writer task: drains the exporter's queue into group commits, retries failed commits
//! (holding the data, so pressure reaches the pipeline instead of data being dropped) and runs
//! retention.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kausal_core::activity::nanos_of;
use kausal_core::component::{Batch, Component, ComponentError, ConsumeError, Consumer, Exporter, Host};
use kausal_core::otlp_trace::ResourceSpans;
use kausal_core::telemetry::ComponentMetrics;
use kausal_store::Store;
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinHandle;

use crate::config::SpanStoreConfig;

pub struct SpanStoreExporter {
    id: String,
    config: SpanStoreConfig,
    metrics: ComponentMetrics,
    sender: std::sync::Mutex<Option<mpsc::Sender<Vec<ResourceSpans>>>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    store: std::sync::Mutex<Option<Arc<Store>>>,
}

impl SpanStoreExporter {
    pub fn new(id: String, config: SpanStoreConfig, metrics: ComponentMetrics) -> Self {
        SpanStoreExporter {
            id,
            config,
            metrics,
            sender: std::sync::Mutex::new(None),
            tasks: Mutex::new(Vec::new()),
            store: std::sync::Mutex::new(None),
        }
    }

    /// The store this exporter writes, once started.
    pub fn store(&self) -> Option<Arc<Store>> {
        self.store.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

fn span_count(batch: &[ResourceSpans]) -> usize {
    batch.iter().flat_map(|r| &r.scope_spans).map(|s| s.spans.len()).sum()
}

async fn write_loop(
    store: Arc<Store>,
    mut rx: mpsc::Receiver<Vec<ResourceSpans>>,
    max_spans: usize,
    metrics: ComponentMetrics,
    id: String,
) {
    while let Some(first) = rx.recv().await {
        let mut pending = first;
        let mut spans = span_count(&pending);
        while spans < max_spans {
            match rx.try_recv() {
                Ok(more) => {
                    spans += span_count(&more);
                    pending.extend(more);
                }
                Err(_) => break,
            }
        }
        let mut backoff = Duration::from_millis(100);
        loop {
            let store = store.clone();
            // The batch moves into the blocking task and comes back, so a failed commit is
            // retried with the same data.
            let result = tokio::task::spawn_blocking(move || {
                let r = store.write(&pending);
                (r, pending)
            })
            .await;
            match result {
                Ok((Ok(stats), _)) => {
                    metrics.sent.inc_by(spans as u64);
                    if stats.rejected > 0 {
                        metrics.failed.inc_by(stats.rejected as u64);
                    }
                    break;
                }
                Ok((Err(e), back)) => {
                    tracing::error!(exporter = %id, error = %e, spans, "store write failed; retrying");
                    pending = back;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
                Err(join) => {
                    // The write panicked: the data is gone with the task; say so loudly.
                    metrics.dropped.inc_by(spans as u64);
                    tracing::error!(exporter = %id, error = %join, spans, "store write task failed; batch lost");
                    break;
                }
            }
        }
    }
}

async fn retention_loop(store: Arc<Store>, every: Duration, retention: Duration, id: String) {
    let mut ticker = tokio::time::interval(every);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let store = store.clone();
        let cutoff = nanos_of(chrono::Utc::now()).saturating_sub(i64::try_from(retention.as_nanos()).unwrap_or(i64::MAX));
        match tokio::task::spawn_blocking(move || store.delete_before(cutoff)).await {
            Ok(Ok(stats)) if stats.windows > 0 => {
                tracing::info!(exporter = %id, windows = stats.windows, activities = stats.activities, "deleted expired windows");
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(exporter = %id, error = %e, "retention failed"),
            Err(e) => tracing::error!(exporter = %id, error = %e, "retention task failed"),
        }
    }
}

#[async_trait]
impl Component for SpanStoreExporter {
    async fn start(&self, _host: &Host) -> Result<(), ComponentError> {
        let dir = self.config.directory.clone();
        let options = self.config.store_options();
        let store = tokio::task::spawn_blocking(move || Store::open(&dir, options))
            .await
            .map_err(|e| ComponentError::new(&self.id, e))?
            .map_err(|e| ComponentError::new(&self.id, format!("cannot open store in {}: {e}", self.config.directory.display())))?;
        *self.store.lock().unwrap_or_else(|p| p.into_inner()) = Some(store.clone());
        let (tx, rx) = mpsc::channel(self.config.queue_batches);
        *self.sender.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
        let mut tasks = self.tasks.lock().await;
        tasks.push(tokio::spawn(write_loop(
            store.clone(),
            rx,
            self.config.max_commit_spans,
            self.metrics.clone(),
            self.id.clone(),
        )));
        tasks.push(tokio::spawn(retention_loop(
            store,
            self.config.retention_check_interval,
            self.config.retention,
            self.id.clone(),
        )));
        tracing::info!(exporter = %self.id, directory = %self.config.directory.display(), "span store open");
        Ok(())
    }

    async fn shutdown(&self) -> Result<(), ComponentError> {
        // Closing the queue lets the writer finish what it holds, then end.
        self.sender.lock().unwrap_or_else(|p| p.into_inner()).take();
        let mut tasks = self.tasks.lock().await;
        if let Some(writer) = (!tasks.is_empty()).then(|| tasks.remove(0)) {
            let _ = writer.await;
        }
        for t in tasks.drain(..) {
            t.abort();
        }
        if let Some(store) = self.store() {
            let synced = tokio::task::spawn_blocking(move || store.flush()).await;
            if let Ok(Err(e)) = synced {
                return Err(ComponentError::new(&self.id, format!("final sync failed: {e}")));
            }
        }
        Ok(())
    }
}

impl Exporter for SpanStoreExporter {}

#[async_trait]
impl Consumer for SpanStoreExporter {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        let spans = match batch {
            Batch::Spans(s) => s,
            other => {
                return Err(ConsumeError::permanent(format!(
                    "spanstore stores spans, not {}; put the spanbuilder processor before it",
                    other.kind()
                )));
            }
        };
        self.metrics.received.inc_by(span_count(&spans) as u64);
        let sender = self.sender.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match sender {
            Some(s) => s.send(spans).await.map_err(|_| ConsumeError::retryable("span store is shutting down")),
            None => Err(ConsumeError::retryable("span store is not running")),
        }
    }
}
