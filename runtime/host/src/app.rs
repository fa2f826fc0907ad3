//! One app's running dynos: its formation of the current release, release swaps,
//! scaling, restarts and one-off dynos.

mod one_off;

pub use one_off::{InputError, OneOffCommand};

use crate::cluster::placement::Share;
use crate::deadlines::{Deadlines, human};
use crate::dyno::backoff::Backoff;
use crate::dyno::status::DynoSnapshot;
use crate::dyno::web::{WebDyno, WebDynoSpec, WebStart};
use crate::dyno::worker::{WorkerDyno, WorkerDynoSpec};
use crate::guest::engine::Engine;
use crate::guest::lane::Lane;
use crate::logs::LogStream;
use crate::metrics::AppMetrics;
use crate::release::Release;
use anyhow::{Context, bail};
use parking_lot::{Mutex, RwLock};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use tokio_util::sync::CancellationToken;
use wdeploy_core::{AppName, ProcessType, dyno};

/// The dynos of one app.
///
/// Changes (deploy, scale, restart, stop) take `share`, a lock that owns the share of the
/// formation this node runs (all of it on a single host; in a cluster, the dynos
/// placement gives this node), and hold it for the whole change, so they apply one at a
/// time. What readers need at any moment is published beside it in locks of its own,
/// written only by a change that holds `share`: the web dynos the router picks from (an
/// `Arc<Vec>` swapped whole), the workers `ps` lists, and the current release.
pub struct AppRuntime {
    pub name: AppName,
    pub logs: Arc<LogStream>,
    /// What the app's router lines, dynos and add-ons count (`/metrics`, its history).
    pub metrics: Arc<AppMetrics>,
    engine: Arc<Engine>,
    /// The threads this app's guests run on, apart from every other app's.
    lane: Arc<Lane>,
    run_dir: PathBuf,
    /// The port dynos are told in `PORT` (the router's).
    port: u16,
    /// The crash restart schedule every worker dyno starts with.
    backoff: Backoff,
    /// How long boots and one-offs may take, and stopping workers have to exit.
    deadlines: Deadlines,
    share: tokio::sync::Mutex<Share>,
    web: RwLock<Arc<Vec<WebDyno>>>,
    workers: Mutex<Vec<WorkerDyno>>,
    current: RwLock<Option<Arc<Release>>>,
    /// One-off dynos running now (`run.N`, `release.N`), so `ps` shows them and stopping
    /// the app stops them: a one-off of a destroyed app must not live on.
    one_off_dynos: Mutex<BTreeMap<String, OneOff>>,
    /// One-off dynos between asking for the lane and being listed: the idle sweep must
    /// not stop the lane under them.
    starting_one_offs: AtomicUsize,
    next_pick: AtomicU64,
    /// Whether the router answers with the maintenance page (the store's
    /// `App::maintenance`, as this node last read it).
    maintenance: AtomicBool,
}

/// A running one-off dyno: what `ps` shows of it, and how to stop it.
struct OneOff {
    snapshot: DynoSnapshot,
    abort: tokio::task::AbortHandle,
    input: Input,
}

/// A one-off's stdin as its client may send it.
enum Input {
    /// Not asked for: the guest's stdin stays open and empty.
    Closed,
    /// Asked for, and not yet sent: where the client's bytes go.
    Waiting(crate::dyno::input::InputSender),
    /// Being sent, or sent.
    Taken,
}

impl AppRuntime {
    pub fn new(
        name: AppName,
        engine: Arc<Engine>,
        logs: Arc<LogStream>,
        run_dir: PathBuf,
        port: u16,
        backoff: Backoff,
        deadlines: Deadlines,
    ) -> Arc<AppRuntime> {
        let metrics = engine.metrics().app(name.clone());
        logs.count_drops_in(metrics.clone());
        Arc::new(AppRuntime {
            lane: Arc::new(Lane::new(
                name.clone(),
                logs.clone(),
                engine.cpu_governor(),
                engine.lane_spares().clone(),
            )),
            name,
            logs,
            metrics,
            engine,
            run_dir,
            port,
            backoff,
            deadlines,
            share: tokio::sync::Mutex::new(Share::default()),
            web: RwLock::new(Arc::new(Vec::new())),
            workers: Mutex::new(Vec::new()),
            current: RwLock::new(None),
            one_off_dynos: Mutex::new(BTreeMap::new()),
            starting_one_offs: AtomicUsize::new(0),
            next_pick: AtomicU64::new(0),
            maintenance: AtomicBool::new(false),
        })
    }

