//! What `/metrics` shows, encoded by prometheus-client at each scrape: the counters of
//! every active app (`app.rs`), and gauges read from the parts that own them at that
//! moment (dynos by state, instances and their memory, the instance pool), through a
//! [`LiveSource`] the host provides.
//!
//! Cardinality: only apps active on this host since it started (a request, a dyno
//! started, a crash, an add-on call, a dropped log line) have series, and a destroyed
//! app's go with it; a host holding 100,000 apps that nobody calls scrapes small. Within
//! an app, a status class, router code or process type that never counted anything has
//! no series (Prometheus reads a missing counter as none yet).

use super::app::{Active, Addon, AppCounts, ROUTER_CODES, STATUS_CLASSES};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Instant;
use wdeploy_core::{AppName, DynoState, ProcessType};

/// Where the gauges come from at scrape time: the host's apps and engine.
pub trait LiveSource: Send + Sync {
    /// What `app` runs on this host now (`None`: nothing known of it).
    fn app(&self, app: &AppName) -> Option<LiveApp>;
    /// Linear memory of the app's instances now, in bytes (for the history).
    fn memory_bytes(&self, app: &AppName) -> u64;
    /// The engine's instance pool.
    fn pool(&self) -> PoolUse;
}

/// An app's gauges at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveApp {
    /// Dynos by process type and state.
    pub dynos: BTreeMap<(ProcessType, DynoState), u32>,
    /// Instances (of any of its dynos) alive now.
    pub instances: u32,
    /// Linear memory of those instances together, as the store limiter granted it.
    pub memory_bytes: u64,
    /// The largest of them.
    pub largest_instance_bytes: u64,
    /// The version serving now: vN is the app's Nth release.
    pub release: Option<u64>,
}

/// The host's instance pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolUse {
    pub slots: u32,
    pub used: u32,
}

/// Where the host's [`LiveSource`] is, once it has one.
pub(super) type LiveSlot = parking_lot::RwLock<Option<Weak<dyn LiveSource>>>;

/// The collector registered with the host's registry.
pub(super) struct Scrape {
    pub active: Arc<Active>,
    pub live: Arc<LiveSlot>,
    pub started: Instant,
}

impl fmt::Debug for Scrape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scrape").finish_non_exhaustive()
    }
}

/// A gauge of each app: its name, help, unit, and how to read it.
type PerAppGauge = (
    &'static str,
    &'static str,
    Option<Unit>,
    fn(&LiveApp) -> Option<u64>,
);

fn counter(family: &mut MetricEncoder, labels: &impl EncodeLabelSet, value: u64) -> fmt::Result {
    ConstCounter::new(value).encode(family.encode_family(labels)?)
}

