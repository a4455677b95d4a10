//! Turning loaded records into a trace: pure functions, no store and no clock, so that golden
//! tests can feed records straight in. What to load is `load.rs`'s job, how the result looks
//! on the wire is `jaeger.rs`'s.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use kausal_core::conventions::attr;
use kausal_core::otlp_common::{any_value, AnyValue, KeyValue};
use kausal_core::{LinkRole, Nanos, ObjectKey};
use kausal_store::{ActivityKind, ActivityRecord, ObjectRecord};
use prost::Message;

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
    /// The asked object's owners, topmost first, when the scope climbs; the first is the
    /// trace's root.
    pub ancestry: Vec<ObjectKey>,
    /// Problems met while loading that concern one object (second owners, cycles).
    pub object_warnings: BTreeMap<ObjectKey, Vec<String>>,
    /// Problems met while loading (limits reached), shown on the trace.
    pub warnings: Vec<String>,
}

/// A trace, independent of any wire format.
#[derive(Clone, Debug, PartialEq)]
pub struct Trace {
    pub mode: DisplayMode,
    /// The object the trace was asked for.
    pub object: ObjectKey,
    pub range: TimeRange,
    /// Parents before their children; the root first.
    pub spans: Vec<TraceSpan>,
    pub warnings: Vec<String>,
}

/// What a span of a trace stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpanKind {
    /// An object over the trace's range.
    Object,
    /// One data source's activities on an object (`grouped`).
    Source(ActivityKind),
    /// One activity (`tree`, `timeline`).
    Activity(ActivityKind),
}

#[derive(Clone, Debug, PartialEq)]
pub struct TraceSpan {
    pub span_id: [u8; 8],
    pub parent: Option<[u8; 8]>,
    pub kind: SpanKind,
    /// The object the span is about (for activities and sources: their object).
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

/// Tag naming the object an activity span belongs to in `timeline`, where activities of many
/// objects share one parent.
pub const OBJECT_TAG: &str = "kausal.object";

/// Tag set on a span whose object is linked from several places in the trace.
pub const WARNING_TAG: &str = "kausal.warning";

/// Assemble the trace of `object` over `range` in `mode`. `None` when `records` hold nothing
/// about the object.
pub fn assemble(mode: DisplayMode, object: &ObjectKey, records: &TraceRecords, range: TimeRange) -> Option<Trace> {
    let data = records.objects.get(object)?;
    if data.windows.is_empty() && data.activities.is_empty() {
        return None;
    }
    let root = records.ancestry.first().unwrap_or(object);
    let placed = place_objects(root, records);
    let spans = match mode.view {
        View::Tracing => object_spans(&placed, records, range, ActivityShape::Logs),
        View::Grouped => object_spans(&placed, records, range, ActivityShape::Sources),
        View::Tree => object_spans(&placed, records, range, ActivityShape::Spans),
        View::Timeline => timeline(&placed, records, range),
        View::Causal => causal(&placed, records, range),
    };
    Some(Trace { mode, object: object.clone(), range, spans, warnings: records.warnings.clone() })
}

/// An object's place in the trace's object tree.
struct Placed<'a> {
    key: &'a ObjectKey,
    /// Index of the parent in the placement list.
    parent: Option<usize>,
    warnings: Vec<String>,
}

/// The object tree: depth first from `root` along child links, through loaded objects only,
/// each object once (a repeated object is placed under its first parent; the others get a
/// warning). Loaded objects no link reaches from the root are placed under it, with a warning,
/// rather than dropped.
fn place_objects<'a>(root: &'a ObjectKey, records: &'a TraceRecords) -> Vec<Placed<'a>> {
    let mut placed: Vec<Placed<'a>> = Vec::new();
    let mut index: HashMap<&ObjectKey, usize> = HashMap::new();
    let mut stack: Vec<(&ObjectKey, Option<usize>)> = vec![(root, None)];
    while let Some((key, parent)) = stack.pop() {
        if let Some(&first) = index.get(key) {
            if let Some(parent) = parent {
                let shown_under = placed[first].parent.map(|p| placed[p].key.to_string()).unwrap_or_else(|| "the root".into());
                let warning = format!("{key} is linked here too; shown once, under {shown_under}");
                placed[parent].warnings.push(warning);
            }
            continue;
        }
        index.insert(key, placed.len());
        let me = placed.len();
        let warnings = records.object_warnings.get(key).cloned().unwrap_or_default();
        placed.push(Placed { key, parent, warnings });
        let Some(data) = records.objects.get(key) else { continue };
        // Reverse order so that the stack pops children in key order.
        for child in children(data).into_iter().rev() {
            if records.objects.contains_key(child) {
                stack.push((child, Some(me)));
            }
        }
    }
    for key in records.objects.keys() {
        if !index.contains_key(key) {
            index.insert(key, placed.len());
            let mut warnings = records.object_warnings.get(key).cloned().unwrap_or_default();
            warnings.push(format!("no link from {root} reaches {key} in this range; shown under the root"));
            placed.push(Placed { key, parent: Some(0), warnings });
        }
    }
    placed
}

