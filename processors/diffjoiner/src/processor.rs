//! The waiting room: writes whose change is not in the cache yet are held (bounded in time by
//! `wait` and in number by `max_pending`) and re-checked every `poll_interval` by a task the
//! processor owns, while every other activity passes straight on. 409 Conflicts wait the same
//! way for the successful write from the same version.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use kausal_core::activity::Activity;
use kausal_core::bounded::BoundedIndex;
use kausal_core::cache::{Cache, process_memory_cache};
use kausal_core::changes::StoredChange;
use kausal_core::component::{
    Batch, Component, ComponentError, ComponentId, ConsumeError, Consumer, CreateContext, Host, Processor,
};
use kausal_core::object::ObjectKey;
use kausal_core::telemetry::ComponentMetrics;
use tokio::sync::watch;

use crate::config::Config;
use crate::join::{self, Need};

struct Pending {
    activity: Activity,
    need: Need,
    deadline: Instant,
}

struct State {
    cache: Option<Arc<dyn Cache>>,
    pending: VecDeque<Pending>,
    /// (object, old version) → audit ID of the successful write from it.
    winners: BoundedIndex<(ObjectKey, String), String>,
}

pub struct DiffJoiner {
    id: ComponentId,
    config: Config,
    next: Arc<dyn Consumer>,
    metrics: ComponentMetrics,
    state: Arc<Mutex<State>>,
    shutdown: watch::Sender<bool>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl DiffJoiner {
    pub fn new(ctx: CreateContext, config: Config, next: Arc<dyn Consumer>) -> Self {
        let (shutdown, _) = watch::channel(false);
        DiffJoiner {
            id: ctx.id,
            next,
            metrics: ctx.metrics,
            state: Arc::new(Mutex::new(State { cache: None, pending: VecDeque::new(), winners: BoundedIndex::new(100_000) })),
            config,
            shutdown,
            task: Mutex::new(None),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn cache(&self) -> Arc<dyn Cache> {
        self.lock().cache.clone().unwrap_or_else(process_memory_cache)
    }
}

impl Processor for DiffJoiner {}

#[async_trait]
impl Component for DiffJoiner {
    async fn start(&self, host: &Host) -> Result<(), ComponentError> {
        let cache = match &self.config.cache {
            Some(id) => {
                let id = ComponentId::parse(id).map_err(|m| ComponentError::new(&self.id, m))?;
                host.cache(&id).map_err(|m| ComponentError::new(&self.id, m))?
            }
            None => process_memory_cache(),
        };
        self.lock().cache = Some(cache.clone());
        let state = self.state.clone();
        let next = self.next.clone();
        let metrics = self.metrics.clone();
        let poll = self.config.poll_interval;
        let mut stop = self.shutdown.subscribe();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(poll) => {}
                    _ = stop.changed() => return,
                }
                let ready = sweep(&state, &cache, false).await;
                forward(&next, &metrics, &state, ready).await;
            }
        });
        *self.task.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
        Ok(())
    }

    async fn shutdown(&self) -> Result<(), ComponentError> {
        let _ = self.shutdown.send(true);
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = task {
            let _ = t.await;
        }
        // Flush: one last look, then everything goes on as it is.
        let cache = self.cache();
        let ready = sweep(&self.state, &cache, true).await;
        if !ready.is_empty() {
            let n = ready.len() as u64;
            match self.next.consume(Batch::Activities(ready)).await {
                Ok(()) => {
                    self.metrics.sent.inc_by(n);
                }
                Err(e) => {
                    self.metrics.failed.inc_by(n);
                    return Err(ComponentError::new(&self.id, format!("flushing waiting writes: {e}")));
                }
            }
        }
        Ok(())
    }
}

/// Looks up what a need asks for; `Some` when it is satisfied.
async fn resolve(state: &Mutex<State>, cache: &Arc<dyn Cache>, activity: &mut Activity, need: &Need) -> bool {
    match need {
        Need::Nothing => true,
        Need::Change(keys) => {
            for key in keys {
                match cache.get(key).await {
                    Ok(Some(entry)) => {
                        if let Ok(stored) = serde_json::from_slice::<StoredChange>(&entry.value)
                            && join::attach(activity, stored)
                        {
                            return true;
                        }
                    }
                    Ok(None) => {}
                    Err(e) => tracing::debug!(error = %e, "cache read failed; will retry"),
                }
            }
            false
        }
        Need::Winner { object, resource_version } => {
            let winner = state
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .winners
                .get(&(object.clone(), resource_version.clone()))
                .cloned();
            match winner {
                Some(w) => {
                    join::mark_conflict(activity, Some(&w));
                    true
                }
                None => false,
            }
        }
    }
}