    pub fn deadlines(&self) -> &Deadlines {
        &self.deadlines
    }

    pub fn current_release(&self) -> Option<Arc<Release>> {
        self.current.read().clone()
    }

    /// Whether the router answers the app's requests with the maintenance page.
    pub fn in_maintenance(&self) -> bool {
        self.maintenance.load(Ordering::Relaxed)
    }

    /// Follows the store's maintenance mode; whether it changed here.
    pub fn set_maintenance(&self, on: bool) -> bool {
        self.maintenance.swap(on, Ordering::Relaxed) != on
    }

    /// Whether the current release asks for plain HTTP requests to be sent to HTTPS.
    pub fn forces_https(&self) -> bool {
        self.current
            .read()
            .as_ref()
            .is_some_and(|release| release.settings.web.force_https)
    }

    /// The current release's own page of this kind (`[web] error_page`,
    /// `maintenance_page`), read only when the router answers by itself.
    pub fn custom_page(
        &self,
        which: wdeploy_core::page_url::CustomPage,
    ) -> Option<wdeploy_core::page_url::PageUrl> {
        let current = self.current.read();
        current.as_ref()?.settings.web.page(which).cloned()
    }

    /// The web dynos serving now.
    pub fn web_dynos(&self) -> Arc<Vec<WebDyno>> {
        self.web.read().clone()
    }

    /// Puts to sleep the web dynos that had no request for their `idle_after` (see
    /// [`WebDyno::sleep_if_idle`]); how many went idle.
    ///
    /// When every web dyno sleeps and no other dyno runs, the app's lane stops too: an
    /// idle app holds no thread (the CPU governor has nothing of it to watch). The next
    /// request starts it again.
    pub fn sleep_idle(&self) -> usize {
        let web = self.web.read();
        let slept = web.iter().filter(|dyno| dyno.sleep_if_idle()).count();
        let any_web = !web.is_empty();
        drop(web);
        if any_web && self.lane.is_running() && self.nothing_but_idle_web() {
            // Checked again under the lane's lock, which a waking request waits for.
            if self.lane.stop_if(|| self.nothing_but_idle_web()) {
                tracing::debug!(app = %self.name, "idle: the app's guest threads stopped");
            }
        }
        slept
    }

    /// The worker threads the app's guests run on now (none while it sleeps): one per
    /// dyno, up to the host's `--lane-threads`.
    pub fn lane_threads(&self) -> Option<usize> {
        self.lane.threads()
    }

    /// Whether the app's only dynos are web dynos, all idle and quiet, with no change
    /// (deploy, scale, restart) under way.
    fn nothing_but_idle_web(&self) -> bool {
        let web = self.web_dynos();
        !web.is_empty()
            && web.iter().all(WebDyno::is_asleep_and_quiet)
            && self.workers.lock().is_empty()
            && self.one_off_dynos.lock().is_empty()
            && self.starting_one_offs.load(Ordering::SeqCst) == 0
            && self.share.try_lock().is_ok()
    }

    /// The least busy web dyno, if any is up; ties go round-robin so idle dynos share
    /// the load instead of the first one taking every request.
    pub fn pick_web(&self) -> Option<WebDyno> {
        let dynos = self.web_dynos();
        let n = dynos.len();
        if n == 0 {
            return None;
        }
        let start = self.next_pick.fetch_add(1, Ordering::Relaxed) as usize;
        (0..n)
            .map(|i| &dynos[(start + i) % n])
            .min_by_key(|d| d.in_flight())
            .cloned()
    }

