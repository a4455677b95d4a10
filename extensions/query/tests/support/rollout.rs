//! A Deployment rollout as the span builder would emit it, shared by the HTTP and browser tests.

#![allow(dead_code)]

use std::collections::HashMap;

use kausal_core::conventions::{Window, DEFAULT_WINDOW_NANOS};
use kausal_core::otlp_trace::{ResourceSpans, Span};
use kausal_core::{LinkRole, Nanos, ObjectKey};
use kausal_store::testing::{audit_span, link, object_span, resource_spans, with_diff};

pub const SECOND: Nanos = 1_000_000_000;
pub const MINUTE: Nanos = 60 * SECOND;

fn key(resource: &str, name: &str) -> ObjectKey {
    let group = if resource == "pods" { "" } else { "apps" };
    ObjectKey::new("prod", group, resource, "default", name)
}

fn kind(key: &ObjectKey) -> &'static str {
    match key.resource.as_str() {
        "deployments" => "Deployment",
        "replicasets" => "ReplicaSet",
        _ => "Pod",
    }
}

/// A rollout of Deployment `demo`: ReplicaSet `demo-a` with two Pods, then (20 minutes later,
/// usually in the next window) `demo-b` with two more. Object spans are emitted for every
/// window the rollout touches, with ownership links on both ends, as the span builder does.
pub fn rollout(t0: Nanos) -> Vec<ResourceSpans> {
    let deployment = key("deployments", "demo");
    let sets = [key("replicasets", "demo-a"), key("replicasets", "demo-b")];
    let pods = [
        (0, key("pods", "demo-a-1")),
        (0, key("pods", "demo-a-2")),
        (1, key("pods", "demo-b-1")),
        (1, key("pods", "demo-b-2")),
    ];
    let dc = "system:serviceaccount:kube-system:deployment-controller";
    let rc = "system:serviceaccount:kube-system:replicaset-controller";
    let later = t0 + 20 * MINUTE;
    let mut activities: Vec<(ObjectKey, Nanos, &str, &str, &str, &str, i64)> = vec![
        (deployment.clone(), t0, "d1", "alice", "create", "", 201),
        (deployment.clone(), t0 + SECOND, "d2", dc, "update", "status", 200),
        (deployment.clone(), t0 + 2 * SECOND, "d3", dc, "update", "status", 409),
        (deployment.clone(), later, "d4", "alice", "update", "", 200),
        (sets[0].clone(), t0 + SECOND, "r1", dc, "create", "", 201),
        (sets[1].clone(), later + SECOND, "r2", dc, "create", "", 201),
    ];
    for (i, (set, pod)) in pods.iter().enumerate() {
        let at = if *set == 0 { t0 } else { later } + 2 * SECOND + i as Nanos * 100_000_000;
        activities.push((pod.clone(), at, "p-create", rc, "create", "", 201));
        activities.push((pod.clone(), at + SECOND, "p-bind", "system:kube-scheduler", "create", "binding", 201));
    }
    let mut windows: Vec<Window> = activities.iter().map(|a| Window::containing(a.1, DEFAULT_WINDOW_NANOS)).collect();
    windows.sort();
    windows.dedup();
    let mut by_service: HashMap<String, Vec<Span>> = HashMap::new();
    for &w in &windows {
        let mut push = |k: &ObjectKey, links| by_service.entry(k.group_resource()).or_default().push(object_span(k, kind(k), w, links));
        push(&deployment, sets.iter().map(|s| link(s, "ReplicaSet", w, LinkRole::Child)).collect());
        for (i, set) in sets.iter().enumerate() {
            let mut links = vec![link(&deployment, "Deployment", w, LinkRole::Parent)];
            links.extend(pods.iter().filter(|(s, _)| *s == i).map(|(_, p)| link(p, "Pod", w, LinkRole::Child)));
            push(set, links);
        }
        for (set, pod) in &pods {
            push(pod, vec![link(&sets[*set], "ReplicaSet", w, LinkRole::Parent)]);
        }
    }
    for (object, at, id, user, verb, sub, code) in activities {
        let w = Window::containing(at, DEFAULT_WINDOW_NANOS);
        let audit_id = format!("{id}-{}", object.name);
        let mut span = audit_span(&object, w, &audit_id, user, verb, sub, code, at, at + 5_000_000);
        if id == "d4" {
            span = with_diff(span, &["spec.template.spec.containers[0].image \"nginx:1.25\" -> \"nginx:1.26\""]);
        }
        by_service.entry(object.group_resource()).or_default().push(span);
    }
    by_service.into_iter().map(|(service, spans)| resource_spans("prod", &service, spans)).collect()
}

