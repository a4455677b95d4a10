//! The webhook as kube-apiserver (or anyone) sees it over HTTP.

mod common;

use std::time::Duration;

use common::*;
use kausal_core::ObjectKey;
use kausal_core::component::{Component, Host};
use serde_json::json;

#[tokio::test]
async fn valid_list_is_acknowledged_after_the_pipeline_took_every_activity() {
    let r = start("").await;
    let mut failed = event("a2", "update", "apps/deployments", "shop", "web");
    failed["objectRef"]["subresource"] = "status".into();
    failed["objectRef"]["resourceVersion"] = "41".into();
    failed["requestURI"] = "/apis/apps/v1/namespaces/shop/deployments/web/status".into();
    failed["responseStatus"] = json!({"metadata": {}, "status": "Failure", "reason": "Conflict",
        "message": "Operation cannot be fulfilled", "code": 409});
    let body = event_list(vec![event("a1", "get", "pods", "shop", "web-1"), failed, event("a3", "get", "nodes", "", "node-1")]);
    let (status, _, text) = post(&r.url("/audit"), body.to_string()).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("accepted 3 of 3"), "{text}");

    let got = r.collector.activities();
    assert_eq!(got.len(), 3);
    assert_eq!(*r.collector.calls.lock().unwrap(), 1, "one batch per request");
    let pod = &got[0];
    assert_eq!(pod.object.key, ObjectKey::new("default", "", "pods", "shop", "web-1"));
    assert_eq!((pod.object.kind.as_deref(), pod.object.api_version.as_deref()), (Some("Pod"), Some("v1")));
    let t0 = chrono::DateTime::parse_from_rfc3339("2024-05-01T10:00:00.100Z").unwrap().timestamp_nanos_opt().unwrap();
    assert_eq!((pod.start, pod.end), (t0, t0 + 150_000_000));
    let a = audit(pod);
    assert_eq!((a.audit_id.as_str(), a.verb.as_str(), a.code), ("a1", "get", Some(200)));
    assert_eq!(a.user.username, "system:serviceaccount:kube-system:deployment-controller");
    assert_eq!(a.source_ips, ["10.0.0.5"]);
    assert!(a.user_agent.starts_with("kube-controller-manager/"));
    assert_eq!(a.annotations["authorization.k8s.io/decision"], "allow");

    let deploy = &got[1];
    assert_eq!(deploy.object.key, ObjectKey::new("default", "apps", "deployments", "shop", "web"));
    assert_eq!(deploy.object.kind.as_deref(), Some("Deployment"));
    let d = audit(deploy);
    assert_eq!((d.subresource.as_str(), d.request_resource_version.as_str()), ("status", "41"));
    assert_eq!((d.code, d.reason.as_str(), d.message.as_str()), (Some(409), "Conflict", "Operation cannot be fulfilled"));

    assert_eq!(got[2].object.key, ObjectKey::new("default", "", "nodes", "", "node-1"));
    assert_eq!((r.count("received"), r.count("sent"), r.count("dropped"), r.count("failed")), (3, 3, 0, 0));
    r.receiver.shutdown().await.unwrap();
}

#[tokio::test]
async fn cluster_comes_from_path_then_setting_then_source_address() {
    let by_source = start("clusters_by_source:\n  \"127.0.0.0/8\": loopback\n  \"10.0.0.0/8\": tens\n").await;
    let body = event_list(vec![event("a", "get", "pods", "ns", "p")]).to_string();
    assert_eq!(post(&by_source.url("/audit"), body.clone()).await.0, 200);
    assert_eq!(post(&by_source.url("/audit/east-1"), body.clone()).await.0, 200);
    let clusters: Vec<String> = by_source.collector.activities().iter().map(|a| a.object.key.cluster.clone()).collect();
    assert_eq!(clusters, ["loopback", "east-1"]);

    let fixed = start("cluster: prod\nclusters_by_source: {\"127.0.0.1\": loopback}\n").await;
    assert_eq!(post(&fixed.url("/audit"), body.clone()).await.0, 200);
    assert_eq!(post(&fixed.url("/audit/west"), body.clone()).await.0, 200);
    let clusters: Vec<String> = fixed.collector.activities().iter().map(|a| a.object.key.cluster.clone()).collect();
    assert_eq!(clusters, ["prod", "west"]);

    let (status, _, text) = post(&fixed.url("/audit/bad%20name"), body).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("invalid cluster name"), "{text}");
}

