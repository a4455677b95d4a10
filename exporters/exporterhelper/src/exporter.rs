//! The exporter every network exporter is: spans in, [`Transport::send`] out, with grouping,
//! a sending queue, retries and the outcome counted. A transport only knows its protocol; it
//! says for each attempt whether it was delivered (with how many spans the server rejected in a
//! partial success), failed for good, or may be retried (with the server's hint).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use kausal_core::component::{Batch, Component, ComponentError, ComponentId, Consumer, ConsumeError, Exporter, Host};
use kausal_core::otlp_trace::ResourceSpans;
use kausal_core::telemetry::ComponentMetrics;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{Grouping, HelperConfig};
use crate::grouping::{CausalGrouper, OwnerTreeGrouper};
use crate::queue::{Entry, PushError, Queue, count_spans};
use crate::retry::{Backoff, jitter};

/// How long shutdown waits for an in-memory queue to drain before dropping what is left.
const MEMORY_DRAIN_BUDGET: Duration = Duration::from_secs(10);
/// Object spans remembered for owner-tree grouping.
const GROUPING_MEMORY: usize = 200_000;

/// An attempt that reached the server and was accepted, maybe partly.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Delivered {
    /// Spans the server said it rejected (OTLP partial success).
    pub rejected_spans: u64,
    /// The server's explanation, if any.
    pub message: String,
}

/// An attempt that failed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SendError {
    #[error("{message} (retryable)")]
    Retryable { message: String, retry_after: Option<Duration> },
    #[error("{message}")]
    Permanent { message: String },
}

impl SendError {
    pub fn retryable(message: impl Into<String>) -> Self {
        SendError::Retryable { message: message.into(), retry_after: None }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        SendError::Permanent { message: message.into() }
    }
}

/// One protocol's way of sending spans.
#[async_trait]
pub trait Transport: Send + Sync + 'static {
    async fn send(&self, spans: Vec<ResourceSpans>) -> Result<Delivered, SendError>;
}

/// The outcome of a batch after retries.
#[derive(Debug, PartialEq)]
enum Outcome {
    Sent,
    Failed(String),
    Cancelled,
}

struct Inner<T: Transport> {
    id: ComponentId,
    transport: T,
    config: HelperConfig,
    metrics: ComponentMetrics,
    cancel: watch::Sender<bool>,
}

/// A network exporter built from a transport and the shared settings.
pub struct QueuedExporter<T: Transport> {
    inner: Arc<Inner<T>>,
    queue: Mutex<Option<Arc<Queue>>>,
    workers: Mutex<Vec<JoinHandle<()>>>,
    grouper: Option<Mutex<Grouper>>,
    stopped: AtomicBool,
}

impl<T: Transport> QueuedExporter<T> {
    pub fn new(id: ComponentId, transport: T, config: HelperConfig, metrics: ComponentMetrics) -> Self {
        let grouper = match config.grouping {
            Grouping::Object => None,
            Grouping::OwnerTree => Some(Mutex::new(Grouper::OwnerTree(OwnerTreeGrouper::new(GROUPING_MEMORY)))),
            Grouping::Causal => Some(Mutex::new(Grouper::Causal(CausalGrouper::new(GROUPING_MEMORY)))),
        };
        QueuedExporter {
            inner: Arc::new(Inner { id, transport, config, metrics, cancel: watch::channel(false).0 }),
            queue: Mutex::new(None),
            workers: Mutex::new(Vec::new()),
            grouper,
            stopped: AtomicBool::new(false),
        }
    }

    /// The transport (for tests and for exporters that expose details of it).
    pub fn transport(&self) -> &T {
        &self.inner.transport
    }

    /// Batches waiting or being sent.
    pub fn pending(&self) -> usize {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).as_ref().map_or(0, |q| q.pending())
    }
}

impl<T: Transport> Inner<T> {
    /// Sends `spans`, retrying per `retry_on_failure`, until delivered, failed for good, or
    /// cancelled by shutdown. Counts sent and failed spans.
    async fn send_with_retry(&self, spans: Vec<ResourceSpans>, count: usize) -> Outcome {
        let started = tokio::time::Instant::now();
        let mut backoff = Backoff::new(&self.config.retry_on_failure);
        let mut cancel = self.cancel.subscribe();
        loop {
            if *cancel.borrow() {
                return Outcome::Cancelled;
            }
            let attempt = tokio::time::timeout(self.config.timeout, self.transport.send(spans.clone()));
            let result = tokio::select! {
                r = attempt => r,
                _ = cancel.wait_for(|c| *c) => return Outcome::Cancelled,
            };
            let error = match result {
                Ok(Ok(delivered)) => {
                    let rejected = delivered.rejected_spans.min(count as u64);
                    self.metrics.sent.inc_by(count as u64 - rejected);
                    if rejected > 0 {
                        self.metrics.failed.inc_by(rejected);
                        tracing::warn!(exporter = %self.id, rejected, message = %delivered.message, "server rejected part of a batch (partial success)");
                    }
                    return Outcome::Sent;
                }
                Ok(Err(e)) => e,
                Err(_) => SendError::retryable(format!("no answer within {:?}", self.config.timeout)),
            };
            match error {
                SendError::Permanent { message } => {
                    self.metrics.failed.inc_by(count as u64);
                    tracing::error!(exporter = %self.id, spans = count, %message, "export failed permanently; batch dropped");
                    return Outcome::Failed(message);
                }
                SendError::Retryable { message, retry_after } => {
                    match backoff.next_delay(started.elapsed(), retry_after, jitter()) {
                        None => {
                            self.metrics.failed.inc_by(count as u64);
                            tracing::error!(exporter = %self.id, spans = count, %message, elapsed = ?started.elapsed(), "export failed after retries; batch dropped");
                            return Outcome::Failed(message);
                        }
                        Some(delay) => {
                            tracing::warn!(exporter = %self.id, %message, ?delay, "export failed; will retry");
                            tokio::select! {
                                _ = tokio::time::sleep(delay) => {}
                                _ = cancel.wait_for(|c| *c) => return Outcome::Cancelled,
                            }
                        }
                    }
                }
            }
        }
    }
}

