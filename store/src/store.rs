//! Opening the store (one shared handle per directory per process), the write path (one redb
//! transaction per batch, unchanged object re-emissions skipped) and retention. Reads go
//! through [`Snapshot`](crate::Snapshot) in `read.rs`. All methods block; async callers run
//! them on a blocking thread.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};

use kausal_core::conventions::attr;
use kausal_core::otlp_trace::{ResourceSpans, Span};
use kausal_core::{Nanos, ObjectKey};
use prost::Message;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, Table, WriteTransaction};

use crate::error::StoreError;
use crate::read::Snapshot;
use crate::record::{
    any_value_str, any_value_text, classify, clamp_nanos, find_attr, object_identity, object_link, span_id_of,
    RejectReason, SpanClass,
};
use crate::seen::SeenSet;
use crate::tables::{
    span_u64, tag_key, trace_u128, SpanLocation, TraceRef, ACTIVITIES, CLUSTERS, FOREIGN, FORMAT_VERSION,
    LINKS_REVERSE, META, OBJECTS, OBJECT_TRACES, SPANS, TAGS, TRACES, WINDOWS,
};

/// The database file inside the store directory.
pub const DATABASE_FILE: &str = "kausal.redb";

const META_FORMAT_VERSION: &str = "format_version";
const META_MAX_WINDOW_LENGTH: &str = "max_window_length";
/// Windows deleted per retention transaction, to keep each transaction's memory bounded.
const RETENTION_CHUNK: usize = 512;

/// Tuning of a store. The directory's first opener in a process decides; later openers share
/// that handle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreOptions {
    /// How long data is kept; [`Store::delete_expired`] deletes windows that ended earlier.
    pub retention: Duration,
    /// redb page cache, bytes.
    pub cache_size: usize,
    /// Commits are made durable (fsync) at most this often; commits in between survive a crash
    /// of the process only if a later durable commit happens. Zero: every commit is durable.
    pub sync_interval: Duration,
    /// How many object-span emissions to remember for skipping unchanged re-emissions.
    pub seen_capacity: usize,
    /// Also index activity span ids (span id → object span), for [`Snapshot::locate_span`] on
    /// activities. Costs about a third of write throughput (a random insert per activity);
    /// without it an activity is located through its trace id ([`Snapshot::locate_trace`]),
    /// which is its object span's.
    pub index_activity_span_ids: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            retention: Duration::from_secs(7 * 24 * 3600),
            cache_size: 256 << 20,
            sync_interval: Duration::from_secs(1),
            seen_capacity: 200_000,
            index_activity_span_ids: false,
        }
    }
}

/// Counts of one [`Store::write`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Object spans that created or changed a record.
    pub objects_written: usize,
    /// Object spans that changed nothing (re-emissions).
    pub objects_unchanged: usize,
    pub activities: usize,
    /// Spans without `kausal.span.type`, kept by trace id.
    pub foreign: usize,
    /// Spans that could not be stored (bad ids, object spans without a key); each is logged.
    pub rejected: usize,
}

/// Counts of one [`Store::delete_before`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetentionStats {
    pub windows: usize,
    pub activities: usize,
    pub traces: usize,
    pub foreign: usize,
}

/// The embedded span store. Cheap to share (`Arc`); writes are serialised, reads run on
/// snapshots concurrently with writes.
pub struct Store {
    db: Database,
    dir: PathBuf,
    options: StoreOptions,
    writer: Mutex<WriterState>,
    max_window_length: AtomicI64,
    /// Query-side trace ids registered since the last commit: searches register them here
    /// (no write transaction on the request path) and the next write, flush or drop of the
    /// store commits them, so deep links survive restarts. Snapshots look here first.
    pending_traces: PendingTraces,
}

/// Trace ids registered but not committed yet, shared with every [`Snapshot`].
pub(crate) type PendingTraces = Arc<Mutex<HashMap<u64, TraceRef>>>;

