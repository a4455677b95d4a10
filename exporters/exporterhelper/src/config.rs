//! The settings every network exporter shares, under the OpenTelemetry Collector's key names:
//! `timeout`, `retry_on_failure`, `sending_queue` (with optional `storage` directory and
//! `batch`), `tls`, `compression`, `headers`, plus kausal's `grouping`. Each exporter embeds
//! [`HelperConfig`] with `#[serde(flatten)]`-free explicit fields so unknown keys stay errors.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use kausal_core::config::{ComponentConfig, ConfigError, duration};
use serde::Deserialize;

/// `retry_on_failure:` — exponential backoff with jitter, as the collector's defaults.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    pub enabled: bool,
    #[serde(with = "duration")]
    pub initial_interval: Duration,
    #[serde(with = "duration")]
    pub max_interval: Duration,
    /// Give up on a batch after this long; `0s` retries forever.
    #[serde(with = "duration")]
    pub max_elapsed_time: Duration,
    /// Each delay grows by this factor.
    pub multiplier: f64,
    /// Each delay is drawn from `delay * (1 ± randomization_factor)`.
    pub randomization_factor: f64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            enabled: true,
            initial_interval: Duration::from_secs(5),
            max_interval: Duration::from_secs(30),
            max_elapsed_time: Duration::from_secs(300),
            multiplier: 1.5,
            randomization_factor: 0.5,
        }
    }
}

/// `sending_queue:` — a bounded queue in front of the network, in memory or on disk.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// Off: `consume` sends (and retries) synchronously, holding the pipeline until done.
    pub enabled: bool,
    /// Concurrent senders draining the queue.
    pub num_consumers: usize,
    /// Batches the queue holds; a full queue refuses with a retryable error (backpressure).
    pub queue_size: usize,
    /// A directory: the queue is persisted there and survives restarts (unsent batches are
    /// sent after the restart). Unset: memory only.
    pub storage: Option<PathBuf>,
    /// fsync after every write to the persisted queue (survives power loss, not only a crash).
    pub fsync: bool,
    /// Merge queued batches before sending.
    pub batch: Option<BatchConfig>,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            enabled: true,
            num_consumers: 10,
            queue_size: 1000,
            storage: None,
            fsync: false,
            batch: None,
        }
    }
}

/// `sending_queue.batch:` — merge queued batches into sends of `min_size..=max_size` spans,
/// waiting at most `flush_timeout` for `min_size` to fill.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    #[serde(with = "duration")]
    pub flush_timeout: Duration,
    pub min_size: usize,
    /// 0: no upper limit.
    pub max_size: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig { flush_timeout: Duration::from_millis(200), min_size: 8192, max_size: 0 }
    }
}

/// `tls:` of a client. The collector's keys: TLS is on unless `insecure` (or the endpoint
/// says `http://`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClientTlsConfig {
    /// Plain text (no TLS).
    pub insecure: bool,
    /// Do not verify the server's certificate (testing only).
    pub insecure_skip_verify: bool,
    /// CA bundle (PEM) to verify the server with; the system's roots when unset.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM) for mutual TLS.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Name to verify the server certificate against instead of the endpoint's host.
    pub server_name_override: Option<String>,
}

/// `compression:` of request bodies.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    #[default]
    Gzip,
    Zstd,
}

/// `grouping:` — how exported spans are cut into traces.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Grouping {
    /// One trace per object and window (the span builder's trace ids), unchanged.
    #[default]
    Object,
    /// One trace per owner tree: an object's span is re-parented under its owner's span and
    /// moved, with its activity spans, into the trace of the topmost owner.
    OwnerTree,
    /// One trace per causal chain (kspan's shape): an activity span with a `causal` link is
    /// re-parented under its cause and moved into its cause's trace.
    Causal,
}

/// The shared keys, read by each exporter from its own config struct.
#[derive(Clone, Debug, PartialEq)]
pub struct HelperConfig {
    pub timeout: Duration,
    pub retry_on_failure: RetryConfig,
    pub sending_queue: QueueConfig,
    pub grouping: Grouping,
}

impl Default for HelperConfig {
    fn default() -> Self {
        HelperConfig {
            timeout: DEFAULT_TIMEOUT,
            retry_on_failure: RetryConfig::default(),
            sending_queue: QueueConfig::default(),
            grouping: Grouping::Object,
        }
    }
}

/// Default per-attempt timeout (the collector's).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

pub fn default_timeout() -> Duration {
    DEFAULT_TIMEOUT
}

impl HelperConfig {
    /// Checks the shared keys; errors name the key under `section`'s path.
    pub fn validate(&self, section: &ComponentConfig) -> Result<(), ConfigError> {
        if self.timeout.is_zero() {
            return Err(section.error("timeout", "must be greater than 0"));
        }
        let r = &self.retry_on_failure;
        if r.enabled {
            if r.initial_interval.is_zero() {
                return Err(section.error("retry_on_failure.initial_interval", "must be greater than 0"));
            }
            if r.max_interval < r.initial_interval {
                return Err(section.error("retry_on_failure.max_interval", "must not be less than initial_interval"));
            }
            if !(r.multiplier >= 1.0 && r.multiplier.is_finite()) {
                return Err(section.error("retry_on_failure.multiplier", "must be a number of at least 1"));
            }
            if !(0.0..1.0).contains(&r.randomization_factor) {
                return Err(section.error("retry_on_failure.randomization_factor", "must be in [0, 1)"));
            }
        }
        let q = &self.sending_queue;
        if q.enabled {
            if q.num_consumers == 0 {
                return Err(section.error("sending_queue.num_consumers", "must be at least 1"));
            }
            if q.queue_size == 0 {
                return Err(section.error("sending_queue.queue_size", "must be at least 1"));
            }
            if let Some(b) = &q.batch {
                if b.max_size != 0 && b.max_size < b.min_size {
                    return Err(section.error("sending_queue.batch.max_size", "must be 0 (no limit) or at least min_size"));
                }
                if b.flush_timeout.is_zero() {
                    return Err(section.error("sending_queue.batch.flush_timeout", "must be greater than 0"));
                }
            }
        } else if q.storage.is_some() {
            return Err(section.error("sending_queue.storage", "needs sending_queue.enabled: true"));
        }
        Ok(())
    }
}

/// Checks a TLS section: a client certificate needs its key and the other way round.
pub fn validate_tls(tls: &ClientTlsConfig, section: &ComponentConfig) -> Result<(), ConfigError> {
    match (&tls.cert_file, &tls.key_file) {
        (Some(_), None) => Err(section.error("tls.key_file", "cert_file is set, so key_file is needed too")),
        (None, Some(_)) => Err(section.error("tls.cert_file", "key_file is set, so cert_file is needed too")),
        _ => Ok(()),
    }
}

/// Header names and values must be valid HTTP/gRPC metadata.
pub fn validate_headers(headers: &BTreeMap<String, String>, section: &ComponentConfig) -> Result<(), ConfigError> {
    for (k, v) in headers {
        let name_ok = !k.is_empty()
            && k.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !name_ok {
            return Err(section.error(&format!("headers.{k}"), "invalid header name"));
        }
        if v.bytes().any(|b| b < 0x20 && b != b'\t' || b == 0x7f) {
            return Err(section.error(&format!("headers.{k}"), "header value contains control characters"));
        }
    }
    Ok(())
}
