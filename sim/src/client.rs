//! A small Kubernetes REST client over real HTTP(S): get, list, watch, create, update, patch,
//! delete and subresources, under one identity (bearer token and user agent) so that the
//! apiserver's audit log attributes every request like a real cluster's. Objects travel as
//! `serde_json::Value`; the client does not model Kubernetes types, and it does not cache —
//! caching lives in the controllers' informers.

use std::sync::{Arc, Once};
use std::time::Duration;

use serde_json::{Value, json};

/// The Kubernetes version the simulated components claim in their user agents.
pub const KUBE_VERSION: &str = "v1.31.0";
/// The git commit the simulated components claim in their user agents.
pub const KUBE_GIT_COMMIT: &str = "abcdef";

/// Who a client acts as: the bearer token the apiserver maps to a user, and the user agent it
/// sends (`kube-controller-manager/v1.31.0 (linux/amd64) kubernetes/abcdef/<user>`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub username: String,
    pub groups: Vec<String>,
    pub token: String,
    pub user_agent: String,
}

impl Identity {
    /// A kube-controller-manager controller running under its own service account
    /// (`--use-service-account-credentials`), e.g. `deployment-controller`.
    pub fn controller(name: &str, token: impl Into<String>) -> Identity {
        let username = format!("system:serviceaccount:kube-system:{name}");
        Identity {
            user_agent: format!("{}/{username}", binary_user_agent("kube-controller-manager")),
            groups: vec![
                "system:serviceaccounts".to_string(),
                "system:serviceaccounts:kube-system".to_string(),
                "system:authenticated".to_string(),
            ],
            username,
            token: token.into(),
        }
    }

    /// The default scheduler.
    pub fn scheduler(token: impl Into<String>) -> Identity {
        Identity {
            username: "system:kube-scheduler".to_string(),
            groups: vec!["system:authenticated".to_string()],
            token: token.into(),
            user_agent: format!("{}/scheduler", binary_user_agent("kube-scheduler")),
        }
    }

    /// The kubelet of `node`.
    pub fn kubelet(node: &str, token: impl Into<String>) -> Identity {
        Identity {
            username: format!("system:node:{node}"),
            groups: vec!["system:nodes".to_string(), "system:authenticated".to_string()],
            token: token.into(),
            user_agent: binary_user_agent("kubelet"),
        }
    }

    /// A cluster administrator using kubectl (what scenarios act as).
    pub fn kubectl_admin(token: impl Into<String>) -> Identity {
        Identity {
            username: "kubernetes-admin".to_string(),
            groups: vec!["system:masters".to_string(), "system:authenticated".to_string()],
            token: token.into(),
            user_agent: binary_user_agent("kubectl"),
        }
    }

    /// The user as the apiserver's authenticator sees it.
    pub fn user_info(&self) -> kausal_core::audit::UserInfo {
        kausal_core::audit::UserInfo {
            username: self.username.clone(),
            groups: self.groups.clone(),
            ..Default::default()
        }
    }
}

/// `<binary>/v1.31.0 (linux/amd64) kubernetes/abcdef`, client-go's default user agent shape.
pub fn binary_user_agent(binary: &str) -> String {
    format!("{binary}/{KUBE_VERSION} (linux/amd64) kubernetes/{KUBE_GIT_COMMIT}")
}

/// One REST resource: where it lives and what kind it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ApiResource {
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
}

impl ApiResource {
    /// `v1` for the core group, `apps/v1` otherwise.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.to_string() } else { format!("{}/{}", self.group, self.version) }
    }

    fn prefix(&self) -> String {
        if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        }
    }

    /// The collection path, namespaced when the resource is and `namespace` is given.
    pub fn collection_path(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) if self.namespaced && !ns.is_empty() => {
                format!("{}/namespaces/{ns}/{}", self.prefix(), self.plural)
            }
            _ => format!("{}/{}", self.prefix(), self.plural),
        }
    }

    pub fn object_path(&self, namespace: Option<&str>, name: &str) -> String {
        format!("{}/{name}", self.collection_path(namespace))
    }
}

/// The resources the simulator's components and scenarios use.
pub mod resources {
    use super::ApiResource;

