//! Duration analysis: how long from one kind of activity to the next, e.g. from a
//! Deployment's image patch to the first `Pulled` Event of a Pod below it. Matchers are parsed
//! and pairs measured by pure functions over loaded records; the HTTP handler only wires them
//! to the store.
//!
//! Matcher syntax: `term[,term...]`, every term must hold; a term is `field=value`, and a
//! value ending in `*` matches by prefix. Object fields: `cluster`, `group`, `resource`,
//! `namespace`, `name`. Activity fields: `kind` (audit, event, change), `activity` (the
//! activity's name), `verb`, `subresource`, `user`, `code` (HTTP status), `reason` and `type`
//! (Event), `diff` (some diff line contains the value).

use kausal_core::conventions::attr;
use kausal_core::otlp_common::any_value;
use kausal_core::{Nanos, ObjectKey};
use kausal_store::{any_value_text, find_attr, ActivityRecord};
use serde::Serialize;

use crate::assemble::TraceRecords;

const OBJECT_FIELDS: &[&str] = &["cluster", "group", "resource", "namespace", "name"];
const ACTIVITY_FIELDS: &[&str] = &["kind", "activity", "verb", "subresource", "user", "code", "reason", "type", "diff"];

/// One `field=value` term.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Term {
    pub field: String,
    pub value: String,
    pub prefix: bool,
}

/// A parsed activity matcher.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Matcher {
    pub terms: Vec<Term>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatcherError {
    #[error("matcher is empty; write field=value terms joined by commas")]
    Empty,
    #[error("term `{0}` is not field=value")]
    NotATerm(String),
    #[error("unknown field `{0}`; object fields: cluster, group, resource, namespace, name; activity fields: kind, activity, verb, subresource, user, code, reason, type, diff")]
    UnknownField(String),
}

impl Matcher {
    pub fn parse(text: &str) -> Result<Matcher, MatcherError> {
        let mut terms = Vec::new();
        for raw in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (field, value) = raw.split_once('=').ok_or_else(|| MatcherError::NotATerm(raw.to_string()))?;
            let field = field.trim();
            if !OBJECT_FIELDS.contains(&field) && !ACTIVITY_FIELDS.contains(&field) {
                return Err(MatcherError::UnknownField(field.to_string()));
            }
            let value = value.trim();
            let (value, prefix) = match value.strip_suffix('*') {
                Some(v) => (v, true),
                None => (value, false),
            };
            terms.push(Term { field: field.to_string(), value: value.to_string(), prefix });
        }
        if terms.is_empty() {
            return Err(MatcherError::Empty);
        }
        Ok(Matcher { terms })
    }

    /// Exact object terms, as store search filters (prefix terms are checked per object).
    pub fn object_filters(&self) -> Vec<(String, String)> {
        self.terms
            .iter()
            .filter(|t| OBJECT_FIELDS.contains(&t.field.as_str()) && !t.prefix)
            .map(|t| (kausal_store::canonical_tag(&t.field).to_string(), t.value.clone()))
            .collect()
    }

    pub fn matches_object(&self, key: &ObjectKey) -> bool {
        self.terms.iter().filter(|t| OBJECT_FIELDS.contains(&t.field.as_str())).all(|t| {
            let v = match t.field.as_str() {
                "cluster" => &key.cluster,
                "group" => &key.group,
                "resource" => &key.resource,
                "namespace" => &key.namespace,
                _ => &key.name,
            };
            t.accepts(v)
        })
    }

    pub fn matches(&self, key: &ObjectKey, activity: &ActivityRecord) -> bool {
        self.matches_object(key)
            && self.terms.iter().filter(|t| ACTIVITY_FIELDS.contains(&t.field.as_str())).all(|t| t.matches_activity(activity))
    }
}

impl Term {
    fn accepts(&self, v: &str) -> bool {
        if self.prefix { v.starts_with(&self.value) } else { v == self.value }
    }

    fn matches_activity(&self, a: &ActivityRecord) -> bool {
        let text = |name: &str| find_attr(&a.span.attributes, name).and_then(any_value_text);
        let check = |name: &str| text(name).is_some_and(|v| self.accepts(&v));
        match self.field.as_str() {
            "kind" => self.accepts(a.kind.as_str()),
            "activity" => self.accepts(&a.span.name),
            "verb" => check(attr::AUDIT_VERB),
            "subresource" => check(attr::AUDIT_SUBRESOURCE),
            "user" => check(attr::USER_NAME),
            "code" => check(attr::HTTP_STATUS_CODE),
            "reason" => check(attr::EVENT_REASON),
            "type" => check(attr::EVENT_TYPE),
            "diff" => a.span.events.iter().filter(|e| e.name == attr::EVENT_DIFF).any(|e| {
                e.attributes.iter().filter(|kv| kv.key == attr::DIFF_LINES).any(|kv| {
                    match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                        Some(any_value::Value::ArrayValue(lines)) => lines
                            .values
                            .iter()
                            .filter_map(any_value_text)
                            .any(|line| line.contains(&self.value)),
                        Some(any_value::Value::StringValue(s)) => s.contains(&self.value),
                        _ => false,
                    }
                })
            }),
            _ => false,
        }
    }
}

/// One measured pair.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Pair {
    pub object: String,
    pub to_object: String,
    /// Unix nanoseconds of the `from` activity.
    pub from_time: Nanos,
    pub duration_ns: Nanos,
}

