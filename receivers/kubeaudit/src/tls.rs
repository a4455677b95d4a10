//! Server TLS from PEM files: certificate chain, private key and, optionally, the CA bundle
//! client certificates must chain to (kube-apiserver's webhook kubeconfig authenticates with a
//! client certificate). Uses rustls with the ring provider; files are read once, at creation.

use std::sync::Arc;

use rustls::server::ServerConfig;

use crate::config::TlsConfig;

/// Builds the rustls server config from the section's files (see `kausal_net::tls`). Errors are
/// `(key relative to the section, message)`.
pub fn server_config(tls: &TlsConfig) -> Result<Arc<ServerConfig>, (String, String)> {
    kausal_net::tls::server_config(&kausal_net::tls::ServerTlsFiles {
        cert_file: &tls.cert_file,
        key_file: &tls.key_file,
        client_ca_file: tls.client_ca_file.as_deref(),
    })
}
