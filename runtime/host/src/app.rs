//! One app's running dynos: its formation of the current release, release swaps,
//! scaling, restarts and one-off dynos.

use crate::backoff::Backoff;
use crate::engine::Engine;
use crate::logs::LogStream;
use crate::release::Release;
use crate::status::DynoSnapshot;
use crate::web::{WebDyno, WebDynoSpec};
use crate::worker::{WorkerDyno, WorkerDynoSpec, run_one_off};
use anyhow::{Context, bail};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// How many dynos of each process type run (`web=2 worker=1`).
pub type Formation = BTreeMap<String, u32>;

/// The formation `heroku local` runs: one dyno of every process type but `release`.
pub fn one_of_each(release: &Release) -> Formation {
    release
        .procfile
        .processes
        .values()
        .filter(|p| !p.is_release())
        .map(|p| (p.name.clone(), 1))
        .collect()
}

/// The dynos of one app.
pub struct AppRuntime {
    pub name: Arc<str>,
    pub logs: Arc<LogStream>,
    engine: Arc<Engine>,
    run_dir: PathBuf,
    /// The port dynos are told in `PORT` (the router's).
    port: u16,
    /// The crash restart schedule every worker dyno starts with.
    backoff: Backoff,
    /// How long a stopping worker has to exit after its stdin closes.
    stop_grace: Duration,
    /// Web dynos serving now; the router reads a snapshot, changes swap the whole list.
    web: RwLock<Arc<Vec<WebDyno>>>,
    workers: Mutex<Vec<WorkerDyno>>,
    current: RwLock<Option<Arc<Release>>>,
    formation: Mutex<Formation>,
    /// Serialises deploys, scaling and restarts of this app.
    changes: tokio::sync::Mutex<()>,
    /// Held by the control plane across "record a release, then run it", so releases of
    /// one app go live in version order.
    pub releasing: tokio::sync::Mutex<()>,
    one_offs: AtomicU64,
    next_pick: AtomicU64,
}

impl AppRuntime {
    pub fn new(
        name: &str,
        engine: Arc<Engine>,
        logs: Arc<LogStream>,
        run_dir: PathBuf,
        port: u16,
        backoff: Backoff,
        stop_grace: Duration,
    ) -> Arc<AppRuntime> {
        Arc::new(AppRuntime {
            name: name.into(),
            logs,
            engine,
            run_dir,
            port,
            backoff,
            stop_grace,
            web: RwLock::new(Arc::new(Vec::new())),
            workers: Mutex::new(Vec::new()),
            current: RwLock::new(None),
            formation: Mutex::new(Formation::new()),
            changes: tokio::sync::Mutex::new(()),
            releasing: tokio::sync::Mutex::new(()),
            one_offs: AtomicU64::new(0),
            next_pick: AtomicU64::new(0),
        })
    }

    pub fn current_release(&self) -> Option<Arc<Release>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The web dynos serving now.
    pub fn web_dynos(&self) -> Arc<Vec<WebDyno>> {
        self.web.read().unwrap_or_else(|p| p.into_inner()).clone()
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
        all.extend(
            self.workers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .map(WorkerDyno::snapshot),
        );
        all
    }

    /// Runs `formation` of `release`, with preboot: the new web dynos start and boot
    /// first; only when all are up does the router switch to them, and the old ones stop
    /// taking requests but finish those in flight. If any new dyno fails to boot, the old
    /// release keeps serving and the error is returned.
    pub async fn deploy(&self, release: Arc<Release>, formation: &Formation) -> anyhow::Result<()> {
        let _change = self.changes.lock().await;
        let web_count = formation.get("web").copied().unwrap_or(0);
        let mut fresh = Vec::new();
        for n in 1..=web_count {
            fresh.push(self.start_web(&release, n).await?);
        }
        let old_web = self.swap_web(fresh);
        self.retire_web(&old_web);

        let old_workers =
            std::mem::take(&mut *self.workers.lock().unwrap_or_else(|p| p.into_inner()));
        self.stop_workers(old_workers).await;
        let mut workers = Vec::new();
        for (process_type, count) in formation {
            if process_type == "web" || process_type == "release" {
                continue;
            }
            for n in 1..=*count {
                workers.push(self.start_worker(&release, process_type, n)?);
            }
        }
        *self.workers.lock().unwrap_or_else(|p| p.into_inner()) = workers;
        *self.formation.lock().unwrap_or_else(|p| p.into_inner()) = formation.clone();
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(release);
        Ok(())
    }

