//! Lane runtimes kept ready: built ahead of need, and parked again when an app sleeps.
//!
//! Waking an idle app starts its lane (a tokio runtime with its worker thread, its epoll
//! and its timer), and putting it to sleep stopped that runtime. In a storm of a
//! thousand wake-ups a second both showed on the request path:
//! - built on the spot, a runtime was made on one of the router's two workers, under
//!   the lane's lock, while every other connection of that worker waited;
//! - the idle sweep that puts the storm's apps to sleep stopped a thousand runtimes in
//!   a few hundred milliseconds; their exiting threads (stacks unmapped, drivers
//!   closed) filled the run queues, and a waking app's new lane thread waited 2–25 ms
//!   for a core: the storm's slowest requests.
//!
//! So a host keeps runtimes owned by no app. A lane takes one when its app wakes; when
//! the app goes idle its lane gives the runtime back, parked, if nothing of the app is
//! left on it (no task, no blocking thread). Spares have one worker thread, the size of
//! the lane of an app with one dyno, which is every app that can sleep in such numbers;
//! a lane of more threads (an app scaled out) is built when taken and stopped when given
//! back. The host's `wdeploy-lanes` thread builds
//! one whenever fewer than [`READY`] wait, and stops the spares nobody took for
//! [`TRIM_AFTER`], a few at a time, so a host that once woke a thousand apps does not
//! keep a thousand threads, nor stop them all at once.
//!
//! A runtime's threads join its current app's lane as they run: a worker when it
//! wakes (tokio's unpark hook, and again as it polls a task spawned on the lane), a
//! blocking thread as it starts. Joining moves the thread from the app it last served,
//! registers it with the new app's [`LaneCpu`] (which also sets its cores), and renames it
//! `app:NAME`, the name `top` shows. A parked spare keeps the name of its last app.

use crate::guest::cpu::LaneCpu;
use crate::guest::lane::LaneOptions;
use anyhow::Context;
use parking_lot::{Condvar, Mutex};
use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::runtime::{Handle, Runtime};

/// How many runtimes the `wdeploy-lanes` thread keeps built. A storm of wake-ups takes
/// them faster than they are built only while it lasts.
const READY: usize = 4;

/// The most parked runtimes kept: each is a sleeping thread (a few tens of KiB). Past
/// this, a runtime given back is stopped.
const MAX_PARKED: usize = 1024;

/// How long a spare may wait untaken (beyond [`READY`]) before it is stopped.
const TRIM_AFTER: Duration = Duration::from_secs(30);

/// How many spares are stopped per look, every [`TRIM_EVERY`], so that stopping them
/// never takes the cores from requests.
const TRIM_AT_ONCE: usize = 4;
const TRIM_EVERY: Duration = Duration::from_millis(100);

/// What a runtime's first threads are named until an app takes it.
const SPARE_NAME: &str = "lane:spare";

/// Runtimes ready for lanes, and the thread that keeps them ready.
pub struct LaneSpares {
    shared: Arc<Shared>,
    /// Started with the first taking, so a host that runs no guest builds no spare.
    refill: OnceLock<()>,
}

struct Shared {
    options: LaneOptions,
    /// How many spares the thread keeps built: [`READY`], but none in some tests, so
    /// that the runtime given back is the only one to take.
    ready_count: usize,
    ready: Mutex<Spares>,
    /// Signalled when a runtime is taken, or when the spares are dropped.
    wanted: Condvar,
}

#[derive(Default)]
struct Spares {
    /// Newest last: taken from the end, stopped from the front once old.
    parked: Vec<Spare>,
    stop: bool,
}

struct Spare {
    runtime: Runtime,
    owner: Arc<LaneOwner>,
    since: Instant,
}

/// One app's runtime: its threads count for that app's lane. Dropping it stops it without
/// waiting, dropping every task still on it, so it may be dropped anywhere.
pub struct LaneRuntime {
    /// Shared with every [`LaneHandle`](super::lane::LaneHandle) given out: while one is
    /// held, work may still be spawned on the runtime.
    spawner: Arc<Spawner>,
    /// Always there until dropped or given back.
    runtime: Option<Runtime>,
}

/// Where work is spawned on one runtime, and whose threads run it.
#[derive(Debug)]
pub struct Spawner {
    pub handle: Handle,
    pub owner: Arc<LaneOwner>,
}

/// Whose a runtime is now; set when a lane takes it, cleared when it is given back.
#[derive(Default)]
pub struct LaneOwner {
    lane: Mutex<Option<(Arc<LaneCpu>, String)>>,
    /// Bumped at each change of owner: a thread that joined an older one joins again.
    generation: AtomicU64,
    /// The runtime's threads alive: workers and blocking threads.
    threads: AtomicUsize,
}

thread_local! {
    /// The owner generation this thread has joined (0: none yet).
    static JOINED: Cell<u64> = const { Cell::new(0) };
    /// The lane this thread counts for, to leave it when it joins another or stops.
    static COUNTED_IN: RefCell<Option<Arc<LaneCpu>>> = const { RefCell::new(None) };
}

