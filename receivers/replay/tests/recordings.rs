//! Reading recordings as a user hands them in: real kspan captures and must-gather lists,
//! audit logs plain and gzip, and broken files whose errors must say where.

use std::io::Write;
use std::path::{Path, PathBuf};

use kausal_core::activity::ActivityDetail;
use kausal_receiver_replay::{read_bytes, read_file};

fn real(path: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/real").join(path);
    assert!(p.exists(), "recording missing: {} (these tests need ../shared/fixtures/real)", p.display());
    p
}

#[test]
fn kspan_capture_gives_events_and_objects_with_recorder_times() {
    let r = read_file(&real("kspan/deployment-2-pods.yaml"), "kind");
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let events = r.activities.iter().filter(|a| matches!(a.activity.detail, ActivityDetail::Event(_))).count();
    assert_eq!((events, r.activities.len() - events), (19, 7));
    // The scheduler's Scheduled carries a microsecond eventTime, which wins over the recorder.
    let scheduled = r
        .activities
        .iter()
        .find(|a| matches!(&a.activity.detail, ActivityDetail::Event(e) if e.reason == "Scheduled"))
        .unwrap();
    assert_eq!(scheduled.activity.start % 1_000, 0);
    assert_ne!(scheduled.activity.start % 1_000_000_000, 0);
    // Objects carry their controller owner.
    let rs = r.activities.iter().find(|a| a.activity.object.key.resource == "replicasets").unwrap();
    assert_eq!(rs.activity.links[0].peer.key.name, "px");
}

#[test]
fn must_gather_lists_map_new_style_events_and_owners() {
    let dir = real("openshift-must-gather-aws/openshift-apiserver");
    let events = read_file(&dir.join("events.yaml"), "aws");
    assert!(events.errors.is_empty(), "{:?}", events.errors);
    let failed = events
        .activities
        .iter()
        .find(|a| matches!(&a.activity.detail, ActivityDetail::Event(e) if e.reason == "FailedScheduling" && e.source == "default-scheduler"))
        .expect("a FailedScheduling from reportingComponent");
    assert_eq!(failed.activity.object.key.resource, "pods");
    let pods = read_file(&dir.join("pods.yaml"), "aws");
    assert!(pods.errors.is_empty(), "{:?}", pods.errors);
    assert!(pods.activities.iter().all(|a| a.activity.links.iter().any(|l| l.peer.key.resource == "replicasets")));
}

