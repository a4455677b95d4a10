//! Golden tests: one fixed rollout scenario written to a real store, the trace of ReplicaSet
//! `demo-b` assembled in every display mode × scope and compared, as a readable outline, with
//! the reviewed files under `tests/golden/`. Set `KAUSAL_UPDATE_GOLDEN=1` to rewrite them, then
//! review the diff like code.
//!
//! The scenario spans two 30-minute windows (continuity), the requested range starts after
//! the Deployment's creation and ends before its last update (clipping), and a Pod claims its
//! own ReplicaSet as its child (a cycle, and a second owner of the ReplicaSet).

use kausal_core::conventions::{activity_span_id, attr, object_span_id, object_trace_id, span_type, Window};
use kausal_core::otlp_trace::{span, ResourceSpans, Span};
use kausal_core::{LinkRole, Nanos, ObjectKey};
use kausal_extension_query::assemble::{assemble, TimeRange};
use kausal_extension_query::load::{load, LoadLimits};
use kausal_extension_query::mode::all_modes;
use kausal_store::testing::{audit_span, int, link, object_span, resource_spans, string, with_diff};
use kausal_store::{Store, StoreOptions};

const SECOND: Nanos = 1_000_000_000;
const MINUTE: Nanos = 60 * SECOND;
/// 2023-11-14T22:00:00Z, aligned to the 30-minute window.
const T0: Nanos = 1_699_999_200 * SECOND;
const WINDOW: Nanos = 30 * MINUTE;

fn key(resource: &str, name: &str) -> ObjectKey {
    let group = if resource == "pods" { "" } else { "apps" };
    ObjectKey::new("prod", group, resource, "default", name)
}

fn window(at: Nanos) -> Window {
    Window::containing(at, WINDOW)
}

fn event_span(object: &ObjectKey, at: Nanos, reason: &str, message: &str, source: &str) -> Span {
    let w = window(at);
    let parent = object_span_id(object, w);
    Span {
        trace_id: object_trace_id(object, w).to_vec(),
        span_id: activity_span_id(parent, &format!("event/{reason}/{at}")).to_vec(),
        parent_span_id: parent.to_vec(),
        name: reason.to_string(),
        start_time_unix_nano: at as u64,
        end_time_unix_nano: at as u64,
        attributes: vec![
            string(attr::SPAN_TYPE, span_type::EVENT),
            string(attr::EVENT_REASON, reason),
            string(attr::EVENT_TYPE, "Normal"),
            int(attr::EVENT_COUNT, 1),
            string(attr::EVENT_SOURCE, source),
            string(attr::EVENT_MESSAGE, message),
        ],
        ..Default::default()
    }
}

