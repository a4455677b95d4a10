//! Receiver `replay`: reads recordings (kspan captures, `kubectl get -o yaml|json` lists of
//! Events and objects, audit logs plain or gzip) and feeds their activities into the pipeline
//! as if they were happening now — at recorded speed, N times faster, or as fast as possible.
//! Broken parts of a recording are reported with their place and skipped.

mod config;
mod map;
mod recording;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kausal_core::component::{
    Batch, Component, ComponentError, Consumer, CreateContext, DataKind, Host, Receiver, ReceiverFactory,
};
use kausal_core::config::{ComponentConfig, ConfigError};
use kausal_core::telemetry::ComponentMetrics;
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;

pub use config::{ReplayConfig, Speed};
pub use map::{MapError, to_activity};
pub use recording::{Recorded, Recording, RecordingError, read_bytes, read_file};

pub struct Factory;

impl ReceiverFactory for Factory {
    fn type_name(&self) -> &'static str {
        "replay"
    }

    fn description(&self) -> &'static str {
        "replays recordings (kspan captures, kubectl lists, audit logs) as if live"
    }

    fn output(&self) -> DataKind {
        DataKind::Activities
    }

    fn validate(&self, config: &ComponentConfig) -> Result<(), ConfigError> {
        config.parse::<ReplayConfig>()?.validate(config)
    }

    fn create(
        &self,
        ctx: CreateContext,
        config: &ComponentConfig,
        next: Arc<dyn Consumer>,
    ) -> Result<Arc<dyn Receiver>, ConfigError> {
        let cfg: ReplayConfig = config.parse()?;
        cfg.validate(config)?;
        let speed = Speed::parse(&cfg.speed).map_err(|m| config.error("speed", m))?;
        let (stop, _) = watch::channel(false);
        Ok(Arc::new(ReplayReceiver {
            id: ctx.id.to_string(),
            config: cfg,
            speed,
            next,
            metrics: ctx.metrics,
            stop,
            task: Mutex::new(None),
        }))
    }
}

/// Reads every file and merges their activities in time order (stable for equal times).
pub fn read_all(files: &[std::path::PathBuf], cluster: &str) -> Recording {
    let mut all = Recording::default();
    for f in files {
        let r = recording::read_file_unsettled(f, cluster);
        all.activities.extend(r.activities);
        all.errors.extend(r.errors);
    }
    // Objects listed without a clock are the state the whole replay starts from.
    recording::settle(&mut all.activities);
    // Stable, and at equal times object state before what happens to it.
    all.activities
        .sort_by_key(|r| (r.at, !matches!(r.activity.detail, kausal_core::activity::ActivityDetail::Change(_))));
    all
}

struct ReplayReceiver {
    id: String,
    config: ReplayConfig,
    speed: Speed,
    next: Arc<dyn Consumer>,
    metrics: ComponentMetrics,
    stop: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Receiver for ReplayReceiver {}

#[async_trait]
impl Component for ReplayReceiver {
    async fn start(&self, _host: &Host) -> Result<(), ComponentError> {
        let mut task = self.task.lock().await;
        if task.is_some() {
            return Ok(());
        }
        let (files, cluster, batch_size) = (self.config.files.clone(), self.config.cluster.clone(), self.config.batch_size);
        let (speed, next, metrics, id) = (self.speed, self.next.clone(), self.metrics.clone(), self.id.clone());
        let mut stop = self.stop.subscribe();
        *task = Some(tokio::spawn(async move {
            let recording = tokio::task::spawn_blocking(move || read_all(&files, &cluster)).await.unwrap_or_default();
            for e in &recording.errors {
                metrics.failed.inc();
                tracing::error!(component = %id, error = %e, "bad recording; skipped");
            }
            tracing::info!(component = %id, activities = recording.activities.len(), errors = recording.errors.len(), "replay starting");
            let begin = tokio::time::Instant::now();
            let first = recording.activities.first().map(|r| r.at).unwrap_or(0);
            let mut pending: Vec<kausal_core::Activity> = Vec::new();
            let mut items = recording.activities.into_iter().peekable();
            while let Some(item) = items.next() {
                if let Some(wait) = speed.scale(item.at - first) {
                    let due = begin + Duration::from_nanos(wait);
                    tokio::select! {
                        _ = tokio::time::sleep_until(due) => {}
                        _ = stop.changed() => return,
                    }
                }
                metrics.received.inc();
                pending.push(item.activity);
                let next_due_now = items.peek().is_some_and(|n| speed.scale(n.at - first).is_none_or(|w| begin + Duration::from_nanos(w) <= tokio::time::Instant::now()));
                if (pending.len() >= batch_size || !next_due_now)
                    && !send(&next, std::mem::take(&mut pending), &metrics, &mut stop).await
                {
                    return;
                }
            }
            if !pending.is_empty() {
                send(&next, pending, &metrics, &mut stop).await;
            }
            tracing::info!(component = %id, "replay finished");
        }));
        Ok(())
    }

    async fn shutdown(&self) -> Result<(), ComponentError> {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.lock().await.take() {
            let _ = task.await;
        }
        Ok(())
    }
}

/// Hands a batch on, retrying while the pipeline pushes back; false when asked to stop.
async fn send(next: &Arc<dyn Consumer>, batch: Vec<kausal_core::Activity>, metrics: &ComponentMetrics, stop: &mut watch::Receiver<bool>) -> bool {
    let n = batch.len() as u64;
    let batch = Batch::Activities(batch);
    loop {
        match next.consume(batch.clone()).await {
            Ok(()) => {
                metrics.sent.inc_by(n);
                return true;
            }
            Err(e) if e.is_retryable() => {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    _ = stop.changed() => return false,
                }
            }
            Err(e) => {
                metrics.dropped.inc_by(n);
                tracing::warn!(error = %e, "replayed batch refused");
                return true;
            }
        }
    }
}
