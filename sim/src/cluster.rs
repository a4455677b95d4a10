//! One running simulated cluster: the API server (with its audit backends), every control loop
//! and a kubelet per node, wired together with their own identities. This is what `kausal
//! demo`, `kausal sim`, the integration tests and the benchmarks start:
//!
//! ```no_run
//! # async fn demo() -> Result<(), kausal_sim::cluster::SimError> {
//! let cluster = kausal_sim::cluster::SimCluster::builder().nodes(3).audit_webhook("http://127.0.0.1:8443/audit").start().await?;
//! println!("{}", cluster.https_url());
//! cluster.shutdown().await;
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::apiserver::{ApiServer, ApiServerConfig, RunningApiServer};
use crate::audit::{AuditConfig, LogConfig, Policy, WebhookConfig, WebhookTarget};
use crate::client::{ApiClient, ClientError, Identity, ListParams, resources};
use crate::clock::Clock;
use crate::controllers::{self, ControlPlaneIdentities, ControlPlaneOptions, KubeletTiming, NodeCapacity, meta};
use crate::scenario::{Scenario, ScenarioError};

/// What can stop a cluster from starting.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("audit configuration: {0}")]
    Audit(String),
    #[error("API server: {0}")]
    ApiServer(#[from] crate::apiserver::Error),
    #[error("API client: {0}")]
    Client(#[from] ClientError),
    #[error("nodes did not become Ready within {0:?}: {1}")]
    NodesNotReady(Duration, String),
}

/// Entry point: `SimCluster::builder()`.
pub struct SimCluster;

impl SimCluster {
    pub fn builder() -> SimClusterBuilder {
        SimClusterBuilder::default()
    }
}

/// How to start a cluster. Defaults: 3 nodes, HTTPS on an ephemeral loopback port, no audit
/// backend, wall clock, default kubelet timings and node capacity (4 CPUs, 16 GiB, 110 pods).
#[derive(Clone, Debug)]
pub struct SimClusterBuilder {
    nodes: usize,
    listen: SocketAddr,
    http_listen: Option<SocketAddr>,
    audit_policy: Option<Policy>,
    audit_policy_file: Option<PathBuf>,
    audit_webhook: Option<WebhookConfig>,
    audit_webhook_url: Option<String>,
    audit_webhook_config: Option<PathBuf>,
    audit_log: Option<LogConfig>,
    clock: Clock,
    kubelet_timing: KubeletTiming,
    node_capacity: NodeCapacity,
    kubeconfig_out: Option<PathBuf>,
    watch_history: Option<usize>,
    bookmark_interval: Option<Duration>,
    ready_timeout: Duration,
}

impl Default for SimClusterBuilder {
    fn default() -> Self {
        SimClusterBuilder {
            nodes: 3,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            http_listen: None,
            audit_policy: None,
            audit_policy_file: None,
            audit_webhook: None,
            audit_webhook_url: None,
            audit_webhook_config: None,
            audit_log: None,
            clock: Clock::wall(),
            kubelet_timing: KubeletTiming::default(),
            node_capacity: NodeCapacity::default(),
            kubeconfig_out: None,
            watch_history: None,
            bookmark_interval: None,
            ready_timeout: Duration::from_secs(30),
        }
    }
}

impl SimClusterBuilder {
    /// Number of nodes (`node-1` … `node-N`), each with its kubelet.
    pub fn nodes(mut self, n: usize) -> Self {
        self.nodes = n;
        self
    }
    /// The HTTPS listen address (port 0 picks a free port).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }
    /// Also serve plain HTTP here.
    pub fn http_listen(mut self, addr: SocketAddr) -> Self {
        self.http_listen = Some(addr);
        self
    }
    pub fn audit_policy(mut self, policy: Policy) -> Self {
        self.audit_policy = Some(policy);
        self
    }
    /// An audit.k8s.io/v1 Policy file (`--audit-policy-file`).
    pub fn audit_policy_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.audit_policy_file = Some(path.into());
        self
    }
    /// Send audit events to this URL with the apiserver's default batching.
    pub fn audit_webhook(mut self, url: impl Into<String>) -> Self {
        self.audit_webhook_url = Some(url.into());
        self
    }
    /// A webhook kubeconfig (`--audit-webhook-config-file`).
    pub fn audit_webhook_config(mut self, path: impl Into<PathBuf>) -> Self {
        self.audit_webhook_config = Some(path.into());
        self
    }
    /// Full control over the webhook backend (mode, batching, retries).
    pub fn audit_webhook_settings(mut self, config: WebhookConfig) -> Self {
        self.audit_webhook = Some(config);
        self
    }
    /// Write audit events as JSON lines to this file (`--audit-log-path`).
    pub fn audit_log(mut self, path: impl Into<PathBuf>) -> Self {
        self.audit_log = Some(LogConfig::new(path));
        self
    }
    pub fn audit_log_settings(mut self, config: LogConfig) -> Self {
        self.audit_log = Some(config);
        self
    }
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }
    pub fn kubelet_timing(mut self, timing: KubeletTiming) -> Self {
        self.kubelet_timing = timing;
        self
    }
    pub fn node_capacity(mut self, capacity: NodeCapacity) -> Self {
        self.node_capacity = capacity;
        self
    }
    /// Write the admin kubeconfig here once the server is up.
    pub fn kubeconfig_out(mut self, path: impl Into<PathBuf>) -> Self {
        self.kubeconfig_out = Some(path.into());
        self
    }
    /// Watch events kept per resource before a resourceVersion expires (410).
    pub fn watch_history(mut self, events: usize) -> Self {
        self.watch_history = Some(events);
        self
    }
    /// How often watches that asked for bookmarks get one (default 5 s).
    pub fn bookmark_interval(mut self, interval: Duration) -> Self {
        self.bookmark_interval = Some(interval);
        self
    }
    /// How long `start` waits for every node to register and report Ready.
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    fn audit_config(&self) -> Result<AuditConfig, SimError> {
        let policy = match (&self.audit_policy, &self.audit_policy_file) {
            (Some(p), _) => Some(p.clone()),
            (None, Some(path)) => Some(Policy::load(path).map_err(|e| SimError::Audit(format!("{}: {e}", path.display())))?),
            (None, None) => None,
        };
        let webhook = if let Some(w) = &self.audit_webhook {
            Some(w.clone())
        } else if let Some(url) = &self.audit_webhook_url {
            Some(WebhookConfig::new(WebhookTarget { url: url.clone(), ..Default::default() }))
        } else if let Some(path) = &self.audit_webhook_config {
            Some(WebhookConfig::new(WebhookTarget::from_kubeconfig(path).map_err(|e| SimError::Audit(e.to_string()))?))
        } else {
            None
        };
        Ok(AuditConfig { policy, log: self.audit_log.clone(), webhook })
    }

    /// Starts the API server, the control plane and the kubelets, and returns once every node
    /// is Ready.
    pub async fn start(self) -> Result<SimClusterHandle, SimError> {
        let node_names: Vec<String> = (1..=self.nodes).map(|i| format!("node-{i}")).collect();
        let identities = ControlPlaneIdentities::generate(&node_names);
        let mut config = ApiServerConfig {
            listen: self.listen,
            http_listen: self.http_listen,
            audit: self.audit_config()?,
            clock: self.clock.clone(),
            users: identities.all().into_iter().map(|id| (id.token.clone(), id.user_info())).collect(),
            ..ApiServerConfig::default()
        };
        if let Some(h) = self.watch_history {
            config.watch_history = h;
        }
        if let Some(i) = self.bookmark_interval {
            config.bookmark_interval = i;
        }
        let apiserver = ApiServer::start(config).await?;
        let admin_identity = Identity::kubectl_admin(apiserver.admin_token());
        let admin = ApiClient::new(&apiserver.https_url(), Some(apiserver.ca_pem()), &admin_identity)?;
        if let Some(path) = &self.kubeconfig_out {
            apiserver.write_kubeconfig(path)?;
        }
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let object = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            match admin.create(&resources::NAMESPACES, None, &object).await {
                Ok(_) => {}
                Err(e) if e.code() == Some(409) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let mut tasks = JoinSet::new();
        let options = ControlPlaneOptions { node_capacity: self.node_capacity.clone(), kubelet_timing: self.kubelet_timing.clone() };
        controllers::spawn_control_plane(&admin, &identities, &options, &self.clock, &mut tasks);
        let handle = SimClusterHandle {
            apiserver,
            admin,
            tasks: tokio::sync::Mutex::new(tasks),
            clock: self.clock.clone(),
            node_names,
            identities,
            kubeconfig_path: self.kubeconfig_out.clone(),
        };
        handle.wait_for_nodes(self.ready_timeout).await?;
        tracing::info!(url = %handle.https_url(), nodes = handle.node_names.len(), "simulated cluster ready");
        Ok(handle)
    }
}

