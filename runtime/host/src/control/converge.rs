//! This node's part of the cluster (a cluster of one on the embedded store): it says it
//! is alive, shows the log lines other nodes' dynos write, and converges.
//!
//! Converging is level-triggered: each look reads the live nodes, every app, its current
//! release and its formation from the store, and makes what this node runs match — the
//! current release, and the dynos placement gives this node. It looks whenever the store
//! says something changed and at a steady interval, so a missed change is repaired by
//! the next look. A look that cannot reach the store changes nothing: the dynos running
//! keep running.
//!
//! An app whose dynos here settled under its current store revision and the current
//! live nodes is passed by without reading its releases and formation (a backend with
//! revisions, the embedded one, makes a look at 100,000 idle apps cost milliseconds per
//! thousand); every [`REPAIR_EVERY`] one look reads them all anyway.
//!
//! Web dynos that move to another node are handed over with preboot: this node keeps
//! serving with one until the new owner's record shows it up.

use super::{AppEntry, Host};
use crate::dyno::status::DynoSnapshot;
use crate::dyno::web::WebStart;
use crate::logs::LogLine;
use crate::router::forward::Peer;
use futures::StreamExt;
use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use wdeploy_core::{AppName, ProcessType, dyno};
use wdeploy_store::nodes::HEARTBEAT_EVERY;
use wdeploy_store::{App, AppId, DynoRecord, NodeDynos};

/// The steady interval between two looks, for up to [`APPS_PER_LOOK_SECOND`] apps.
const LOOK_EVERY: Duration = Duration::from_secs(2);
/// Apps a steady look may cover per second of interval: a look reads every app from the
/// store, so a host with many (mostly idle) apps looks less often, and spends a bounded
/// share of a core on it. Changes made on this node nudge a look at once whatever this.
const APPS_PER_LOOK_SECOND: usize = 1000;
/// The least time between two looks, so a burst of changes costs one look.
const LOOK_AT_MOST_EVERY: Duration = Duration::from_millis(200);
/// Apps a look goes through before it lets other tasks on its worker thread run.
const YIELD_EVERY_APPS: usize = 64;
/// How often a look reads every app's releases and formation even where nothing says
/// they changed: the repair for what no revision can show (a bug here, a store edited by
/// hand).
const REPAIR_EVERY: Duration = Duration::from_secs(3600);

/// The facts an app's dynos here follow from once converged: its revision in the store,
/// the live nodes (placement), and the repair period it was looked at in.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) struct Settled {
    revision: u64,
    membership: u64,
    repair: u64,
}

/// How a look at an app's dynos ended.
#[derive(PartialEq, Eq)]
enum Converged {
    /// They follow from the store and the live nodes: nothing to do until those change.
    Settled,
    /// Under way (a release just started, a web dyno not yet taken over elsewhere).
    LookAgain,
}

/// What the next look covers.
enum Look {
    /// Every app in the store: at the steady interval and on a change hint.
    All,
    /// The apps changed on this node since the last look.
    Nudged,
}

impl Host {
    /// Runs this node's part of the cluster until `stop` fires, then leaves the cluster
    /// (so the others take over its dynos without waiting for its heartbeat to expire).
    pub async fn run_node(self: Arc<Self>, stop: CancellationToken) {
        tokio::join!(
            self.heartbeats(stop.clone()),
            self.relay_logs(stop.clone()),
            self.converge_loop(stop.clone()),
            self.sleep_idle_dynos(stop.clone()),
            self.acme_loop(stop.clone()),
            self.follow_keys(stop.clone()),
            self.collect_blobs_loop(stop.clone()),
        );
        if let Err(e) = self.store.nodes.leave().await {
            tracing::warn!("could not leave the cluster: {e}");
        }
    }

    /// Wakes the converge loop now for `app` (after a deploy, a scale or a restart made
    /// on this node).
    pub(super) fn nudge(&self, app: &AppName) {
        self.nudged.lock().insert(app.clone());
        self.nudge.notify_one();
    }

    async fn heartbeats(&self, stop: CancellationToken) {
        let mut failing = false;
        loop {
            let leaving = self.membership.is_leaving();
            match self.store.nodes.heartbeat(leaving).await {
                Ok(()) if failing => {
                    tracing::info!("heartbeats reach the cluster store again");
                    failing = false;
                }
                Ok(()) => {}
                Err(e) if !failing => {
                    tracing::warn!("heartbeat failed (the dynos here keep running): {e}");
                    failing = true;
                }
                Err(_) => {}
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(HEARTBEAT_EVERY) => {}
            }
        }
    }

