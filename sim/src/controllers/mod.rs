//! The control loops that make a workload happen — deployment, replicaset, statefulset and job
//! controllers, the garbage collector, the scheduler and one kubelet per node — each acting
//! through the REST API under its real identity and user agent, so that the apiserver's audit
//! log and Events read like a real cluster's. Each controller is a pure decision function
//! (`reconcile_*`, `schedule_pod`, `collect_garbage`) fed from informer caches, with a thin
//! I/O edge. They do not talk to each other except through the API.

pub mod deployment;
pub mod events;
pub mod gc;
pub mod informer;
pub mod job;
pub mod kubelet;
pub mod meta;
pub mod replicaset;
pub mod scheduler;
pub mod statefulset;

use tokio::task::JoinSet;

use crate::client::{ApiClient, Identity, ListParams, resources};
use crate::clock::Clock;

pub use kubelet::{KubeletTiming, NodeCapacity};

/// Every identity the simulated control plane acts as, each with its own bearer token.
#[derive(Clone, Debug)]
pub struct ControlPlaneIdentities {
    /// kube-controller-manager's own identity, used by its shared informers.
    pub controller_manager: Identity,
    pub deployment_controller: Identity,
    pub replicaset_controller: Identity,
    pub statefulset_controller: Identity,
    pub job_controller: Identity,
    pub garbage_collector: Identity,
    pub scheduler: Identity,
    /// (node name, kubelet identity).
    pub kubelets: Vec<(String, Identity)>,
}

fn random_token() -> String {
    meta::random_suffix(32)
}

impl ControlPlaneIdentities {
    /// Fresh random tokens for the controllers, the scheduler and a kubelet per node.
    pub fn generate(nodes: &[String]) -> ControlPlaneIdentities {
        let kcm_ua = format!("{}/shared-informers", crate::client::binary_user_agent("kube-controller-manager"));
        ControlPlaneIdentities {
            controller_manager: Identity {
                username: "system:kube-controller-manager".to_string(),
                groups: vec!["system:authenticated".to_string()],
                token: random_token(),
                user_agent: kcm_ua,
            },
            deployment_controller: Identity::controller("deployment-controller", random_token()),
            replicaset_controller: Identity::controller("replicaset-controller", random_token()),
            statefulset_controller: Identity::controller("statefulset-controller", random_token()),
            job_controller: Identity::controller("job-controller", random_token()),
            garbage_collector: Identity::controller("generic-garbage-collector", random_token()),
            scheduler: Identity::scheduler(random_token()),
            kubelets: nodes.iter().map(|n| (n.clone(), Identity::kubelet(n, random_token()))).collect(),
        }
    }

    /// All identities, for registering their tokens with the apiserver.
    pub fn all(&self) -> Vec<&Identity> {
        let mut all = vec![
            &self.controller_manager,
            &self.deployment_controller,
            &self.replicaset_controller,
            &self.statefulset_controller,
            &self.job_controller,
            &self.garbage_collector,
            &self.scheduler,
        ];
        all.extend(self.kubelets.iter().map(|(_, id)| id));
        all
    }
}

/// How the simulated nodes behave.
#[derive(Clone, Debug, Default)]
pub struct ControlPlaneOptions {
    pub node_capacity: NodeCapacity,
    pub kubelet_timing: KubeletTiming,
}

/// Starts every control loop and kubelet on `tasks`. `client` only supplies the apiserver
/// address and connection pool; each loop acts under its own identity.
pub fn spawn_control_plane(client: &ApiClient, ids: &ControlPlaneIdentities, options: &ControlPlaneOptions, clock: &Clock, tasks: &mut JoinSet<()>) {
    let kcm = client.with_identity(&ids.controller_manager);
    // Shared informers, as kube-controller-manager shares them between its controllers.
    let replica_sets = informer::Informer::new(resources::REPLICASETS, ListParams::default());
    replica_sets.spawn(kcm.clone(), tasks);
    let pods = informer::Informer::new(resources::PODS, ListParams::default());
    pods.spawn(kcm.clone(), tasks);

    deployment::DeploymentController::spawn(client.with_identity(&ids.deployment_controller), replica_sets.clone(), clock.clone(), tasks);
    replicaset::ReplicaSetController::spawn(client.with_identity(&ids.replicaset_controller), replica_sets.clone(), pods.clone(), clock.clone(), tasks);
    statefulset::StatefulSetController::spawn(client.with_identity(&ids.statefulset_controller), pods.clone(), clock.clone(), tasks);
    job::JobController::spawn(client.with_identity(&ids.job_controller), pods.clone(), clock.clone(), tasks);
    gc::GarbageCollector::spawn(client.with_identity(&ids.garbage_collector), &[replica_sets, pods], tasks);

    let scheduler_client = client.with_identity(&ids.scheduler);
    let scheduler_pods = informer::Informer::new(resources::PODS, ListParams::default());
    scheduler_pods.spawn(scheduler_client.clone(), tasks);
    let scheduler_nodes = informer::Informer::new(resources::NODES, ListParams::default());
    scheduler_nodes.spawn(scheduler_client.clone(), tasks);
    scheduler::Scheduler::spawn(scheduler_client, scheduler_pods, scheduler_nodes, clock.clone(), tasks);

    for (index, (node, identity)) in ids.kubelets.iter().enumerate() {
        kubelet::spawn_kubelet(
            client.with_identity(identity),
            node,
            u32::try_from(index).unwrap_or(u32::MAX),
            options.node_capacity.clone(),
            options.kubelet_timing.clone(),
            clock.clone(),
            tasks,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_are_distinct_and_named_like_a_real_cluster() {
        let ids = ControlPlaneIdentities::generate(&["node-1".to_string(), "node-2".to_string()]);
        let all = ids.all();
        assert_eq!(all.len(), 9);
        let tokens: std::collections::HashSet<&str> = all.iter().map(|i| i.token.as_str()).collect();
        assert_eq!(tokens.len(), 9);
        assert_eq!(ids.garbage_collector.username, "system:serviceaccount:kube-system:generic-garbage-collector");
        assert_eq!(ids.kubelets[1].1.username, "system:node:node-2");
    }
}