/// Where an object's activities go.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ActivityShape {
    /// Logs on the object span (`tracing`).
    Logs,
    /// Logs on one child span per data source (`grouped`).
    Sources,
    /// One child span each (`tree`).
    Spans,
}

fn object_spans(placed: &[Placed], records: &TraceRecords, range: TimeRange, shape: ActivityShape) -> Vec<TraceSpan> {
    let mut spans: Vec<TraceSpan> = Vec::new();
    let mut span_of: Vec<usize> = Vec::with_capacity(placed.len());
    for p in placed {
        let parent = p.parent.map(|i| &spans[span_of[i]]);
        let data = records.objects.get(p.key);
        let mut span = object_span(p.key, data, parent, range);
        span.warnings.extend(p.warnings.iter().cloned());
        if !span.warnings.is_empty() {
            span.tags.push(Field { key: WARNING_TAG.into(), value: FieldValue::String(span.warnings.join("\n")) });
        }
        let activities: &[ActivityRecord] = data.map(|d| d.activities.as_slice()).unwrap_or(&[]);
        let object_id = span.span_id;
        span_of.push(spans.len());
        match shape {
            ActivityShape::Logs => {
                span.logs = activities.iter().map(activity_log).collect();
                span.logs.sort_by_key(|l| l.time);
                spans.push(span);
            }
            ActivityShape::Sources => {
                spans.push(span);
                let mut kinds: Vec<ActivityKind> = activities.iter().map(|a| a.kind).collect();
                kinds.sort();
                kinds.dedup();
                for kind in kinds {
                    let mine: Vec<&ActivityRecord> = activities.iter().filter(|a| a.kind == kind).collect();
                    let (start, end) = bounds(mine.iter().copied(), range).unwrap_or((range.start, range.start));
                    let mut logs: Vec<Log> = mine.iter().map(|a| activity_log(a)).collect();
                    logs.sort_by_key(|l| l.time);
                    let mut id_input = object_id.to_vec();
                    id_input.extend_from_slice(kind.as_str().as_bytes());
                    spans.push(TraceSpan {
                        span_id: xxhash_rust::xxh3::xxh3_64(&id_input).max(1).to_be_bytes(),
                        parent: Some(object_id),
                        kind: SpanKind::Source(kind),
                        object: p.key.clone(),
                        operation: kind.as_str().to_string(),
                        start,
                        end,
                        tags: vec![Field { key: attr::SPAN_TYPE.into(), value: FieldValue::String(kind.as_str().into()) }],
                        logs,
                        warnings: vec![],
                    });
                }
            }
            ActivityShape::Spans => {
                spans.push(span);
                let mut sorted: Vec<&ActivityRecord> = activities.iter().collect();
                sorted.sort_by_key(|a| a.start());
                spans.extend(sorted.into_iter().map(|a| activity_span(a, p.key, object_id, range, false)));
            }
        }
    }
    spans
}

/// `timeline`: the root object's span and every activity of every object in scope directly
/// beneath it, in time order.
fn timeline(placed: &[Placed], records: &TraceRecords, range: TimeRange) -> Vec<TraceSpan> {
    let Some(root) = placed.first() else { return vec![] };
    let mut root_span = object_span(root.key, records.objects.get(root.key), None, range);
    let mut warnings: Vec<String> = placed.iter().flat_map(|p| p.warnings.iter().cloned()).collect();
    root_span.warnings.append(&mut warnings);
    let mut all: Vec<(&ActivityRecord, &ObjectKey)> = placed
        .iter()
        .flat_map(|p| records.objects.get(p.key).into_iter().flat_map(move |d| d.activities.iter().map(move |a| (a, p.key))))
        .collect();
    all.sort_by(|(a, ka), (b, kb)| a.start().cmp(&b.start()).then_with(|| ka.cmp(kb)));
    let (start, end) = bounds(all.iter().map(|(a, _)| *a), range).unwrap_or((root_span.start, root_span.end));
    root_span.start = root_span.start.min(start);
    root_span.end = root_span.end.max(end);
    let root_id = root_span.span_id;
    let mut spans = vec![root_span];
    spans.extend(all.into_iter().map(|(a, key)| activity_span(a, key, root_id, range, true)));
    spans
}