    /// Changes how many dynos of each type run, without touching the ones that stay.
    pub async fn scale(&self, formation: &Formation) -> anyhow::Result<()> {
        let _change = self.changes.lock().await;
        let Some(release) = self.current_release() else {
            *self.formation.lock().unwrap_or_else(|p| p.into_inner()) = formation.clone();
            return Ok(());
        };
        let want_web = formation.get("web").copied().unwrap_or(0) as usize;
        let web = self.web_dynos();
        if want_web != web.len() {
            let mut next: Vec<WebDyno> = web.iter().take(want_web).cloned().collect();
            for n in web.len() + 1..=want_web {
                next.push(self.start_web(&release, n as u32).await?);
            }
            let old = self.swap_web(next);
            let surplus: Vec<WebDyno> = old.iter().skip(want_web).cloned().collect();
            self.retire_web(&surplus);
        }

        let mut stopping = Vec::new();
        {
            let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
            let mut kept = Vec::new();
            let mut counts: BTreeMap<String, u32> = BTreeMap::new();
            for worker in workers.drain(..) {
                let process_type = worker.snapshot().process_type;
                let have = counts.entry(process_type.clone()).or_default();
                if *have < formation.get(&process_type).copied().unwrap_or(0) {
                    *have += 1;
                    kept.push(worker);
                } else {
                    stopping.push(worker);
                }
            }
            for (process_type, want) in formation {
                if process_type == "web" || process_type == "release" {
                    continue;
                }
                let have = counts.get(process_type).copied().unwrap_or(0);
                for n in have + 1..=*want {
                    kept.push(self.start_worker(&release, process_type, n)?);
                }
            }
            *workers = kept;
        }
        self.stop_workers(stopping).await;
        *self.formation.lock().unwrap_or_else(|p| p.into_inner()) = formation.clone();
        Ok(())
    }

    /// Restarts one dyno (`web.2`) or, with `None`, all of them (with preboot).
    pub async fn restart(&self, dyno: Option<&str>) -> anyhow::Result<()> {
        let release = self
            .current_release()
            .context("the app has no release running")?;
        let Some(name) = dyno else {
            let formation = self
                .formation
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            return self.deploy(release, &formation).await;
        };
        let _change = self.changes.lock().await;
        let (process_type, n) = parse_dyno_name(name)?;
        if process_type == "web" {
            let web = self.web_dynos();
            let Some(index) = web.iter().position(|d| d.name() == name) else {
                bail!("no dyno {name} is running");
            };
            let fresh = self.start_web(&release, n).await?;
            let mut next: Vec<WebDyno> = web.iter().cloned().collect();
            let old = std::mem::replace(&mut next[index], fresh);
            self.swap_web(next);
            self.retire_web(&[old]);
            return Ok(());
        }
        let old = {
            let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
            let Some(index) = workers.iter().position(|w| w.name() == name) else {
                bail!("no dyno {name} is running");
            };
            workers.remove(index)
        };
        old.stop(self.stop_grace).await;
        let fresh = self.start_worker(&release, &process_type, n)?;
        self.workers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(fresh);
        Ok(())
    }

