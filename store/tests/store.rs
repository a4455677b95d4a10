//! The store seen from outside: write OTLP batches, reopen, search, merge, retention.

use std::sync::Arc;

use kausal_core::conventions::{object_span_id, Window, DEFAULT_WINDOW_NANOS};
use kausal_core::otlp_trace::Span;
use kausal_core::{LinkRole, ObjectKey};
use kausal_store::testing::{audit_span, link, object_span, resource_spans, string};
use kausal_store::{ObjectQuery, SpanLocation, Store, StoreOptions, TraceRef};

const W: i64 = DEFAULT_WINDOW_NANOS;

fn deployment() -> ObjectKey {
    ObjectKey::new("prod", "apps", "deployments", "default", "demo")
}

fn replicaset(name: &str) -> ObjectKey {
    ObjectKey::new("prod", "apps", "replicasets", "default", name)
}

fn window(i: i64) -> Window {
    Window { start: 1_700_000_000_000_000_000 / W * W + i * W, length: W }
}

fn query(filters: &[(&str, &str)], start: i64, end: i64) -> ObjectQuery {
    ObjectQuery {
        filters: filters.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        start,
        end,
        limit: 0,
    }
}

fn batch(spans: Vec<Span>) -> Vec<kausal_core::otlp_trace::ResourceSpans> {
    vec![resource_spans("prod", "deployments.apps", spans)]
}

fn demo_batch(w: Window) -> Vec<kausal_core::otlp_trace::ResourceSpans> {
    let d = deployment();
    batch(vec![
        object_span(&d, "Deployment", w, vec![link(&replicaset("demo-1"), "ReplicaSet", w, LinkRole::Child)]),
        audit_span(&d, w, "a2", "alice", "update", "", 200, w.start + 2_000, w.start + 3_000),
        audit_span(&d, w, "a1", "alice", "create", "", 201, w.start + 1_000, w.start + 1_500),
    ])
}

#[test]
fn data_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let w = window(0);
    {
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let stats = store.write(&demo_batch(w)).unwrap();
        assert_eq!((stats.objects_written, stats.activities, stats.rejected), (1, 2, 0));
    }
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let snap = store.read().unwrap();
    let hits = snap.search(&query(&[("resource", "deployments"), ("name", "demo")], w.start, w.end())).unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].key, deployment());
    let records = snap.object_windows(&deployment(), w.start, w.end()).unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].links.len(), 1);
    assert_eq!(records[0].links[0].peer, replicaset("demo-1"));
    let activities = snap.activities(records[0].span_id, w.start, w.end()).unwrap();
    let names: Vec<&str> = activities.iter().map(|a| a.span.name.as_str()).collect();
    assert_eq!(names, ["alice create", "alice update"], "activities come back in time order");
    assert_eq!(snap.clusters().unwrap(), ["prod"]);
    // An activity is located through its trace id, which is its object span's.
    let trace_id: [u8; 16] = activities[0].span.trace_id.as_slice().try_into().unwrap();
    assert_eq!(snap.locate_trace(trace_id).unwrap(), Some((deployment(), w.start)));
    assert!(matches!(snap.locate_span(records[0].span_id).unwrap(), Some(SpanLocation::Object { .. })));
}

#[test]
fn one_handle_per_directory() {
    let dir = tempfile::tempdir().unwrap();
    let a = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let b = Store::open(dir.path().join("."), StoreOptions::default()).unwrap();
    assert!(Arc::ptr_eq(&a, &b));
}

#[test]
fn rewriting_a_batch_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let w = window(0);
    store.write(&demo_batch(w)).unwrap();
    let again = store.write(&demo_batch(w)).unwrap();
    assert_eq!((again.objects_written, again.objects_unchanged), (0, 1));
    let snap = store.read().unwrap();
    assert_eq!(snap.activities(object_span_id(&deployment(), w), w.start, w.end()).unwrap().len(), 2);
    assert_eq!(snap.object_windows(&deployment(), w.start, w.end()).unwrap().len(), 1);
}

#[test]
fn re_emitted_object_spans_merge() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let w = window(0);
    let d = deployment();
    let first = object_span(&d, "Deployment", w, vec![link(&replicaset("demo-1"), "ReplicaSet", w, LinkRole::Child)]);
    let mut second = object_span(&d, "Deployment", w, vec![link(&replicaset("demo-2"), "ReplicaSet", w, LinkRole::Child)]);
    second.attributes.push(string("k8s.object.uid", "uid-1"));
    let mut third = object_span(&d, "Deployment", w, vec![]);
    third.attributes.push(string("k8s.object.uid", ""));
    store.write(&batch(vec![first])).unwrap();
    assert_eq!(store.write(&batch(vec![second])).unwrap().objects_written, 1);
    assert_eq!(store.write(&batch(vec![third])).unwrap().objects_written, 0, "an empty value erases nothing");
    let record = store.read().unwrap().object(&d, w.start).unwrap().unwrap();
    let mut peers: Vec<&str> = record.links.iter().map(|l| l.peer.name.as_str()).collect();
    peers.sort();
    assert_eq!(peers, ["demo-1", "demo-2"]);
    assert_eq!(record.uid().as_deref(), Some("uid-1"));
    // The uid is now searchable.
    let hits = store.read().unwrap().search(&query(&[("k8s.object.uid", "uid-1")], w.start, w.end())).unwrap();
    assert_eq!(hits.len(), 1);
}

