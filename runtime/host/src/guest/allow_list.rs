//! An app's `[egress] allow` list as its instances apply it, and the app's log lines for
//! the calls it refused.
//!
//! The guest gets an error on every refused call; the app's log gets one line per call,
//! up to a small burst and then at a steady trickle ([`REFUSALS_BURST`],
//! [`REFUSAL_EVERY`]): a guest retrying in a loop cannot flood its own log (platform
//! lines do not pass the log stream's rate limit, which is for the app's own output).
//! Lines held back are counted in the next one written.

use crate::logs::LogStream;
use crate::token_bucket::TokenBucket;
use parking_lot::Mutex;
use std::time::{Duration, Instant};
use wdeploy_core::egress::AllowList;

/// Refusal lines an app may log at once.
pub const REFUSALS_BURST: u32 = 10;
/// Time for one more refusal line once the burst is spent.
pub const REFUSAL_EVERY: Duration = Duration::from_secs(1);

/// What one release of an app allows, shared by all its instances on this host.
pub struct AppEgress {
    allow: Option<AllowList>,
    /// Refusal lines, and the refusals not logged since the last one.
    lines: Mutex<TokenBucket>,
}

impl AppEgress {
    /// `None`: the app named no list and may reach any host the host's own rule allows.
    pub fn new(allow: Option<AllowList>) -> AppEgress {
        AppEgress {
            allow,
            lines: Mutex::new(TokenBucket::new(
                1.0 / REFUSAL_EVERY.as_secs_f64(),
                REFUSALS_BURST,
            )),
        }
    }

    pub fn allow(&self) -> Option<&AllowList> {
        self.allow.as_ref()
    }

    /// A call to `target` (`host:port`) from `dyno` was refused by the list: one line in
    /// the app's log, if the bucket has room.
    pub fn refused(&self, logs: &LogStream, dyno: &str, target: &str) {
        let Some(held_back) = self.take_line(Instant::now()) else {
            return;
        };
        let also = match held_back {
            0 => String::new(),
            n => format!(" ({n} more refused since the last line, not logged)"),
        };
        logs.platform(
            dyno,
            format!(
                "Outgoing request to {target} refused: not in wdeploy.toml [egress] allow{also}"
            ),
        );
    }

    /// Whether a line may be written at `now`, and how many refusals were held back
    /// before it.
    fn take_line(&self, now: Instant) -> Option<u64> {
        let mut lines = self.lines.lock();
        lines.take(now).then(|| lines.take_held_back())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_one_line_a_second_with_the_count_of_those_held_back() {
        let egress = AppEgress::new(None);
        let start = Instant::now();
        for _ in 0..REFUSALS_BURST {
            assert_eq!(egress.take_line(start), Some(0));
        }
        for _ in 0..500 {
            assert_eq!(egress.take_line(start), None);
        }
        let later = start + REFUSAL_EVERY;
        assert_eq!(egress.take_line(later), Some(500));
        assert_eq!(egress.take_line(later), None);
        // A long quiet spell refills the burst, no more.
        let much_later = later + REFUSAL_EVERY * 1000;
        for _ in 0..REFUSALS_BURST {
            assert!(egress.take_line(much_later).is_some());
        }
        assert_eq!(egress.take_line(much_later), None);
    }

    #[test]
    fn a_refusal_is_one_line_in_the_apps_log() {
        let logs = LogStream::new();
        let egress = AppEgress::new(None);
        for _ in 0..1000 {
            egress.refused(&logs, "web.1", "127.0.0.1:9");
        }
        // The burst, and at most a line a second of the loop's time (the exact schedule
        // is the test above's).
        let (lines, _) = logs.replay_and_subscribe(usize::MAX);
        assert!(
            (REFUSALS_BURST as usize..100).contains(&lines.len()),
            "{}",
            lines.len()
        );
        assert_eq!(
            lines[0].to_string().split_once(' ').unwrap().1,
            "wdeploy[web.1]: Outgoing request to 127.0.0.1:9 refused: not in wdeploy.toml [egress] allow"
        );
    }
}
