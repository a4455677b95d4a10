//! Synthetic audit events shaped like kube-apiserver's (`audit.k8s.io/v1`, webhook batches as
//! `EventList`), for end-to-end tests and the ingest benchmark. Bodies follow real objects
//! closely enough for linkers (ownerReferences, uid, resourceVersion) and for size.

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

/// One audited request to describe.
#[derive(Clone, Debug)]
pub struct Request {
    pub user: String,
    pub user_agent: String,
    pub verb: String,
    pub api_group: String,
    pub api_version: String,
    pub resource: String,
    pub namespace: String,
    pub name: String,
    pub subresource: String,
    pub code: i32,
    pub level: &'static str,
    pub request_object: Option<Value>,
    pub response_object: Option<Value>,
    pub resource_version: String,
    pub at: DateTime<Utc>,
    pub latency: Duration,
}

impl Request {
    pub fn new(user: &str, verb: &str, resource: &str, namespace: &str, name: &str, at: DateTime<Utc>) -> Request {
        let (api_group, api_version) = match resource {
            "deployments" | "replicasets" | "statefulsets" | "daemonsets" => ("apps", "v1"),
            "jobs" => ("batch", "v1"),
            "leases" => ("coordination.k8s.io", "v1"),
            _ => ("", "v1"),
        };
        Request {
            user: user.to_string(),
            user_agent: user_agent_of(user),
            verb: verb.to_string(),
            api_group: api_group.to_string(),
            api_version: api_version.to_string(),
            resource: resource.to_string(),
            namespace: namespace.to_string(),
            name: name.to_string(),
            subresource: String::new(),
            code: if verb == "create" { 201 } else { 200 },
            level: "RequestResponse",
            request_object: None,
            response_object: None,
            resource_version: String::new(),
            at,
            latency: Duration::milliseconds(4),
        }
    }

    pub fn sub(mut self, s: &str) -> Self {
        self.subresource = s.to_string();
        self
    }

    pub fn code(mut self, c: i32) -> Self {
        self.code = c;
        self
    }

    pub fn level(mut self, l: &'static str) -> Self {
        self.level = l;
        self
    }

    pub fn bodies(mut self, request: Option<Value>, response: Option<Value>) -> Self {
        self.request_object = request;
        self.response_object = response;
        self
    }

    pub fn rv(mut self, rv: &str) -> Self {
        self.resource_version = rv.to_string();
        self
    }
}

fn user_agent_of(user: &str) -> String {
    if let Some(sa) = user.strip_prefix("system:serviceaccount:kube-system:") {
        format!("kube-controller-manager/v1.31.0 (linux/amd64) kubernetes/9d6a2e1/system:serviceaccount:kube-system:{sa}")
    } else if user == "system:kube-scheduler" {
        "kube-scheduler/v1.31.0 (linux/amd64) kubernetes/9d6a2e1/scheduler".to_string()
    } else if user.starts_with("system:node:") {
        "kubelet/v1.31.0 (linux/amd64) kubernetes/9d6a2e1".to_string()
    } else {
        "kubectl/v1.31.0 (linux/amd64) kubernetes/9d6a2e1".to_string()
    }
}