fn gauge(family: &mut MetricEncoder, labels: &impl EncodeLabelSet, value: u64) -> fmt::Result {
    ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX)).encode(family.encode_family(labels)?)
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let mut apps: Vec<(AppName, Arc<AppCounts>)> = self
            .active
            .read()
            .iter()
            .map(|(name, counts)| (name.clone(), counts.clone()))
            .collect();
        apps.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        let live = self.live.read().as_ref().and_then(Weak::upgrade);
        let gauges: Vec<LiveApp> = apps
            .iter()
            .map(|(name, _)| {
                live.as_ref()
                    .and_then(|live| live.app(name))
                    .unwrap_or_default()
            })
            .collect();
        let load = |value: &std::sync::atomic::AtomicU64| value.load(Ordering::Relaxed);

        let mut family = encoder.encode_descriptor(
            "router_requests",
            "Requests the router answered for the app, by status class",
            None,
            MetricType::Counter,
        )?;
        for (name, counts) in &apps {
            for (class, count) in STATUS_CLASSES.iter().zip(&counts.requests) {
                if load(count) > 0 {
                    let labels = [("app", name.as_str()), ("status_class", class)];
                    counter(&mut family, &labels, load(count))?;
                }
            }
        }

        let mut family = encoder.encode_descriptor(
            "router_errors",
            "Requests the router answered with an error code (H10 app crashed, H11 backlog too deep, H12 timeout, H13 connection closed without response, H14 no web dynos, H25 bad request)",
            None,
            MetricType::Counter,
        )?;
        for (name, counts) in &apps {
            for (code, count) in ROUTER_CODES.iter().zip(&counts.router_errors) {
                if load(count) > 0 {
                    let labels = [("app", name.as_str()), ("code", code)];
                    counter(&mut family, &labels, load(count))?;
                }
            }
        }

        let mut family = encoder.encode_descriptor(
            "router_request_duration",
            "Router service time of the app's requests, from arrival to the last byte of the response",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for (name, counts) in &apps {
            let latency = counts.latency.counts();
            family
                .encode_family(&[("app", name.as_str())])?
                .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                latency.sum_seconds,
                latency.count(),
                &latency.for_encoder(),
                None,
            )?;
        }

        let mut family = encoder.encode_descriptor(
            "app_dynos",
            "The app's dynos on this host, by process type and state",
            None,
            MetricType::Gauge,
        )?;
        for ((name, _), live) in apps.iter().zip(&gauges) {
            for ((process_type, state), count) in &live.dynos {
                let labels = [
                    ("app", name.as_str()),
                    ("process_type", process_type.as_str()),
                    ("state", state.as_str()),
                ];
                gauge(&mut family, &labels, u64::from(*count))?;
            }
        }

        let per_app_gauges: [PerAppGauge; 4] = [
            (
                "app_instances",
                "Component instances the app holds now (its share of the instance pool in use)",
                None,
                |live| Some(u64::from(live.instances)),
            ),
            (
                "app_memory",
                "Linear memory of the app's instances together, as the store limiter granted it",
                Some(Unit::Bytes),
                |live| Some(live.memory_bytes),
            ),
            (
                "app_instance_memory_max",
                "Linear memory of the app's largest instance",
                Some(Unit::Bytes),
                |live| Some(live.largest_instance_bytes),
            ),
            (
                "app_releases",
                "Releases the app has made up to the one serving now (its version)",
                None,
                |live| live.release,
            ),
        ];
        for (metric, help, unit, value) in per_app_gauges {
            let mut family =
                encoder.encode_descriptor(metric, help, unit.as_ref(), MetricType::Gauge)?;
            for ((name, _), live) in apps.iter().zip(&gauges) {
                if let Some(value) = value(live) {
                    gauge(&mut family, &[("app", name.as_str())], value)?;
                }
            }
        }

        for (metric, help, of) in [
            (
                "app_crashes",
                "Crashes of the app's dynos: a worker that exited or trapped, a web instance that trapped",
                (|counts| &counts.crashes) as fn(&AppCounts) -> &parking_lot::Mutex<_>,
            ),
            (
                "app_restarts",
                "Restarts of the app's dynos, after a crash or asked for",
                |counts| &counts.restarts,
            ),
        ] {
            let mut family = encoder.encode_descriptor(metric, help, None, MetricType::Counter)?;
            for (name, counts) in &apps {
                for (process_type, count) in of(counts).lock().iter() {
                    let labels = [
                        ("app", name.as_str()),
                        ("process_type", process_type.as_str()),
                    ];
                    counter(&mut family, &labels, *count)?;
                }
            }
        }

        let mut family = encoder.encode_descriptor(
            "app_log_lines_dropped",
            "Dyno log lines dropped over the app's log rate (told in its log as L10)",
            None,
            MetricType::Counter,
        )?;
        for (name, counts) in &apps {
            let dropped = load(&counts.log_lines_dropped);
            counter(&mut family, &[("app", name.as_str())], dropped)?;
        }

        for (metric, help, of) in [
            (
                "app_addon_operations",
                "Calls of the app's guests to an add-on",
                (|counts| &counts.addon_calls) as fn(&AppCounts) -> &[_; 2],
            ),
            (
                "app_addon_errors",
                "Calls of the app's guests to an add-on that failed (over quota, invalid, the store unavailable)",
                |counts| &counts.addon_errors,
            ),
        ] {
            let mut family = encoder.encode_descriptor(metric, help, None, MetricType::Counter)?;
            for (name, counts) in &apps {
                for addon in Addon::ALL {
                    let value = load(&of(counts)[addon as usize]);
                    if value > 0 {
                        let labels = [("app", name.as_str()), ("addon", addon.as_str())];
                        counter(&mut family, &labels, value)?;
                    }
                }
            }
        }

        if let Some(pool) = live.as_ref().map(|live| live.pool()) {
            let mut family = encoder.encode_descriptor(
                "instance_pool_slots",
                "Slots of the host's instance pool, used or free",
                None,
                MetricType::Gauge,
            )?;
            gauge(&mut family, &[("state", "used")], u64::from(pool.used))?;
            let free = pool.slots.saturating_sub(pool.used);
            gauge(&mut family, &[("state", "free")], u64::from(free))?;
        }

        let uptime = ConstGauge::new(self.started.elapsed().as_secs_f64());
        uptime.encode(encoder.encode_descriptor(
            "uptime",
            "Time since the host started",
            Some(&Unit::Seconds),
            MetricType::Gauge,
        )?)
    }
}
