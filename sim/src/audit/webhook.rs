//! The audit webhook backend: POSTs `audit.k8s.io/v1` `EventList`s to a URL, as
//! kube-apiserver's `--audit-webhook-config-file` does. In batch mode events queue in a bounded
//! buffer and leave in batches (size or wait limit, throttled by a token bucket); in blocking
//! modes each request's events are sent before the request goes on. Failed sends are retried
//! with exponential backoff on 429, 5xx and connection errors, honouring `Retry-After`.
//! A full buffer drops the event with a counted warning, like the apiserver; it never blocks.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine;
use kausal_core::audit::Event;
use rand::Rng;
use serde::Deserialize;
use tokio::sync::{Mutex, Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;

use super::AuditError;

/// `--audit-webhook-mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WebhookMode {
    Batch,
    Blocking,
    /// Like blocking, and a failure at RequestReceived fails the request.
    BlockingStrict,
}

impl WebhookMode {
    pub fn parse(s: &str) -> Option<WebhookMode> {
        match s {
            "batch" => Some(WebhookMode::Batch),
            "blocking" => Some(WebhookMode::Blocking),
            "blocking-strict" => Some(WebhookMode::BlockingStrict),
            _ => None,
        }
    }
}

/// Batch-mode settings; defaults are kube-apiserver's `--audit-webhook-batch-*` defaults.
#[derive(Clone, Debug)]
pub struct BatchConfig {
    pub buffer_size: usize,
    pub max_batch_size: usize,
    pub max_batch_wait: Duration,
    pub throttle_enabled: bool,
    pub throttle_qps: f64,
    pub throttle_burst: u32,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            buffer_size: 10_000,
            max_batch_size: 400,
            max_batch_wait: Duration::from_secs(30),
            throttle_enabled: true,
            throttle_qps: 10.0,
            throttle_burst: 15,
        }
    }
}

/// Where and how to reach the webhook.
#[derive(Clone, Debug, Default)]
pub struct WebhookTarget {
    pub url: String,
    pub ca_pem: Option<Vec<u8>>,
    pub insecure_skip_tls_verify: bool,
    pub bearer_token: Option<String>,
    /// Client certificate and key, PEM, concatenated.
    pub client_identity_pem: Option<Vec<u8>>,
}

#[derive(Clone, Debug)]
pub struct WebhookConfig {
    pub target: WebhookTarget,
    pub mode: WebhookMode,
    pub batch: BatchConfig,
    /// First retry delay (`--audit-webhook-initial-backoff`, 10 s by default).
    pub initial_backoff: Duration,
    /// Attempts in all, including the first.
    pub max_attempts: u32,
    pub request_timeout: Duration,
}

impl WebhookConfig {
    pub fn new(target: WebhookTarget) -> WebhookConfig {
        WebhookConfig {
            target,
            mode: WebhookMode::Batch,
            batch: BatchConfig::default(),
            initial_backoff: Duration::from_secs(10),
            max_attempts: 5,
            request_timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Deserialize)]
struct Kubeconfig {
    #[serde(default)]
    clusters: Vec<NamedCluster>,
    #[serde(default)]
    users: Vec<NamedUser>,
}

#[derive(Deserialize)]
struct NamedCluster {
    cluster: ClusterEntry,
}

#[derive(Deserialize)]
struct ClusterEntry {
    server: String,
    #[serde(default, rename = "certificate-authority-data")]
    certificate_authority_data: Option<String>,
    #[serde(default, rename = "certificate-authority")]
    certificate_authority: Option<String>,
    #[serde(default, rename = "insecure-skip-tls-verify")]
    insecure_skip_tls_verify: bool,
}

#[derive(Deserialize)]
struct NamedUser {
    user: UserEntry,
}

#[derive(Deserialize, Default)]
struct UserEntry {
    #[serde(default)]
    token: Option<String>,
    #[serde(default, rename = "client-certificate-data")]
    client_certificate_data: Option<String>,
    #[serde(default, rename = "client-key-data")]
    client_key_data: Option<String>,
}

impl WebhookTarget {
    /// Reads a kubeconfig naming the webhook, like `--audit-webhook-config-file`: the first
    /// cluster's server and CA, the first user's token or client certificate.
    pub fn from_kubeconfig(path: &Path) -> Result<WebhookTarget, AuditError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| AuditError::Config(format!("cannot read {}: {e}", path.display())))?;
        let kc: Kubeconfig = serde_saphyr::from_str(&text).map_err(|e| {
            AuditError::Config(format!("{} is not a kubeconfig: {e}", path.display()))
        })?;
        let cluster = kc
            .clusters
            .into_iter()
            .next()
            .ok_or_else(|| {
                AuditError::Config(format!(
                    "{}: clusters: no cluster names the webhook",
                    path.display()
                ))
            })?
            .cluster;
        let b64 = |field: &str, s: &str| {
            base64::engine::general_purpose::STANDARD
                .decode(s.trim())
                .map_err(|e| {
                    AuditError::Config(format!("{}: {field} is not base64: {e}", path.display()))
                })
        };
        let ca_pem = match (
            &cluster.certificate_authority_data,
            &cluster.certificate_authority,
        ) {
            (Some(data), _) => Some(b64("certificate-authority-data", data)?),
            (None, Some(file)) => Some(std::fs::read(file).map_err(|e| {
                AuditError::Config(format!("cannot read certificate-authority {file}: {e}"))
            })?),
            (None, None) => None,
        };
        let user = kc
            .users
            .into_iter()
            .next()
            .map(|u| u.user)
            .unwrap_or_default();
        let client_identity_pem = match (&user.client_certificate_data, &user.client_key_data) {
            (Some(cert), Some(key)) => {
                let mut pem = b64("client-certificate-data", cert)?;
                pem.extend(b64("client-key-data", key)?);
                Some(pem)
            }
            _ => None,
        };
        Ok(WebhookTarget {
            url: cluster.server,
            ca_pem,
            insecure_skip_tls_verify: cluster.insecure_skip_tls_verify,
            bearer_token: user.token,
            client_identity_pem,
        })
    }
}

