//! The Kubernetes edge of the reports: connecting (kubeconfig file or in-cluster), the server
//! version, and paged lists — metadata-only where metadata is enough, full objects for nodes.
//! A resource the server does not serve lists as `None`, so callers can tell "no such API"
//! from "zero objects". No decisions are made here.

use std::path::Path;

use kube::api::{Api, DynamicObject, ListParams, ObjectMeta};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::{ApiResource, GroupVersionKind};

/// Why talking to the cluster failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("reading kubeconfig {path}: {message}")]
    Kubeconfig { path: String, message: String },
    #[error("no kubeconfig given and no in-cluster configuration found: {0}")]
    Infer(String),
    #[error("building the Kubernetes client: {0}")]
    Client(String),
    #[error("{what}: {message}")]
    Request { what: String, message: String },
}

/// The apiserver's `/version`, the parts reports use.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerVersion {
    pub git_version: String,
    /// `linux/amd64`.
    pub platform: String,
}

/// A node, reduced to what platform detection reads.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeFacts {
    pub name: String,
    pub provider_id: Option<String>,
    pub labels: std::collections::BTreeMap<String, String>,
    pub annotations: std::collections::BTreeMap<String, String>,
    /// `status.nodeInfo.architecture`.
    pub architecture: Option<String>,
}

/// How often a paged list starts over after its continue token expired.
const MAX_LIST_RESTARTS: usize = 3;

/// One resource to list: group (empty for core), version, plural.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceRef {
    pub group: String,
    pub version: String,
    pub resource: String,
}

impl ResourceRef {
    pub fn new(group: &str, version: &str, resource: &str) -> Self {
        ResourceRef {
            group: group.to_string(),
            version: version.to_string(),
            resource: resource.to_string(),
        }
    }

    fn api_resource(&self) -> ApiResource {
        // The kind only fills in type metadata of objects we never send back; lists need the
        // plural alone.
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(&self.group, &self.version, ""),
            &self.resource,
        )
    }
}

impl std::fmt::Display for ResourceRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.group.is_empty() {
            write!(f, "{}/{}", self.version, self.resource)
        } else {
            write!(f, "{}/{}/{}", self.group, self.version, self.resource)
        }
    }
}

/// Label and field selectors of a list; empty strings select everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selectors {
    pub namespace: Option<String>,
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
}

/// A connected cluster.
#[derive(Clone)]
pub struct ClusterClient {
    client: kube::Client,
    page_size: u32,
}

impl ClusterClient {
    /// Connects with `kubeconfig` (its current context), or with the in-cluster service account
    /// / `$KUBECONFIG` / `~/.kube/config` when `None`.
    pub async fn connect(
        kubeconfig: Option<&Path>,
        page_size: u32,
    ) -> Result<ClusterClient, ClusterError> {
        install_crypto_provider();
        let config = match kubeconfig {
            Some(path) => {
                let kc = Kubeconfig::read_from(path).map_err(|e| ClusterError::Kubeconfig {
                    path: path.display().to_string(),
                    message: e.to_string(),
                })?;
                kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                    .await
                    .map_err(|e| ClusterError::Kubeconfig {
                        path: path.display().to_string(),
                        message: e.to_string(),
                    })?
            }
            None => kube::Config::infer()
                .await
                .map_err(|e| ClusterError::Infer(e.to_string()))?,
        };
        let client =
            kube::Client::try_from(config).map_err(|e| ClusterError::Client(e.to_string()))?;
        Ok(ClusterClient {
            client,
            page_size: page_size.max(1),
        })
    }

    pub fn kube(&self) -> &kube::Client {
        &self.client
    }

    pub async fn version(&self) -> Result<ServerVersion, ClusterError> {
        let info = self
            .client
            .apiserver_version()
            .await
            .map_err(|e| ClusterError::Request {
                what: "GET /version".to_string(),
                message: e.to_string(),
            })?;
        Ok(ServerVersion {
            git_version: info.git_version,
            platform: info.platform,
        })
    }

