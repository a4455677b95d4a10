//! Fidelity: the `rollout` scenario's Events and objects compared structurally with a real
//! rolling update recorded on kind (`shared/fixtures/real/kspan/deployment-2-pods.yaml`): the
//! same Event reasons, source components, message shapes, involvedObject kinds, field paths,
//! timestamp precision per source, ownerReference fields and controller annotations. The
//! fixture must be present; without it this test fails.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use kausal_sim::client::{ListParams, resources};
use kausal_sim::cluster::SimCluster;
use kausal_sim::controllers::KubeletTiming;
use kausal_sim::scenario::{self, Action, Scenario};
use serde_json::Value;

fn fixture_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/real/kspan/deployment-2-pods.yaml")
}

fn load_fixture() -> Result<Vec<Value>> {
    let path = fixture_path();
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("the fidelity fixture {} is missing; it is required for this test", path.display()))?;
    let docs: Vec<Value> = serde_saphyr::from_str_multiple(&text).with_context(|| format!("parsing {}", path.display()))?;
    let docs: Vec<Value> = docs.into_iter().filter(|d| d.is_object()).collect();
    if docs.is_empty() {
        bail!("the fidelity fixture {} holds no objects", path.display());
    }
    Ok(docs)
}

/// A message with its variable parts (names, numbers, images, durations, container names)
/// replaced by `X`.
fn message_shape(message: &str) -> String {
    let mut previous = "";
    let mut out = Vec::new();
    for w in message.split(' ') {
        let variable = previous == "container" || w.chars().any(|c| c.is_ascii_digit() || c == '-' || c == '/' || c == '"');
        out.push(if variable { "X" } else { w });
        previous = w;
    }
    out.join(" ")
}

/// Which component wrote an Event: `source.component`, else `reportingComponent`.
fn component(e: &Value) -> String {
    e["source"]["component"].as_str().filter(|s| !s.is_empty()).or_else(|| e["reportingComponent"].as_str()).unwrap_or_default().to_string()
}

fn is_seconds(v: &Value) -> bool {
    v.as_str().is_some_and(|s| s.len() == 20 && s.ends_with('Z') && !s.contains('.'))
}

fn is_micros(v: &Value) -> bool {
    v.as_str().is_some_and(|s| s.ends_with('Z') && s.split('.').nth(1).is_some_and(|f| f.len() == 7))
}

/// How an Event stamps time: `seconds` (first/lastTimestamp) or `micros` (eventTime).
fn precision(e: &Value) -> &'static str {
    if is_micros(&e["eventTime"]) && e["firstTimestamp"].is_null() {
        "micros"
    } else if is_seconds(&e["firstTimestamp"]) && is_seconds(&e["lastTimestamp"]) && e["eventTime"].is_null() {
        "seconds"
    } else {
        "other"
    }
}

#[derive(Debug, Default)]
struct ReasonProfile {
    components: BTreeSet<String>,
    kinds: BTreeSet<String>,
    shapes: BTreeSet<String>,
    precisions: BTreeSet<&'static str>,
    field_path: BTreeSet<bool>,
    host: BTreeSet<bool>,
}

fn profile(events: &[&Value]) -> BTreeMap<String, ReasonProfile> {
    let mut out: BTreeMap<String, ReasonProfile> = BTreeMap::new();
    for e in events {
        let p = out.entry(e["reason"].as_str().unwrap_or_default().to_string()).or_default();
        p.components.insert(component(e));
        p.kinds.insert(e["involvedObject"]["kind"].as_str().unwrap_or_default().to_string());
        p.shapes.insert(message_shape(e["message"].as_str().unwrap_or_default()));
        p.precisions.insert(precision(e));
        p.field_path.insert(e["involvedObject"]["fieldPath"].is_string());
        p.host.insert(e["source"]["host"].is_string());
    }
    out
}