fn merge(entries: &[Entry]) -> (Vec<ResourceSpans>, usize) {
    let mut spans = Vec::new();
    let mut count = 0;
    for e in entries {
        spans.extend(e.spans.iter().cloned());
        count += e.count;
    }
    (spans, count)
}

async fn drain<T: Transport>(inner: Arc<Inner<T>>, queue: Arc<Queue>) {
    let batch = inner.config.sending_queue.batch.clone();
    while let Some(entries) = queue.take(batch.as_ref()).await {
        let (spans, count) = if entries.len() == 1 {
            (entries[0].spans.clone(), entries[0].count)
        } else {
            merge(&entries)
        };
        match inner.send_with_retry(spans, count).await {
            Outcome::Sent | Outcome::Failed(_) => {
                let ids: Vec<u64> = entries.iter().map(|e| e.id).collect();
                queue.ack(&ids);
            }
            Outcome::Cancelled => {
                queue.give_back(entries);
                return;
            }
        }
    }
}

#[async_trait]
impl<T: Transport> Component for QueuedExporter<T> {
    async fn start(&self, _host: &Host) -> Result<(), ComponentError> {
        let q = &self.inner.config.sending_queue;
        if !q.enabled {
            return Ok(());
        }
        let queue = Arc::new(Queue::open(q).map_err(|e| ComponentError::new(&self.inner.id, e))?);
        let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        for _ in 0..q.num_consumers {
            workers.push(tokio::spawn(drain(self.inner.clone(), queue.clone())));
        }
        *self.queue.lock().unwrap_or_else(|p| p.into_inner()) = Some(queue);
        Ok(())
    }

    async fn shutdown(&self) -> Result<(), ComponentError> {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let queue = self.queue.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(queue) = &queue {
            queue.close();
            if queue.is_persistent() {
                // What is not delivered now stays on disk for the next run.
                let left = queue.pending();
                if left > 0 {
                    tracing::info!(exporter = %self.inner.id, batches = left, "keeping unsent batches in the persistent queue");
                }
            } else if !queue.wait_empty(MEMORY_DRAIN_BUDGET).await {
                tracing::error!(exporter = %self.inner.id, batches = queue.pending(), "could not deliver everything before shutdown");
            }
        }
        self.inner.cancel.send_replace(true);
        let workers: Vec<JoinHandle<()>> = std::mem::take(&mut *self.workers.lock().unwrap_or_else(|p| p.into_inner()));
        for w in workers {
            let _ = w.await;
        }
        if let Some(queue) = queue
            && !queue.is_persistent()
        {
            let lost: usize = queue.drain_all().iter().map(|e| e.count).sum();
            if lost > 0 {
                self.inner.metrics.dropped.inc_by(lost as u64);
                tracing::error!(exporter = %self.inner.id, spans = lost, "dropped undelivered spans at shutdown (use sending_queue.storage to keep them)");
            }
        }
        Ok(())
    }
}

/// The grouping in force, with what it remembers.
enum Grouper {
    OwnerTree(OwnerTreeGrouper),
    Causal(CausalGrouper),
}

#[async_trait]
impl<T: Transport> Consumer for QueuedExporter<T> {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        let Batch::Spans(mut spans) = batch else {
            return Err(ConsumeError::permanent(format!("{} exports spans, not activities", self.inner.id)));
        };
        if let Some(g) = &self.grouper {
            match &mut *g.lock().unwrap_or_else(|p| p.into_inner()) {
                Grouper::OwnerTree(g) => g.apply(&mut spans),
                Grouper::Causal(g) => g.apply(&mut spans),
            }
        }
        let count = count_spans(&spans);
        if count == 0 {
            return Ok(());
        }
        if !self.inner.config.sending_queue.enabled {
            self.inner.metrics.received.inc_by(count as u64);
            return match self.inner.send_with_retry(spans, count).await {
                Outcome::Sent => Ok(()),
                Outcome::Failed(message) => Err(ConsumeError::permanent(message)),
                Outcome::Cancelled => Err(ConsumeError::retryable(format!("{} is shutting down", self.inner.id))),
            };
        }
        let queue = self.queue.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let Some(queue) = queue else {
            return Err(ConsumeError::retryable(format!("{} is not started", self.inner.id)));
        };
        match queue.push(spans) {
            Ok(()) => {
                self.inner.metrics.received.inc_by(count as u64);
                Ok(())
            }
            Err(PushError::Full(n)) => Err(ConsumeError::Retryable {
                message: format!("{}: sending queue is full ({n} batches)", self.inner.id),
                retry_after: Some(Duration::from_secs(1)),
            }),
            Err(PushError::Closed) => Err(ConsumeError::retryable(format!("{} is shutting down", self.inner.id))),
            Err(PushError::Disk(e)) => Err(ConsumeError::Retryable { message: e.to_string(), retry_after: Some(Duration::from_secs(1)) }),
        }
    }
}

impl<T: Transport> Exporter for QueuedExporter<T> {}
