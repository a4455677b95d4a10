//! The memory limiter: a task samples the process's resident memory every `check_interval`;
//! while it is above the soft limit, every batch is refused as retryable (so receivers push
//! back to their sources) and counted as refused; below it, batches pass through unchanged.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use async_trait::async_trait;
use kausal_core::component::{Batch, Component, ComponentError, ComponentId, Consumer, ConsumeError, Host, Processor};
use kausal_core::telemetry::ComponentMetrics;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use crate::config::{Config, Limits};

/// Where the memory figure comes from (the process, or a test).
pub type Probe = Arc<dyn Fn() -> u64 + Send + Sync>;

pub struct MemoryLimiter {
    id: ComponentId,
    config: Config,
    limits: Limits,
    next: Arc<dyn Consumer>,
    metrics: ComponentMetrics,
    probe: Probe,
    refusing: Arc<AtomicBool>,
    last: Arc<AtomicU64>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl MemoryLimiter {
    pub fn new(id: ComponentId, config: Config, limits: Limits, next: Arc<dyn Consumer>, metrics: ComponentMetrics, probe: Probe) -> Self {
        MemoryLimiter {
            id,
            config,
            limits,
            next,
            metrics,
            probe,
            refusing: Arc::new(AtomicBool::new(false)),
            last: Arc::new(AtomicU64::new(0)),
            task: Mutex::new(None),
        }
    }

    fn check(probe: &Probe, limits: Limits, refusing: &AtomicBool, last: &AtomicU64, id: &ComponentId) {
        let used = probe();
        last.store(used, Ordering::Relaxed);
        let over = used > limits.soft;
        if refusing.swap(over, Ordering::Relaxed) != over {
            if over {
                tracing::warn!(processor = %id, used_mib = used >> 20, soft_limit_mib = limits.soft >> 20, "memory above the soft limit; refusing data");
            } else {
                tracing::info!(processor = %id, used_mib = used >> 20, "memory back below the soft limit; accepting data");
            }
        }
    }
}

#[async_trait]
impl Component for MemoryLimiter {
    async fn start(&self, _host: &Host) -> Result<(), ComponentError> {
        let mut task = self.task.lock().await;
        if task.is_some() {
            return Ok(());
        }
        Self::check(&self.probe, self.limits, &self.refusing, &self.last, &self.id);
        let (probe, limits, refusing, last, id) =
            (self.probe.clone(), self.limits, self.refusing.clone(), self.last.clone(), self.id.clone());
        let interval = self.config.check_interval;
        *task = Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            loop {
                tick.tick().await;
                Self::check(&probe, limits, &refusing, &last, &id);
            }
        }));
        Ok(())
    }

    async fn shutdown(&self) -> Result<(), ComponentError> {
        if let Some(t) = self.task.lock().await.take() {
            t.abort();
        }
        Ok(())
    }
}

#[async_trait]
impl Consumer for MemoryLimiter {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        let n = batch.len() as u64;
        if self.refusing.load(Ordering::Relaxed) {
            self.metrics.failed.inc_by(n);
            return Err(ConsumeError::Retryable {
                message: format!(
                    "{}: memory use {} MiB is above the soft limit {} MiB",
                    self.id,
                    self.last.load(Ordering::Relaxed) >> 20,
                    self.limits.soft >> 20
                ),
                retry_after: Some(self.config.check_interval),
            });
        }
        self.metrics.received.inc_by(n);
        let r = self.next.consume(batch).await;
        if r.is_ok() {
            self.metrics.sent.inc_by(n);
        }
        r
    }
}

impl Processor for MemoryLimiter {}
