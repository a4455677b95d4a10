//! The service: checks a configuration against the registry (dangling IDs, empty pipelines, data
//! kinds that do not fit, unused components), builds the component graph and runs it.
//!
//! Shape of a running pipeline: receivers → entrance queue (bounded in items; full → retryable
//! refusal) → one worker driving the processor chain in order → fan-out into one bounded queue
//! per exporter (full → the worker waits, so pressure reaches the entrance and then the source).
//! Nothing is dropped silently: a batch an exporter refuses permanently is counted and logged.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{Mutex, Semaphore, mpsc};
use tokio::task::JoinHandle;

use crate::component::{
    Batch, ComponentError, ComponentId, Consumer, ConsumeError, CreateContext, DataKind, Exporter, Extension, Host,
    Processor, Receiver,
};
use crate::config::{Config, ConfigError, ConfigErrors};
use crate::registry::Registry;
use crate::telemetry::{ComponentMetrics, Telemetry};

/// Batches an exporter queue holds before the pipeline worker has to wait.
const EXPORTER_QUEUE_BATCHES: usize = 64;
/// How long shutdown keeps retrying a batch a component refuses as retryable.
const SHUTDOWN_RETRY_BUDGET: Duration = Duration::from_secs(30);

/// Checks the service graph. Returns warnings (unused components) on success.
pub fn validate(config: &Config, registry: &Registry) -> Result<Vec<String>, ConfigErrors> {
    let mut errors: Vec<ConfigError> = Vec::new();
    let mut warnings = Vec::new();

    // Every defined component must have a known type and a valid config.
    macro_rules! check_section {
        ($section:ident, $factories:ident, $kind:literal) => {
            for (id, cfg) in &config.$section {
                match registry.$factories.get(id.type_name.as_str()) {
                    None => {
                        let known: Vec<&str> = registry.$factories.keys().copied().collect();
                        errors.push(cfg.error(
                            "",
                            format!("unknown {} type {:?}; known: {}", $kind, id.type_name, known.join(", ")),
                        ));
                    }
                    Some(f) => {
                        if let Err(e) = f.validate(cfg) {
                            errors.push(e);
                        }
                    }
                }
            }
        };
    }
    check_section!(receivers, receivers, "receiver");
    check_section!(processors, processors, "processor");
    check_section!(exporters, exporters, "exporter");
    check_section!(extensions, extensions, "extension");

    let locate = |e: ConfigError| config.sources.locate(e);
    let mut used: BTreeSet<(String, ComponentId)> = BTreeSet::new();
    for (i, name) in config.service.extensions.iter().enumerate() {
        let path = format!("service.extensions[{i}]");
        match ComponentId::parse(name) {
            Err(m) => errors.push(locate(ConfigError::new(path, m))),
            Ok(id) if !config.extensions.contains_key(&id) => errors.push(locate(ConfigError::new(
                "service.extensions",
                format!("extension {name:?} is not defined under extensions"),
            ))),
            Ok(id) => {
                used.insert(("extensions".into(), id));
            }
        }
    }
    if config.service.pipelines.is_empty() {
        errors.push(locate(ConfigError::new("service.pipelines", "no pipelines defined")));
    }
    for (pname, p) in &config.service.pipelines {
        let base = format!("service.pipelines.{pname}");
        if p.receivers.is_empty() {
            errors.push(locate(ConfigError::new(format!("{base}.receivers"), "a pipeline needs at least one receiver")));
        }
        if p.exporters.is_empty() {
            errors.push(locate(ConfigError::new(format!("{base}.exporters"), "a pipeline needs at least one exporter")));
        }
        if p.queue_size == 0 {
            errors.push(locate(ConfigError::new(format!("{base}.queue_size"), "must be at least 1")));
        }
        let mut resolve = |list: &[String], section: &str, defined: &BTreeMap<ComponentId, _>| -> Vec<ComponentId> {
            let mut ids = Vec::new();
            let mut seen = BTreeSet::new();
            for name in list {
                let path = format!("{base}.{section}");
                match ComponentId::parse(name) {
                    Err(m) => errors.push(locate(ConfigError::new(path, m))),
                    Ok(id) if !defined.contains_key(&id) => errors.push(locate(ConfigError::new(
                        path,
                        format!("{} {name:?} is not defined under {section}", &section[..section.len() - 1]),
                    ))),
                    Ok(id) => {
                        if !seen.insert(id.clone()) {
                            errors.push(locate(ConfigError::new(path, format!("{name:?} is listed twice"))));
                        }
                        used.insert((section.to_string(), id.clone()));
                        ids.push(id);
                    }
                }
            }
            ids
        };
        let receivers = resolve(&p.receivers, "receivers", &config.receivers);
        let processors = resolve(&p.processors, "processors", &config.processors);
        let exporters = resolve(&p.exporters, "exporters", &config.exporters);

        // Data kinds must fit along the chain for every receiver.
        for r in &receivers {
            let Some(rf) = registry.receivers.get(r.type_name.as_str()) else { continue };
            let mut kind = rf.output();
            let mut broken = false;
            for pid in &processors {
                let Some(pf) = registry.processors.get(pid.type_name.as_str()) else {
                    broken = true;
                    break;
                };
                match pf.output(kind) {
                    Some(k) => kind = k,
                    None => {
                        errors.push(locate(ConfigError::new(
                            format!("{base}.processors"),
                            format!("processor {pid} does not accept {kind} (coming from receiver {r})"),
                        )));
                        broken = true;
                        break;
                    }
                }
            }
            if broken {
                continue;
            }
            for eid in &exporters {
                if let Some(ef) = registry.exporters.get(eid.type_name.as_str())
                    && !ef.accepts(kind)
                {
                    let hint = if kind == DataKind::Activities { "; add the spanbuilder processor" } else { "" };
                    errors.push(locate(ConfigError::new(
                        format!("{base}.exporters"),
                        format!("exporter {eid} does not accept {kind} (coming from receiver {r}){hint}"),
                    )));
                }
            }
        }
    }
    for (section, defined) in [
        ("receivers", config.receivers.keys().collect::<Vec<_>>()),
        ("processors", config.processors.keys().collect()),
        ("exporters", config.exporters.keys().collect()),
        ("extensions", config.extensions.keys().collect()),
    ] {
        for id in defined {
            if !used.contains(&(section.to_string(), id.clone())) {
                warnings.push(format!("{section}.{id} is defined but not used by the service"));
            }
        }
    }
    if errors.is_empty() { Ok(warnings) } else { Err(ConfigErrors(errors)) }
}

