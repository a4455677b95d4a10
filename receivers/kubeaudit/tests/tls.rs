//! HTTPS with client-certificate verification, the way kube-apiserver's webhook kubeconfig
//! authenticates. Certificates are generated per test with rcgen.

mod common;

use std::path::Path;

use common::*;
use kausal_core::component::Component;
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};

struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let cert = params.self_signed(&key).unwrap();
    Ca { pem: cert.pem(), issuer: Issuer::new(params, key) }
}

/// (certificate PEM, key PEM) signed by `ca`.
fn leaf(ca: &Ca, name: &str, sans: &[&str], usage: ExtendedKeyUsagePurpose) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![usage];
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn https_client(ca_pem: &str, identity: Option<(&str, &str)>) -> reqwest::Client {
    install_crypto();
    let mut b = reqwest::Client::builder().tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap()]);
    if let Some((cert, key)) = identity {
        b = b.identity(reqwest::Identity::from_pem(format!("{cert}{key}").as_bytes()).unwrap());
    }
    b.build().unwrap()
}

#[tokio::test]
async fn client_certificates_are_verified_against_the_configured_ca() {
    let dir = tempfile::tempdir().unwrap();
    let server_ca = ca("server ca");
    let client_ca = ca("client ca");
    let stranger_ca = ca("someone else");
    let (server_cert, server_key) = leaf(&server_ca, "kausal", &["127.0.0.1", "localhost"], ExtendedKeyUsagePurpose::ServerAuth);
    let (apiserver_cert, apiserver_key) = leaf(&client_ca, "kube-apiserver", &[], ExtendedKeyUsagePurpose::ClientAuth);
    let (stranger_cert, stranger_key) = leaf(&stranger_ca, "mallory", &[], ExtendedKeyUsagePurpose::ClientAuth);

    let config = format!(
        "tls:\n  cert_file: {}\n  key_file: {}\n  client_ca_file: {}\n",
        write(dir.path(), "server.crt", &server_cert),
        write(dir.path(), "server.key", &server_key),
        write(dir.path(), "client-ca.crt", &client_ca.pem),
    );
    let r = start(&config).await;
    let url = format!("https://{}/audit/tls-cluster", r.addr);
    let body = event_list(vec![event("t1", "get", "pods", "ns", "p")]).to_string();

    let trusted = https_client(&server_ca.pem, Some((&apiserver_cert, &apiserver_key)));
    let response = trusted.post(&url).header("content-type", "application/json").body(body.clone()).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let got = r.collector.activities();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].object.key.cluster, "tls-cluster");

    let anonymous = https_client(&server_ca.pem, None);
    assert!(anonymous.post(&url).body(body.clone()).send().await.is_err(), "no client certificate");
    let stranger = https_client(&server_ca.pem, Some((&stranger_cert, &stranger_key)));
    assert!(stranger.post(&url).body(body.clone()).send().await.is_err(), "certificate from another CA");
    let plain = client().post(format!("http://{}/audit", r.addr)).body(body.clone()).send().await;
    assert!(plain.map(|r| r.status().as_u16() != 200).unwrap_or(true), "plain HTTP is not served");
    assert_eq!(r.collector.activities().len(), 1, "refused connections deliver nothing");

    // Still serving trusted clients afterwards, also over a fresh connection.
    let again = https_client(&server_ca.pem, Some((&apiserver_cert, &apiserver_key)));
    assert_eq!(again.post(&url).body(body).send().await.unwrap().status().as_u16(), 200);
    r.receiver.shutdown().await.unwrap();
}

#[tokio::test]
async fn tls_without_client_ca_serves_any_client_and_still_checks_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let server_ca = ca("server ca");
    let (server_cert, server_key) = leaf(&server_ca, "kausal", &["127.0.0.1"], ExtendedKeyUsagePurpose::ServerAuth);
    let config = format!(
        "tls: {{cert_file: {}, key_file: {}}}\nbearer_token: t0k3n\n",
        write(dir.path(), "s.crt", &server_cert),
        write(dir.path(), "s.key", &server_key),
    );
    let r = start(&config).await;
    let url = format!("https://{}/audit", r.addr);
    let body = event_list(vec![event("t1", "get", "pods", "ns", "p")]).to_string();
    let c = https_client(&server_ca.pem, None);
    assert_eq!(c.post(&url).body(body.clone()).send().await.unwrap().status().as_u16(), 401);
    assert_eq!(c.post(&url).bearer_auth("t0k3n").body(body).send().await.unwrap().status().as_u16(), 200);
}

#[tokio::test]
async fn unreadable_or_mismatched_tls_files_are_config_errors() {
    let dir = tempfile::tempdir().unwrap();
    let server_ca = ca("server ca");
    let (cert, _) = leaf(&server_ca, "a", &["127.0.0.1"], ExtendedKeyUsagePurpose::ServerAuth);
    let (_, other_key) = leaf(&server_ca, "b", &["127.0.0.1"], ExtendedKeyUsagePurpose::ServerAuth);
    let cert = write(dir.path(), "a.crt", &cert);
    let other_key = write(dir.path(), "b.key", &other_key);
    let not_pem = write(dir.path(), "junk", "hello");
    let build = |yaml: String| {
        let telemetry = kausal_core::telemetry::Telemetry::default();
        let ctx = kausal_core::component::CreateContext {
            id: kausal_core::ComponentId::parse("kubeaudit").unwrap(),
            metrics: telemetry.component("receiver", "kubeaudit"),
            telemetry,
        };
        let section = kausal_core::config::ComponentConfig::from_yaml("kubeaudit", &yaml).unwrap();
        kausal_receiver_kubeaudit::AuditReceiver::new(ctx, &section, Collector::new()).err().unwrap()
    };
    let err = build(format!("tls: {{cert_file: {cert}, key_file: {other_key}}}\n"));
    assert_eq!(err.path, "kubeaudit.tls.key_file", "{err}");
    let err = build(format!("tls: {{cert_file: {not_pem}, key_file: {other_key}}}\n"));
    assert_eq!(err.path, "kubeaudit.tls.cert_file", "{err}");
    assert!(err.message.contains("no CERTIFICATE"), "{err}");
    let err = build(format!("tls: {{cert_file: {cert}, key_file: {other_key}, client_ca_file: {not_pem}}}\n"));
    assert_eq!(err.path, "kubeaudit.tls.client_ca_file", "{err}");
}
