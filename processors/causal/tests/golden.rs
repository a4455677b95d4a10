//! Golden tests over kspan's real captures (../shared/fixtures/real/kspan): the causal tree of
//! each scenario, in recorded order and in seeded shuffles, must be the reviewed tree in
//! tests/golden/, with every pod's Events under the report that created (or deleted) it and
//! every scale-down deletion under the ScalingReplicaSet that caused it.

use std::path::{Path, PathBuf};

use kausal_core::activity::{Activity, ActivityDetail, Cause};
use kausal_processor_causal::{CausalConfig, CausalPlacer, dump};
use kausal_receiver_replay::read_bytes;
use rand::SeedableRng;
use rand::seq::SliceRandom;

fn fixtures() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/real/kspan");
    assert!(dir.is_dir(), "the kspan recordings are missing: expected them in {} (a checkout without ../shared cannot run these tests)", dir.display());
    dir
}

fn read(file: &str, text: &str) -> Vec<Activity> {
    let r = read_bytes(file, text.as_bytes(), "kind");
    assert!(r.errors.is_empty(), "{file}: {:?}", r.errors);
    r.activities.into_iter().map(|r| r.activity).collect()
}

/// The documents of fixtures_test-extracted.yaml whose `# source var:` is one of `vars`
/// (a name, or a prefix ending in `[`).
fn scenario(vars: &[&str]) -> Vec<Activity> {
    let text = std::fs::read_to_string(fixtures().join("fixtures_test-extracted.yaml")).unwrap();
    let docs: Vec<&str> = text
        .split("\n---\n")
        .filter(|d| {
            d.lines().find_map(|l| l.strip_prefix("# source var: ")).is_some_and(|v| {
                vars.iter().any(|want| if want.ends_with('[') { v.starts_with(want) } else { v == *want })
            })
        })
        .collect();
    assert!(!docs.is_empty(), "no documents for {vars:?}");
    read("fixtures_test-extracted.yaml", &docs.join("\n---\n"))
}

fn deployment_2_pods() -> Vec<Activity> {
    let text = std::fs::read_to_string(fixtures().join("deployment-2-pods.yaml")).unwrap();
    read("deployment-2-pods.yaml", &text)
}

fn scenarios() -> Vec<(&'static str, Vec<Activity>)> {
    vec![
        ("deployment-2-pods", deployment_2_pods()),
        (
            "kubectl-rollout",
            scenario(&["deploy1str", "replicaSet1str", "replicaSet2str", "pod1str", "pod0str", "deploymentUpdateEvents["]),
        ),
        (
            "flux-deployment",
            scenario(&["fluxDeploymentStr", "fluxReplicaSet1astr", "fluxReplicaSet1bstr", "fluxPod1astr", "fluxDeploymentUpdateEvents["]),
        ),
        ("flux-statefulset", scenario(&["sts1str", "stsUpdateEvents["])),
    ]
}

/// Everything arrives at once, then is placed.
fn place_all(activities: &[Activity]) -> Vec<Activity> {
    let mut placer = CausalPlacer::new(&CausalConfig::default()).unwrap();
    for a in activities {
        placer.push(a.clone(), 0);
    }
    placer.flush()
}

/// Arrivals one second apart, released as the 5 s buffer allows, the rest flushed at the end.
fn place_streaming(activities: &[Activity]) -> Vec<Activity> {
    let mut placer = CausalPlacer::new(&CausalConfig::default()).unwrap();
    let mut out = Vec::new();
    for (i, a) in activities.iter().enumerate() {
        let now = i as i64 * 1_000_000_000;
        placer.push(a.clone(), now);
        out.extend(placer.release(now));
    }
    out.extend(placer.flush());
    out
}

fn golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(format!("{name}.txt"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
    assert_eq!(actual, expected, "causal tree of {name} differs from {}", path.display());
}

fn event(a: &Activity) -> Option<&kausal_core::activity::EventActivity> {
    match &a.detail {
        ActivityDetail::Event(e) => Some(e),
        _ => None,
    }
}

fn cause_of<'a>(placed: &'a [Activity], a: &Activity) -> Option<&'a Activity> {
    let Some(Cause::Activity { object, identity, .. }) = &a.cause else { return None };
    placed.iter().find(|p| p.object.key == object.key && &p.span_identity() == identity)
}

