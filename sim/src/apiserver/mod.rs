//! An in-memory Kubernetes API server spoken over real HTTPS (and optionally plain HTTP):
//! discovery, CRUD, list/watch with resourceVersions and bookmarks, patches, subresources,
//! CRDs, managedFields and the apiserver's audit stages — enough for kubectl, kube-rs and the
//! Python client to work unchanged. It is not conformant: no RBAC (every authenticated user is
//! allowed), no admission webhooks, no protobuf, one version per resource.
//!
//! ```no_run
//! # async fn demo() -> Result<(), kausal_sim::apiserver::Error> {
//! use kausal_sim::apiserver::{ApiServer, ApiServerConfig};
//! let server = ApiServer::start(ApiServerConfig::default()).await?;
//! server.write_kubeconfig("/tmp/kubeconfig".as_ref())?;
//! println!("{}", server.https_url());
//! server.shutdown().await;
//! # Ok(()) }
//! ```

pub mod defaults;
pub mod events_view;
pub mod http;
pub mod managed_fields;
pub mod openapi;
pub mod patch;
pub mod resources;
pub mod selector;
pub mod status;
pub mod store;
pub mod table;
pub mod tls;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use kausal_core::audit::UserInfo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

pub use self::status::ApiError;
pub use self::store::Store;
use crate::audit::{AuditConfig, AuditError, Auditor};
use crate::clock::Clock;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error("cannot write kubeconfig {path}: {source}")]
    Kubeconfig {
        path: String,
        source: std::io::Error,
    },
}

/// The user the default kubeconfig authenticates as.
pub const ADMIN_USER: &str = "kubernetes-admin";

/// How to run an API server. `Default` listens on an ephemeral loopback port with HTTPS only,
/// no auditing, a 10,000-event watch history per resource and bookmarks every 5 s.
#[derive(Clone, Debug)]
pub struct ApiServerConfig {
    /// HTTPS listener; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Optional plain-HTTP listener (same API, same authentication).
    pub http_listen: Option<SocketAddr>,
    /// The admin's bearer token; None generates a random one.
    pub admin_token: Option<String>,
    /// Further bearer tokens and the users they authenticate.
    pub users: Vec<(String, UserInfo)>,
    /// Watch events kept per resource; a resourceVersion older than that answers 410 Expired.
    pub watch_history: usize,
    /// How often watches that allow bookmarks get one.
    pub bookmark_interval: Duration,
    /// Whether deleting a pod bound to a node waits for its kubelet (deletionTimestamp plus
    /// grace period) instead of removing it at once, like the real pod strategy.
    pub graceful_pod_deletion: bool,
    /// `gitVersion` served at `/version`.
    pub server_version: String,
    pub audit: AuditConfig,
    pub clock: Clock,
}

impl Default for ApiServerConfig {
    fn default() -> Self {
        ApiServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            http_listen: None,
            admin_token: None,
            users: Vec::new(),
            watch_history: 10_000,
            bookmark_interval: Duration::from_secs(5),
            graceful_pod_deletion: true,
            server_version: "v1.31.0".to_string(),
            audit: AuditConfig::default(),
            clock: Clock::wall(),
        }
    }
}

pub struct ApiServer;