/// Takes the pending writes that are satisfied or out of time (all of them when `flush`).
async fn sweep(state: &Arc<Mutex<State>>, cache: &Arc<dyn Cache>, flush: bool) -> Vec<Activity> {
    let pending: Vec<Pending> = std::mem::take(&mut state.lock().unwrap_or_else(|p| p.into_inner()).pending).into();
    let now = Instant::now();
    let mut ready = Vec::new();
    let mut keep = VecDeque::new();
    for mut p in pending {
        if resolve(state, cache, &mut p.activity, &p.need).await {
            ready.push(p.activity);
        } else if flush || p.deadline <= now {
            match p.need {
                Need::Winner { .. } => join::mark_conflict(&mut p.activity, None),
                _ => join::mark_unjoined(&mut p.activity),
            }
            ready.push(p.activity);
        } else {
            keep.push_back(p);
        }
    }
    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
    // Writes that arrived during the sweep were appended meanwhile; keep their order after ours.
    keep.extend(s.pending.drain(..));
    s.pending = keep;
    ready
}

async fn forward(next: &Arc<dyn Consumer>, metrics: &ComponentMetrics, state: &Arc<Mutex<State>>, ready: Vec<Activity>) {
    if ready.is_empty() {
        return;
    }
    let n = ready.len() as u64;
    match next.consume(Batch::Activities(ready.clone())).await {
        Ok(()) => {
            metrics.sent.inc_by(n);
        }
        Err(e) if e.is_retryable() => {
            // Back into the waiting room, already resolved, to go out on the next tick.
            let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
            for a in ready.into_iter().rev() {
                s.pending.push_front(Pending { activity: a, need: Need::Nothing, deadline: Instant::now() });
            }
        }
        Err(e) => {
            metrics.failed.inc_by(n);
            tracing::warn!(error = %e, dropped = n, "downstream refused joined writes");
        }
    }
}

#[async_trait]
impl Consumer for DiffJoiner {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        let Batch::Activities(activities) = batch else {
            return self.next.consume(batch).await;
        };
        self.metrics.received.inc_by(activities.len() as u64);
        let cache = self.cache();
        let mut now_out = Vec::with_capacity(activities.len());
        let mut waiting = Vec::new();
        // Winners first, so a conflict in the same batch as its winner resolves at once.
        {
            let mut s = self.lock();
            for a in &activities {
                if let Some((object, rv, audit_id)) = join::winner_key(a) {
                    s.winners.insert((object, rv), audit_id);
                }
            }
        }
        for mut a in activities {
            let mode = self.config.mode_for(&a.object.key.cluster);
            let need = join::need(&mut a, mode);
            if resolve(&self.state, &cache, &mut a, &need).await {
                now_out.push(a);
            } else {
                waiting.push(Pending { activity: a, need, deadline: Instant::now() + self.config.wait });
            }
        }
        if !waiting.is_empty() {
            let mut s = self.lock();
            s.pending.extend(waiting);
            while s.pending.len() > self.config.max_pending {
                if let Some(mut oldest) = s.pending.pop_front() {
                    join::mark_unjoined(&mut oldest.activity);
                    now_out.push(oldest.activity);
                    self.metrics.dropped.inc();
                }
            }
        }
        if now_out.is_empty() {
            return Ok(());
        }
        let n = now_out.len() as u64;
        self.next.consume(Batch::Activities(now_out)).await?;
        self.metrics.sent.inc_by(n);
        Ok(())
    }
}

/// Joins one batch synchronously against `cache` without waiting: for tests and tools.
pub async fn join_now(cache: &Arc<dyn Cache>, config: &Config, activities: &mut [Activity]) -> usize {
    let state = Mutex::new(State { cache: Some(cache.clone()), pending: VecDeque::new(), winners: BoundedIndex::new(1024) });
    {
        let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
        for a in activities.iter() {
            if let Some((object, rv, id)) = join::winner_key(a) {
                s.winners.insert((object, rv), id);
            }
        }
    }
    let mut joined = 0;
    for a in activities.iter_mut() {
        let need = join::need(a, config.mode_for(&a.object.key.cluster));
        if need != Need::Nothing && resolve(&state, cache, a, &need).await {
            joined += 1;
        }
    }
    joined
}

