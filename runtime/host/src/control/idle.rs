//! Scale to zero: web dynos that had no request for their app's `idle_after` release
//! their instances (`ps` shows them `idle`), and the next request wakes one.
//!
//! One look over every app each [`LOOK_EVERY`], rather than a timer per dyno: a host with
//! a hundred thousand mostly idle apps keeps no hundred thousand timers, and a look at a
//! dyno that is already idle is two loads.

use super::Host;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the web dynos are looked at: the granularity of `idle_after`.
const LOOK_EVERY: Duration = Duration::from_secs(1);

impl Host {
    /// Puts idle web dynos to sleep until `stop` fires.
    pub(super) async fn sleep_idle_dynos(&self, stop: CancellationToken) {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(LOOK_EVERY) => {}
            }
            let apps: Vec<_> = self
                .apps
                .lock()
                .values()
                .map(|entry| entry.runtime.clone())
                .collect();
            let slept: usize = apps.iter().map(|app| app.sleep_idle()).sum();
            if slept > 0 {
                // Published by the converge loop's next steady look: an idle dyno still
                // serves, so nothing routes differently meanwhile.
                tracing::debug!(dynos = slept, "web dynos went idle");
            }
        }
    }
}
