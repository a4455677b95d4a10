//! `tcplines` against a local TLS listener with a self-signed certificate: one line per report
//! on a fresh connection, TLS 1.3 negotiated, a listener restart between two reports (and while
//! a report waits to be retried), TLS 1.2-only listeners refused unless allowed, untrusted
//! certificates refused.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use kausal_core::component::{CreateContext, Exporter, ExporterFactory};
use kausal_core::config::ComponentConfig;
use kausal_core::otlp::kv_str;
use kausal_core::otlp_common::{AnyValue, KeyValue, KeyValueList, any_value};
use kausal_core::otlp_logs::{LogRecord, ResourceLogs, ScopeLogs};
use kausal_core::telemetry::{ComponentMetrics, Telemetry};
use kausal_core::{Batch, ComponentId};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ProtocolVersion, ServerConfig};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

struct Cert {
    der: CertificateDer<'static>,
    key: Vec<u8>,
    pem: String,
}

fn cert() -> Result<Cert> {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
    Ok(Cert {
        der: ck.cert.der().clone(),
        key: ck.signing_key.serialize_der(),
        pem: ck.cert.pem(),
    })
}

/// A received line and the TLS version it came over.
type Received = (String, Option<ProtocolVersion>);

struct Listener {
    port: u16,
    task: JoinHandle<()>,
}

impl Listener {
    async fn start(
        cert: &Cert,
        port: u16,
        versions: &[&'static rustls::SupportedProtocolVersion],
        tx: mpsc::UnboundedSender<Received>,
    ) -> Result<Listener> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)?
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der.clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key.clone())),
            )?;
        let acceptor = TlsAcceptor::from(Arc::new(config));
        // Rebinding the port a moment after the previous listener closed can race the kernel.
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", port)).await {
                Ok(l) => break l,
                Err(e) if tries < 50 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e.into()),
            }
        };
        let port = listener.local_addr()?.port();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let version = tls.get_ref().1.protocol_version();
                    let mut text = String::new();
                    if tls.read_to_string(&mut text).await.is_ok() {
                        let _ = tx.send((text, version));
                    }
                });
            }
        });
        Ok(Listener { port, task })
    }

    async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

fn exporter(yaml: &str) -> Result<Arc<dyn Exporter>> {
    let section =
        ComponentConfig::from_yaml("tcplines", yaml).map_err(|e| anyhow::anyhow!("{e}"))?;
    kausal_exporter_tcplines::Factory
        .validate(&section)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let ctx = CreateContext {
        id: ComponentId::parse("tcplines").map_err(anyhow::Error::msg)?,
        metrics: ComponentMetrics::default(),
        telemetry: Telemetry::default(),
    };
    kausal_exporter_tcplines::Factory
        .create(ctx, &section)
        .map_err(|e| anyhow::anyhow!("{e}"))
}

