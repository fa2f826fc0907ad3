//! The host's metrics: one prometheus-client registry per host, exported as Prometheus
//! text at `/metrics`, and each active app's last hour, sampled from the same counts,
//! for the dashboard (`GET /apps/{app}/metrics`).
//!
//! - `app.rs`: an app's counters ([`AppMetrics`], the handle its parts count through);
//! - `latency.rs`: the router latency histogram the exporter and the history both read;
//! - `history.rs`: an app's samples (rates, p50/p99, memory), allocated on first traffic;
//! - `collect.rs`: the collector that encodes it all at scrape time, with the gauges
//!   read then from the host ([`LiveSource`]: dynos by state, instances, memory, pool).
//!
//! The engine owns the host's [`Metrics`] (it is the one part every other part has), so
//! the compile cache counts its hits and misses there and every app's runtime takes its
//! handle from it.

mod app;
mod collect;
mod history;
mod latency;

pub use app::{Addon, AppMetrics};
pub use collect::{LiveApp, LiveSource, PoolUse};
pub use history::SAMPLE_EVERY;

use app::Active;
use collect::{LiveSlot, Scrape};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use std::sync::{Arc, Weak};
use std::time::Instant;
use wdeploy_core::AppName;

/// The host's registry: host-wide counters, and the apps that have counts.
pub struct Metrics {
    registry: Registry,
    active: Arc<Active>,
    live: Arc<LiveSlot>,
    compile_cache_hits: Counter,
    compile_cache_misses: Counter,
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("wdeploy");
        let compile_cache_hits = Counter::default();
        let compile_cache_misses = Counter::default();
        registry.register(
            "compile_cache_hits",
            "Components loaded compiled from the compile cache on disk",
            compile_cache_hits.clone(),
        );
        registry.register(
            "compile_cache_misses",
            "Components compiled because the compile cache did not have them",
            compile_cache_misses.clone(),
        );
        let active: Arc<Active> = Arc::default();
        let live: Arc<LiveSlot> = Arc::default();
        registry.register_collector(Box::new(Scrape {
            active: active.clone(),
            live: live.clone(),
            started: Instant::now(),
        }));
        Arc::new(Metrics {
            registry,
            active,
            live,
            compile_cache_hits,
            compile_cache_misses,
        })
    }

    /// The handle an app counts through (nothing is allocated for it before it counts).
    pub fn app(&self, name: AppName) -> Arc<AppMetrics> {
        Arc::new(AppMetrics::new(name, Arc::downgrade(&self.active)))
    }

    /// Where the gauges are read from at scrape time (the host, once it is made).
    pub fn set_live(&self, source: Weak<dyn LiveSource>) {
        *self.live.write() = Some(source);
    }

    pub fn compile_cache_hit(&self) {
        self.compile_cache_hits.inc();
    }

    pub fn compile_cache_miss(&self) {
        self.compile_cache_misses.inc();
    }

    /// Everything, in the Prometheus text format (version 0.0.4: the API serves it as
    /// `wdeploy_api::server::METRICS_CONTENT_TYPE`).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail, nor can the collector, which only formats.
        if let Err(e) =
            prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)
        {
            tracing::error!("encoding the metrics failed: {e}");
        }
        text
    }

    /// Samples every active app's history once; `period` is the time since the last
    /// look.
    pub fn sample(&self, at: i64, period: std::time::Duration) {
        let apps: Vec<_> = self
            .active
            .read()
            .iter()
            .map(|(name, counts)| (name.clone(), counts.clone()))
            .collect();
        let live = self.live.read().as_ref().and_then(Weak::upgrade);
        for (name, counts) in apps {
            let memory = live.as_ref().map_or(0, |live| live.memory_bytes(&name));
            let totals = counts.totals();
            counts.history.lock().record(at, period, totals, memory);
        }
    }

    /// Samples every [`SAMPLE_EVERY`] until the metrics are dropped.
    pub fn start_sampling(self: &Arc<Self>) {
        let metrics = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(SAMPLE_EVERY);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            let mut last = Instant::now();
            loop {
                ticks.tick().await;
                let Some(metrics) = metrics.upgrade() else {
                    return;
                };
                let now = Instant::now();
                metrics.sample(chrono::Utc::now().timestamp(), now - last);
                last = now;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use wdeploy_core::{DynoState, ProcessType};

    struct Fixed;

    impl LiveSource for Fixed {
        fn app(&self, _: &AppName) -> Option<LiveApp> {
            let mut live = LiveApp {
                instances: 2,
                memory_bytes: 3 << 20,
                largest_instance_bytes: 2 << 20,
                release: Some(4),
                ..LiveApp::default()
            };
            live.dynos.insert((ProcessType::web(), DynoState::Up), 2);
            Some(live)
        }
        fn memory_bytes(&self, _: &AppName) -> u64 {
            3 << 20
        }
        fn pool(&self) -> PoolUse {
            PoolUse { slots: 10, used: 2 }
        }
    }

    #[test]
    fn the_text_names_follow_prometheus_conventions_and_idle_apps_are_absent() {
        let metrics = Metrics::new();
        let live: Arc<dyn LiveSource> = Arc::new(Fixed);
        metrics.set_live(Arc::downgrade(&live));
        let busy = metrics.app("busy".parse().unwrap());
        let _idle = metrics.app("idle".parse().unwrap());
        for _ in 0..97 {
            busy.request(200, None, Duration::from_millis(2));
        }
        for _ in 0..3 {
            busy.request(500, Some("H13"), Duration::from_millis(2));
        }
        busy.crashed(&ProcessType::web());
        busy.restarted(&"worker".parse::<ProcessType>().unwrap());
        busy.addon_call(Addon::KeyValue, false);
        busy.addon_call(Addon::KeyValue, true);
        busy.log_line_dropped();
        metrics.compile_cache_miss();
        let text = metrics.encode();
        for line in [
            "wdeploy_router_requests_total{app=\"busy\",status_class=\"2xx\"} 97",
            "wdeploy_router_requests_total{app=\"busy\",status_class=\"5xx\"} 3",
            "wdeploy_router_errors_total{app=\"busy\",code=\"H13\"} 3",
            "wdeploy_router_request_duration_seconds_count{app=\"busy\"} 100",
            "wdeploy_router_request_duration_seconds_bucket{app=\"busy\",le=\"+Inf\"} 100",
            "wdeploy_app_dynos{app=\"busy\",process_type=\"web\",state=\"up\"} 2",
            "wdeploy_app_memory_bytes{app=\"busy\"} 3145728",
            "wdeploy_app_instance_memory_max_bytes{app=\"busy\"} 2097152",
            "wdeploy_app_releases{app=\"busy\"} 4",
            "wdeploy_app_crashes_total{app=\"busy\",process_type=\"web\"} 1",
            "wdeploy_app_restarts_total{app=\"busy\",process_type=\"worker\"} 1",
            "wdeploy_app_addon_operations_total{app=\"busy\",addon=\"keyvalue\"} 2",
            "wdeploy_app_addon_errors_total{app=\"busy\",addon=\"keyvalue\"} 1",
            "wdeploy_app_log_lines_dropped_total{app=\"busy\"} 1",
            "wdeploy_instance_pool_slots{state=\"free\"} 8",
            "wdeploy_compile_cache_misses_total 1",
            "# TYPE wdeploy_uptime_seconds gauge",
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
        }
        assert!(!text.contains("idle"), "an idle app has no series:\n{text}");

        // The history samples the same counts.
        metrics.sample(100, SAMPLE_EVERY);
        let samples = busy.history();
        assert_eq!(samples.len(), 1);
        assert_eq!(samples[0].requests_per_second, 10.0);
        assert_eq!(samples[0].errors_per_second, 0.3);
        assert_eq!(samples[0].memory_bytes, 3 << 20);

        busy.retire();
        assert!(
            !metrics.encode().contains("busy"),
            "a destroyed app's series go"
        );
    }

    #[test]
    fn the_api_serves_the_content_type_of_this_encoding() {
        assert_eq!(
            wdeploy_api::server::METRICS_CONTENT_TYPE,
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE
        );
    }
}
