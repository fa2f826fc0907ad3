//! The host's side of the control API: apps, releases, config vars, formation, dynos,
//! logs and add-on data, kept in the store and carried out by the apps' runtimes.
//!
//! - `mod.rs`: the [`Host`], its apps' runtimes, start (restore) and stop;
//! - `bootstrap`: the admin token;
//! - `releases`: the release pipeline (append, load, release phase, preboot) and the
//!   calls that make releases: deploys, rollbacks, config changes;
//! - `streams`: log streams and one-off dynos' output;
//! - `addon_admin`: `kv:*` and `queue:stats`;
//! - `drains`: `log-drains`, and each app's log stream shipping to its drains;
//! - `platform`: the API's `Platform` trait, call by call;
//! - `converge`: this node's part of the cluster: heartbeats, other nodes' log lines, and
//!   the loop that makes the dynos it runs match the store (placement, new releases);
//! - `errors`: how failures reach clients;
//! - `observe`: the gauges `/metrics` reads from the host, and an app's last hour;
//! - `acme`: automatic certificates: the router's HTTP-01 answers, the ordering worker.

mod acme;
mod addon_admin;
mod blob_gc;
mod bootstrap;
mod budgets;
mod cancel;
mod certs;
mod cluster_keys;
mod converge;
mod domains;
mod drains;
mod errors;
mod idle;
mod leave;
mod maintenance;
mod node_calls;
mod nodes;
mod observe;
mod one_offs;
mod people;
mod platform;
mod release_phase;
mod releases;
mod rename;
mod reporter;
mod streams;
mod uploads;

use crate::app::AppRuntime;
use crate::cluster::Membership;
use crate::deadlines::Deadlines;
use crate::dyno::backoff::Backoff;
use crate::dyno::web::WebStart;
use crate::guest::engine::Engine;
use crate::logs::LogStream;
use crate::router::Router;
pub use blob_gc::BlobCollection;
pub use budgets::PersonLimits;
use errors::Result;
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use tokio_util::sync::CancellationToken;
use wdeploy_core::AppName;
use wdeploy_store::{App, AppId, DynoRecord, LogRecord, Store};

/// Where the host keeps its local data and how it is reached.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// The admin token file and the dynos' filesystems live here (the store may too).
    pub data_dir: PathBuf,
    pub domain: String,
    /// The router's port, for app URLs (`http://NAME.DOMAIN:PORT`).
    pub router_port: u16,
    /// How crashed worker dynos are restarted.
    pub backoff: Backoff,
    /// How long boots, release phases and one-off dynos may take, and how long a
    /// stopping worker has to exit after its stdin closes.
    pub deadlines: Deadlines,
    /// The most add-on storage any app gets, in MB, whatever its `limits.addons_mb`.
    pub max_addons_mb: u64,
    /// Lines per second each app's dynos may log (the rest are dropped and counted).
    pub log_rate: crate::logs::rate::LogRate,
    /// What one person may make the host do: API calls, apps.
    pub people: PersonLimits,
    /// When blobs no release references are removed.
    pub blob_gc: BlobCollection,
    /// Where log drains may connect and which extra CAs they trust.
    pub drains: crate::logs::drain::DrainOptions,
    /// The certificates the HTTPS listener serves (filled from the store's).
    pub tls: Arc<crate::tls::HostCerts>,
    /// Where automatic certificates are ordered (ACME).
    pub acme: crate::tls::acme::AcmeOptions,
}

/// Apps restored at once after a restart: enough that one slow boot does not hold the
/// others back, and that the store reads of many idle apps overlap (compiling is bounded
/// by the engine's own turns).
const RESTORE_CONCURRENCY: usize = 16;