/// Pending trace ids beyond which registering one commits them at once, so that a store
/// nobody writes to keeps memory bounded.
const PENDING_TRACES_LIMIT: usize = 4096;

struct WriterState {
    seen: SeenSet,
    last_sync: Instant,
    /// A commit was made without fsync since the last durable one.
    unsynced: bool,
}

fn registry() -> MutexGuard<'static, HashMap<PathBuf, Weak<Store>>> {
    static OPEN: OnceLock<Mutex<HashMap<PathBuf, Weak<Store>>>> = OnceLock::new();
    OPEN.get_or_init(Default::default).lock().unwrap_or_else(PoisonError::into_inner)
}

impl Store {
    /// Open (creating if needed) the store in `dir`. Within one process every opener of the
    /// same directory gets the same handle, so the exporter writing and the query extension
    /// reading share one database.
    pub fn open(dir: impl AsRef<Path>, options: StoreOptions) -> Result<Arc<Store>, StoreError> {
        let dir = dir.as_ref();
        let io_err = |source| StoreError::CreateDir { path: dir.to_path_buf(), source };
        std::fs::create_dir_all(dir).map_err(io_err)?;
        let canonical = dir.canonicalize().map_err(io_err)?;
        let mut open = registry();
        if let Some(store) = open.get(&canonical).and_then(Weak::upgrade) {
            if store.options != options {
                tracing::debug!(dir = %canonical.display(), "store already open; keeping the first opener's options");
            }
            return Ok(store);
        }
        open.retain(|_, w| w.strong_count() > 0);
        let store = Arc::new(Store::open_database(canonical.clone(), options)?);
        open.insert(canonical, Arc::downgrade(&store));
        Ok(store)
    }

    fn open_database(dir: PathBuf, options: StoreOptions) -> Result<Store, StoreError> {
        let path = dir.join(DATABASE_FILE);
        let mut attempts = 0;
        let db = loop {
            match Database::builder().set_cache_size(options.cache_size).create(&path) {
                Ok(db) => break db,
                // The previous handle of this directory may be finishing its drop on another
                // thread; the file lock is released right after.
                Err(redb::DatabaseError::DatabaseAlreadyOpen) if attempts < 50 => {
                    attempts += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(source) => return Err(StoreError::Open { path, source }),
            }
        };
        let txn = db.begin_write()?;
        let max_window_length = {
            let mut meta = txn.open_table(META)?;
            let found = meta.get(META_FORMAT_VERSION)?.map(|v| v.value());
            match found {
                None => {
                    meta.insert(META_FORMAT_VERSION, FORMAT_VERSION)?;
                }
                Some(v) if v == FORMAT_VERSION => {}
                Some(found) => return Err(StoreError::FormatVersion { path, found, expected: FORMAT_VERSION }),
            }
            let max = meta.get(META_MAX_WINDOW_LENGTH)?.map(|v| v.value()).unwrap_or(0);
            // Create every table so that readers never meet a missing one.
            txn.open_table(OBJECTS)?;
            txn.open_table(WINDOWS)?;
            txn.open_table(TAGS)?;
            txn.open_table(ACTIVITIES)?;
            txn.open_table(SPANS)?;
            txn.open_table(OBJECT_TRACES)?;
            txn.open_table(LINKS_REVERSE)?;
            txn.open_table(CLUSTERS)?;
            txn.open_table(TRACES)?;
            txn.open_table(FOREIGN)?;
            i64::try_from(max).unwrap_or(i64::MAX)
        };
        txn.commit()?;
        tracing::info!(path = %path.display(), "span store open");
        Ok(Store {
            db,
            dir,
            writer: Mutex::new(WriterState {
                seen: SeenSet::new(options.seen_capacity),
                last_sync: Instant::now(),
                unsynced: false,
            }),
            options,
            max_window_length: AtomicI64::new(max_window_length),
            pending_traces: PendingTraces::default(),
        })
    }

    /// The (canonical) directory of this store.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn options(&self) -> &StoreOptions {
        &self.options
    }

