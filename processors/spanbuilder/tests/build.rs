//! Span building seen from outside: object spans, activity spans, links on both ends.

use std::time::Duration;

use kausal_core::activity::{Activity, ActivityDetail, AuditActivity, Change, DiffEntry, Link, LinkRole};
use kausal_core::audit::{Level, Stage, UserInfo};
use kausal_core::conventions::{Window, attr, object_span_id};
use kausal_core::object::{ObjectKey, ObjectRef};
use kausal_core::otlp::{attr_str, attr_int};
use kausal_core::otlp_trace::{ResourceSpans, Span};
use kausal_processor_spanbuilder::{SpanBuilder, SpanBuilderConfig};

const MIN: i64 = 60_000_000_000;

fn audit(key: ObjectKey, user: &str, verb: &str, sub: &str, code: i32, start: i64) -> Activity {
    Activity {
        object: ObjectRef::new(key),
        start,
        end: start + 5_000_000,
        detail: ActivityDetail::Audit(AuditActivity {
            audit_id: format!("{user}-{verb}-{start}"),
            verb: verb.into(),
            stage: Stage::ResponseComplete,
            level: Level::Metadata,
            request_uri: "/x".into(),
            subresource: sub.into(),
            user: UserInfo { username: user.into(), ..Default::default() },
            impersonated_user: None,
            user_agent: "kubectl/v1.31".into(),
            source_ips: vec!["10.0.0.1".into()],
            code: Some(code),
            reason: if code == 409 { "Conflict".into() } else { String::new() },
            message: if code == 409 { "the object has been modified".into() } else { String::new() },
            causes: vec![],
            request_resource_version: "10".into(),
            response_resource_version: String::new(),
            annotations: Default::default(),
            bodies: None,
        }),
        links: vec![],
        change: None,
        cause: None,
    }
}

fn spans(rs: &[ResourceSpans]) -> Vec<&Span> {
    rs.iter().flat_map(|r| &r.scope_spans).flat_map(|s| &s.spans).collect()
}

fn by_type<'a>(spans: &[&'a Span], t: &str) -> Vec<&'a Span> {
    spans.iter().copied().filter(|s| attr_str(&s.attributes, attr::SPAN_TYPE) == Some(t)).collect()
}

#[test]
fn audit_spans_hang_under_their_object_span_with_readable_names() {
    let mut b = SpanBuilder::new(&SpanBuilderConfig::default());
    let deploy = ObjectKey::new("prod", "apps", "deployments", "default", "demo");
    let t = 100 * MIN;
    let acts = vec![
        audit(deploy.clone(), "alice", "create", "", 201, t),
        audit(deploy.clone(), "system:serviceaccount:kube-system:deployment-controller", "update", "status", 409, t + MIN),
    ];
    let (out, emitted) = b.build(&acts);
    b.remember(emitted);
    let all = spans(&out);
    let objects = by_type(&all, "object");
    assert_eq!(objects.len(), 1);
    let obj = objects[0];
    assert_eq!(obj.name, "deployments.apps default/demo");
    assert_eq!(attr_str(&obj.attributes, "k8s.deployment.name"), Some("demo"));
    assert_eq!(attr_str(&obj.attributes, attr::NAMESPACE), Some("default"));
    let window = Window::containing(t, 30 * MIN);
    assert_eq!(obj.span_id, object_span_id(&deploy, window).to_vec());
    assert_eq!(obj.start_time_unix_nano as i64, window.start);

    let audits = by_type(&all, "audit");
    let names: Vec<&str> = audits.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, vec!["alice create", "system:serviceaccount:kube-system:deployment-controller update status (Conflict)"]);
    for a in &audits {
        assert_eq!(a.parent_span_id, obj.span_id);
        assert_eq!(a.trace_id, obj.trace_id);
    }
    let conflict = audits[1];
    assert_eq!(attr_int(&conflict.attributes, attr::HTTP_STATUS_CODE), Some(409));
    assert_eq!(attr_str(&conflict.attributes, attr::STATUS_REASON), Some("Conflict"));
    assert_eq!(attr_str(&conflict.attributes, attr::STATUS_MESSAGE), Some("the object has been modified"));
    assert_eq!(conflict.status.as_ref().map(|s| s.code), Some(2));

    // The same object again in the same window, with nothing new: no second object span.
    let (again, _) = b.build(&[audit(deploy.clone(), "bob", "get", "", 200, t + 2 * MIN)]);
    assert!(by_type(&spans(&again), "object").is_empty());
    // The next window gets its own object span.
    let (next, _) = b.build(&[audit(deploy, "bob", "get", "", 200, t + 31 * MIN)]);
    assert_eq!(by_type(&spans(&next), "object").len(), 1);
}

