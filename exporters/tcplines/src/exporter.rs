//! The running exporter: per log record, a new TCP connection, a TLS handshake, one line, a
//! clean close. A failed report is retried with backoff (a fresh connection each attempt), so a
//! listener that restarts between reports loses nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use async_trait::async_trait;
use kausal_core::component::{Component, ComponentError, Exporter, Host};
use kausal_core::otlp::attr_str;
use kausal_core::telemetry::ComponentMetrics;
use kausal_core::{Batch, ConsumeError, Consumer};
use kausal_exporterhelper::retry::{Backoff, jitter};
use rustls::pki_types::ServerName;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::config::Config;
use crate::line::{SIGNAL_ATTRIBUTE, line};

/// Why the exporter could not be built.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct BuildError {
    pub key: &'static str,
    pub message: String,
}

pub struct LinesExporter {
    id: String,
    config: Config,
    host: String,
    port: u16,
    server_name: ServerName<'static>,
    connector: TlsConnector,
    metrics: ComponentMetrics,
    stopped: AtomicBool,
}

impl LinesExporter {
    pub fn new(
        id: String,
        config: Config,
        metrics: ComponentMetrics,
    ) -> Result<LinesExporter, BuildError> {
        let (host, port) = config.host_port().map_err(|message| BuildError {
            key: "endpoint",
            message,
        })?;
        let name = config
            .tls
            .server_name
            .clone()
            .unwrap_or_else(|| host.clone());
        let server_name = ServerName::try_from(name.clone()).map_err(|e| BuildError {
            key: "tls.server_name",
            message: format!("{name:?}: {e}"),
        })?;
        let tls = crate::tls::client_config(&config.tls)
            .map_err(|(key, message)| BuildError { key, message })?;
        Ok(LinesExporter {
            id,
            connector: TlsConnector::from(Arc::new(tls)),
            config,
            host,
            port,
            server_name,
            metrics,
            stopped: AtomicBool::new(false),
        })
    }

    /// One connection, one line.
    async fn send_line(&self, text: &str) -> Result<(), String> {
        let endpoint = &self.config.endpoint;
        let work = async {
            let tcp = TcpStream::connect((self.host.as_str(), self.port))
                .await
                .map_err(|e| format!("connecting to {endpoint}: {e}"))?;
            let mut tls = self
                .connector
                .connect(self.server_name.clone(), tcp)
                .await
                .map_err(|e| format!("TLS handshake with {endpoint}: {e}"))?;
            tls.write_all(text.as_bytes())
                .await
                .map_err(|e| format!("writing to {endpoint}: {e}"))?;
            tls.flush()
                .await
                .map_err(|e| format!("writing to {endpoint}: {e}"))?;
            tls.shutdown()
                .await
                .map_err(|e| format!("closing the connection to {endpoint}: {e}"))?;
            Ok(())
        };
        match tokio::time::timeout(self.config.timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "{endpoint}: no answer within {:?}",
                self.config.timeout
            )),
        }
    }

    async fn send_with_retry(&self, text: &str) -> Result<(), ConsumeError> {
        let started = Instant::now();
        let mut backoff = Backoff::new(&self.config.retry_on_failure);
        loop {
            match self.send_line(text).await {
                Ok(()) => return Ok(()),
                Err(message) => {
                    let delay = if self.stopped.load(Ordering::Relaxed) {
                        None
                    } else {
                        backoff.next_delay(started.elapsed(), None, jitter())
                    };
                    match delay {
                        Some(d) => {
                            tracing::debug!(exporter = %self.id, error = %message, delay = ?d, "report line not delivered; retrying");
                            tokio::time::sleep(d).await;
                        }
                        None => return Err(ConsumeError::retryable(message)),
                    }
                }
            }
        }
    }
}

#[async_trait]
impl Consumer for LinesExporter {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        let Batch::Logs(logs) = batch else {
            return Err(ConsumeError::permanent(format!(
                "{}: tcplines accepts logs, not {}",
                self.id,
                batch.kind()
            )));
        };
        if self.stopped.load(Ordering::Relaxed) {
            return Err(ConsumeError::permanent(format!("{}: shut down", self.id)));
        }
        let lines: Vec<String> = logs
            .iter()
            .flat_map(|rl| &rl.scope_logs)
            .flat_map(|sl| &sl.log_records)
            .map(|r| {
                let signal = attr_str(&r.attributes, SIGNAL_ATTRIBUTE)
                    .filter(|s| !s.is_empty())
                    .unwrap_or(&self.config.signal);
                line(signal, r.body.as_ref())
            })
            .collect();
        self.metrics.received.inc_by(lines.len() as u64);
        for (i, text) in lines.iter().enumerate() {
            if let Err(e) = self.send_with_retry(text).await {
                let left = (lines.len() - i) as u64;
                self.metrics.failed.inc_by(left);
                tracing::warn!(exporter = %self.id, error = %e, "report line export failed");
                return Err(e);
            }
            self.metrics.sent.inc();
        }
        Ok(())
    }
}

#[async_trait]
impl Component for LinesExporter {
    async fn start(&self, _host: &Host) -> Result<(), ComponentError> {
        Ok(())
    }

    /// Nothing is held between reports; stop accepting and cut retries short.
    async fn shutdown(&self) -> Result<(), ComponentError> {
        self.stopped.store(true, Ordering::Relaxed);
        Ok(())
    }
}

impl Exporter for LinesExporter {}