    /// A consistent read view of the store as of now.
    pub fn read(&self) -> Result<Snapshot, StoreError> {
        Ok(Snapshot::new(
            self.db.begin_read()?,
            self.max_window_length.load(Ordering::Relaxed),
            self.pending_traces.clone(),
        ))
    }

    /// Store a batch of spans in one transaction. Object spans are merged into the stored
    /// record of their (object, window); activity spans are stored under their object span by
    /// span id (a second copy replaces the first); spans without `kausal.span.type` are kept by
    /// trace id. Spans that cannot be stored are logged and counted, never fatal for the batch.
    pub fn write(&self, batch: &[ResourceSpans]) -> Result<WriteStats, StoreError> {
        let mut state = self.lock_writer();
        let mut txn = self.db.begin_write()?;
        let durable = self.begin_commit(&mut state, &mut txn)?;
        let mut stats = WriteStats::default();
        let mut seen_now = Vec::new();
        let mut max_window = self.max_window_length.load(Ordering::Relaxed);
        {
            let mut w = BatchWriter::open(&txn)?;
            w.index_activity_span_ids = self.options.index_activity_span_ids;
            for resource_spans in batch {
                let resource_cluster = resource_spans
                    .resource
                    .as_ref()
                    .and_then(|r| find_attr(&r.attributes, attr::CLUSTER))
                    .and_then(any_value_str);
                for span in resource_spans.scope_spans.iter().flat_map(|s| &s.spans) {
                    let result = match classify(span) {
                        SpanClass::Object => w
                            .upsert_object(span, resource_cluster, &mut state.seen, &mut seen_now, &mut max_window)
                            .map(|changed| {
                                if changed {
                                    stats.objects_written += 1;
                                } else {
                                    stats.objects_unchanged += 1;
                                }
                            }),
                        SpanClass::Activity(_) => w.put_activity(span).map(|()| stats.activities += 1),
                        SpanClass::Foreign => w.put_foreign(span).map(|()| stats.foreign += 1),
                    };
                    match result {
                        Ok(()) => {}
                        Err(WriteError::Store(e)) => return Err(e),
                        Err(WriteError::Rejected(reason)) => {
                            stats.rejected += 1;
                            tracing::warn!(span = %span.name, %reason, "span not stored");
                        }
                    }
                }
            }
            if max_window > self.max_window_length.load(Ordering::Relaxed) {
                w.meta.insert(META_MAX_WINDOW_LENGTH, u64::try_from(max_window).unwrap_or(0))?;
            }
        }
        let traces = self.insert_pending_traces(&txn)?;
        txn.commit()?;
        self.forget_pending_traces(&traces);
        self.max_window_length.fetch_max(max_window, Ordering::Relaxed);
        self.end_commit(&mut state, durable);
        for hash in seen_now {
            state.seen.insert(hash);
        }
        Ok(stats)
    }

    /// Register a query-side trace id for `trace` and return it. Idempotent.
    pub fn put_trace_ref(&self, trace: &TraceRef) -> Result<u64, StoreError> {
        Ok(self.put_trace_refs(std::slice::from_ref(trace))?.first().copied().unwrap_or_else(|| trace.id()))
    }

    /// Register query-side trace ids for several traces; returns their ids in order. The ids
    /// are deterministic ([`TraceRef::id`]) and resolvable at once through any snapshot; new
    /// ones are committed with the next write or [`Store::flush`] (or right here once many are
    /// pending), so a search costs no write transaction of its own.
    pub fn put_trace_refs(&self, traces: &[TraceRef]) -> Result<Vec<u64>, StoreError> {
        let ids: Vec<u64> = traces.iter().map(TraceRef::id).collect();
        let missing: Vec<(u64, &TraceRef)> = {
            let snapshot = self.read()?;
            let mut missing = Vec::new();
            for (id, trace) in ids.iter().zip(traces) {
                if snapshot.trace_ref(*id)?.is_none() {
                    missing.push((*id, trace));
                }
            }
            missing
        };
        if missing.is_empty() {
            return Ok(ids);
        }
        let pending = {
            let mut pending = self.pending_traces.lock().unwrap_or_else(PoisonError::into_inner);
            for (id, trace) in missing {
                pending.insert(id, trace.clone());
            }
            pending.len()
        };
        if pending >= PENDING_TRACES_LIMIT {
            self.flush()?;
        }
        Ok(ids)
    }