fn report(pods: i64) -> Batch {
    let body = AnyValue {
        value: Some(any_value::Value::KvlistValue(KeyValueList {
            values: vec![
                KeyValue {
                    key: "state".into(),
                    key_strindex: 0,
                    value: Some(AnyValue {
                        value: Some(any_value::Value::KvlistValue(KeyValueList {
                            values: vec![KeyValue {
                                key: "hostname".into(),
                                key_strindex: 0,
                                value: Some(AnyValue {
                                    value: Some(any_value::Value::StringValue("agent-1".into())),
                                }),
                            }],
                        })),
                    }),
                },
                KeyValue {
                    key: "cluster-state".into(),
                    key_strindex: 0,
                    value: Some(AnyValue {
                        value: Some(any_value::Value::KvlistValue(KeyValueList {
                            values: vec![KeyValue {
                                key: "k8s_pods_count".into(),
                                key_strindex: 0,
                                value: Some(AnyValue {
                                    value: Some(any_value::Value::IntValue(pods)),
                                }),
                            }],
                        })),
                    }),
                },
            ],
        })),
    };
    Batch::Logs(vec![ResourceLogs {
        resource: None,
        scope_logs: vec![ScopeLogs {
            log_records: vec![LogRecord {
                body: Some(body),
                attributes: vec![kv_str("kausal.report.signal", "kausal-ping")],
                ..Default::default()
            }],
            ..Default::default()
        }],
        schema_url: String::new(),
    }])
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Received>) -> Result<Received> {
    tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .context("no line within 30s")?
        .context("listener gone")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_line_per_report_over_tls13_across_a_listener_restart() -> Result<()> {
    let cert = cert()?;
    let dir = tempfile::tempdir()?;
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &cert.pem)?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let listener = Listener::start(
        &cert,
        0,
        &[&rustls::version::TLS13, &rustls::version::TLS12],
        tx.clone(),
    )
    .await?;
    let port = listener.port;
    let e = exporter(&format!(
        "endpoint: localhost:{port}\ntls: {{ca_file: {}}}\nretry_on_failure: {{initial_interval: 100ms, max_interval: 200ms, max_elapsed_time: 20s}}",
        ca.display()
    ))?;
    e.consume(report(7)).await?;
    let (line, version) = next(&mut rx).await?;
    assert_eq!(
        line,
        "<14>signal=kausal-ping;cluster-state.k8s_pods_count=7;state.hostname=agent-1;\n"
    );
    assert_eq!(
        version,
        Some(ProtocolVersion::TLSv1_3),
        "TLS 1.3 offered only, by default"
    );

    // The listener restarts between two reports: the second goes over a new connection.
    listener.stop().await;
    let listener = Listener::start(&cert, port, &[&rustls::version::TLS13], tx.clone()).await?;
    e.consume(report(8)).await?;
    assert_eq!(
        next(&mut rx).await?.0,
        "<14>signal=kausal-ping;cluster-state.k8s_pods_count=8;state.hostname=agent-1;\n"
    );

    // Down while a report is sent: it is retried until the listener is back.
    listener.stop().await;
    let sending = {
        let e = e.clone();
        tokio::spawn(async move { e.consume(report(9)).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let listener = Listener::start(&cert, port, &[&rustls::version::TLS13], tx).await?;
    sending.await??;
    assert_eq!(
        next(&mut rx).await?.0,
        "<14>signal=kausal-ping;cluster-state.k8s_pods_count=9;state.hostname=agent-1;\n"
    );
    assert!(rx.try_recv().is_err(), "one line per report");
    listener.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls12_only_listeners_are_refused_unless_allowed() -> Result<()> {
    let cert = cert()?;
    let dir = tempfile::tempdir()?;
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &cert.pem)?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let listener = Listener::start(&cert, 0, &[&rustls::version::TLS12], tx).await?;
    let fast =
        "retry_on_failure: {initial_interval: 10ms, max_interval: 20ms, max_elapsed_time: 100ms}";
    let strict = exporter(&format!(
        "endpoint: 127.0.0.1:{}\ntls: {{ca_file: {}}}\n{fast}",
        listener.port,
        ca.display()
    ))?;
    let err = strict
        .consume(report(1))
        .await
        .err()
        .context("TLS 1.2 accepted by default")?;
    assert!(err.to_string().contains("TLS handshake"), "{err}");
    let relaxed = exporter(&format!(
        "endpoint: 127.0.0.1:{}\ntls: {{ca_file: {}, min_version: '1.2'}}\n{fast}",
        listener.port,
        ca.display()
    ))?;
    relaxed.consume(report(2)).await?;
    let (line, version) = next(&mut rx).await?;
    assert!(line.contains("k8s_pods_count=2"));
    assert_eq!(version, Some(ProtocolVersion::TLSv1_2));
    listener.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_certificates_are_refused() -> Result<()> {
    let (served, other) = (cert()?, cert()?);
    let dir = tempfile::tempdir()?;
    let ca = dir.path().join("other.pem");
    std::fs::write(&ca, &other.pem)?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let listener = Listener::start(&served, 0, &[&rustls::version::TLS13], tx).await?;
    let fast =
        "retry_on_failure: {initial_interval: 10ms, max_interval: 20ms, max_elapsed_time: 100ms}";
    let e = exporter(&format!(
        "endpoint: 127.0.0.1:{}\ntls: {{ca_file: {}}}\n{fast}",
        listener.port,
        ca.display()
    ))?;
    let err = e
        .consume(report(1))
        .await
        .err()
        .context("an untrusted certificate was accepted")?;
    assert!(err.to_string().contains("TLS handshake"), "{err}");
    let insecure = exporter(&format!(
        "endpoint: 127.0.0.1:{}\ntls: {{insecure_skip_verify: true}}\n{fast}",
        listener.port
    ))?;
    insecure.consume(report(3)).await?;
    assert!(next(&mut rx).await?.0.contains("k8s_pods_count=3"));
    listener.stop().await;
    Ok(())
}