fn snapshot_change(object: &ObjectKey, at: Nanos, resource_version: &str) -> Span {
    let w = window(at);
    let parent = object_span_id(object, w);
    Span {
        trace_id: object_trace_id(object, w).to_vec(),
        span_id: activity_span_id(parent, &format!("change//{resource_version}")).to_vec(),
        parent_span_id: parent.to_vec(),
        name: "change".into(),
        start_time_unix_nano: at as u64,
        end_time_unix_nano: at as u64,
        attributes: vec![string(attr::SPAN_TYPE, span_type::CHANGE), string(attr::OBJECT_RESOURCE_VERSION, resource_version)],
        events: vec![span::Event {
            time_unix_nano: at as u64,
            name: attr::EVENT_SNAPSHOT.into(),
            attributes: vec![
                string(attr::SNAPSHOT_PHASE, "creation"),
                string(attr::SNAPSHOT_JSON, r#"{"metadata":{"name":"demo-b"},"spec":{"replicas":2}}"#),
            ],
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn audit(object: &ObjectKey, at: Nanos, id: &str, user: &str, verb: &str, sub: &str, code: i64) -> Span {
    audit_span(object, window(at), &format!("{id}-{}", object.name), user, verb, sub, code, at, at + 20_000_000)
}

/// The scenario: Deployment `demo` is created, later patched to a new image; ReplicaSet
/// `demo-b` takes over from `demo-a`; Pods start across the window boundary.
pub fn scenario() -> Vec<ResourceSpans> {
    let deployment = key("deployments", "demo");
    let (old_set, new_set) = (key("replicasets", "demo-a"), key("replicasets", "demo-b"));
    let old_pod = key("pods", "demo-a-1");
    let (pod1, pod2) = (key("pods", "demo-b-1"), key("pods", "demo-b-2"));
    let dc = "system:serviceaccount:kube-system:deployment-controller";
    let rc = "system:serviceaccount:kube-system:replicaset-controller";
    let scheduler = "system:kube-scheduler";
    let rollout = T0 + 25 * MINUTE;
    let mut activities: Vec<(ObjectKey, Span)> = vec![
        // Before the requested range: clipped.
        (deployment.clone(), audit(&deployment, T0 + 30 * SECOND, "d1", "alice", "create", "", 201)),
        (old_set.clone(), audit(&old_set, T0 + 61 * SECOND, "r1", dc, "create", "", 201)),
        (old_pod.clone(), audit(&old_pod, T0 + 62 * SECOND, "p1", rc, "create", "", 201)),
        (old_pod.clone(), audit(&old_pod, T0 + 63 * SECOND, "p2", scheduler, "create", "binding", 201)),
        (
            deployment.clone(),
            with_diff(audit(&deployment, rollout, "d2", "alice", "patch", "", 200), &[
                "spec.template.spec.containers[0].image \"nginx:1.25\" -> \"nginx:1.26\"",
            ]),
        ),
        (deployment.clone(), event_span(&deployment, rollout + 300_000_000, "ScalingReplicaSet", "Scaled up replica set demo-b to 2", "deployment-controller")),
        (new_set.clone(), audit(&new_set, rollout + 200_000_000, "r2", dc, "create", "", 201)),
        (new_set.clone(), snapshot_change(&new_set, rollout + 210_000_000, "1001")),
        (deployment.clone(), audit(&deployment, rollout + SECOND, "d3", dc, "update", "status", 200)),
        (deployment.clone(), audit(&deployment, rollout + 2 * SECOND, "d4", dc, "update", "status", 409)),
        (new_set.clone(), event_span(&new_set, rollout + 400_000_000, "SuccessfulCreate", "Created pod: demo-b-1", "replicaset-controller")),
        (pod1.clone(), audit(&pod1, rollout + 400_000_000, "p3", rc, "create", "", 201)),
        (pod1.clone(), audit(&pod1, rollout + 600_000_000, "p4", scheduler, "create", "binding", 201)),
        (pod1.clone(), event_span(&pod1, T0 + 26 * MINUTE, "Pulled", "Container image \"nginx:1.26\" already present", "kubelet")),
        // demo-b-2 is created just before the window boundary and pulls just after it.
        (pod2.clone(), audit(&pod2, T0 + 29 * MINUTE + 59 * SECOND, "p5", rc, "create", "", 201)),
        (pod2.clone(), event_span(&pod2, T0 + 30 * MINUTE + 30 * SECOND, "Pulled", "Container image \"nginx:1.26\" already present", "kubelet")),
        (pod1.clone(), audit(&pod1, T0 + 31 * MINUTE, "p6", "system:node:node-1", "patch", "status", 200)),
        (
            old_set.clone(),
            with_diff(audit(&old_set, T0 + 32 * MINUTE, "r3", dc, "update", "", 200), &["spec.replicas 1 -> 0"]),
        ),
        (old_pod.clone(), audit(&old_pod, T0 + 33 * MINUTE, "p7", rc, "delete", "", 200)),
        // After the requested range: clipped.
        (deployment.clone(), audit(&deployment, T0 + 55 * MINUTE, "d5", "alice", "update", "", 200)),
    ];
    activities.sort_by_key(|(_, s)| s.start_time_unix_nano);
    let mut out: Vec<ResourceSpans> = Vec::new();
    for w in [window(T0), window(T0 + WINDOW)] {
        let mut spans = vec![
            object_span(&deployment, "Deployment", w, vec![link(&old_set, "ReplicaSet", w, LinkRole::Child), link(&new_set, "ReplicaSet", w, LinkRole::Child)]),
            object_span(&old_set, "ReplicaSet", w, vec![link(&deployment, "Deployment", w, LinkRole::Parent), link(&old_pod, "Pod", w, LinkRole::Child)]),
            object_span(&new_set, "ReplicaSet", w, vec![
                link(&deployment, "Deployment", w, LinkRole::Parent),
                link(&pod1, "Pod", w, LinkRole::Child),
                link(&pod2, "Pod", w, LinkRole::Child),
            ]),
            object_span(&old_pod, "Pod", w, vec![link(&old_set, "ReplicaSet", w, LinkRole::Parent)]),
            object_span(&pod1, "Pod", w, vec![link(&new_set, "ReplicaSet", w, LinkRole::Parent)]),
            // A bogus link rule makes demo-b-2 claim its own ReplicaSet as its child: a cycle.
            object_span(&pod2, "Pod", w, vec![
                link(&new_set, "ReplicaSet", w, LinkRole::Parent),
                link(&new_set, "ReplicaSet", w, LinkRole::Child),
            ]),
        ];
        spans.extend(activities.iter().filter(|(_, s)| window(s.start_time_unix_nano as Nanos) == w).map(|(_, s)| s.clone()));
        out.push(resource_spans("prod", "kausal", spans));
    }
    out
}

#[test]
fn every_mode_and_scope_matches_its_reviewed_outline() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let stats = store.write(&scenario()).unwrap();
    assert_eq!(stats.rejected, 0, "{stats:?}");
    let snapshot = store.read().unwrap();
    let range = TimeRange { start: T0 + MINUTE, end: T0 + 50 * MINUTE };
    let asked = key("replicasets", "demo-b");
    let update = std::env::var_os("KAUSAL_UPDATE_GOLDEN").is_some();
    let golden = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut mismatches = Vec::new();
    for mode in all_modes() {
        let limits = LoadLimits { max_depth: 3, max_linked: 100 };
        let records = load(&snapshot, &asked, range, mode.scope, limits).unwrap();
        let trace = assemble(mode, &asked, &records, range).unwrap();
        let text = format!("# {} of {asked}, range +1m..+50m\n{}", mode.service_name(), trace.outline());
        let file = golden.join(format!("{}.txt", mode.service_name().replace(" [", "-").replace(']', "").replace(' ', "-")));
        if update {
            std::fs::write(&file, &text).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        if expected != text {
            mismatches.push(format!("{}:\n--- expected\n{expected}--- got\n{text}", file.display()));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn the_link_budget_cuts_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    store.write(&scenario()).unwrap();
    let snapshot = store.read().unwrap();
    let range = TimeRange { start: T0, end: T0 + 60 * MINUTE };
    let deployment = key("deployments", "demo");
    let mode = kausal_extension_query::mode::DisplayMode::default();
    let records = load(&snapshot, &deployment, range, mode.scope, LoadLimits { max_depth: 3, max_linked: 2 }).unwrap();
    let trace = assemble(mode, &deployment, &records, range).unwrap();
    assert_eq!(trace.spans.len(), 3, "the Deployment and two linked objects:\n{}", trace.outline());
    assert!(trace.warnings.iter().any(|w| w.contains("link budget of 2")), "{:?}", trace.warnings);
    let records = load(&snapshot, &deployment, range, mode.scope, LoadLimits { max_depth: 1, max_linked: 100 }).unwrap();
    let trace = assemble(mode, &deployment, &records, range).unwrap();
    assert_eq!(trace.spans.len(), 3, "one hop: the Deployment and its ReplicaSets:\n{}", trace.outline());
}