impl LaneSpares {
    pub fn new(options: LaneOptions) -> LaneSpares {
        LaneSpares::keeping(options, READY)
    }

    /// Spares keeping `ready` runtimes built.
    fn keeping(options: LaneOptions, ready: usize) -> LaneSpares {
        LaneSpares {
            shared: Arc::new(Shared {
                ready_count: ready,
                options,
                ready: Mutex::new(Spares::default()),
                wanted: Condvar::new(),
            }),
            refill: OnceLock::new(),
        }
    }

    /// The most worker threads one app's lane may have (`wdeploy host --lane-threads`).
    pub fn max_threads(&self) -> usize {
        self.shared.options.threads.max(1)
    }

    /// A runtime of `threads` workers (at least one) for the lane of `cpu`'s app: for
    /// one, a parked one if there is one; else one built now. Its threads are named
    /// `app:NAME` (Linux keeps 15 bytes: the app's name is what `top` shows).
    pub fn take(&self, cpu: &Arc<LaneCpu>, threads: usize) -> anyhow::Result<LaneRuntime> {
        let parked = if threads <= 1 {
            self.take_parked()
        } else {
            None
        };
        let (runtime, owner) = match parked {
            Some(spare) => (spare.runtime, spare.owner),
            None => {
                let owner = Arc::new(LaneOwner::default());
                let runtime = self
                    .shared
                    .build(owner.clone(), threads)
                    .with_context(|| format!("starting the guest threads of {}", cpu.app()))?;
                (runtime, owner)
            }
        };
        // Set before anything is spawned on it: its threads join as they wake.
        owner.own(cpu.clone(), format!("app:{}", cpu.app()));
        Ok(LaneRuntime {
            spawner: Arc::new(Spawner {
                handle: runtime.handle().clone(),
                owner,
            }),
            runtime: Some(runtime),
        })
    }

    /// A parked one-thread runtime, if one waits; the refill thread builds another.
    fn take_parked(&self) -> Option<Spare> {
        self.refill.get_or_init(|| self.start_refill());
        let mut ready = self.shared.ready.lock();
        let taken = ready.parked.pop();
        if ready.parked.len() < self.shared.ready_count {
            self.shared.wanted.notify_one();
        }
        taken
    }

    /// Takes back the runtime of a lane that stopped, parked for another app, when
    /// nothing of its app is left on it; stops it otherwise.
    pub fn give_back(&self, mut lane: LaneRuntime) {
        let Some(runtime) = lane.runtime.take() else {
            return;
        };
        let owner = lane.spawner.owner.clone();
        let reusable = runtime.metrics().num_workers() == 1 && lane.is_empty(&runtime);
        if !reusable {
            runtime.shutdown_background();
            return;
        }
        owner.disown();
        let mut ready = self.shared.ready.lock();
        if ready.stop || ready.parked.len() >= MAX_PARKED {
            drop(ready);
            runtime.shutdown_background();
            return;
        }
        ready.parked.push(Spare {
            runtime,
            owner,
            since: Instant::now(),
        });
        if ready.parked.len() == self.shared.ready_count + 1 {
            // The first spare past those kept ready: the thread starts looking for old ones.
            self.shared.wanted.notify_one();
        }
    }

    fn start_refill(&self) {
        let shared = self.shared.clone();
        let started = std::thread::Builder::new()
            .name("wdeploy-lanes".into())
            .spawn(move || shared.keep_ready());
        if let Err(e) = started {
            // Lanes are then built when taken, as without spares.
            tracing::warn!("could not start the thread building spare lanes: {e}");
        }
    }
}

impl Drop for LaneSpares {
    fn drop(&mut self) {
        let mut ready = self.shared.ready.lock();
        ready.stop = true;
        for spare in ready.parked.drain(..) {
            spare.runtime.shutdown_background();
        }
        self.shared.wanted.notify_all();
    }
}

impl Shared {
    /// The `wdeploy-lanes` thread: builds a runtime whenever fewer than [`READY`] wait,
    /// and stops old spares a few at a time. With exactly the spares it keeps, it sleeps
    /// until a taking or a giving back changes that: an idle host never wakes it.
    fn keep_ready(&self) {
        let mut ready = self.ready.lock();
        loop {
            if ready.stop {
                return;
            }
            let extra = ready.parked.len().checked_sub(self.ready_count);
            match extra {
                Some(0) => {
                    self.wanted.wait(&mut ready);
                    continue;
                }
                Some(_) => {
                    if !self.wanted.wait_for(&mut ready, TRIM_EVERY).timed_out() {
                        continue;
                    }
                    // Counted again: lanes may have taken spares meanwhile.
                    let extra = ready.parked.len().saturating_sub(self.ready_count);
                    let stale = ready
                        .parked
                        .iter()
                        .take(extra.min(TRIM_AT_ONCE))
                        .take_while(|spare| spare.since.elapsed() >= TRIM_AFTER)
                        .count();
                    let old: Vec<Spare> = ready.parked.drain(..stale).collect();
                    drop(ready);
                    for spare in old {
                        spare.runtime.shutdown_background();
                    }
                    ready = self.ready.lock();
                    continue;
                }
                None => {}
            }
            drop(ready);
            let owner = Arc::new(LaneOwner::default());
            let built = self.build(owner.clone(), 1);
            ready = self.ready.lock();
            match built {
                Ok(runtime) if !ready.stop => ready.parked.push(Spare {
                    runtime,
                    owner,
                    since: Instant::now(),
                }),
                Ok(runtime) => runtime.shutdown_background(),
                Err(e) => {
                    tracing::warn!("could not build a spare lane: {e}");
                    // Lanes are built when taken until the next taking asks again.
                    self.wanted.wait(&mut ready);
                }
            }
        }
    }

