//! Crash restart back-off: at once the first time, then growing cool-off delays.

use std::time::Duration;

/// The restart schedule of one dyno.
#[derive(Debug, Clone)]
pub struct Backoff {
    /// Delays after the 1st, 2nd, … crash; the last one repeats.
    schedule: Vec<Duration>,
    /// Running this long without crashing resets the count.
    healthy_after: Duration,
    crashes: usize,
}

impl Default for Backoff {
    /// Heroku's schedule, scaled down: 0 s, then 1, 2, 4, 8, 16, 32, 60 s.
    fn default() -> Self {
        let schedule = [0, 1, 2, 4, 8, 16, 32, 60]
            .map(Duration::from_secs)
            .to_vec();
        Backoff::new(schedule, Duration::from_secs(60))
    }
}

impl Backoff {
    pub fn new(schedule: Vec<Duration>, healthy_after: Duration) -> Backoff {
        let schedule = if schedule.is_empty() {
            vec![Duration::ZERO]
        } else {
            schedule
        };
        Backoff {
            schedule,
            healthy_after,
            crashes: 0,
        }
    }

    /// Records a crash after `ran_for` and returns how long to wait before restarting.
    pub fn next_delay(&mut self, ran_for: Duration) -> Duration {
        if ran_for >= self.healthy_after {
            self.crashes = 0;
        }
        let delay = self.schedule[self.crashes.min(self.schedule.len() - 1)];
        self.crashes += 1;
        delay
    }

    /// A schedule from seconds separated by commas: `0,1,2,4,8,16,32,60`.
    pub fn parse_schedule(text: &str) -> Result<Vec<Duration>, String> {
        text.split(',')
            .map(|part| {
                let part = part.trim();
                part.parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s >= 0.0 && *s <= 86_400.0)
                    .map(Duration::from_secs_f64)
                    .ok_or_else(|| format!("`{part}` is not a delay in seconds (0 to 86400)"))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_then_resets_after_healthy_run() {
        let s = |n| Duration::from_secs(n);
        let mut b = Backoff::new(vec![s(0), s(1), s(5)], s(10));
        assert_eq!(b.next_delay(s(0)), s(0));
        assert_eq!(b.next_delay(s(0)), s(1));
        assert_eq!(b.next_delay(s(0)), s(5));
        assert_eq!(b.next_delay(s(0)), s(5));
        assert_eq!(b.next_delay(s(11)), s(0));
    }

    #[test]
    fn parses_schedules() {
        let parsed = Backoff::parse_schedule("0, 0.5,2").unwrap();
        assert_eq!(
            parsed,
            vec![
                Duration::ZERO,
                Duration::from_millis(500),
                Duration::from_secs(2)
            ]
        );
        assert!(Backoff::parse_schedule("1,x").is_err());
        assert!(Backoff::parse_schedule("-1").is_err());
    }
}
