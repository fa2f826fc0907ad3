//! How long a guest may take to come up and how long the platform lets one-shot work
//! run: a component whose start function never returns, a release command that never
//! exits or a forgotten one-off dyno must not hold a core, an app's release turn or a
//! host's boot forever. The defaults are Heroku's.

use std::time::Duration;

/// The deadlines of one host, the same for every app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// From "starting" to "up": a web dyno's first instance, a worker's instantiation
    /// (its start functions). Past it: `Error R10 (Boot timeout)`, the dyno stops.
    pub boot: Duration,
    /// The release phase (`release:` in the Procfile): past it the command is stopped
    /// and the release fails.
    pub release: Duration,
    /// The longest a one-off dyno (`wdeploy run`) lives; `run --timeout` may ask for
    /// less.
    pub one_off: Duration,
    /// How long a stopping worker has to exit after its stdin closes (then R12).
    pub stop: Duration,
    /// How long web dynos stay warm without a request before they go idle, for apps whose
    /// `wdeploy.toml` does not say (`[web] idle_after`); `None`: they never do.
    pub idle_after: Option<Duration>,
}

impl Deadlines {
    /// Heroku's R10: a web process must bind its port within 60 s of launch.
    pub const DEFAULT_BOOT: Duration = Duration::from_secs(60);
    /// Heroku's release phase limit.
    pub const DEFAULT_RELEASE: Duration = Duration::from_secs(3600);
    /// Heroku cycles every dyno at least once a day; a one-off lives at most that long.
    pub const DEFAULT_ONE_OFF: Duration = Duration::from_secs(24 * 3600);
    /// Heroku's 30 s between SIGTERM and SIGKILL.
    pub const DEFAULT_STOP: Duration = Duration::from_secs(30);

    /// The lifetime of a one-off dyno whose client asked for `requested` (never more
    /// than the host allows; zero is "the host's").
    pub fn one_off_lifetime(&self, requested: Option<Duration>) -> Duration {
        match requested {
            Some(asked) if !asked.is_zero() => asked.min(self.one_off),
            _ => self.one_off,
        }
    }
}

impl Default for Deadlines {
    fn default() -> Deadlines {
        Deadlines {
            boot: Deadlines::DEFAULT_BOOT,
            release: Deadlines::DEFAULT_RELEASE,
            one_off: Deadlines::DEFAULT_ONE_OFF,
            stop: Deadlines::DEFAULT_STOP,
            idle_after: None,
        }
    }
}

/// A duration the way log lines say it: `45s`, `1.5s`, `250ms`.
pub fn human(d: Duration) -> String {
    if d.as_millis() < 1000 {
        format!("{}ms", d.as_millis())
    } else if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_one_off_gets_what_it_asks_up_to_the_host_limit() {
        let d = Deadlines {
            one_off: Duration::from_secs(100),
            ..Deadlines::default()
        };
        assert_eq!(d.one_off_lifetime(None), Duration::from_secs(100));
        assert_eq!(
            d.one_off_lifetime(Some(Duration::ZERO)),
            Duration::from_secs(100)
        );
        assert_eq!(
            d.one_off_lifetime(Some(Duration::from_secs(5))),
            Duration::from_secs(5)
        );
        assert_eq!(
            d.one_off_lifetime(Some(Duration::from_secs(500))),
            Duration::from_secs(100)
        );
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(human(Duration::from_millis(250)), "250ms");
        assert_eq!(human(Duration::from_secs(60)), "60s");
        assert_eq!(human(Duration::from_millis(1500)), "1.5s");
    }
}
