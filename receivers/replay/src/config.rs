//! Configuration of `replay`.

use std::path::PathBuf;

use kausal_core::config::{ComponentConfig, ConfigError};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayConfig {
    /// Recordings to replay, merged in time order.
    pub files: Vec<PathBuf>,
    /// `recorded` (as fast as it happened), `max` (as fast as the pipeline takes it), or a
    /// number N (N times faster than recorded).
    #[serde(default = "default_speed")]
    pub speed: String,
    /// Cluster name given to every replayed object.
    #[serde(default = "default_cluster")]
    pub cluster: String,
    /// Activities handed on per batch when several are due at once.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
}

fn default_speed() -> String {
    "recorded".into()
}

fn default_cluster() -> String {
    "replay".into()
}

fn default_batch_size() -> usize {
    256
}

/// How fast recorded time passes during a replay.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Speed {
    Recorded,
    Times(f64),
    Max,
}

impl Speed {
    pub fn parse(s: &str) -> Result<Speed, String> {
        match s.trim() {
            "recorded" => Ok(Speed::Recorded),
            "max" => Ok(Speed::Max),
            n => match n.trim_end_matches('x').parse::<f64>() {
                Ok(f) if f.is_finite() && f > 0.0 => Ok(Speed::Times(f)),
                _ => Err(format!("speed must be `recorded`, `max` or a positive number, got {s:?}")),
            },
        }
    }

    /// Wall-clock nanoseconds for `recorded` nanoseconds of recording; `None` for `max`.
    pub fn scale(self, recorded: i64) -> Option<u64> {
        let recorded = recorded.max(0) as f64;
        match self {
            Speed::Recorded => Some(recorded as u64),
            Speed::Times(f) => Some((recorded / f) as u64),
            Speed::Max => None,
        }
    }
}

impl ReplayConfig {
    pub fn validate(&self, config: &ComponentConfig) -> Result<(), ConfigError> {
        if self.files.is_empty() {
            return Err(config.error("files", "name at least one recording"));
        }
        Speed::parse(&self.speed).map_err(|m| config.error("speed", m))?;
        if self.batch_size == 0 {
            return Err(config.error("batch_size", "must be at least 1"));
        }
        Ok(())
    }
}
