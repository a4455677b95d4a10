//! The emulator's PKI, made fresh at every start: a self-signed CA and a serving certificate
//! for 127.0.0.1/localhost signed by it, plus the kubeconfig that trusts that CA. Nothing is
//! persisted; a restarted server has new certificates and needs a new kubeconfig.

use std::sync::Arc;

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot generate certificates: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot configure TLS: {0}")]
    Rustls(#[from] rustls::Error),
}

pub struct ServerPki {
    pub ca_pem: String,
    pub server_config: Arc<rustls::ServerConfig>,
}

/// Generates the CA and a serving certificate for `extra_names` besides the loopback names.
pub fn generate(extra_names: &[String]) -> Result<ServerPki, TlsError> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "kausal-sim-ca");
    ca_params.distinguished_name = dn;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let mut names = vec![
        "127.0.0.1".to_string(),
        "::1".to_string(),
        "localhost".to_string(),
        "kubernetes".to_string(),
        "kubernetes.default".to_string(),
        "kubernetes.default.svc".to_string(),
    ];
    for n in extra_names {
        if !names.contains(n) {
            names.push(n.clone());
        }
    }
    let mut server_params = CertificateParams::new(names)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "kube-apiserver");
    server_params.distinguished_name = dn;
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server_params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let server_key = KeyPair::generate()?;
    let server_cert = server_params.signed_by(&server_key, &issuer)?;

    let _ = rustls::crypto::ring::default_provider().install_default();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
    let chain: Vec<CertificateDer<'static>> =
        vec![server_cert.der().clone(), ca_cert.der().clone()];
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(ServerPki {
        ca_pem: ca_cert.pem(),
        server_config: Arc::new(config),
    })
}

/// A kubeconfig for `server` that trusts `ca_pem` and authenticates with `token`.
pub fn kubeconfig(server: &str, ca_pem: &str, user: &str, token: &str) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: kausal-sim
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: {user}
  user:
    token: {token}
contexts:
- name: {user}@kausal-sim
  context:
    cluster: kausal-sim
    user: {user}
    namespace: default
current-context: {user}@kausal-sim
preferences: {{}}
"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_a_ca_and_a_kubeconfig_that_embeds_it() {
        let pki = generate(&[]).unwrap();
        assert!(pki.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert_eq!(pki.server_config.alpn_protocols[0], b"h2");
        let kc = kubeconfig(
            "https://127.0.0.1:6443",
            &pki.ca_pem,
            "kubernetes-admin",
            "t0k",
        );
        assert!(kc.contains("current-context: kubernetes-admin@kausal-sim"));
        let ca_line = kc
            .lines()
            .find(|l| l.contains("certificate-authority-data"))
            .unwrap();
        let data = ca_line.split(": ").nth(1).unwrap();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap();
        assert_eq!(decoded, pki.ca_pem.as_bytes());
    }
}
