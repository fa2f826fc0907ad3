//! A worker dyno: one long-running `wasi:cli/run` instance, restarted with back-off.

use crate::dyno::backoff::Backoff;
use crate::dyno::ephemeral::EphemeralDir;
use crate::dyno::input::ClientInput;
use crate::dyno::status::{DynoSnapshot, DynoStatus};
use crate::guest::engine::Engine;
use crate::guest::instance::{InstanceEnv, describe_failure, exit_status, new_store};
use crate::guest::lane::LaneHandle;
use crate::logs::LogStream;
use crate::metrics::AppMetrics;
use crate::release::Release;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use wdeploy_core::DynoState;
use wdeploy_core::ProcessType;

/// A supervised worker dyno. [`WorkerDyno::stop`] asks the guest to exit; dropping it
/// stops the guest at once.
pub struct WorkerDyno {
    name: Arc<str>,
    process_type: ProcessType,
    release: Arc<Release>,
    command: String,
    status: DynoStatus,
    stop: Arc<StopSignal>,
    logs: Arc<LogStream>,
    task: JoinHandle<()>,
}

/// How a worker is asked to stop. A wasm guest has no signals, so the platform's SIGTERM
/// is the end of its stdin: a guest that polls stdin sees EOF and can exit cleanly.
#[derive(Default)]
struct StopSignal {
    stopping: AtomicBool,
    /// The write end of the running guest's stdin; dropping it closes the guest's stdin.
    stdin: Mutex<Option<tokio::io::DuplexStream>>,
}

/// Where and how to start a worker dyno.
pub struct WorkerDynoSpec<'a> {
    pub engine: &'a Arc<Engine>,
    /// The app's guest threads, where the supervisor and its guest run.
    pub lane: &'a LaneHandle,
    pub release: &'a Arc<Release>,
    pub logs: &'a Arc<LogStream>,
    /// Where the dyno's crashes and restarts are counted.
    pub metrics: &'a Arc<AppMetrics>,
    pub process_type: &'a ProcessType,
    pub name: &'a str,
    pub run_dir: &'a std::path::Path,
    pub port: u16,
    pub backoff: Backoff,
    /// How long instantiation (the component's start functions) may take.
    pub boot_timeout: Duration,
}

