//! The default scheduler: binds pending pods to nodes that fit (cpu/memory/pod-count requests
//! against allocatable, nodeSelector, taints and tolerations, cordoned nodes), preferring the
//! least allocated node, through `pods/binding`. Reports `Scheduled` and `FailedScheduling` as
//! events.k8s.io/v1 Events. Affinity, topology spread and preemption are not modelled (the
//! FailedScheduling message still carries the real preemption suffix).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::client::{ApiClient, ClientError, PatchType, resources};
use crate::clock::Clock;

use super::events::{EventType, EventsV1Recorder};
use super::informer::{Informer, ObjectName, WorkQueue, object_name, run_queue};
use super::meta;

/// What the scheduler knows about a node when placing one pod.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeInfo {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Value>,
    pub unschedulable: bool,
    pub allocatable_cpu_millis: i64,
    pub allocatable_memory: i64,
    pub allocatable_pods: i64,
    pub requested_cpu_millis: i64,
    pub requested_memory: i64,
    pub pod_count: i64,
}

impl NodeInfo {
    /// Node facts plus the requests of the (unfinished) pods already bound to it.
    pub fn from_node(node: &Value, pods_on_node: &[&Value]) -> NodeInfo {
        let alloc = &node["status"]["allocatable"];
        let mut info = NodeInfo {
            name: meta::name(node).to_string(),
            labels: meta::labels(node),
            taints: node["spec"]["taints"].as_array().cloned().unwrap_or_default(),
            unschedulable: node["spec"]["unschedulable"].as_bool().unwrap_or(false),
            allocatable_cpu_millis: alloc["cpu"].as_str().and_then(meta::parse_cpu_millis).unwrap_or(0),
            allocatable_memory: alloc["memory"].as_str().and_then(meta::parse_bytes).unwrap_or(0),
            allocatable_pods: alloc["pods"].as_str().and_then(|p| p.parse().ok()).unwrap_or(110),
            requested_cpu_millis: 0,
            requested_memory: 0,
            pod_count: 0,
        };
        for pod in pods_on_node {
            let (cpu, memory) = meta::pod_requests(pod);
            info.requested_cpu_millis += cpu;
            info.requested_memory += memory;
            info.pod_count += 1;
        }
        info
    }

    fn score(&self) -> (i64, i64, String) {
        let cpu = if self.allocatable_cpu_millis > 0 { self.requested_cpu_millis * 1000 / self.allocatable_cpu_millis } else { 1000 };
        let mem = if self.allocatable_memory > 0 { self.requested_memory.saturating_mul(1000) / self.allocatable_memory } else { 1000 };
        ((cpu + mem) / 2, self.pod_count, self.name.clone())
    }
}

/// Where a pod goes, or why it cannot go anywhere.
#[derive(Clone, Debug, PartialEq)]
pub enum ScheduleDecision {
    Bind(String),
    Unschedulable(String),
}

fn tolerates(tolerations: &[Value], taint: &Value) -> bool {
    tolerations.iter().any(|t| {
        let effect_ok = t["effect"].as_str().is_none_or(|e| e.is_empty() || Some(e) == taint["effect"].as_str());
        let key = t["key"].as_str().unwrap_or_default();
        let key_ok = key.is_empty() || Some(key) == taint["key"].as_str();
        let value_ok = match t["operator"].as_str().unwrap_or("Equal") {
            "Exists" => true,
            _ => t["value"].as_str().unwrap_or_default() == taint["value"].as_str().unwrap_or_default(),
        };
        effect_ok && key_ok && value_ok
    })
}