/// Counters of what the webhook did.
#[derive(Debug, Default)]
pub struct WebhookStats {
    pub events_sent: AtomicU64,
    pub events_dropped: AtomicU64,
    pub events_failed: AtomicU64,
    pub batches_sent: AtomicU64,
    pub retries: AtomicU64,
}

enum Command {
    Event(Box<Event>),
    Flush(oneshot::Sender<()>),
}

struct Sender {
    client: reqwest::Client,
    config: WebhookConfig,
    stats: Arc<WebhookStats>,
}

pub struct WebhookBackend {
    sender: Arc<Sender>,
    queue: Option<mpsc::Sender<Command>>,
    worker: Mutex<Option<JoinHandle<()>>>,
}

/// Encodes a webhook body; items carry no kind/apiVersion of their own, like a typed list.
pub fn encode_event_list(events: &[Event]) -> Result<Vec<u8>, AuditError> {
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct List<'a> {
        kind: &'static str,
        api_version: &'static str,
        metadata: serde_json::Value,
        items: &'a [Event],
    }
    serde_json::to_vec(&List {
        kind: "EventList",
        api_version: "audit.k8s.io/v1",
        metadata: serde_json::json!({}),
        items: events,
    })
    .map_err(|e| AuditError::Webhook(format!("cannot encode EventList: {e}")))
}

fn retryable_status(code: u16) -> bool {
    code == 429 || code >= 500
}

fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    let v = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?;
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

impl Sender {
    /// One POST with retries. Permanent failures (other 4xx) are not retried.
    async fn send(&self, events: &[Event]) -> Result<(), AuditError> {
        let body = bytes::Bytes::from(encode_event_list(events)?);
        let mut backoff = self.config.initial_backoff;
        let mut attempt = 1;
        loop {
            let mut req = self
                .client
                .post(&self.config.target.url)
                .header("Content-Type", "application/json")
                .body(body.clone());
            if let Some(token) = &self.config.target.bearer_token {
                req = req.bearer_auth(token);
            }
            let (error, wait_at_least) = match req.send().await {
                Ok(resp) if resp.status().is_success() => {
                    self.stats
                        .events_sent
                        .fetch_add(events.len() as u64, Ordering::Relaxed);
                    self.stats.batches_sent.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                Ok(resp) if retryable_status(resp.status().as_u16()) => {
                    let wait = retry_after(&resp);
                    (format!("webhook answered {}", resp.status()), wait)
                }
                Ok(resp) => {
                    let status = resp.status();
                    let text = resp.text().await.unwrap_or_default();
                    self.stats
                        .events_failed
                        .fetch_add(events.len() as u64, Ordering::Relaxed);
                    return Err(AuditError::Webhook(format!(
                        "webhook refused {} events with {status}: {}",
                        events.len(),
                        text.chars().take(200).collect::<String>()
                    )));
                }
                Err(e) => (
                    format!("cannot reach webhook {}: {e}", self.config.target.url),
                    None,
                ),
            };
            if attempt >= self.config.max_attempts {
                self.stats
                    .events_failed
                    .fetch_add(events.len() as u64, Ordering::Relaxed);
                return Err(AuditError::Webhook(format!(
                    "{error}; gave up after {attempt} attempts"
                )));
            }
            let jitter = 1.0 + rand::rng().random_range(0.0..0.2);
            let delay = backoff
                .mul_f64(jitter)
                .max(wait_at_least.unwrap_or_default());
            tracing::warn!(attempt, delay_ms = delay.as_millis() as u64, %error, "audit webhook send failed; retrying");
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(delay).await;
            backoff = backoff.mul_f64(1.5);
            attempt += 1;
        }
    }
}

/// Waits for a token of a QPS/burst token bucket.
struct TokenBucket {
    qps: f64,
    burst: f64,
    tokens: f64,
    last: tokio::time::Instant,
}

impl TokenBucket {
    fn new(qps: f64, burst: u32) -> TokenBucket {
        let burst = f64::from(burst.max(1));
        TokenBucket {
            qps: qps.max(0.001),
            burst,
            tokens: burst,
            last: tokio::time::Instant::now(),
        }
    }

