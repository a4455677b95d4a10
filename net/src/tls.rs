//! Server TLS from PEM files, with the ring provider; files are read once, when called.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ServerConfig, WebPkiClientVerifier};

/// PEM files of a TLS server: certificate chain, private key, and optionally the CA bundle
/// client certificates must chain to (mutual TLS).
pub struct ServerTlsFiles<'a> {
    pub cert_file: &'a Path,
    pub key_file: &'a Path,
    pub client_ca_file: Option<&'a Path>,
}

/// Builds the rustls server config (ALPN h2 and http/1.1). Errors are `(key, message)` with the
/// key relative to the component's section (`tls.cert_file`, …).
pub fn server_config(tls: &ServerTlsFiles<'_>) -> Result<Arc<ServerConfig>, (String, String)> {
    // Other crates in the process may have installed a provider already; either is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let err = |key: &str| {
        let key = format!("tls.{key}");
        move |m: String| (key.clone(), m)
    };

    let certs = read_certs(tls.cert_file).map_err(err("cert_file"))?;
    let key = read_key(tls.key_file).map_err(err("key_file"))?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ("tls".to_string(), format!("cannot set up TLS: {e}")))?;
    let builder = match tls.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for cert in read_certs(path).map_err(err("client_ca_file"))? {
                roots
                    .add(cert)
                    .map_err(|e| ("tls.client_ca_file".to_string(), format!("{}: invalid CA certificate: {e}", path.display())))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| ("tls.client_ca_file".to_string(), format!("{}: {e}", path.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| ("tls.key_file".to_string(), format!("certificate and key do not fit together: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn open(path: &Path) -> Result<BufReader<File>, String> {
    File::open(path)
        .map(BufReader::new)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = rustls_pemfile::certs(&mut open(path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: invalid PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no CERTIFICATE block found", path.display()));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    rustls_pemfile::private_key(&mut open(path)?)
        .map_err(|e| format!("{}: invalid PEM: {e}", path.display()))?
        .ok_or_else(|| format!("{}: no PRIVATE KEY block found", path.display()))
}
