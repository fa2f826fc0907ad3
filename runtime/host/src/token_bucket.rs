//! A token bucket: a burst at once, then a steady rate, counting what it held back. The
//! host's limits on lines a tenant can make it write at will are each one: an app's log
//! stream (`logs::rate`) and its egress refusal lines (`guest::allow_list`).

use std::time::Instant;

pub struct TokenBucket {
    /// Tokens earned per second.
    per_second: f64,
    /// The most tokens held, so the most taken at once.
    burst: f64,
    tokens: f64,
    /// When `tokens` was last brought up to date.
    refilled: Instant,
    /// Takes refused since [`TokenBucket::take_held_back`] was last called.
    held_back: u64,
}

impl TokenBucket {
    /// A full bucket of `burst` tokens, refilled at `per_second`.
    pub fn new(per_second: f64, burst: u32) -> TokenBucket {
        TokenBucket {
            per_second,
            burst: f64::from(burst),
            tokens: f64::from(burst),
            refilled: Instant::now(),
            held_back: 0,
        }
    }

    /// Takes a token at `now` if there is one; otherwise counts one more held back.
    pub fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.refilled = self.refilled.max(now);
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            self.held_back += 1;
            false
        }
    }

    /// How many takes were refused since the last call.
    pub fn take_held_back(&mut self) -> u64 {
        std::mem::take(&mut self.held_back)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_then_the_rate_and_never_more_than_the_burst() {
        let mut bucket = TokenBucket::new(2.0, 3);
        let start = Instant::now();
        assert_eq!((0..10).filter(|_| bucket.take(start)).count(), 3);
        assert_eq!(bucket.take_held_back(), 7);
        assert_eq!(bucket.take_held_back(), 0);
        // Half a second earns one token at two a second.
        let later = start + Duration::from_millis(500);
        assert_eq!((0..10).filter(|_| bucket.take(later)).count(), 1);
        // A long quiet spell refills the burst, no more.
        let much_later = later + Duration::from_secs(1000);
        assert_eq!((0..10).filter(|_| bucket.take(much_later)).count(), 3);
        // A time before the last one earns nothing, and takes nothing back.
        assert!(!bucket.take(start));
        assert_eq!(bucket.take_held_back(), 9 + 7 + 1);
    }
}
