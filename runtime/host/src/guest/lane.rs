//! Lanes: the threads one app's guests run on.
//!
//! Every app gets its own small tokio runtime for all of its guest code: web requests,
//! worker and one-off dynos, the release phase and the start functions run when
//! instantiating. The router, the control API and the store stay on the host's main
//! runtime. So the kernel's scheduler, which is fair between threads, is fair between
//! apps: an app that busy-loops competes for the CPU as its lane's threads, slows itself,
//! and cannot queue other apps' requests behind its guests as one shared async executor
//! would (there the quiet app's request waited behind every busy guest's time slice). The
//! [CPU governor](super::cpu) confines a busy lane to the batch cores, so busy guests
//! never delay the router, the API or a quiet app's request.
//!
//! A lane has one worker thread per dyno this host runs of its app, up to the host's
//! `--lane-threads` (by default its cores): scaling out adds cores as it does on Heroku,
//! where each dyno is a container of its own. One thread per app capped what a scaled
//! app could do at one core: `samples/counter` on three dynos made 18.4k increments/s on
//! one thread and 20.1–24.0k on two (`bench/addons.sh`), because the increments one
//! add-on commit acknowledges resume at once and on one thread each waits for the others'
//! guests. An app of one dyno, which is every app that sleeps in numbers, keeps one
//! thread: waking a lane of two costs more (tokio's first worker to find the request
//! wakes the second, and both join the app: 570 against 810 µs of host CPU per wake-up in
//! a storm at 10,000 apps, `bench/idle.py`).
//!
//! A tokio runtime cannot change its number of threads, and a long-running worker dyno
//! cannot move between runtimes. So when a deploy or a scale changes the lane's size,
//! new work goes to a runtime of the new size, and the old one is retired: the tasks on
//! it (a worker dyno kept by the scale, a request in flight) run on there, and it stops
//! once nothing is left on it.
//!
//! Guests still yield to their lane on every epoch tick, so one app's dynos share its
//! lane among themselves.

use crate::guest::cpu::{CpuGovernor, LaneCpu};
use crate::guest::lane_spares::{LaneRuntime, LaneSpares, Spawner};
use crate::logs::LogStream;
use parking_lot::Mutex;
use std::future::Future;
use std::sync::Arc;
use tokio::task::{AbortHandle, JoinHandle};
use wdeploy_core::AppName;

/// How lanes are made; the same for every app of a host.
#[derive(Debug, Clone, Copy)]
pub struct LaneOptions {
    /// The most worker threads one app gets (one per dyno up to this): how many cores
    /// one app's guests can use at once ([`default_lane_threads`] unless the host says).
    pub threads: usize,
    /// Threads per app for blocking work done on the guests' behalf (files, add-ons).
    pub max_blocking_threads: usize,
}

/// `wdeploy host --lane-threads` unless given: the cores this process may use (at most
/// 64), so that an app scaled to as many dynos can use all of them.
pub fn default_lane_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(64))
}

impl Default for LaneOptions {
    fn default() -> Self {
        LaneOptions {
            threads: default_lane_threads(),
            max_blocking_threads: 16,
        }
    }
}

/// One app's lane. It takes a runtime (see [`LaneSpares`]) when the app first runs guest
/// code. The runtime stops, dropping every task still on it, when the lane is dropped
/// with its app; it goes back to the spares when the app has gone idle
/// ([`Lane::stop_if`]). The next guest work takes one again.
pub struct Lane {
    /// Where its runtime comes from: ready-built ones, shared by the host's lanes.
    spares: Arc<LaneSpares>,
    /// The lane's threads as the CPU governor sees them.
    cpu: Arc<LaneCpu>,
    /// Under a lock, so stopping an idle lane and a request asking for it are ordered.
    runtime: Mutex<Runtimes>,
}

/// A lane's runtimes: the one new work goes to, and older ones with work left on them.
struct Runtimes {
    running: Option<LaneRuntime>,
    /// The worker threads the next runtime taken gets: one per dyno (see [`Lane::fit`]).
    threads: usize,
    /// Runtimes of an earlier size, each stopped once nothing is left on it.
    retired: Vec<LaneRuntime>,
}

/// Where guest work of one app is spawned; cheap to clone, usable from any runtime.
/// While one is held, the runtime it spawns on is not stopped for a resize.
#[derive(Clone, Debug)]
pub struct LaneHandle {
    spawner: Arc<Spawner>,
}