/// A started API server. Dropping it does not stop it; call `shutdown`.
pub struct RunningApiServer {
    state: Arc<http::ServerState>,
    https_addr: SocketAddr,
    http_addr: Option<SocketAddr>,
    ca_pem: String,
    admin_token: String,
    shutdown: tokio::sync::watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

fn admin_user() -> UserInfo {
    UserInfo {
        username: ADMIN_USER.to_string(),
        groups: vec![
            "system:masters".to_string(),
            "system:authenticated".to_string(),
        ],
        ..Default::default()
    }
}

fn random_token() -> String {
    store::new_uuid().replace('-', "")
}

impl ApiServer {
    /// Binds the listeners, generates the certificates, starts the audit backends and returns
    /// once the server accepts connections. Must run inside a tokio runtime.
    pub async fn start(config: ApiServerConfig) -> Result<RunningApiServer, Error> {
        let pki = tls::generate(&[config.listen.ip().to_string()])?;
        let auditor = Arc::new(Auditor::start(config.audit.clone())?);
        let admin_token = config.admin_token.clone().unwrap_or_else(random_token);
        let mut users: HashMap<String, UserInfo> = config.users.iter().cloned().collect();
        users.insert(admin_token.clone(), admin_user());
        let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
        let store = Arc::new(Store::new(
            config.clock.clone(),
            config.watch_history,
            config.graceful_pod_deletion,
        ));
        let https_listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| Error::Listen {
                    addr: config.listen,
                    source,
                })?;
        let https_addr = https_listener
            .local_addr()
            .map_err(|source| Error::Listen {
                addr: config.listen,
                source,
            })?;
        let state = Arc::new(http::ServerState {
            store,
            auditor,
            users: RwLock::new(users),
            clock: config.clock.clone(),
            bookmark_interval: config.bookmark_interval,
            server_version: config.server_version.clone(),
            server_address: RwLock::new(https_addr.to_string()),
            shutdown: shutdown_rx,
        });
        let mut tasks = vec![tokio::spawn(accept_loop(
            https_listener,
            Some(TlsAcceptor::from(pki.server_config.clone())),
            state.clone(),
        ))];
        let mut http_addr = None;
        if let Some(addr) = config.http_listen {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| Error::Listen { addr, source })?;
            http_addr = Some(
                listener
                    .local_addr()
                    .map_err(|source| Error::Listen { addr, source })?,
            );
            tasks.push(tokio::spawn(accept_loop(listener, None, state.clone())));
        }
        tracing::info!(https = %https_addr, http = ?http_addr, "simulated API server listening");
        Ok(RunningApiServer {
            state,
            https_addr,
            http_addr,
            ca_pem: pki.ca_pem,
            admin_token,
            shutdown: shutdown_tx,
            tasks: Mutex::new(tasks),
        })
    }
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    state: Arc<http::ServerState>,
) {
    let mut shutdown = state.shutdown.clone();
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let mut shutdown = state.shutdown.clone();
            let service_state = state.clone();
            let service = hyper::service::service_fn(move |req| {
                http::handle(service_state.clone(), req, remote)
            });
            let builder = auto::Builder::new(TokioExecutor::new());
            let served = match tls {
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(tls_stream) => {
                        let conn = builder.serve_connection(TokioIo::new(tls_stream), service);
                        tokio::select! { r = conn => r, _ = shutdown.changed() => Ok(()) }
                    }
                    Err(e) => {
                        tracing::debug!(%remote, error = %e, "TLS handshake failed");
                        return;
                    }
                },
                None => {
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    tokio::select! { r = conn => r, _ = shutdown.changed() => Ok(()) }
                }
            };
            if let Err(e) = served {
                tracing::debug!(%remote, error = %e, "connection ended with an error");
            }
        });
    }
}

impl RunningApiServer {
    pub fn https_url(&self) -> String {
        format!("https://{}", self.https_addr)
    }

    pub fn http_url(&self) -> Option<String> {
        self.http_addr.map(|a| format!("http://{a}"))
    }

    pub fn https_addr(&self) -> SocketAddr {
        self.https_addr
    }

    /// The CA that signed the serving certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// The kubeconfig (HTTPS server, embedded CA, admin token) as YAML.
    pub fn kubeconfig(&self) -> String {
        tls::kubeconfig(
            &self.https_url(),
            &self.ca_pem,
            ADMIN_USER,
            &self.admin_token,
        )
    }

    /// A kubeconfig for another user's token (added with `add_user`).
    pub fn kubeconfig_for(&self, user: &str, token: &str) -> String {
        tls::kubeconfig(&self.https_url(), &self.ca_pem, user, token)
    }

    pub fn write_kubeconfig(&self, path: &Path) -> Result<(), Error> {
        std::fs::write(path, self.kubeconfig()).map_err(|source| Error::Kubeconfig {
            path: path.display().to_string(),
            source,
        })
    }

    /// Lets `token` authenticate as `user` from now on.
    pub fn add_user(&self, token: &str, user: UserInfo) {
        self.state
            .users
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(token.to_string(), user);
    }

    /// Expires every resourceVersion handed out so far for watches (they get 410 Gone).
    pub fn force_compact(&self) {
        self.state.store.force_compact();
    }

    /// In-process access to the objects, for fast reads and checks.
    pub fn store(&self) -> Arc<Store> {
        self.state.store.clone()
    }

    pub fn auditor(&self) -> Arc<Auditor> {
        self.state.auditor.clone()
    }

    /// Stops accepting, ends watches and open connections, flushes the audit backends.
    /// Idempotent.
    pub async fn shutdown(&self) {
        let _ = self.shutdown.send(true);
        let tasks: Vec<JoinHandle<()>> =
            std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for t in tasks {
            let _ = t.await;
        }
        // Let watch tasks record ResponseComplete before the backends go.
        tokio::time::sleep(Duration::from_millis(20)).await;
        self.state.auditor.shutdown().await;
    }
}