#[test]
fn links_are_recorded_on_both_objects_and_re_emitted_when_new() {
    let mut b = SpanBuilder::new(&SpanBuilderConfig::default());
    let t = 10 * MIN;
    let rs = ObjectKey::new("prod", "apps", "replicasets", "default", "demo-1");
    let deploy = ObjectKey::new("prod", "apps", "deployments", "default", "demo");
    let mut a = audit(rs.clone(), "rsc", "create", "", 201, t);
    let (_, emitted) = b.build(std::slice::from_ref(&a));
    b.remember(emitted);
    a.links.push(Link {
        peer: ObjectRef { uid: Some("d-uid".into()), ..ObjectRef::new(deploy.clone()) },
        role: LinkRole::Parent,
        class: "children".into(),
        inferred: false,
    });
    let (out, emitted) = b.build(std::slice::from_ref(&a));
    b.remember(emitted);
    let all = spans(&out);
    let objects = by_type(&all, "object");
    assert_eq!(objects.len(), 2, "the replicaset span gains a link and the deployment span appears");
    let window = Window::containing(t, 30 * MIN);
    let rs_span = objects.iter().find(|s| s.name.starts_with("replicasets")).unwrap();
    let d_span = objects.iter().find(|s| s.name.starts_with("deployments")).unwrap();
    assert_eq!(rs_span.links.len(), 1);
    assert_eq!(rs_span.links[0].span_id, object_span_id(&deploy, window).to_vec());
    assert_eq!(attr_str(&rs_span.links[0].attributes, attr::LINK_ROLE), Some("parent"));
    assert_eq!(attr_str(&rs_span.links[0].attributes, attr::LINK_PEER_UID), Some("d-uid"));
    assert_eq!(d_span.links.len(), 1);
    assert_eq!(d_span.links[0].span_id, object_span_id(&rs, window).to_vec());
    assert_eq!(attr_str(&d_span.links[0].attributes, attr::LINK_ROLE), Some("child"));
    assert_eq!(attr_str(&d_span.attributes, "k8s.deployment.uid"), Some("d-uid"));

    // Nothing new: nothing re-emitted.
    let (out, _) = b.build(std::slice::from_ref(&a));
    assert!(by_type(&spans(&out), "object").is_empty());
}

#[test]
fn object_spans_not_remembered_are_emitted_again() {
    // A batch refused downstream is retried; its object span must come out again.
    let mut b = SpanBuilder::new(&SpanBuilderConfig::default());
    let a = audit(ObjectKey::new("c", "", "pods", "ns", "p"), "u", "create", "", 201, MIN);
    let (first, _not_remembered) = b.build(std::slice::from_ref(&a));
    let (retry, _) = b.build(std::slice::from_ref(&a));
    assert_eq!(by_type(&spans(&first), "object").len(), 1);
    assert_eq!(by_type(&spans(&retry), "object").len(), 1);
    // Activity span IDs are deterministic, so a retry does not duplicate the activity.
    assert_eq!(by_type(&spans(&first), "audit")[0].span_id, by_type(&spans(&retry), "audit")[0].span_id);
}

#[test]
fn diffs_become_span_events_with_readable_lines() {
    let mut b = SpanBuilder::new(&SpanBuilderConfig { window: Duration::from_secs(60), ..Default::default() });
    let mut a = audit(ObjectKey::new("c", "apps", "deployments", "ns", "d"), "u", "patch", "scale", 200, MIN);
    a.change = Some(Change::Diff {
        entries: vec![DiffEntry { path: "spec.replicas".into(), old: Some(2.into()), new: Some(4.into()), verbose: false }],
    });
    let (out, _) = b.build(&[a]);
    let all = spans(&out);
    let audit = by_type(&all, "audit")[0];
    assert_eq!(audit.events.len(), 1);
    assert_eq!(audit.events[0].name, attr::EVENT_DIFF);
    let lines = audit.events[0].attributes.iter().find(|kv| kv.key == attr::DIFF_LINES).unwrap();
    assert!(format!("{lines:?}").contains("spec.replicas 2 -> 4"));
}

#[tokio::test]
async fn activities_naming_no_object_are_dropped_and_counted() {
    use std::sync::{Arc, Mutex};
    use kausal_core::component::{Batch, ConsumeError, Consumer, CreateContext, ProcessorFactory};
    use kausal_core::config::ComponentConfig;
    use kausal_core::telemetry::Telemetry;

    struct Collect(Mutex<usize>);
    #[async_trait::async_trait]
    impl Consumer for Collect {
        async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
            *self.0.lock().unwrap() += batch.len();
            Ok(())
        }
    }
    let telemetry = Telemetry::default();
    let metrics = telemetry.component("processor", "spanbuilder");
    let sink = Arc::new(Collect(Mutex::new(0)));
    let cfg = ComponentConfig::from_yaml("spanbuilder", "").unwrap();
    let ctx = CreateContext { id: cfg.id.clone(), metrics: metrics.clone(), telemetry };
    let p = kausal_processor_spanbuilder::Factory.create(ctx, &cfg, sink.clone()).unwrap();
    let list = audit(ObjectKey::new("c", "", "pods", "ns", ""), "u", "list", "", 200, MIN);
    let named = audit(ObjectKey::new("c", "", "pods", "ns", "p"), "u", "get", "", 200, MIN);
    p.consume(Batch::Activities(vec![list, named])).await.unwrap();
    assert_eq!(metrics.dropped.get(), 1);
    assert_eq!(*sink.0.lock().unwrap(), 2, "one object span and one activity span");
}
