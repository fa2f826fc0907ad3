//! One app's last hour, for the dashboard: every [`SAMPLE_EVERY`] the sampler reads the
//! same counters and latency buckets `/metrics` exports and keeps what changed since the
//! previous sample as rates and quantiles, [`SAMPLES`] of them at most.
//!
//! Cheap for idle apps: an app that never had traffic keeps no samples at all (only the
//! totals of its last look), samples are allocated at the first look that finds requests
//! or memory in use, and an hour of nothing frees them again.

use super::latency::LatencyCounts;
use std::collections::VecDeque;
use std::time::Duration;

/// How often each app is sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// Samples kept per app: an hour of them.
pub const SAMPLES: usize = 360;

/// An app's counters at one look: cumulative, as `/metrics` shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Totals {
    /// Requests the router answered for the app.
    pub requests: u64,
    /// Of which 5xx.
    pub server_errors: u64,
    pub latency: LatencyCounts,
}

/// What happened between two looks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// When the look was made, in seconds since the Unix epoch.
    pub at: i64,
    /// Requests answered in the interval, and of them 5xx.
    pub requests: u64,
    pub server_errors: u64,
    pub requests_per_second: f64,
    pub errors_per_second: f64,
    /// Router latency quantiles over the interval (`None`: no request in it).
    pub p50_seconds: Option<f64>,
    pub p99_seconds: Option<f64>,
    /// Linear memory of the app's instances at the look.
    pub memory_bytes: u64,
}

impl Sample {
    fn is_quiet(&self) -> bool {
        self.requests_per_second == 0.0 && self.memory_bytes == 0
    }
}

/// The sampling state of one app.
#[derive(Debug, Default)]
pub struct History {
    /// The totals at the last look, so the next one knows what changed.
    last: Totals,
    /// Oldest first; `None` until the first look with traffic or memory.
    samples: Option<VecDeque<Sample>>,
    /// Quiet samples in a row at the end of `samples`.
    quiet_run: usize,
}

impl History {
    /// Records the look at `at` (Unix seconds), `period` after the previous one.
    pub fn record(&mut self, at: i64, period: Duration, now: Totals, memory_bytes: u64) {
        let window = now.latency.since(&self.last.latency);
        let seconds = period.as_secs_f64().max(f64::EPSILON);
        let requests = now.requests.saturating_sub(self.last.requests);
        let server_errors = now.server_errors.saturating_sub(self.last.server_errors);
        let sample = Sample {
            at,
            requests,
            server_errors,
            requests_per_second: requests as f64 / seconds,
            errors_per_second: server_errors as f64 / seconds,
            p50_seconds: window.quantile(0.5),
            p99_seconds: window.quantile(0.99),
            memory_bytes,
        };
        self.last = now;
        if sample.is_quiet() {
            self.quiet_run += 1;
        } else {
            self.quiet_run = 0;
        }
        let samples = match &mut self.samples {
            Some(samples) => samples,
            None if sample.is_quiet() => return,
            None => self.samples.insert(VecDeque::with_capacity(SAMPLES)),
        };
        if samples.len() == SAMPLES {
            samples.pop_front();
        }
        samples.push_back(sample);
        // An hour with nothing in it: the app went idle; its memory goes back.
        if self.quiet_run >= SAMPLES {
            self.samples = None;
        }
    }

    /// The samples, oldest first.
    pub fn samples(&self) -> Vec<Sample> {
        self.samples
            .as_ref()
            .map(|samples| samples.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Whether samples are held (for the tests of what idle apps cost).
    #[cfg(test)]
    fn holds_samples(&self) -> bool {
        self.samples.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::latency::Latency;

    fn totals(requests: u64, errors: u64, latency: &Latency) -> Totals {
        Totals {
            requests,
            server_errors: errors,
            latency: latency.counts(),
        }
    }

    #[test]
    fn rates_and_quantiles_come_from_the_change_since_the_last_look() {
        let latency = Latency::default();
        let mut history = History::default();
        // 100 requests in the first 10 s: 90 fast (<= 1 ms), 10 slow (0.5 to 1 s).
        for _ in 0..90 {
            latency.observe(Duration::from_micros(300));
        }
        for _ in 0..10 {
            latency.observe(Duration::from_millis(800));
        }
        history.record(10, SAMPLE_EVERY, totals(100, 3, &latency), 1 << 20);
        // 20 requests in the next 10 s, all in (5 ms, 10 ms].
        for _ in 0..20 {
            latency.observe(Duration::from_millis(7));
        }
        history.record(20, SAMPLE_EVERY, totals(120, 3, &latency), 2 << 20);

        let samples = history.samples();
        assert_eq!(samples.len(), 2);
        let first = samples[0];
        assert_eq!(first.at, 10);
        assert_eq!((first.requests, first.server_errors), (100, 3));
        assert_eq!(first.requests_per_second, 10.0);
        assert_eq!(first.errors_per_second, 0.3);
        // Rank 50 of 100 falls in the first bucket (90 of them): 50/90 of 1 ms.
        let p50 = first.p50_seconds.unwrap();
        assert!((p50 - 0.001 * 50.0 / 90.0).abs() < 1e-12, "{p50}");
        // Rank 99 is the 9th of the 10 slow ones: 9/10 through (0.5 s, 1 s].
        let p99 = first.p99_seconds.unwrap();
        assert!((p99 - 0.95).abs() < 1e-12, "{p99}");
        assert_eq!(first.memory_bytes, 1 << 20);

        // The second sample sees only its own 20 requests: the old slow ones are gone.
        let second = samples[1];
        assert_eq!(second.requests_per_second, 2.0);
        assert_eq!(second.errors_per_second, 0.0);
        let p99 = second.p99_seconds.unwrap();
        assert!((0.005..=0.01).contains(&p99), "{p99}");
        assert_eq!(second.memory_bytes, 2 << 20);
    }

    #[test]
    fn an_idle_app_holds_no_samples() {
        let latency = Latency::default();
        let mut history = History::default();
        for at in 0..1000 {
            history.record(at, SAMPLE_EVERY, totals(0, 0, &latency), 0);
        }
        assert!(!history.holds_samples());
        assert!(history.samples().is_empty());
    }

    #[test]
    fn an_hour_is_kept_then_an_idle_hour_frees_it() {
        let latency = Latency::default();
        let mut history = History::default();
        let mut requests = 0;
        for at in 0..(SAMPLES as i64 + 50) {
            requests += 5;
            history.record(at, SAMPLE_EVERY, totals(requests, 0, &latency), 4096);
        }
        let samples = history.samples();
        assert_eq!(samples.len(), SAMPLES, "bounded");
        assert_eq!(samples[0].at, 50, "the oldest went first");
        assert_eq!(samples[SAMPLES - 1].requests_per_second, 0.5);

        // The app stops: its memory goes, no request comes; after an hour of that the
        // samples go too.
        let start = SAMPLES as i64 + 50;
        for at in start..start + SAMPLES as i64 - 1 {
            history.record(at, SAMPLE_EVERY, totals(requests, 0, &latency), 0);
        }
        assert!(history.holds_samples(), "not yet an hour");
        history.record(
            start + SAMPLES as i64,
            SAMPLE_EVERY,
            totals(requests, 0, &latency),
            0,
        );
        assert!(!history.holds_samples());
        // Traffic again: a first sample with only the new requests, not a spike.
        history.record(9999, SAMPLE_EVERY, totals(requests + 10, 0, &latency), 0);
        let samples = history.samples();
        assert_eq!(samples.len(), 1);
        assert_eq!(samples[0].requests_per_second, 1.0);
    }
}
