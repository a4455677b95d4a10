//! The sending queue: bounded in batches, drained by several senders, optionally mirrored on
//! disk so that what was accepted and not yet acknowledged survives a restart. A batch leaves
//! the queue when a sender takes it and is acknowledged (forgotten, also on disk) once it was
//! delivered or failed for good; a batch taken but never acknowledged (shutdown mid-send) is
//! sent again after a restart when the queue is persistent.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use kausal_core::otlp_trace::ResourceSpans;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use tokio::sync::Notify;

use crate::config::{BatchConfig, QueueConfig};
use crate::persist::{DiskError, DiskLog};

/// One accepted batch.
#[derive(Clone, Debug)]
pub struct Entry {
    pub id: u64,
    pub spans: Vec<ResourceSpans>,
    pub count: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("sending queue is full ({0} batches)")]
    Full(usize),
    #[error("exporter is shutting down")]
    Closed,
    #[error(transparent)]
    Disk(#[from] DiskError),
}

struct State {
    entries: VecDeque<Entry>,
    in_flight: BTreeSet<u64>,
    next_id: u64,
    closed: bool,
    disk: Option<DiskLog>,
}

pub struct Queue {
    state: Mutex<State>,
    changed: Notify,
    capacity: usize,
}

pub fn count_spans(spans: &[ResourceSpans]) -> usize {
    spans.iter().flat_map(|r| &r.scope_spans).map(|s| s.spans.len()).sum()
}

impl Queue {
    /// A queue per `config`; with `storage`, batches left from the last run are loaded first
    /// (those that no longer decode are reported and skipped).
    pub fn open(config: &QueueConfig) -> Result<Queue, DiskError> {
        let mut entries = VecDeque::new();
        let mut next_id = 1;
        let mut disk = None;
        if let Some(dir) = &config.storage {
            let (log, live) = DiskLog::open(dir, config.fsync)?;
            next_id = log.max_seen_id + 1;
            for (id, payload) in live {
                match ExportTraceServiceRequest::decode(payload.as_slice()) {
                    Ok(req) => {
                        let count = count_spans(&req.resource_spans);
                        entries.push_back(Entry { id, spans: req.resource_spans, count });
                    }
                    Err(e) => tracing::error!(dir = %dir.display(), id, error = %e, "persisted batch does not decode; skipped"),
                }
            }
            if !entries.is_empty() {
                tracing::info!(dir = %dir.display(), batches = entries.len(), "resuming persisted sending queue");
            }
            disk = Some(log);
        }
        Ok(Queue {
            state: Mutex::new(State { entries, in_flight: BTreeSet::new(), next_id, closed: false, disk }),
            changed: Notify::new(),
            capacity: config.queue_size,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Accepts a batch, or refuses it when full or closed. Persisted before it is accepted.
    pub fn push(&self, spans: Vec<ResourceSpans>) -> Result<(), PushError> {
        let count = count_spans(&spans);
        // Encode outside the lock.
        let needs_disk = self.lock().disk.is_some();
        let payload = needs_disk.then(|| {
            ExportTraceServiceRequest { resource_spans: spans.clone() }.encode_to_vec()
        });
        let mut st = self.lock();
        if st.closed {
            return Err(PushError::Closed);
        }
        if st.entries.len() >= self.capacity {
            return Err(PushError::Full(self.capacity));
        }
        let id = st.next_id;
        if let (Some(disk), Some(payload)) = (st.disk.as_mut(), payload.as_ref()) {
            disk.append(id, payload)?;
        }
        st.next_id += 1;
        st.entries.push_back(Entry { id, spans, count });
        drop(st);
        self.changed.notify_waiters();
        Ok(())
    }

    /// Batches waiting (not counting those being sent).
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Batches waiting or being sent.
    pub fn pending(&self) -> usize {
        let st = self.lock();
        st.entries.len() + st.in_flight.len()
    }

    /// Stops accepting; `take` returns `None` once the queue is drained.
    pub fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_waiters();
    }

    /// Takes the next batches to send: one batch, or with `batch` several merged up to
    /// `max_size` spans, waiting up to `flush_timeout` for `min_size` to accumulate.
    /// Returns `None` when closed and empty.
    pub async fn take(&self, batch: Option<&BatchConfig>) -> Option<Vec<Entry>> {
        let mut deadline: Option<tokio::time::Instant> = None;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut st = self.lock();
                if !st.entries.is_empty() {
                    let queued: usize = st.entries.iter().map(|e| e.count).sum();
                    let ready = match batch {
                        None => true,
                        Some(b) => {
                            queued >= b.min_size
                                || st.closed
                                || deadline.is_some_and(|d| tokio::time::Instant::now() >= d)
                        }
                    };
                    if ready {
                        let max = batch.map(|b| b.max_size).filter(|m| *m > 0).unwrap_or(usize::MAX);
                        let limit = if batch.is_some() { usize::MAX } else { 1 };
                        let mut taken = Vec::new();
                        let mut total = 0usize;
                        while let Some(front) = st.entries.front() {
                            if !taken.is_empty() && (taken.len() >= limit || total + front.count > max) {
                                break;
                            }
                            let Some(e) = st.entries.pop_front() else { break };
                            total += e.count;
                            st.in_flight.insert(e.id);
                            taken.push(e);
                        }
                        return Some(taken);
                    }
                    if let Some(b) = batch {
                        deadline.get_or_insert_with(|| tokio::time::Instant::now() + b.flush_timeout);
                    }
                } else if st.closed {
                    return None;
                }
            }
            match deadline {
                Some(d) => {
                    let _ = tokio::time::timeout_at(d, notified).await;
                }
                None => notified.await,
            }
        }
    }

    /// Forgets delivered (or permanently failed) batches, also on disk.
    pub fn ack(&self, ids: &[u64]) {
        let mut st = self.lock();
        for id in ids {
            st.in_flight.remove(id);
        }
        let live: Option<BTreeSet<u64>> = match &st.disk {
            Some(_) if st.entries.is_empty() && st.in_flight.is_empty() => Some(BTreeSet::new()),
            Some(d) if d.wants_compaction() => {
                Some(st.entries.iter().map(|e| e.id).chain(st.in_flight.iter().copied()).collect())
            }
            _ => None,
        };
        if let Some(disk) = st.disk.as_mut() {
            let result = match &live {
                Some(l) if l.is_empty() => disk.reset(),
                Some(l) => disk.ack(ids).and_then(|()| disk.compact(l)),
                None => disk.ack(ids),
            };
            if let Err(e) = result {
                tracing::error!(error = %e, "persistent queue could not record delivery; those batches may be sent again after a restart");
            }
        }
        drop(st);
        self.changed.notify_waiters();
    }

    /// Gives batches that were taken but not sent back to the front of the queue (in memory;
    /// on disk they never left).
    pub fn give_back(&self, mut entries: Vec<Entry>) {
        let mut st = self.lock();
        while let Some(e) = entries.pop() {
            st.in_flight.remove(&e.id);
            st.entries.push_front(e);
        }
        drop(st);
        self.changed.notify_waiters();
    }

    /// Takes everything still waiting (for counting at shutdown).
    pub fn drain_all(&self) -> Vec<Entry> {
        self.lock().entries.drain(..).collect()
    }

    /// Whether batches are mirrored on disk.
    pub fn is_persistent(&self) -> bool {
        self.lock().disk.is_some()
    }

    /// Waits until nothing is waiting or being sent, or `timeout` passes. Returns whether empty.
    pub async fn wait_empty(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.pending() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.pending() == 0;
            }
        }
    }
}