/// The lane's runtime stopped (its app is gone) before the task could finish.
#[derive(Debug, thiserror::Error)]
#[error("the app's lane has stopped")]
pub struct LaneStopped;

impl Lane {
    /// A lane for `app`, watched by `governor`, which writes to `logs` when it confines
    /// the lane to the batch cores or frees it; its runtimes come from `spares`.
    pub fn new(
        app: AppName,
        logs: Arc<LogStream>,
        governor: &CpuGovernor,
        spares: Arc<LaneSpares>,
    ) -> Lane {
        Lane {
            cpu: governor.watch(app, logs),
            spares,
            runtime: Mutex::new(Runtimes {
                running: None,
                threads: 1,
                retired: Vec::new(),
            }),
        }
    }

    /// Sizes the lane for `dynos` dynos of its app on this host: one worker thread each,
    /// at least one, at most the host's `--lane-threads`. A running runtime of another
    /// size is retired: what runs on it stays there, and new work goes to one of the new
    /// size, taken at the next [`Lane::handle`].
    pub fn fit(&self, dynos: usize) {
        let threads = dynos.clamp(1, self.spares.max_threads());
        let mut lane = self.runtime.lock();
        lane.threads = threads;
        if let Some(old) = lane.running.take_if(|r| r.threads() != threads) {
            lane.retired.push(old);
        }
        lane.stop_unused_retired();
    }

    /// The lane's handle, starting its threads if they are not running.
    pub fn handle(&self) -> anyhow::Result<LaneHandle> {
        let mut lane = self.runtime.lock();
        if !lane.retired.is_empty() {
            lane.stop_unused_retired();
        }
        let threads = lane.threads;
        let runtime = match &mut lane.running {
            Some(running) => running,
            none => none.insert(self.spares.take(&self.cpu, threads)?),
        };
        Ok(LaneHandle {
            spawner: runtime.spawner().clone(),
        })
    }

    /// Stops the lane's threads when `quiet` says, under the lane's lock, that nothing of
    /// the app runs or is about to (a request counts itself in before it asks for the
    /// lane, so it is either seen by `quiet` or gets a new runtime after this). Whether
    /// they were stopped.
    pub fn stop_if(&self, quiet: impl FnOnce() -> bool) -> bool {
        let mut lane = self.runtime.lock();
        if lane.running.is_none() || !quiet() {
            return false;
        }
        let stopping = lane.running.take();
        let retired = std::mem::take(&mut lane.retired);
        drop(lane);
        // Out of the lock a waking request takes: retired runtimes stopped, the running
        // one parked for the next app to wake, or stopped, without waiting.
        drop(retired);
        if let Some(stopping) = stopping {
            self.spares.give_back(stopping);
        }
        true
    }

    /// Whether the lane's threads run now.
    pub fn is_running(&self) -> bool {
        self.runtime.lock().running.is_some()
    }

    /// The worker threads of the runtime new work goes to, if one runs.
    pub fn threads(&self) -> Option<usize> {
        self.runtime
            .lock()
            .running
            .as_ref()
            .map(LaneRuntime::threads)
    }
}

impl Runtimes {
    /// Stops the retired runtimes nothing is left on. No new work can reach one: the
    /// lane hands out only its running runtime, and no handle of a retired one is held.
    fn stop_unused_retired(&mut self) {
        self.retired.retain(|old| !old.is_unused());
    }
}

impl LaneHandle {
    /// Spawns guest work on the lane; it runs on even if the handle is dropped.
    pub fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let spawner = self.spawner.clone();
        self.spawner.handle.spawn(async move {
            // A worker of a runtime taken ready-built joins the lane as it wakes; this
            // covers one that was still starting up when it was taken.
            spawner.owner.join_current_thread();
            future.await
        })
    }

    /// Runs `future` on the lane and waits for it. Dropping the returned future stops the
    /// work on the lane too, so a caller that gives up (a client gone, a timeout) does not
    /// leave guest code running.
    pub async fn run<F>(&self, future: F) -> Result<F::Output, LaneStopped>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let task = self.spawn(future);
        let _abort = AbortOnDrop::new(task.abort_handle());
        match task.await {
            Ok(output) => Ok(output),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Err(LaneStopped),
        }
    }
}

/// Aborts a lane task when whoever waits for it goes away.
pub struct AbortOnDrop(Option<AbortHandle>);

impl AbortOnDrop {
    pub fn new(task: AbortHandle) -> AbortOnDrop {
        AbortOnDrop(Some(task))
    }

