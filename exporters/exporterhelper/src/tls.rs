//! Reading the PEM files a client TLS section names, with errors that say which key and file.

use std::path::Path;

use crate::config::ClientTlsConfig;

/// PEM contents of a client TLS section.
#[derive(Clone, Debug, Default)]
pub struct ClientPem {
    pub ca: Option<Vec<u8>>,
    /// Certificate chain and key, for mutual TLS.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

fn read(path: &Path, key: &str) -> Result<Vec<u8>, (String, String)> {
    let bytes = std::fs::read(path).map_err(|e| (format!("tls.{key}"), format!("cannot read {}: {e}", path.display())))?;
    if !bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err((format!("tls.{key}"), format!("{}: not a PEM file", path.display())));
    }
    Ok(bytes)
}

/// Reads the files; errors are `(key relative to the section, message)`.
pub fn read_client_pem(tls: &ClientTlsConfig) -> Result<ClientPem, (String, String)> {
    let ca = tls.ca_file.as_deref().map(|p| read(p, "ca_file")).transpose()?;
    let identity = match (&tls.cert_file, &tls.key_file) {
        (Some(c), Some(k)) => Some((read(c, "cert_file")?, read(k, "key_file")?)),
        _ => None,
    };
    Ok(ClientPem { ca, identity })
}