fn micro(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// The audit Event (stage ResponseComplete) for `r`.
pub fn event(r: &Request, audit_id: &str) -> Value {
    let group_path = if r.api_group.is_empty() {
        format!("/api/{}", r.api_version)
    } else {
        format!("/apis/{}/{}", r.api_group, r.api_version)
    };
    let ns_path = if r.namespace.is_empty() { String::new() } else { format!("/namespaces/{}", r.namespace) };
    let name_path = if r.verb == "create" && r.subresource.is_empty() { String::new() } else { format!("/{}", r.name) };
    let sub_path = if r.subresource.is_empty() { String::new() } else { format!("/{}", r.subresource) };
    let mut object_ref = json!({
        "resource": r.resource, "namespace": r.namespace, "name": r.name, "apiVersion": r.api_version,
    });
    if !r.api_group.is_empty() {
        object_ref["apiGroup"] = json!(r.api_group);
    }
    if !r.subresource.is_empty() {
        object_ref["subresource"] = json!(r.subresource);
    }
    if !r.resource_version.is_empty() {
        object_ref["resourceVersion"] = json!(r.resource_version);
    }
    let mut status = json!({"metadata": {}, "code": r.code});
    if r.code == 409 {
        let gr = if r.api_group.is_empty() { r.resource.clone() } else { format!("{}.{}", r.resource, r.api_group) };
        status["status"] = json!("Failure");
        status["reason"] = json!("Conflict");
        status["message"] = json!(format!(
            "Operation cannot be fulfilled on {gr} \"{}\": the object has been modified; please apply your changes to the latest version and try again",
            r.name
        ));
    }
    let mut e = json!({
        "level": r.level,
        "auditID": audit_id,
        "stage": "ResponseComplete",
        "requestURI": format!("{group_path}{ns_path}/{}{name_path}{sub_path}", r.resource),
        "verb": r.verb,
        "user": {"username": r.user, "groups": ["system:authenticated"]},
        "sourceIPs": ["10.0.0.10"],
        "userAgent": r.user_agent,
        "objectRef": object_ref,
        "responseStatus": status,
        "requestReceivedTimestamp": micro(r.at),
        "stageTimestamp": micro(r.at + r.latency),
        "annotations": {"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": ""},
    });
    if r.level != "Metadata" {
        if let Some(b) = &r.request_object {
            e["requestObject"] = b.clone();
        }
        if r.level == "RequestResponse"
            && let Some(b) = &r.response_object
        {
            e["responseObject"] = b.clone();
        }
    }
    e
}

/// Wraps events into the webhook's `EventList`.
pub fn event_list(items: Vec<Value>) -> Value {
    json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {}, "items": items})
}

pub fn owner(api_version: &str, kind: &str, name: &str, uid: &str) -> Value {
    json!({"apiVersion": api_version, "kind": kind, "name": name, "uid": uid, "controller": true, "blockOwnerDeletion": true})
}

pub fn deployment(ns: &str, name: &str, uid: &str, rv: u64, replicas: i64, image: &str) -> Value {
    json!({
        "kind": "Deployment", "apiVersion": "apps/v1",
        "metadata": {"name": name, "namespace": ns, "uid": uid, "resourceVersion": rv.to_string(), "generation": 1,
                     "labels": {"app": name}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "app", "image": image}]}}},
        "status": {}
    })
}

pub fn replicaset(ns: &str, name: &str, uid: &str, rv: u64, replicas: i64, owner_ref: Value) -> Value {
    json!({
        "kind": "ReplicaSet", "apiVersion": "apps/v1",
        "metadata": {"name": name, "namespace": ns, "uid": uid, "resourceVersion": rv.to_string(),
                     "ownerReferences": [owner_ref]},
        "spec": {"replicas": replicas},
        "status": {"replicas": 0}
    })
}

