//! A worker dyno: one long-running `wasi:cli/run` instance, restarted with back-off.

use crate::backoff::Backoff;
use crate::engine::Engine;
use crate::ephemeral::EphemeralDir;
use crate::instance::{InstanceEnv, describe_failure, exit_status, new_store};
use crate::logs::LogStream;
use crate::release::Release;
use anyhow::Context;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// A supervised worker dyno. Dropping it (or calling [`WorkerDyno::stop`]) stops the guest.
pub struct WorkerDyno {
    name: Arc<str>,
    logs: Arc<LogStream>,
    task: JoinHandle<()>,
}

/// Where and how to start a worker dyno.
pub struct WorkerDynoSpec<'a> {
    pub engine: &'a Arc<Engine>,
    pub release: &'a Arc<Release>,
    pub logs: &'a Arc<LogStream>,
    pub process_type: &'a str,
    pub name: &'a str,
    pub run_dir: &'a std::path::Path,
    pub port: u16,
    pub backoff: Backoff,
}

impl WorkerDyno {
    pub fn start(spec: WorkerDynoSpec<'_>) -> anyhow::Result<WorkerDyno> {
        let process = spec
            .release
            .procfile
            .get(spec.process_type)
            .with_context(|| format!("the release has no `{}` process type", spec.process_type))?;
        let supervisor = Supervisor {
            name: spec.name.into(),
            engine: spec.engine.clone(),
            release: spec.release.clone(),
            logs: spec.logs.clone(),
            process_type: spec.process_type.to_string(),
            env: spec.release.dyno_env(spec.name, spec.port),
            args: std::iter::once(process.component.clone())
                .chain(process.args.iter().cloned())
                .collect(),
            run_dir: spec.run_dir.to_path_buf(),
            backoff: spec.backoff,
        };
        let task = tokio::spawn(supervisor.run());
        Ok(WorkerDyno {
            name: spec.name.into(),
            logs: spec.logs.clone(),
            task,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Stops the guest at its next yield point and removes its filesystem.
    pub async fn stop(mut self) {
        self.logs.platform(&self.name, "Stopping process");
        self.task.abort();
        let _ = (&mut self.task).await;
        self.logs
            .platform(&self.name, "State changed from up to down");
    }
}

impl Drop for WorkerDyno {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Supervisor {
    name: Arc<str>,
    engine: Arc<Engine>,
    release: Arc<Release>,
    logs: Arc<LogStream>,
    process_type: String,
    env: Vec<(String, String)>,
    args: Vec<String>,
    run_dir: PathBuf,
    backoff: Backoff,
}

impl Supervisor {
    /// Runs the guest, and again after each exit or crash, until the task is aborted.
    async fn run(mut self) {
        loop {
            let started = Instant::now();
            let ended = self.run_once().await;
            let (state, line) = match ended {
                Ok(0) => ("crashed", "Process exited with status 0".to_string()),
                Ok(code) => ("crashed", format!("Process exited with status {code}")),
                Err(why) => ("crashed", format!("Process crashed: {why}")),
            };
            self.logs.platform(&self.name, line);
            self.logs
                .platform(&self.name, format!("State changed from up to {state}"));
            let delay = self.backoff.next_delay(started.elapsed());
            if !delay.is_zero() {
                self.logs
                    .platform(&self.name, format!("Restarting in {}", human(delay)));
                tokio::time::sleep(delay).await;
            }
            self.logs
                .platform(&self.name, "State changed from crashed to starting");
        }
    }

    /// One life of the guest: its exit status, or why it crashed.
    async fn run_once(&self) -> Result<i32, String> {
        // Every start gets a fresh, empty filesystem, removed when this life ends.
        let dir = EphemeralDir::create(&self.run_dir, &self.release.app, &self.name)
            .map_err(|e| format!("{e:#}"))?;
        let pre = self
            .release
            .command(&self.process_type)
            .ok_or_else(|| format!("no `{}` component", self.process_type))?;
        self.logs.platform(
            &self.name,
            format!("Starting process with command `{}`", self.args.join(" ")),
        );
        let env = InstanceEnv {
            dyno: &self.name,
            env: &self.env,
            args: &self.args,
            dir: dir.path(),
            logs: &self.logs,
            memory_limit_bytes: (self.release.settings.limits.memory_mb as usize) << 20,
        };
        let mut store = new_store(&self.engine, &env).map_err(|e| format!("{e:#}"))?;
        let command = pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| describe_failure(&e))?;
        self.logs
            .platform(&self.name, "State changed from starting to up");
        match command.wasi_cli_run().call_run(&mut store).await {
            Ok(Ok(())) => Ok(0),
            Ok(Err(())) => Ok(1),
            Err(e) => match exit_status(&e) {
                Some(code) => Ok(code),
                None => Err(describe_failure(&e)),
            },
        }
    }
}

fn human(d: Duration) -> String {
    if d.as_secs() >= 1 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}