    /// Lets the task run on by itself. The handle is dropped, never forgotten: a
    /// forgotten handle keeps its task's memory allocated for ever (every web request
    /// leaked its task this way, about 4.6 KB, until issue 15).
    pub fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn lane() -> Lane {
        let governor = CpuGovernor::start(Default::default()).expect("governor");
        Lane::new(
            AppName::from_str("lanes").expect("valid name"),
            LogStream::new(),
            &governor,
            Arc::new(LaneSpares::new(LaneOptions::default())),
        )
    }

    /// Lanes of one thread, so a test knows which thread runs what.
    fn one_thread() -> LaneOptions {
        LaneOptions {
            threads: 1,
            ..LaneOptions::default()
        }
    }

    /// Two apps' lanes of one thread each, on one set of spares that builds none ahead.
    fn two_lanes() -> (Lane, Lane) {
        let governor = CpuGovernor::start(Default::default()).expect("governor");
        let spares = Arc::new(LaneSpares::none_ahead(one_thread()));
        let lane = |name: &str| {
            Lane::new(
                AppName::from_str(name).expect("valid name"),
                LogStream::new(),
                &governor,
                spares.clone(),
            )
        };
        (lane("first"), lane("second"))
    }

    /// The thread a task runs on: its id and its name as the kernel shows it.
    async fn thread_of(lane: &Lane) -> (libc::pid_t, String) {
        let handle = lane.handle().expect("lane starts");
        handle
            .run(async {
                let tid = crate::guest::cpu::current_tid();
                let name = std::fs::read_to_string("/proc/thread-self/comm").expect("comm");
                (tid, name.trim_end().to_owned())
            })
            .await
            .expect("lane runs")
    }

    #[tokio::test]
    async fn a_sleeping_apps_runtime_serves_the_next_app_as_that_apps_own() {
        let (first, second) = two_lanes();
        let (tid, name) = thread_of(&first).await;
        assert_eq!(name, "app:first");
        assert_eq!(first.cpu.thread_ids(), vec![tid]);
        // A task is counted until just after its caller has its output.
        for _ in 0..1000 {
            let alive = first
                .runtime
                .lock()
                .running
                .as_ref()
                .map(LaneRuntime::tasks_alive);
            if alive == Some(0) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        assert!(first.stop_if(|| true), "the idle lane stops");
        assert!(
            first.cpu.thread_ids().is_empty(),
            "a parked thread no longer counts for the app it served"
        );
        // The runtime given back is the one the next app to wake gets: no thread is made.
        let (reused, name) = thread_of(&second).await;
        assert_eq!(reused, tid);
        assert_eq!(name, "app:second");
        assert_eq!(second.cpu.thread_ids(), vec![tid]);
        assert!(first.cpu.thread_ids().is_empty());
    }

    #[tokio::test]
    async fn a_runtime_with_work_of_its_app_left_is_stopped_not_reused() {
        let (first, second) = two_lanes();
        let (tid, _) = thread_of(&first).await;
        let left = first
            .handle()
            .expect("lane runs")
            .spawn(std::future::pending::<()>());
        assert!(first.stop_if(|| true));
        let ended = left
            .await
            .expect_err("the task left ended with its runtime");
        assert!(ended.is_cancelled());
        let (other, name) = thread_of(&second).await;
        assert_ne!(other, tid, "another app's task was left on that runtime");
        assert_eq!(name, "app:second");
    }

    #[tokio::test]
    async fn work_runs_on_the_apps_own_threads() {
        let lane = lane();
        let handle = lane.handle().expect("lane starts");
        let thread = handle
            .run(async { std::fs::read_to_string("/proc/thread-self/comm") })
            .await
            .expect("lane runs")
            .expect("the thread's name");
        assert_eq!(thread.trim_end(), "app:lanes");
    }

    /// A lane of `app` whose spares allow `max` threads per app.
    fn lane_of_at_most(app: &str, max: usize) -> Lane {
        let governor = CpuGovernor::start(Default::default()).expect("governor");
        Lane::new(
            AppName::from_str(app).expect("valid name"),
            LogStream::new(),
            &governor,
            Arc::new(LaneSpares::none_ahead(LaneOptions {
                threads: max,
                ..LaneOptions::default()
            })),
        )
    }

    #[tokio::test]
    async fn an_apps_guests_run_on_a_thread_per_dyno_up_to_the_hosts_limit() {
        let lane = lane_of_at_most("scaled", 2);
        assert_eq!(lane.threads(), None, "no thread before any work");
        lane.handle().expect("lane starts");
        assert_eq!(lane.threads(), Some(1), "one dyno, one thread");
        lane.fit(3);
        lane.handle().expect("lane starts");
        assert_eq!(
            lane.threads(),
            Some(2),
            "three dynos, the host's limit of two"
        );
        let handle = lane.handle().expect("lane runs");
        // Each task blocks its thread until the other arrives: both finish only if the
        // lane runs them side by side.
        let meet = Arc::new(std::sync::Barrier::new(2));
        let both = [meet.clone(), meet].map(|meet| {
            handle.run(async move {
                meet.wait();
                crate::guest::cpu::current_tid()
            })
        });
        let [a, b] = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            futures::future::join_all(both),
        )
        .await
        .expect("the two tasks met")
        .try_into()
        .expect("two results");
        assert_ne!(a.expect("ran"), b.expect("ran"));
        lane.fit(1);
        lane.handle().expect("lane runs");
        assert_eq!(lane.threads(), Some(1), "scaled back to one dyno");
    }

