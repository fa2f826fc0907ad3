//! The rate an app's dynos may write to its log stream: a token bucket per app, so one
//! guest printing in a loop spends its own lines, not the host's CPU or its neighbours'
//! streams. Lines over the rate are dropped and counted; at most once a second the stream
//! says how many, as Heroku's Logplex does (`Error L10 (output buffer overflow)`).

use crate::token_bucket::TokenBucket;
use chrono::{DateTime, Utc};
use std::time::{Duration, Instant};

/// Lines per second of one app's dynos, and how many may come at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogRate {
    pub per_second: u32,
    pub burst: u32,
}

impl Default for LogRate {
    /// 2,000 lines a second with bursts of 10,000: an app logging every request at a
    /// thousand requests a second stays well under it, a print loop (millions a second)
    /// is cut to it, and a burst as long as the history (1,500 lines) passes whole.
    fn default() -> Self {
        LogRate {
            per_second: 2_000,
            burst: 10_000,
        }
    }
}

/// Dropped lines are told after this long (so at most one L10 line a second).
const NOTICE_EVERY: Duration = Duration::from_secs(1);

/// One stream's bucket, and when the first line it dropped since the last L10 was dropped.
pub(super) struct Bucket {
    lines: TokenBucket,
    dropped_since: Option<(Instant, DateTime<Utc>)>,
}

impl Bucket {
    pub(super) fn new(rate: LogRate) -> Bucket {
        Bucket {
            lines: TokenBucket::new(f64::from(rate.per_second), rate.burst),
            dropped_since: None,
        }
    }

    /// Whether a line may pass now (taking a token), or is dropped and counted.
    pub(super) fn admit(&mut self, now: Instant) -> bool {
        let admitted = self.lines.take(now);
        if !admitted {
            self.dropped_since.get_or_insert_with(|| (now, Utc::now()));
        }
        admitted
    }

    /// The L10 line for the lines dropped since the last one, once the first of them is
    /// a second old.
    pub(super) fn notice(&mut self, now: Instant) -> Option<String> {
        let (first, since) = self.dropped_since?;
        if now.saturating_duration_since(first) < NOTICE_EVERY {
            return None;
        }
        self.dropped_since = None;
        let dropped = self.lines.take_held_back();
        Some(format!(
            "Error L10 (output buffer overflow): {dropped} messages dropped since {}",
            since.format("%Y-%m-%dT%H:%M:%S%.6f+00:00")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_rate_and_drops_are_told_once_a_second() {
        let start = Instant::now();
        let mut bucket = Bucket::new(LogRate {
            per_second: 100,
            burst: 10,
        });
        let passed = (0..50).filter(|_| bucket.admit(start)).count();
        assert_eq!(passed, 10);
        assert_eq!(
            bucket.notice(start),
            None,
            "told after a second, not per line"
        );
        let second = start + Duration::from_secs(1);
        let notice = bucket.notice(second).expect("40 dropped");
        assert!(
            notice.starts_with("Error L10 (output buffer overflow): 40 messages dropped since "),
            "{notice}"
        );
        assert_eq!(bucket.notice(second), None);
        // The second refilled the bucket (burst 10); a flood goes on.
        assert_eq!((0..30).filter(|_| bucket.admit(second)).count(), 10);
        assert_eq!(bucket.notice(second + Duration::from_millis(999)), None);
        let notice = bucket.notice(second + Duration::from_secs(1)).expect("20");
        assert!(notice.contains(": 20 messages dropped"), "{notice}");
        assert_eq!(bucket.notice(second + Duration::from_secs(5)), None);
    }
}
