//! kausal's benchmarks: load generators that drive the real binary (or the simulator) on this
//! machine and print the figures the issues set targets for. Each lives in `src/bin/`; run them
//! with `cargo run --release -p kausal-bench --bin <name>` after `cargo build --release --bins`.

/// Percentile of sorted samples (nearest rank).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    #[test]
    fn percentiles_use_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(super::percentile(&v, 50.0), 50.0);
        assert_eq!(super::percentile(&v, 99.0), 99.0);
        assert_eq!(super::percentile(&[], 99.0), 0.0);
    }
}