/// The properties the issue asks for, checked on the activities rather than the text.
fn check_placement(name: &str, placed: &[Activity]) {
    let events: Vec<&Activity> = placed.iter().filter(|a| event(a).is_some()).collect();
    assert!(!events.is_empty());
    for a in &events {
        let e = event(a).unwrap();
        let cause = cause_of(placed, a);
        if a.object.key.resource == "pods" {
            let cause = cause.unwrap_or_else(|| panic!("{name}: pod Event {} {:?} has no cause", e.reason, e.message));
            let ce = event(cause).unwrap_or_else(|| panic!("{name}: pod Event {} is under a non-Event", e.reason));
            let verb = if e.reason == "Killing" { ["Deleted pod", "delete Pod"] } else { ["Created pod", "create Pod"] };
            assert!(
                verb.iter().any(|v| ce.message.starts_with(v)) && ce.message.contains(&a.object.key.name),
                "{name}: pod Event {} on {} is under {:?}",
                e.reason,
                a.object.key.name,
                ce.message
            );
        }
        if a.object.key.resource == "replicasets" {
            let ce = cause.and_then(event).unwrap_or_else(|| panic!("{name}: ReplicaSet Event {:?} has no Event cause", e.message));
            let scaled = if e.reason == "SuccessfulDelete" { "Scaled down replica set " } else { "Scaled up replica set " };
            assert!(
                ce.message.starts_with(scaled) && ce.message.contains(&a.object.key.name),
                "{name}: {:?} is under {:?}",
                e.message,
                ce.message
            );
        }
    }
    // Every Event is in the tree (shown once), whatever its depth.
    let text = dump(placed);
    assert_eq!(text.lines().filter(|l| !l.starts_with('#')).count(), placed.iter().filter(|a| !kausal_processor_causal::dump::is_observation(a)).count());
}

#[test]
fn recorded_order_gives_the_reviewed_trees() {
    for (name, activities) in scenarios() {
        let placed = place_all(&activities);
        check_placement(name, &placed);
        golden(name, &dump(&placed));
    }
}

#[test]
fn shuffled_arrival_gives_the_same_trees() {
    for (name, activities) in scenarios() {
        let expected = dump(&place_all(&activities));
        for seed in [1u64, 7, 42, 1234, 99999] {
            let mut shuffled = activities.clone();
            shuffled.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
            let placed = place_all(&shuffled);
            check_placement(name, &placed);
            assert_eq!(dump(&placed), expected, "{name}, shuffle seed {seed}");
        }
    }
}

#[test]
fn late_arrivals_within_the_buffer_are_placed_as_if_in_order() {
    for (name, activities) in scenarios() {
        let expected = dump(&place_all(&activities));
        for seed in [3u64, 5, 11] {
            // Shuffled in runs of three: two activities end up at most four places (four
            // seconds, at one a second) from where they were relative to each other, within
            // the 5 s buffer.
            let mut shuffled = activities.clone();
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            for chunk in shuffled.chunks_mut(3) {
                chunk.shuffle(&mut rng);
            }
            let placed = place_streaming(&shuffled);
            assert_eq!(placed.len(), place_all(&activities).len(), "{name}, streaming seed {seed}:\n{}", dump(&placed));
            assert_eq!(dump(&placed), expected, "{name}, streaming seed {seed}");
        }
    }
}


#[test]
fn openshift_revision_3_pods_wait_from_failed_scheduling_until_scheduled() {
    let dir = fixtures().join("../openshift-must-gather-aws/openshift-apiserver");
    let mut activities = Vec::new();
    for f in ["events.yaml", "deployments.yaml", "replicasets.yaml", "pods.yaml"] {
        let r = kausal_receiver_replay::read_file(&dir.join(f), "aws");
        assert!(r.errors.is_empty(), "{f}: {:?}", r.errors);
        activities.extend(r.activities.into_iter().map(|r| r.activity));
    }
    let placed = place_all(&activities);
    check_placement("openshift", &placed);
    let creations: Vec<&Activity> = placed
        .iter()
        .filter(|a| event(a).is_some_and(|e| e.message.starts_with("Created pod: apiserver-5647477f76-")))
        .collect();
    assert_eq!(creations.len(), 3);
    for created in creations {
        let pod = event(created).unwrap().message.trim_start_matches("Created pod: ").to_string();
        let under: Vec<&Activity> = placed
            .iter()
            .filter(|a| a.object.key.name == pod && cause_of(&placed, a).is_some_and(|c| c.span_identity() == created.span_identity()))
            .collect();
        let scheduled = under.iter().find(|a| event(a).unwrap().reason == "Scheduled").unwrap_or_else(|| panic!("{pod}: no Scheduled"));
        let waits: Vec<&&Activity> = under.iter().filter(|a| event(a).unwrap().reason == "FailedScheduling").collect();
        assert!(!waits.is_empty(), "{pod}: no FailedScheduling");
        let last = waits.iter().max_by_key(|a| a.start).unwrap();
        assert_eq!(last.end, scheduled.start, "{pod}: the last FailedScheduling lasts until Scheduled");
        assert!(waits.iter().all(|w| w.start < scheduled.start));
    }
}
