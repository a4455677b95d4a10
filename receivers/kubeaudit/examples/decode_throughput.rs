//! Prints how many audit events per second one core turns from webhook bodies into activities
//! (decode + filter + map), for Metadata-level events and for RequestResponse events with
//! Pod-sized bodies. A quick check of the decode path only; the end-to-end figures are
//! `bench/`'s job. Run: `cargo run -p kausal-receiver-kubeaudit --example decode_throughput`.

use std::time::Instant;

use kausal_receiver_kubeaudit::config::Config;
use kausal_receiver_kubeaudit::decode::decode_body;
use kausal_receiver_kubeaudit::filter::Filter;
use serde_json::{Value, json};

fn pod(name: &str, rv: u64) -> Value {
    let containers: Vec<Value> = (0..2)
        .map(|c| {
            let env: Vec<Value> = (0..8).map(|i| json!({"name": format!("ENV_{i}"), "value": format!("value-{i}-{name}")})).collect();
            json!({
                "name": format!("app-{c}"), "image": "registry.example.com/team/app:v1.2.3",
                "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                "env": env,
                "resources": {"limits": {"cpu": "500m", "memory": "256Mi"}, "requests": {"cpu": "100m", "memory": "128Mi"}},
                "volumeMounts": [{"name": "kube-api-access", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}],
                "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent"
            })
        })
        .collect();
    let conditions: Vec<Value> = ["Initialized", "Ready", "ContainersReady", "PodScheduled"]
        .iter()
        .map(|t| json!({"type": t, "status": "True", "lastTransitionTime": "2024-05-01T10:00:02Z"}))
        .collect();
    json!({
        "kind": "Pod", "apiVersion": "v1",
        "metadata": {"name": name, "generateName": "web-7d4b9c-", "namespace": "shop", "uid": "6f1c2d3e-0000-4000-8000-000000000001",
            "resourceVersion": rv.to_string(), "creationTimestamp": "2024-05-01T10:00:00Z",
            "labels": {"app": "web", "pod-template-hash": "7d4b9c"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d4b9c", "uid": "6f1c2d3e-0000-4000-8000-000000000002", "controller": true, "blockOwnerDeletion": true}],
            "managedFields": [{"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1", "time": "2024-05-01T10:00:00Z", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:metadata": {"f:generateName": {}, "f:labels": {".": {}, "f:app": {}}}, "f:spec": {"f:containers": {}}}}]},
        "spec": {"containers": containers, "restartPolicy": "Always", "dnsPolicy": "ClusterFirst", "serviceAccountName": "default",
            "nodeName": "node-3", "schedulerName": "default-scheduler", "priority": 0, "enableServiceLinks": true,
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}],
            "volumes": [{"name": "kube-api-access", "projected": {"defaultMode": 420, "sources": [{"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}]}}]},
        "status": {"phase": "Running", "hostIP": "10.0.0.3", "podIP": "10.244.3.17", "qosClass": "Burstable", "startTime": "2024-05-01T10:00:01Z",
            "conditions": conditions}
    })
}

fn event(i: usize, level: &str) -> Value {
    let name = format!("web-7d4b9c-{i:05}");
    let mut e = json!({
        "level": level, "auditID": format!("00000000-0000-4000-8000-{i:012}"), "stage": "ResponseComplete",
        "requestURI": format!("/api/v1/namespaces/shop/pods/{name}/status"), "verb": "update",
        "user": {"username": "system:node:node-3", "groups": ["system:nodes", "system:authenticated"]},
        "sourceIPs": ["10.0.0.3"], "userAgent": "kubelet/v1.31.0 (linux/amd64) kubernetes/9edcffc",
        "objectRef": {"resource": "pods", "namespace": "shop", "name": name, "apiVersion": "v1", "subresource": "status", "resourceVersion": "1000"},
        "responseStatus": {"metadata": {}, "code": 200},
        "requestReceivedTimestamp": "2024-05-01T10:00:03.123456Z", "stageTimestamp": "2024-05-01T10:00:03.131456Z",
        "annotations": {"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": ""}
    });
    if level == "RequestResponse" {
        e["requestObject"] = pod(&name, 1000);
        e["responseObject"] = pod(&name, 1001);
    }
    e
}

fn measure(level: &str, batch: usize, rounds: usize) {
    let items: Vec<Value> = (0..batch).map(|i| event(i, level)).collect();
    let body = json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {}, "items": items}).to_string();
    let filter = Filter::new(&Config::default()).expect("default filter");
    let start = Instant::now();
    let mut n = 0;
    for _ in 0..rounds {
        match decode_body(body.as_bytes(), "bench", &filter) {
            Ok(d) => n += d.activities.len(),
            Err(e) => {
                eprintln!("decode failed: {e}");
                return;
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{level:>15}: {:>9.0} events/s on one core ({} bytes/event, batches of {batch})",
        n as f64 / secs,
        body.len() / batch
    );
}

fn main() {
    measure("Metadata", 400, 100);
    measure("RequestResponse", 400, 25);
}
