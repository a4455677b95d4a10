//! Reading the store: a [`Snapshot`] is one consistent view (a redb read transaction) with the
//! lookups the query side needs: search objects by tags and time, an object's windows, its
//! activities, links in both directions, clusters, trace ids. It makes no trees; assembling
//! traces is the query extension's job.

use std::collections::{HashMap, HashSet};

use kausal_core::conventions::attr;
use kausal_core::otlp_trace::Span;
use kausal_core::{LinkRole, Nanos, ObjectKey};
use redb::{ReadOnlyTable, ReadTransaction, ReadableTable};

use crate::error::StoreError;
use crate::record::{object_record, ActivityKind, ActivityRecord, ObjectRecord};
use crate::store::{decode_span, PendingTraces};
use crate::tables::{
    span_u64, trace_u128, SpanLocation, TraceRef, ACTIVITIES, CLUSTERS, FOREIGN, LINKS_REVERSE, OBJECTS, OBJECT_TRACES,
    SPANS, TAGS,
    TRACES, WINDOWS,
};
use kausal_core::conventions::span_type;

/// Kelemetry's short search tags and the attributes they stand for.
pub const SHORT_TAGS: &[(&str, &str)] = &[
    ("cluster", attr::CLUSTER),
    ("group", attr::OBJECT_GROUP),
    ("resource", attr::OBJECT_RESOURCE),
    ("namespace", attr::NAMESPACE),
    ("name", attr::OBJECT_NAME),
];

/// The attribute a search tag means: short tags are translated, anything else is taken as an
/// attribute name.
pub fn canonical_tag(tag: &str) -> &str {
    SHORT_TAGS.iter().find(|(short, _)| *short == tag).map(|(_, long)| *long).unwrap_or(tag)
}

/// An object search: every filter must match (attribute name after [`canonical_tag`], exact
/// value); objects with a window overlapping `[start, end)`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectQuery {
    pub filters: Vec<(String, String)>,
    pub start: Nanos,
    pub end: Nanos,
    /// At most this many objects (0: no limit).
    pub limit: usize,
}

/// An object found by a search, with the span of its windows that overlap the range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectHit {
    pub key: ObjectKey,
    pub first_window_start: Nanos,
    pub last_window_end: Nanos,
}

/// An object that names another as its parent or child, found through the reverse link index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReverseLink {
    /// The object that recorded the link.
    pub object: ObjectKey,
    /// Its role relative to the peer that was asked about.
    pub role: LinkRole,
    pub class: String,
}

/// A consistent read view of the store.
pub struct Snapshot {
    txn: ReadTransaction,
    max_window_length: Nanos,
    pending_traces: PendingTraces,
}

impl Snapshot {
    pub(crate) fn new(txn: ReadTransaction, max_window_length: Nanos, pending_traces: PendingTraces) -> Snapshot {
        Snapshot { txn, max_window_length, pending_traces }
    }

