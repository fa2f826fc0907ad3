//! One app's counters: what its router lines, dynos, add-on calls and log stream count.
//!
//! [`AppMetrics`] is the handle the app's runtime, router lines, dynos and add-ons hold.
//! It allocates nothing until the first thing worth counting happens (most apps of a big
//! host are idle), and only then registers the app's [`AppCounts`] with the host's
//! [`Metrics`](super::Metrics), which is what `/metrics` shows: an app appears there
//! with its first activity on this host and leaves when it is destroyed.

use super::history::{History, Totals};
use super::latency::Latency;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;
use wdeploy_core::{AppName, ProcessType};

/// The apps with counts, by name: what the exporter and the sampler walk.
pub(super) type Active = parking_lot::RwLock<std::collections::HashMap<AppName, Arc<AppCounts>>>;

/// Heroku's router error codes the router answers with, in the order they are counted.
pub const ROUTER_CODES: [&str; 6] = ["H10", "H11", "H12", "H13", "H14", "H25"];

/// Status classes `1xx` to `5xx`.
pub const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Which add-on a guest called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addon {
    KeyValue,
    Queue,
}

impl Addon {
    pub const ALL: [Addon; 2] = [Addon::KeyValue, Addon::Queue];

    pub fn as_str(self) -> &'static str {
        match self {
            Addon::KeyValue => "keyvalue",
            Addon::Queue => "queue",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The handle an app's parts count through.
pub struct AppMetrics {
    name: AppName,
    active: Weak<Active>,
    counts: OnceLock<Arc<AppCounts>>,
    /// Set when the app is destroyed: its counts leave `/metrics` and do not come back
    /// if a request still in flight ends afterwards.
    retired: AtomicBool,
}

/// An app's counts, from its first activity on this host.
#[derive(Default)]
pub struct AppCounts {
    /// Router answers by status class (`STATUS_CLASSES`).
    pub(super) requests: [AtomicU64; 5],
    /// Router errors by code (`ROUTER_CODES`).
    pub(super) router_errors: [AtomicU64; ROUTER_CODES.len()],
    /// Router service time (first byte in to last byte out).
    pub(super) latency: Latency,
    /// Crashes (a worker's exit or trap, a web instance's trap) by process type.
    pub(super) crashes: Mutex<BTreeMap<ProcessType, u64>>,
    /// Dyno restarts (after a crash, or asked for) by process type.
    pub(super) restarts: Mutex<BTreeMap<ProcessType, u64>>,
    /// Add-on calls and failed calls, by `Addon`.
    pub(super) addon_calls: [AtomicU64; 2],
    pub(super) addon_errors: [AtomicU64; 2],
    /// Dyno log lines dropped over the app's log rate (L10).
    pub(super) log_lines_dropped: AtomicU64,
    /// The app's last hour, sampled from the counts above.
    pub(super) history: Mutex<History>,
}

impl AppMetrics {
    pub(super) fn new(name: AppName, active: Weak<Active>) -> AppMetrics {
        AppMetrics {
            name,
            active,
            counts: OnceLock::new(),
            retired: AtomicBool::new(false),
        }
    }

    /// A handle that counts but never shows in any `/metrics` (tests, `dev`).
    pub fn detached(name: AppName) -> Arc<AppMetrics> {
        Arc::new(AppMetrics::new(name, Weak::new()))
    }

    pub fn name(&self) -> &AppName {
        &self.name
    }

    /// The app's counts, made and registered at the first call.
    fn counts(&self) -> &AppCounts {
        self.counts.get_or_init(|| {
            let counts = Arc::new(AppCounts::default());
            if !self.retired.load(Ordering::SeqCst)
                && let Some(active) = self.active.upgrade()
            {
                active.write().insert(self.name.clone(), counts.clone());
            }
            counts
        })
    }

    /// Marks the app active without counting anything (its dynos started): it shows in
    /// `/metrics` from now on.
    pub fn activate(&self) {
        self.counts();
    }

    /// One request the router answered: its status, its error code if the router gave
    /// one, and how long it took from arrival to the last byte out.
    pub fn request(&self, status: u16, code: Option<&str>, elapsed: Duration) {
        let counts = self.counts();
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        counts.requests[class].fetch_add(1, Ordering::Relaxed);
        if let Some(index) = code.and_then(|code| ROUTER_CODES.iter().position(|c| *c == code)) {
            counts.router_errors[index].fetch_add(1, Ordering::Relaxed);
        }
        counts.latency.observe(elapsed);
    }

    /// A dyno of `process_type` crashed (a worker ended, a web instance trapped).
    pub fn crashed(&self, process_type: &ProcessType) {
        *self
            .counts()
            .crashes
            .lock()
            .entry(process_type.clone())
            .or_insert(0) += 1;
    }

    /// A dyno of `process_type` restarted.
    pub fn restarted(&self, process_type: &ProcessType) {
        *self
            .counts()
            .restarts
            .lock()
            .entry(process_type.clone())
            .or_insert(0) += 1;
    }

    /// One call of a guest to an add-on, and whether it failed.
    pub fn addon_call(&self, addon: Addon, failed: bool) {
        let counts = self.counts();
        counts.addon_calls[addon.index()].fetch_add(1, Ordering::Relaxed);
        if failed {
            counts.addon_errors[addon.index()].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A dyno's log line was dropped over the app's log rate.
    pub fn log_line_dropped(&self) {
        self.counts()
            .log_lines_dropped
            .fetch_add(1, Ordering::Relaxed);
    }

    /// The app's samples of the last hour, oldest first (none before its first traffic).
    pub fn history(&self) -> Vec<super::history::Sample> {
        self.counts
            .get()
            .map(|counts| counts.history.lock().samples())
            .unwrap_or_default()
    }

    /// The app is destroyed: its series leave `/metrics`.
    pub fn retire(&self) {
        self.retired.store(true, Ordering::SeqCst);
        if let Some(active) = self.active.upgrade() {
            let mut active = active.write();
            // Only its own entry: a new app of the same name may have registered since.
            if let (Some(mine), Some(listed)) = (self.counts.get(), active.get(&self.name))
                && Arc::ptr_eq(mine, listed)
            {
                active.remove(&self.name);
            }
        }
    }
}

impl AppCounts {
    /// The cumulative figures the history samples.
    pub(super) fn totals(&self) -> Totals {
        Totals {
            requests: self
                .requests
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .sum(),
            server_errors: self.requests[4].load(Ordering::Relaxed),
            latency: self.latency.counts(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(name: &str) -> AppName {
        name.parse().unwrap()
    }

    #[test]
    fn an_app_registers_at_its_first_count_and_leaves_when_retired() {
        let active: Arc<Active> = Arc::default();
        let metrics = AppMetrics::new(app("shop"), Arc::downgrade(&active));
        assert!(
            active.read().is_empty(),
            "nothing allocated for an idle app"
        );
        metrics.request(200, None, Duration::from_millis(3));
        metrics.request(503, Some("H13"), Duration::from_millis(3));
        let counts = active
            .read()
            .get(&app("shop"))
            .cloned()
            .expect("registered");
        assert_eq!(counts.requests[1].load(Ordering::Relaxed), 1);
        assert_eq!(counts.requests[4].load(Ordering::Relaxed), 1);
        assert_eq!(counts.router_errors[3].load(Ordering::Relaxed), 1);
        assert_eq!(counts.totals().requests, 2);
        assert_eq!(counts.totals().latency.count(), 2);

        // A new app of the same name registers its own counts; retiring the old one
        // leaves the new one's alone.
        let again = AppMetrics::new(app("shop"), Arc::downgrade(&active));
        metrics.retire();
        assert!(active.read().is_empty());
        again.activate();
        metrics.request(200, None, Duration::ZERO);
        assert!(
            std::ptr::eq(&*active.read()[&app("shop")], again.counts()),
            "a request of the destroyed app does not bring it back"
        );
        metrics.retire();
        assert_eq!(active.read().len(), 1);
    }
}
