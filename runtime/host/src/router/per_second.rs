//! A count of store lookups per second, for lookups a client can trigger at will (an
//! app name nobody knows, a challenge token nobody published): past the limit a second,
//! the router answers without asking the store.

use parking_lot::Mutex;
use std::time::{Duration, Instant};

/// At most `limit` takes in each second, counted from the first take of that second.
pub(super) struct PerSecond {
    limit: u32,
    /// When the current second began, and the takes in it.
    window: Mutex<Option<(Instant, u32)>>,
}

impl PerSecond {
    pub(super) const fn new(limit: u32) -> PerSecond {
        PerSecond {
            limit,
            window: Mutex::new(None),
        }
    }

    /// Takes one at `now`; `false` when this second's are spent.
    pub(super) fn take(&self, now: Instant) -> bool {
        let mut window = self.window.lock();
        let (start, used) = match *window {
            Some((start, used)) if now.duration_since(start) < Duration::from_secs(1) => {
                (start, used)
            }
            _ => (now, 0),
        };
        if used >= self.limit {
            return false;
        }
        *window = Some((start, used + 1));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_per_second() {
        let limit = PerSecond::new(2);
        let now = Instant::now();
        assert!(limit.take(now) && limit.take(now));
        assert!(!limit.take(now + Duration::from_millis(999)));
        assert!(limit.take(now + Duration::from_secs(1)));
    }
}