#[tokio::test]
async fn bad_bodies_are_refused_with_a_reason_and_never_reach_the_pipeline() {
    let r = start("max_body_size: 4KiB\n").await;
    let good = event_list(vec![event("ok", "get", "pods", "ns", "p")]).to_string();

    let malformed = "{\"kind\":\"EventList\",\"apiVersion\":\"audit.k8s.io/v1\",\"items\":[\n  {\"level\": }]}";
    let (status, _, text) = post(&r.url("/audit"), malformed).await;
    assert_eq!(status, 400);
    assert!(text.contains("line 2, column 13"), "{text}");
    let status_body: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!((status_body["kind"].as_str(), status_body["code"].as_u64()), (Some("Status"), Some(400)));

    let (status, _, text) = post(&r.url("/audit"), json!({"kind": "PodList", "items": []}).to_string()).await;
    assert_eq!(status, 400);
    assert!(text.contains("PodList"), "{text}");

    let wrong_version = json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v2", "items": []});
    let (status, _, text) = post(&r.url("/audit"), wrong_version.to_string()).await;
    assert_eq!(status, 400);
    assert!(text.contains("audit.k8s.io/v2"), "{text}");

    let many: Vec<_> = (0..40).map(|i| event(&format!("big{i}"), "get", "pods", "ns", "p")).collect();
    let (status, _, text) = post(&r.url("/audit"), event_list(many).to_string()).await;
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("4096 bytes"), "{text}");

    let (status, _, _) = post(&r.url("/audit"), "").await;
    assert_eq!(status, 400, "an empty body is not an EventList");

    let wrong_type = client().post(r.url("/audit")).header("content-type", "text/plain").body(good.clone()).send().await.unwrap();
    assert_eq!(wrong_type.status().as_u16(), 415);
    let gz = client()
        .post(r.url("/audit"))
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(good.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(gz.status().as_u16(), 415);

    assert_eq!(*r.collector.calls.lock().unwrap(), 0, "nothing from a refused request is passed on");
    assert_eq!(r.count("received"), 0);

    // Still serving.
    let (status, _, text) = post(&r.url("/audit"), good).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(r.collector.activities().len(), 1);
}

#[tokio::test]
async fn oversized_chunked_bodies_are_cut_off_with_413() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let r = start("max_body_size: 1KiB\n").await;
    let mut conn = tokio::net::TcpStream::connect(r.addr).await.unwrap();
    let head = "POST /audit HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
    conn.write_all(head.as_bytes()).await.unwrap();
    let chunk = format!("400\r\n{}\r\n", "x".repeat(0x400));
    for _ in 0..3 {
        // The server may answer and close before every chunk is written.
        if conn.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let _ = conn.write_all(b"0\r\n\r\n").await;
    let mut answer = vec![0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut answer)).await.unwrap().unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert_eq!(*r.collector.calls.lock().unwrap(), 0);
}

#[tokio::test]
async fn a_full_pipeline_gets_429_with_retry_after_and_a_permanent_refusal_400() {
    let r = start("").await;
    let body = event_list(vec![event("a", "get", "pods", "ns", "p"), event("b", "get", "pods", "ns", "q")]).to_string();

    r.collector.set_mode(Mode::Full { retry_after: Some(Duration::from_secs(3)) });
    let (status, headers, text) = post(&r.url("/audit"), body.clone()).await;
    assert_eq!(status, 429, "{text}");
    assert_eq!(headers["retry-after"], "3");
    let s: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(s["details"]["retryAfterSeconds"], 3);

    r.collector.set_mode(Mode::Full { retry_after: None });
    let (status, headers, _) = post(&r.url("/audit"), body.clone()).await;
    assert_eq!((status, headers["retry-after"].to_str().unwrap()), (429, "1"));

    r.collector.set_mode(Mode::Reject);
    let (status, _, text) = post(&r.url("/audit"), body.clone()).await;
    assert_eq!(status, 400);
    assert!(text.contains("not for this pipeline"), "{text}");
    assert!(r.collector.activities().is_empty());
    assert_eq!(r.count("failed"), 6);

    r.collector.set_mode(Mode::Accept);
    assert_eq!(post(&r.url("/audit"), body).await.0, 200);
    assert_eq!(r.collector.activities().len(), 2);
    assert_eq!((r.count("received"), r.count("sent")), (8, 2));
}