/// Why `node` cannot take `pod` (the scheduler plugins' messages), empty when it fits.
fn filter(pod: &Value, node: &NodeInfo) -> (Vec<String>, bool) {
    if node.unschedulable {
        return (vec!["node(s) were unschedulable".to_string()], false);
    }
    let selector = meta::string_map(&pod["spec"]["nodeSelector"]);
    if !selector.iter().all(|(k, v)| node.labels.get(k) == Some(v)) {
        return (vec!["node(s) didn't match Pod's node affinity/selector".to_string()], false);
    }
    let tolerations = pod["spec"]["tolerations"].as_array().cloned().unwrap_or_default();
    for taint in &node.taints {
        let effect = taint["effect"].as_str().unwrap_or_default();
        if (effect == "NoSchedule" || effect == "NoExecute") && !tolerates(&tolerations, taint) {
            let key = taint["key"].as_str().unwrap_or_default();
            let value = taint["value"].as_str().unwrap_or_default();
            return (vec![format!("node(s) had untolerated taint {{{key}: {value}}}")], false);
        }
    }
    let (cpu, memory) = meta::pod_requests(pod);
    let mut reasons = Vec::new();
    if node.pod_count + 1 > node.allocatable_pods {
        reasons.push("Too many pods".to_string());
    }
    if cpu > 0 && node.requested_cpu_millis + cpu > node.allocatable_cpu_millis {
        reasons.push("Insufficient cpu".to_string());
    }
    if memory > 0 && node.requested_memory + memory > node.allocatable_memory {
        reasons.push("Insufficient memory".to_string());
    }
    // Resource shortfalls are the only ones preemption could help with.
    (reasons, true)
}

/// Places `pod` on the least allocated node that fits, or explains the failure in the
/// scheduler's words: `0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are
/// available: 3 No preemption victims found for incoming pod.`
pub fn schedule_pod(pod: &Value, nodes: &[NodeInfo]) -> ScheduleDecision {
    if nodes.is_empty() {
        return ScheduleDecision::Unschedulable("no nodes available to schedule pods".to_string());
    }
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    let mut preemption: BTreeMap<String, usize> = BTreeMap::new();
    let mut feasible: Vec<&NodeInfo> = Vec::new();
    for node in nodes {
        let (why, resource_only) = filter(pod, node);
        if why.is_empty() {
            feasible.push(node);
            continue;
        }
        for reason in why {
            *reasons.entry(reason).or_default() += 1;
        }
        let p = if resource_only { "No preemption victims found for incoming pod" } else { "Preemption is not helpful for scheduling" };
        *preemption.entry(p.to_string()).or_default() += 1;
    }
    if let Some(best) = feasible.into_iter().min_by_key(|n| n.score()) {
        return ScheduleDecision::Bind(best.name.clone());
    }
    let n = nodes.len();
    let mut parts: Vec<String> = reasons.iter().map(|(r, c)| format!("{c} {r}")).collect();
    parts.sort();
    let mut pre: Vec<String> = preemption.iter().map(|(r, c)| format!("{c} {r}")).collect();
    pre.sort();
    ScheduleDecision::Unschedulable(format!(
        "0/{n} nodes are available: {}. preemption: 0/{n} nodes are available: {}.",
        parts.join(", "),
        pre.join(", ")
    ))
}

/// Whether this scheduler should place `pod`.
pub fn needs_scheduling(pod: &Value) -> bool {
    pod["spec"]["nodeName"].as_str().is_none_or(str::is_empty)
        && !meta::is_terminating(pod)
        && meta::pod_phase(pod) == "Pending"
        && pod["spec"]["schedulerName"].as_str().is_none_or(|s| s.is_empty() || s == "default-scheduler")
}

#[derive(Clone, Copy, Debug)]
struct Backoff {
    attempts: u32,
    next_try: Instant,
    node_epoch: u64,
}

/// The running scheduler.
pub struct Scheduler {
    client: ApiClient,
    pods: Informer,
    nodes: Informer,
    recorder: EventsV1Recorder,
    backoff: Mutex<HashMap<String, Backoff>>,
    node_epoch: Arc<std::sync::atomic::AtomicU64>,
    clock: Clock,
}