    async fn take(&mut self) {
        let now = tokio::time::Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * self.qps).min(self.burst);
        self.last = now;
        if self.tokens < 1.0 {
            let wait = Duration::from_secs_f64((1.0 - self.tokens) / self.qps);
            tokio::time::sleep(wait).await;
            self.tokens = 1.0;
            self.last = tokio::time::Instant::now();
        }
        self.tokens -= 1.0;
    }
}

/// Batches sent at once, at most; more wait (the buffer absorbs the rest).
const MAX_IN_FLIGHT_BATCHES: usize = 16;

async fn run_batcher(mut rx: mpsc::Receiver<Command>, sender: Arc<Sender>) {
    let cfg = sender.config.batch.clone();
    let mut throttle = cfg
        .throttle_enabled
        .then(|| TokenBucket::new(cfg.throttle_qps, cfg.throttle_burst));
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT_BATCHES));
    let mut open = true;
    while open {
        let mut batch: Vec<Event> = Vec::new();
        let mut flush_waiters = Vec::new();
        match rx.recv().await {
            Some(Command::Event(e)) => batch.push(*e),
            Some(Command::Flush(done)) => flush_waiters.push(done),
            None => break,
        }
        if flush_waiters.is_empty() {
            let deadline = tokio::time::Instant::now() + cfg.max_batch_wait;
            while batch.len() < cfg.max_batch_size.max(1) {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(Command::Event(e))) => batch.push(*e),
                    Ok(Some(Command::Flush(done))) => {
                        flush_waiters.push(done);
                        break;
                    }
                    Ok(None) => {
                        open = false;
                        break;
                    }
                    Err(_) => break,
                }
            }
        }
        if !batch.is_empty() {
            if let Some(t) = throttle.as_mut() {
                t.take().await;
            }
            let Ok(permit) = in_flight.clone().acquire_owned().await else {
                break;
            };
            let s = sender.clone();
            tokio::spawn(async move {
                if let Err(e) = s.send(&batch).await {
                    tracing::error!(error = %e, events = batch.len(), "audit batch lost");
                }
                drop(permit);
            });
        }
        if !flush_waiters.is_empty() {
            // Wait until every batch handed out so far has finished.
            if let Ok(all) = in_flight
                .clone()
                .acquire_many_owned(MAX_IN_FLIGHT_BATCHES as u32)
                .await
            {
                drop(all);
            }
            for w in flush_waiters {
                let _ = w.send(());
            }
        }
    }
    if let Ok(all) = in_flight
        .acquire_many_owned(MAX_IN_FLIGHT_BATCHES as u32)
        .await
    {
        drop(all);
    }
}