    /// Insert every pending trace id into `txn`; returns what was inserted, to be forgotten
    /// once the transaction commits.
    fn insert_pending_traces(&self, txn: &WriteTransaction) -> Result<Vec<u64>, StoreError> {
        let pending: Vec<(u64, Vec<u8>)> = self
            .pending_traces
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(id, trace)| (*id, trace.encode()))
            .collect();
        if pending.is_empty() {
            return Ok(Vec::new());
        }
        let mut table = txn.open_table(TRACES)?;
        for (id, encoded) in &pending {
            table.insert(*id, encoded.as_slice())?;
        }
        Ok(pending.into_iter().map(|(id, _)| id).collect())
    }

    fn forget_pending_traces(&self, committed: &[u64]) {
        if committed.is_empty() {
            return;
        }
        let mut pending = self.pending_traces.lock().unwrap_or_else(PoisonError::into_inner);
        for id in committed {
            pending.remove(id);
        }
    }

    /// Delete what is older than the configured retention, relative to `now`.
    pub fn delete_expired(&self, now: Nanos) -> Result<RetentionStats, StoreError> {
        let retention = Nanos::try_from(self.options.retention.as_nanos()).unwrap_or(Nanos::MAX);
        self.delete_before(now.saturating_sub(retention))
    }

    /// Delete every object window that ended at or before `cutoff` with its activities and
    /// index entries, trace ids whose range ended before it, and foreign spans that ended
    /// before it. Runs in bounded transactions, so writers are not held up for long.
    pub fn delete_before(&self, cutoff: Nanos) -> Result<RetentionStats, StoreError> {
        let mut stats = RetentionStats::default();
        // Pending trace ids go through the same expiry as committed ones.
        self.flush()?;
        let expired: Vec<(Nanos, String, u64, Nanos)> = {
            let snapshot = self.db.begin_read()?;
            let windows = snapshot.open_table(WINDOWS)?;
            let mut out = Vec::new();
            for entry in windows.range(..(cutoff, ""))? {
                let (k, v) = entry?;
                let (start, key) = k.value();
                let (span_id, length) = v.value();
                if start.saturating_add(length) <= cutoff {
                    out.push((start, key.to_string(), span_id, length));
                }
            }
            out
        };
        for chunk in expired.chunks(RETENTION_CHUNK) {
            let mut state = self.lock_writer();
            let mut txn = self.db.begin_write()?;
            let durable = self.begin_commit(&mut state, &mut txn)?;
            {
                let mut w = BatchWriter::open(&txn)?;
                w.index_activity_span_ids = self.options.index_activity_span_ids;
                for (start, key, span_id, _) in chunk {
                    stats.activities += w.delete_window(key, *start, *span_id)?;
                    stats.windows += 1;
                }
            }
            txn.commit()?;
            self.end_commit(&mut state, durable);
            state.seen.clear();
        }
        let mut state = self.lock_writer();
        let mut txn = self.db.begin_write()?;
        let durable = self.begin_commit(&mut state, &mut txn)?;
        {
            let mut traces = txn.open_table(TRACES)?;
            traces.retain(|_, v| {
                let keep = TraceRef::decode(v).is_none_or(|t| t.end > cutoff);
                stats.traces += usize::from(!keep);
                keep
            })?;
            let mut foreign = txn.open_table(FOREIGN)?;
            foreign.retain(|_, v| {
                let end = v.get(..8).and_then(|b| b.try_into().ok()).map(i64::from_be_bytes);
                let keep = end.is_none_or(|end| end > cutoff);
                stats.foreign += usize::from(!keep);
                keep
            })?;
        }
        txn.commit()?;
        self.end_commit(&mut state, durable);
        if stats.windows > 0 {
            tracing::info!(windows = stats.windows, activities = stats.activities, cutoff, "retention deleted expired data");
        }
        Ok(stats)
    }

    /// Make every commit so far durable, committing pending trace ids first.
    pub fn flush(&self) -> Result<(), StoreError> {
        let mut state = self.lock_writer();
        let has_pending = !self.pending_traces.lock().unwrap_or_else(PoisonError::into_inner).is_empty();
        if !state.unsynced && !has_pending {
            return Ok(());
        }
        let txn = self.db.begin_write()?;
        let traces = self.insert_pending_traces(&txn)?;
        txn.commit()?;
        self.forget_pending_traces(&traces);
        state.unsynced = false;
        state.last_sync = Instant::now();
        Ok(())
    }

    fn lock_writer(&self) -> MutexGuard<'_, WriterState> {
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Choose the durability of the coming commit; returns whether it is durable.
    fn begin_commit(&self, state: &mut WriterState, txn: &mut WriteTransaction) -> Result<bool, StoreError> {
        let durable = self.options.sync_interval.is_zero() || state.last_sync.elapsed() >= self.options.sync_interval;
        if !durable {
            txn.set_durability(Durability::None)?;
        }
        Ok(durable)
    }

    fn end_commit(&self, state: &mut WriterState, durable: bool) {
        if durable {
            state.last_sync = Instant::now();
            state.unsynced = false;
        } else {
            state.unsynced = true;
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            tracing::error!(dir = %self.dir.display(), error = %e, "span store: last commits not made durable");
        }
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("dir", &self.dir).field("options", &self.options).finish()
    }
}