/// A pipeline's entrance: a queue bounded in items, drained by one worker.
struct Entrance {
    name: String,
    permits: Arc<Semaphore>,
    capacity: usize,
    sender: std::sync::Mutex<Option<mpsc::UnboundedSender<(Batch, tokio::sync::OwnedSemaphorePermit)>>>,
    metrics: ComponentMetrics,
}

#[async_trait]
impl Consumer for Entrance {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        let n = batch.len().clamp(1, self.capacity);
        let items = batch.len() as u64;
        let sender = self.sender.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let Some(sender) = sender else {
            return Err(ConsumeError::retryable(format!("pipeline {} is shutting down", self.name)));
        };
        let permit = u32::try_from(n)
            .ok()
            .and_then(|n| self.permits.clone().try_acquire_many_owned(n).ok())
            .ok_or_else(|| ConsumeError::Retryable {
                message: format!("pipeline {} is full", self.name),
                retry_after: Some(Duration::from_secs(1)),
            })?;
        sender
            .send((batch, permit))
            .map_err(|_| ConsumeError::retryable(format!("pipeline {} is shutting down", self.name)))?;
        self.metrics.received.inc_by(items);
        Ok(())
    }
}

/// Hands a batch to `next`, retrying retryable refusals (with backoff; within a budget once
/// `stopping` is set). Returns whether it was delivered; failures are counted and logged.
async fn deliver(
    next: &dyn Consumer,
    batch: Batch,
    what: &str,
    metrics: &ComponentMetrics,
    stopping: &AtomicBool,
) -> bool {
    let items = batch.len() as u64;
    let mut backoff = Duration::from_millis(50);
    let mut stopping_since: Option<tokio::time::Instant> = None;
    loop {
        match next.consume(batch.clone()).await {
            Ok(()) => {
                metrics.sent.inc_by(items);
                return true;
            }
            Err(ConsumeError::Permanent { message }) => {
                metrics.failed.inc_by(items);
                tracing::error!(target: "kausal::service", %what, items, %message, "batch refused permanently; dropped");
                return false;
            }
            Err(ConsumeError::Retryable { message, retry_after }) => {
                if stopping.load(Ordering::Relaxed) {
                    let since = *stopping_since.get_or_insert_with(tokio::time::Instant::now);
                    if since.elapsed() > SHUTDOWN_RETRY_BUDGET {
                        metrics.dropped.inc_by(items);
                        tracing::error!(target: "kausal::service", %what, items, %message, "gave up delivering at shutdown; dropped");
                        return false;
                    }
                }
                tracing::debug!(target: "kausal::service", %what, %message, "retrying");
                tokio::time::sleep(retry_after.unwrap_or(backoff).min(Duration::from_secs(5))).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// A bounded queue in front of one exporter, drained by its own worker.
struct ExporterQueue {
    sender: std::sync::Mutex<Option<mpsc::Sender<Batch>>>,
}

#[async_trait]
impl Consumer for ExporterQueue {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        let sender = self.sender.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match sender {
            Some(s) => s
                .send(batch)
                .await
                .map_err(|_| ConsumeError::retryable("exporter is shutting down")),
            None => Err(ConsumeError::retryable("exporter is shutting down")),
        }
    }
}

/// Sends every batch to all consumers (exporter queues, or pipeline entrances for a receiver
/// shared by several pipelines).
struct FanOut(Vec<Arc<dyn Consumer>>);

#[async_trait]
impl Consumer for FanOut {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        let Some((last, rest)) = self.0.split_last() else { return Ok(()) };
        for c in rest {
            c.consume(batch.clone()).await?;
        }
        last.consume(batch).await
    }
}

struct RunningPipeline {
    entrance: Arc<Entrance>,
    processors: Vec<(ComponentId, Arc<dyn Processor>)>,
    worker: Option<JoinHandle<()>>,
    chain_head: Arc<dyn Consumer>,
}

struct RunningExporter {
    id: ComponentId,
    exporter: Arc<dyn Exporter>,
    queue: Arc<ExporterQueue>,
    receiver: Option<mpsc::Receiver<Batch>>,
    worker: Option<JoinHandle<()>>,
    metrics: ComponentMetrics,
}

/// A built service, ready to start.
pub struct Service {
    extensions: Vec<(ComponentId, Arc<dyn Extension>)>,
    exporters: Vec<RunningExporter>,
    pipelines: BTreeMap<String, RunningPipeline>,
    receivers: Vec<(ComponentId, Arc<dyn Receiver>)>,
    telemetry: Telemetry,
    host: Host,
    stopping: Arc<AtomicBool>,
    stopped: Mutex<bool>,
    pipeline_receivers: BTreeMap<String, mpsc::UnboundedReceiver<(Batch, tokio::sync::OwnedSemaphorePermit)>>,
}

impl Service {
    /// Builds every component of a validated configuration.
    pub fn build(config: &Config, registry: &Registry, telemetry: Telemetry) -> Result<Service, ConfigErrors> {
        validate(config, registry)?;
        let ctx = |kind: &str, id: &ComponentId| CreateContext {
            id: id.clone(),
            metrics: telemetry.component(kind, &id.to_string()),
            telemetry: telemetry.clone(),
        };
        let parse = |s: &String| ComponentId::parse(s).map_err(|m| ConfigError::new("", m));

        let mut extensions = Vec::new();
        for name in &config.service.extensions {
            let id = parse(name)?;
            let cfg = &config.extensions[&id];
            let f = &registry.extensions[id.type_name.as_str()];
            extensions.push((id.clone(), f.create(ctx("extension", &id), cfg)?));
        }
        let host = Host::new(extensions.iter().cloned().collect(), telemetry.clone());

        let mut exporters: Vec<RunningExporter> = Vec::new();
        let mut exporter_index: BTreeMap<ComponentId, usize> = BTreeMap::new();
        let mut pipelines = BTreeMap::new();
        let mut pipeline_receivers = BTreeMap::new();
        let mut receiver_targets: BTreeMap<ComponentId, Vec<Arc<dyn Consumer>>> = BTreeMap::new();
        for (pname, p) in &config.service.pipelines {
            let mut outs: Vec<Arc<dyn Consumer>> = Vec::new();
            for name in &p.exporters {
                let id = parse(name)?;
                let idx = match exporter_index.get(&id) {
                    Some(i) => *i,
                    None => {
                        let f = &registry.exporters[id.type_name.as_str()];
                        let exporter = f.create(ctx("exporter", &id), &config.exporters[&id])?;
                        let (tx, rx) = mpsc::channel(EXPORTER_QUEUE_BATCHES);
                        exporters.push(RunningExporter {
                            id: id.clone(),
                            exporter,
                            queue: Arc::new(ExporterQueue { sender: std::sync::Mutex::new(Some(tx)) }),
                            receiver: Some(rx),
                            worker: None,
                            metrics: telemetry.component("exporter_queue", &id.to_string()),
                        });
                        exporter_index.insert(id, exporters.len() - 1);
                        exporters.len() - 1
                    }
                };
                outs.push(exporters[idx].queue.clone());
            }
            let mut next: Arc<dyn Consumer> = if outs.len() == 1 { outs.remove(0) } else { Arc::new(FanOut(outs)) };
            let mut processors = Vec::new();
            for name in p.processors.iter().rev() {
                let id = parse(name)?;
                let f = &registry.processors[id.type_name.as_str()];
                let proc = f.create(ctx("processor", &id), &config.processors[&id], next.clone())?;
                next = proc.clone();
                processors.push((id, proc));
            }
            processors.reverse();
            let (tx, rx) = mpsc::unbounded_channel();
            let capacity = p.queue_size.min(Semaphore::MAX_PERMITS);
            let entrance = Arc::new(Entrance {
                name: pname.clone(),
                permits: Arc::new(Semaphore::new(capacity)),
                capacity,
                sender: std::sync::Mutex::new(Some(tx)),
                metrics: telemetry.component("pipeline", pname),
            });
            for name in &p.receivers {
                receiver_targets.entry(parse(name)?).or_default().push(entrance.clone());
            }
            pipeline_receivers.insert(pname.clone(), rx);
            pipelines.insert(
                pname.clone(),
                RunningPipeline { entrance, processors, worker: None, chain_head: next },
            );
        }
        let mut receivers = Vec::new();
        for (id, mut targets) in receiver_targets {
            let next: Arc<dyn Consumer> =
                if targets.len() == 1 { targets.remove(0) } else { Arc::new(FanOut(targets)) };
            let f = &registry.receivers[id.type_name.as_str()];
            receivers.push((id.clone(), f.create(ctx("receiver", &id), &config.receivers[&id], next)?));
        }
        Ok(Service {
            extensions,
            exporters,
            pipelines,
            receivers,
            telemetry,
            host,
            stopping: Arc::new(AtomicBool::new(false)),
            stopped: Mutex::new(false),
            pipeline_receivers,
        })
    }

    pub fn telemetry(&self) -> &Telemetry {
        &self.telemetry
    }

    pub fn host(&self) -> &Host {
        &self.host
    }

    /// Starts extensions, exporters, processors, then receivers; workers begin draining.
    pub async fn start(&mut self) -> Result<(), ComponentError> {
        for (_, e) in &self.extensions {
            e.start(&self.host).await?;
        }
        for ex in &mut self.exporters {
            ex.exporter.start(&self.host).await?;
            if let Some(mut rx) = ex.receiver.take() {
                let exporter = ex.exporter.clone();
                let metrics = ex.metrics.clone();
                let stopping = self.stopping.clone();
                let what = format!("exporter {}", ex.id);
                ex.worker = Some(tokio::spawn(async move {
                    while let Some(batch) = rx.recv().await {
                        deliver(exporter.as_ref(), batch, &what, &metrics, &stopping).await;
                    }
                }));
            }
        }
        for (name, p) in &mut self.pipelines {
            for (_, proc) in &p.processors {
                proc.start(&self.host).await?;
            }
            if let Some(mut rx) = self.pipeline_receivers.remove(name) {
                let head = p.chain_head.clone();
                let metrics = p.entrance.metrics.clone();
                let stopping = self.stopping.clone();
                let what = format!("pipeline {name}");
                p.worker = Some(tokio::spawn(async move {
                    while let Some((batch, permit)) = rx.recv().await {
                        deliver(head.as_ref(), batch, &what, &metrics, &stopping).await;
                        drop(permit);
                    }
                }));
            }
        }
        for (_, r) in &self.receivers {
            r.start(&self.host).await?;
        }
        Ok(())
    }

    /// Stops receivers, drains every queue through processors to exporters, flushes them, then
    /// stops extensions. Idempotent.
    pub async fn shutdown(&mut self) {
        let mut stopped = self.stopped.lock().await;
        if *stopped {
            return;
        }
        *stopped = true;
        self.stopping.store(true, Ordering::Relaxed);
        for (id, r) in &self.receivers {
            if let Err(e) = r.shutdown().await {
                tracing::warn!(component = %id, error = %e, "receiver shutdown failed");
            }
        }
        for p in self.pipelines.values_mut() {
            p.entrance.sender.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(w) = p.worker.take() {
                let _ = w.await;
            }
            for (id, proc) in &p.processors {
                if let Err(e) = proc.shutdown().await {
                    tracing::warn!(component = %id, error = %e, "processor shutdown failed");
                }
            }
        }
        for ex in &mut self.exporters {
            ex.queue.sender.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(w) = ex.worker.take() {
                let _ = w.await;
            }
            if let Err(e) = ex.exporter.shutdown().await {
                tracing::warn!(component = %ex.id, error = %e, "exporter shutdown failed");
            }
        }
        for (id, e) in self.extensions.iter().rev() {
            if let Err(err) = e.shutdown().await {
                tracing::warn!(component = %id, error = %err, "extension shutdown failed");
            }
        }
    }
}
