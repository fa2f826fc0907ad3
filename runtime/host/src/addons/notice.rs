//! The app's log line for a write its add-on quota refused: Heroku-style
//! (`Error R18 (Add-on storage quota exceeded)`, wdeploy's own code beside R14), at most
//! one per [`NOTICE_EVERY`] however many writes are refused, so a guest retrying in a
//! loop cannot flood its own log with them. The guest gets an error value on every call.

use crate::logs::LogStream;
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Least time between two over-quota lines of one release.
pub const NOTICE_EVERY: Duration = Duration::from_secs(10);

pub struct QuotaNotice {
    logs: Arc<LogStream>,
    /// When the last line was written, and writes refused since then.
    state: Mutex<(Option<Instant>, u64)>,
}

impl QuotaNotice {
    pub fn new(logs: Arc<LogStream>) -> Self {
        QuotaNotice {
            logs,
            state: Mutex::new((None, 0)),
        }
    }

    /// A write was refused: the app holds `used` of `quota` bytes.
    pub fn refused(&self, used: u64, quota: u64) {
        let refused = {
            let mut state = self.state.lock();
            state.1 += 1;
            let now = Instant::now();
            if state.0.is_some_and(|last| now < last + NOTICE_EVERY) {
                return;
            }
            state.0 = Some(now);
            std::mem::take(&mut state.1)
        };
        self.logs.platform(
            "addons",
            format!(
                "Error R18 (Add-on storage quota exceeded): the app holds {} of its {} (limits.addons_mb); {refused} write(s) refused, delete keys or ack jobs to make room",
                mb(used),
                mb(quota)
            ),
        );
    }
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / (1 << 20) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_period_however_many_writes_are_refused() {
        let logs = LogStream::new();
        let notice = QuotaNotice::new(logs.clone());
        for _ in 0..1000 {
            notice.refused(100 << 20, 100 << 20);
        }
        let (lines, _) = logs.replay_and_subscribe(usize::MAX);
        assert_eq!(lines.len(), 1);
        assert_eq!(
            lines[0].to_string().split_once(' ').unwrap().1,
            "wdeploy[addons]: Error R18 (Add-on storage quota exceeded): the app holds 100.0 MB of its 100.0 MB (limits.addons_mb); 1 write(s) refused, delete keys or ack jobs to make room"
        );
    }
}
