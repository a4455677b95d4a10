//! Processor `causal`: kspan's view inside kausal. Each Kubernetes Event is placed under the
//! activity that caused it (a parent's report naming the object, a write by the acting
//! controller, the write that triggered the object or one of its owners — synthesised from
//! `managedFields` when it was not observed), recorded as the activity's `cause`, which the
//! span builder turns into a `causal` span link. Placement is in `place.rs`; this file only
//! holds activities back for the buffer time and hands them on.

mod config;
pub mod dump;
pub mod pattern;
mod place;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kausal_core::activity::Nanos;
use kausal_core::component::{
    Batch, Component, ComponentError, ConsumeError, Consumer, CreateContext, DataKind, Host, Processor,
    ProcessorFactory,
};
use kausal_core::config::{ComponentConfig, ConfigError};
use kausal_core::telemetry::ComponentMetrics;
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;

pub use config::CausalConfig;
pub use dump::dump;
pub use place::{CausalPlacer, parse_traceparent};

pub struct Factory;

impl ProcessorFactory for Factory {
    fn type_name(&self) -> &'static str {
        "causal"
    }

    fn description(&self) -> &'static str {
        "places each Kubernetes Event under the activity that caused it (kspan's view)"
    }

    fn output(&self, input: DataKind) -> Option<DataKind> {
        matches!(input, DataKind::Activities | DataKind::Spans).then_some(input)
    }

    fn validate(&self, config: &ComponentConfig) -> Result<(), ConfigError> {
        config.parse::<CausalConfig>()?.validate(config)
    }

    fn create(
        &self,
        ctx: CreateContext,
        config: &ComponentConfig,
        next: Arc<dyn Consumer>,
    ) -> Result<Arc<dyn Processor>, ConfigError> {
        let cfg: CausalConfig = config.parse()?;
        cfg.validate(config)?;
        let placer = CausalPlacer::new(&cfg).map_err(|m| config.error("patterns", m))?;
        let (stop, _) = watch::channel(false);
        Ok(Arc::new(CausalProcessor {
            inner: Arc::new(Inner { placer: Mutex::new(placer), next, metrics: ctx.metrics }),
            tick: cfg.buffer.min(Duration::from_secs(1)).max(Duration::from_millis(50)),
            stop,
            task: std::sync::Mutex::new(None),
        }))
    }
}

struct Inner {
    placer: Mutex<CausalPlacer>,
    next: Arc<dyn Consumer>,
    metrics: ComponentMetrics,
}

impl Inner {
    /// Hands `placed` on; what downstream refuses is counted, not retried (it already waited
    /// in the buffer, and the buffer must stay bounded).
    async fn forward(&self, placed: Vec<kausal_core::Activity>) -> Result<(), ConsumeError> {
        if placed.is_empty() {
            return Ok(());
        }
        let n = placed.len() as u64;
        match self.next.consume(Batch::Activities(placed)).await {
            Ok(()) => {
                self.metrics.sent.inc_by(n);
                Ok(())
            }
            Err(e) => {
                self.metrics.dropped.inc_by(n);
                Err(e)
            }
        }
    }
}

fn now() -> Nanos {
    kausal_core::activity::nanos_of(chrono::Utc::now())
}

struct CausalProcessor {
    inner: Arc<Inner>,
    tick: Duration,
    stop: watch::Sender<bool>,
    task: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Processor for CausalProcessor {}

#[async_trait]
impl Component for CausalProcessor {
    async fn start(&self, _host: &Host) -> Result<(), ComponentError> {
        let mut task = self.task.lock().unwrap_or_else(|p| p.into_inner());
        if task.is_some() {
            return Ok(());
        }
        let inner = self.inner.clone();
        let tick = self.tick;
        let mut stop = self.stop.subscribe();
        *task = Some(tokio::spawn(async move {
            let mut interval = tokio::time::interval(tick);
            loop {
                tokio::select! {
                    _ = interval.tick() => {}
                    _ = stop.changed() => return,
                }
                let placed = inner.placer.lock().await.release(now());
                if let Err(e) = inner.forward(placed).await {
                    tracing::warn!(error = %e, "causal: placed activities refused downstream");
                }
            }
        }));
        Ok(())
    }

    async fn shutdown(&self) -> Result<(), ComponentError> {
        let _ = self.stop.send(true);
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
        let placed = self.inner.placer.lock().await.flush();
        self.inner.forward(placed).await.map_err(|e| ComponentError::new("causal", e))
    }
}

#[async_trait]
impl Consumer for CausalProcessor {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        let Batch::Activities(activities) = batch else {
            return self.inner.next.consume(batch).await;
        };
        self.inner.metrics.received.inc_by(activities.len() as u64);
        let placed = {
            let mut placer = self.inner.placer.lock().await;
            let t = now();
            for a in activities {
                placer.push(a, t);
            }
            placer.release(t)
        };
        self.inner.forward(placed).await
    }
}
