//! One app's running dynos: its formation of the current release, and release swaps.

use crate::backoff::Backoff;
use crate::engine::Engine;
use crate::logs::LogStream;
use crate::release::Release;
use crate::web::{WebDyno, WebDynoSpec};
use crate::worker::{WorkerDyno, WorkerDynoSpec};
use anyhow::Context;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

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
    /// Web dynos serving now; the router reads a snapshot, a deploy swaps the whole list.
    web: RwLock<Arc<Vec<WebDyno>>>,
    workers: Mutex<Vec<WorkerDyno>>,
    current: RwLock<Option<Arc<Release>>>,
}

impl AppRuntime {
    pub fn new(
        name: &str,
        engine: Arc<Engine>,
        logs: Arc<LogStream>,
        run_dir: PathBuf,
        port: u16,
    ) -> Arc<AppRuntime> {
        Arc::new(AppRuntime {
            name: name.into(),
            logs,
            engine,
            run_dir,
            port,
            web: RwLock::new(Arc::new(Vec::new())),
            workers: Mutex::new(Vec::new()),
            current: RwLock::new(None),
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

    /// The least busy web dyno, if any is up.
    pub fn pick_web(&self) -> Option<WebDyno> {
        let dynos = self.web_dynos();
        dynos.iter().min_by_key(|d| d.in_flight()).cloned()
    }

    /// Runs `formation` of `release`, with preboot: the new web dynos start and boot
    /// first; only when all are up does the router switch to them, and the old ones stop
    /// taking requests but finish those in flight. If any new dyno fails to boot, the old
    /// release keeps serving and the error is returned.
    pub async fn deploy(&self, release: Arc<Release>, formation: &Formation) -> anyhow::Result<()> {
        let web_count = formation.get("web").copied().unwrap_or(0);
        let mut fresh = Vec::new();
        for n in 1..=web_count {
            let name = format!("web.{n}");
            let dyno = WebDyno::start(WebDynoSpec {
                engine: &self.engine,
                release: &release,
                logs: &self.logs,
                name: &name,
                run_dir: &self.run_dir,
                port: self.port,
            })
            .await
            .with_context(|| format!("v{} could not start {name}", release.version))?;
            fresh.push(dyno);
        }
        let old_web = {
            let mut web = self.web.write().unwrap_or_else(|p| p.into_inner());
            std::mem::replace(&mut *web, Arc::new(fresh))
        };
        for dyno in old_web.iter() {
            self.logs.platform(
                dyno.name(),
                format!(
                    "Stopping v{} (in-flight requests finish)",
                    dyno.release().version
                ),
            );
        }
        drop(old_web);

        let old_workers =
            std::mem::take(&mut *self.workers.lock().unwrap_or_else(|p| p.into_inner()));
        for worker in old_workers {
            worker.stop().await;
        }
        let mut workers = Vec::new();
        for (process_type, count) in formation {
            if process_type == "web" || process_type == "release" {
                continue;
            }
            for n in 1..=*count {
                let name = format!("{process_type}.{n}");
                workers.push(WorkerDyno::start(WorkerDynoSpec {
                    engine: &self.engine,
                    release: &release,
                    logs: &self.logs,
                    process_type,
                    name: &name,
                    run_dir: &self.run_dir,
                    port: self.port,
                    backoff: Backoff::default(),
                })?);
            }
        }
        *self.workers.lock().unwrap_or_else(|p| p.into_inner()) = workers;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(release);
        Ok(())
    }

    /// Stops every dyno. Web dynos stop taking requests; their filesystems go when the
    /// requests still in flight finish.
    pub async fn stop(&self) {
        let old_web = std::mem::take(&mut *self.web.write().unwrap_or_else(|p| p.into_inner()));
        for dyno in old_web.iter() {
            self.logs.platform(dyno.name(), "Stopping process");
        }
        drop(old_web);
        let workers = std::mem::take(&mut *self.workers.lock().unwrap_or_else(|p| p.into_inner()));
        for worker in workers {
            worker.stop().await;
        }
    }
}