/// Pair the `from` activities on `object` with the first `to` activity on it or on any object
/// below it (in `records`) that starts at or after the `from` and before the next `from`.
/// Returns the pairs and how many `from` activities found no `to`.
pub fn pair(object: &ObjectKey, records: &TraceRecords, from: &Matcher, to: &Matcher) -> (Vec<Pair>, usize) {
    let Some(own) = records.objects.get(object) else { return (vec![], 0) };
    let mut starts: Vec<Nanos> = own.activities.iter().filter(|a| from.matches(object, a)).map(|a| a.start()).collect();
    starts.sort();
    starts.dedup();
    let mut targets: Vec<(Nanos, &ObjectKey)> = records
        .objects
        .iter()
        .flat_map(|(k, d)| d.activities.iter().filter(move |a| to.matches(k, a)).map(move |a| (a.start(), k)))
        .collect();
    targets.sort();
    let mut pairs = Vec::new();
    let mut unmatched = 0;
    for (i, &start) in starts.iter().enumerate() {
        let next = starts.get(i + 1).copied().unwrap_or(Nanos::MAX);
        let first = targets.partition_point(|(t, _)| *t < start);
        match targets.get(first).filter(|(t, _)| *t < next) {
            Some((t, k)) => pairs.push(Pair {
                object: object.to_string(),
                to_object: k.to_string(),
                from_time: start,
                duration_ns: t - start,
            }),
            None => unmatched += 1,
        }
    }
    (pairs, unmatched)
}

/// The answer of `/api/v1/durations`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Summary {
    pub count: usize,
    pub unmatched: usize,
    pub min_ms: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    pub histogram: Vec<Bucket>,
    /// The first pairs, slowest first (at most 100).
    pub pairs: Vec<Pair>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Bucket {
    pub from_ms: f64,
    pub to_ms: f64,
    pub count: usize,
}

/// Nearest-rank percentiles and a 20-bucket linear histogram.
pub fn summarize(mut pairs: Vec<Pair>, unmatched: usize) -> Summary {
    pairs.sort_by(|a, b| b.duration_ns.cmp(&a.duration_ns).then_with(|| a.object.cmp(&b.object)));
    let mut ms: Vec<f64> = pairs.iter().map(|p| p.duration_ns as f64 / 1e6).collect();
    ms.sort_by(f64::total_cmp);
    let pct = |p: f64| -> Option<f64> {
        if ms.is_empty() {
            return None;
        }
        let rank = ((p / 100.0) * ms.len() as f64).ceil() as usize;
        ms.get(rank.clamp(1, ms.len()) - 1).copied()
    };
    let histogram = match (ms.first(), ms.last()) {
        (Some(&lo), Some(&hi)) => {
            const BUCKETS: usize = 20;
            let width = ((hi - lo) / BUCKETS as f64).max(f64::MIN_POSITIVE);
            let mut counts = [0usize; BUCKETS];
            for v in &ms {
                let i = (((v - lo) / width) as usize).min(BUCKETS - 1);
                counts[i] += 1;
            }
            let n = if hi > lo { BUCKETS } else { 1 };
            (0..n)
                .map(|i| Bucket { from_ms: lo + width * i as f64, to_ms: if n == 1 { hi } else { lo + width * (i + 1) as f64 }, count: if n == 1 { ms.len() } else { counts[i] } })
                .collect()
        }
        _ => vec![],
    };
    pairs.truncate(100);
    Summary {
        count: ms.len(),
        unmatched,
        min_ms: ms.first().copied(),
        p50_ms: pct(50.0),
        p90_ms: pct(90.0),
        p99_ms: pct(99.0),
        max_ms: ms.last().copied(),
        histogram,
        pairs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matchers_parse_and_refuse_clearly() {
        let m = Matcher::parse("resource=deployments, verb=patch,diff=image,name=web-*").unwrap();
        assert_eq!(m.terms.len(), 4);
        assert!(m.terms[3].prefix);
        assert_eq!(m.object_filters(), vec![("k8s.object.resource".to_string(), "deployments".to_string())]);
        assert!(m.matches_object(&ObjectKey::new("c", "apps", "deployments", "ns", "web-1")));
        assert!(!m.matches_object(&ObjectKey::new("c", "apps", "deployments", "ns", "api")));
        assert_eq!(Matcher::parse(""), Err(MatcherError::Empty));
        assert_eq!(Matcher::parse("verb"), Err(MatcherError::NotATerm("verb".into())));
        assert_eq!(Matcher::parse("colour=red"), Err(MatcherError::UnknownField("colour".into())));
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let pairs: Vec<Pair> = (1..=100)
            .map(|i| Pair { object: "o".into(), to_object: "p".into(), from_time: 0, duration_ns: i * 1_000_000 })
            .collect();
        let s = summarize(pairs, 3);
        assert_eq!((s.count, s.unmatched), (100, 3));
        assert_eq!((s.p50_ms, s.p90_ms, s.p99_ms, s.max_ms), (Some(50.0), Some(90.0), Some(99.0), Some(100.0)));
        assert_eq!(s.histogram.len(), 20);
        assert_eq!(s.histogram.iter().map(|b| b.count).sum::<usize>(), 100);
        assert_eq!(s.pairs.len(), 100);
        assert_eq!(s.pairs[0].duration_ns, 100_000_000, "slowest first");
        let empty = summarize(vec![], 2);
        assert_eq!((empty.count, empty.p50_ms, empty.histogram.len()), (0, None, 0));
    }
}
