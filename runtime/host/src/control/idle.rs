//! Scale to zero: web dynos that had no request for their app's `idle_after` release
//! their instances (`ps` shows them `idle`), and the next request wakes one.
//!
//! One look each [`LOOK_EVERY`], rather than a timer per dyno: a host with a hundred
//! thousand mostly idle apps keeps no hundred thousand timers. A look visits only the apps
//! whose lanes have threads: an awake dyno has had an instance, which runs on its app's
//! lane, and a lane stops only once every dyno of its app sleeps. So a look costs the
//! awake apps, not the host's (walking 100,000 apps held a worker thread for about 15 ms,
//! a stall every request then landing on that thread waited out), and it runs on a
//! blocking thread, paced so that it never holds a core for long.

use super::Host;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the web dynos are looked at: the granularity of `idle_after`.
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// How long a look works before it pauses for [`PAUSE`]: putting a dyno to sleep costs
/// 0.1–0.2 ms (its instances' pool slots are reset, its lane's threads stopped), and a
/// burst of a thousand apps falls asleep in one look. Done in one go, that held a core
/// for 60–160 ms, and the wake-ups of a storm arriving meanwhile queued behind it (the
/// storm's slowest requests all fell in that window). Paced, a look takes a quarter of a
/// core at most.
const SLICE: Duration = Duration::from_millis(1);
const PAUSE: Duration = Duration::from_millis(3);

impl Host {
    /// Puts idle web dynos to sleep until `stop` fires.
    pub(super) async fn sleep_idle_dynos(&self, stop: CancellationToken) {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(LOOK_EVERY) => {}
            }
            let awake = self.engine.cpu_governor().apps_with_threads();
            let apps: Vec<_> = {
                let apps = self.apps.lock();
                awake
                    .iter()
                    .filter_map(|name| apps.get(name))
                    .map(|entry| entry.runtime.clone())
                    .collect()
            };
            // Off the runtime's workers: putting a dyno to sleep drops its instances
            // (each pool slot reset) and stops its lane, tens of microseconds each, and
            // a thousand apps woken by a burst fall asleep in the same look: done on a
            // worker, requests landing on it waited tens of milliseconds.
            let (looked, started) = (apps.len(), std::time::Instant::now());
            let sleeping = tokio::task::spawn_blocking(move || {
                let mut slice = std::time::Instant::now();
                let mut slept = 0;
                for app in apps {
                    slept += app.sleep_idle();
                    if slice.elapsed() >= SLICE {
                        std::thread::sleep(PAUSE);
                        slice = std::time::Instant::now();
                    }
                }
                slept
            });
            let slept: usize = sleeping.await.unwrap_or_else(|e| {
                tracing::error!("putting idle dynos to sleep failed: {e}");
                0
            });
            if slept > 0 {
                // Published by the converge loop's next steady look: an idle dyno still
                // serves, so nothing routes differently meanwhile.
                tracing::debug!(dynos = slept, apps = looked, took = ?started.elapsed(), "web dynos went idle");
            }
        }
    }
}
