//! The `cause` the causal processor sets becomes a `causal` span link from the activity span to
//! the span of its cause — the very span the builder emits for that cause, in any window — and
//! a remote traceparent cause links to that remote span.

use kausal_core::activity::{Activity, ActivityDetail, Cause, ChangeActivity, EventActivity};
use kausal_core::conventions::attr;
use kausal_core::object::{ObjectKey, ObjectRef};
use kausal_core::otlp::attr_str;
use kausal_core::otlp_trace::Span;
use kausal_processor_spanbuilder::{SpanBuilder, SpanBuilderConfig};

const MIN: i64 = 60_000_000_000;

fn event(key: ObjectKey, reason: &str, start: i64, cause: Option<Cause>) -> Activity {
    Activity {
        object: ObjectRef::new(key),
        start,
        end: start,
        detail: ActivityDetail::Event(EventActivity {
            reason: reason.into(),
            event_uid: format!("uid-{reason}"),
            count: 1,
            ..Default::default()
        }),
        links: vec![],
        change: None,
        cause,
    }
}

fn built(b: &mut SpanBuilder, acts: &[Activity]) -> Vec<Span> {
    let (rs, _) = b.build(acts);
    rs.into_iter().flat_map(|r| r.scope_spans).flat_map(|s| s.spans).collect()
}

#[test]
fn an_effect_links_to_the_span_built_for_its_cause() {
    let mut b = SpanBuilder::new(&SpanBuilderConfig::default());
    let deployment = ObjectKey::new("c", "apps", "deployments", "ns", "web");
    let replicaset = ObjectKey::new("c", "apps", "replicasets", "ns", "web-1");
    // The root is a write known from managedFields, 40 minutes earlier (another window).
    let root = Activity {
        object: ObjectRef::new(deployment.clone()),
        start: 100 * MIN,
        end: 100 * MIN,
        detail: ActivityDetail::Change(ChangeActivity { manager: "kubectl".into(), operation: "Update".into(), ..Default::default() }),
        links: vec![],
        change: None,
        cause: None,
    };
    let root_cause = Cause::Activity { object: root.object.clone(), start: root.start, identity: root.span_identity() };
    let scaled = event(deployment, "ScalingReplicaSet", 140 * MIN, Some(root_cause));
    let scaled_cause = Cause::Activity { object: scaled.object.clone(), start: scaled.start, identity: scaled.span_identity() };
    let created = event(replicaset, "SuccessfulCreate", 140 * MIN + 1, Some(scaled_cause));
    let spans = built(&mut b, &[root, scaled, created]);
    let named = |n: &str| spans.iter().find(|s| s.name == n).unwrap_or_else(|| panic!("no span {n}"));
    let root_span = named("kubectl Update");
    assert_eq!(attr_str(&root_span.attributes, attr::MANAGER), Some("kubectl"));
    assert!(root_span.links.is_empty());
    for (effect, cause) in [("ScalingReplicaSet", root_span), ("SuccessfulCreate", named("ScalingReplicaSet"))] {
        let link = &named(effect).links[0];
        assert_eq!(attr_str(&link.attributes, attr::LINK_CLASS), Some("causal"));
        assert_eq!(attr_str(&link.attributes, attr::LINK_ROLE), Some("parent"));
        assert_eq!((&link.trace_id, &link.span_id), (&cause.trace_id, &cause.span_id), "{effect} links to its cause's span");
    }
}

#[test]
fn a_remote_parent_is_linked_by_its_traceparent_ids_and_bad_ids_are_left_out() {
    let mut b = SpanBuilder::new(&SpanBuilderConfig::default());
    let key = ObjectKey::new("c", "apps", "deployments", "ns", "web");
    let remote = Cause::Remote { trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(), span_id: "00f067aa0ba902b7".into() };
    let broken = Cause::Remote { trace_id: "xyz".into(), span_id: "00f067aa0ba902b7".into() };
    let spans = built(&mut b, &[event(key.clone(), "A", 10 * MIN, Some(remote)), event(key, "B", 11 * MIN, Some(broken))]);
    let a = spans.iter().find(|s| s.name == "A").unwrap();
    assert_eq!(a.links[0].trace_id, vec![0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36]);
    assert_eq!(a.links[0].span_id, vec![0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]);
    assert!(spans.iter().find(|s| s.name == "B").unwrap().links.is_empty());
}