    #[tokio::test]
    async fn a_resize_leaves_running_work_on_the_old_threads_until_it_ends() {
        let lane = lane_of_at_most("resized", 2);
        let old = lane.handle().expect("lane starts");
        let (tid, _) = thread_of(&lane).await;
        // A long-running task (a worker dyno kept by a scale) on the one-thread runtime.
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let worker = old.spawn(async move {
            let _ = stopped.await;
            crate::guest::cpu::current_tid()
        });
        drop(old);
        lane.fit(2);
        let (new_tid, name) = thread_of(&lane).await;
        assert_ne!(new_tid, tid, "new work goes to the new runtime");
        assert_eq!(name, "app:resized");
        // Both runtimes' threads count for the app while the old one has work.
        assert!(lane.cpu.thread_ids().contains(&tid));
        assert!(lane.cpu.thread_ids().contains(&new_tid));
        assert_eq!(lane.runtime.lock().retired.len(), 1);
        stop.send(()).expect("the worker waits");
        assert_eq!(worker.await.expect("the worker ran on"), tid);
        // Once nothing is left on it, the old runtime stops at the next look.
        let mut left = 1;
        for _ in 0..1000 {
            lane.handle().expect("lane runs");
            left = lane.runtime.lock().retired.len();
            if left == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        assert_eq!(left, 0, "the emptied old runtime was stopped");
    }

    #[tokio::test]
    async fn a_retired_runtime_is_kept_while_a_handle_of_it_is_held() {
        let lane = lane_of_at_most("held", 2);
        let held = lane.handle().expect("lane starts");
        lane.fit(2);
        lane.handle().expect("lane runs");
        assert_eq!(lane.runtime.lock().retired.len(), 1);
        // Work spawned through the old handle, after the resize, still runs.
        assert!(held.run(async {}).await.is_ok());
    }

    #[tokio::test]
    async fn giving_up_on_run_stops_the_work() {
        let lane = lane();
        let handle = lane.handle().expect("lane starts");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let waiting = handle.run(async move {
            let _tx = tx;
            std::future::pending::<()>().await
        });
        // The caller gives up at once: the lane task is aborted, which drops `tx`.
        let _ = tokio::time::timeout(std::time::Duration::from_millis(10), waiting).await;
        assert!(rx.await.is_err(), "the lane task outlived its caller");
    }

    #[tokio::test]
    async fn a_dropped_lane_stops_its_tasks() {
        let lane = lane();
        let handle = lane.handle().expect("lane starts");
        let running = handle.spawn(std::future::pending::<()>());
        drop(lane);
        let ended = running.await.expect_err("the task ended with its lane");
        assert!(ended.is_cancelled());
        assert!(
            handle.run(async {}).await.is_err(),
            "a stopped lane runs nothing"
        );
    }

    #[tokio::test]
    async fn a_lane_can_be_dropped_by_its_own_task() {
        let lane = Arc::new(lane());
        let handle = lane.handle().expect("lane starts");
        let (tx, rx) = tokio::sync::oneshot::channel();
        handle.spawn(async move {
            // The last owner of the lane is this task: dropping it here must not panic
            // or deadlock (an app dropped by its own one-off dyno).
            drop(lane);
            let _ = tx.send(());
        });
        tokio::time::timeout(std::time::Duration::from_secs(10), rx)
            .await
            .expect("the task finished")
            .expect("the task ran past the drop");
    }
}