    /// A runtime of `threads` workers whose threads join `owner`'s lane once it has one.
    fn build(&self, owner: Arc<LaneOwner>, threads: usize) -> std::io::Result<Runtime> {
        let (named, starting, waking, stopping) =
            (owner.clone(), owner.clone(), owner.clone(), owner);
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .max_blocking_threads(self.options.max_blocking_threads.max(1))
            .thread_name_fn(move || match &*named.lane.lock() {
                Some((_, name)) => name.clone(),
                None => SPARE_NAME.to_owned(),
            })
            .on_thread_start(move || {
                starting.threads.fetch_add(1, Ordering::SeqCst);
                starting.join_current_thread();
            })
            .on_thread_unpark(move || waking.join_current_thread())
            .on_thread_stop(move || {
                leave_current_lane();
                stopping.threads.fetch_sub(1, Ordering::SeqCst);
            })
            .enable_all()
            .build()
    }
}

impl std::fmt::Debug for LaneOwner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let lane = self.lane.lock();
        let name = lane.as_ref().map(|(_, name)| name.as_str());
        f.debug_struct("LaneOwner").field("name", &name).finish()
    }
}

impl LaneOwner {
    fn own(&self, cpu: Arc<LaneCpu>, name: String) {
        *self.lane.lock() = Some((cpu, name));
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Before the runtime is parked: its app no longer counts its threads.
    fn disown(&self) {
        if let Some((cpu, _)) = self.lane.lock().take() {
            cpu.forget_threads();
        }
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Makes the current thread (one of the runtime's) count for the app that owns the
    /// runtime now, if it does not already; cheap when it does.
    pub fn join_current_thread(&self) {
        let generation = self.generation.load(Ordering::SeqCst);
        if JOINED.get() == generation {
            COUNTED_IN.with_borrow(|counted| {
                if let Some(cpu) = counted {
                    cpu.note_woken();
                }
            });
            return;
        }
        let lane = self.lane.lock().clone();
        let Some((cpu, name)) = lane else {
            return;
        };
        leave_current_lane();
        JOINED.set(generation);
        rename_current_thread(&name);
        cpu.register_current_thread();
        COUNTED_IN.with_borrow_mut(|counted| *counted = Some(cpu));
    }
}

/// The current thread stops counting for the lane it joined last.
fn leave_current_lane() {
    if let Some(cpu) = COUNTED_IN.with_borrow_mut(Option::take) {
        cpu.unregister_current_thread();
    }
}

/// Sets the kernel's name of the current thread (what `top -H` and `/proc` show), cut
/// to the 15 bytes Linux keeps.
fn rename_current_thread(name: &str) {
    let mut bytes = [0u8; 16];
    for (slot, byte) in bytes
        .iter_mut()
        .zip(name.bytes().filter(|&b| b != 0).take(15))
    {
        *slot = byte;
    }
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes, which
    // `bytes` is (its last byte stays 0), and only for the calling thread.
    unsafe {
        libc::prctl(libc::PR_SET_NAME, bytes.as_ptr() as libc::c_ulong, 0, 0, 0);
    }
}

impl LaneRuntime {
    pub fn spawner(&self) -> &Arc<Spawner> {
        &self.spawner
    }

    /// Its worker threads.
    pub fn threads(&self) -> usize {
        self.spawner.handle.metrics().num_workers()
    }

    /// Whether nothing can run on it any more: no task, no blocking thread, and no
    /// [`LaneHandle`](super::lane::LaneHandle) out that could spawn one.
    pub fn is_unused(&self) -> bool {
        Arc::strong_count(&self.spawner) == 1
            && self.runtime.as_ref().is_some_and(|r| self.is_empty(r))
    }

    /// No task on `runtime`, and no thread but its workers (no blocking one).
    fn is_empty(&self, runtime: &Runtime) -> bool {
        runtime.metrics().num_alive_tasks() == 0
            && self.spawner.owner.threads.load(Ordering::SeqCst) == runtime.metrics().num_workers()
    }

    /// Tasks on the runtime not yet ended.
    #[cfg(test)]
    pub fn tasks_alive(&self) -> usize {
        self.spawner.handle.metrics().num_alive_tasks()
    }
}

impl Drop for LaneRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

#[cfg(test)]
impl LaneSpares {
    /// Spares that build none ahead: a lane gets the runtime given back last, or a new one.
    pub fn none_ahead(options: LaneOptions) -> LaneSpares {
        LaneSpares::keeping(options, 0)
    }
}