/// The host: store + engine + router + every app's runtime.
pub struct Host {
    /// The host itself, for work that must finish even if the request that began it
    /// goes away (a destroy).
    me: Weak<Host>,
    config: HostConfig,
    store: Store,
    engine: Arc<Engine>,
    router: Arc<Router>,
    run_dir: PathBuf,
    apps: Mutex<HashMap<AppName, Arc<AppEntry>>>,
    /// The live nodes as this one sees them (only itself on the embedded store).
    membership: Membership,
    /// Apps by id, for the lines other nodes send.
    ids: Mutex<HashMap<AppId, AppName>>,
    /// Wakes the converge loop early (after a change made here).
    nudge: tokio::sync::Notify,
    /// The apps changed here since the converge loop's last look.
    nudged: Mutex<HashSet<AppName>>,
    /// Whether the next nudged look covers every app.
    nudged_all: std::sync::atomic::AtomicBool,
    /// Looks at every app completed so far (a node leaving waits for one of its own).
    full_looks: std::sync::atomic::AtomicU64,
    /// When this host started.
    started: std::time::Instant,
    /// Held across reading the custom domains and handing them to the router, so an
    /// older read never replaces a newer one.
    domains_refresh: tokio::sync::Mutex<()>,
    /// One reading of the certificates at a time, so an older reading never replaces a
    /// newer one in the HTTPS listener's table.
    certs_refresh: tokio::sync::Mutex<()>,
    /// How the apps' log drains connect.
    drain_network: crate::logs::drain::DrainNetwork,
    /// Orders the apps' automatic certificates.
    acme: crate::tls::acme::AcmeClient,
    /// Wakes the ACME worker early (a domain added with `--acme` here).
    acme_wake: tokio::sync::Notify,
    /// Each person's API calls against their rate.
    calls: budgets::CallBudgets,
}

/// One app this host runs.
struct AppEntry {
    runtime: Arc<AppRuntime>,
    /// One permit: held across "record a release, then run it" (and by scaling, which
    /// must apply to the release that goes live), so the app's releases go live in
    /// version order. It orders work; the data it is about lives in the store.
    releasing: tokio::sync::Semaphore,
    /// The release going live now (or being restored), and how to stop it.
    in_progress: Mutex<Option<InProgress>>,
    /// Set by a destroy: releases still waiting for their turn give up at once.
    destroying: AtomicBool,
    /// The app's id, once known (its log lines go to the other nodes under it).
    id: std::sync::OnceLock<AppId>,
    /// What this node knows of the app as a node of its cluster.
    node: Mutex<NodeState>,
    /// The dyno records this node last published, held while it publishes anew: two
    /// publishers (a look, a one-off starting) then write in turn, each what it read
    /// under the lock, so an older list never replaces a newer one.
    published: tokio::sync::Mutex<Option<Vec<DynoRecord>>>,
}

/// An app's state on this node as its cluster's converge loop keeps it.
#[derive(Default)]
struct NodeState {
    /// The release this node last failed to start: not tried again by the converge loop
    /// until a newer one comes (a deploy here says why at once).
    failed: Option<u64>,
    /// The newest restart request acted on (or found at the first look: requests from
    /// before this node started are history); `None` before the first look.
    restarts_seen: Option<u64>,
    /// What the app's dynos here last settled under: a look finding the same passes the
    /// app by without reading its releases and formation.
    settled: Option<converge::Settled>,
    /// What the app's drains here were last read under: likewise for its drains.
    drains_read: Option<converge::Settled>,
    /// A web dyno here is placed on another node that does not run it up yet.
    handing_over: bool,
}

/// A release on its way live: `cancel` stops it (its release phase or its boot), and
/// `finished` fires once it has ended and its status is recorded.
#[derive(Clone)]
struct InProgress {
    version: u64,
    cancel: CancellationToken,
    finished: CancellationToken,
}

/// Marks a release in progress on its app for as long as it lives.
struct GoingLive<'a> {
    entry: &'a AppEntry,
    cancel: CancellationToken,
    finished: CancellationToken,
}