    /// Objects matching `query`, most recently active first, then by key.
    pub fn search(&self, query: &ObjectQuery) -> Result<Vec<ObjectHit>, StoreError> {
        let filters: Vec<(&str, &str)> =
            query.filters.iter().map(|(k, v)| (canonical_tag(k), v.as_str())).collect();
        let lowest_start = query.start.saturating_sub(self.max_window_length.max(1));
        let mut hits: HashMap<String, ObjectHit> = HashMap::new();
        let mut rejected: HashSet<(String, Nanos)> = HashSet::new();
        let objects = self.txn.open_table(OBJECTS)?;
        let mut consider = |encoded_key: &str, ws: Nanos, length: Nanos, rest: &[(&str, &str)]| -> Result<(), StoreError> {
            if ws.saturating_add(length) <= query.start || ws >= query.end {
                return Ok(());
            }
            if let Some(hit) = hits.get_mut(encoded_key) {
                hit.first_window_start = hit.first_window_start.min(ws);
                hit.last_window_end = hit.last_window_end.max(ws.saturating_add(length));
                return Ok(());
            }
            let Some(key) = ObjectKey::decode(encoded_key) else {
                tracing::error!(key = encoded_key, "corrupt object key in store index, skipped");
                return Ok(());
            };
            if !rest.is_empty() {
                if rejected.contains(&(encoded_key.to_string(), ws)) {
                    return Ok(());
                }
                let record = load_object(&objects, encoded_key, ws)?;
                let matches = record.is_some_and(|r| rest.iter().all(|(a, v)| matches_filter(&r, a, v)));
                if !matches {
                    rejected.insert((encoded_key.to_string(), ws));
                    return Ok(());
                }
            }
            hits.insert(
                encoded_key.to_string(),
                ObjectHit { key, first_window_start: ws, last_window_end: ws.saturating_add(length) },
            );
            Ok(())
        };
        match most_selective(&filters) {
            Some(driver) => {
                let rest: Vec<(&str, &str)> =
                    filters.iter().enumerate().filter(|(i, _)| *i != driver).map(|(_, f)| *f).collect();
                let (name, value) = filters[driver];
                let tag = format!("{name}={value}");
                let tags = self.txn.open_table(TAGS)?;
                for entry in tags.range((tag.as_str(), lowest_start, "")..(tag.as_str(), query.end, ""))? {
                    let (k, v) = entry?;
                    let (_, ws, key) = k.value();
                    consider(key, ws, v.value(), &rest)?;
                }
            }
            None => {
                let windows = self.txn.open_table(WINDOWS)?;
                for entry in windows.range((lowest_start, "")..(query.end, ""))? {
                    let (k, v) = entry?;
                    let (ws, key) = k.value();
                    consider(key, ws, v.value().1, &filters)?;
                }
            }
        }
        let mut out: Vec<ObjectHit> = hits.into_values().collect();
        out.sort_by(|a, b| b.last_window_end.cmp(&a.last_window_end).then_with(|| a.key.cmp(&b.key)));
        if query.limit > 0 {
            out.truncate(query.limit);
        }
        Ok(out)
    }

    /// The object's records of the windows overlapping `[start, end)`, oldest first.
    pub fn object_windows(&self, key: &ObjectKey, start: Nanos, end: Nanos) -> Result<Vec<ObjectRecord>, StoreError> {
        let encoded = key.encode();
        let objects = self.txn.open_table(OBJECTS)?;
        let lowest = start.saturating_sub(self.max_window_length.max(1));
        let mut out = Vec::new();
        for entry in objects.range((encoded.as_str(), lowest)..(encoded.as_str(), end))? {
            let (_, v) = entry?;
            let Some(record) = decode_object(v.value()) else { continue };
            if record.window.end() > start {
                out.push(record);
            }
        }
        Ok(out)
    }

    /// One object window's record.
    pub fn object(&self, key: &ObjectKey, window_start: Nanos) -> Result<Option<ObjectRecord>, StoreError> {
        load_object(&self.txn.open_table(OBJECTS)?, &key.encode(), window_start)
    }

    /// Activities under an object span that started in `[start, end)`, in time order.
    pub fn activities(&self, object_span_id: [u8; 8], start: Nanos, end: Nanos) -> Result<Vec<ActivityRecord>, StoreError> {
        let id = span_u64(object_span_id);
        let activities = self.txn.open_table(ACTIVITIES)?;
        let mut out = Vec::new();
        if start >= end {
            return Ok(out);
        }
        for entry in activities.range((id, start, 0)..(id, end, 0))? {
            let (_, v) = entry?;
            let Some(span) = decode_span(v.value(), "activity") else { continue };
            let kind = crate::record::find_attr(&span.attributes, attr::SPAN_TYPE)
                .and_then(crate::record::any_value_str)
                .map(ActivityKind::parse)
                .unwrap_or(ActivityKind::Other);
            out.push(ActivityRecord { kind, object_span_id, span });
        }
        Ok(out)
    }

    /// Objects that recorded themselves as `role` of `peer` in the window starting at
    /// `window_start` (e.g. `role = Child`: the objects that name `peer` as their parent).
    pub fn linked_to(&self, peer: &ObjectKey, window_start: Nanos, role: LinkRole) -> Result<Vec<ReverseLink>, StoreError> {
        let encoded = peer.encode();
        let table = self.txn.open_table(LINKS_REVERSE)?;
        let r = role as u8;
        let mut out = Vec::new();
        for entry in table.range((encoded.as_str(), window_start, r, "")..(encoded.as_str(), window_start, r + 1, ""))? {
            let (k, v) = entry?;
            let (_, _, _, object) = k.value();
            match ObjectKey::decode(object) {
                Some(object) => out.push(ReverseLink { object, role, class: v.value().to_string() }),
                None => tracing::error!(key = object, "corrupt object key in link index, skipped"),
            }
        }
        Ok(out)
    }