    /// Runs a one-off dyno `run.N` of the current release to completion.
    /// Returns its name at once and its outcome through the join handle.
    pub fn run(
        self: &Arc<Self>,
        process_type: &str,
        args: Vec<String>,
    ) -> anyhow::Result<(String, tokio::task::JoinHandle<Result<i32, String>>)> {
        let release = self
            .current_release()
            .context("the app has no release to run")?;
        self.one_off(release, "run", process_type, args)
    }

    /// Runs a one-off dyno `PREFIX.N` of `release` (the current one for `run`, the one
    /// about to go live for the release phase).
    pub fn one_off(
        self: &Arc<Self>,
        release: Arc<Release>,
        prefix: &str,
        process_type: &str,
        args: Vec<String>,
    ) -> anyhow::Result<(String, tokio::task::JoinHandle<Result<i32, String>>)> {
        if release.command(process_type).is_none() {
            bail!(
                "process type `{process_type}` is not a command in v{} (types: {})",
                release.version,
                release.procfile.type_names()
            );
        }
        let n = 1000 + self.one_offs.fetch_add(1, Ordering::Relaxed) % 9000;
        let name = format!("{prefix}.{n}");
        let this = self.clone();
        let (task_name, process_type) = (name.clone(), process_type.to_string());
        let task = tokio::spawn(async move {
            run_one_off(
                WorkerDynoSpec {
                    engine: &this.engine,
                    release: &release,
                    logs: &this.logs,
                    process_type: &process_type,
                    name: &task_name,
                    run_dir: &this.run_dir,
                    port: this.port,
                    backoff: this.backoff.clone(),
                },
                &args,
            )
            .await
        });
        Ok((name, task))
    }

    /// Stops every dyno. Web dynos stop taking requests; their filesystems go when the
    /// requests still in flight finish.
    pub async fn stop(&self) {
        let _change = self.changes.lock().await;
        let old_web = self.swap_web(Vec::new());
        for dyno in old_web.iter() {
            self.logs.platform(dyno.name(), "Stopping process");
        }
        drop(old_web);
        let workers = std::mem::take(&mut *self.workers.lock().unwrap_or_else(|p| p.into_inner()));
        self.stop_workers(workers).await;
    }

    async fn start_web(&self, release: &Arc<Release>, n: u32) -> anyhow::Result<WebDyno> {
        let name = format!("web.{n}");
        WebDyno::start(WebDynoSpec {
            engine: &self.engine,
            release,
            logs: &self.logs,
            name: &name,
            run_dir: &self.run_dir,
            port: self.port,
        })
        .await
        .with_context(|| format!("v{} could not start {name}", release.version))
    }

    fn start_worker(
        &self,
        release: &Arc<Release>,
        process_type: &str,
        n: u32,
    ) -> anyhow::Result<WorkerDyno> {
        WorkerDyno::start(WorkerDynoSpec {
            engine: &self.engine,
            release,
            logs: &self.logs,
            process_type,
            name: &format!("{process_type}.{n}"),
            run_dir: &self.run_dir,
            port: self.port,
            backoff: self.backoff.clone(),
        })
    }

    /// Stops workers together, each with the grace period to exit.
    async fn stop_workers(&self, workers: Vec<WorkerDyno>) {
        futures::future::join_all(workers.into_iter().map(|w| w.stop(self.stop_grace))).await;
    }

    /// Atomically replaces the web dynos the router sees; returns the previous list.
    fn swap_web(&self, next: Vec<WebDyno>) -> Arc<Vec<WebDyno>> {
        let mut web = self.web.write().unwrap_or_else(|p| p.into_inner());
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

/// `worker.2` → (`worker`, 2).
fn parse_dyno_name(name: &str) -> anyhow::Result<(String, u32)> {
    let parsed = name
        .rsplit_once('.')
        .and_then(|(t, n)| n.parse::<u32>().ok().map(|n| (t.to_string(), n)));
    parsed.with_context(|| format!("`{name}` is not a dyno name (like web.1)"))
}