enum WriteError {
    Store(StoreError),
    Rejected(RejectReason),
}

impl From<redb::StorageError> for WriteError {
    fn from(e: redb::StorageError) -> Self {
        WriteError::Store(e.into())
    }
}

fn rejected(reason: RejectReason) -> WriteError {
    WriteError::Rejected(reason)
}

/// The tables of one write transaction plus reusable buffers.
struct BatchWriter<'txn> {
    meta: Table<'txn, &'static str, u64>,
    objects: Table<'txn, (&'static str, i64), &'static [u8]>,
    windows: Table<'txn, (i64, &'static str), (u64, i64)>,
    tags: Table<'txn, (&'static str, i64, &'static str), i64>,
    activities: Table<'txn, (u64, i64, u64), &'static [u8]>,
    spans: Table<'txn, u64, &'static [u8]>,
    object_traces: Table<'txn, u128, &'static [u8]>,
    index_activity_span_ids: bool,
    links_reverse: Table<'txn, (&'static str, i64, u8, &'static str), &'static str>,
    clusters: Table<'txn, &'static str, ()>,
    foreign: Table<'txn, (u128, u64), &'static [u8]>,
    buf: Vec<u8>,
    location: Vec<u8>,
}

impl<'txn> BatchWriter<'txn> {
    fn open(txn: &'txn WriteTransaction) -> Result<Self, StoreError> {
        Ok(BatchWriter {
            meta: txn.open_table(META)?,
            objects: txn.open_table(OBJECTS)?,
            windows: txn.open_table(WINDOWS)?,
            tags: txn.open_table(TAGS)?,
            activities: txn.open_table(ACTIVITIES)?,
            spans: txn.open_table(SPANS)?,
            object_traces: txn.open_table(OBJECT_TRACES)?,
            index_activity_span_ids: false,
            links_reverse: txn.open_table(LINKS_REVERSE)?,
            clusters: txn.open_table(CLUSTERS)?,
            foreign: txn.open_table(FOREIGN)?,
            buf: Vec::with_capacity(4096),
            location: Vec::with_capacity(64),
        })
    }