/// A running cluster. `shutdown` stops it; dropping it leaves it running until the runtime ends.
pub struct SimClusterHandle {
    apiserver: RunningApiServer,
    admin: ApiClient,
    tasks: tokio::sync::Mutex<JoinSet<()>>,
    clock: Clock,
    node_names: Vec<String>,
    identities: ControlPlaneIdentities,
    kubeconfig_path: Option<PathBuf>,
}

impl SimClusterHandle {
    pub fn https_url(&self) -> String {
        self.apiserver.https_url()
    }
    pub fn http_url(&self) -> Option<String> {
        self.apiserver.http_url()
    }
    pub fn ca_pem(&self) -> &str {
        self.apiserver.ca_pem()
    }
    pub fn admin_token(&self) -> &str {
        self.apiserver.admin_token()
    }
    /// The admin kubeconfig as YAML.
    pub fn kubeconfig(&self) -> String {
        self.apiserver.kubeconfig()
    }
    pub fn write_kubeconfig(&self, path: &Path) -> Result<(), SimError> {
        Ok(self.apiserver.write_kubeconfig(path)?)
    }
    /// Where `kubeconfig_out` wrote the kubeconfig, if it was asked to.
    pub fn kubeconfig_path(&self) -> Option<&Path> {
        self.kubeconfig_path.as_deref()
    }
    /// A client acting as the cluster admin through kubectl (what scenarios use).
    pub fn admin_client(&self) -> ApiClient {
        self.admin.clone()
    }
    /// A client acting as `identity`, whose token must be known to the apiserver (see
    /// [`SimClusterHandle::add_user`]).
    pub fn client_for(&self, identity: &Identity) -> ApiClient {
        self.admin.with_identity(identity)
    }
    /// Registers a further bearer token.
    pub fn add_user(&self, identity: &Identity) {
        self.apiserver.add_user(&identity.token, identity.user_info());
    }
    pub fn identities(&self) -> &ControlPlaneIdentities {
        &self.identities
    }
    pub fn node_names(&self) -> &[String] {
        &self.node_names
    }
    pub fn clock(&self) -> &Clock {
        &self.clock
    }
    pub fn apiserver(&self) -> &RunningApiServer {
        &self.apiserver
    }

    /// Runs a scenario as the admin (looping ones run until the returned future is dropped).
    pub async fn run_scenario(&self, scenario: &Scenario) -> Result<(), ScenarioError> {
        crate::scenario::run_scenario(&self.admin, &self.clock, scenario).await
    }

    async fn wait_for_nodes(&self, timeout: Duration) -> Result<(), SimError> {
        let started = Instant::now();
        let mut last;
        loop {
            match self.admin.list(&resources::NODES, None, &ListParams::default()).await {
                Ok(list) => {
                    let ready = list
                        .items
                        .iter()
                        .filter(|n| meta::condition(n, "Ready").is_some_and(|c| c["status"] == "True"))
                        .count();
                    if ready >= self.node_names.len() {
                        return Ok(());
                    }
                    last = format!("{ready}/{} Ready", self.node_names.len());
                }
                Err(e) => last = e.to_string(),
            }
            if started.elapsed() > timeout {
                return Err(SimError::NodesNotReady(timeout, last));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the control plane, then the API server (flushing its audit backends). Idempotent.
    pub async fn shutdown(&self) {
        self.tasks.lock().await.shutdown().await;
        self.apiserver.shutdown().await;
    }
}