/// The host the simulated control plane runs on (in `reportingInstance`).
pub const CONTROL_PLANE_HOST: &str = "sim-control-plane";

impl Scheduler {
    pub fn spawn(client: ApiClient, pods: Informer, nodes: Informer, clock: Clock, tasks: &mut JoinSet<()>) {
        let queue: WorkQueue<ObjectName> = WorkQueue::default();
        let q = queue.clone();
        pods.on_change(move |pod| {
            if needs_scheduling(pod) {
                q.add(object_name(pod));
            }
        });
        let node_epoch = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let epoch = node_epoch.clone();
        nodes.on_change(move |_| {
            epoch.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        });
        let scheduler = Arc::new(Scheduler {
            recorder: EventsV1Recorder::new(client.clone(), "default-scheduler", &format!("default-scheduler-{CONTROL_PLANE_HOST}"), clock.clone()),
            client,
            pods,
            nodes,
            backoff: Mutex::new(HashMap::new()),
            node_epoch,
            clock,
        });
        tasks.spawn(async move {
            scheduler.pods.wait_synced().await;
            scheduler.nodes.wait_synced().await;
            let s = scheduler.clone();
            let pending = move || s.pods.filter(needs_scheduling).iter().map(object_name).collect::<Vec<_>>();
            // One pod at a time, like the real scheduling cycle, so capacity accounting holds.
            run_queue(queue, Duration::from_millis(500), pending, 1, |key| {
                let s = scheduler.clone();
                async move { s.schedule_one(&key).await }
            })
            .await;
        });
    }

    fn node_infos(&self) -> Vec<NodeInfo> {
        let pods = self.pods.filter(|p| {
            p["spec"]["nodeName"].as_str().is_some_and(|n| !n.is_empty()) && !matches!(meta::pod_phase(p), "Succeeded" | "Failed")
        });
        let mut by_node: HashMap<&str, Vec<&Value>> = HashMap::new();
        for p in &pods {
            by_node.entry(p["spec"]["nodeName"].as_str().unwrap_or_default()).or_default().push(p);
        }
        let mut nodes = self.nodes.list();
        nodes.sort_by(|a, b| meta::name(a).cmp(meta::name(b)));
        nodes
            .iter()
            .map(|n| NodeInfo::from_node(n, by_node.get(meta::name(n)).map(Vec::as_slice).unwrap_or_default()))
            .collect()
    }

    async fn schedule_one(&self, key: &ObjectName) {
        let Some(pod) = self.pods.get(&key.0, &key.1) else { return };
        if !needs_scheduling(&pod) {
            return;
        }
        let uid = meta::uid(&pod).to_string();
        let epoch = self.node_epoch.load(std::sync::atomic::Ordering::Relaxed);
        let waiting = self.backoff.lock().ok().and_then(|b| b.get(&uid).copied());
        if let Some(b) = waiting
            && b.next_try > Instant::now()
            && b.node_epoch == epoch
        {
            return;
        }
        match schedule_pod(&pod, &self.node_infos()) {
            ScheduleDecision::Bind(node) => {
                if let Err(e) = self.bind(&pod, &node).await {
                    tracing::debug!(pod = %key.1, error = %e, "binding failed");
                    return;
                }
                if let Ok(mut b) = self.backoff.lock() {
                    b.remove(&uid);
                }
                self.recorder.forget(&uid);
                let note = format!("Successfully assigned {}/{} to {node}", key.0, key.1);
                self.recorder.record(&pod, EventType::Normal, "Scheduled", "Binding", &note).await;
            }
            ScheduleDecision::Unschedulable(message) => {
                let attempts = waiting.map(|b| b.attempts + 1).unwrap_or(1);
                // 1s doubling to 10s, as the scheduling queue's pod backoff.
                let delay = Duration::from_secs(1u64 << attempts.min(4).saturating_sub(1)).min(Duration::from_secs(10));
                if let Ok(mut b) = self.backoff.lock() {
                    if b.len() > 100_000 {
                        b.clear();
                    }
                    b.insert(uid, Backoff { attempts, next_try: Instant::now() + delay, node_epoch: epoch });
                }
                self.recorder.record(&pod, EventType::Warning, "FailedScheduling", "Scheduling", &message).await;
                self.mark_unschedulable(&pod, &message).await;
            }
        }
    }