#[test]
fn bad_documents_are_named_and_the_rest_is_read() {
    let text = r#"# {"time":"2021-05-19T09:42:58.640117041Z","style":"event","kind":"Event"}
apiVersion: v1
kind: Event
involvedObject: {apiVersion: v1, kind: Pod, name: a, namespace: ns}
reason: Scheduled
lastTimestamp: "2021-05-19T09:42:58Z"
---
metadata:
  name: no-kind
---
apiVersion: v1
kind: Event
involvedObject: {apiVersion: v1, kind: Pod, name: b, namespace: ns}
reason: NoTime
---
apiVersion: v1
kind: Event
involvedObject: {apiVersion: v1, kind: Pod, name: c, namespace: ns}
reason: Fine
firstTimestamp: "2021-05-19T09:43:00Z"
---
apiVersion: v1
kind: Event
involvedObject: {apiVersion: v1, kind: Pod, name: "d
"#;
    let r = read_bytes("broken.yaml", text.as_bytes(), "c");
    let names: Vec<String> = r.activities.iter().map(|a| a.activity.object.key.name.clone()).collect();
    assert_eq!(names, ["a", "c"]);
    let errors: Vec<String> = r.errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(errors[0].starts_with("broken.yaml: document 2 (line 8): no `kind`"), "{}", errors[0]);
    assert!(errors[1].starts_with("broken.yaml: document 3 (line 11): Event has no timestamp"), "{}", errors[1]);
    assert!(errors[2].starts_with("broken.yaml: document 5 (line 22): not valid YAML"), "{}", errors[2]);
}

const AUDIT: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a1","stage":"ResponseComplete","requestURI":"/apis/apps/v1/namespaces/ns/deployments/web","verb":"patch","user":{"username":"alice"},"objectRef":{"resource":"deployments","namespace":"ns","name":"web","apiGroup":"apps","apiVersion":"v1"},"responseStatus":{"code":200},"requestReceivedTimestamp":"2023-01-27T10:00:00.000000Z","stageTimestamp":"2023-01-27T10:00:00.010000Z"}"#;

#[test]
fn audit_logs_plain_and_gzip_with_bad_lines_named() {
    let text = format!("{AUDIT}\n{{\"kind\":\"Event\",\"auditID\":\n{}\n", AUDIT.replace("a1", "a2"));
    let plain = read_bytes("audit.log", text.as_bytes(), "c");
    assert_eq!(plain.activities.len(), 2);
    assert_eq!(plain.errors.len(), 1);
    assert!(plain.errors[0].to_string().starts_with("audit.log: line 2: not an audit event"), "{}", plain.errors[0]);

    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(text.as_bytes()).unwrap();
    let bytes = gz.finish().unwrap();
    let zipped = read_bytes("audit.log.gz", &bytes, "c");
    assert_eq!(zipped.activities.len(), 2);
    // A gzip file cut short keeps what came before the cut and says so.
    let cut = read_bytes("cut.log.gz", &bytes[..bytes.len() - 12], "c");
    assert!(cut.errors.iter().any(|e| e.location == "gzip stream"), "{:?}", cut.errors);
}

#[test]
fn real_gzip_audit_log_reads_without_errors() {
    let r = read_file(&real("hkerma-perfspec/hkerma-audit-metadata.jsonl.gz"), "h");
    assert!(r.activities.len() > 1_000);
    // Requests about collections (list/watch) name no object; each is reported, none panics.
    assert!(r.errors.iter().all(|e| e.message.contains("objectRef")), "{:?}", r.errors.iter().find(|e| !e.message.contains("objectRef")));
}

#[test]
fn kubectl_json_lists_and_unknown_built_in_kinds() {
    let list = serde_json::json!({
        "apiVersion": "v1", "kind": "List",
        "items": [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web-1", "namespace": "ns", "creationTimestamp": "2024-01-01T00:00:00Z",
             "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "u1", "controller": true}]}},
            {"apiVersion": "apps/v1", "kind": "Deploymnet", "metadata": {"name": "typo", "namespace": "ns", "creationTimestamp": "2024-01-01T00:00:00Z"}},
            {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "namespace": "ns", "creationTimestamp": "2024-01-01T00:00:00Z"}}
        ]
    });
    let text = serde_json::to_string_pretty(&list).unwrap();
    let r = read_bytes("list.json", text.as_bytes(), "c");
    let names: Vec<&str> = r.activities.iter().map(|a| a.activity.object.key.name.as_str()).collect();
    assert_eq!(names, ["web-1", "w"]);
    assert_eq!(r.activities[0].activity.links[0].peer.key.name, "web");
    assert_eq!(r.errors.len(), 1, "{:?}", r.errors);
    assert_eq!(
        r.errors[0].to_string(),
        "list.json: item 2 of document 1 (line 1): unknown kind \"Deploymnet\" in apiVersion \"apps/v1\" (a built-in API group has no such kind)"
    );
}

#[test]
fn listed_objects_are_fed_first_across_files() {
    let dir = real("openshift-must-gather-aws/openshift-apiserver");
    let files: Vec<PathBuf> = ["events.yaml", "pods.yaml", "replicasets.yaml", "deployments.yaml"].iter().map(|f| dir.join(f)).collect();
    let all = kausal_receiver_replay::read_all(&files, "aws");
    assert!(all.errors.is_empty(), "{:?}", all.errors);
    let first_event = all.activities.iter().position(|r| matches!(r.activity.detail, ActivityDetail::Event(_))).unwrap();
    let objects = all.activities.iter().filter(|r| !matches!(r.activity.detail, ActivityDetail::Event(_))).count();
    assert_eq!(first_event, objects, "every listed object comes before the first Event");
    // ... at the recording's first moment, keeping their own times as activity times.
    let t0 = all.activities[first_event].at;
    assert!(all.activities[..objects].iter().all(|r| r.at == t0 && r.activity.start >= t0));
}
