//! The Kubernetes edge of `kubeobjects`: discovery (re-run periodically and when a
//! CustomResourceDefinition changes), one kube-runtime watcher per selected resource (bookmarks
//! on, relist on 410 handled by the watcher), the tracker's decisions written to the cache and
//! sent downstream in batches. With leader election, watching happens only while leading.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use kausal_core::activity::{Activity, ActivityDetail, Change, ChangeActivity, nanos_of};
use kausal_core::cache::{Cache, process_memory_cache};
use kausal_core::changes::{self, StoredChange};
use kausal_core::component::{Batch, Component, ComponentError, ComponentId, Consumer, CreateContext, Host, Receiver};
use kausal_core::config::{ComponentConfig, ConfigError};
use kausal_core::telemetry::ComponentMetrics;
use kausal_kubecommon::{LeaderElection, ResourcePatterns};
use kube::api::{Api, ApiResource, DynamicObject};
use kube::discovery::{Discovery, Scope, verbs};
use kube::runtime::watcher::{self, Event};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::tracker::{Observed, RedactRules, Tracker};

/// Activities waiting to be sent downstream; watchers pause when it is full.
const QUEUE: usize = 8192;
const MAX_BATCH: usize = 1000;

pub struct ObjectsReceiver {
    id: ComponentId,
    config: Config,
    next: Arc<dyn Consumer>,
    metrics: ComponentMetrics,
    shutdown: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl ObjectsReceiver {
    pub fn new(ctx: CreateContext, config: &ComponentConfig, next: Arc<dyn Consumer>) -> Result<Self, ConfigError> {
        let cfg: Config = config.parse()?;
        cfg.validate(config)?;
        let (shutdown, _) = watch::channel(false);
        Ok(ObjectsReceiver { id: ctx.id, config: cfg, next, metrics: ctx.metrics, shutdown, tasks: Mutex::new(Vec::new()) })
    }
}

impl Receiver for ObjectsReceiver {}

#[async_trait::async_trait]
impl Component for ObjectsReceiver {
    async fn start(&self, host: &Host) -> Result<(), ComponentError> {
        let cache: Arc<dyn Cache> = match &self.config.cache {
            Some(id) => {
                let id = ComponentId::parse(id).map_err(|m| ComponentError::new(&self.id, m))?;
                host.cache(&id).map_err(|m| ComponentError::new(&self.id, m))?
            }
            None => process_memory_cache(),
        };
        let client = self.config.auth.client().await.map_err(|e| ComponentError::new(&self.id, e))?;
        let (tx, rx) = mpsc::channel::<Activity>(QUEUE);
        let sender = tokio::spawn(send_loop(rx, self.next.clone(), self.metrics.clone(), self.shutdown.subscribe()));
        let shared = Arc::new(Shared {
            config: self.config.clone(),
            cache,
            tracker: Mutex::new(Tracker::new(
                &self.config.cluster,
                self.config.max_objects,
                RedactRules::new(&self.config.redact),
                seed(),
            )),
            out: tx,
            rediscover: Notify::new(),
            metrics: self.metrics.clone(),
        });
        let shutdown = self.shutdown.subscribe();
        let main = tokio::spawn(run(client, shared, shutdown));
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.push(sender);
        tasks.push(main);
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

fn seed() -> u64 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    (t as u64) ^ (u64::from(std::process::id()) << 32) ^ (&t as *const _ as u64)
}

struct Shared {
    config: Config,
    cache: Arc<dyn Cache>,
    tracker: Mutex<Tracker>,
    out: mpsc::Sender<Activity>,
    rediscover: Notify,
    metrics: ComponentMetrics,
}

/// Watches while leading (always, without leader election); stops everything on shutdown.
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
        let (stop_tx, stop_rx) = watch::channel(false);
        let work = tokio::spawn(watch_all(client.clone(), shared.clone(), stop_rx));
        loop {
            tokio::select! {
                r = leading.changed() => {
                    if r.is_err() || !*leading.borrow() { break; }
                }
                _ = shutdown.changed() => { if *shutdown.borrow() { break; } }
            }
        }
        let _ = stop_tx.send(true);
        let _ = work.await;
    }
}

