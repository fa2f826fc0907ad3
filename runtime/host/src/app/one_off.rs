//! An app's one-off dynos: `wdeploy run`'s `run.N` and the release phase's `release.N`,
//! each run to completion on the app's lane and listed in `ps` while it runs.

use super::{AppRuntime, Input, OneOff};
use crate::deadlines::human;
use crate::dyno::input::InputSender;
use crate::dyno::status::DynoSnapshot;
use crate::dyno::worker::{WorkerDynoSpec, run_one_off};
use crate::release::Release;
use anyhow::{Context, bail};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use wdeploy_core::{DynoState, ProcessType};

/// What a one-off dyno runs: a process type of the release, with arguments that replace
/// its Procfile's when any are given, and variables set in its environment over the
/// release's config vars (`wdeploy run -e`), for this dyno alone.
#[derive(Debug, Clone)]
pub struct OneOffCommand {
    pub process_type: ProcessType,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// Whether its client sends its stdin (`wdeploy run --stdin`), through
    /// [`AppRuntime::take_one_off_input`]; otherwise its stdin stays open and empty.
    pub stdin: bool,
}

impl OneOffCommand {
    /// `process_type` as its Procfile says, with the release's environment.
    pub fn of(process_type: ProcessType) -> OneOffCommand {
        OneOffCommand {
            process_type,
            args: Vec::new(),
            env: BTreeMap::new(),
            stdin: false,
        }
    }
}

/// Why a one-off's input cannot be sent.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("no one-off dyno {0} is running on this node")]
    NotHere(String),
    #[error("{0} was not started to read its client's input (`wdeploy run --stdin`)")]
    NotAsked(String),
    #[error("{0}'s input is sent by another client, or was sent")]
    Taken(String),
}

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

    /// Where the client of one-off dyno `name` sends its stdin, once: the end of what
    /// it sends is the end of the guest's input.
    pub fn take_one_off_input(&self, name: &str) -> Result<InputSender, InputError> {
        let mut running = self.one_off_dynos.lock();
        let one_off = running
            .get_mut(name)
            .ok_or_else(|| InputError::NotHere(name.to_string()))?;
        match std::mem::replace(&mut one_off.input, Input::Taken) {
            Input::Waiting(sender) => Ok(sender),
            Input::Taken => Err(InputError::Taken(name.to_string())),
            Input::Closed => {
                one_off.input = Input::Closed;
                Err(InputError::NotAsked(name.to_string()))
            }
        }
    }

    /// Runs a one-off dyno `run.NNNN` of the current release to completion, named apart
    /// from `taken` (the dynos other nodes run of this app).
    /// Returns its name at once and its outcome through the join handle.
    /// It is stopped once it has run for `lifetime` (at most the host's one-off limit).
    pub fn run(
        self: &Arc<Self>,
        command: OneOffCommand,
        lifetime: Option<Duration>,
        taken: &BTreeSet<String>,
    ) -> anyhow::Result<(String, tokio::task::JoinHandle<Result<i32, String>>)> {
        let release = self
            .current_release()
            .context("the app has no release to run")?;
        let lifetime = self.deadlines.one_off_lifetime(lifetime);
        self.one_off(release, "run", command, Some(lifetime), taken)
    }

    /// Runs a one-off dyno `PREFIX.NNNN` of `release` (the current one for `run`, the one
    /// about to go live for the release phase), stopped after `lifetime` if given, named
    /// apart from `taken` and from this node's dynos.
    /// Aborting the returned task stops the dyno and takes it out of `ps`.
    pub fn one_off(
        self: &Arc<Self>,
        release: Arc<Release>,
        prefix: &str,
        command: OneOffCommand,
        lifetime: Option<Duration>,
        taken: &BTreeSet<String>,
    ) -> anyhow::Result<(String, tokio::task::JoinHandle<Result<i32, String>>)> {
        let OneOffCommand {
            process_type,
            args,
            env,
            stdin,
        } = command;
        let (input, guest_input) = match stdin {
            true => {
                let (sender, input) = crate::dyno::input::pipe();
                (Input::Waiting(sender), Some(input))
            }
            false => (Input::Closed, None),
        };
        let process_type = &process_type;
        if release.command(process_type).is_none() {
            let commands = release.command_types();
            let commands = if commands.is_empty() {
                "it has none".to_string()
            } else {
                format!("its commands: {}", commands.join(", "))
            };
            if release.procfile.get(process_type).is_some() {
                bail!(
                    "process type `{process_type}` of v{} serves HTTP: a one-off runs a \
                     command process type ({commands})",
                    release.version
                );
            }
            bail!(
                "v{} has no process type `{process_type}` ({commands})",
                release.version
            );
        }
        self.starting_one_offs.fetch_add(1, Ordering::SeqCst);
        let _listed_below = Decrement(&self.starting_one_offs);
        let lane = self.lane.handle()?;
        // Registered under the lock the task takes to deregister, so a one-off that ends at
        // once cannot leave a stale entry behind, and named under it, so two one-offs
        // started at once cannot take one name.
        let mut running = self.one_off_dynos.lock();
        let name = free_name(prefix, |name| {
            taken.contains(name) || running.contains_key(name)
        })?;
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
                &env,
                guest_input,
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
                input,
            },
        );
        Ok((name, task))
    }
}

/// A name `PREFIX.NNNN` that `in_use` says is free, its number drawn at random from
/// 1000–9999 as Heroku's are. Each node of a cluster names its own one-offs, with no
/// counter to agree on: at random, and apart from the names the others have published,
/// two nodes give one name only if they both draw it within the moment before either
/// publishes it.
fn free_name(prefix: &str, in_use: impl Fn(&str) -> bool) -> anyhow::Result<String> {
    const FIRST: u16 = 1000;
    const COUNT: u16 = 9000;
    let mut drawn = [0u8; 2];
    getrandom::getrandom(&mut drawn).context("no randomness to name a one-off dyno with")?;
    let start = u16::from_le_bytes(drawn) % COUNT;
    // From the drawn number on, so a crowded range still finds its free names.
    (0..COUNT)
        .map(|step| format!("{prefix}.{}", FIRST + (start + step) % COUNT))
        .find(|name| !in_use(name))
        .with_context(|| format!("all {COUNT} names {prefix}.NNNN are in use"))
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

#[cfg(test)]
mod tests {
    use super::free_name;
    use std::collections::BTreeSet;

    #[test]
    fn a_one_off_is_named_at_random_apart_from_the_names_in_use() {
        let name = free_name("run", |_| false).expect("a free name");
        let n: u16 = name
            .strip_prefix("run.")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{name}"));
        assert!((1000..=9999).contains(&n), "{name}");
        // Drawn at random: 20 draws with all 9,000 names free give more than one name
        // (all 20 alike happens once in 9,000^19).
        let drawn: BTreeSet<String> = (0..20)
            .map(|_| free_name("run", |_| false).expect("a free name"))
            .collect();
        assert!(drawn.len() > 1, "{drawn:?}");
        // Every name but one in use: that one, wherever the draw starts.
        for _ in 0..20 {
            let only = free_name("release", |name| name != "release.4321").expect("one free");
            assert_eq!(only, "release.4321");
        }
        let err = free_name("run", |_| true).expect_err("no name is free");
        assert_eq!(err.to_string(), "all 9000 names run.NNNN are in use");
    }
}
