//! The Kubernetes edge of `kubeevents`: a kube-runtime watcher per namespace (or one for all),
//! each occurrence checked against the cache (handled before? older than the watermark at
//! start?), sent downstream, then recorded; the watermark advances as occurrences go out. A
//! relist after 410 replays every Event, and the records make it emit nothing new.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use kausal_core::activity::{Activity, nanos_of};
use kausal_core::cache::{Cache, CacheKey, process_memory_cache};
use kausal_core::component::{Batch, Component, ComponentError, ComponentId, Consumer, CreateContext, Host, Receiver};
use kausal_core::config::{ComponentConfig, ConfigError};
use kausal_core::telemetry::ComponentMetrics;
use kausal_kubecommon::LeaderElection;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::watcher::{self, Event};
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::event::{self, EventApi, Watermark};

pub struct EventsReceiver {
    id: ComponentId,
    config: Config,
    next: Arc<dyn Consumer>,
    metrics: ComponentMetrics,
    shutdown: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl EventsReceiver {
    pub fn new(ctx: CreateContext, config: &ComponentConfig, next: Arc<dyn Consumer>) -> Result<Self, ConfigError> {
        let cfg: Config = config.parse()?;
        cfg.validate(config)?;
        let (shutdown, _) = watch::channel(false);
        Ok(EventsReceiver { id: ctx.id, config: cfg, next, metrics: ctx.metrics, shutdown, tasks: Mutex::new(Vec::new()) })
    }
}

impl Receiver for EventsReceiver {}

struct Shared {
    config: Config,
    cache: Arc<dyn Cache>,
    next: Arc<dyn Consumer>,
    metrics: ComponentMetrics,
    /// The watermark found at start (None: there was none); fixed for the life of the leadership.
    start_mark: Mutex<Option<Watermark>>,
    mark: Mutex<Watermark>,
}

impl Shared {
    fn group(&self) -> String {
        format!("kubeevents/{}", self.config.cluster)
    }
}

#[async_trait::async_trait]
impl Component for EventsReceiver {
    async fn start(&self, host: &Host) -> Result<(), ComponentError> {
        let cache: Arc<dyn Cache> = match &self.config.cache {
            Some(id) => {
                let id = ComponentId::parse(id).map_err(|m| ComponentError::new(&self.id, m))?;
                host.cache(&id).map_err(|m| ComponentError::new(&self.id, m))?
            }
            None => process_memory_cache(),
        };
        let client = self.config.auth.client().await.map_err(|e| ComponentError::new(&self.id, e))?;
        let shared = Arc::new(Shared {
            config: self.config.clone(),
            cache,
            next: self.next.clone(),
            metrics: self.metrics.clone(),
            start_mark: Mutex::new(None),
            mark: Mutex::new(Watermark::default()),
        });
        let task = tokio::spawn(run(client, shared, self.shutdown.subscribe()));
        self.tasks.lock().unwrap_or_else(|p| p.into_inner()).push(task);
        Ok(())
    }

    async fn shutdown(&self) -> Result<(), ComponentError> {
        let _ = self.shutdown.send(true);
        let tasks: Vec<JoinHandle<()>> = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for t in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
        Ok(())
    }
}

fn resource(api: EventApi) -> ApiResource {
    match api {
        EventApi::CoreV1 => ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("", "v1", "Event"), "events"),
        EventApi::EventsV1 => ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("events.k8s.io", "v1", "Event"), "events"),
    }
}

async fn run(client: kube::Client, shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    // Without leader election this replica always leads; the sender lives as long as the loop.
    let (_always, always) = watch::channel(true);
    let mut leading = match &shared.config.leader_election {
        Some(le) => LeaderElection::start(client.clone(), le.clone(), shutdown.clone()).subscribe(),
        None => always,
    };
    loop {
        if *shutdown.borrow() {
            return;
        }
        if !*leading.borrow() {
            tokio::select! {
                r = leading.changed() => if r.is_err() { return },
                _ = shutdown.changed() => return,
            }
            continue;
        }
        // A new leadership resumes from the watermark the previous leader left.
        let found = load_watermark(&shared).await;
        *shared.start_mark.lock().unwrap_or_else(|p| p.into_inner()) = found.clone();
        *shared.mark.lock().unwrap_or_else(|p| p.into_inner()) = found.unwrap_or_default();
        let (stop_tx, stop_rx) = watch::channel(false);
        let namespaces: Vec<Option<String>> =
            if shared.config.namespaces.is_empty() { vec![None] } else { shared.config.namespaces.iter().cloned().map(Some).collect() };
        let mut tasks = Vec::new();
        for ns in namespaces {
            tasks.push(tokio::spawn(watch_events(client.clone(), shared.clone(), ns, stop_rx.clone())));
        }
        loop {
            tokio::select! {
                r = leading.changed() => { if r.is_err() || !*leading.borrow() { break; } }
                _ = shutdown.changed() => { if *shutdown.borrow() { break; } }
            }
        }
        let _ = stop_tx.send(true);
        for t in tasks {
            let _ = t.await;
        }
    }
}