    const fn core(plural: &'static str, kind: &'static str, namespaced: bool) -> ApiResource {
        ApiResource { group: "", version: "v1", plural, kind, namespaced }
    }
    const fn grouped(group: &'static str, plural: &'static str, kind: &'static str, namespaced: bool) -> ApiResource {
        ApiResource { group, version: "v1", plural, kind, namespaced }
    }

    pub const NAMESPACES: ApiResource = core("namespaces", "Namespace", false);
    pub const NODES: ApiResource = core("nodes", "Node", false);
    pub const PODS: ApiResource = core("pods", "Pod", true);
    pub const SERVICES: ApiResource = core("services", "Service", true);
    pub const ENDPOINTS: ApiResource = core("endpoints", "Endpoints", true);
    pub const CONFIGMAPS: ApiResource = core("configmaps", "ConfigMap", true);
    pub const SECRETS: ApiResource = core("secrets", "Secret", true);
    pub const SERVICEACCOUNTS: ApiResource = core("serviceaccounts", "ServiceAccount", true);
    pub const EVENTS: ApiResource = core("events", "Event", true);
    pub const EVENTS_V1: ApiResource = grouped("events.k8s.io", "events", "Event", true);
    pub const DEPLOYMENTS: ApiResource = grouped("apps", "deployments", "Deployment", true);
    pub const REPLICASETS: ApiResource = grouped("apps", "replicasets", "ReplicaSet", true);
    pub const STATEFULSETS: ApiResource = grouped("apps", "statefulsets", "StatefulSet", true);
    pub const DAEMONSETS: ApiResource = grouped("apps", "daemonsets", "DaemonSet", true);
    pub const JOBS: ApiResource = grouped("batch", "jobs", "Job", true);
    pub const LEASES: ApiResource = grouped("coordination.k8s.io", "leases", "Lease", true);

    /// Every resource above, for lookups by kind.
    pub const ALL: [ApiResource; 16] = [
        NAMESPACES, NODES, PODS, SERVICES, ENDPOINTS, CONFIGMAPS, SECRETS, SERVICEACCOUNTS, EVENTS, EVENTS_V1,
        DEPLOYMENTS, REPLICASETS, STATEFULSETS, DAEMONSETS, JOBS, LEASES,
    ];
}

/// The resource holding objects of `kind` in `api_version` (`apps/v1`, `v1`), if it is one the
/// simulator knows.
pub fn resource_for_kind(api_version: &str, kind: &str) -> Option<ApiResource> {
    resources::ALL.into_iter().find(|r| r.kind == kind && r.api_version() == api_version)
}

/// What went wrong talking to the apiserver.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("building the HTTP client: {0}")]
    Build(String),
    #[error("{method} {path}: {source}")]
    Transport { method: String, path: String, source: reqwest::Error },
    #[error("{method} {path}: {code} {reason}: {message}")]
    Api { method: String, path: String, code: u16, reason: String, message: String },
    #[error("{method} {path}: decoding the response: {message}")]
    Decode { method: String, path: String, message: String },
}

impl ClientError {
    /// The HTTP status code the apiserver answered with, if it answered.
    pub fn code(&self) -> Option<u16> {
        match self {
            ClientError::Api { code, .. } => Some(*code),
            _ => None,
        }
    }
    pub fn is_not_found(&self) -> bool {
        self.code() == Some(404)
    }
    pub fn is_conflict(&self) -> bool {
        self.code() == Some(409)
    }
    /// 410 Gone: the watched or listed resourceVersion is too old.
    pub fn is_gone(&self) -> bool {
        self.code() == Some(410)
    }
}

/// Selectors and paging for list and watch.
#[derive(Clone, Debug, Default)]
pub struct ListParams {
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    pub limit: Option<u32>,
    pub continue_token: Option<String>,
    pub resource_version: Option<String>,
}

impl ListParams {
    pub fn fields(selector: impl Into<String>) -> ListParams {
        ListParams { field_selector: Some(selector.into()), ..Default::default() }
    }
    pub fn labels(selector: impl Into<String>) -> ListParams {
        ListParams { label_selector: Some(selector.into()), ..Default::default() }
    }