/// Discovery loop: one watcher task per selected resource, started and stopped as discovery
/// changes.
async fn watch_all(client: kube::Client, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let patterns = ResourcePatterns::new(&shared.config.include, &shared.config.exclude);
    let mut watchers: HashMap<(String, String), JoinHandle<()>> = HashMap::new();
    loop {
        match Discovery::new(client.clone()).run().await {
            Ok(discovery) => {
                let mut wanted: BTreeMap<(String, String), (ApiResource, bool)> = BTreeMap::new();
                for group in discovery.groups() {
                    for (ar, caps) in group.recommended_resources() {
                        if !caps.supports_operation(verbs::LIST) || !caps.supports_operation(verbs::WATCH) {
                            continue;
                        }
                        if !patterns.matches(&ar.group, &ar.plural) {
                            continue;
                        }
                        let namespaced = caps.scope == Scope::Namespaced;
                        wanted.insert((ar.group.clone(), ar.plural.clone()), (ar, namespaced));
                    }
                }
                watchers.retain(|k, h| {
                    let keep = wanted.contains_key(k) && !h.is_finished();
                    if !keep {
                        h.abort();
                    }
                    keep
                });
                for (k, (ar, _)) in wanted {
                    if !watchers.contains_key(&k) {
                        tracing::debug!(group = %ar.group, resource = %ar.plural, "watching");
                        watchers.insert(k, tokio::spawn(watch_resource(client.clone(), shared.clone(), ar, stop.clone())));
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "discovery failed; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(shared.config.discovery_interval) => {}
            _ = shared.rediscover.notified() => {}
            _ = stop.changed() => break,
        }
        if *stop.borrow() {
            break;
        }
    }
    for (_, h) in watchers {
        h.abort();
        let _ = h.await;
    }
}

async fn watch_resource(client: kube::Client, shared: Arc<Shared>, ar: ApiResource, mut stop: watch::Receiver<bool>) {
    let api: Api<DynamicObject> = Api::all_with(client, &ar);
    let stream = watcher::watcher(api, watcher::Config::default().any_semantic());
    futures::pin_mut!(stream);
    let crds = ar.group == "apiextensions.k8s.io" && ar.plural == "customresourcedefinitions";
    let mut first_list = true;
    let mut listed: HashSet<String> = HashSet::new();
    loop {
        let event = tokio::select! {
            e = stream.next() => e,
            _ = stop.changed() => return,
        };
        let Some(event) = event else { return };
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                tracing::debug!(group = %ar.group, resource = %ar.plural, error = %e, "watch error; the watcher retries with backoff");
                continue;
            }
        };
        let mut observed: Vec<Observed> = Vec::new();
        {
            let mut tracker = shared.tracker.lock().unwrap_or_else(|p| p.into_inner());
            match event {
                Event::Init => listed.clear(),
                Event::InitApply(obj) | Event::Apply(obj) => {
                    let initial = first_list;
                    let Ok(value) = serde_json::to_value(&obj) else { continue };
                    let Some(key) = tracker.key_of(&ar.group, &ar.plural, &value) else { continue };
                    listed.insert(key.encode());
                    if let Some(o) = tracker.apply(key, value, !initial) {
                        observed.push(o);
                    }
                }
                Event::InitDone => {
                    if !first_list {
                        // A relist after a gap: objects we knew that are gone were deleted.
                        for (key, last) in tracker.known_of(&shared.config.cluster, &ar.group, &ar.plural) {
                            if !listed.contains(&key.encode()) {
                                observed.push(tracker.delete(key, last));
                            }
                        }
                    }
                    first_list = false;
                    listed.clear();
                }
                Event::Delete(obj) => {
                    let Ok(value) = serde_json::to_value(&obj) else { continue };
                    let Some(key) = tracker.key_of(&ar.group, &ar.plural, &value) else { continue };
                    observed.push(tracker.delete(key, value));
                }
            }
        }
        for o in observed {
            if crds {
                shared.rediscover.notify_one();
            }
            record(&shared, o).await;
        }
    }
}

/// Writes one change to the cache (joinable by new and by old resourceVersion) and queues its
/// activity.
async fn record(shared: &Shared, o: Observed) {
    let now = nanos_of(chrono::Utc::now());
    let ttl = Some(shared.config.change_ttl);
    let key = &o.object.key;
    let mut writes: Vec<(kausal_core::cache::CacheKey, StoredChange)> = Vec::new();
    let stored = |change: Change| StoredChange {
        old_resource_version: o.old_resource_version.clone(),
        new_resource_version: o.new_resource_version.clone(),
        observed_at: now,
        change,
        uid: o.object.uid.clone(),
    };
    match &o.change {
        Change::Snapshot { phase: kausal_core::activity::SnapshotPhase::Creation, .. } => {
            writes.push((changes::key_of_creation(key), stored(o.change.clone())));
            writes.push((changes::key_by_new(key, &o.new_resource_version), stored(o.change.clone())));
        }
        Change::Snapshot { phase: kausal_core::activity::SnapshotPhase::Deletion, .. } => {
            writes.push((changes::key_of_deletion(key), stored(o.change.clone())));
            // An update that began the deletion is also a diff between two versions.
            let by_version = match &o.diff {
                Some(entries) => Change::Diff { entries: entries.clone() },
                None => o.change.clone(),
            };
            if !o.new_resource_version.is_empty() && o.diff.is_some() {
                writes.push((changes::key_by_new(key, &o.new_resource_version), stored(by_version.clone())));
            }
            if !o.old_resource_version.is_empty() {
                writes.push((changes::key_by_old(key, &o.old_resource_version), stored(by_version)));
            }
        }
        Change::Diff { .. } => {
            writes.push((changes::key_by_new(key, &o.new_resource_version), stored(o.change.clone())));
            if !o.old_resource_version.is_empty() {
                writes.push((changes::key_by_old(key, &o.old_resource_version), stored(o.change.clone())));
            }
        }
    }
    for (k, v) in writes {
        let Ok(bytes) = serde_json::to_vec(&v) else { continue };
        if let Err(e) = shared.cache.put(&k, bytes, ttl).await {
            shared.metrics.failed.inc();
            tracing::warn!(object = %key, error = %e, "cannot store change in the cache");
        }
    }
    // What linkers read instead of calling the API server: owner and identity.
    if let Ok(meta) = serde_json::to_vec(&o.meta)
        && let Err(e) = shared.cache.put(&changes::key_of_meta(key), meta, ttl).await
    {
        shared.metrics.failed.inc();
        tracing::warn!(object = %key, error = %e, "cannot store object metadata in the cache");
    }
    if shared.config.emit_changes {
        let activity = Activity {
            object: o.object.clone(),
            start: now,
            end: now,
            detail: ActivityDetail::Change(ChangeActivity {
                old_resource_version: o.old_resource_version.clone(),
                new_resource_version: o.new_resource_version.clone(),
                ..Default::default()
            }),
            links: Vec::new(),
            change: Some(o.change),
            cause: None,
        };
        shared.metrics.received.inc();
        // Awaiting a full queue pauses this watch: backpressure reaches the API server.
        let _ = shared.out.send(activity).await;
    }
}

/// Drains the queue into batches downstream, retrying while downstream pushes back.
async fn send_loop(
    mut rx: mpsc::Receiver<Activity>,
    next: Arc<dyn Consumer>,
    metrics: ComponentMetrics,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let first = tokio::select! {
            a = rx.recv() => a,
            _ = shutdown.changed() => None,
        };
        let Some(first) = first else { return };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(a) => batch.push(a),
                Err(_) => break,
            }
        }
        let n = batch.len() as u64;
        let mut delay = Duration::from_millis(50);
        loop {
            match next.consume(Batch::Activities(batch.clone())).await {
                Ok(()) => {
                    metrics.sent.inc_by(n);
                    break;
                }
                Err(e) if e.is_retryable() && !*shutdown.borrow() => {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Err(e) => {
                    metrics.failed.inc_by(n);
                    tracing::warn!(error = %e, dropped = n, "downstream refused change activities");
                    break;
                }
            }
        }
    }
}
