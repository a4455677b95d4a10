//! A kubelet per simulated node: registers the Node, renews its Lease in `kube-node-lease`, and
//! walks each pod bound to it through a believable lifecycle — image pull, container create and
//! start, Running with conditions and container statuses, crash loops with back-off, completion
//! for run-to-completion pods, graceful termination — writing the kubelet's Events
//! (second-precision core/v1, `source.component: kubelet`, `source.host: <node>`). No process
//! runs; timings come from `KubeletTiming` on the shared clock.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::client::{ApiClient, ClientError, DeleteParams, ListParams, PatchType, resources};
use crate::clock::Clock;

use super::events::{EventRecorder, EventType};
use super::informer::Informer;
use super::meta;

/// How long each simulated step takes.
#[derive(Clone, Debug, PartialEq)]
pub struct KubeletTiming {
    /// From seeing a pod to starting work on it.
    pub admit: Duration,
    /// Pulling an image that is not on the node yet.
    pub image_pull: Duration,
    /// Creating and starting a container.
    pub container_start: Duration,
    /// How long a container of a run-to-completion pod (restartPolicy Never/OnFailure) runs.
    pub run_to_completion: Duration,
    /// How long a crashing container runs before it exits with code 1.
    pub crash_after: Duration,
    /// From deletionTimestamp to the containers being stopped.
    pub termination: Duration,
    /// Lease renewal interval (wall time).
    pub lease_renew: Duration,
}

impl Default for KubeletTiming {
    fn default() -> Self {
        KubeletTiming {
            admit: Duration::from_millis(100),
            image_pull: Duration::from_millis(1200),
            container_start: Duration::from_millis(200),
            run_to_completion: Duration::from_secs(2),
            crash_after: Duration::from_millis(500),
            termination: Duration::from_millis(300),
            lease_renew: Duration::from_secs(10),
        }
    }
}

/// Capacity a simulated node reports.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeCapacity {
    pub cpu: String,
    pub memory: String,
    pub pods: String,
}

impl Default for NodeCapacity {
    fn default() -> Self {
        NodeCapacity { cpu: "4".into(), memory: "16393216Ki".into(), pods: "110".into() }
    }
}

/// Whether a container crashes: images whose name contains `crashloop`, or commands that exit
/// non-zero on their own (`false`, `exit 1`).
pub fn container_crashes(container: &Value) -> bool {
    let image = container["image"].as_str().unwrap_or_default();
    let image_name = image.rsplit('/').next().unwrap_or_default();
    if image_name.contains("crashloop") || image_name.starts_with("crash") {
        return true;
    }
    let words: Vec<&str> = ["command", "args"]
        .iter()
        .flat_map(|f| container[*f].as_array().into_iter().flatten().filter_map(Value::as_str))
        .collect();
    words.first() == Some(&"false") || words.iter().any(|w| w.contains("exit 1"))
}

/// The image pull policy Kubernetes defaults to when none is set.
pub fn pull_policy(container: &Value) -> &str {
    if let Some(p) = container["imagePullPolicy"].as_str() {
        return p;
    }
    let image = container["image"].as_str().unwrap_or_default();
    let last = image.rsplit('/').next().unwrap_or_default();
    if !last.contains(':') || last.ends_with(":latest") { "Always" } else { "IfNotPresent" }
}

/// `BestEffort`, `Burstable` or `Guaranteed`.
pub fn qos_class(pod: &Value) -> &'static str {
    let containers = pod["spec"]["containers"].as_array().cloned().unwrap_or_default();
    let any = containers.iter().any(|c| {
        c["resources"]["requests"].as_object().is_some_and(|m| !m.is_empty()) || c["resources"]["limits"].as_object().is_some_and(|m| !m.is_empty())
    });
    if !any {
        return "BestEffort";
    }
    let guaranteed = containers.iter().all(|c| {
        let limits = &c["resources"]["limits"];
        let requests = &c["resources"]["requests"];
        ["cpu", "memory"].iter().all(|r| limits[*r].is_string() && (requests[*r].is_null() || requests[*r] == limits[*r]))
    });
    if guaranteed { "Guaranteed" } else { "Burstable" }
}

fn pseudo_hex(seed: &str, len: usize) -> String {
    let mut out = String::new();
    let mut i = 0u32;
    while out.len() < len {
        out.push_str(&format!("{:08x}", meta::fnv32a(format!("{seed}/{i}").as_bytes())));
        i += 1;
    }
    out.truncate(len);
    out
}