impl WebhookBackend {
    /// Builds the HTTP client and, in batch mode, starts the batching task (needs a runtime).
    pub fn start(config: WebhookConfig) -> Result<WebhookBackend, AuditError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder().timeout(config.request_timeout);
        if let Some(ca) = &config.target.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(ca)
                .map_err(|e| AuditError::Config(format!("webhook CA is not PEM: {e}")))?;
            builder = builder.tls_certs_merge(certs);
        }
        if config.target.insecure_skip_tls_verify {
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        if let Some(pem) = &config.target.client_identity_pem {
            let identity = reqwest::Identity::from_pem(pem)
                .map_err(|e| AuditError::Config(format!("webhook client certificate: {e}")))?;
            builder = builder.identity(identity);
        }
        let client = builder
            .build()
            .map_err(|e| AuditError::Config(format!("cannot build webhook client: {e}")))?;
        let sender = Arc::new(Sender {
            client,
            config: config.clone(),
            stats: Arc::new(WebhookStats::default()),
        });
        let (queue, worker) = if config.mode == WebhookMode::Batch {
            let (tx, rx) = mpsc::channel(config.batch.buffer_size.max(1));
            let handle = tokio::spawn(run_batcher(rx, sender.clone()));
            (Some(tx), Some(handle))
        } else {
            (None, None)
        };
        tracing::info!(url = %config.target.url, mode = ?config.mode, "audit webhook backend started");
        Ok(WebhookBackend {
            sender,
            queue,
            worker: Mutex::new(worker),
        })
    }

    pub fn mode(&self) -> WebhookMode {
        self.sender.config.mode
    }

    pub fn stats(&self) -> &WebhookStats {
        &self.sender.stats
    }

    /// Hands events over: queued in batch mode (dropping, counted, when the buffer is full),
    /// sent before returning in the blocking modes.
    pub async fn process(&self, events: Vec<Event>) -> Result<(), AuditError> {
        match &self.queue {
            Some(queue) => {
                for e in events {
                    if queue.try_send(Command::Event(Box::new(e))).is_err() {
                        let dropped = self
                            .sender
                            .stats
                            .events_dropped
                            .fetch_add(1, Ordering::Relaxed)
                            + 1;
                        if dropped == 1 || dropped.is_power_of_two() {
                            tracing::warn!(dropped, "audit buffer queue blocked; event dropped");
                        }
                    }
                }
                Ok(())
            }
            None => self.sender.send(&events).await,
        }
    }

    /// Sends everything queued so far and waits for it.
    pub async fn flush(&self) {
        if let Some(queue) = &self.queue {
            let (tx, rx) = oneshot::channel();
            if queue.send(Command::Flush(tx)).await.is_ok() {
                let _ = rx.await;
            }
        }
    }

    /// Flushes and stops the batching task. Idempotent.
    pub async fn shutdown(&self) {
        self.flush().await;
        if let Some(worker) = self.worker.lock().await.take() {
            worker.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_kube_apiservers() {
        let b = BatchConfig::default();
        assert_eq!(
            (
                b.buffer_size,
                b.max_batch_size,
                b.max_batch_wait.as_secs(),
                b.throttle_burst
            ),
            (10_000, 400, 30, 15)
        );
        assert!((b.throttle_qps - 10.0).abs() < f64::EPSILON);
        assert_eq!(
            WebhookMode::parse("blocking-strict"),
            Some(WebhookMode::BlockingStrict)
        );
        assert_eq!(WebhookMode::parse("sync"), None);
    }

    #[test]
    fn reads_a_webhook_kubeconfig() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("webhook.yaml");
        let ca = base64::engine::general_purpose::STANDARD.encode("-----BEGIN CERTIFICATE-----\n");
        std::fs::write(
            &path,
            format!("apiVersion: v1\nkind: Config\nclusters:\n- name: kausal\n  cluster:\n    server: https://127.0.0.1:8443/audit\n    certificate-authority-data: {ca}\nusers:\n- name: apiserver\n  user:\n    token: s3cret\n"),
        )
        .unwrap();
        let t = WebhookTarget::from_kubeconfig(&path).unwrap();
        assert_eq!(t.url, "https://127.0.0.1:8443/audit");
        assert_eq!(t.bearer_token.as_deref(), Some("s3cret"));
        assert_eq!(
            t.ca_pem.as_deref(),
            Some(b"-----BEGIN CERTIFICATE-----\n".as_slice())
        );
        std::fs::write(&path, "clusters: []\n").unwrap();
        assert!(
            WebhookTarget::from_kubeconfig(&path)
                .unwrap_err()
                .to_string()
                .contains("no cluster")
        );
    }

    #[tokio::test]
    async fn token_bucket_allows_burst_then_qps() {
        let mut b = TokenBucket::new(100.0, 5);
        let start = tokio::time::Instant::now();
        for _ in 0..5 {
            b.take().await;
        }
        assert!(start.elapsed() < Duration::from_millis(20));
        for _ in 0..10 {
            b.take().await;
        }
        let e = start.elapsed();
        assert!(
            e >= Duration::from_millis(90),
            "ten tokens at 100 QPS took only {e:?}"
        );
    }
}