    fn api(&self, resource: &ResourceRef, namespace: Option<&str>) -> Api<DynamicObject> {
        let ar = resource.api_resource();
        match namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &ar),
            None => Api::all_with(self.client.clone(), &ar),
        }
    }

    fn params(&self, selectors: &Selectors) -> ListParams {
        let mut lp = ListParams::default().limit(self.page_size);
        if let Some(l) = selectors
            .label_selector
            .as_deref()
            .filter(|s| !s.is_empty())
        {
            lp = lp.labels(l);
        }
        if let Some(f) = selectors
            .field_selector
            .as_deref()
            .filter(|s| !s.is_empty())
        {
            lp = lp.fields(f);
        }
        lp
    }

    /// Metadata of every object, page by page; `None` when the server does not serve the
    /// resource (404).
    pub async fn list_metadata(
        &self,
        resource: &ResourceRef,
        selectors: &Selectors,
    ) -> Result<Option<Vec<ObjectMeta>>, ClusterError> {
        let api = self.api(resource, selectors.namespace.as_deref());
        let base = self.params(selectors);
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        let mut restarts = 0;
        loop {
            let lp = match &token {
                Some(t) => base.clone().continue_token(t),
                None => base.clone(),
            };
            match api.list_metadata(&lp).await {
                Ok(page) => {
                    out.extend(page.items.into_iter().map(|i| i.metadata));
                    token = page.metadata.continue_.filter(|t| !t.is_empty());
                    if token.is_none() {
                        return Ok(Some(out));
                    }
                }
                Err(kube::Error::Api(status)) if status.is_not_found() && token.is_none() => {
                    return Ok(None);
                }
                // The continue token expired (410 Gone) between pages: count again from the start.
                Err(kube::Error::Api(status))
                    if status.code == 410 && token.is_some() && restarts < MAX_LIST_RESTARTS =>
                {
                    restarts += 1;
                    out.clear();
                    token = None;
                }
                Err(e) => {
                    return Err(ClusterError::Request {
                        what: format!("listing {resource}"),
                        message: e.to_string(),
                    });
                }
            }
        }
    }

    /// Number of objects (paged metadata lists); `None` when the resource is not served.
    pub async fn count(
        &self,
        resource: &ResourceRef,
        selectors: &Selectors,
    ) -> Result<Option<usize>, ClusterError> {
        Ok(self
            .list_metadata(resource, selectors)
            .await?
            .map(|v| v.len()))
    }

    /// Every node with its providerID, labels, annotations and architecture.
    pub async fn nodes(&self) -> Result<Vec<NodeFacts>, ClusterError> {
        let resource = ResourceRef::new("", "v1", "nodes");
        let api = self.api(&resource, None);
        let base = self.params(&Selectors::default());
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        let mut restarts = 0;
        loop {
            let lp = match &token {
                Some(t) => base.clone().continue_token(t),
                None => base.clone(),
            };
            let page = match api.list(&lp).await {
                Ok(page) => page,
                Err(kube::Error::Api(status))
                    if status.code == 410 && token.is_some() && restarts < MAX_LIST_RESTARTS =>
                {
                    restarts += 1;
                    out.clear();
                    token = None;
                    continue;
                }
                Err(e) => {
                    return Err(ClusterError::Request {
                        what: "listing nodes".to_string(),
                        message: e.to_string(),
                    });
                }
            };
            for node in page.items {
                out.push(NodeFacts {
                    name: node.metadata.name.clone().unwrap_or_default(),
                    provider_id: node
                        .data
                        .pointer("/spec/providerID")
                        .and_then(|v| v.as_str())
                        .map(str::to_string),
                    labels: node.metadata.labels.clone().unwrap_or_default(),
                    annotations: node.metadata.annotations.clone().unwrap_or_default(),
                    architecture: node
                        .data
                        .pointer("/status/nodeInfo/architecture")
                        .and_then(|v| v.as_str())
                        .map(str::to_string),
                });
            }
            token = page.metadata.continue_.filter(|t| !t.is_empty());
            if token.is_none() {
                return Ok(out);
            }
        }
    }
}

/// kube's rustls needs a process-wide crypto provider. kube is built with rustls + ring (workspace
/// features); install ring explicitly so that a second provider compiled in by another crate does
/// not leave rustls unable to choose. Installing twice is harmless.
fn install_crypto_provider() {
    let _already_installed = rustls::crypto::ring::default_provider().install_default();
}