/// `causal`: the root object's span; beneath it every activity of every object in scope,
/// nested under the activity its `causal` span link names when that activity is in the trace
/// (kspan's view), else directly under the root. Siblings in time order.
fn causal(placed: &[Placed], records: &TraceRecords, range: TimeRange) -> Vec<TraceSpan> {
    let Some(root) = placed.first() else { return vec![] };
    let mut root_span = object_span(root.key, records.objects.get(root.key), None, range);
    let mut warnings: Vec<String> = placed.iter().flat_map(|p| p.warnings.iter().cloned()).collect();
    root_span.warnings.append(&mut warnings);
    let mut all: Vec<(&ActivityRecord, &ObjectKey)> = placed
        .iter()
        .flat_map(|p| records.objects.get(p.key).into_iter().flat_map(move |d| d.activities.iter().map(move |a| (a, p.key))))
        .collect();
    all.sort_by(|(a, ka), (b, kb)| a.start().cmp(&b.start()).then_with(|| ka.cmp(kb)));
    let (start, end) = bounds(all.iter().map(|(a, _)| *a), range).unwrap_or((root_span.start, root_span.end));
    root_span.start = root_span.start.min(start);
    root_span.end = root_span.end.max(end);
    let root_id = root_span.span_id;
    let mut spans: Vec<TraceSpan> = all.iter().map(|(a, key)| activity_span(a, key, root_id, range, true)).collect();
    let present: HashMap<[u8; 8], usize> = spans.iter().enumerate().map(|(i, s)| (s.span_id, i)).collect();
    let mut children: HashMap<usize, Vec<usize>> = HashMap::new();
    let mut tops = Vec::new();
    for (i, (a, _)) in all.iter().enumerate() {
        let cause = a
            .span
            .links
            .iter()
            .filter(|l| kausal_core::otlp::attr_str(&l.attributes, attr::LINK_CLASS) == Some(kausal_core::activity::LINK_CLASS_CAUSAL))
            .find_map(|l| <[u8; 8]>::try_from(l.span_id.as_slice()).ok().and_then(|id| present.get(&id).copied()))
            .filter(|p| *p != i);
        match cause {
            Some(p) => children.entry(p).or_default().push(i),
            None => tops.push(i),
        }
    }
    // Depth first, so parents come before their children; a cycle's members (which no top
    // reaches) are placed under the root.
    let mut order: Vec<(usize, Option<usize>)> = Vec::with_capacity(spans.len());
    let mut seen = vec![false; spans.len()];
    let mut stack: Vec<(usize, Option<usize>)> = tops.iter().rev().map(|t| (*t, None)).collect();
    loop {
        while let Some((i, parent)) = stack.pop() {
            if std::mem::replace(&mut seen[i], true) {
                continue;
            }
            order.push((i, parent));
            for c in children.get(&i).into_iter().flatten().rev() {
                stack.push((*c, Some(i)));
            }
        }
        match seen.iter().position(|s| !s) {
            Some(i) => stack.push((i, None)),
            None => break,
        }
    }
    let mut out = vec![root_span];
    for (i, parent) in order {
        let mut span = spans[i].clone();
        if let Some(p) = parent {
            span.parent = Some(spans[p].span_id);
        }
        out.push(span);
    }
    spans.clear();
    out
}

/// An activity as a span: its attributes as tags, its change records as logs.
fn activity_span(activity: &ActivityRecord, object: &ObjectKey, parent: [u8; 8], range: TimeRange, tag_object: bool) -> TraceSpan {
    let (start, end) = clip(activity.start(), activity.end().max(activity.start()), range);
    let mut tags = fields_of(&activity.span.attributes, &[]);
    if tag_object {
        tags.insert(0, Field { key: OBJECT_TAG.into(), value: FieldValue::String(object.to_string()) });
    }
    let logs = activity
        .span
        .events
        .iter()
        .map(|event| {
            let label = match event.name.as_str() {
                attr::EVENT_DIFF => "diff",
                attr::EVENT_SNAPSHOT => "snapshot",
                other => other,
            };
            let mut fields = vec![Field { key: "event".into(), value: FieldValue::String(label.into()) }];
            fields.extend(fields_of(&event.attributes, &[attr::DIFF_JSON]));
            Log { time: (event.time_unix_nano as Nanos).clamp(start, end.max(start)), fields }
        })
        .collect();
    let span_id = <[u8; 8]>::try_from(activity.span.span_id.as_slice())
        .unwrap_or_else(|_| xxhash_rust::xxh3::xxh3_64(&activity.span.encode_to_vec()).max(1).to_be_bytes());
    TraceSpan {
        span_id,
        parent: Some(parent),
        kind: SpanKind::Activity(activity.kind),
        object: object.clone(),
        operation: activity.span.name.clone(),
        start,
        end,
        tags,
        logs,
        warnings: vec![],
    }
}

