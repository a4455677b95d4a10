//! The running exporter: HEC events posted in batches of `max_batch_events`, each request
//! retried with backoff while the failure may pass (connection errors, 429, 5xx) and given up
//! at once when it cannot (400, 401, 403: a bad token or index will not heal by waiting).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use kausal_core::component::{Component, ComponentError, Exporter, Host};
use kausal_core::telemetry::ComponentMetrics;
use kausal_core::{Batch, ConsumeError, Consumer};
use kausal_exporterhelper::retry::{Backoff, jitter};

use crate::config::Config;
use crate::event::events;

/// Why the exporter could not be built; `key` is the config key at fault.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct BuildError {
    key: &'static str,
    message: String,
}

impl BuildError {
    pub fn key(&self) -> &'static str {
        self.key
    }
}

pub struct HecExporter {
    id: String,
    config: Config,
    url: String,
    http: reqwest::Client,
    metrics: ComponentMetrics,
    stopped: AtomicBool,
}

fn install_crypto_provider() {
    let _already_installed = rustls::crypto::ring::default_provider().install_default();
}

impl HecExporter {
    pub fn new(
        id: String,
        config: Config,
        metrics: ComponentMetrics,
    ) -> Result<HecExporter, BuildError> {
        install_crypto_provider();
        let url = config.url().map_err(|message| BuildError {
            key: "endpoint",
            message,
        })?;
        let mut builder = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout);
        if let Some(path) = &config.tls.ca_file {
            let pem = std::fs::read(path).map_err(|e| BuildError {
                key: "tls.ca_file",
                message: format!("cannot read {}: {e}", path.display()),
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| BuildError {
                key: "tls.ca_file",
                message: format!("{}: {e}", path.display()),
            })?;
            builder = builder.tls_certs_only(certs);
        }
        if config.tls.insecure_skip_verify {
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        let http = builder.build().map_err(|e| BuildError {
            key: "tls",
            message: format!("building the HTTP client: {e}"),
        })?;
        Ok(HecExporter {
            id,
            config,
            url,
            http,
            metrics,
            stopped: AtomicBool::new(false),
        })
    }

    /// One request: several newline-separated events.
    async fn post(&self, body: String) -> Result<(), ConsumeError> {
        let resp = self
            .http
            .post(&self.url)
            .header(
                reqwest::header::AUTHORIZATION,
                format!("Splunk {}", self.config.token.0),
            )
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| {
                ConsumeError::retryable(format!("POST {}: {}", self.url, error_chain(&e)))
            })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = resp.text().await.unwrap_or_default();
        let message = format!("POST {}: HTTP {status}: {}", self.url, text.trim());
        if status.as_u16() == 429 || status.is_server_error() {
            Err(ConsumeError::Retryable {
                message,
                retry_after,
            })
        } else {
            Err(ConsumeError::permanent(message))
        }
    }

    async fn post_with_retry(&self, body: String) -> Result<(), ConsumeError> {
        let started = Instant::now();
        let mut backoff = Backoff::new(&self.config.retry_on_failure);
        loop {
            match self.post(body.clone()).await {
                Ok(()) => return Ok(()),
                Err(e @ ConsumeError::Permanent { .. }) => return Err(e),
                Err(ConsumeError::Retryable {
                    message,
                    retry_after,
                }) => {
                    let delay = if self.stopped.load(Ordering::Relaxed) {
                        None
                    } else {
                        backoff.next_delay(started.elapsed(), retry_after, jitter())
                    };
                    match delay {
                        Some(d) => {
                            tracing::debug!(exporter = %self.id, error = %message, delay = ?d, "HEC request failed; retrying");
                            tokio::time::sleep(d).await;
                        }
                        None => {
                            return Err(ConsumeError::Retryable {
                                message,
                                retry_after,
                            });
                        }
                    }
                }
            }
        }
    }
}

/// An error with its causes, so "connection refused" is not hidden behind "error sending request".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[async_trait]
impl Consumer for HecExporter {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        let Batch::Logs(logs) = batch else {
            return Err(ConsumeError::permanent(format!(
                "{}: splunk_hec accepts logs, not {}",
                self.id,
                batch.kind()
            )));
        };
        if self.stopped.load(Ordering::Relaxed) {
            return Err(ConsumeError::permanent(format!("{}: shut down", self.id)));
        }
        let events = events(&logs, &self.config);
        self.metrics.received.inc_by(events.len() as u64);
        for chunk in events.chunks(self.config.max_batch_events) {
            let body = chunk
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n");
            match self.post_with_retry(body).await {
                Ok(()) => {
                    self.metrics.sent.inc_by(chunk.len() as u64);
                }
                Err(e) => {
                    self.metrics.failed.inc_by(chunk.len() as u64);
                    tracing::warn!(exporter = %self.id, error = %e, events = chunk.len(), "HEC export failed");
                    return Err(e);
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Component for HecExporter {
    async fn start(&self, _host: &Host) -> Result<(), ComponentError> {
        Ok(())
    }

    /// Sends are synchronous in `consume`, so nothing is held; stop accepting and cut retries short.
    async fn shutdown(&self) -> Result<(), ComponentError> {
        self.stopped.store(true, Ordering::Relaxed);
        Ok(())
    }
}

impl Exporter for HecExporter {}