    /// Every cluster seen, sorted.
    pub fn clusters(&self) -> Result<Vec<String>, StoreError> {
        let table = self.txn.open_table(CLUSTERS)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            out.push(entry?.0.value().to_string());
        }
        Ok(out)
    }

    /// What a query-side trace id stands for (registered ones not committed yet included).
    pub fn trace_ref(&self, id: u64) -> Result<Option<TraceRef>, StoreError> {
        let pending = self.pending_traces.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&id).cloned();
        if pending.is_some() {
            return Ok(pending);
        }
        let table = self.txn.open_table(TRACES)?;
        let Some(v) = table.get(id)? else { return Ok(None) };
        let decoded = TraceRef::decode(v.value());
        if decoded.is_none() {
            tracing::error!(id, "corrupt trace id record in store, skipped");
        }
        Ok(decoded)
    }

    /// The object (and window start) whose spans carry `trace_id`: its object span and every
    /// activity under it.
    pub fn locate_trace(&self, trace_id: [u8; 16]) -> Result<Option<(ObjectKey, Nanos)>, StoreError> {
        let table = self.txn.open_table(OBJECT_TRACES)?;
        Ok(match table.get(trace_u128(trace_id))?.and_then(|v| SpanLocation::decode(v.value())) {
            Some(SpanLocation::Object { key, window_start }) => Some((key, window_start)),
            _ => None,
        })
    }

    /// Where a span id is stored: object spans always, activity spans when the store indexes
    /// them (`StoreOptions::index_activity_span_ids`).
    pub fn locate_span(&self, span_id: [u8; 8]) -> Result<Option<SpanLocation>, StoreError> {
        let table = self.txn.open_table(SPANS)?;
        Ok(table.get(span_u64(span_id))?.and_then(|v| SpanLocation::decode(v.value())))
    }

    /// Spans without `kausal.span.type` stored under a trace id.
    pub fn foreign_spans(&self, trace_id: [u8; 16]) -> Result<Vec<Span>, StoreError> {
        let id = trace_u128(trace_id);
        let table = self.txn.open_table(FOREIGN)?;
        let mut out = Vec::new();
        for entry in table.range((id, 0)..=(id, u64::MAX))? {
            let (_, v) = entry?;
            if let Some(span) = v.value().get(8..).and_then(|b| decode_span(b, "foreign")) {
                out.push(span);
            }
        }
        Ok(out)
    }
}

fn load_object(
    objects: &ReadOnlyTable<(&'static str, i64), &'static [u8]>,
    encoded_key: &str,
    ws: Nanos,
) -> Result<Option<ObjectRecord>, StoreError> {
    Ok(objects.get((encoded_key, ws))?.and_then(|v| decode_object(v.value())))
}

fn decode_object(bytes: &[u8]) -> Option<ObjectRecord> {
    let span = decode_span(bytes, span_type::OBJECT)?;
    match object_record(&span) {
        Ok(record) => Some(record),
        Err(reason) => {
            tracing::error!(%reason, span = %span.name, "stored object span no longer parses, skipped");
            None
        }
    }
}

fn matches_filter(record: &ObjectRecord, attribute: &str, value: &str) -> bool {
    let key = &record.key;
    match attribute {
        attr::CLUSTER => key.cluster == value,
        attr::OBJECT_GROUP => key.group == value,
        attr::OBJECT_RESOURCE => key.resource == value,
        attr::NAMESPACE => key.namespace == value,
        attr::OBJECT_NAME => key.name == value,
        _ => record.attribute(attribute).is_some_and(|v| v == value),
    }
}

/// Index of the filter to drive the index scan with: names and specific attributes narrow
/// most, clusters and groups least. `None` when no filter is indexed (only `k8s.*` attributes
/// are), in which case the time index is walked and every filter checked on the record.
fn most_selective(filters: &[(&str, &str)]) -> Option<usize> {
    let rank = |name: &str| match name {
        attr::OBJECT_NAME => 0,
        attr::CLUSTER => 5,
        attr::OBJECT_GROUP => 4,
        attr::OBJECT_RESOURCE => 3,
        attr::NAMESPACE => 2,
        _ => 1,
    };
    (0..filters.len())
        .filter(|&i| filters[i].0.starts_with("k8s."))
        .min_by_key(|&i| rank(filters[i].0))
}