#[test]
fn links_are_found_from_both_ends() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let w = window(0);
    // Only the ReplicaSet knows its parent; the Deployment's span has no link.
    let rs = object_span(&replicaset("demo-1"), "ReplicaSet", w, vec![link(&deployment(), "Deployment", w, LinkRole::Parent)]);
    store.write(&batch(vec![object_span(&deployment(), "Deployment", w, vec![]), rs])).unwrap();
    let snap = store.read().unwrap();
    let children = snap.linked_to(&deployment(), w.start, LinkRole::Child).unwrap();
    assert_eq!(children.len(), 1);
    assert_eq!(children[0].object, replicaset("demo-1"));
    assert!(snap.linked_to(&deployment(), w.start, LinkRole::Parent).unwrap().is_empty());
}

#[test]
fn search_respects_tags_and_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let (w0, w1) = (window(0), window(1));
    let other = ObjectKey::new("prod", "apps", "deployments", "default", "other");
    store
        .write(&batch(vec![
            object_span(&deployment(), "Deployment", w0, vec![]),
            object_span(&deployment(), "Deployment", w1, vec![]),
            object_span(&other, "Deployment", w1, vec![]),
            object_span(&replicaset("demo-1"), "ReplicaSet", w1, vec![]),
        ]))
        .unwrap();
    let snap = store.read().unwrap();
    let names = |q: ObjectQuery| -> Vec<String> { snap.search(&q).unwrap().into_iter().map(|h| h.key.name).collect() };
    assert_eq!(names(query(&[("k8s.deployment.name", "demo")], w0.start, w1.end())), ["demo"]);
    let mut deployments = names(query(&[("resource", "deployments")], w1.start, w1.end()));
    deployments.sort();
    assert_eq!(deployments, ["demo", "other"]);
    assert_eq!(names(query(&[("resource", "deployments"), ("name", "other")], w0.start, w0.end())), Vec::<String>::new());
    assert_eq!(names(query(&[("cluster", "staging")], w0.start, w1.end())), Vec::<String>::new());
    // The demo hit spans both windows.
    let hit = &snap.search(&query(&[("name", "demo")], w0.start, w1.end())).unwrap()[0];
    assert_eq!((hit.first_window_start, hit.last_window_end), (w0.start, w1.end()));
    // Untagged search walks the time index.
    assert_eq!(names(query(&[], w0.start, w0.end())), ["demo"]);
    assert_eq!(snap.object_windows(&deployment(), w0.start, w1.end()).unwrap().len(), 2);
}

#[test]
fn retention_deletes_old_windows_only() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions { index_activity_span_ids: true, ..StoreOptions::default() };
    let store = Store::open(dir.path(), options).unwrap();
    let (w0, w1) = (window(0), window(1));
    store.write(&demo_batch(w0)).unwrap();
    store.write(&demo_batch(w1)).unwrap();
    let old_activity = audit_span(&deployment(), w0, "a1", "alice", "create", "", 201, 0, 0);
    let old_id: [u8; 8] = old_activity.span_id.as_slice().try_into().unwrap();
    assert!(matches!(store.read().unwrap().locate_span(old_id).unwrap(), Some(SpanLocation::Activity { .. })));
    let old_trace = store.put_trace_ref(&TraceRef { root: deployment(), start: w0.start, end: w0.end() }).unwrap();
    let stats = store.delete_before(w0.end()).unwrap();
    assert_eq!((stats.windows, stats.activities, stats.traces), (1, 2, 1));
    let snap = store.read().unwrap();
    assert!(snap.search(&query(&[("name", "demo")], w0.start, w0.end())).unwrap().is_empty());
    assert_eq!(snap.search(&query(&[("name", "demo")], w0.start, w1.end())).unwrap().len(), 1);
    assert!(snap.activities(object_span_id(&deployment(), w0), w0.start, w0.end()).unwrap().is_empty());
    assert_eq!(snap.activities(object_span_id(&deployment(), w1), w1.start, w1.end()).unwrap().len(), 2);
    assert_eq!(snap.locate_span(old_id).unwrap(), None);
    let old_trace_id: [u8; 16] = old_activity.trace_id.as_slice().try_into().unwrap();
    assert_eq!(snap.locate_trace(old_trace_id).unwrap(), None);
    assert_eq!(snap.trace_ref(old_trace).unwrap(), None);
    assert!(snap.linked_to(&replicaset("demo-1"), w0.start, LinkRole::Parent).unwrap().is_empty());
    assert_eq!(snap.linked_to(&replicaset("demo-1"), w1.start, LinkRole::Parent).unwrap().len(), 1);
}

#[test]
fn trace_refs_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let trace = TraceRef { root: deployment(), start: 10, end: 20 };
    let id = Store::open(dir.path(), StoreOptions::default()).unwrap().put_trace_ref(&trace).unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    assert_eq!(store.put_trace_ref(&trace).unwrap(), id, "ids are stable");
    assert_eq!(store.read().unwrap().trace_ref(id).unwrap(), Some(trace));
    assert_eq!(store.read().unwrap().trace_ref(id ^ 1).unwrap(), None);
}

#[test]
fn foreign_and_malformed_spans() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let foreign = Span { trace_id: vec![3; 16], span_id: vec![4; 8], name: "GET /api".into(), ..Default::default() };
    let mut bad_object = object_span(&deployment(), "Deployment", window(0), vec![]);
    bad_object.span_id = vec![1, 2, 3];
    let mut orphan = audit_span(&deployment(), window(0), "x", "bob", "get", "", 200, 1, 2);
    orphan.parent_span_id.clear();
    let stats = store.write(&batch(vec![foreign, bad_object, orphan])).unwrap();
    assert_eq!((stats.foreign, stats.rejected), (1, 2));
    let spans = store.read().unwrap().foreign_spans([3; 16]).unwrap();
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].name, "GET /api");
}