    /// Every dyno of the formation, for `ps`.
    pub fn dynos(&self) -> Vec<DynoSnapshot> {
        let mut all: Vec<_> = self.web_dynos().iter().map(WebDyno::snapshot).collect();
        all.extend(self.workers.lock().iter().map(WorkerDyno::snapshot));
        all.extend(
            self.one_off_dynos
                .lock()
                .values()
                .map(|o| o.snapshot.clone()),
        );
        all
    }

    /// The dynos this node runs now (by the last change).
    pub async fn share(&self) -> Share {
        self.share.lock().await.clone()
    }

    /// Runs `share` of `release`'s formation, with preboot: the new web dynos start and boot
    /// first; only when all are up does the router switch to them, and the old ones stop
    /// taking requests but finish those in flight. If any new dyno fails to boot, the old
    /// release keeps serving and the error is returned.
    pub async fn deploy(&self, release: Arc<Release>, share: &Share) -> anyhow::Result<()> {
        self.deploy_until(release, share, WebStart::Boot, &CancellationToken::new())
            .await
    }

    /// [`AppRuntime::deploy`] that gives up, with the old release still serving, when
    /// `cancel` fires before the new web dynos are up (`releases:cancel`, a destroy).
    /// Once they are up the switch completes: a deploy is never left half done.
    pub async fn deploy_until(
        &self,
        release: Arc<Release>,
        share: &Share,
        start: WebStart,
        cancel: &CancellationToken,
    ) -> anyhow::Result<()> {
        let mut running = tokio::select! {
            running = self.share.lock() => running,
            () = cancel.cancelled() => bail!("cancelled before v{} started", release.version),
        };
        let deployed = self
            .deploy_locked(&mut running, release, share, start, cancel)
            .await;
        // Sized for what runs now: the new share, or the old one if the deploy failed.
        self.lane.fit(running.dynos());
        deployed
    }

    async fn deploy_locked(
        &self,
        running: &mut Share,
        release: Arc<Release>,
        share: &Share,
        start: WebStart,
        cancel: &CancellationToken,
    ) -> anyhow::Result<()> {
        // Before the new dynos start, so they run on a lane of their number.
        self.lane.fit(share.dynos());
        let mut fresh = Vec::new();
        for n in share.numbers(&ProcessType::web()) {
            // Dropping a booting dyno stops its instance at the guest's next yield.
            let booted = tokio::select! {
                booted = self.start_web(&release, n, start) => booted?,
                () = cancel.cancelled() => {
                    self.logs.platform(
                        &format!("web.{n}"),
                        "Stopping process: the release was cancelled while it started",
                    );
                    bail!("cancelled while web.{n} of v{} was starting", release.version)
                }
            };
            fresh.push(booted);
        }
        let old_web = self.swap_web(fresh);
        self.retire_web(&old_web);

        let old_workers = std::mem::take(&mut *self.workers.lock());
        self.stop_workers(old_workers).await;
        let mut workers = Vec::new();
        for (process_type, n) in share.iter() {
            if process_type.is_web() || process_type.is_release() {
                continue;
            }
            workers.push(self.start_worker(&release, process_type, n)?);
        }
        // Dynos that run (not a restored web dyno left asleep) make the app show in
        // `/metrics`.
        if !workers.is_empty() || self.web_dynos().iter().any(|d| !d.is_asleep_and_quiet()) {
            self.metrics.activate();
        }
        *self.workers.lock() = workers;
        *running = share.clone();
        *self.current.write() = Some(release);
        Ok(())
    }

    /// Runs `share` instead of the dynos running now, without touching the ones that
    /// stay: new web dynos boot before they are routed to, and the ones that go stop
    /// taking requests (those in flight finish).
    pub async fn scale(&self, share: &Share) -> anyhow::Result<()> {
        let mut running = self.share.lock().await;
        let Some(release) = self.current_release() else {
            *running = share.clone();
            return Ok(());
        };
        // A thread per dyno: the dynos kept stay on the threads they run on, new ones
        // start on a lane of the new size.
        self.lane.fit(share.dynos());
        let scaled = self.scale_locked(&mut running, &release, share).await;
        // Sized for what runs now: the new share, or the old one if the scale failed.
        self.lane.fit(running.dynos());
        scaled
    }

