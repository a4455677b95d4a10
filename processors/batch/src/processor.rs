//! The batch processor: input is buffered (bounded by `max_pending_items`; beyond it input is
//! refused as retryable) and a task sends a batch when `send_batch_size` items are buffered or
//! `timeout` has passed since the first of them, split to `send_batch_max_size`. A refusal from
//! downstream is retried with backoff, so nothing buffered is lost; shutdown flushes.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kausal_core::component::{Batch, Component, ComponentError, ComponentId, Consumer, ConsumeError, Host, Processor};
use kausal_core::telemetry::ComponentMetrics;
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::split::{append, take};

/// How long shutdown keeps retrying a refused batch.
const SHUTDOWN_BUDGET: Duration = Duration::from_secs(30);

type Item = (Batch, OwnedSemaphorePermit);

pub struct BatchProcessor {
    id: ComponentId,
    config: Config,
    next: Arc<dyn Consumer>,
    metrics: ComponentMetrics,
    permits: Arc<Semaphore>,
    sender: std::sync::Mutex<Option<mpsc::UnboundedSender<Item>>>,
    receiver: std::sync::Mutex<Option<mpsc::UnboundedReceiver<Item>>>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl BatchProcessor {
    pub fn new(id: ComponentId, config: Config, next: Arc<dyn Consumer>, metrics: ComponentMetrics) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        BatchProcessor {
            id,
            permits: Arc::new(Semaphore::new(config.max_pending_items.min(Semaphore::MAX_PERMITS))),
            config,
            next,
            metrics,
            sender: std::sync::Mutex::new(Some(tx)),
            receiver: std::sync::Mutex::new(Some(rx)),
            task: Mutex::new(None),
        }
    }
}

struct Worker {
    id: ComponentId,
    config: Config,
    next: Arc<dyn Consumer>,
    metrics: ComponentMetrics,
}

impl Worker {
    async fn send(&self, mut batch: Batch, stopping: bool) {
        let max = if self.config.send_batch_max_size == 0 { usize::MAX } else { self.config.send_batch_max_size };
        while !batch.is_empty() {
            let part = take(&mut batch, max);
            let n = part.len() as u64;
            let mut backoff = Duration::from_millis(50);
            let started = tokio::time::Instant::now();
            loop {
                match self.next.consume(part.clone()).await {
                    Ok(()) => {
                        self.metrics.sent.inc_by(n);
                        break;
                    }
                    Err(ConsumeError::Permanent { message }) => {
                        self.metrics.failed.inc_by(n);
                        tracing::error!(processor = %self.id, items = n, %message, "batch refused permanently; dropped");
                        break;
                    }
                    Err(ConsumeError::Retryable { retry_after, message }) => {
                        if stopping && started.elapsed() > SHUTDOWN_BUDGET {
                            self.metrics.dropped.inc_by(n);
                            tracing::error!(processor = %self.id, items = n, %message, "gave up at shutdown; dropped");
                            break;
                        }
                        tokio::time::sleep(retry_after.unwrap_or(backoff).min(Duration::from_secs(5))).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
        }
    }

    async fn run(self, mut rx: mpsc::UnboundedReceiver<Item>) {
        let mut buffer: Option<Batch> = None;
        let mut permits: Vec<OwnedSemaphorePermit> = Vec::new();
        let mut deadline: Option<tokio::time::Instant> = None;
        loop {
            let received = match deadline {
                Some(d) => match tokio::time::timeout_at(d, rx.recv()).await {
                    Ok(r) => Some(r),
                    Err(_) => None,
                },
                None => Some(rx.recv().await),
            };
            match received {
                Some(Some((batch, permit))) => {
                    permits.push(permit);
                    let leftover = match buffer.as_mut() {
                        None => {
                            buffer = Some(batch);
                            deadline = Some(tokio::time::Instant::now() + self.config.timeout);
                            None
                        }
                        Some(b) => append(b, batch).err(),
                    };
                    if let Some(other_kind) = leftover {
                        // A pipeline carries one kind; flush and start over if it ever changes.
                        if let Some(b) = buffer.replace(other_kind) {
                            self.send(b, false).await;
                        }
                    }
                    if buffer.as_ref().is_some_and(|b| b.len() >= self.config.send_batch_size) {
                        if let Some(b) = buffer.take() {
                            self.send(b, false).await;
                        }
                        permits.clear();
                        deadline = None;
                    }
                }
                Some(None) => {
                    if let Some(b) = buffer.take() {
                        self.send(b, true).await;
                    }
                    return;
                }
                None => {
                    if let Some(b) = buffer.take() {
                        self.send(b, false).await;
                    }
                    permits.clear();
                    deadline = None;
                }
            }
        }
    }
}

#[async_trait]
impl Component for BatchProcessor {
    async fn start(&self, _host: &Host) -> Result<(), ComponentError> {
        let rx = self.receiver.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(rx) = rx {
            let worker =
                Worker { id: self.id.clone(), config: self.config.clone(), next: self.next.clone(), metrics: self.metrics.clone() };
            *self.task.lock().await = Some(tokio::spawn(worker.run(rx)));
        }
        Ok(())
    }

    async fn shutdown(&self) -> Result<(), ComponentError> {
        self.sender.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = self.task.lock().await.take() {
            t.await.map_err(|e| ComponentError::new(&self.id, format!("batch task failed: {e}")))?;
        }
        Ok(())
    }
}

#[async_trait]
impl Consumer for BatchProcessor {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        let n = batch.len();
        if n == 0 {
            return Ok(());
        }
        let wanted = u32::try_from(n.clamp(1, self.config.max_pending_items)).unwrap_or(u32::MAX);
        let permit = self.permits.clone().try_acquire_many_owned(wanted).map_err(|_| ConsumeError::Retryable {
            message: format!("{}: {} items pending", self.id, self.config.max_pending_items),
            retry_after: Some(self.config.timeout.max(Duration::from_millis(100))),
        })?;
        let sender = self.sender.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let Some(sender) = sender else {
            return Err(ConsumeError::retryable(format!("{} is shutting down", self.id)));
        };
        sender
            .send((batch, permit))
            .map_err(|_| ConsumeError::retryable(format!("{} is shutting down", self.id)))?;
        self.metrics.received.inc_by(n as u64);
        Ok(())
    }
}

impl Processor for BatchProcessor {}