impl Drop for GoingLive<'_> {
    fn drop(&mut self) {
        *self.entry.in_progress.lock() = None;
        self.finished.cancel();
    }
}

impl AppEntry {
    /// Waits for this app's release in progress, if any, to finish.
    async fn release_turn(&self) -> Result<tokio::sync::SemaphorePermit<'_>> {
        self.releasing.acquire().await.map_err(|_| {
            // Never closed; the error exists only because the type allows it.
            wdeploy_api::ApiError::internal(format!(
                "the release queue of {} closed",
                self.runtime.name
            ))
            .into()
        })
    }

    /// Records that `version` is going live until the returned guard drops; its token
    /// is cancelled by [`AppEntry::cancel_in_progress`].
    fn going_live(&self, version: u64) -> GoingLive<'_> {
        let (cancel, finished) = (CancellationToken::new(), CancellationToken::new());
        *self.in_progress.lock() = Some(InProgress {
            version,
            cancel: cancel.clone(),
            finished: finished.clone(),
        });
        GoingLive {
            entry: self,
            cancel,
            finished,
        }
    }

    /// Cancels the release in progress (`version`'s only, if given), if any: what it was.
    fn cancel_in_progress(&self, version: Option<u64>) -> Option<InProgress> {
        let in_progress = self.in_progress.lock().clone()?;
        if version.is_some_and(|v| v != in_progress.version) {
            return None;
        }
        in_progress.cancel.cancel();
        Some(in_progress)
    }

    fn is_destroying(&self) -> bool {
        self.destroying.load(Ordering::SeqCst)
    }
}

impl Host {
    /// A host over `store`. Returns it and, on first start only, the new admin token (its
    /// hash is stored; the token itself is also written to `DATA/admin-token`, readable
    /// only by the owner).
    pub async fn open(
        config: HostConfig,
        store: Store,
        engine: Arc<Engine>,
        router: Arc<Router>,
    ) -> anyhow::Result<(Arc<Host>, Option<String>)> {
        use anyhow::Context;
        let run_dir = config.data_dir.join("dynos");
        if run_dir.exists() {
            // Filesystems of dynos from a previous run: ephemeral by definition.
            let _ = std::fs::remove_dir_all(&run_dir);
        }
        std::fs::create_dir_all(&run_dir)
            .with_context(|| format!("creating {}", run_dir.display()))?;
        let token = bootstrap::admin_token(&*store.people, &config.data_dir)
            .await
            .context("making the admin token")?;
        let node = store.nodes.me().clone();
        let keys = (store.nodes.cluster_keys().await).context("reading the cluster's key")?;
        router
            .set_node(node.name.as_str(), &keys)
            .context("making the TLS between nodes")?;
        let drain_network = crate::logs::drain::DrainNetwork::new(&config.drains)
            .context("setting up log drains")?;
        let acme = crate::tls::acme::AcmeClient::new(&config.acme, store.acme.clone())
            .context("setting up automatic certificates (ACME)")?;
        let host = Arc::new_cyclic(|me| Host {
            me: me.clone(),
            config,
            store,
            engine,
            router,
            run_dir,
            apps: Mutex::new(HashMap::new()),
            membership: Membership::new(node),
            ids: Mutex::new(HashMap::new()),
            nudge: tokio::sync::Notify::new(),
            nudged: Mutex::new(HashSet::new()),
            nudged_all: std::sync::atomic::AtomicBool::new(false),
            full_looks: std::sync::atomic::AtomicU64::new(0),
            started: std::time::Instant::now(),
            domains_refresh: tokio::sync::Mutex::new(()),
            certs_refresh: tokio::sync::Mutex::new(()),
            drain_network,
            acme,
            acme_wake: tokio::sync::Notify::new(),
            calls: budgets::CallBudgets::default(),
        });
        host.observe();
        host.answer_acme_challenges();
        let weak = Arc::downgrade(&host);
        host.router.set_app_finder(Arc::new(move |name: String| {
            let host = weak.clone();
            Box::pin(async move { host.upgrade()?.find_app(&name).await })
        }));
        let weak = Arc::downgrade(&host);
        host.router.peers().set_finder(Arc::new(move |app: String| {
            let host = weak.clone();
            Box::pin(async move {
                match host.upgrade() {
                    Some(host) => host.find_peers(&app).await,
                    None => Vec::new(),
                }
            })
        }));
        let weak = Arc::downgrade(&host);
        host.router.set_node_calls(Arc::new(move |call, input| {
            let host = weak.clone();
            Box::pin(async move {
                match host.upgrade() {
                    Some(host) => host.serve_node_call(call, input).await,
                    None => Err(wdeploy_api::ApiError::new(
                        503,
                        "unavailable",
                        "this node is stopping",
                    )),
                }
            })
        }));
        Ok((host, token))
    }