    /// Shows other nodes' lines in this node's log streams.
    async fn relay_logs(&self, stop: CancellationToken) {
        loop {
            match self.store.log_bus.subscribe().await {
                Ok(mut lines) => loop {
                    tokio::select! {
                        () = stop.cancelled() => return,
                        line = lines.next() => match line {
                            Some((app, record)) => self.show_remote_line(&app, record),
                            None => break,
                        },
                    }
                },
                Err(e) => tracing::debug!("log bus: {e}"),
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    fn show_remote_line(&self, app: &wdeploy_store::AppId, record: wdeploy_store::LogRecord) {
        let Some(name) = self.ids.lock().get(app).cloned() else {
            return; // an app this node has not seen yet (or destroyed)
        };
        let Some(entry) = self.apps.lock().get(&name).cloned() else {
            return;
        };
        entry.runtime.logs.push(LogLine {
            at: record.at,
            kind: record.kind,
            process: record.process.into(),
            text: record.text,
        });
    }

    async fn converge_loop(&self, stop: CancellationToken) {
        let mut changes = None;
        let mut look = Look::All;
        loop {
            if changes.is_none() {
                changes = self.store.nodes.changes().await.ok();
            }
            let repair = self.repair_period();
            match look {
                Look::All => self.converge(repair).await,
                Look::Nudged => self.converge_nudged().await,
            }
            let changed = async {
                match changes.as_mut() {
                    Some(stream) => stream.next().await,
                    None => std::future::pending().await,
                }
            };
            look = tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(self.steady_interval()) => Look::All,
                () = self.nudge.notified() => {
                    if self.nudged_all.swap(false, std::sync::atomic::Ordering::Relaxed) {
                        Look::All
                    } else {
                        Look::Nudged
                    }
                }
                item = changed => {
                    if item.is_none() {
                        changes = None; // the watch ended: make a new one
                    }
                    Look::All
                }
            };
            tokio::time::sleep(LOOK_AT_MOST_EVERY).await;
        }
    }

    /// Wakes the converge loop now for a look at every app (after restoring them).
    pub(super) fn nudge_all(&self) {
        self.nudged_all
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.nudge.notify_one();
    }

    /// A look at the apps changed on this node since the last look (each nudged by its
    /// change): a deploy on a host of many apps costs a look at one app, not at all.
    async fn converge_nudged(&self) {
        let nudged = std::mem::take(&mut *self.nudged.lock());
        for name in nudged {
            let app = match self.store.control.app(&name).await {
                Ok(app) => app,
                Err(e) => {
                    tracing::debug!(app = %name, "converge: {e}");
                    continue;
                }
            };
            // Nudged by a change made here: looked at in full.
            if let Err(e) = self.converge_app(&app, 0).await {
                tracing::debug!(app = %app.name, "converge: {e:#}");
            }
        }
    }

    /// The repair period now: 1 for the first [`REPAIR_EVERY`] of this host, then 2...
    /// (0 is no period: a look in full).
    pub(super) fn repair_period(&self) -> u64 {
        self.started.elapsed().as_secs() / REPAIR_EVERY.as_secs() + 1
    }

    /// What `app`'s dynos settle under if converged now (nothing, on a backend without
    /// revisions).
    pub(super) fn settled_under(&self, app: &App, repair: u64) -> Option<Settled> {
        app.revision.map(|revision| Settled {
            revision,
            membership: self.membership.generation(),
            repair,
        })
    }

    /// The time between two steady looks: [`LOOK_EVERY`], longer with many apps.
    fn steady_interval(&self) -> Duration {
        let apps = self.apps.lock().len();
        LOOK_EVERY.max(Duration::from_secs((apps / APPS_PER_LOOK_SECOND) as u64))
    }

    /// One look at the whole store, in repair period `repair` (an app settled in an
    /// earlier one is looked at in full).
    async fn converge(&self, repair: u64) {
        // Every app is looked at, the nudged ones included.
        self.nudged.lock().clear();
        let live = match self.store.nodes.live().await {
            Ok(live) => live,
            Err(e) => {
                tracing::debug!("converge: {e}");
                return;
            }
        };
        self.observe_nodes(live);
        let apps = match self.store.control.apps().await {
            Ok(apps) => apps,
            Err(e) => {
                tracing::debug!("converge: {e}");
                return;
            }
        };
        self.refresh_domains().await;
        self.refresh_certs().await;
        // Apps destroyed through another node.
        let exist: HashSet<_> = apps.iter().map(|a| a.name.clone()).collect();
        let gone: Vec<_> = self
            .apps
            .lock()
            .iter()
            .filter(|(name, entry)| !exist.contains(*name) && entry.id.get().is_some())
            .map(|(name, _)| name.clone())
            .collect();
        for name in gone {
            // Renamed through another node: its id is in the list under the new name.
            let id = self
                .apps
                .lock()
                .get(&name)
                .and_then(|e| e.id.get().cloned());
            if let Some(renamed) = apps.iter().find(|a| Some(&a.id) == id.as_ref()) {
                tracing::info!(app = %name, to = %renamed.name, "renamed on another node");
                self.follow_rename(&name, renamed).await;
                continue;
            }
            // Still absent when read again: not an app being created right now.
            if matches!(
                self.store.control.app(&name).await,
                Err(wdeploy_store::StoreError::NotFound(_))
            ) {
                tracing::info!(app = %name, "destroyed on another node");
                self.forget(&name).await;
            }
        }
        for (n, app) in apps.iter().enumerate() {
            if let Err(e) = self.converge_app(app, repair).await {
                tracing::debug!(app = %app.name, "converge: {e:#}");
            }
            // Most looks at a settled app complete without waiting: give the worker
            // thread back now and then, so a look over many apps stalls no request.
            if n % YIELD_EVERY_APPS == YIELD_EVERY_APPS - 1 {
                tokio::task::yield_now().await;
            }
        }
        self.full_looks
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// Makes this node run the app's current release and its share of the formation
    /// and ship its lines to its drains, then publishes what it runs and learns which nodes serve the app. The release and
    /// formation are read only when the app's revision, the live nodes or the `repair`
    /// period differ from those it last settled under (period 0: always).
    pub(super) async fn converge_app(&self, app: &App, repair: u64) -> anyhow::Result<()> {
        // This node runs the app's id under another name: the list was read before a
        // rename here, and the next look reads the name it has now.
        if self
            .ids
            .lock()
            .get(&app.id)
            .is_some_and(|name| *name != app.name)
        {
            return Ok(());
        }
        let entry = self.entry_for(app);
        if entry.is_destroying() {
            return Ok(());
        }
        let read_at = Instant::now();
        let records = self.store.nodes.dynos(&app.id).await?;
        let now = self.settled_under(app, repair);
        let drains_read = entry.node.lock().drains_read;
        if repair == 0 || now.is_none() || drains_read != now {
            self.apply_drains(app, &entry).await?;
            entry.node.lock().drains_read = now;
        }
        // A change in progress here (a deploy, a scale) holds the turn: look next time.
        if let Ok(_turn) = entry.releasing.try_acquire() {
            let settled = entry.node.lock().settled;
            if repair == 0 || now.is_none() || settled != now {
                let done = self.converge_dynos(app, &entry, &records).await?;
                entry.node.lock().settled = now.filter(|_| done == Converged::Settled);
            }
            self.answer_restarts(app, &entry).await?;
        }
        self.publish_dynos(app, &entry).await?;
        self.learn_peers(app, &records, read_at);
        Ok(())
    }

    /// Starts the current release here, or else makes the dynos this node runs its share;
    /// says whether another look must follow even with nothing changed in the store.
    async fn converge_dynos(
        &self,
        app: &App,
        entry: &AppEntry,
        records: &[NodeDynos],
    ) -> anyhow::Result<Converged> {
        let runtime = &entry.runtime;
        let head = self.store.control.release_head(&app.name).await?;
        let Some(current) = head.current.filter(|r| r.slug.is_some()) else {
            return Ok(Converged::Settled);
        };
        let running = runtime.current_release();
        if running.as_ref().map(|r| r.version) != Some(current.version) {
            if entry.node.lock().failed == Some(current.version) {
                return Ok(Converged::Settled); // until a newer release
            }
            let going = entry.going_live(current.version);
            // Nothing of the app runs here yet (this node just started, or the app is new
            // to it): like a restore, dynos that may sleep start idle. The release was
            // loaded and type-checked here and booted where it was made.
            let start = match running {
                None => WebStart::IdleIfAllowed,
                Some(_) => WebStart::Boot,
            };
            if let Err(e) = self.start(runtime, &current, start, &going.cancel).await {
                entry.node.lock().failed = Some(current.version);
                let node = self.membership.me().name.clone();
                tracing::error!(app = %app.name, "could not start v{}: {e:#}", current.version);
                runtime.logs.platform(
                    "api",
                    format!("Could not start v{} on node {node}: {e:#}", current.version),
                );
            }
            // Next: this node's share of the formation for the release now running.
            return Ok(Converged::LookAgain);
        }
        let Some(release) = running else {
            return Ok(Converged::Settled);
        };
        let formation = self
            .store
            .control
            .formation(&app.name)
            .await?
            .runnable_in(&release.procfile);
        let placement = release.settings.web.placement;
        let owners = self.membership.assign(&app.id, &formation, placement);
        let mut share = self.membership.share_in(&owners, &formation, placement);
        let running_share = runtime.share().await;
        // Preboot across nodes: a web dyno placed elsewhere now keeps serving here until
        // its new node runs it (which only its record shows: looked at again until then).
        // A node leaving (`leave.rs`) serves its web dynos to its end, taken over or not:
        // the others forward to it until they learn where the new ones run.
        let leaving = self.membership.is_leaving();
        let mut done = Converged::Settled;
        let web = ProcessType::web();
        for n in running_share.numbers(&web) {
            if share.contains(&web, n) {
                continue;
            }
            let Some(owner) = owners.get(&(web.clone(), n)) else {
                continue; // scaled away: it simply stops
            };
            let name = format!("web.{n}");
            let taken_over = records.iter().any(|r| {
                &r.node == owner
                    && r.dynos
                        .iter()
                        .any(|d| d.name == name && d.state.serves() && d.release == release.version)
            });
            if !taken_over {
                done = Converged::LookAgain;
            }
            if !taken_over || leaving {
                share.insert(web.clone(), n);
            }
        }
        entry.node.lock().handing_over = done == Converged::LookAgain;
        if share != running_share {
            tracing::info!(app = %app.name, "running {}", share.summary());
            runtime.scale(&share).await?;
        }
        Ok(done)
    }

    /// Restarts this node's dynos that a restart request made on another node names.
    async fn answer_restarts(&self, app: &App, entry: &AppEntry) -> anyhow::Result<()> {
        let Some(request) = self.store.nodes.restart_request(&app.id).await? else {
            // None yet: the first one made from now on is new.
            entry.node.lock().restarts_seen.get_or_insert(0);
            return Ok(());
        };
        let seen = entry.node.lock().restarts_seen.replace(request.number);
        if seen.is_none_or(|seen| seen >= request.number) {
            return Ok(());
        }
        let runtime = &entry.runtime;
        let ours = match &request.dyno {
            None => runtime.current_release().is_some(),
            // A dyno's name, or a process type (`ps:restart web`) for each of its dynos.
            // A node older than types looks for a dyno named `web` and finds none.
            Some(selector) => runtime
                .dynos()
                .iter()
                .any(|d| dyno::restart_reaches(selector, &d.name, &d.process_type)),
        };
        // One-offs are never restarted: a request naming one is `ps:stop`'s.
        let stopped = request.dyno.as_deref().is_some_and(|name| {
            runtime.stop_one_off(name, "stopped with ps:stop through another node")
        });
        if ours && !stopped {
            let what = request.dyno.as_deref().unwrap_or("all dynos");
            runtime.logs.platform(
                "api",
                format!("Restarting {what} on node {}", self.membership.me().name),
            );
            runtime.restart(request.dyno.as_deref()).await?;
        }
        Ok(())
    }

    /// Takes in the nodes whose heartbeats the store holds, and says when the live ones
    /// changed.
    pub(super) fn observe_nodes(&self, heartbeats: Vec<wdeploy_store::NodeInfo>) {
        if self.membership.observe(heartbeats) {
            let live = self.membership.live();
            let names: Vec<String> = live
                .iter()
                .map(|n| match n.leaving {
                    true => format!("{} (leaving)", n.name),
                    false => n.name.to_string(),
                })
                .collect();
            tracing::info!("live nodes: {}", names.join(", "));
        }
    }

    /// Records the dynos this node runs of `app`, when they changed.
    pub(super) async fn publish_dynos(&self, app: &App, entry: &AppEntry) -> anyhow::Result<()> {
        let mut published = entry.published.lock().await;
        let dynos: Vec<DynoRecord> = entry.runtime.dynos();
        if published.as_ref() == Some(&dynos) {
            return Ok(());
        }
        self.store.nodes.set_dynos(&app.id, dynos.clone()).await?;
        *published = Some(dynos);
        Ok(())
    }

    /// The other live nodes running up web dynos of `app`, for the router.
    /// Takes the app's peers from `records`, read from the store from `read_at` on.
    pub(super) fn learn_peers(&self, app: &App, records: &[NodeDynos], read_at: Instant) {
        self.router
            .peers()
            .set(app.name.as_str(), self.peers_in(records), read_at);
    }

    /// The peers of the app named `app` from the store's dyno records now (the router's
    /// lookup for an app it knows no peers of).
    pub(super) async fn find_peers(&self, app: &str) -> Vec<Peer> {
        let Ok(name) = app.parse::<wdeploy_core::AppName>() else {
            return Vec::new();
        };
        let Ok(record) = self.store.control.app(&name).await else {
            return Vec::new();
        };
        match self.store.nodes.dynos(&record.id).await {
            Ok(records) => self.peers_in(&records),
            Err(_) => Vec::new(),
        }
    }

    /// The live nodes other than this one whose records show an up web dyno: those not
    /// leaving, when there are any (a node leaving serves only until the others learn
    /// where its dynos run now).
    fn peers_in(&self, records: &[NodeDynos]) -> Vec<Peer> {
        let me = &self.membership.me().name;
        let live = self.membership.live();
        let serving: Vec<_> = records
            .iter()
            .filter(|r| &r.node != me)
            .filter(|r| {
                r.dynos
                    .iter()
                    .any(|d| d.process_type.is_web() && d.state.serves())
            })
            .filter_map(|r| live.iter().find(|n| n.name == r.node))
            .filter(|n| !n.advertise.is_empty())
            .collect();
        let staying = serving.iter().any(|n| !n.leaving);
        serving
            .into_iter()
            .filter(|n| !(staying && n.leaving))
            .map(|n| Peer {
                node: n.name.to_string(),
                addr: n.advertise.clone(),
            })
            .collect()
    }

    /// The dynos called `name` of `app` ([`Host::cluster_dynos`]), this node's first.
    pub(super) async fn dynos_named(
        &self,
        app: &App,
        entry: &AppEntry,
        name: &str,
    ) -> Vec<(String, DynoSnapshot)> {
        let mut named = self.cluster_dynos(app, entry).await;
        named.retain(|(_, d)| d.name == name);
        named
    }

    /// The names of the dynos the other live nodes have published for the app, which a
    /// new one-off here must not take.
    pub(super) async fn names_elsewhere(&self, entry: &AppEntry) -> BTreeSet<String> {
        let Some(id) = entry.id.get() else {
            return BTreeSet::new();
        };
        let elsewhere = self.dynos_elsewhere(id).await;
        elsewhere.into_iter().map(|(_, d)| d.name).collect()
    }

    /// Every node's dynos of `app` as `ps` shows them: this node's as they are now, the
    /// other live nodes' as they last recorded them.
    pub(super) async fn cluster_dynos(
        &self,
        app: &App,
        entry: &AppEntry,
    ) -> Vec<(String, DynoSnapshot)> {
        let me = self.membership.me().name.to_string();
        let mut all: Vec<(String, DynoSnapshot)> = entry
            .runtime
            .dynos()
            .into_iter()
            .map(|d| (me.clone(), d))
            .collect();
        all.extend(self.dynos_elsewhere(&app.id).await);
        all
    }

    /// The dynos the other live nodes last recorded for the app, with each one's node;
    /// none when the store cannot be read (what this node runs still counts).
    async fn dynos_elsewhere(&self, id: &AppId) -> Vec<(String, DynoSnapshot)> {
        let me = &self.membership.me().name;
        let records = self.store.nodes.dynos(id).await.unwrap_or_default();
        records
            .into_iter()
            .filter(|r| r.node != *me && self.membership.is_live(&r.node))
            .flat_map(|r| {
                let node = r.node.to_string();
                r.dynos.into_iter().map(move |d| (node.clone(), d))
            })
            .collect()
    }
}