    fn query(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        if let Some(s) = &self.label_selector {
            q.push(("labelSelector", s.clone()));
        }
        if let Some(s) = &self.field_selector {
            q.push(("fieldSelector", s.clone()));
        }
        if let Some(l) = self.limit {
            q.push(("limit", l.to_string()));
        }
        if let Some(c) = &self.continue_token {
            q.push(("continue", c.clone()));
        }
        if let Some(rv) = &self.resource_version {
            q.push(("resourceVersion", rv.clone()));
        }
        q
    }
}

/// A complete list (all pages) and the resourceVersion to watch from.
#[derive(Clone, Debug, Default)]
pub struct ObjectList {
    pub resource_version: String,
    pub items: Vec<Value>,
}

/// The kinds of watch event (`ADDED`, `MODIFIED`, `DELETED`, `BOOKMARK`, `ERROR`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchEventType {
    Added,
    Modified,
    Deleted,
    Bookmark,
    Error,
}

#[derive(Clone, Debug)]
pub struct WatchEvent {
    pub event_type: WatchEventType,
    pub object: Value,
}

/// Patch flavours, by content type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    Merge,
    Strategic,
    Json,
}

impl PatchType {
    fn content_type(self) -> &'static str {
        match self {
            PatchType::Merge => "application/merge-patch+json",
            PatchType::Strategic => "application/strategic-merge-patch+json",
            PatchType::Json => "application/json-patch+json",
        }
    }
}

/// `DeleteOptions` as sent in a DELETE body.
#[derive(Clone, Debug, Default)]
pub struct DeleteParams {
    /// `Background`, `Foreground` or `Orphan`; the apiserver's default when unset.
    pub propagation_policy: Option<String>,
    pub grace_period_seconds: Option<i64>,
    pub precondition_uid: Option<String>,
}

impl DeleteParams {
    pub fn background() -> DeleteParams {
        DeleteParams { propagation_policy: Some("Background".into()), ..Default::default() }
    }
    pub fn foreground() -> DeleteParams {
        DeleteParams { propagation_policy: Some("Foreground".into()), ..Default::default() }
    }
    pub fn orphan() -> DeleteParams {
        DeleteParams { propagation_policy: Some("Orphan".into()), ..Default::default() }
    }

    fn body(&self) -> Value {
        let mut body = json!({"kind": "DeleteOptions", "apiVersion": "v1"});
        if let Some(p) = &self.propagation_policy {
            body["propagationPolicy"] = json!(p);
        }
        if let Some(g) = self.grace_period_seconds {
            body["gracePeriodSeconds"] = json!(g);
        }
        if let Some(uid) = &self.precondition_uid {
            body["preconditions"] = json!({"uid": uid});
        }
        body
    }
}

static CRYPTO_PROVIDER: Once = Once::new();

