//! Connecting to a cluster: a kubeconfig file (optionally a named context), the in-cluster
//! service account, or an explicit server URL with a bearer-token file and CA file. Exactly
//! one way is chosen; `validate` says which settings conflict.

use std::path::PathBuf;

use kube::config::{KubeConfigOptions, Kubeconfig};
use serde::Deserialize;

/// `auth` section of a watching receiver.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    /// Path of a kubeconfig file. When no way is configured, `$KUBECONFIG`/`~/.kube/config` or
    /// the in-cluster account is used, like kubectl.
    #[serde(default)]
    pub kubeconfig: Option<PathBuf>,
    /// Context within the kubeconfig (default: its current context).
    #[serde(default)]
    pub context: Option<String>,
    /// Use the pod's service account.
    #[serde(default)]
    pub in_cluster: bool,
    /// API server URL, with `token_file` (and optionally `ca_file`).
    #[serde(default)]
    pub server: Option<String>,
    /// File holding a bearer token; re-read by the client when it changes.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// PEM CA bundle for `server`.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{0}")]
    Invalid(String),
    #[error("cannot read kubeconfig {path}: {message}")]
    Kubeconfig { path: String, message: String },
    #[error("cannot configure the Kubernetes client: {0}")]
    Client(String),
}

impl Auth {
    /// Checks that the settings name one way to connect. Returns the offending key and why.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let ways = [self.kubeconfig.is_some(), self.in_cluster, self.server.is_some()];
        if ways.iter().filter(|w| **w).count() > 1 {
            return Err(("kubeconfig", "choose one of kubeconfig, in_cluster and server".into()));
        }
        if self.context.is_some() && (self.in_cluster || self.server.is_some()) {
            return Err(("context", "a context only applies to a kubeconfig".into()));
        }
        if self.server.is_some() != self.token_file.is_some() {
            return Err(("token_file", "server and token_file go together".into()));
        }
        if self.ca_file.is_some() && self.server.is_none() {
            return Err(("ca_file", "ca_file only applies with server".into()));
        }
        if let Some(s) = &self.server
            && s.parse::<http::Uri>().is_err()
        {
            return Err(("server", format!("{s:?} is not a URL")));
        }
        Ok(())
    }

    /// The client configuration these settings describe.
    pub async fn client_config(&self) -> Result<kube::Config, AuthError> {
        let options = KubeConfigOptions { context: self.context.clone(), ..Default::default() };
        if let Some(path) = &self.kubeconfig {
            let kc = Kubeconfig::read_from(path).map_err(|e| AuthError::Kubeconfig {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
            return kube::Config::from_custom_kubeconfig(kc, &options)
                .await
                .map_err(|e| AuthError::Kubeconfig { path: path.display().to_string(), message: e.to_string() });
        }
        if self.in_cluster {
            return kube::Config::incluster().map_err(|e| AuthError::Client(e.to_string()));
        }
        if let (Some(server), Some(token_file)) = (&self.server, &self.token_file) {
            let uri: http::Uri = server.parse().map_err(|_| AuthError::Invalid(format!("server {server:?} is not a URL")))?;
            let mut cfg = kube::Config::new(uri);
            cfg.auth_info.token_file = Some(token_file.display().to_string());
            if let Some(ca) = &self.ca_file {
                cfg.root_cert_file = Some(ca.clone());
            }
            return Ok(cfg);
        }
        if self.context.is_some() {
            return kube::Config::from_kubeconfig(&options).await.map_err(|e| AuthError::Client(e.to_string()));
        }
        kube::Config::infer().await.map_err(|e| AuthError::Client(e.to_string()))
    }

    pub async fn client(&self) -> Result<kube::Client, AuthError> {
        let cfg = self.client_config().await?;
        kube::Client::try_from(cfg).map_err(|e| AuthError::Client(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_way_to_connect() {
        assert!(Auth::default().validate().is_ok());
        let both = Auth { kubeconfig: Some("k".into()), in_cluster: true, ..Default::default() };
        assert_eq!(both.validate().unwrap_err().0, "kubeconfig");
        let half = Auth { server: Some("https://x:6443".into()), ..Default::default() };
        assert_eq!(half.validate().unwrap_err().0, "token_file");
        let ok = Auth { server: Some("https://x:6443".into()), token_file: Some("t".into()), ..Default::default() };
        assert!(ok.validate().is_ok());
        let ctx = Auth { context: Some("c".into()), in_cluster: true, ..Default::default() };
        assert_eq!(ctx.validate().unwrap_err().0, "context");
    }
}
