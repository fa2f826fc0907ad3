//! Lanes: the threads one app's guests run on.
//!
//! Every app gets its own small tokio runtime (by default one worker thread) for all of
//! its guest code: web requests, worker and one-off dynos, the release phase and the
//! start functions run when instantiating. The router, the control API and the store stay
//! on the host's main runtime. So the kernel's scheduler, which is fair between threads,
//! is fair between apps: an app that busy-loops in eight workers competes for the CPU as
//! one thread, slows itself, and cannot queue other apps' requests behind its guests as
//! one shared async executor would (there the quiet app's request waited behind every
//! busy guest's time slice). The [CPU governor](super::cpu) confines a busy lane to the
//! batch cores, so busy guests never delay the router, the API or a quiet app's request.
//!
//! `wdeploy host --lane-threads 2` gives every app two. Requests that wait come back
//! together (the increments one add-on commit acknowledges resume at once), and on one
//! thread each waits for the others' guests: `samples/counter` on three dynos made 18.4k
//! increments/s on one thread and 20.1–24.0k on two (`bench/addons.sh`). One stays the
//! default because waking an idle app costs more with two: tokio's first worker to find
//! the request wakes the second, and both join the app (570 against 810 µs of host CPU per
//! wake-up in a storm at 10,000 apps, `bench/idle.py`).
//!
//! Guests still yield to their lane on every epoch tick, so one app's dynos share its
//! lane among themselves.

use crate::guest::cpu::{CpuGovernor, LaneCpu};
use crate::guest::lane_spares::{LaneOwner, LaneRuntime, LaneSpares};
use crate::logs::LogStream;
use parking_lot::Mutex;
use std::future::Future;
use std::sync::Arc;
use tokio::runtime::Handle;
use tokio::task::{AbortHandle, JoinHandle};
use wdeploy_core::AppName;

/// How lanes are made; the same for every app of a host.
#[derive(Debug, Clone, Copy)]
pub struct LaneOptions {
    /// Worker threads per app: how many cores one app's guests can use at once
    /// ([`DEFAULT_LANE_THREADS`] unless the host says).
    pub threads: usize,
    /// Threads per app for blocking work done on the guests' behalf (files, add-ons).
    pub max_blocking_threads: usize,
}

/// `wdeploy host --lane-threads` unless given (see the module's doc for why one).
pub const DEFAULT_LANE_THREADS: usize = 1;

impl Default for LaneOptions {
    fn default() -> Self {
        LaneOptions {
            threads: DEFAULT_LANE_THREADS,
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
    runtime: Mutex<Option<LaneRuntime>>,
}

/// Where guest work of one app is spawned; cheap to clone, usable from any runtime.
#[derive(Clone, Debug)]
pub struct LaneHandle {
    handle: Handle,
    owner: Arc<LaneOwner>,
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
            runtime: Mutex::new(None),
        }
    }

    /// The lane's handle, starting its threads if they are not running.
    pub fn handle(&self) -> anyhow::Result<LaneHandle> {
        let mut runtime = self.runtime.lock();
        let runtime = match &mut *runtime {
            Some(running) => running,
            none => none.insert(self.spares.take(&self.cpu)?),
        };
        Ok(LaneHandle {
            handle: runtime.handle().clone(),
            owner: runtime.owner().clone(),
        })
    }

    /// Stops the lane's threads when `quiet` says, under the lane's lock, that nothing of
    /// the app runs or is about to (a request counts itself in before it asks for the
    /// lane, so it is either seen by `quiet` or gets a new runtime after this). Whether
    /// they were stopped.
    pub fn stop_if(&self, quiet: impl FnOnce() -> bool) -> bool {
        let mut runtime = self.runtime.lock();
        if runtime.is_none() || !quiet() {
            return false;
        }
        let stopping = runtime.take();
        drop(runtime);
        // Out of the lock a waking request takes: parked for the next app to wake, or
        // stopped without waiting.
        if let Some(stopping) = stopping {
            self.spares.give_back(stopping);
        }
        true
    }

    /// Whether the lane's threads run now.
    pub fn is_running(&self) -> bool {
        self.runtime.lock().is_some()
    }
}

impl LaneHandle {
    /// Spawns guest work on the lane; it runs on even if the handle is dropped.
    pub fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let owner = self.owner.clone();
        self.handle.spawn(async move {
            // A worker of a runtime taken ready-built joins the lane as it wakes; this
            // covers one that was still starting up when it was taken.
            owner.join_current_thread();
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
            let alive = first.runtime.lock().as_ref().map(LaneRuntime::tasks_alive);
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

    #[tokio::test]
    async fn an_apps_guests_run_on_two_threads_at_once() {
        let governor = CpuGovernor::start(Default::default()).expect("governor");
        let lane = Lane::new(
            AppName::from_str("two").expect("valid name"),
            LogStream::new(),
            &governor,
            Arc::new(LaneSpares::new(LaneOptions {
                threads: 2,
                ..LaneOptions::default()
            })),
        );
        let handle = lane.handle().expect("lane starts");
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
