//! A real kube-apiserver audit log (Metadata level, installing ingress-nginx with helm), read
//! from ../shared/fixtures by path. Each line is an Event; wrapped into EventLists it must decode
//! and map exactly as the raw JSON says.

mod common;

use common::*;
use kausal_core::audit::Stage;
use kausal_receiver_kubeaudit::config::Config;
use kausal_receiver_kubeaudit::decode::decode_body;
use kausal_receiver_kubeaudit::filter::Filter;
use serde_json::Value;

const RECORDING: &str = "../../../shared/fixtures/real/hkerma-perfspec/hkerma-audit-metadata.ingress-nginx.jsonl";

fn recording() -> Vec<Value> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(RECORDING);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("real recording missing at {}: {e}; these tests need ../shared/fixtures", path.display()));
    let lines: Vec<Value> = text
        .lines()
        .enumerate()
        .map(|(i, l)| serde_json::from_str(l).unwrap_or_else(|e| panic!("line {}: {e}", i + 1)))
        .collect();
    assert_eq!(lines.len(), 202, "the recording changed");
    lines
}

fn s<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    path.iter().fold(v, |v, k| &v[*k]).as_str().unwrap_or("")
}

#[test]
fn every_line_decodes_into_one_activity_matching_its_object_ref() {
    let everything = Config {
        stages: vec![Stage::RequestReceived, Stage::ResponseStarted, Stage::ResponseComplete, Stage::Panic],
        exclude_resources: Vec::new(),
        ..Config::default()
    };
    let filter = Filter::new(&everything).unwrap();
    let mut unnamed_creates = 0;
    for (i, line) in recording().into_iter().enumerate() {
        let body = event_list(vec![line.clone()]).to_string();
        let decoded = decode_body(body.as_bytes(), "hkerma", &filter).unwrap_or_else(|e| panic!("line {}: {e}", i + 1));
        assert_eq!(decoded.activities.len(), 1, "line {}: dropped {:?}", i + 1, decoded.dropped);
        let a = &decoded.activities[0];
        let key = &a.object.key;
        let r = &line["objectRef"];
        assert_eq!(
            (key.cluster.as_str(), key.group.as_str(), key.resource.as_str(), key.namespace.as_str()),
            ("hkerma", s(r, &["apiGroup"]), s(r, &["resource"]), s(r, &["namespace"])),
            "line {}",
            i + 1
        );
        if s(r, &["name"]).is_empty() {
            // Metadata level: collection requests and generateName creates have no name anywhere.
            assert_eq!(key.name, "", "line {}", i + 1);
            unnamed_creates += usize::from(s(&line, &["verb"]) == "create");
        } else {
            assert_eq!(key.name, s(r, &["name"]), "line {}", i + 1);
        }
        let x = audit(a);
        assert_eq!(x.audit_id, s(&line, &["auditID"]));
        assert_eq!(x.verb, s(&line, &["verb"]));
        assert_eq!(x.code.map(i64::from), line["responseStatus"]["code"].as_i64(), "line {}", i + 1);
        let received = chrono::DateTime::parse_from_rfc3339(s(&line, &["requestReceivedTimestamp"])).unwrap();
        assert_eq!(a.start, received.timestamp_nanos_opt().unwrap());
        assert!(a.end >= a.start);
        assert!(x.bodies.is_none(), "Metadata level carries no bodies");
        assert!(a.object.kind.is_some(), "line {}: every resource in the recording is built in", i + 1);
    }
    assert_eq!(unnamed_creates, 5, "3 pods and 2 endpointslices created with generateName");
}

#[tokio::test]
async fn the_whole_recording_through_the_webhook_with_default_filters() {
    let lines = recording();
    let kept: Vec<&str> = lines
        .iter()
        .filter(|l| matches!(s(l, &["stage"]), "ResponseComplete" | "Panic"))
        .filter(|l| {
            let (g, r) = (s(l, &["objectRef", "apiGroup"]), s(l, &["objectRef", "resource"]));
            !matches!((g, r), ("", "events") | ("events.k8s.io", "events") | ("coordination.k8s.io", "leases"))
        })
        .map(|l| s(l, &["auditID"]))
        .collect();
    assert!(kept.len() > 100 && kept.len() < 202, "the recording has both kinds: {}", kept.len());

    let r = start("cluster: hkerma\n").await;
    let (status, _, text) = post(&r.url("/audit"), event_list(lines.clone()).to_string()).await;
    assert_eq!(status, 200, "{text}");
    let got = r.collector.activities();
    let ids: Vec<&str> = got.iter().map(|a| audit(a).audit_id.as_str()).collect();
    assert_eq!(ids, kept);
    assert_eq!((r.count("received"), r.count("sent"), r.count("dropped")), (202, kept.len() as u64, 202 - kept.len() as u64));
    assert!(got.iter().all(|a| a.object.key.cluster == "hkerma"));
}
