//! Lines a drain had no room for: counted as they are dropped, told in the app's own log
//! as Heroku's logplex does (`Error L10 (output buffer overflow): N messages dropped since
//! T.`), at most once a second per drain: each notice closes an overflow episode and
//! counts the lines dropped since the previous one.

use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use tokio::sync::Notify;

#[derive(Default)]
pub(super) struct Overflow {
    pub(super) dropped: Mutex<Dropped>,
    /// Told at the first drop of an episode, so nothing ticks while nothing is dropped.
    began: Notify,
}

#[derive(Default)]
pub(super) struct Dropped {
    pub(super) count: u64,
    /// When the first line of this episode was dropped.
    since: Option<DateTime<Utc>>,
}

impl Overflow {
    /// Counts `lines` dropped now.
    pub(super) fn count(&self, lines: u64) {
        let mut dropped = self.dropped.lock();
        dropped.count += lines;
        if dropped.since.is_none() {
            dropped.since = Some(Utc::now());
            self.began.notify_one();
        }
    }

    /// Returns once an episode has begun (at once if one began since the last call).
    pub(super) async fn began(&self) {
        self.began.notified().await;
    }

    /// The L10 line for the lines dropped since the last one, if any were; the next
    /// episode starts after it.
    pub(super) fn notice(&self) -> Option<String> {
        let Dropped { count, since } = std::mem::take(&mut *self.dropped.lock());
        let since = since?;
        Some(format!(
            "Error L10 (output buffer overflow): {count} messages dropped since {}.",
            since.format("%Y-%m-%dT%H:%M:%S+00:00")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_are_told_once_per_episode_in_herokus_words() {
        let overflow = Overflow::default();
        assert_eq!(overflow.notice(), None);
        overflow.count(1000);
        overflow.count(234);
        let notice = overflow.notice().unwrap();
        let prefix = "Error L10 (output buffer overflow): 1234 messages dropped since ";
        assert!(notice.starts_with(prefix), "{notice}");
        let since = notice[prefix.len()..].strip_suffix('.').unwrap();
        assert!(DateTime::parse_from_rfc3339(since).is_ok(), "{since}");
        assert_eq!(overflow.notice(), None, "told once");
        overflow.count(1);
        assert!(
            overflow
                .notice()
                .unwrap()
                .contains(": 1 messages dropped since ")
        );
    }
}