/// A Pod of realistic size (≈3–4 KiB of JSON): containers, volumes, status, managedFields.
pub fn pod(ns: &str, name: &str, uid: &str, rv: u64, owner_ref: Option<Value>, node: &str) -> Value {
    let mut p = json!({
        "kind": "Pod", "apiVersion": "v1",
        "metadata": {
            "name": name, "namespace": ns, "uid": uid, "resourceVersion": rv.to_string(),
            "creationTimestamp": "2026-11-22T10:00:00Z",
            "labels": {"app": "demo", "pod-template-hash": "7d4b9c8f5"},
            "managedFields": [{"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1",
                "time": "2026-11-22T10:00:00Z", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:app": {}, "f:pod-template-hash": {}}},
                             "f:spec": {"f:containers": {"k:{\"name\":\"app\"}": {".": {}, "f:image": {}, "f:name": {}}}}}},
                {"manager": "kubelet", "operation": "Update", "apiVersion": "v1", "time": "2026-11-22T10:00:03Z",
                 "fieldsType": "FieldsV1", "subresource": "status",
                 "fieldsV1": {"f:status": {"f:conditions": {"k:{\"type\":\"ContainersReady\"}": {".": {}, "f:lastProbeTime": {}, "f:lastTransitionTime": {}, "f:status": {}, "f:type": {}},
                     "k:{\"type\":\"Initialized\"}": {".": {}, "f:lastProbeTime": {}, "f:lastTransitionTime": {}, "f:status": {}, "f:type": {}},
                     "k:{\"type\":\"Ready\"}": {".": {}, "f:lastProbeTime": {}, "f:lastTransitionTime": {}, "f:status": {}, "f:type": {}}},
                     "f:containerStatuses": {}, "f:hostIP": {}, "f:hostIPs": {}, "f:phase": {}, "f:podIP": {}, "f:podIPs": {".": {}, "k:{\"ip\":\"10.244.1.17\"}": {".": {}, "f:ip": {}}}, "f:startTime": {}}}}]
        },
        "spec": {
            "containers": [{"name": "app", "image": "registry.example.com/team/app:1.2.3",
                "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                "env": [{"name": "LOG_LEVEL", "value": "info"}, {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
                "volumeMounts": [{"name": "kube-api-access-abcde", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}],
                "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent"}],
            "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default", "serviceAccount": "default", "nodeName": node,
            "securityContext": {}, "schedulerName": "default-scheduler",
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}],
            "priority": 0, "enableServiceLinks": true, "preemptionPolicy": "PreemptLowerPriority",
            "volumes": [{"name": "kube-api-access-abcde", "projected": {"sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}],
                "defaultMode": 420}}]
        },
        "status": {
            "phase": "Running", "hostIP": "10.0.0.21", "podIP": "10.244.1.17", "startTime": "2026-11-22T10:00:01Z", "qosClass": "Burstable",
            "conditions": [
                {"type": "Initialized", "status": "True", "lastTransitionTime": "2026-11-22T10:00:01Z"},
                {"type": "Ready", "status": "True", "lastTransitionTime": "2026-11-22T10:00:03Z"},
                {"type": "ContainersReady", "status": "True", "lastTransitionTime": "2026-11-22T10:00:03Z"},
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-11-22T10:00:00Z"}],
            "containerStatuses": [{"name": "app", "ready": true, "restartCount": 0, "started": true,
                "image": "registry.example.com/team/app:1.2.3",
                "imageID": "registry.example.com/team/app@sha256:4b2f1c0a9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b",
                "containerID": "containerd://0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0",
                "state": {"running": {"startedAt": "2026-11-22T10:00:02Z"}}}]
        }
    });
    if let Some(o) = owner_ref {
        p["metadata"]["ownerReferences"] = json!([o]);
    }
    p
}

/// The audit story of a Deployment `name` with two ReplicaSets and four Pods (two per
/// ReplicaSet): creation, scheduling, kubelet status, a status update by the deployment
/// controller, a 409 Conflict on a status update, a rolling update to a second ReplicaSet and
/// the old one scaled down. Returns the events in order.
pub fn deployment_story(ns: &str, name: &str, start: DateTime<Utc>) -> Vec<Value> {
    const DC: &str = "system:serviceaccount:kube-system:deployment-controller";
    const RSC: &str = "system:serviceaccount:kube-system:replicaset-controller";
    let mut out = Vec::new();
    let mut t = start;
    let mut rv = 1000u64;
    let next = |r: Request, out: &mut Vec<Value>| {
        let id = format!("{:08x}-0000-4000-8000-{:012x}", out.len() + 1, out.len() + 1);
        out.push(event(&r, &id));
    };
    let d_uid = format!("{name}-uid");
    let d_owner = owner("apps/v1", "Deployment", name, &d_uid);
    let step = |t: &mut DateTime<Utc>| {
        *t += Duration::milliseconds(150);
        *t
    };
    rv += 1;
    let d = deployment(ns, name, &d_uid, rv, 2, "alpine:3.16");
    next(Request::new("kubernetes-admin", "create", "deployments", ns, name, step(&mut t)).bodies(Some(d.clone()), Some(d.clone())), &mut out);

    for (rs_i, image) in [(1, "alpine:3.16"), (2, "alpine:3.17")] {
        if rs_i == 2 {
            rv += 1;
            let d2 = deployment(ns, name, &d_uid, rv, 2, image);
            next(Request::new("kubernetes-admin", "patch", "deployments", ns, name, step(&mut t)).bodies(Some(json!({"spec":{"template":{"spec":{"containers":[{"name":"app","image":image}]}}}})), Some(d2)), &mut out);
        }
        let rs_name = format!("{name}-rs{rs_i}");
        let rs_uid = format!("{rs_name}-uid");
        rv += 1;
        let rs = replicaset(ns, &rs_name, &rs_uid, rv, 2, d_owner.clone());
        next(Request::new(DC, "create", "replicasets", ns, &rs_name, step(&mut t)).bodies(Some(rs.clone()), Some(rs)), &mut out);
        let rs_owner = owner("apps/v1", "ReplicaSet", &rs_name, &rs_uid);
        for p_i in 1..=2 {
            let pod_name = format!("{rs_name}-pod{p_i}");
            let pod_uid = format!("{pod_name}-uid");
            rv += 1;
            let body = pod(ns, &pod_name, &pod_uid, rv, Some(rs_owner.clone()), "");
            next(Request::new(RSC, "create", "pods", ns, &pod_name, step(&mut t)).bodies(Some(body.clone()), Some(body)), &mut out);
            next(
                Request::new("system:kube-scheduler", "create", "pods", ns, &pod_name, step(&mut t))
                    .sub("binding")
                    .bodies(Some(json!({"kind":"Binding","apiVersion":"v1","metadata":{"name":pod_name},"target":{"kind":"Node","name":"node-1"}})),
                            Some(json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success","code":201}))),
                &mut out,
            );
            rv += 1;
            let running = pod(ns, &pod_name, &pod_uid, rv, Some(rs_owner.clone()), "node-1");
            next(Request::new("system:node:node-1", "patch", "pods", ns, &pod_name, step(&mut t)).sub("status").bodies(Some(json!({"status":{"phase":"Running"}})), Some(running)), &mut out);
        }
        rv += 1;
        let d_status = deployment(ns, name, &d_uid, rv, 2, image);
        next(Request::new(DC, "update", "deployments", ns, name, step(&mut t)).sub("status").rv(&(rv - 1).to_string()).bodies(Some(d_status.clone()), Some(d_status)), &mut out);
        if rs_i == 1 {
            let stale = deployment(ns, name, &d_uid, rv - 1, 2, image);
            let conflict_status = json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","reason":"Conflict","code":409,
                "message": format!("Operation cannot be fulfilled on deployments.apps \"{name}\": the object has been modified; please apply your changes to the latest version and try again"),
                "details":{"name":name,"group":"apps","kind":"deployments"}});
            next(Request::new(DC, "update", "deployments", ns, name, step(&mut t)).sub("status").code(409).rv(&(rv - 1).to_string()).bodies(Some(stale), Some(conflict_status)), &mut out);
        }
    }
    // The old ReplicaSet is scaled down.
    rv += 1;
    let old = replicaset(ns, &format!("{name}-rs1"), &format!("{name}-rs1-uid"), rv, 0, d_owner);
    next(Request::new(DC, "update", "replicasets", ns, &format!("{name}-rs1"), step(&mut t)).bodies(Some(old.clone()), Some(old)), &mut out);
    out
}