async fn load_watermark(shared: &Shared) -> Option<Watermark> {
    match shared.cache.get(&CacheKey::new(shared.group(), "watermark")).await {
        Ok(Some(e)) => serde_json::from_slice(&e.value).ok(),
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the Event watermark; falling back to max_age");
            None
        }
    }
}

async fn watch_events(client: kube::Client, shared: Arc<Shared>, namespace: Option<String>, mut stop: watch::Receiver<bool>) {
    let ar = resource(shared.config.api);
    let api: Api<DynamicObject> = match &namespace {
        Some(ns) => Api::namespaced_with(client, ns, &ar),
        None => Api::all_with(client, &ar),
    };
    let mut wc = watcher::Config::default().any_semantic();
    if let Some(f) = &shared.config.field_selector {
        wc = wc.fields(f);
    }
    if let Some(l) = &shared.config.label_selector {
        wc = wc.labels(l);
    }
    let stream = watcher::watcher(api, wc);
    futures::pin_mut!(stream);
    loop {
        let item = tokio::select! {
            e = stream.next() => e,
            _ = stop.changed() => return,
        };
        let Some(item) = item else { return };
        let obj = match item {
            Ok(Event::Apply(o)) | Ok(Event::InitApply(o)) => o,
            Ok(_) => continue,
            Err(e) => {
                tracing::debug!(error = %e, "event watch error; the watcher retries with backoff");
                continue;
            }
        };
        let Ok(value) = serde_json::to_value(&obj) else { continue };
        handle(&shared, &value).await;
    }
}

/// One sighting of an Event object: emitted once per occurrence.
async fn handle(shared: &Shared, value: &Value) {
    let api = shared.config.api;
    let ns = value.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("");
    if shared.config.exclude_namespaces.iter().any(|n| n == ns) {
        return;
    }
    let Some(activity) = event::to_activity(&shared.config.cluster, value, api) else {
        shared.metrics.dropped.inc();
        return;
    };
    let now = nanos_of(chrono::Utc::now());
    let max_age = i64::try_from(shared.config.max_age.as_nanos()).unwrap_or(i64::MAX);
    let start_mark = shared.start_mark.lock().unwrap_or_else(|p| p.into_inner()).clone();
    if !event::is_new(activity.start, start_mark.as_ref(), now, max_age) {
        return;
    }
    let seen = CacheKey::new(shared.group(), format!("seen/{}", event::occurrence_id(value, api)));
    match shared.cache.get(&seen).await {
        Ok(Some(_)) => return,
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "cannot check whether an Event was handled; emitting it"),
    }
    shared.metrics.received.inc();
    send(shared, activity.clone()).await;
    if let Err(e) = shared.cache.put(&seen, Vec::new(), Some(shared.config.remember)).await {
        tracing::warn!(error = %e, "cannot record a handled Event");
    }
    let rv = value.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or("").to_string();
    let mark = {
        let mut m = shared.mark.lock().unwrap_or_else(|p| p.into_inner());
        if activity.start >= m.time {
            m.time = activity.start;
            m.resource_version = rv;
        }
        m.clone()
    };
    if let Ok(bytes) = serde_json::to_vec(&mark)
        && let Err(e) = shared.cache.put(&CacheKey::new(shared.group(), "watermark"), bytes, None).await
    {
        tracing::warn!(error = %e, "cannot store the Event watermark");
    }
}

async fn send(shared: &Shared, activity: Activity) {
    let mut delay = Duration::from_millis(50);
    loop {
        match shared.next.consume(Batch::Activities(vec![activity.clone()])).await {
            Ok(()) => {
                shared.metrics.sent.inc();
                return;
            }
            Err(e) if e.is_retryable() => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => {
                shared.metrics.failed.inc();
                tracing::warn!(error = %e, "downstream refused an Event activity");
                return;
            }
        }
    }
}
