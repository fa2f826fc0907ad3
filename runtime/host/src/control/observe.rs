//! What the host shows of itself for monitoring: the gauges `/metrics` reads at scrape
//! time (the [`LiveSource`] of the engine's metrics), the Prometheus text, and an app's
//! last hour for the dashboard.

use super::Host;
use super::errors::Result;
use crate::metrics::{LiveApp, LiveSource, PoolUse, SAMPLE_EVERY};
use wdeploy_api::wire::{MetricsHistory, MetricsSample};
use wdeploy_core::AppName;

impl LiveSource for Host {
    fn app(&self, app: &AppName) -> Option<LiveApp> {
        let runtime = self.apps.lock().get(app).map(|e| e.runtime.clone())?;
        let mut live = LiveApp::default();
        for dyno in runtime.dynos() {
            *live
                .dynos
                .entry((dyno.process_type, dyno.state))
                .or_insert(0) += 1;
        }
        let usage = self.engine.shares().usage(app);
        live.instances = usage.instances;
        live.memory_bytes = usage.memory_bytes as u64;
        live.largest_instance_bytes = usage.largest_instance_bytes as u64;
        live.release = runtime.current_release().map(|r| r.version);
        Some(live)
    }

    fn memory_bytes(&self, app: &AppName) -> u64 {
        self.engine.shares().usage(app).memory_bytes as u64
    }

    fn pool(&self) -> PoolUse {
        let (slots, used) = self.engine.shares().pool();
        PoolUse { slots, used }
    }
}

impl Host {
    /// Starts the engine's metrics reading this host's gauges, and sampling every app's
    /// history.
    pub(super) fn observe(self: &std::sync::Arc<Self>) {
        let host = std::sync::Arc::downgrade(self);
        let live: std::sync::Weak<dyn LiveSource> = host;
        let metrics = self.engine.metrics();
        metrics.set_live(live);
        metrics.start_sampling();
    }

    /// Every metric of this host, as Prometheus text.
    pub(super) fn metrics_text(&self) -> String {
        self.engine.metrics().encode()
    }

    /// The app's samples of the last hour on this node.
    pub(super) async fn metrics_history(&self, app: &AppName) -> Result<MetricsHistory> {
        let entry = self.existing(app).await?;
        let samples = entry
            .runtime
            .metrics
            .history()
            .into_iter()
            .map(|sample| MetricsSample {
                at: chrono::DateTime::from_timestamp(sample.at, 0).unwrap_or_default(),
                requests: sample.requests,
                errors: sample.server_errors,
                requests_per_second: sample.requests_per_second,
                errors_per_second: sample.errors_per_second,
                p50_seconds: sample.p50_seconds,
                p99_seconds: sample.p99_seconds,
                memory_bytes: sample.memory_bytes,
            })
            .collect();
        Ok(MetricsHistory {
            app: app.clone(),
            interval_seconds: SAMPLE_EVERY.as_secs(),
            samples,
        })
    }
}
