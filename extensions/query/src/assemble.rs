//! Turning loaded records into a trace: pure functions, no store and no clock, so that golden
//! tests can feed records straight in. What to load is `load.rs`'s job, how the result looks
//! on the wire is `jaeger.rs`'s.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use kausal_core::conventions::attr;
use kausal_core::otlp_common::{any_value, AnyValue, KeyValue};
use kausal_core::{LinkRole, Nanos, ObjectKey};
use kausal_store::{ActivityRecord, ObjectRecord};

use crate::mode::{DisplayMode, View};

/// A half-open time range `[start, end)`, Unix nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimeRange {
    pub start: Nanos,
    pub end: Nanos,
}

/// Everything known about one object in a trace's range.
#[derive(Clone, Debug, Default)]
pub struct ObjectData {
    /// Its records, one per window overlapping the range, oldest first.
    pub windows: Vec<ObjectRecord>,
    /// Its activities that started in the range.
    pub activities: Vec<ActivityRecord>,
    /// Links other objects recorded to it, as (their role relative to it, their key).
    pub reverse_links: Vec<(LinkRole, ObjectKey)>,
}

/// The objects a trace may show, keyed by object.
#[derive(Clone, Debug, Default)]
pub struct TraceRecords {
    pub objects: BTreeMap<ObjectKey, ObjectData>,
    /// Problems met while loading (limits reached), shown on the trace.
    pub warnings: Vec<String>,
}