#[tokio::test]
async fn bearer_token_is_required_when_configured() {
    let r = start("bearer_token: s3cret\n").await;
    let body = event_list(vec![event("a", "get", "pods", "ns", "p")]).to_string();
    let (status, headers, _) = post(&r.url("/audit"), body.clone()).await;
    assert_eq!(status, 401);
    assert_eq!(headers["www-authenticate"], "Bearer");
    let send = |token: &'static str| {
        client()
            .post(r.url("/audit"))
            .header("content-type", "application/json")
            .bearer_auth(token)
            .body(body.clone())
            .send()
    };
    assert_eq!(send("wrong").await.unwrap().status().as_u16(), 401);
    assert_eq!(send("s3cret").await.unwrap().status().as_u16(), 200);
    assert_eq!(r.collector.activities().len(), 1);

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "from-file\n").unwrap();
    let r = start(&format!("bearer_token_file: {}\n", file.display())).await;
    let ok = client()
        .post(r.url("/audit"))
        .bearer_auth("from-file")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status().as_u16(), 200, "no Content-Type header is accepted too");
    assert_eq!(post(&r.url("/audit"), body).await.0, 401);
}

#[tokio::test]
async fn default_filters_drop_events_leases_and_early_stages() {
    let r = start("").await;
    let mut received = event("rr", "get", "pods", "ns", "p");
    received["stage"] = "RequestReceived".into();
    let mut panic = event("pa", "get", "pods", "ns", "p");
    panic["stage"] = "Panic".into();
    let mut health = event("hz", "get", "pods", "", "");
    health.as_object_mut().unwrap().remove("objectRef");
    health["requestURI"] = "/healthz".into();
    let body = event_list(vec![
        event("ev", "create", "events", "ns", "e1"),
        event("ev2", "create", "events.k8s.io/events", "ns", "e2"),
        event("le", "update", "coordination.k8s.io/leases", "kube-system", "kube-scheduler"),
        received,
        panic,
        health,
        event("ok", "update", "apps/deployments", "ns", "d"),
    ]);
    let (status, _, text) = post(&r.url("/audit"), body.to_string()).await;
    assert_eq!(status, 200, "{text}");
    let ids: Vec<String> = r.collector.activities().iter().map(|a| audit(a).audit_id.clone()).collect();
    assert_eq!(ids, ["pa", "ok"]);
    assert_eq!((r.count("received"), r.count("sent"), r.count("dropped")), (7, 2, 5));
}

#[tokio::test]
async fn configured_filters_select_stages_verbs_users_and_agents() {
    let r = start(
        "stages: [RequestReceived]\nexclude_resources: []\nverbs: [create, update]\nexclude_users: [\"system:node:*\"]\nuser_agents: [kubectl/]\n",
    )
    .await;
    let make = |id: &str, verb: &str, user: &str, agent: &str| {
        let mut e = event(id, verb, "events", "ns", "e");
        e["stage"] = "RequestReceived".into();
        e["user"]["username"] = user.into();
        e["userAgent"] = agent.into();
        e
    };
    let mut complete = make("done", "create", "alice", "kubectl/v1.31");
    complete["stage"] = "ResponseComplete".into();
    let body = event_list(vec![
        make("keep", "create", "alice", "kubectl/v1.31.0 (linux/amd64)"),
        make("verb", "get", "alice", "kubectl/v1.31.0"),
        make("user", "update", "system:node:n1", "kubectl/v1.31.0"),
        make("agent", "update", "alice", "curl/8.0"),
        complete,
    ]);
    assert_eq!(post(&r.url("/audit"), body.to_string()).await.0, 200);
    let ids: Vec<String> = r.collector.activities().iter().map(|a| audit(a).audit_id.clone()).collect();
    assert_eq!(ids, ["keep"]);
}

