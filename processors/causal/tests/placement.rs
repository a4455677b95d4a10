//! Placement rules the kspan recordings do not exercise: observed writes (audit) as causes,
//! owner walks, annotations, configured patterns, and the processor holding and flushing.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use kausal_core::activity::{
    Activity, ActivityDetail, AuditActivity, Cause, Change, ChangeActivity, EventActivity, LINK_CLASS_CHILDREN, Link,
    LinkRole, SnapshotPhase,
};
use kausal_core::audit::{Level, Stage, UserInfo};
use kausal_core::component::{Batch, ConsumeError, Consumer, CreateContext, ProcessorFactory};
use kausal_core::config::ComponentConfig;
use kausal_core::object::{ObjectKey, ObjectRef};
use kausal_core::telemetry::Telemetry;
use kausal_processor_causal::pattern::{Effect, PatternConfig};
use kausal_processor_causal::{CausalConfig, CausalPlacer, Factory};
use serde_json::json;

const S: i64 = 1_000_000_000;

fn obj(resource: &str, name: &str) -> ObjectRef {
    let group = match resource {
        "pods" => "",
        "widgets" | "widgetsets" => "example.com",
        _ => "apps",
    };
    ObjectRef::new(ObjectKey::new("c", group, resource, "ns", name))
}

fn event(o: ObjectRef, at: i64, source: &str, reason: &str, message: &str) -> Activity {
    Activity {
        object: o,
        start: at,
        end: at,
        detail: ActivityDetail::Event(EventActivity {
            reason: reason.into(),
            message: message.into(),
            event_type: "Normal".into(),
            source: source.into(),
            count: 1,
            event_name: format!("ns/{reason}-{at}"),
            event_uid: format!("uid-{reason}-{at}"),
            ..Default::default()
        }),
        links: vec![],
        change: None,
        cause: None,
    }
}

fn write(o: ObjectRef, at: i64, user: &str, verb: &str) -> Activity {
    Activity {
        object: o,
        start: at,
        end: at + 1_000_000,
        detail: ActivityDetail::Audit(AuditActivity {
            audit_id: format!("a-{at}"),
            verb: verb.into(),
            stage: Stage::ResponseComplete,
            level: Level::Metadata,
            request_uri: String::new(),
            subresource: String::new(),
            user: UserInfo { username: user.into(), ..Default::default() },
            impersonated_user: None,
            user_agent: String::new(),
            source_ips: vec![],
            code: Some(200),
            reason: String::new(),
            message: String::new(),
            causes: vec![],
            request_resource_version: String::new(),
            response_resource_version: String::new(),
            annotations: Default::default(),
            bodies: None,
        }),
        links: vec![],
        change: None,
        cause: None,
    }
}

fn snapshot(o: ObjectRef, at: i64, owner: Option<ObjectRef>, metadata: serde_json::Value) -> Activity {
    Activity {
        object: o,
        start: at,
        end: at,
        detail: ActivityDetail::Change(ChangeActivity::default()),
        links: owner
            .map(|peer| Link { peer, role: LinkRole::Parent, class: LINK_CLASS_CHILDREN.into(), inferred: false })
            .into_iter()
            .collect(),
        change: Some(Change::Snapshot { phase: SnapshotPhase::Creation, object: json!({ "metadata": metadata }) }),
        cause: None,
    }
}

fn place(config: &CausalConfig, activities: Vec<Activity>) -> Vec<Activity> {
    let mut placer = CausalPlacer::new(config).unwrap();
    for a in activities {
        placer.push(a, 0);
    }
    placer.flush()
}

fn find<'a>(placed: &'a [Activity], reason: &str) -> &'a Activity {
    placed
        .iter()
        .find(|a| matches!(&a.detail, ActivityDetail::Event(e) if e.reason == reason))
        .unwrap_or_else(|| panic!("no {reason}"))
}