/// Installs rustls' ring provider once per process; a provider installed by someone else is fine.
pub fn install_crypto_provider() {
    CRYPTO_PROVIDER.call_once(|| {
        let _already_installed = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A client acting as one identity against one apiserver. Cheap to clone; clones made with
/// [`ApiClient::with_identity`] share the connection pool.
#[derive(Clone, Debug)]
pub struct ApiClient {
    http: reqwest::Client,
    base_url: Arc<str>,
    token: Arc<str>,
    user_agent: Arc<str>,
}

impl ApiClient {
    /// A client for `base_url` (`https://127.0.0.1:6443`), trusting only `ca_pem` when given.
    pub fn new(base_url: &str, ca_pem: Option<&str>, identity: &Identity) -> Result<ApiClient, ClientError> {
        install_crypto_provider();
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(64)
            .http2_keep_alive_interval(Some(Duration::from_secs(30)));
        if let Some(pem) = ca_pem {
            let cert = reqwest::Certificate::from_pem(pem.as_bytes()).map_err(|e| ClientError::Build(e.to_string()))?;
            builder = builder.tls_certs_only([cert]);
        }
        let http = builder.build().map_err(|e| ClientError::Build(e.to_string()))?;
        Ok(ApiClient {
            http,
            base_url: Arc::from(base_url.trim_end_matches('/')),
            token: Arc::from(identity.token.as_str()),
            user_agent: Arc::from(identity.user_agent.as_str()),
        })
    }

    /// The same apiserver and connection pool, acting as someone else.
    pub fn with_identity(&self, identity: &Identity) -> ApiClient {
        ApiClient {
            http: self.http.clone(),
            base_url: self.base_url.clone(),
            token: Arc::from(identity.token.as_str()),
            user_agent: Arc::from(identity.user_agent.as_str()),
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base_url))
            .bearer_auth(&*self.token)
            .header(reqwest::header::USER_AGENT, &*self.user_agent)
            .header(reqwest::header::ACCEPT, "application/json")
    }

    async fn send(&self, method: reqwest::Method, path: &str, builder: reqwest::RequestBuilder) -> Result<Value, ClientError> {
        let response = builder.send().await.map_err(|source| ClientError::Transport {
            method: method.to_string(),
            path: path.to_string(),
            source,
        })?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|source| ClientError::Transport {
            method: method.to_string(),
            path: path.to_string(),
            source,
        })?;
        if !status.is_success() {
            return Err(api_error(&method, path, status.as_u16(), &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
            method: method.to_string(),
            path: path.to_string(),
            message: e.to_string(),
        })
    }

    pub async fn get(&self, resource: &ApiResource, namespace: Option<&str>, name: &str) -> Result<Value, ClientError> {
        let path = resource.object_path(namespace, name);
        self.send(reqwest::Method::GET, &path, self.request(reqwest::Method::GET, &path)).await
    }

    /// Lists every page of a collection (`namespace` None lists across namespaces).
    pub async fn list(&self, resource: &ApiResource, namespace: Option<&str>, params: &ListParams) -> Result<ObjectList, ClientError> {
        let path = resource.collection_path(namespace);
        let mut params = params.clone();
        if params.limit.is_none() {
            params.limit = Some(500);
        }
        let mut out = ObjectList::default();
        loop {
            let builder = self.request(reqwest::Method::GET, &with_query(&path, &params.query()));
            let page = self.send(reqwest::Method::GET, &path, builder).await?;
            out.resource_version = page["metadata"]["resourceVersion"].as_str().unwrap_or_default().to_string();
            if let Some(items) = page["items"].as_array() {
                for item in items {
                    let mut item = item.clone();
                    // Lists omit kind/apiVersion on items; put them back so caches hold whole objects.
                    if item.get("kind").is_none() {
                        item["kind"] = json!(resource.kind);
                        item["apiVersion"] = json!(resource.api_version());
                    }
                    out.items.push(item);
                }
            }
            match page["metadata"]["continue"].as_str() {
                Some(c) if !c.is_empty() => {
                    params.continue_token = Some(c.to_string());
                    params.resource_version = None;
                }
                _ => break,
            }
        }
        Ok(out)
    }

    /// Opens a watch from `resource_version` with bookmarks; the stream ends when the server
    /// closes it (after `timeout_seconds`).
    pub async fn watch(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        params: &ListParams,
        timeout_seconds: u32,
    ) -> Result<WatchStream, ClientError> {
        let path = resource.collection_path(namespace);
        let mut query = params.query();
        query.push(("watch", "true".to_string()));
        query.push(("allowWatchBookmarks", "true".to_string()));
        query.push(("timeoutSeconds", timeout_seconds.to_string()));
        let response = self
            .request(reqwest::Method::GET, &with_query(&path, &query))
            .send()
            .await
            .map_err(|source| ClientError::Transport { method: "WATCH".into(), path: path.clone(), source })?;
        let status = response.status();
        if !status.is_success() {
            let bytes = response.bytes().await.unwrap_or_default();
            return Err(api_error(&reqwest::Method::GET, &path, status.as_u16(), &bytes));
        }
        Ok(WatchStream { response, buffer: Vec::new(), path })
    }

    pub async fn create(&self, resource: &ApiResource, namespace: Option<&str>, object: &Value) -> Result<Value, ClientError> {
        let path = resource.collection_path(namespace);
        self.send(reqwest::Method::POST, &path, self.request(reqwest::Method::POST, &path).json(object)).await
    }

    /// PUT of a whole object; the object's resourceVersion makes it a compare-and-swap.
    pub async fn update(&self, resource: &ApiResource, namespace: Option<&str>, name: &str, object: &Value) -> Result<Value, ClientError> {
        let path = resource.object_path(namespace, name);
        self.send(reqwest::Method::PUT, &path, self.request(reqwest::Method::PUT, &path).json(object)).await
    }

    pub async fn patch(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        name: &str,
        patch_type: PatchType,
        patch: &Value,
    ) -> Result<Value, ClientError> {
        let path = resource.object_path(namespace, name);
        self.send_patch(&path, patch_type, patch).await
    }

    async fn send_patch(&self, path: &str, patch_type: PatchType, patch: &Value) -> Result<Value, ClientError> {
        let body = serde_json::to_vec(patch).map_err(|e| ClientError::Decode {
            method: "PATCH".into(),
            path: path.to_string(),
            message: e.to_string(),
        })?;
        let builder = self
            .request(reqwest::Method::PATCH, path)
            .header(reqwest::header::CONTENT_TYPE, patch_type.content_type())
            .body(body);
        self.send(reqwest::Method::PATCH, path, builder).await
    }

    /// DELETE; answers the object when it still exists (deletionTimestamp set, finalizers
    /// pending) or a `Status` when it is gone.
    pub async fn delete(&self, resource: &ApiResource, namespace: Option<&str>, name: &str, params: &DeleteParams) -> Result<Value, ClientError> {
        let path = resource.object_path(namespace, name);
        self.send(reqwest::Method::DELETE, &path, self.request(reqwest::Method::DELETE, &path).json(&params.body())).await
    }

    /// POST to a subresource (`pods/binding`).
    pub async fn create_subresource(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        name: &str,
        subresource: &str,
        body: &Value,
    ) -> Result<Value, ClientError> {
        let path = format!("{}/{subresource}", resource.object_path(namespace, name));
        self.send(reqwest::Method::POST, &path, self.request(reqwest::Method::POST, &path).json(body)).await
    }

    /// PUT to a subresource (`status`, `scale`).
    pub async fn update_subresource(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        name: &str,
        subresource: &str,
        body: &Value,
    ) -> Result<Value, ClientError> {
        let path = format!("{}/{subresource}", resource.object_path(namespace, name));
        self.send(reqwest::Method::PUT, &path, self.request(reqwest::Method::PUT, &path).json(body)).await
    }

    pub async fn patch_subresource(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        name: &str,
        subresource: &str,
        patch_type: PatchType,
        patch: &Value,
    ) -> Result<Value, ClientError> {
        let path = format!("{}/{subresource}", resource.object_path(namespace, name));
        self.send_patch(&path, patch_type, patch).await
    }
}

/// `path?k=v&...` with values percent-encoded.
fn with_query(path: &str, query: &[(&str, String)]) -> String {
    if query.is_empty() {
        return path.to_string();
    }
    let pairs: Vec<String> = query.iter().map(|(k, v)| format!("{k}={}", percent_encode(v))).collect();
    format!("{path}?{}", pairs.join("&"))
}

fn percent_encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn api_error(method: &reqwest::Method, path: &str, code: u16, body: &[u8]) -> ClientError {
    let status: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    ClientError::Api {
        method: method.to_string(),
        path: path.to_string(),
        code,
        reason: status["reason"].as_str().unwrap_or("Unknown").to_string(),
        message: status["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned()),
    }
}

/// A watch response read as newline-delimited JSON watch events.
#[derive(Debug)]
pub struct WatchStream {
    response: reqwest::Response,
    buffer: Vec<u8>,
    path: String,
}

impl WatchStream {
    /// The next event, or None when the server ended the watch.
    pub async fn next_event(&mut self) -> Result<Option<WatchEvent>, ClientError> {
        loop {
            if let Some(line) = take_line(&mut self.buffer) {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return parse_watch_line(&line).map(Some).map_err(|message| ClientError::Decode {
                    method: "WATCH".into(),
                    path: self.path.clone(),
                    message,
                });
            }
            match self.response.chunk().await {
                Ok(Some(chunk)) => self.buffer.extend_from_slice(&chunk),
                Ok(None) => {
                    if self.buffer.iter().all(u8::is_ascii_whitespace) {
                        return Ok(None);
                    }
                    let rest = std::mem::take(&mut self.buffer);
                    return parse_watch_line(&rest).map(Some).map_err(|message| ClientError::Decode {
                        method: "WATCH".into(),
                        path: self.path.clone(),
                        message,
                    });
                }
                Err(source) => {
                    return Err(ClientError::Transport { method: "WATCH".into(), path: self.path.clone(), source });
                }
            }
        }
    }
}

fn take_line(buffer: &mut Vec<u8>) -> Option<Vec<u8>> {
    let end = buffer.iter().position(|b| *b == b'\n')?;
    let mut line: Vec<u8> = buffer.drain(..=end).collect();
    line.pop();
    Some(line)
}

/// Parses one `{"type": ..., "object": ...}` line.
pub fn parse_watch_line(line: &[u8]) -> Result<WatchEvent, String> {
    let value: Value = serde_json::from_slice(line).map_err(|e| format!("watch event is not JSON: {e}"))?;
    let event_type = match value["type"].as_str() {
        Some("ADDED") => WatchEventType::Added,
        Some("MODIFIED") => WatchEventType::Modified,
        Some("DELETED") => WatchEventType::Deleted,
        Some("BOOKMARK") => WatchEventType::Bookmark,
        Some("ERROR") => WatchEventType::Error,
        other => return Err(format!("unknown watch event type {other:?}")),
    };
    let object = value.get("object").cloned().unwrap_or(Value::Null);
    Ok(WatchEvent { event_type, object })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_rest_layout() {
        assert_eq!(resources::PODS.object_path(Some("default"), "p"), "/api/v1/namespaces/default/pods/p");
        assert_eq!(resources::DEPLOYMENTS.collection_path(None), "/apis/apps/v1/deployments");
        assert_eq!(resources::NODES.object_path(Some("ignored"), "n1"), "/api/v1/nodes/n1");
        assert_eq!(resources::LEASES.api_version(), "coordination.k8s.io/v1");
    }

    #[test]
    fn kinds_resolve_to_resources() {
        assert_eq!(resource_for_kind("apps/v1", "Deployment"), Some(resources::DEPLOYMENTS));
        assert_eq!(resource_for_kind("v1", "Pod"), Some(resources::PODS));
        assert_eq!(resource_for_kind("apps/v1", "Pod"), None);
    }

    #[test]
    fn identities_carry_real_user_agents() {
        let id = Identity::controller("deployment-controller", "t");
        assert_eq!(id.username, "system:serviceaccount:kube-system:deployment-controller");
        assert_eq!(
            id.user_agent,
            "kube-controller-manager/v1.31.0 (linux/amd64) kubernetes/abcdef/system:serviceaccount:kube-system:deployment-controller"
        );
        assert_eq!(Identity::kubelet("node-1", "t").username, "system:node:node-1");
        assert!(Identity::scheduler("t").user_agent.starts_with("kube-scheduler/v1.31.0 (linux/amd64)"));
    }

    #[test]
    fn watch_lines_split_and_parse() {
        let mut buffer = b"{\"type\":\"ADDED\",\"object\":{\"a\":1}}\n{\"type\":\"BOOK".to_vec();
        let line = take_line(&mut buffer).unwrap_or_default();
        let event = parse_watch_line(&line);
        assert!(matches!(event, Ok(WatchEvent { event_type: WatchEventType::Added, .. })));
        assert!(take_line(&mut buffer).is_none());
        assert!(parse_watch_line(b"{\"type\":\"NOPE\"}").is_err());
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(with_query("/api/v1/pods", &[("fieldSelector", "spec.nodeName=n 1".into())]), "/api/v1/pods?fieldSelector=spec.nodeName%3Dn%201");
        assert_eq!(with_query("/x", &[]), "/x");
    }

    #[test]
    fn delete_options_carry_policy_and_preconditions() {
        let p = DeleteParams { grace_period_seconds: Some(0), precondition_uid: Some("u".into()), ..DeleteParams::foreground() };
        let body = p.body();
        assert_eq!(body["propagationPolicy"], "Foreground");
        assert_eq!(body["gracePeriodSeconds"], 0);
        assert_eq!(body["preconditions"]["uid"], "u");
    }
}