/// First start and last end of `activities`, clipped to `range`.
fn bounds<'a>(activities: impl Iterator<Item = &'a ActivityRecord>, range: TimeRange) -> Option<(Nanos, Nanos)> {
    activities
        .map(|a| clip(a.start(), a.end().max(a.start()), range))
        .reduce(|(s1, e1), (s2, e2)| (s1.min(s2), e1.max(e2)))
}

fn clip(start: Nanos, end: Nanos, range: TimeRange) -> (Nanos, Nanos) {
    let start = start.clamp(range.start, range.end);
    (start, end.clamp(start, range.end))
}

/// Children of an object: its own child links and the objects that name it as their parent.
pub(crate) fn children(data: &ObjectData) -> BTreeSet<&ObjectKey> {
    linked(data, LinkRole::Child)
}

fn linked(data: &ObjectData, role: LinkRole) -> BTreeSet<&ObjectKey> {
    let own = data.windows.iter().flat_map(|w| &w.links).filter(|l| l.role == role).map(|l| &l.peer);
    let reverse = data.reverse_links.iter().filter(|(r, _)| *r == role).map(|(_, k)| k);
    own.chain(reverse).collect()
}

/// An object's span over the range, without its activities: from its first to its last
/// activity in the range, or over its windows in the range when it has none.
fn object_span(key: &ObjectKey, data: Option<&ObjectData>, parent: Option<&TraceSpan>, range: TimeRange) -> TraceSpan {
    let empty = ObjectData::default();
    let data = data.unwrap_or(&empty);
    let mut warnings = Vec::new();
    let (start, end) = match (bounds(data.activities.iter(), range), data.windows.first(), data.windows.last()) {
        (Some(bounds), _, _) => bounds,
        (None, Some(first), Some(last)) => clip(first.window.start, last.window.end(), range),
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
    TraceSpan {
        span_id,
        parent: parent.map(|p| p.span_id),
        kind: SpanKind::Object,
        object: key.clone(),
        operation: if key.namespace.is_empty() { key.name.clone() } else { format!("{}/{}", key.namespace, key.name) },
        start,
        end: end.max(start),
        tags: object_tags(&data.windows),
        logs: vec![],
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
    /// A readable outline of the trace, what golden tests compare: one span per line indented
    /// under its parent (objects by key, data-source spans as `<audit>`, activity spans as
    /// `* name`), times as offsets from the range start; logs' `event`s and warnings beneath.
    pub fn outline(&self) -> String {
        let mut out = String::new();
        let mut depth: HashMap<[u8; 8], usize> = HashMap::new();
        let at = |t: Nanos| offset(t - self.range.start);
        for span in &self.spans {
            let d = span.parent.and_then(|p| depth.get(&p)).map_or(0, |d| d + 1);
            depth.insert(span.span_id, d);
            let indent = "  ".repeat(d);
            let head = match span.kind {
                SpanKind::Object => span.object.to_string(),
                SpanKind::Source(kind) => format!("<{}>", kind.as_str()),
                SpanKind::Activity(_) => match span.tags.iter().find(|f| f.key == OBJECT_TAG) {
                    Some(object) => format!("* {} ({})", span.operation, object.value.to_text()),
                    None => format!("* {}", span.operation),
                },
            };
            out.push_str(&format!("{indent}{head} [{} +{}]\n", at(span.start), offset(span.end - span.start)));
            for log in &span.logs {
                let event = log.fields.iter().find(|f| f.key == "event").map(|f| f.value.to_text()).unwrap_or_default();
                out.push_str(&format!("{indent}  - {} {event}\n", at(log.time)));
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

/// A duration for outlines: whole milliseconds as seconds (`61.500s`), anything finer in ns.
fn offset(ns: Nanos) -> String {
    if ns % 1_000_000 == 0 {
        format!("{}.{:03}s", ns / 1_000_000_000, (ns % 1_000_000_000) / 1_000_000)
    } else {
        format!("{ns}ns")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mode::DisplayMode;
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
            ..Default::default()
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
        let trace = assemble(DisplayMode::default(), &key("a"), &recs, range).unwrap();
        let expected = "\
c/things/ns/a [10ns +295ns]
  - 10ns alice create
  - 300ns alice update
  c/things/ns/b [20ns +5ns]
    - 20ns ctrl create
    c/things/ns/d [40ns +5ns]
      - 40ns kubelet update status
      ! c/things/ns/a is linked here too; shown once, under the root
  c/things/ns/c [0.000s +1000ns]
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
        let trace = assemble(DisplayMode::default(), &key("a"), &recs, range).unwrap();
        assert_eq!(trace.spans.len(), 2);
        assert_eq!(trace.spans[1].parent, Some(trace.spans[0].span_id));
        assert!(assemble(DisplayMode::default(), &key("zzz"), &recs, range).is_none());
    }
}