/// A trace, independent of any wire format.
#[derive(Clone, Debug, PartialEq)]
pub struct Trace {
    pub mode: DisplayMode,
    pub root: ObjectKey,
    pub range: TimeRange,
    /// Parents before their children; the root first.
    pub spans: Vec<TraceSpan>,
    pub warnings: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TraceSpan {
    pub span_id: [u8; 8],
    pub parent: Option<[u8; 8]>,
    pub object: ObjectKey,
    pub operation: String,
    pub start: Nanos,
    pub end: Nanos,
    pub tags: Vec<Field>,
    pub logs: Vec<Log>,
    pub warnings: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Field {
    pub key: String,
    pub value: FieldValue,
}

#[derive(Clone, Debug, PartialEq)]
pub enum FieldValue {
    String(String),
    Int(i64),
    Bool(bool),
    Float(f64),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Log {
    pub time: Nanos,
    pub fields: Vec<Field>,
}

/// Object attributes that describe the stored window rather than the object; a merged span
/// spans several windows, so they are left out.
const WINDOW_ATTRIBUTES: &[&str] = &[attr::WINDOW_START, attr::WINDOW_LENGTH, attr::SPAN_TYPE];

/// Assemble the trace of `root` over `range` in `mode`. `None` when `records` hold nothing
/// about the root.
pub fn assemble(mode: DisplayMode, root: &ObjectKey, records: &TraceRecords, range: TimeRange) -> Option<Trace> {
    let root_data = records.objects.get(root)?;
    if root_data.windows.is_empty() && root_data.activities.is_empty() {
        return None;
    }
    let spans = match mode.view {
        View::Tracing => tracing_view(root, records, range),
    };
    Some(Trace { mode, root: root.clone(), range, spans, warnings: records.warnings.clone() })
}

/// `tracing`: one span per object, merged over the windows in range; activities as logs;
/// children below their owner, each object once.
fn tracing_view(root: &ObjectKey, records: &TraceRecords, range: TimeRange) -> Vec<TraceSpan> {
    let mut spans: Vec<TraceSpan> = Vec::new();
    // Object → index of its span; an object reached twice is shown under its first parent.
    let mut placed: HashMap<&ObjectKey, usize> = HashMap::new();
    let mut stack: Vec<(&ObjectKey, Option<usize>)> = vec![(root, None)];
    while let Some((key, parent)) = stack.pop() {
        if let Some(&first) = placed.get(key) {
            if let Some(parent) = parent {
                let first_parent = spans[first].parent.and_then(|p| spans.iter().find(|s| s.span_id == p));
                let shown_under = first_parent.map(|s| s.object.to_string()).unwrap_or_else(|| "the root".into());
                let warning = format!("{key} is linked here too; shown once, under {shown_under}");
                spans[parent].warnings.push(warning);
            }
            continue;
        }
        let data = records.objects.get(key);
        let parent_span = parent.map(|p| &spans[p]);
        let span = object_span(key, data, parent_span, range);
        placed.insert(key, spans.len());
        let index = spans.len();
        spans.push(span);
        let Some(data) = data else { continue };
        // Reverse order so that the stack pops children in key order.
        for child in children(data).into_iter().rev() {
            if records.objects.contains_key(child) {
                stack.push((child, Some(index)));
            }
        }
    }
    spans
}

/// Children of an object: its own child links and the objects that name it as their parent.
fn children(data: &ObjectData) -> BTreeSet<&ObjectKey> {
    let own = data.windows.iter().flat_map(|w| &w.links).filter(|l| l.role == LinkRole::Child).map(|l| &l.peer);
    let reverse = data.reverse_links.iter().filter(|(role, _)| *role == LinkRole::Child).map(|(_, k)| k);
    own.chain(reverse).collect()
}

fn object_span(key: &ObjectKey, data: Option<&ObjectData>, parent: Option<&TraceSpan>, range: TimeRange) -> TraceSpan {
    let empty = ObjectData::default();
    let data = data.unwrap_or(&empty);
    let mut warnings = Vec::new();
    let activity_bounds = data
        .activities
        .iter()
        .map(|a| (a.start(), a.end().max(a.start())))
        .reduce(|(s1, e1), (s2, e2)| (s1.min(s2), e1.max(e2)));
    let (start, end) = match (activity_bounds, data.windows.first(), data.windows.last()) {
        (Some(bounds), _, _) => bounds,
        (None, Some(first), Some(last)) => (first.window.start.max(range.start), last.window.end().min(range.end)),
        _ => {
            warnings.push(format!("no record of {key} in this time range"));
            let at = parent.map(|p| p.start).unwrap_or(range.start);
            (at, at)
        }
    };
    let span_id = data
        .windows
        .first()
        .map(|w| w.span_id)
        .unwrap_or_else(|| xxhash_rust::xxh3::xxh3_64(key.encode().as_bytes()).max(1).to_be_bytes());
    let mut logs: Vec<Log> = data.activities.iter().map(activity_log).collect();
    logs.sort_by_key(|l| l.time);
    TraceSpan {
        span_id,
        parent: parent.map(|p| p.span_id),
        object: key.clone(),
        operation: if key.namespace.is_empty() { key.name.clone() } else { format!("{}/{}", key.namespace, key.name) },
        start,
        end: end.max(start),
        tags: object_tags(&data.windows),
        logs,
        warnings,
    }
}

/// The object's attributes merged over its windows: a later window's non-empty value wins.
fn object_tags(windows: &[ObjectRecord]) -> Vec<Field> {
    let mut merged: Vec<Field> = Vec::new();
    for kv in windows.iter().flat_map(|w| &w.attributes) {
        if WINDOW_ATTRIBUTES.contains(&kv.key.as_str()) {
            continue;
        }
        let Some(value) = field_value(kv.value.as_ref()) else { continue };
        if matches!(&value, FieldValue::String(s) if s.is_empty()) {
            continue;
        }
        match merged.iter_mut().find(|f| f.key == kv.key) {
            Some(existing) => existing.value = value,
            None => merged.push(Field { key: kv.key.clone(), value }),
        }
    }
    merged
}

/// An activity as a log: its name as `event`, its attributes, and its change records.
fn activity_log(activity: &ActivityRecord) -> Log {
    let mut fields = vec![Field { key: "event".into(), value: FieldValue::String(activity.span.name.clone()) }];
    fields.extend(fields_of(&activity.span.attributes, &[]));
    if activity.end() > activity.start() {
        let micros = (activity.end() - activity.start()) / 1_000;
        fields.push(Field { key: "kausal.duration_us".into(), value: FieldValue::Int(micros) });
    }
    for event in &activity.span.events {
        match event.name.as_str() {
            // The JSON form repeats the lines; readers of a log want the lines.
            attr::EVENT_DIFF => fields.extend(fields_of(&event.attributes, &[attr::DIFF_JSON])),
            _ => fields.extend(fields_of(&event.attributes, &[])),
        }
    }
    Log { time: activity.start(), fields }
}

fn fields_of(attributes: &[KeyValue], skip: &[&str]) -> Vec<Field> {
    attributes
        .iter()
        .filter(|kv| !skip.contains(&kv.key.as_str()))
        .filter_map(|kv| Some(Field { key: kv.key.clone(), value: field_value(kv.value.as_ref())? }))
        .collect()
}

/// An OTLP value as a Jaeger-representable one: arrays become one line per element, maps and
/// bytes become text.
fn field_value(value: Option<&AnyValue>) -> Option<FieldValue> {
    Some(match value?.value.as_ref()? {
        any_value::Value::StringValue(s) => FieldValue::String(s.clone()),
        any_value::Value::IntValue(i) => FieldValue::Int(*i),
        any_value::Value::BoolValue(b) => FieldValue::Bool(*b),
        any_value::Value::DoubleValue(d) => FieldValue::Float(*d),
        any_value::Value::ArrayValue(a) => FieldValue::String(
            a.values
                .iter()
                .filter_map(|v| field_value(Some(v)).map(|f| f.to_text()))
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        any_value::Value::KvlistValue(list) => FieldValue::String(
            list.values
                .iter()
                .map(|kv| {
                    let v = field_value(kv.value.as_ref()).map(|f| f.to_text()).unwrap_or_default();
                    format!("{}={v}", kv.key)
                })
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        any_value::Value::BytesValue(b) => FieldValue::String(b.iter().map(|x| format!("{x:02x}")).collect()),
        // Dictionary references only occur in profiles; spans carry strings inline.
        any_value::Value::StringValueStrindex(_) => return None,
    })
}

impl FieldValue {
    pub fn to_text(&self) -> String {
        match self {
            FieldValue::String(s) => s.clone(),
            FieldValue::Int(i) => i.to_string(),
            FieldValue::Bool(b) => b.to_string(),
            FieldValue::Float(f) => f.to_string(),
        }
    }
}

impl Trace {
    /// A readable outline of the trace, one object per line indented under its parent, its
    /// logs' `event`s and warnings beneath: what golden tests compare.
    pub fn outline(&self) -> String {
        let mut out = String::new();
        let mut depth: HashMap<[u8; 8], usize> = HashMap::new();
        for span in &self.spans {
            let d = span.parent.and_then(|p| depth.get(&p)).map_or(0, |d| d + 1);
            depth.insert(span.span_id, d);
            let indent = "  ".repeat(d);
            out.push_str(&format!("{indent}{} [{} +{}ns]\n", span.object, span.start, span.end - span.start));
            for log in &span.logs {
                let event = log.fields.iter().find(|f| f.key == "event").map(|f| f.value.to_text()).unwrap_or_default();
                out.push_str(&format!("{indent}  - {} {event}\n", log.time));
            }
            for warning in &span.warnings {
                out.push_str(&format!("{indent}  ! {warning}\n"));
            }
        }
        for warning in &self.warnings {
            out.push_str(&format!("! {warning}\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mode::MODES;
    use kausal_core::conventions::{object_span_id, object_trace_id, Window};
    use kausal_core::otlp_trace::Span;
    use kausal_store::ObjectLink;

    const W: Window = Window { start: 0, length: 1_000 };

    fn key(name: &str) -> ObjectKey {
        ObjectKey::new("c", "", "things", "ns", name)
    }

    fn record(name: &str, children: &[&str]) -> ObjectRecord {
        let k = key(name);
        ObjectRecord {
            key: k.clone(),
            window: W,
            trace_id: object_trace_id(&k, W),
            span_id: object_span_id(&k, W),
            name: format!("things ns/{name}"),
            attributes: vec![],
            links: children
                .iter()
                .map(|c| ObjectLink {
                    peer: key(c),
                    role: LinkRole::Child,
                    class: "children".into(),
                    inferred: false,
                    peer_uid: None,
                    peer_kind: None,
                    peer_trace_id: object_trace_id(&key(c), W),
                    peer_span_id: object_span_id(&key(c), W),
                })
                .collect(),
        }
    }

    fn activity(name: &str, what: &str, at: Nanos) -> ActivityRecord {
        ActivityRecord {
            kind: kausal_store::ActivityKind::Audit,
            object_span_id: object_span_id(&key(name), W),
            span: Span { name: what.into(), start_time_unix_nano: at as u64, end_time_unix_nano: at as u64 + 5, ..Default::default() },
        }
    }

    fn records(objects: Vec<(ObjectRecord, Vec<ActivityRecord>)>) -> TraceRecords {
        TraceRecords {
            objects: objects
                .into_iter()
                .map(|(r, activities)| (r.key.clone(), ObjectData { windows: vec![r], activities, reverse_links: vec![] }))
                .collect(),
            warnings: vec![],
        }
    }

    #[test]
    fn tracing_view_shows_each_object_once_under_its_first_owner() {
        // a owns b and c; both claim d; d claims a (a cycle).
        let recs = records(vec![
            (record("a", &["b", "c"]), vec![activity("a", "alice create", 10), activity("a", "alice update", 300)]),
            (record("b", &["d"]), vec![activity("b", "ctrl create", 20)]),
            (record("c", &["d"]), vec![]),
            (record("d", &["a"]), vec![activity("d", "kubelet update status", 40)]),
        ]);
        let range = TimeRange { start: 0, end: 1_000 };
        let trace = assemble(MODES[0].1, &key("a"), &recs, range).unwrap();
        let expected = "\
c/things/ns/a [10 +295ns]
  - 10 alice create
  - 300 alice update
  c/things/ns/b [20 +5ns]
    - 20 ctrl create
    c/things/ns/d [40 +5ns]
      - 40 kubelet update status
      ! c/things/ns/a is linked here too; shown once, under the root
  c/things/ns/c [0 +1000ns]
    ! c/things/ns/d is linked here too; shown once, under c/things/ns/b
";
        assert_eq!(trace.outline(), expected);
        assert_eq!(trace.spans[1].parent, Some(trace.spans[0].span_id));
    }

    #[test]
    fn reverse_links_place_children_and_missing_roots_give_nothing() {
        let mut recs = records(vec![(record("a", &[]), vec![]), (record("b", &[]), vec![])]);
        if let Some(a) = recs.objects.get_mut(&key("a")) {
            a.reverse_links.push((LinkRole::Child, key("b")));
        }
        let range = TimeRange { start: 0, end: 1_000 };
        let trace = assemble(MODES[0].1, &key("a"), &recs, range).unwrap();
        assert_eq!(trace.spans.len(), 2);
        assert_eq!(trace.spans[1].parent, Some(trace.spans[0].span_id));
        assert!(assemble(MODES[0].1, &key("zzz"), &recs, range).is_none());
    }
}