fn cause_identity(a: &Activity) -> Option<String> {
    match &a.cause {
        Some(Cause::Activity { identity, .. }) => Some(identity.clone()),
        _ => None,
    }
}

#[test]
fn an_observed_write_wins_over_managed_fields_and_controller_writes_come_first() {
    let d = obj("deployments", "web");
    let mf = json!({"managedFields": [{"manager": "kubectl", "operation": "Update", "time": "1970-01-01T00:00:10Z", "fieldsV1": {"f:spec": {}}}]});
    let alice = write(d.clone(), 10 * S, "alice", "patch");
    let controller = write(d.clone(), 11 * S, "system:serviceaccount:kube-system:deployment-controller", "update");
    let placed = place(
        &CausalConfig::default(),
        vec![
            snapshot(d.clone(), 12 * S, None, mf),
            event(d.clone(), 12 * S, "deployment-controller", "ScalingReplicaSet", "Scaled up replica set web-1 to 1"),
            event(d.clone(), 12 * S, "someone-else", "Noticed", "a change"),
            alice.clone(),
            controller.clone(),
        ],
    );
    // No root synthesised: the request managedFields recorded was observed.
    assert!(placed.iter().all(|a| !matches!(&a.detail, ActivityDetail::Change(c) if !c.manager.is_empty())));
    assert_eq!(cause_identity(find(&placed, "ScalingReplicaSet")), Some(controller.span_identity()));
    assert_eq!(cause_identity(find(&placed, "Noticed")), Some(alice.span_identity()));
}

#[test]
fn pods_without_a_report_climb_to_their_owners_report() {
    let d = obj("deployments", "web");
    let rs = obj("replicasets", "web-1");
    let pod = obj("pods", "web-1-abc");
    let placed = place(
        &CausalConfig::default(),
        vec![
            event(d.clone(), 10 * S, "deployment-controller", "ScalingReplicaSet", "Scaled up replica set web-1 to 1"),
            snapshot(rs.clone(), 10 * S, Some(d.clone()), json!({})),
            snapshot(pod.clone(), 11 * S, Some(rs.clone()), json!({})),
            event(pod.clone(), 12 * S, "kubelet", "Pulled", "image present"),
        ],
    );
    let scaled = find(&placed, "ScalingReplicaSet");
    assert_eq!(cause_identity(find(&placed, "Pulled")), Some(scaled.span_identity()));
    // Its span ends at the next activity on the same object; the last one keeps its instant.
    assert_eq!(find(&placed, "Pulled").end, 12 * S);
}

#[test]
fn annotations_continue_a_remote_trace_and_stop_the_owner_walk() {
    let d = obj("deployments", "web");
    let rs = obj("replicasets", "web-1");
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let alice = write(d.clone(), 9 * S, "alice", "patch");
    let story = |rs_annotations: serde_json::Value| {
        vec![
            snapshot(d.clone(), 10 * S, None, json!({"annotations": {"kausal.io/traceparent": tp}})),
            snapshot(rs.clone(), 10 * S, Some(d.clone()), json!({"annotations": rs_annotations})),
            event(d.clone(), 5 * S, "deployment-controller", "Observed", "before anyone wrote"),
            alice.clone(),
            event(rs.clone(), 12 * S, "replicaset-controller", "Resynced", "no pattern"),
        ]
    };
    let placed = place(&CausalConfig::default(), story(json!({})));
    assert_eq!(
        find(&placed, "Observed").cause,
        Some(Cause::Remote { trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(), span_id: "00f067aa0ba902b7".into() })
    );
    // The Deployment's Event span ends where the next activity on it starts.
    assert_eq!(find(&placed, "Observed").end, 9 * S);
    // Up the owners, the ReplicaSet's Event finds the write that triggered the Deployment ...
    assert_eq!(cause_identity(find(&placed, "Resynced")), Some(alice.span_identity()));
    // ... unless the ReplicaSet starts its own trace.
    let placed = place(&CausalConfig::default(), story(json!({"kausal.io/trace-start": "true"})));
    assert_eq!(find(&placed, "Resynced").cause, None);
}

