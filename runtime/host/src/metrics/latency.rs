//! The router's latency histogram of one app: fixed buckets of atomic counts, read both
//! by the exporter (`collect.rs`) and by the app's history (`history.rs`), so a p99 on
//! the dashboard and one computed by Prometheus from `/metrics` come from the same counts.
//!
//! prometheus-client's own `Histogram` keeps its buckets behind a lock and does not let
//! anyone read them back; this one is lock-free on the request path and its counts are
//! handed to the crate's encoder as they are.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in seconds (an implicit `+Inf` bucket follows): from a
/// millisecond (a warm instance answering from memory) to a minute (past the default
/// request timeout of 30 s).
pub const BOUNDS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Buckets including `+Inf`.
pub const BUCKETS: usize = BOUNDS.len() + 1;

/// Counts of observations per bucket (not cumulative) and their sum.
#[derive(Debug, Default)]
pub struct Latency {
    buckets: [AtomicU64; BUCKETS],
    /// The sum of every observation, in nanoseconds (584 years fit).
    sum_nanos: AtomicU64,
}

/// The counts of a [`Latency`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LatencyCounts {
    /// Per bucket, not cumulative; the last one is `+Inf`.
    pub buckets: [u64; BUCKETS],
    pub sum_seconds: f64,
}

impl Latency {
    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let index = BOUNDS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(BOUNDS.len());
        self.buckets[index].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    pub fn counts(&self) -> LatencyCounts {
        LatencyCounts {
            buckets: std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed)),
            sum_seconds: Duration::from_nanos(self.sum_nanos.load(Ordering::Relaxed)).as_secs_f64(),
        }
    }
}

impl LatencyCounts {
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// `(upper bound, count)` per bucket, as prometheus-client's encoder takes them.
    pub fn for_encoder(&self) -> Vec<(f64, u64)> {
        BOUNDS
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.buckets)
            .collect()
    }

    /// What was observed since `earlier` (counts only grow).
    pub fn since(&self, earlier: &LatencyCounts) -> LatencyCounts {
        LatencyCounts {
            buckets: std::array::from_fn(|i| self.buckets[i].saturating_sub(earlier.buckets[i])),
            sum_seconds: (self.sum_seconds - earlier.sum_seconds).max(0.0),
        }
    }

    /// The `q` quantile (0 to 1) of these observations, as Prometheus's
    /// `histogram_quantile` estimates it: linear within the bucket the rank falls in
    /// (the first bucket starting at 0); a rank in the `+Inf` bucket gives the highest
    /// finite bound. `None` without observations.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total as f64;
        let mut below = 0u64;
        for (i, &count) in self.buckets.iter().enumerate() {
            if count > 0 && (below + count) as f64 >= rank {
                let Some(&upper) = BOUNDS.get(i) else {
                    return Some(BOUNDS[BOUNDS.len() - 1]);
                };
                let lower = if i == 0 { 0.0 } else { BOUNDS[i - 1] };
                let within = (rank - below as f64) / count as f64;
                return Some(lower + (upper - lower) * within);
            }
            below += count;
        }
        Some(BOUNDS[BOUNDS.len() - 1])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_that_holds_them() {
        let latency = Latency::default();
        latency.observe(Duration::from_micros(500));
        latency.observe(Duration::from_millis(1));
        latency.observe(Duration::from_millis(7));
        latency.observe(Duration::from_secs(45));
        let counts = latency.counts();
        assert_eq!(counts.buckets[0], 2, "0.5 ms and 1 ms are both <= 1 ms");
        assert_eq!(counts.buckets[3], 1, "7 ms is in (5 ms, 10 ms]");
        assert_eq!(
            counts.buckets[BUCKETS - 1],
            1,
            "45 s is past the last bound"
        );
        assert_eq!(counts.count(), 4);
        assert!((counts.sum_seconds - 45.0085).abs() < 1e-9);
        let encoded = counts.for_encoder();
        assert_eq!(encoded.len(), BUCKETS);
        assert_eq!(encoded[BUCKETS - 1], (f64::INFINITY, 1));
    }

    #[test]
    fn quantiles_interpolate_within_buckets() {
        let mut counts = LatencyCounts::default();
        assert_eq!(counts.quantile(0.5), None);
        // 100 observations: 50 in (0, 1 ms], 40 in (5, 10 ms], 10 in (0.5 s, 1 s].
        counts.buckets[0] = 50;
        counts.buckets[3] = 40;
        counts.buckets[9] = 10;
        // Rank 50 is the last of the first bucket: its upper bound.
        assert!((counts.quantile(0.5).unwrap() - 0.001).abs() < 1e-12);
        // Rank 70 is half-way through (5 ms, 10 ms].
        assert!((counts.quantile(0.7).unwrap() - 0.0075).abs() < 1e-12);
        // Rank 99 is 9/10 through (0.5 s, 1 s].
        assert!((counts.quantile(0.99).unwrap() - 0.95).abs() < 1e-12);
        // Everything in +Inf: the highest finite bound, as Prometheus answers.
        let mut slow = LatencyCounts::default();
        slow.buckets[BUCKETS - 1] = 3;
        assert_eq!(slow.quantile(0.5), Some(30.0));
    }

    #[test]
    fn since_takes_the_difference() {
        let mut before = LatencyCounts::default();
        before.buckets[2] = 5;
        before.sum_seconds = 1.0;
        let mut now = before;
        now.buckets[2] = 8;
        now.buckets[4] = 1;
        now.sum_seconds = 1.5;
        let window = now.since(&before);
        assert_eq!(window.buckets[2], 3);
        assert_eq!(window.buckets[4], 1);
        assert_eq!(window.count(), 4);
        assert!((window.sum_seconds - 0.5).abs() < 1e-12);
    }
}
