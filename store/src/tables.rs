//! The on-disk layout: one redb file (`<dir>/kausal.redb`) with the tables below, and the small
//! binary encodings of their values. Span ids are stored as big-endian `u64`, object keys as
//! [`ObjectKey::encode`] strings, times as Unix nanoseconds. Spans are prost-encoded OTLP.

use kausal_core::{Nanos, ObjectKey};
use redb::TableDefinition;

/// Bumped whenever a table or encoding below changes incompatibly.
pub(crate) const FORMAT_VERSION: u64 = 1;

/// `format_version`, `max_window_length`.
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// (object key, window start) → merged object span.
pub(crate) const OBJECTS: TableDefinition<(&str, i64), &[u8]> = TableDefinition::new("objects");
/// (window start, object key) → (object span id, window length). Time-ordered walk for
/// untagged search and retention.
pub(crate) const WINDOWS: TableDefinition<(i64, &str), (u64, i64)> = TableDefinition::new("windows");
/// (`attribute=value`, window start, object key) → window length. Tag search.
pub(crate) const TAGS: TableDefinition<(&str, i64, &str), i64> = TableDefinition::new("tags");
/// (object span id, activity start, activity span id) → activity span. An object's activities
/// in time order.
pub(crate) const ACTIVITIES: TableDefinition<(u64, i64, u64), &[u8]> = TableDefinition::new("activities");
/// span id → [`SpanLocation`] (encoded). Object spans always; activity spans only with
/// `StoreOptions::index_activity_span_ids`.
pub(crate) const SPANS: TableDefinition<u64, &[u8]> = TableDefinition::new("spans");
/// object span trace id → object location (encoded as [`SpanLocation::Object`]). Activity
/// spans share their object span's trace id, so this locates them too.
pub(crate) const OBJECT_TRACES: TableDefinition<u128, &[u8]> = TableDefinition::new("object_traces");
/// (peer key, window start, peer's role seen from the linking object, linking object key) →
/// link class. The reverse direction of the links stored in object records, so that "who
/// names X as its parent" is answered even when X's own span never learned of the link.
pub(crate) const LINKS_REVERSE: TableDefinition<(&str, i64, u8, &str), &str> = TableDefinition::new("links_reverse");
/// cluster name → (). Every cluster seen (the query API's operations).
pub(crate) const CLUSTERS: TableDefinition<&str, ()> = TableDefinition::new("clusters");
/// query-side trace id → encoded [`TraceRef`].
pub(crate) const TRACES: TableDefinition<u64, &[u8]> = TableDefinition::new("traces");
/// (trace id, span id) → span end (8 bytes BE) + span. Spans without `kausal.span.type`.
pub(crate) const FOREIGN: TableDefinition<(u128, u64), &[u8]> = TableDefinition::new("foreign");

/// Where a span id lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpanLocation {
    /// An object span: the object and its window start.
    Object { key: ObjectKey, window_start: Nanos },
    /// An activity span: its object span and its start.
    Activity { object_span_id: [u8; 8], start: Nanos },
}

impl SpanLocation {
    pub(crate) fn encode_object(out: &mut Vec<u8>, encoded_key: &str, window_start: Nanos) {
        out.clear();
        out.push(0);
        out.extend_from_slice(&window_start.to_be_bytes());
        out.extend_from_slice(encoded_key.as_bytes());
    }

    pub(crate) fn encode_activity(out: &mut Vec<u8>, object_span_id: u64, start: Nanos) {
        out.clear();
        out.push(1);
        out.extend_from_slice(&object_span_id.to_be_bytes());
        out.extend_from_slice(&start.to_be_bytes());
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<SpanLocation> {
        let (&tag, rest) = bytes.split_first()?;
        match tag {
            0 if rest.len() >= 8 => {
                let (start, key) = rest.split_at(8);
                Some(SpanLocation::Object {
                    key: ObjectKey::decode(std::str::from_utf8(key).ok()?)?,
                    window_start: i64::from_be_bytes(start.try_into().ok()?),
                })
            }
            1 if rest.len() == 16 => {
                let (span, start) = rest.split_at(8);
                Some(SpanLocation::Activity {
                    object_span_id: span.try_into().ok()?,
                    start: i64::from_be_bytes(start.try_into().ok()?),
                })
            }
            _ => None,
        }
    }
}

/// What a query-side trace id stands for: a root object over a time range.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TraceRef {
    pub root: ObjectKey,
    pub start: Nanos,
    pub end: Nanos,
}

impl TraceRef {
    /// Deterministic 64-bit id, so that the same root and range always get the same id and
    /// writing it twice is harmless. Never zero.
    pub fn id(&self) -> u64 {
        let id = xxhash_rust::xxh3::xxh3_64(&self.encode());
        if id == 0 { 1 } else { id }
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let key = self.root.encode();
        let mut out = Vec::with_capacity(16 + key.len());
        out.extend_from_slice(&self.start.to_be_bytes());
        out.extend_from_slice(&self.end.to_be_bytes());
        out.extend_from_slice(key.as_bytes());
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<TraceRef> {
        if bytes.len() < 16 {
            return None;
        }
        let (times, key) = bytes.split_at(16);
        Some(TraceRef {
            start: i64::from_be_bytes(times[..8].try_into().ok()?),
            end: i64::from_be_bytes(times[8..].try_into().ok()?),
            root: ObjectKey::decode(std::str::from_utf8(key).ok()?)?,
        })
    }
}

pub(crate) fn span_u64(id: [u8; 8]) -> u64 {
    u64::from_be_bytes(id)
}

pub(crate) fn trace_u128(id: [u8; 16]) -> u128 {
    u128::from_be_bytes(id)
}

/// The tag index key `attribute=value`.
pub(crate) fn tag_key(out: &mut String, attribute: &str, value: &str) {
    out.clear();
    out.push_str(attribute);
    out.push('=');
    out.push_str(value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_round_trip() {
        let key = ObjectKey::new("c", "apps", "deployments", "ns", "demo");
        let mut buf = Vec::new();
        SpanLocation::encode_object(&mut buf, &key.encode(), -5);
        assert_eq!(SpanLocation::decode(&buf), Some(SpanLocation::Object { key: key.clone(), window_start: -5 }));
        SpanLocation::encode_activity(&mut buf, u64::from_be_bytes([7; 8]), 42);
        assert_eq!(SpanLocation::decode(&buf), Some(SpanLocation::Activity { object_span_id: [7; 8], start: 42 }));
        assert_eq!(SpanLocation::decode(&[9, 1, 2]), None);
        let r = TraceRef { root: key, start: 1, end: 2 };
        assert_eq!(TraceRef::decode(&r.encode()), Some(r.clone()));
        assert_ne!(r.id(), TraceRef { end: 3, ..r.clone() }.id());
    }
}