/// A Metadata-level event about pod `i` (for throughput runs): no bodies.
pub fn metadata_event(ns: &str, i: usize, at: DateTime<Utc>) -> Value {
    let name = format!("pod-{i}");
    let r = Request::new("system:node:node-1", "patch", "pods", ns, &name, at).sub("status").level("Metadata");
    event(&r, &format!("m-{i:012}"))
}

/// A RequestResponse-level pod status patch with a full Pod body (for throughput runs).
pub fn request_response_event(ns: &str, i: usize, at: DateTime<Utc>) -> Value {
    let name = format!("pod-{i}");
    let rs_owner = owner("apps/v1", "ReplicaSet", &format!("rs-{}", i / 10), &format!("rs-{}-uid", i / 10));
    let body = pod(ns, &name, &format!("pod-{i}-uid"), 10_000 + i as u64, Some(rs_owner), "node-1");
    let r = Request::new("system:node:node-1", "patch", "pods", ns, &name, at)
        .sub("status")
        .bodies(Some(json!({"status": {"phase": "Running"}})), Some(body));
    event(&r, &format!("r-{i:012}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn story_has_the_expected_shape_and_decodes() {
        let events = deployment_story("default", "demo", Utc::now());
        let list = serde_json::to_vec(&event_list(events.clone())).unwrap();
        let decoded = kausal_core::audit::decode_event_list(&list).unwrap();
        assert_eq!(decoded.items.len(), events.len());
        let creates = |res: &str| decoded.items.iter().filter(|e| e.verb == "create" && e.object_ref.as_ref().unwrap().resource == res && e.object_ref.as_ref().unwrap().subresource.is_empty()).count();
        assert_eq!(creates("replicasets"), 2);
        assert_eq!(creates("pods"), 4);
        assert_eq!(decoded.items.iter().filter(|e| e.status_code() == Some(409)).count(), 1);
        let pod_size = serde_json::to_vec(&pod("ns", "p", "u", 1, None, "n")).unwrap().len();
        assert!((3000..8000).contains(&pod_size), "pod body is {pod_size} bytes");
    }
}
