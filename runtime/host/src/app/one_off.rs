//! An app's one-off dynos: `wdeploy run`'s `run.N` and the release phase's `release.N`,
//! each run to completion on the app's lane and listed in `ps` while it runs.

use super::{AppRuntime, OneOff};
use crate::deadlines::human;
use crate::dyno::status::DynoSnapshot;
use crate::dyno::worker::{WorkerDynoSpec, run_one_off};
use crate::release::Release;
use anyhow::{Context, bail};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use wdeploy_core::{DynoState, ProcessType};

impl AppRuntime {
    /// Stops one-off dyno `name` if this node runs it, saying `why` in its log; whether
    /// it did. The guest stops at its next yield, and the dyno leaves `ps` as it ends.
    pub fn stop_one_off(&self, name: &str, why: &str) -> bool {
        let Some(abort) = self.one_off_dynos.lock().get(name).map(|o| o.abort.clone()) else {
            return false;
        };
        abort.abort();
        self.logs.platform(name, format!("Stopping process: {why}"));
        self.logs
            .platform(name, "State changed from up to complete");
        true
    }

    /// Runs a one-off dyno `run.N` of the current release to completion.
    /// Returns its name at once and its outcome through the join handle.
    /// It is stopped once it has run for `lifetime` (at most the host's one-off limit).
    pub fn run(
        self: &Arc<Self>,
        process_type: &ProcessType,
        args: Vec<String>,
        lifetime: Option<Duration>,
    ) -> anyhow::Result<(String, tokio::task::JoinHandle<Result<i32, String>>)> {
        let release = self
            .current_release()
            .context("the app has no release to run")?;
        let lifetime = self.deadlines.one_off_lifetime(lifetime);
        self.one_off(release, "run", process_type, args, Some(lifetime))
    }

    /// Runs a one-off dyno `PREFIX.N` of `release` (the current one for `run`, the one
    /// about to go live for the release phase), stopped after `lifetime` if given.
    /// Aborting the returned task stops the dyno and takes it out of `ps`.
    pub fn one_off(
        self: &Arc<Self>,
        release: Arc<Release>,
        prefix: &str,
        process_type: &ProcessType,
        args: Vec<String>,
        lifetime: Option<Duration>,
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
        let command = release
            .procfile
            .get(process_type)
            .map_or_else(String::new, |p| {
                let shown = if args.is_empty() { &p.args } else { &args };
                std::iter::once(&p.component)
                    .chain(shown)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(" ")
            });
        let snapshot = DynoSnapshot {
            name: name.clone(),
            process_type: process_type.clone(),
            state: DynoState::Up,
            since: chrono::Utc::now(),
            next_start: None,
            release: release.version,
            command,
        };
        let this = self.clone();
        let (task_name, process_type) = (name.clone(), process_type.clone());
        // Registered under the lock the task takes to deregister, so a one-off that ends at
        // once cannot leave a stale entry behind.
        self.starting_one_offs.fetch_add(1, Ordering::SeqCst);
        let _listed_below = Decrement(&self.starting_one_offs);
        let lane = self.lane.handle()?;
        let mut running = self.one_off_dynos.lock();
        let task = lane.clone().spawn(async move {
            // Leaves `ps` however the task ends, aborted included.
            let _listed = Listed {
                runtime: this.clone(),
                name: task_name.clone(),
            };
            let running = run_one_off(
                WorkerDynoSpec {
                    engine: &this.engine,
                    lane: &lane,
                    release: &release,
                    logs: &this.logs,
                    metrics: &this.metrics,
                    process_type: &process_type,
                    name: &task_name,
                    run_dir: &this.run_dir,
                    port: this.port,
                    backoff: this.backoff.clone(),
                    boot_timeout: this.deadlines.boot,
                },
                &args,
            );
            let Some(lifetime) = lifetime else {
                return running.await;
            };
            match tokio::time::timeout(lifetime, running).await {
                Ok(ended) => ended,
                Err(_) => {
                    let why = format!(
                        "it ran past its time limit of {} and was stopped",
                        human(lifetime)
                    );
                    this.logs
                        .platform(&task_name, format!("Stopping process: {why}"));
                    this.logs
                        .platform(&task_name, "State changed from up to complete");
                    Err(why)
                }
            }
        });
        running.insert(
            name.clone(),
            OneOff {
                snapshot,
                abort: task.abort_handle(),
            },
        );
        Ok((name, task))
    }
}

/// Counts one down when dropped.
struct Decrement<'a>(&'a AtomicUsize);

impl Drop for Decrement<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A one-off dyno's entry in `ps`, removed when its task ends or is aborted.
struct Listed {
    runtime: Arc<AppRuntime>,
    name: String,
}

impl Drop for Listed {
    fn drop(&mut self) {
        self.runtime.one_off_dynos.lock().remove(&self.name);
    }
}