    /// Merge an object span into its record; returns whether the record changed.
    fn upsert_object(
        &mut self,
        span: &Span,
        resource_cluster: Option<&str>,
        seen: &mut SeenSet,
        seen_now: &mut Vec<u64>,
        max_window: &mut Nanos,
    ) -> Result<bool, WriteError> {
        let (key, window, trace_id, span_id) = object_identity(span, resource_cluster).map_err(rejected)?;
        let encoded_key = key.encode();
        self.buf.clear();
        span.encode(&mut self.buf).map_err(|e| rejected(RejectReason::Encode(e.to_string())))?;
        let emission = xxhash_rust::xxh3::xxh3_64(&self.buf) ^ xxhash_rust::xxh3::xxh3_64(encoded_key.as_bytes());
        if seen.contains(emission) {
            return Ok(false);
        }
        let stored = self
            .objects
            .get((encoded_key.as_str(), window.start))?
            .and_then(|v| decode_span(v.value(), "object"));
        let (merged, old_tags) = match stored {
            Some(mut stored) => {
                let old_tags = object_tags(&key, &stored);
                if !crate::record::merge_object_span(&mut stored, span) {
                    seen_now.push(emission);
                    return Ok(false);
                }
                (stored, old_tags)
            }
            None => {
                let mut fresh = span.clone();
                if find_attr(&fresh.attributes, attr::CLUSTER).is_none() && !key.cluster.is_empty() {
                    fresh.attributes.push(crate::record::string_kv(attr::CLUSTER, &key.cluster));
                }
                (fresh, BTreeSet::new())
            }
        };
        self.buf.clear();
        merged.encode(&mut self.buf).map_err(|e| rejected(RejectReason::Encode(e.to_string())))?;
        let ws = window.start;
        self.objects.insert((encoded_key.as_str(), ws), self.buf.as_slice())?;
        self.windows.insert((ws, encoded_key.as_str()), (span_u64(span_id), window.length))?;
        SpanLocation::encode_object(&mut self.location, &encoded_key, ws);
        self.spans.insert(span_u64(span_id), self.location.as_slice())?;
        self.object_traces.insert(trace_u128(trace_id), self.location.as_slice())?;
        let new_tags = object_tags(&key, &merged);
        for tag in old_tags.difference(&new_tags) {
            self.tags.remove((tag.as_str(), ws, encoded_key.as_str()))?;
        }
        for tag in new_tags.difference(&old_tags) {
            self.tags.insert((tag.as_str(), ws, encoded_key.as_str()), window.length)?;
        }
        for link in merged.links.iter().filter_map(object_link) {
            let peer = link.peer.encode();
            let role = link.role.reverse() as u8;
            self.links_reverse.insert((peer.as_str(), ws, role, encoded_key.as_str()), link.class.as_str())?;
        }
        if self.clusters.get(key.cluster.as_str())?.is_none() {
            self.clusters.insert(key.cluster.as_str(), ())?;
        }
        *max_window = (*max_window).max(window.length);
        seen_now.push(emission);
        Ok(true)
    }

    fn put_activity(&mut self, span: &Span) -> Result<(), WriteError> {
        let span_id = span_u64(span_id_of(&span.span_id).map_err(rejected)?);
        let parent = span_u64(span_id_of(&span.parent_span_id).map_err(|_| rejected(RejectReason::NoParent))?);
        let start = clamp_nanos(span.start_time_unix_nano);
        self.buf.clear();
        span.encode(&mut self.buf).map_err(|e| rejected(RejectReason::Encode(e.to_string())))?;
        self.activities.insert((parent, start, span_id), self.buf.as_slice())?;
        if !self.index_activity_span_ids {
            // Idempotent all the same: a re-sent activity has the same parent, start and id,
            // hence the same key.
            return Ok(());
        }
        SpanLocation::encode_activity(&mut self.location, parent, start);
        let previous = self
            .spans
            .insert(span_id, self.location.as_slice())?
            .filter(|old| old.value() != self.location.as_slice())
            .and_then(|old| SpanLocation::decode(old.value()));
        // The same span id arrived before under another parent or start: keep only the newest.
        if let Some(SpanLocation::Activity { object_span_id, start: old_start }) = previous {
            self.activities.remove((span_u64(object_span_id), old_start, span_id))?;
        }
        Ok(())
    }