#[test]
fn configured_patterns_place_custom_controllers_children() {
    let mut config = CausalConfig::default();
    config.patterns.push(PatternConfig {
        source: "widget-operator".into(),
        message: "made widget {child} for *".into(),
        child_kind: "Widget".into(),
        child_api_version: "example.com/v1".into(),
        effect: Effect::Create,
    });
    let owner = obj("widgetsets", "set");
    let widget = obj("widgets", "w-1");
    let placed = place(
        &config,
        vec![
            event(owner.clone(), 10 * S, "widget-operator", "Made", "made widget w-1 for set"),
            event(widget.clone(), 11 * S, "widget-operator", "Ready", "ready"),
        ],
    );
    assert_eq!(cause_identity(find(&placed, "Ready")), Some(find(&placed, "Made").span_identity()));
    // Without the pattern, nothing ties them together.
    let placed = place(
        &CausalConfig::default(),
        vec![
            event(owner, 10 * S, "widget-operator", "Made", "made widget w-1 for set"),
            event(widget, 11 * S, "widget-operator", "Ready", "ready"),
        ],
    );
    assert_eq!(find(&placed, "Ready").cause, None);
}

struct Sink(Mutex<Vec<Activity>>);

#[async_trait]
impl Consumer for Sink {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        if let Batch::Activities(a) = batch {
            self.0.lock().unwrap().extend(a);
        }
        Ok(())
    }
}

#[tokio::test]
async fn the_processor_holds_activities_for_the_buffer_and_flushes_on_shutdown() {
    let sink = Arc::new(Sink(Mutex::new(vec![])));
    let config = ComponentConfig::from_yaml("causal", "buffer: 1h").unwrap();
    let telemetry = Telemetry::default();
    let ctx = CreateContext { id: config.id.clone(), metrics: telemetry.component("processor", "causal"), telemetry };
    let processor = Factory.create(ctx, &config, sink.clone()).unwrap();
    let d = obj("deployments", "web");
    let rs = obj("replicasets", "web-1");
    // The effect arrives first; the report that explains it second.
    processor
        .consume(Batch::Activities(vec![event(rs.clone(), 12 * S, "replicaset-controller", "SuccessfulCreate", "Created pod: web-1-a")]))
        .await
        .unwrap();
    processor
        .consume(Batch::Activities(vec![event(d, 11 * S, "deployment-controller", "ScalingReplicaSet", "Scaled up replica set web-1 to 1")]))
        .await
        .unwrap();
    assert!(sink.0.lock().unwrap().is_empty(), "held for the buffer");
    processor.shutdown().await.unwrap();
    let out = sink.0.lock().unwrap().clone();
    assert_eq!(out.len(), 2);
    assert_eq!(cause_identity(find(&out, "SuccessfulCreate")), Some(find(&out, "ScalingReplicaSet").span_identity()));
    // Bad configuration is refused with the key named.
    let bad = ComponentConfig::from_yaml("causal", "patterns: [{source: x, message: no child, child_kind: Pod, child_api_version: v1, effect: create}]").unwrap();
    let err = Factory.validate(&bad).unwrap_err().to_string();
    assert!(err.contains("patterns") && err.contains("{child}"), "{err}");
}

#[test]
fn what_is_held_and_remembered_stays_bounded() {
    let config = CausalConfig { max_activities: 3, ..CausalConfig::default() };
    let mut placer = CausalPlacer::new(&config).unwrap();
    for i in 0..10 {
        placer.push(event(obj("pods", &format!("p{i}")), i * S, "kubelet", "Pulled", "x"), 0);
    }
    // Nothing is due by time, yet only the bound is held.
    let early = placer.release(0);
    assert_eq!((early.len(), placer.held()), (7, 3));
    assert_eq!(placer.flush().len(), 3);
}