    async fn scale_locked(
        &self,
        running: &mut Share,
        release: &Arc<Release>,
        share: &Share,
    ) -> anyhow::Result<()> {
        let web = self.web_dynos();
        let wanted: Vec<u32> = share.numbers(&ProcessType::web()).collect();
        let have: Vec<u32> = web.iter().map(|d| number(d.name())).collect();
        if wanted != have {
            let mut next: Vec<WebDyno> = Vec::new();
            for n in wanted {
                match web.iter().find(|d| number(d.name()) == n) {
                    Some(kept) => next.push(kept.clone()),
                    None => next.push(self.start_web(release, n, WebStart::Boot).await?),
                }
            }
            let surplus: Vec<WebDyno> = web
                .iter()
                .filter(|d| !share.contains(&ProcessType::web(), number(d.name())))
                .cloned()
                .collect();
            self.swap_web(next);
            self.retire_web(&surplus);
        }

        let mut stopping = Vec::new();
        {
            let mut workers = self.workers.lock();
            let mut kept = Vec::new();
            for worker in workers.drain(..) {
                let process_type = worker.snapshot().process_type;
                if share.contains(&process_type, number(worker.name())) {
                    kept.push(worker);
                } else {
                    stopping.push(worker);
                }
            }
            for (process_type, n) in share.iter() {
                if process_type.is_web() || process_type.is_release() {
                    continue;
                }
                let name = format!("{process_type}.{n}");
                if !kept.iter().any(|w| w.name() == name) {
                    kept.push(self.start_worker(release, process_type, n)?);
                }
            }
            *workers = kept;
        }
        self.stop_workers(stopping).await;
        *running = share.clone();
        Ok(())
    }

    /// Restarts one dyno (`web.2`), every dyno of a process type (`web`), or, with
    /// `None`, all of them. Web dynos restart with preboot: the fresh ones serve before
    /// the old stop.
    pub async fn restart(&self, dyno: Option<&str>) -> anyhow::Result<()> {
        let release = self
            .current_release()
            .context("the app has no release running")?;
        let mut running = self.share.lock().await;
        let Some(selector) = dyno else {
            let share = running.clone();
            for (process_type, _) in share.iter() {
                if !process_type.is_release() {
                    self.metrics.restarted(process_type);
                }
            }
            return self
                .deploy_locked(
                    &mut running,
                    release,
                    &share,
                    WebStart::Boot,
                    &CancellationToken::new(),
                )
                .await;
        };
        let process_type = match dyno::parse_name(selector) {
            Some((process_type, _)) => process_type,
            None => selector.parse::<ProcessType>().map_err(|_| {
                anyhow::anyhow!("`{selector}` is not a dyno (web.1) or a process type (web)")
            })?,
        };
        self.metrics.restarted(&process_type);
        if process_type.is_web() {
            let web = self.web_dynos();
            let mut next: Vec<WebDyno> = web.iter().cloned().collect();
            let mut restarted = 0;
            for (index, old) in web.iter().enumerate() {
                if dyno::selects(selector, old.name()) {
                    next[index] = self
                        .start_web(&release, number(old.name()), WebStart::Boot)
                        .await?;
                    restarted += 1;
                }
            }
            if restarted == 0 {
                bail!("no dyno {selector} is running");
            }
            let old = self.swap_web(next);
            let retired: Vec<WebDyno> = old
                .iter()
                .filter(|d| dyno::selects(selector, d.name()))
                .cloned()
                .collect();
            self.retire_web(&retired);
            return Ok(());
        }
        let old: Vec<WorkerDyno> = {
            let mut workers = self.workers.lock();
            let (old, kept) = std::mem::take(&mut *workers)
                .into_iter()
                .partition(|w| dyno::selects(selector, w.name()));
            *workers = kept;
            old
        };
        if old.is_empty() {
            bail!("no dyno {selector} is running");
        }
        let numbers: Vec<u32> = old.iter().map(|w| number(w.name())).collect();
        self.stop_workers(old).await;
        for n in numbers {
            let fresh = self.start_worker(&release, &process_type, n)?;
            self.workers.lock().push(fresh);
        }
        Ok(())
    }