    /// This node, as the other nodes of its cluster see it.
    pub fn node(&self) -> &wdeploy_store::NodeInfo {
        self.membership.me()
    }

    /// Every app the store knows, given a runtime (so the router answers it, with a 503
    /// until it is up) at once, without starting anything: `wdeploy host` calls this
    /// before it listens, so no request right after a restart finds "no such app".
    pub async fn routed_apps(&self) -> anyhow::Result<Vec<App>> {
        let apps = self.store.control.apps().await?;
        for app in &apps {
            self.entry_for(app);
        }
        self.refresh_domains().await;
        self.refresh_certs().await;
        Ok(apps)
    }

    /// Brings `apps` back at their current release and formation (after a restart).
    ///
    /// Meant to run once the router and the API listen (every app is already routed by
    /// [`Host::routed_apps`] and answers 503 until it is up); apps start a few at a time,
    /// each under its release turn and the boot deadline, so one app that cannot boot
    /// delays nobody and can be cancelled or destroyed meanwhile.
    pub async fn restore_apps(&self, apps: Vec<App>) {
        use futures::StreamExt;
        // In a cluster, only this node's share: the live nodes first.
        if let Err(e) = self.store.nodes.heartbeat(false).await {
            tracing::warn!("heartbeat before restoring: {e}");
        }
        if let Ok(live) = self.store.nodes.live().await {
            self.observe_nodes(live);
        }
        futures::stream::iter(apps)
            .for_each_concurrent(RESTORE_CONCURRENCY, |app| async move {
                // Read before the release and formation it is restored from: a change
                // meanwhile moves the revision on, and the next look sees it.
                let settled = self.settled_under(&app, self.repair_period());
                let entry = self.apps.lock().get(&app.name).cloned();
                if let Some(entry) = entry {
                    match self.apply_drains(&app, &entry).await {
                        Ok(()) => entry.node.lock().drains_read = settled,
                        Err(e) => {
                            tracing::error!(app = %app.name, "could not read the drains: {e}")
                        }
                    }
                }
                let head = match self.store.control.release_head(&app.name).await {
                    Ok(head) => head,
                    Err(e) => {
                        tracing::error!(app = %app.name, "could not read the releases: {e}");
                        return;
                    }
                };
                let Some(release) = head.current.filter(|r| r.slug.is_some()) else {
                    return;
                };
                let Some(entry) = self.apps.lock().get(&app.name).cloned() else {
                    return; // destroyed meanwhile
                };
                if self.restore_app(&entry, &release).await {
                    entry.node.lock().settled = settled;
                }
            })
            .await;
        // One look at everything publishes what runs here now (not one per app).
        self.nudge_all();
    }