impl WorkerDyno {
    pub fn start(spec: WorkerDynoSpec<'_>) -> anyhow::Result<WorkerDyno> {
        let supervisor = Supervisor::new(&spec, None).map_err(anyhow::Error::msg)?;
        let status = supervisor.status.clone();
        let stop = supervisor.stop.clone();
        let command = supervisor.args.join(" ");
        let task = spec.lane.spawn(supervisor.run());
        Ok(WorkerDyno {
            name: spec.name.into(),
            process_type: spec.process_type.clone(),
            release: spec.release.clone(),
            command,
            status,
            stop,
            logs: spec.logs.clone(),
            task,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn snapshot(&self) -> DynoSnapshot {
        let status = self.status.get();
        DynoSnapshot {
            name: self.name.to_string(),
            process_type: self.process_type.clone(),
            state: status.state,
            since: status.since,
            next_start: status.next_start,
            release: self.release.version,
            command: self.command.clone(),
        }
    }

    /// Stops the dyno: closes a running guest's stdin and gives it `grace` to exit, then
    /// stops it at its next yield point (Heroku's R12). Its filesystem is removed.
    pub async fn stop(mut self, grace: Duration) {
        self.stop.stopping.store(true, Ordering::SeqCst);
        let stdin = self.stop.stdin.lock().take();
        let running = self.status.get().state == DynoState::Up;
        let mut exited = false;
        if let (true, Some(stdin)) = (running, stdin) {
            self.logs.platform(
                &self.name,
                format!(
                    "Stopping process: stdin closed, {}s to exit",
                    grace.as_secs_f64()
                ),
            );
            drop(stdin);
            exited = tokio::time::timeout(grace, &mut self.task).await.is_ok();
            if !exited {
                self.logs.platform(
                    &self.name,
                    format!(
                        "Error R12 (Exit timeout) -> the process did not exit within {}s of its stdin closing; stopping it",
                        grace.as_secs_f64()
                    ),
                );
            }
        } else {
            self.logs.platform(&self.name, "Stopping process");
        }
        if !exited {
            self.task.abort();
            let _ = (&mut self.task).await;
        }
        self.logs
            .platform(&self.name, "State changed from up to down");
    }
}

/// Runs a one-off dyno (`wdeploy run`) of `spec.process_type` to completion: its exit
/// status, or why it crashed. `extra_args` replace the Procfile's arguments when given;
/// `extra_env` is set over the release's environment (DYNO and PORT are refused before);
/// `input` is its stdin when its client sends one.
pub async fn run_one_off(
    spec: WorkerDynoSpec<'_>,
    extra_args: &[String],
    extra_env: &BTreeMap<String, String>,
    input: Option<ClientInput>,
) -> Result<i32, String> {
    let args = (!extra_args.is_empty()).then_some(extra_args);
    let mut supervisor = Supervisor::new(&spec, args)?;
    supervisor.env.retain(|(k, _)| !extra_env.contains_key(k));
    supervisor
        .env
        .extend(extra_env.iter().map(|(k, v)| (k.clone(), v.clone())));
    let ended = supervisor.run_once(input).await;
    let line = match &ended {
        Ok(code) => format!("Process exited with status {code}"),
        Err(why) => format!("Process crashed: {why}"),
    };
    spec.logs.platform(spec.name, line);
    spec.logs
        .platform(spec.name, "State changed from up to complete");
    ended
}

impl Drop for WorkerDyno {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Supervisor {
    status: DynoStatus,
    stop: Arc<StopSignal>,
    name: Arc<str>,
    engine: Arc<Engine>,
    release: Arc<Release>,
    logs: Arc<LogStream>,
    metrics: Arc<AppMetrics>,
    process_type: ProcessType,
    env: Vec<(String, String)>,
    args: Vec<String>,
    run_dir: PathBuf,
    backoff: Backoff,
    boot_timeout: Duration,
}

impl Supervisor {
    /// A supervisor for `spec`; `args` replace the Procfile's arguments when given.
    fn new(spec: &WorkerDynoSpec<'_>, args: Option<&[String]>) -> Result<Supervisor, String> {
        let process = spec
            .release
            .procfile
            .get(spec.process_type)
            .ok_or_else(|| format!("the release has no `{}` process type", spec.process_type))?;
        let args = args.map_or_else(|| process.args.clone(), <[String]>::to_vec);
        Ok(Supervisor {
            status: DynoStatus::default(),
            stop: Arc::new(StopSignal::default()),
            name: spec.name.into(),
            engine: spec.engine.clone(),
            release: spec.release.clone(),
            logs: spec.logs.clone(),
            metrics: spec.metrics.clone(),
            process_type: spec.process_type.clone(),
            env: spec.release.dyno_env(spec.name, spec.port),
            args: std::iter::once(process.component.clone())
                .chain(args)
                .collect(),
            run_dir: spec.run_dir.to_path_buf(),
            backoff: spec.backoff.clone(),
            boot_timeout: spec.boot_timeout,
        })
    }

    /// Runs the guest, and again after each exit or crash, until the task is aborted.
    async fn run(mut self) {
        loop {
            let started = Instant::now();
            self.status.set(DynoState::Starting);
            let ended = self.run_once(None).await;
            if self.stop.stopping.load(Ordering::SeqCst) {
                let line = match ended {
                    Ok(code) => format!("Process exited with status {code}"),
                    Err(why) => format!("Process crashed: {why}"),
                };
                self.logs.platform(&self.name, line);
                return;
            }
            let (state, line) = match ended {
                Ok(0) => ("crashed", "Process exited with status 0".to_string()),
                Ok(code) => ("crashed", format!("Process exited with status {code}")),
                Err(why) => ("crashed", format!("Process crashed: {why}")),
            };
            self.logs.platform(&self.name, line);
            self.metrics.crashed(&self.process_type);
            self.logs
                .platform(&self.name, format!("State changed from up to {state}"));
            let delay = self.backoff.next_delay(started.elapsed());
            self.status.crashed_until(
                chrono::Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default(),
            );
            if !delay.is_zero() {
                self.logs
                    .platform(&self.name, format!("Restarting in {}", human(delay)));
                tokio::time::sleep(delay).await;
            }
            self.logs
                .platform(&self.name, "State changed from crashed to starting");
            self.metrics.restarted(&self.process_type);
        }
    }

    /// One life of the guest: its exit status, or why it crashed. Its stdin is `input`
    /// when its client sends one (`run --stdin`); otherwise it stays open and empty until
    /// `stop` closes it.
    pub(crate) async fn run_once(&self, input: Option<ClientInput>) -> Result<i32, String> {
        // Every start gets a fresh, empty filesystem (made if the guest asks for it),
        // removed when this life ends.
        let dir = Arc::new(EphemeralDir::planned(
            &self.run_dir,
            &self.release.app,
            &self.name,
            self.engine.disk_limit_bytes(&self.release.settings),
        ));
        let pre = self
            .release
            .command(&self.process_type)
            .ok_or_else(|| format!("no `{}` component", self.process_type))?;
        self.logs.platform(
            &self.name,
            format!("Starting process with command `{}`", self.args.join(" ")),
        );
        let stdin = match input {
            Some(input) => wasmtime_wasi::cli::AsyncStdinStream::new(input),
            None => {
                let (stdin_writer, stdin_reader) = tokio::io::duplex(64);
                *self.stop.stdin.lock() = Some(stdin_writer);
                wasmtime_wasi::cli::AsyncStdinStream::new(stdin_reader)
            }
        };
        let env = InstanceEnv {
            app: &self.release.app,
            purpose: crate::guest::share::Purpose::Boot,
            dyno: &self.name,
            env: &self.env,
            args: &self.args,
            dir: dir.clone(),
            logs: &self.logs,
            memory_limit_bytes: self.release.settings.memory_limit_bytes(),
            addons: self.release.addons.clone(),
            egress: self.release.egress.clone(),
            stdin: Some(stdin),
            // Commands are WASI 0.2 (`Release::load` refuses async ones).
            flavor: crate::guest::engine::Flavor::Plain,
        };
        let mut store = new_store(&self.engine, env).map_err(|e| format!("{e:#}"))?;
        // A start function that never returns is stopped at the boot deadline (it yields
        // at every epoch tick, so dropping the future stops it there).
        let command = tokio::time::timeout(self.boot_timeout, pre.instantiate_async(&mut store))
            .await
            .map_err(|_| {
                format!(
                    "Error R10 (Boot timeout) -> the process did not start within {} of launch",
                    crate::deadlines::human(self.boot_timeout)
                )
            })?
            .map_err(|e| describe_failure(&e))?;
        self.status.set(DynoState::Up);
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