    /// Stops every dyno. Web dynos stop taking requests; their filesystems go when the
    /// requests still in flight finish.
    pub async fn stop(&self) {
        let _running = self.share.lock().await;
        let old_web = self.swap_web(Vec::new());
        for dyno in old_web.iter() {
            self.logs.platform(dyno.name(), "Stopping process");
        }
        drop(old_web);
        let workers = std::mem::take(&mut *self.workers.lock());
        self.stop_workers(workers).await;
        let one_offs = std::mem::take(&mut *self.one_off_dynos.lock());
        for (name, one_off) in one_offs {
            // Stopped at the guest's next yield (within an epoch tick).
            one_off.abort.abort();
            self.logs
                .platform(&name, "Stopping process: the app is stopping");
        }
    }

    /// Starts web dyno `n` and boots its first instance within the boot deadline
    /// (Heroku's R10): a start function that never returns is stopped there.
    async fn start_web(
        &self,
        release: &Arc<Release>,
        n: u32,
        start: WebStart,
    ) -> anyhow::Result<WebDyno> {
        let name = format!("web.{n}");
        let boot = self.deadlines.boot;
        let started = WebDyno::start(WebDynoSpec {
            engine: &self.engine,
            lane: &self.lane,
            release,
            logs: &self.logs,
            metrics: &self.metrics,
            name: &name,
            run_dir: &self.run_dir,
            port: self.port,
            idle_after: match release.settings.web.idle_after {
                Some(idle) => idle.duration(),
                None => self.deadlines.idle_after,
            },
            start,
        });
        tokio::pin!(started);
        tokio::select! {
            started = &mut started => {
                started.with_context(|| format!("v{} could not start {name}", release.version))
            }
            () = tokio::time::sleep(boot) => {
                // Said before the booting dyno is dropped (which stops its instance).
                self.logs.platform(
                    &name,
                    format!(
                        "Error R10 (Boot timeout) -> {name} did not start within {} of launch",
                        human(boot)
                    ),
                );
                self.logs.platform(&name, "Stopping process");
                bail!(
                    "v{} could not start {name}: Error R10 (Boot timeout): its component did not \
                     finish starting (its start functions) within {} of launch",
                    release.version,
                    human(boot)
                )
            }
        }
    }

    fn start_worker(
        &self,
        release: &Arc<Release>,
        process_type: &ProcessType,
        n: u32,
    ) -> anyhow::Result<WorkerDyno> {
        WorkerDyno::start(WorkerDynoSpec {
            engine: &self.engine,
            lane: &self.lane.handle()?,
            release,
            logs: &self.logs,
            metrics: &self.metrics,
            process_type,
            name: &format!("{process_type}.{n}"),
            run_dir: &self.run_dir,
            port: self.port,
            backoff: self.backoff.clone(),
            boot_timeout: self.deadlines.boot,
        })
    }

    /// Stops workers together, each with the grace period to exit.
    async fn stop_workers(&self, workers: Vec<WorkerDyno>) {
        futures::future::join_all(workers.into_iter().map(|w| w.stop(self.deadlines.stop))).await;
    }

    /// Atomically replaces the web dynos the router sees; returns the previous list.
    fn swap_web(&self, next: Vec<WebDyno>) -> Arc<Vec<WebDyno>> {
        let mut web = self.web.write();
        std::mem::replace(&mut *web, Arc::new(next))
    }

    fn retire_web(&self, old: &[WebDyno]) {
        for dyno in old {
            self.logs.platform(
                dyno.name(),
                format!(
                    "Stopping v{} (in-flight requests finish)",
                    dyno.release().version
                ),
            );
        }
    }
}

/// The number of a dyno (`web.3` → 3); 0 for a name without one (never made here).
fn number(name: &str) -> u32 {
    dyno::parse_name(name).map_or(0, |(_, n)| n)
}