    /// Starts `release`, unless something else came first; says whether it runs now.
    async fn restore_app(&self, entry: &AppEntry, release: &wdeploy_store::Release) -> bool {
        let name = &entry.runtime.name;
        let Ok(_turn) = entry.release_turn().await else {
            return false;
        };
        // A release made since the host started (or a destroy) came first.
        if entry.is_destroying() || entry.runtime.current_release().is_some() {
            return false;
        }
        let going = entry.going_live(release.version);
        // A restored release booted before: a dyno that may sleep starts idle, so a host
        // with many rarely used apps comes back without making an instance for each.
        let start = WebStart::IdleIfAllowed;
        match self
            .start(&entry.runtime, release, start, &going.cancel)
            .await
        {
            Ok(()) => {
                tracing::debug!(app = %name, version = release.version, "restored");
                true
            }
            Err(e) => {
                // Not tried again by the converge loop: a newer release will be.
                entry.node.lock().failed = Some(release.version);
                tracing::error!(app = %name, "could not restore v{}: {e:#}", release.version);
                entry.runtime.logs.platform(
                    "api",
                    format!("Could not restore v{}: {e:#}", release.version),
                );
                false
            }
        }
    }

    /// Stops every app's dynos.
    pub async fn stop(&self) {
        let apps: Vec<_> = self.apps.lock().values().cloned().collect();
        for app in apps {
            app.runtime.stop().await;
        }
    }

    /// The runtime of the app named `name` if the store has it (routed from now on): for
    /// a request that reaches this node before its next look has seen a new app.
    async fn find_app(&self, name: &str) -> Option<Arc<AppRuntime>> {
        let name: AppName = name.parse().ok()?;
        let app = self.store.control.app(&name).await.ok()?;
        Some(self.entry_for(&app).runtime.clone())
    }

    /// An app that exists in the store, with its runtime.
    async fn existing(&self, app: &AppName) -> Result<Arc<AppEntry>> {
        let app = self.store.control.app(app).await?;
        Ok(self.entry_for(&app))
    }

    /// The app's runtime, created on first use, its log lines also sent to the other
    /// nodes (under the app's id).
    ///
    /// A runtime of another app of the same name (destroyed through another node and made
    /// again between two of this node's looks) is retired first: left in place, its
    /// dynos would serve the old app's code and config vars under the new app's name, as
    /// if its release were the new one's when their version numbers match, and nothing
    /// of the new app would be published under its id.
    fn entry_for(&self, app: &App) -> Arc<AppEntry> {
        self.retire_replaced(app);
        let entry = self.entry(&app.name);
        if entry.runtime.set_maintenance(app.maintenance) {
            tracing::info!(app = %app.name, on = app.maintenance, "maintenance mode");
        }
        if entry.id.set(app.id.clone()).is_ok() {
            self.ids.lock().insert(app.id.clone(), app.name.clone());
            if !self.store.log_bus.carries_lines() {
                return entry; // a cluster of one: no line need be copied for anyone
            }
            let (bus, id) = (self.store.log_bus.clone(), app.id.clone());
            let node = self.membership.me().name.clone();
            entry.runtime.logs.set_outbox(Box::new(move |line| {
                bus.publish(
                    &id,
                    LogRecord {
                        node: node.clone(),
                        at: line.at,
                        kind: line.kind,
                        process: line.process.to_string(),
                        text: line.text.clone(),
                    },
                );
            }));
        }
        entry
    }

    /// The app's runtime, created (and routed) on first use.
    fn entry(&self, app: &AppName) -> Arc<AppEntry> {
        let mut apps = self.apps.lock();
        apps.entry(app.clone())
            .or_insert_with(|| {
                let runtime = AppRuntime::new(
                    app.clone(),
                    self.engine.clone(),
                    LogStream::with_rate(self.config.log_rate),
                    self.run_dir.clone(),
                    self.config.router_port,
                    self.config.backoff.clone(),
                    self.config.deadlines,
                );
                self.router.add_app(runtime.clone());
                Arc::new(AppEntry {
                    runtime,
                    releasing: tokio::sync::Semaphore::new(1),
                    in_progress: Mutex::new(None),
                    destroying: AtomicBool::new(false),
                    id: std::sync::OnceLock::new(),
                    node: Mutex::new(NodeState::default()),
                    published: tokio::sync::Mutex::new(None),
                })
            })
            .clone()
    }