fn owner_reference_fields(o: &Value) -> Vec<(String, BTreeSet<String>)> {
    o["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| (r["kind"].as_str().unwrap_or_default().to_string(), r.as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default()))
        .collect()
}

fn annotation_keys(o: &Value) -> BTreeSet<String> {
    o["metadata"]["annotations"].as_object().map(|m| m.keys().filter(|k| k.starts_with("deployment.kubernetes.io/")).cloned().collect()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_matches_a_real_rolling_update() -> Result<()> {
    let fixture = load_fixture()?;
    let rollout = scenario::builtin("rollout").context("the rollout built-in")?;
    let delete_at = rollout.steps.iter().position(|s| matches!(s.action, Action::Delete { .. })).context("rollout deletes the deployment")?;
    let before_delete = Scenario { steps: rollout.steps[..delete_at].to_vec(), ..rollout.clone() };
    let the_delete = Scenario { steps: rollout.steps[delete_at..].to_vec(), ..rollout.clone() };

    let timing = KubeletTiming { image_pull: Duration::from_millis(300), ..KubeletTiming::default() };
    let cluster = SimCluster::builder().nodes(1).kubelet_timing(timing).start().await?;
    let admin = cluster.admin_client();
    let run = async {
        cluster.run_scenario(&before_delete).await?;
        let replica_sets = admin.list(&resources::REPLICASETS, Some("default"), &ListParams::default()).await?.items;
        let pods = admin.list(&resources::PODS, Some("default"), &ListParams::default()).await?.items;
        cluster.run_scenario(&the_delete).await?;
        let events = admin.list(&resources::EVENTS, Some("default"), &ListParams::default()).await?.items;
        anyhow::Ok((replica_sets, pods, events))
    };
    let outcome = tokio::time::timeout(Duration::from_secs(180), run).await;
    cluster.shutdown().await;
    let (replica_sets, pods, events) = outcome.context("the rollout timed out")??;

    // Events: every reason of the real recording, written the same way.
    let real_events: Vec<&Value> = fixture.iter().filter(|d| d["kind"] == "Event").collect();
    let sim_events: Vec<&Value> = events.iter().collect();
    let real = profile(&real_events);
    let sim = profile(&sim_events);
    for (reason, want) in &real {
        let got = sim.get(reason).with_context(|| format!("the simulator wrote no {reason} Event"))?;
        assert_eq!(got.components, want.components, "{reason}: source components");
        assert_eq!(got.kinds, want.kinds, "{reason}: involvedObject kinds");
        assert_eq!(got.precisions, want.precisions, "{reason}: timestamp precision");
        assert_eq!(got.field_path, want.field_path, "{reason}: involvedObject.fieldPath");
        assert_eq!(got.host, want.host, "{reason}: source.host");
        // Newer kubelets append to some messages (`(… including waiting)`), so a simulated
        // message must start like one of the recorded shapes.
        for shape in &got.shapes {
            assert!(want.shapes.iter().any(|w| shape.starts_with(w.as_str())), "{reason}: message shape {shape:?} is not one of {:?}", want.shapes);
        }
    }

    // Objects: ReplicaSets owned by the Deployment, pods by their ReplicaSet, same fields.
    for kind in ["ReplicaSet", "Pod"] {
        let real_refs: BTreeSet<(String, BTreeSet<String>)> =
            fixture.iter().filter(|d| d["kind"] == kind).flat_map(owner_reference_fields).collect();
        let sim_objects: Vec<&Value> = if kind == "ReplicaSet" { replica_sets.iter().collect() } else { pods.iter().collect() };
        assert!(!sim_objects.is_empty(), "the rollout left no {kind}");
        for o in sim_objects {
            let refs: BTreeSet<(String, BTreeSet<String>)> = owner_reference_fields(o).into_iter().collect();
            assert_eq!(refs, real_refs, "{kind} {}: ownerReferences", o["metadata"]["name"]);
        }
    }
    let real_rs_annotations: BTreeSet<String> = fixture.iter().filter(|d| d["kind"] == "ReplicaSet").flat_map(annotation_keys).collect();
    for rs in &replica_sets {
        assert_eq!(annotation_keys(rs), real_rs_annotations, "ReplicaSet {} annotations", rs["metadata"]["name"]);
        let hash = rs["metadata"]["labels"]["pod-template-hash"].as_str().context("pod-template-hash label")?;
        assert_eq!(rs["metadata"]["name"].as_str(), Some(format!("demo-{hash}").as_str()));
    }
    let real_deploy_conditions: BTreeSet<String> = fixture
        .iter()
        .filter(|d| d["kind"] == "Deployment")
        .flat_map(|d| d["status"]["conditions"].as_array().cloned().unwrap_or_default())
        .filter_map(|c| c["type"].as_str().map(str::to_string))
        .collect();
    assert_eq!(real_deploy_conditions, BTreeSet::from(["Available".to_string(), "Progressing".to_string()]));
    Ok(())
}

#[test]
fn message_shapes_hide_names_and_numbers() {
    assert_eq!(message_shape("Scaled up replica set px-5d567cc74c to 1"), "Scaled up replica set X to X");
    assert_eq!(message_shape("Pulling image \"alpine:3.16\""), "Pulling image X");
    assert_eq!(message_shape("Created container podinfo"), "Created container X");
}