fn image_id(image: &str) -> String {
    let repo = image.split(['@', ':']).next().unwrap_or(image);
    let repo = if repo.contains('/') { repo.to_string() } else { format!("docker.io/library/{repo}") };
    format!("{repo}@sha256:{}", pseudo_hex(image, 64))
}

fn container_names(pod: &Value) -> Vec<String> {
    pod["spec"]["containers"].as_array().into_iter().flatten().filter_map(|c| c["name"].as_str().map(str::to_string)).collect()
}

/// Pod conditions for a pod whose containers are (or are not) all ready.
pub fn pod_conditions(pod: &Value, ready: bool, not_ready_reason: &str, now: &str) -> Value {
    let keep_time = |kind: &str, status: &str| -> String {
        meta::condition(pod, kind)
            .filter(|c| c["status"] == status)
            .and_then(|c| c["lastTransitionTime"].as_str().map(str::to_string))
            .unwrap_or_else(|| now.to_string())
    };
    let status = if ready { "True" } else { "False" };
    let unready: Vec<String> = container_names(pod);
    let mut ready_cond = json!({"type": "Ready", "status": status, "lastProbeTime": null, "lastTransitionTime": keep_time("Ready", status)});
    let mut containers_cond =
        json!({"type": "ContainersReady", "status": status, "lastProbeTime": null, "lastTransitionTime": keep_time("ContainersReady", status)});
    if !ready {
        let (reason, message) = if not_ready_reason == "PodCompleted" {
            ("PodCompleted".to_string(), String::new())
        } else {
            ("ContainersNotReady".to_string(), format!("containers with unready status: [{}]", unready.join(" ")))
        };
        for c in [&mut ready_cond, &mut containers_cond] {
            c["reason"] = json!(reason);
            if !message.is_empty() {
                c["message"] = json!(message);
            }
        }
    }
    json!([
        {"type": "Initialized", "status": "True", "lastProbeTime": null, "lastTransitionTime": keep_time("Initialized", "True")},
        ready_cond,
        containers_cond,
        {"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": keep_time("PodScheduled", "True")},
    ])
}

/// Shared state of one kubelet.
struct Kubelet {
    node: String,
    node_index: u32,
    client: ApiClient,
    pods: Informer,
    recorder: EventRecorder,
    clock: Clock,
    timing: KubeletTiming,
    images: Mutex<HashSet<String>>,
    next_ip: AtomicU32,
    workers: Mutex<HashMap<String, watch::Sender<Option<Value>>>>,
    /// Pod worker tasks; aborted when the kubelet's own task is stopped.
    worker_tasks: Mutex<JoinSet<()>>,
}

/// Aborts a kubelet's pod workers when its main task ends (cluster shutdown aborts it).
struct StopWorkersOnDrop(Arc<Kubelet>);

impl Drop for StopWorkersOnDrop {
    fn drop(&mut self) {
        if let Ok(mut tasks) = self.0.worker_tasks.lock() {
            tasks.abort_all();
        }
    }
}

impl Kubelet {
    fn host_ip(&self) -> String {
        format!("172.18.0.{}", self.node_index + 2)
    }
}

/// Starts the kubelet for `node` (the `node_index`-th node, which picks its IPs).
pub fn spawn_kubelet(
    client: ApiClient,
    node: &str,
    node_index: u32,
    capacity: NodeCapacity,
    timing: KubeletTiming,
    clock: Clock,
    tasks: &mut JoinSet<()>,
) {
    let pods = Informer::new(resources::PODS, ListParams::fields(format!("spec.nodeName={node}")));
    pods.spawn(client.clone(), tasks);
    let kubelet = Arc::new(Kubelet {
        node: node.to_string(),
        node_index,
        recorder: EventRecorder::new(client.clone(), "kubelet", Some(node), clock.clone()),
        client,
        pods: pods.clone(),
        clock,
        timing,
        images: Mutex::new(HashSet::new()),
        next_ip: AtomicU32::new(2),
        workers: Mutex::new(HashMap::new()),
        worker_tasks: Mutex::new(JoinSet::new()),
    });
    let k = kubelet.clone();
    tasks.spawn(async move {
        let _stop_workers = StopWorkersOnDrop(k.clone());
        k.register(&capacity).await;
        k.renew_lease_forever().await;
    });
    let k = kubelet.clone();
    pods.on_change(move |pod| k.observe(pod));
}