#[tokio::test]
async fn only_post_on_the_audit_paths_is_served() {
    let r = start("").await;
    let get = client().get(r.url("/audit")).send().await.unwrap();
    assert_eq!(get.status().as_u16(), 405);
    let other = client().post(r.url("/elsewhere")).body("{}").send().await.unwrap();
    assert_eq!(other.status().as_u16(), 404);
}

#[tokio::test]
async fn shutdown_finishes_in_flight_requests_and_stops_accepting() {
    let r = start("").await;
    let gate = std::sync::Arc::new(tokio::sync::Notify::new());
    *r.collector.gate.lock().unwrap() = Some(gate.clone());
    let url = r.url("/audit");
    let body = event_list(vec![event("a", "get", "pods", "ns", "p")]).to_string();
    let in_flight = tokio::spawn(async move { post(&url, body).await });
    r.collector.entered.notified().await;

    let receiver = r.receiver.clone();
    let stopping = tokio::spawn(async move { receiver.shutdown().await });
    // The listener closes while the request is still held by the pipeline.
    let mut refused = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(r.addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused, "new connections are refused during shutdown");
    assert!(!stopping.is_finished(), "shutdown waits for the request in flight");

    gate.notify_one();
    let (status, _, text) = in_flight.await.unwrap();
    assert_eq!(status, 200, "{text}");
    stopping.await.unwrap().unwrap();
    assert_eq!(r.collector.activities().len(), 1);
    r.receiver.shutdown().await.unwrap();
}

#[tokio::test]
async fn lifecycle_edges() {
    let collector = Collector::new();
    let (never_started, _) = receiver("endpoint: 127.0.0.1:0\n", collector.clone());
    never_started.shutdown().await.unwrap();
    never_started.shutdown().await.unwrap();
    assert!(never_started.local_addr().is_none());

    let r = start("").await;
    let taken = r.addr;
    let (clash, _) = receiver(&format!("endpoint: {taken}\n"), collector);
    let err = clash.start(&Host::default()).await.unwrap_err().to_string();
    assert!(err.contains(&taken.to_string()), "{err}");
    r.receiver.shutdown().await.unwrap();
    r.receiver.shutdown().await.unwrap();
}

#[tokio::test]
async fn factory_registers_kubeaudit_producing_activities() {
    use kausal_core::component::ReceiverFactory;
    use kausal_core::config::ComponentConfig;
    let f = kausal_receiver_kubeaudit::Factory;
    assert_eq!(f.type_name(), "kubeaudit");
    assert_eq!(f.output(), kausal_core::DataKind::Activities);
    assert!(!f.description().is_empty());
    f.validate(&ComponentConfig::from_yaml("kubeaudit", "endpoint: 0.0.0.0:9443\n").unwrap()).unwrap();
    let err = f
        .validate(&ComponentConfig::from_yaml("kubeaudit", "endpont: 0.0.0.0:9443\n").unwrap())
        .unwrap_err();
    assert_eq!(err.path, "kubeaudit.endpont");
    let missing = ComponentConfig::from_yaml("kubeaudit", "tls: {cert_file: /nonexistent/c.pem, key_file: /nonexistent/k.pem}\n").unwrap();
    let telemetry = kausal_core::telemetry::Telemetry::default();
    let ctx = kausal_core::component::CreateContext {
        id: kausal_core::ComponentId::parse("kubeaudit").unwrap(),
        metrics: telemetry.component("receiver", "kubeaudit"),
        telemetry,
    };
    let err = f.create(ctx, &missing, Collector::new()).err().unwrap();
    assert_eq!(err.path, "kubeaudit.tls.cert_file");
    assert!(err.message.contains("/nonexistent/c.pem"), "{err}");
}
