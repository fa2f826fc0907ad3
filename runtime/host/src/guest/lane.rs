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
//! Guests still yield to their lane on every epoch tick, so one app's dynos share its
//! lane among themselves.

use crate::guest::cpu::{CpuGovernor, LaneCpu};
use crate::logs::LogStream;
use anyhow::Context;
use parking_lot::Mutex;
use std::future::Future;
use std::sync::Arc;
use tokio::runtime::{Handle, Runtime};
use tokio::task::{AbortHandle, JoinHandle};
use wdeploy_core::AppName;

/// How lanes are made; the same for every app of a host.
#[derive(Debug, Clone, Copy)]
pub struct LaneOptions {
    /// Worker threads per app: how many cores one app's guests can use at once.
    pub threads: usize,
    /// Threads per app for blocking work done on the guests' behalf (files, add-ons).
    pub max_blocking_threads: usize,
}

impl Default for LaneOptions {
    fn default() -> Self {
        LaneOptions {
            threads: 1,
            max_blocking_threads: 16,
        }
    }
}

/// One app's lane; its threads start when the app first runs guest code, and stop when
/// the lane is dropped (with the app), dropping every task still on it, or when the app
/// has gone idle ([`Lane::stop_if`]); the next guest work starts them again.
pub struct Lane {
    app: AppName,
    options: LaneOptions,
    /// The lane's threads as the CPU governor sees them.
    cpu: Arc<LaneCpu>,
    /// Under a lock, so stopping an idle lane and a request asking for it are ordered.
    runtime: Mutex<Option<Runtime>>,
}

/// Where guest work of one app is spawned; cheap to clone, usable from any runtime.
#[derive(Clone, Debug)]
pub struct LaneHandle {
    handle: Handle,
}

/// The lane's runtime stopped (its app is gone) before the task could finish.
#[derive(Debug, thiserror::Error)]
#[error("the app's lane has stopped")]
pub struct LaneStopped;

impl Lane {
    /// A lane for `app`, watched by `governor`, which writes to `logs` when it confines
    /// the lane to the batch cores or frees it.
    pub fn new(
        app: AppName,
        logs: Arc<LogStream>,
        governor: &CpuGovernor,
        options: LaneOptions,
    ) -> Lane {
        Lane {
            cpu: governor.watch(app.clone(), logs),
            app,
            options,
            runtime: Mutex::new(None),
        }
    }

    /// The lane's handle, starting its threads if they are not running.
    pub fn handle(&self) -> anyhow::Result<LaneHandle> {
        let mut runtime = self.runtime.lock();
        let runtime = match &mut *runtime {
            Some(running) => running,
            none => none.insert(self.build()?),
        };
        Ok(LaneHandle {
            handle: runtime.handle().clone(),
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
        if let Some(runtime) = runtime.take() {
            runtime.shutdown_background();
        }
        true
    }

    /// Whether the lane's threads run now.
    pub fn is_running(&self) -> bool {
        self.runtime.lock().is_some()
    }

    fn build(&self) -> anyhow::Result<Runtime> {
        // Thread names are cut to 15 bytes by Linux; the app name is what top shows.
        let name = format!("app:{}", self.app);
        let (starting, stopping) = (self.cpu.clone(), self.cpu.clone());
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(self.options.threads.max(1))
            .max_blocking_threads(self.options.max_blocking_threads.max(1))
            .thread_name(name)
            .on_thread_start(move || starting.register_current_thread())
            .on_thread_stop(move || stopping.unregister_current_thread())
            .enable_all()
            .build()
            .with_context(|| format!("starting the guest threads of {}", self.app))
    }
}

impl Drop for Lane {
    fn drop(&mut self) {
        // Never blocks, so a lane may be dropped anywhere, even by a task on itself.
        if let Some(runtime) = self.runtime.get_mut().take() {
            runtime.shutdown_background();
        }
    }
}

impl LaneHandle {
    /// Spawns guest work on the lane; it runs on even if the handle is dropped.
    pub fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(future)
    }

    /// Runs `future` on the lane and waits for it. Dropping the returned future stops the
    /// work on the lane too, so a caller that gives up (a client gone, a timeout) does not
    /// leave guest code running.
    pub async fn run<F>(&self, future: F) -> Result<F::Output, LaneStopped>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let task = self.handle.spawn(future);
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
            LaneOptions::default(),
        )
    }

    #[tokio::test]
    async fn work_runs_on_the_apps_own_threads() {
        let lane = lane();
        let handle = lane.handle().expect("lane starts");
        let thread = handle
            .run(async { std::thread::current().name().map(str::to_owned) })
            .await
            .expect("lane runs");
        assert_eq!(thread.as_deref(), Some("app:lanes"));
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