impl Kubelet {
    fn node_object(&self, capacity: &NodeCapacity) -> Value {
        let now = meta::time_seconds(self.clock.now());
        let resources = json!({"cpu": capacity.cpu, "memory": capacity.memory, "pods": capacity.pods, "ephemeral-storage": "102626232Ki", "hugepages-2Mi": "0"});
        let condition = |kind: &str, status: &str, reason: &str, message: &str| {
            json!({"type": kind, "status": status, "lastHeartbeatTime": now, "lastTransitionTime": now, "reason": reason, "message": message})
        };
        json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.node,
                "labels": {
                    "beta.kubernetes.io/arch": "amd64",
                    "beta.kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "kubernetes.io/hostname": self.node,
                    "kubernetes.io/os": "linux",
                },
                "annotations": {
                    "node.alpha.kubernetes.io/ttl": "0",
                    "volumes.kubernetes.io/controller-managed-attach-detach": "true",
                },
            },
            "spec": {"podCIDR": format!("10.244.{}.0/24", self.node_index), "podCIDRs": [format!("10.244.{}.0/24", self.node_index)]},
            "status": {
                "capacity": resources,
                "allocatable": resources,
                "conditions": [
                    condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                    condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                    condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                    condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
                ],
                "addresses": [{"type": "InternalIP", "address": self.host_ip()}, {"type": "Hostname", "address": self.node}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
                "nodeInfo": {
                    "architecture": "amd64",
                    "bootID": pseudo_hex(&format!("{}-boot", self.node), 32),
                    "containerRuntimeVersion": "containerd://1.7.18",
                    "kernelVersion": "6.1.0-sim",
                    "kubeProxyVersion": crate::client::KUBE_VERSION,
                    "kubeletVersion": crate::client::KUBE_VERSION,
                    "machineID": pseudo_hex(&format!("{}-machine", self.node), 32),
                    "operatingSystem": "linux",
                    "osImage": "Debian GNU/Linux 12 (bookworm)",
                    "systemUUID": pseudo_hex(&format!("{}-uuid", self.node), 32),
                },
            },
        })
    }

    /// Creates (or refreshes) the Node, retrying until the apiserver answers.
    async fn register(&self, capacity: &NodeCapacity) {
        let node = self.node_object(capacity);
        loop {
            let result = match self.client.create(&resources::NODES, None, &node).await {
                Ok(created) => Ok(created),
                Err(e) if e.code() == Some(409) => self.client.get(&resources::NODES, None, &self.node).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(_) => break,
                Err(e) => {
                    tracing::debug!(node = %self.node, error = %e, "registering the node failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        // Status on create may be dropped by the apiserver; report it through the subresource.
        let patch = json!({"status": node["status"]});
        if let Err(e) = self.client.patch_subresource(&resources::NODES, None, &self.node, "status", PatchType::Merge, &patch).await {
            tracing::warn!(node = %self.node, error = %e, "reporting node status failed");
        }
        let node_obj = self.client.get(&resources::NODES, None, &self.node).await.unwrap_or(node);
        self.recorder.record(&node_obj, None, EventType::Normal, "Starting", "Starting kubelet.").await;
        self.recorder.record(&node_obj, None, EventType::Normal, "NodeReady", &format!("Node {} status is now: NodeReady", self.node)).await;
    }

    async fn renew_lease_forever(&self) {
        let mut ticker = tokio::time::interval(self.timing.lease_renew);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if let Err(e) = self.renew_lease().await {
                tracing::debug!(node = %self.node, error = %e, "lease renewal failed");
            }
        }
    }

    async fn renew_lease(&self) -> Result<(), ClientError> {
        let ns = Some("kube-node-lease");
        let now = meta::time_micros(self.clock.now());
        match self.client.get(&resources::LEASES, ns, &self.node).await {
            Ok(mut lease) => {
                lease["spec"]["renewTime"] = json!(now);
                self.client.update(&resources::LEASES, ns, &self.node, &lease).await?;
            }
            Err(e) if e.is_not_found() => {
                let node = self.client.get(&resources::NODES, None, &self.node).await?;
                let lease = json!({
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {
                        "name": self.node,
                        "namespace": "kube-node-lease",
                        "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": self.node, "uid": meta::uid(&node)}],
                    },
                    "spec": {"holderIdentity": self.node, "leaseDurationSeconds": 40, "renewTime": now},
                });
                self.client.create(&resources::LEASES, ns, &lease).await?;
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// Hands the latest state of each pod to its worker, starting one for new pods.
    fn observe(self: &Arc<Self>, pod: &Value) {
        let uid = meta::uid(pod).to_string();
        let gone = self.pods.get(meta::namespace(pod), meta::name(pod)).is_none_or(|p| meta::uid(&p) != uid);
        let Ok(mut workers) = self.workers.lock() else { return };
        if let Some(tx) = workers.get(&uid) {
            tx.send_replace(if gone { None } else { Some(pod.clone()) });
            if gone {
                workers.remove(&uid);
            }
            return;
        }
        if gone {
            return;
        }
        let (tx, rx) = watch::channel(Some(pod.clone()));
        workers.insert(uid.clone(), tx);
        let kubelet = self.clone();
        let Ok(mut tasks) = self.worker_tasks.lock() else { return };
        while tasks.try_join_next().is_some() {}
        tasks.spawn(async move {
            kubelet.clone().run_pod(rx).await;
            if let Ok(mut w) = kubelet.workers.lock() {
                w.remove(&uid);
            }
        });
    }

    async fn run_pod(self: Arc<Self>, mut rx: watch::Receiver<Option<Value>>) {
        let Some(pod) = rx.borrow().clone() else { return };
        if !meta::is_terminating(&pod) && !matches!(meta::pod_phase(&pod), "Succeeded" | "Failed") {
            let deleted = {
                let mut rx = rx.clone();
                async move {
                    let _closed = rx.wait_for(|p| p.as_ref().is_none_or(meta::is_terminating)).await;
                }
            };
            let lifecycle = self.clone().lifecycle(pod.clone(), rx.clone());
            tokio::select! {
                _ = lifecycle => {
                    // Finished (terminal phase); wait for the deletion to clean up.
                    let _closed = rx.wait_for(|p| p.as_ref().is_none_or(meta::is_terminating)).await;
                }
                _ = deleted => {}
            }
        }
        let latest = rx.borrow().clone();
        if let Some(pod) = latest
            && meta::is_terminating(&pod)
        {
            self.terminate(&pod).await;
        }
    }

    fn latest(&self, rx: &watch::Receiver<Option<Value>>, fallback: &Value) -> Value {
        rx.borrow().clone().unwrap_or_else(|| fallback.clone())
    }

    async fn write_status(&self, pod: &Value, status: Value) {
        let patch = json!({"status": status});
        match self.client.patch_subresource(&resources::PODS, Some(meta::namespace(pod)), meta::name(pod), "status", PatchType::Merge, &patch).await {
            Ok(written) => self.pods.apply_write(&written),
            Err(e) => tracing::debug!(pod = meta::name(pod), error = %e, "pod status update failed"),
        }
    }

    fn container_event(&self, pod: &Value, container: &str) -> (Value, String) {
        (pod.clone(), format!("spec.containers{{{container}}}"))
    }

    /// Start to Running (and on to completion or crash loop). Runs until the pod reaches a
    /// terminal phase; the caller abandons it when the pod is deleted.
    async fn lifecycle(self: Arc<Self>, pod: Value, rx: watch::Receiver<Option<Value>>) {
        self.clock.sleep(self.timing.admit).await;
        let now = || meta::time_seconds(self.clock.now());
        let start_time = now();
        let pod_ip = format!("10.244.{}.{}", self.node_index, self.next_ip.fetch_add(1, Ordering::Relaxed) % 250 + 2);
        let containers = pod["spec"]["containers"].as_array().cloned().unwrap_or_default();
        let waiting: Vec<Value> = containers
            .iter()
            .map(|c| {
                json!({"name": c["name"], "image": c["image"], "imageID": "", "ready": false, "restartCount": 0, "started": false,
                       "lastState": {}, "state": {"waiting": {"reason": "ContainerCreating"}}})
            })
            .collect();
        let current = self.latest(&rx, &pod);
        self.write_status(
            &current,
            json!({
                "phase": "Pending",
                "conditions": pod_conditions(&current, false, "ContainersNotReady", &now()),
                "hostIP": self.host_ip(),
                "hostIPs": [{"ip": self.host_ip()}],
                "startTime": start_time,
                "containerStatuses": waiting,
                "qosClass": qos_class(&current),
            }),
        )
        .await;

        let restart_policy = pod["spec"]["restartPolicy"].as_str().unwrap_or("Always").to_string();
        let mut restarts: i64 = 0;
        let mut backoff = Duration::from_secs(10);
        loop {
            let mut statuses = Vec::new();
            for c in &containers {
                let name = c["name"].as_str().unwrap_or_default();
                let image = c["image"].as_str().unwrap_or_default();
                let (involved, field) = self.container_event(&self.latest(&rx, &pod), name);
                let present = self.images.lock().map(|i| i.contains(image)).unwrap_or(false);
                if present && pull_policy(c) != "Always" {
                    self.recorder
                        .record(&involved, Some(&field), EventType::Normal, "Pulled", &format!("Container image \"{image}\" already present on machine"))
                        .await;
                } else {
                    self.recorder.record(&involved, Some(&field), EventType::Normal, "Pulling", &format!("Pulling image \"{image}\"")).await;
                    let started = self.clock.now();
                    self.clock.sleep(self.timing.image_pull).await;
                    let took = (self.clock.now() - started).to_std().unwrap_or(self.timing.image_pull);
                    let took = meta::go_duration(took);
                    self.recorder
                        .record(
                            &involved,
                            Some(&field),
                            EventType::Normal,
                            "Pulled",
                            &format!("Successfully pulled image \"{image}\" in {took} ({took} including waiting)"),
                        )
                        .await;
                    if let Ok(mut images) = self.images.lock() {
                        images.insert(image.to_string());
                    }
                }
                self.clock.sleep(self.timing.container_start).await;
                self.recorder.record(&involved, Some(&field), EventType::Normal, "Created", &format!("Created container {name}")).await;
                self.recorder.record(&involved, Some(&field), EventType::Normal, "Started", &format!("Started container {name}")).await;
                let container_id = format!("containerd://{}", pseudo_hex(&format!("{}/{name}/{restarts}", meta::uid(&pod)), 64));
                statuses.push(json!({
                    "name": name, "image": image, "imageID": image_id(image), "containerID": container_id,
                    "ready": true, "started": true, "restartCount": restarts, "lastState": {},
                    "state": {"running": {"startedAt": now()}},
                }));
            }
            let current = self.latest(&rx, &pod);
            self.write_status(
                &current,
                json!({
                    "phase": "Running",
                    "conditions": pod_conditions(&current, true, "", &now()),
                    "hostIP": self.host_ip(),
                    "hostIPs": [{"ip": self.host_ip()}],
                    "podIP": pod_ip,
                    "podIPs": [{"ip": pod_ip}],
                    "startTime": start_time,
                    "containerStatuses": statuses,
                    "qosClass": qos_class(&current),
                }),
            )
            .await;

            let crashes = containers.iter().any(container_crashes);
            if !crashes && restart_policy == "Always" {
                // A long-running service: nothing more happens until deletion.
                std::future::pending::<()>().await;
            }
            let (exit_code, reason) = if crashes { (1, "Error") } else { (0, "Completed") };
            self.clock.sleep(if crashes { self.timing.crash_after } else { self.timing.run_to_completion }).await;
            let finished = now();
            let terminated: Vec<Value> = statuses
                .iter()
                .map(|s| {
                    let mut s = s.clone();
                    s["ready"] = json!(false);
                    s["started"] = json!(false);
                    s["state"] = json!({"terminated": {"exitCode": exit_code, "reason": reason, "startedAt": s["state"]["running"]["startedAt"], "finishedAt": finished, "containerID": s["containerID"]}});
                    s
                })
                .collect();
            let restart = crashes && restart_policy != "Never";
            let current = self.latest(&rx, &pod);
            if !restart {
                let phase = if crashes { "Failed" } else { "Succeeded" };
                self.write_status(
                    &current,
                    json!({
                        "phase": phase,
                        "conditions": pod_conditions(&current, false, "PodCompleted", &now()),
                        "hostIP": self.host_ip(),
                        "podIP": pod_ip,
                        "podIPs": [{"ip": pod_ip}],
                        "startTime": start_time,
                        "containerStatuses": terminated,
                        "qosClass": qos_class(&current),
                    }),
                )
                .await;
                return;
            }
            // Crash loop: report the back-off, wait it out, restart.
            restarts += 1;
            let crashed: Vec<Value> = terminated
                .iter()
                .map(|s| {
                    let mut w = s.clone();
                    let name = s["name"].as_str().unwrap_or_default();
                    w["lastState"] = s["state"].clone();
                    w["restartCount"] = json!(restarts);
                    w["state"] = json!({"waiting": {"reason": "CrashLoopBackOff", "message": format!(
                        "back-off {} restarting failed container={name} pod={}_{}({})",
                        meta::go_duration(backoff), meta::name(&pod), meta::namespace(&pod), meta::uid(&pod))}});
                    w
                })
                .collect();
            self.write_status(
                &current,
                json!({
                    "phase": "Running",
                    "conditions": pod_conditions(&current, false, "ContainersNotReady", &now()),
                    "hostIP": self.host_ip(),
                    "podIP": pod_ip,
                    "podIPs": [{"ip": pod_ip}],
                    "startTime": start_time,
                    "containerStatuses": crashed,
                    "qosClass": qos_class(&current),
                }),
            )
            .await;
            for c in containers.iter().filter(|c| container_crashes(c)) {
                let name = c["name"].as_str().unwrap_or_default();
                let (involved, field) = self.container_event(&current, name);
                let message = format!("Back-off restarting failed container {name} in pod {}_{}({})", meta::name(&pod), meta::namespace(&pod), meta::uid(&pod));
                self.recorder.record(&involved, Some(&field), EventType::Warning, "BackOff", &message).await;
            }
            self.clock.sleep(backoff).await;
            if self.clock.is_virtual() {
                // Virtual time skips the back-off; keep a real pause so a crash loop cannot spin.
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            backoff = (backoff * 2).min(Duration::from_secs(300));
        }
    }

    /// Graceful deletion: stop the containers, then remove the pod with grace period 0.
    async fn terminate(&self, pod: &Value) {
        let was_running = pod["status"]["containerStatuses"]
            .as_array()
            .is_some_and(|s| s.iter().any(|c| c["state"]["running"].is_object() || c["state"]["waiting"]["reason"] == "CrashLoopBackOff"));
        if was_running {
            for name in container_names(pod) {
                let (involved, field) = self.container_event(pod, &name);
                self.recorder.record(&involved, Some(&field), EventType::Normal, "Killing", &format!("Stopping container {name}")).await;
            }
            self.clock.sleep(self.timing.termination).await;
        }
        let params = DeleteParams { grace_period_seconds: Some(0), precondition_uid: Some(meta::uid(pod).to_string()), ..Default::default() };
        for attempt in 0..5 {
            match self.client.delete(&resources::PODS, Some(meta::namespace(pod)), meta::name(pod), &params).await {
                Ok(_) => return,
                Err(e) if e.is_not_found() || e.is_conflict() => return,
                Err(e) => {
                    tracing::debug!(pod = meta::name(pod), attempt, error = %e, "final pod delete failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crash_detection_follows_image_and_command() {
        assert!(container_crashes(&json!({"image": "example.com/crashloop:1"})));
        assert!(container_crashes(&json!({"image": "alpine:3.16", "command": ["sh", "-c", "exit 1"]})));
        assert!(container_crashes(&json!({"image": "alpine:3.16", "command": ["false"]})));
        assert!(!container_crashes(&json!({"image": "alpine:3.16", "command": ["sleep", "3600"]})));
    }

    #[test]
    fn pull_policy_defaults_by_tag() {
        assert_eq!(pull_policy(&json!({"image": "alpine:3.16"})), "IfNotPresent");
        assert_eq!(pull_policy(&json!({"image": "alpine"})), "Always");
        assert_eq!(pull_policy(&json!({"image": "alpine:latest"})), "Always");
        assert_eq!(pull_policy(&json!({"image": "alpine", "imagePullPolicy": "Never"})), "Never");
    }

    #[test]
    fn qos_classes() {
        assert_eq!(qos_class(&json!({"spec": {"containers": [{"resources": {}}]}})), "BestEffort");
        assert_eq!(qos_class(&json!({"spec": {"containers": [{"resources": {"requests": {"cpu": "1"}}}]}})), "Burstable");
        assert_eq!(
            qos_class(&json!({"spec": {"containers": [{"resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}})),
            "Guaranteed"
        );
    }

    #[test]
    fn conditions_keep_transition_times_and_explain_unready() {
        let pod = json!({"spec": {"containers": [{"name": "alpine"}]}, "status": {"conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z"}]}});
        let c = pod_conditions(&pod, false, "ContainersNotReady", "2024-01-01T00:00:05Z");
        assert_eq!(c[3]["lastTransitionTime"], "2024-01-01T00:00:00Z");
        assert_eq!(c[1]["reason"], "ContainersNotReady");
        assert_eq!(c[1]["message"], "containers with unready status: [alpine]");
        assert_eq!(c[0]["lastTransitionTime"], "2024-01-01T00:00:05Z");
    }

    #[test]
    fn image_ids_name_the_registry() {
        assert!(image_id("alpine:3.16").starts_with("docker.io/library/alpine@sha256:"));
        assert!(image_id("ghcr.io/x/y:1").starts_with("ghcr.io/x/y@sha256:"));
    }
}