    fn put_foreign(&mut self, span: &Span) -> Result<(), WriteError> {
        let span_id = span_u64(span_id_of(&span.span_id).map_err(rejected)?);
        let trace_id: [u8; 16] =
            span.trace_id.as_slice().try_into().map_err(|_| rejected(RejectReason::TraceId(span.trace_id.len())))?;
        self.buf.clear();
        self.buf.extend_from_slice(&clamp_nanos(span.end_time_unix_nano).to_be_bytes());
        span.encode(&mut self.buf).map_err(|e| rejected(RejectReason::Encode(e.to_string())))?;
        self.foreign.insert((trace_u128(trace_id), span_id), self.buf.as_slice())?;
        Ok(())
    }

    /// Delete one object window and everything hanging off it; returns the activities deleted.
    fn delete_window(&mut self, encoded_key: &str, ws: Nanos, span_id: u64) -> Result<usize, StoreError> {
        let stored = self.objects.remove((encoded_key, ws))?.and_then(|v| decode_span(v.value(), "object"));
        let key = ObjectKey::decode(encoded_key);
        if let Some(key) = &key {
            let tags = match &stored {
                Some(span) => object_tags(key, span),
                None => object_tags(key, &Span::default()),
            };
            for tag in &tags {
                self.tags.remove((tag.as_str(), ws, encoded_key))?;
            }
        }
        if let Some(trace_id) = stored.as_ref().and_then(|s| <[u8; 16]>::try_from(s.trace_id.as_slice()).ok()) {
            self.object_traces.remove(trace_u128(trace_id))?;
        }
        if let Some(span) = &stored {
            for link in span.links.iter().filter_map(object_link) {
                let peer = link.peer.encode();
                self.links_reverse.remove((peer.as_str(), ws, link.role.reverse() as u8, encoded_key))?;
            }
        }
        self.windows.remove((ws, encoded_key))?;
        self.spans.remove(span_id)?;
        let range = (span_id, i64::MIN, 0)..=(span_id, i64::MAX, u64::MAX);
        let mut activity_ids = Vec::new();
        for entry in self.activities.range(range.clone())? {
            activity_ids.push(entry?.0.value().2);
        }
        if self.index_activity_span_ids {
            for id in &activity_ids {
                self.spans.remove(*id)?;
            }
        }
        self.activities.retain_in(range, |_, _| false)?;
        Ok(activity_ids.len())
    }
}

/// The tag index entries of an object record: the five key fields under their attribute
/// names, plus every scalar `k8s.*` attribute.
pub(crate) fn object_tags(key: &ObjectKey, span: &Span) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut s = String::new();
    for (name, value) in [
        (attr::CLUSTER, &key.cluster),
        (attr::OBJECT_GROUP, &key.group),
        (attr::OBJECT_RESOURCE, &key.resource),
        (attr::NAMESPACE, &key.namespace),
        (attr::OBJECT_NAME, &key.name),
    ] {
        tag_key(&mut s, name, value);
        out.insert(s.clone());
    }
    for kv in span.attributes.iter().filter(|kv| kv.key.starts_with("k8s.")) {
        if let Some(text) = kv.value.as_ref().and_then(any_value_text) {
            tag_key(&mut s, &kv.key, &text);
            out.insert(s.clone());
        }
    }
    out
}

/// Decode a stored span; a record that no longer decodes is logged and skipped.
pub(crate) fn decode_span(bytes: &[u8], what: &str) -> Option<Span> {
    match Span::decode(bytes) {
        Ok(span) => Some(span),
        Err(e) => {
            tracing::error!(error = %e, what, "corrupt span record in store, skipped");
            None
        }
    }
}
