//! The query side's one way into the store, shared by the HTTP API, the gRPC APIs and the
//! benchmark: search objects, fetch a trace by its query-side id, find an object's trace
//! around a time. Synchronous (callers put it on a blocking thread); it returns assembled
//! [`Trace`]s and leaves wire formats to its callers.

use std::sync::Arc;

use axum::http::StatusCode;
use kausal_core::{Nanos, ObjectKey};
use kausal_store::{ObjectQuery, Store, TraceRef};

use crate::api::{ApiError, QueryOptions, SearchRequest};
use crate::assemble::{assemble, TimeRange, Trace};
use crate::load::{load, LoadLimits};
use crate::durations::{pair, summarize, Matcher, Summary};
use crate::mode::{DisplayMode, QueryTraceId, Scope};

/// The store and the limits every query applies.
pub struct Reader {
    store: Arc<Store>,
    options: QueryOptions,
}

/// An object named by its key fields, as `/redirect` and `/api/v1/trace` take it. Empty fields
/// are not filtered on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectQueryKey {
    pub cluster: String,
    pub group: String,
    pub resource: String,
    pub namespace: String,
    pub name: String,
}

impl Reader {
    pub fn new(store: Arc<Store>, options: QueryOptions) -> Reader {
        Reader { store, options }
    }

    pub fn options(&self) -> &QueryOptions {
        &self.options
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Limits of a trace fetched by id.
    fn trace_limits(&self) -> LoadLimits {
        LoadLimits { max_depth: self.options.max_depth, max_linked: self.options.max_objects.saturating_sub(1) }
    }

    /// Limits of one search result.
    fn search_limits(&self) -> LoadLimits {
        LoadLimits { max_depth: self.options.max_depth, max_linked: self.options.link_budget }
    }

    /// Every cluster seen.
    pub fn clusters(&self) -> Result<Vec<String>, ApiError> {
        Ok(self.store.read()?.clusters()?)
    }

    /// The trace a query-side id stands for.
    pub fn trace(&self, id: QueryTraceId) -> Result<Trace, ApiError> {
        let snapshot = self.store.read()?;
        let stored = snapshot.trace_ref(id.id)?.ok_or_else(|| {
            ApiError::not_found(format!("trace {id} not found (trace ids come from searches and expire with retention)"))
        })?;
        let range = TimeRange { start: stored.start, end: stored.end };
        let records = load(&snapshot, &stored.root, range, id.mode.scope, self.trace_limits())?;
        assemble(id.mode, &stored.root, &records, range)
            .ok_or_else(|| ApiError::not_found(format!("trace {id}: no data left for {}", stored.root)))
    }

    /// Search: every matching object becomes one trace over the part of the range it has
    /// data in, following at most `link_budget` linked objects.
    pub fn search(&self, request: &SearchRequest) -> Result<Vec<(QueryTraceId, Trace)>, ApiError> {
        let snapshot = self.store.read()?;
        let hits = snapshot.search(&ObjectQuery {
            filters: request.filters.clone(),
            start: request.range.start,
            end: request.range.end,
            limit: request.limit,
        })?;
        let refs: Vec<TraceRef> = hits
            .iter()
            .map(|hit| TraceRef {
                root: hit.key.clone(),
                start: request.range.start.max(hit.first_window_start),
                end: request.range.end.min(hit.last_window_end),
            })
            .collect();
        let ids = self.store.put_trace_refs(&refs)?;
        let mut traces = Vec::with_capacity(refs.len());
        for (stored, id) in refs.iter().zip(ids) {
            let range = TimeRange { start: stored.start, end: stored.end };
            let records = load(&snapshot, &stored.root, range, request.mode.scope, self.search_limits())?;
            if let Some(trace) = assemble(request.mode, &stored.root, &records, range) {
                traces.push((QueryTraceId { mode: request.mode, id }, trace));
            }
        }
        Ok(traces)
    }

    /// The trace id of the object `key` names over `range` (the most recently active object
    /// when the key leaves fields open), registered so that it can be fetched.
    pub fn locate(&self, key: &ObjectQueryKey, range: TimeRange, mode: DisplayMode) -> Result<QueryTraceId, ApiError> {
        let filters: Vec<(String, String)> = [
            ("cluster", &key.cluster),
            ("group", &key.group),
            ("resource", &key.resource),
            ("namespace", &key.namespace),
            ("name", &key.name),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (kausal_store::canonical_tag(k).to_string(), v.clone()))
        .collect();
        let snapshot = self.store.read()?;
        let hits = snapshot.search(&ObjectQuery { filters, start: range.start, end: range.end, limit: 1 })?;
        let hit = hits.into_iter().next().ok_or_else(|| {
            ApiError::not_found(format!("no object matching {} has data in the requested time range", describe(key)))
        })?;
        let id = self.store.put_trace_ref(&TraceRef { root: hit.key, start: range.start, end: range.end })?;
        Ok(QueryTraceId { mode, id })
    }

    /// The trace of the object `key` names over `range` in `mode`.
    pub fn object_trace(&self, key: &ObjectQueryKey, range: TimeRange, mode: DisplayMode) -> Result<(QueryTraceId, Trace), ApiError> {
        let id = self.locate(key, range, mode)?;
        Ok((id, self.trace(id)?))
    }

    /// The objects activities are looked up on for analyses: every object matching `filters`
    /// with a window in `range`.
    pub fn objects(&self, filters: &[(String, String)], range: TimeRange) -> Result<Vec<ObjectKey>, ApiError> {
        let snapshot = self.store.read()?;
        let hits = snapshot.search(&ObjectQuery { filters: filters.to_vec(), start: range.start, end: range.end, limit: 0 })?;
        Ok(hits.into_iter().map(|h| h.key).collect())
    }
}

impl Reader {
    /// Measure `from` → `to` over every object the `from` matcher names in `range`.
    pub fn durations(&self, from: &Matcher, to: &Matcher, range: TimeRange) -> Result<Summary, ApiError> {
        let snapshot = self.store.read()?;
        let hits = snapshot.search(&ObjectQuery { filters: from.object_filters(), start: range.start, end: range.end, limit: 0 })?;
        let mut pairs = Vec::new();
        let mut unmatched = 0;
        for hit in hits.iter().filter(|h| from.matches_object(&h.key)) {
            let records = load(&snapshot, &hit.key, range, Scope::Children, self.trace_limits())?;
            let (mut found, missed) = pair(&hit.key, &records, from, to);
            pairs.append(&mut found);
            unmatched += missed;
        }
        Ok(summarize(pairs, unmatched))
    }
}

fn describe(key: &ObjectQueryKey) -> String {
    let parts: Vec<String> = [
        ("cluster", &key.cluster),
        ("group", &key.group),
        ("resource", &key.resource),
        ("namespace", &key.namespace),
        ("name", &key.name),
    ]
    .into_iter()
    .filter(|(_, v)| !v.is_empty())
    .map(|(k, v)| format!("{k}={v}"))
    .collect();
    parts.join(" ")
}

/// Half an hour, the span `/redirect` looks around its `ts`.
pub const REDIRECT_MARGIN: Nanos = 30 * 60 * 1_000_000_000;

impl ApiError {
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError { status: StatusCode::INTERNAL_SERVER_ERROR, message: message.into() }
    }
}
