//! Retry policy: exponential backoff with jitter, capped per delay and in total, honouring a
//! server's `Retry-After`/RetryInfo hint (the delay is never shorter than the hint). Pure: the
//! caller passes elapsed time and a random number, so tests need no clock.

use std::time::Duration;

use crate::config::RetryConfig;

/// The state of one batch's retries.
#[derive(Clone, Debug)]
pub struct Backoff {
    config: RetryConfig,
    next_interval: Duration,
}

impl Backoff {
    pub fn new(config: &RetryConfig) -> Self {
        Backoff { config: config.clone(), next_interval: config.initial_interval }
    }

    /// The delay before the next attempt, or `None` to give up: retries are off, or waiting
    /// would pass `max_elapsed_time` (measured from the first attempt, `elapsed`).
    /// `random` is uniform in `[0, 1)`.
    pub fn next_delay(&mut self, elapsed: Duration, hint: Option<Duration>, random: f64) -> Option<Duration> {
        if !self.config.enabled {
            return None;
        }
        let base = self.next_interval.as_secs_f64();
        let spread = base * self.config.randomization_factor;
        let jittered = (base - spread + 2.0 * spread * random.clamp(0.0, 1.0)).max(0.0);
        let mut delay = Duration::from_secs_f64(jittered);
        if let Some(h) = hint {
            delay = delay.max(h);
        }
        self.next_interval = Duration::from_secs_f64(
            (base * self.config.multiplier).min(self.config.max_interval.as_secs_f64()),
        );
        let limit = self.config.max_elapsed_time;
        if !limit.is_zero() && elapsed + delay > limit {
            return None;
        }
        Some(delay)
    }
}

/// A cheap uniform number in `[0, 1)` for jitter (not for anything secret).
pub fn jitter() -> f64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let h = xxhash_rust::xxh3::xxh3_64(&[n.to_le_bytes(), u64::from(nanos).to_le_bytes()].concat());
    (h >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn grows_to_the_cap_without_jitter() {
        let mut b = Backoff::new(&RetryConfig::default());
        let delays: Vec<f64> = (0..8)
            .map(|_| b.next_delay(Duration::ZERO, None, 0.5).map(|d| d.as_secs_f64()).unwrap_or(-1.0))
            .collect();
        // 5, 7.5, 11.25, 16.875, 25.3125, then capped at 30.
        assert_eq!(delays, vec![5.0, 7.5, 11.25, 16.875, 25.3125, 30.0, 30.0, 30.0]);
    }

    #[test]
    fn jitter_spreads_by_the_randomization_factor() {
        let mut low = Backoff::new(&RetryConfig::default());
        let mut high = Backoff::new(&RetryConfig::default());
        assert_eq!(low.next_delay(Duration::ZERO, None, 0.0), Some(secs(2.5)));
        assert_eq!(high.next_delay(Duration::ZERO, None, 0.999_999).map(|d| d.as_secs_f64().round()), Some(7.0));
    }

    #[test]
    fn gives_up_after_max_elapsed_time_and_honours_hints() {
        let mut b = Backoff::new(&RetryConfig::default());
        assert_eq!(b.next_delay(secs(290.0), None, 0.5), Some(secs(5.0)));
        let mut b = Backoff::new(&RetryConfig::default());
        assert_eq!(b.next_delay(secs(296.0), None, 0.5), None, "296 s + 5 s passes the 300 s budget");
    }

    #[test]
    fn hint_is_a_floor() {
        let mut b = Backoff::new(&RetryConfig::default());
        assert_eq!(b.next_delay(Duration::ZERO, Some(secs(12.0)), 0.5), Some(secs(12.0)));
        assert_eq!(b.next_delay(Duration::ZERO, Some(secs(1.0)), 0.5), Some(secs(7.5)));
    }

    #[test]
    fn disabled_or_unlimited() {
        let mut off = Backoff::new(&RetryConfig { enabled: false, ..RetryConfig::default() });
        assert_eq!(off.next_delay(Duration::ZERO, None, 0.5), None);
        let mut forever = Backoff::new(&RetryConfig { max_elapsed_time: Duration::ZERO, ..RetryConfig::default() });
        assert!(forever.next_delay(secs(1e6), None, 0.5).is_some());
        let j = jitter();
        assert!((0.0..1.0).contains(&j));
    }
}