    async fn bind(&self, pod: &Value, node: &str) -> Result<(), ClientError> {
        let binding = json!({
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": meta::name(pod), "namespace": meta::namespace(pod), "uid": meta::uid(pod)},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        });
        self.client.create_subresource(&resources::PODS, Some(meta::namespace(pod)), meta::name(pod), "binding", &binding).await?;
        // Account for the placement before the watch reports it.
        let mut bound = pod.clone();
        bound["spec"]["nodeName"] = json!(node);
        self.pods.apply_write(&bound);
        Ok(())
    }

    async fn mark_unschedulable(&self, pod: &Value, message: &str) {
        let existing = meta::condition(pod, "PodScheduled");
        if existing.is_some_and(|c| c["status"] == "False" && c["message"] == message) {
            return;
        }
        let patch = json!({"status": {"conditions": [{
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": message,
            "lastProbeTime": null,
            "lastTransitionTime": meta::time_seconds(self.clock.now()),
        }]}});
        match self.client.patch_subresource(&resources::PODS, Some(meta::namespace(pod)), meta::name(pod), "status", PatchType::Merge, &patch).await {
            Ok(written) => self.pods.apply_write(&written),
            Err(e) => tracing::debug!(pod = meta::name(pod), error = %e, "recording PodScheduled=False failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, cpu: &str) -> NodeInfo {
        NodeInfo::from_node(
            &json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}, "status": {"allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"}}}),
            &[],
        )
    }

    fn pod(cpu: &str) -> Value {
        json!({"metadata": {"name": "p", "namespace": "default"}, "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]}})
    }

    #[test]
    fn least_allocated_node_wins() {
        let mut busy = node("a", "4");
        busy.requested_cpu_millis = 3000;
        busy.pod_count = 3;
        assert_eq!(schedule_pod(&pod("500m"), &[busy, node("b", "4")]), ScheduleDecision::Bind("b".into()));
    }

    #[test]
    fn insufficient_cpu_is_explained_like_the_scheduler() {
        let nodes = [node("a", "1"), node("b", "1"), node("c", "1")];
        assert_eq!(
            schedule_pod(&pod("2"), &nodes),
            ScheduleDecision::Unschedulable(
                "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod."
                    .into()
            )
        );
    }

    #[test]
    fn selectors_and_taints_filter_nodes() {
        let mut tainted = node("a", "4");
        tainted.taints = vec![json!({"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"})];
        tainted.labels.insert("disktype".into(), "ssd".into());
        let mut p = pod("100m");
        p["spec"]["nodeSelector"] = json!({"disktype": "ssd"});
        let ScheduleDecision::Unschedulable(message) = schedule_pod(&p, &[tainted.clone(), node("b", "4")]) else {
            panic!("pod should not fit");
        };
        assert_eq!(
            message,
            "0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
        );
        let mut tolerant = pod("100m");
        tolerant["spec"]["tolerations"] = json!([{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}]);
        assert_eq!(schedule_pod(&tolerant, &[tainted]), ScheduleDecision::Bind("a".into()));
    }

    #[test]
    fn only_pending_unbound_pods_are_scheduled() {
        assert!(needs_scheduling(&json!({"spec": {}, "status": {"phase": "Pending"}})));
        assert!(!needs_scheduling(&json!({"spec": {"nodeName": "n"}, "status": {"phase": "Pending"}})));
        assert!(!needs_scheduling(&json!({"spec": {"schedulerName": "other"}})));
    }
}