    /// Destroys an app to the end, whoever waits for it: a release in progress is
    /// cancelled (not waited for), releases queued behind it give up, then its dynos
    /// stop and its add-on data and records go.
    async fn destroy_now(&self, app: &AppName) -> Result<()> {
        let entry = self.entry(app);
        entry.destroying.store(true, Ordering::SeqCst);
        if let Some(going) = entry.cancel_in_progress(None) {
            entry.runtime.logs.platform(
                "api",
                format!("Cancelling v{}: the app is being destroyed", going.version),
            );
        }
        let _turn = entry.release_turn().await?;
        let id = self.store.control.app(app).await?.id;
        self.forget(app).await;
        // Add-on data first (a destroy interrupted between the two leaves an app that can
        // be destroyed again, never data without an app); from then on dynos still bound
        // to this id can no longer write.
        self.store.addons.delete_app(&id).await?;
        self.store.control.delete_app(app).await?;
        // After the app: rows left by a failure here name an id no app will ever have.
        if let Err(e) = self.store.people.forget_app(&id).await {
            tracing::warn!(app = %app, "the destroyed app's access stays in the store: {e}");
        }
        Ok(())
    }

    /// The host as an `Arc`, for work spawned to outlive a request.
    fn shared(&self) -> Result<Arc<Host>> {
        self.me
            .upgrade()
            .ok_or_else(|| wdeploy_api::ApiError::internal("the host is stopping").into())
    }

    /// Forgets an app's runtime (on destroy) and stops its dynos.
    async fn forget(&self, app: &AppName) {
        let entry = self.apps.lock().remove(app);
        self.router.remove_app(app);
        // Its domains and their certificates went with it in the store.
        self.refresh_domains().await;
        self.refresh_certs().await;
        self.router.peers().forget(app.as_str());
        if let Some(entry) = entry {
            self.tear_down(app, entry).await;
        }
    }

    /// Takes out the runtime held under `app`'s name if it belongs to another app of
    /// that name (see [`Host::entry_for`]), and stops it in the background. The new
    /// app's runtime then takes its place in the router.
    fn retire_replaced(&self, app: &App) {
        let mut apps = self.apps.lock();
        let replaced = (apps.get(&app.name))
            .and_then(|entry| entry.id.get())
            .is_some_and(|id| *id != app.id);
        let Some(stale) = replaced.then(|| apps.remove(&app.name)).flatten() else {
            return;
        };
        drop(apps);
        tracing::info!(app = %app.name, "destroyed and made again on another node: the old app's dynos stop");
        self.router.peers().forget(app.name.as_str());
        if let Some(host) = self.me.upgrade() {
            let name = app.name.clone();
            tokio::spawn(async move { host.tear_down(&name, stale).await });
        }
    }

    /// Stops the dynos of a runtime no longer held (its app destroyed, or replaced), and
    /// clears what it published.
    async fn tear_down(&self, app: &AppName, entry: Arc<AppEntry>) {
        if let Some(id) = entry.id.get() {
            // Unless the id names the app under a new name by now (a rename): then the id
            // and its dyno records are the new runtime's.
            let ours = {
                let mut ids = self.ids.lock();
                let ours = ids.get(id) == Some(app);
                if ours {
                    ids.remove(id);
                }
                ours
            };
            if ours && let Err(e) = self.store.nodes.set_dynos(id, Vec::new()).await {
                tracing::debug!(app = %app, "could not clear the dyno records: {e}");
            }
        }
        // Its series leave `/metrics` (only its own: a new app of its name keeps them).
        entry.runtime.metrics.retire();
        // Its drains stop now, not when the last holder of its log stream lets go.
        entry
            .runtime
            .logs
            .set_drains(app.as_str(), &[], &self.drain_network);
        entry.runtime.stop().await;
    }
}
