//! CPU fairness between apps: a busy app slows itself, not its neighbours.
//!
//! Every app's guests run on threads of their own (its [lane](super::lane)), so the
//! kernel shares the CPU between apps as it does between threads. That alone is fair in
//! the long run but not for latency: a quiet app's request that wakes its lane while
//! busy lanes hold every core waits for the scheduler's next tick (about 5 ms at p99 on a
//! 2-core host), ten times its idle latency. So the governor watches how much CPU each
//! lane wants (the time its threads ran or waited to run, every 100 ms), and a lane that
//! wanted most of a core for half a second is confined to the *batch* cores: all but a
//! reserved quarter of the host's cores (at least one). The reserved cores stay free
//! for the router, the API and every app that is not busy, so a quiet app's request
//! finds a core waiting instead of a busy guest to preempt. Busy apps share the batch
//! cores fairly among themselves: they slow themselves, and each other, not their
//! neighbours. When an app calms down its lane may use every core again. The app learns
//! both in its own log. (Lowering a busy lane's priority instead, with `nice` 19 or even
//! `SCHED_IDLE`, was measured first: the kernel still let the running guest finish its
//! slice, and the quiet app's p99 went from 0.6 ms to about 4 ms. Moving threads between
//! cores also needs no privilege, in either direction.) A host with one core has no
//! batch cores and only shares by threads.

use crate::logs::LogStream;
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;
use wdeploy_core::AppName;

/// How often lanes' CPU time is read.
const PERIOD: Duration = Duration::from_millis(100);
/// A lane is demoted once it used [`Thresholds::busy`] of one core over this many periods.
const BUSY_WINDOW: usize = 5;
/// A demoted lane is restored once it used less than [`Thresholds::calm`] over this many.
const CALM_WINDOW: usize = 20;
/// The process name of the governor's lines in an app's log.
const LOG_NAME: &str = "scheduler";

/// When a lane counts as busy, and as calm again, in cores wanted (1.0: runnable all the
/// time on one thread).
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    pub busy: f64,
    pub calm: f64,
}

impl Default for Thresholds {
    /// Most of a core for half a second is busy (a request-serving app rarely holds a core
    /// that long); a quarter of a core over two seconds is calm.
    fn default() -> Self {
        Thresholds {
            busy: 0.6,
            calm: 0.25,
        }
    }
}

/// Watches every lane's CPU use; one per engine, on a thread of its own.
pub struct CpuGovernor {
    thresholds: Thresholds,
    placement: Arc<Placement>,
    /// The lanes with threads (or still confined): an idle app's lane, which has none,
    /// costs the governor nothing, so a host may hold many.
    lanes: Arc<Mutex<Vec<Weak<LaneCpu>>>>,
    stop: AtomicBool,
}

/// One lane's threads and what the governor knows of them.
pub struct LaneCpu {
    app: AppName,
    logs: Arc<LogStream>,
    placement: Arc<Placement>,
    state: Mutex<LaneState>,
    /// Whether one of its threads woke (or started) since the governor last looked: a
    /// lane that did neither and used nothing in the last period used nothing since, and
    /// its threads are not read. Most lanes of a burst of wake-ups sit so between their
    /// requests, and reading each thread's clock ten times a second cost the governor
    /// about 5 µs per lane (8 ms a look with 1,500 lanes awake).
    woken: AtomicBool,
    /// Itself, to put in the governor's list when its first thread starts.
    me: Weak<LaneCpu>,
    watched: Weak<Mutex<Vec<Weak<LaneCpu>>>>,
}

/// The cores a lane's threads may run on: every core the host may use, or the batch
/// cores while it is busy.
struct Placement {
    everywhere: libc::cpu_set_t,
    /// `None` on a host with a single core.
    batch: Option<libc::cpu_set_t>,
}

impl Placement {
    /// From the cores this process may run on (its affinity, which a container or
    /// `taskset` may have narrowed): the first quarter of them (at least one) reserved.
    fn of_this_process() -> Placement {
        // SAFETY: cpu_set_t is plain data; zeroed is the empty set.
        let mut everywhere: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: a valid set to write, of the size passed.
        let ok = unsafe {
            libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut everywhere)
        } == 0;
        let cores: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
            // SAFETY: the index is below CPU_SETSIZE.
            .filter(|&cpu| ok && unsafe { libc::CPU_ISSET(cpu, &everywhere) })
            .collect();
        let batch = (cores.len() >= 2).then(|| {
            let reserved = (cores.len() / 4).max(1);
            // SAFETY: as above.
            let mut batch: libc::cpu_set_t = unsafe { std::mem::zeroed() };
            for &cpu in &cores[reserved..] {
                // SAFETY: the index is below CPU_SETSIZE.
                unsafe { libc::CPU_SET(cpu, &mut batch) };
            }
            batch
        });
        Placement { everywhere, batch }
    }

    /// Places one thread; false when refused (the thread is gone).
    fn place(&self, tid: libc::pid_t, busy: bool) -> bool {
        let set = match (&self.batch, busy) {
            (Some(batch), true) => batch,
            _ => &self.everywhere,
        };
        // SAFETY: a valid set of the size passed; on Linux a thread id names one thread,
        // and a stale id is an error return.
        unsafe { libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), set) == 0 }
    }
}

#[derive(Default)]
struct LaneState {
    /// Each live thread, and its demand (see [`ThreadDemand`]) when last read.
    threads: HashMap<libc::pid_t, (ThreadDemand, u64)>,
    /// Nanoseconds the lane's threads wanted the CPU in each recent period, newest last.
    recent: VecDeque<u64>,
    demoted: bool,
    /// Whether the lane is in the governor's list.
    listed: bool,
}

impl CpuGovernor {
    /// Starts the governor's thread; it ends when the governor is dropped.
    pub fn start(thresholds: Thresholds) -> std::io::Result<Arc<CpuGovernor>> {
        let governor = Arc::new(CpuGovernor {
            thresholds,
            placement: Arc::new(Placement::of_this_process()),
            lanes: Arc::new(Mutex::new(Vec::new())),
            stop: AtomicBool::new(false),
        });
        let watched = Arc::downgrade(&governor);
        std::thread::Builder::new()
            .name("wdeploy-cpu".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(PERIOD);
                    let Some(governor) = watched.upgrade() else {
                        return;
                    };
                    if governor.stop.load(Ordering::Relaxed) {
                        return;
                    }
                    governor.tick();
                }
            })?;
        Ok(governor)
    }

    /// A new lane to watch; its threads register themselves as they start.
    pub fn watch(&self, app: AppName, logs: Arc<LogStream>) -> Arc<LaneCpu> {
        Arc::new_cyclic(|me| LaneCpu {
            app,
            logs,
            placement: self.placement.clone(),
            state: Mutex::new(LaneState::default()),
            woken: AtomicBool::new(false),
            me: me.clone(),
            watched: Arc::downgrade(&self.lanes),
        })
    }

    /// The apps whose lanes have threads now (and a few whose threads just stopped):
    /// every app running guest code is among them, so a look for awake dynos need not
    /// visit the many idle apps of a host.
    pub fn apps_with_threads(&self) -> Vec<AppName> {
        self.lanes
            .lock()
            .iter()
            .filter_map(Weak::upgrade)
            .map(|lane| lane.app.clone())
            .collect()
    }

    fn tick(&self) {
        let lanes: Vec<Arc<LaneCpu>> = {
            let mut lanes = self.lanes.lock();
            // A lane whose threads all stopped (its app went idle) leaves the list once it
            // is not confined; its next thread puts it back.
            lanes.retain(|lane| {
                let Some(lane) = lane.upgrade() else {
                    return false;
                };
                let mut state = lane.state.lock();
                state.listed = !state.threads.is_empty() || state.demoted;
                state.listed
            });
            lanes.iter().filter_map(Weak::upgrade).collect()
        };
        for lane in lanes {
            lane.tick(self.thresholds);
        }
    }
}

impl Drop for CpuGovernor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl LaneCpu {
    /// Called on each new thread of the lane: it is watched, and starts on the lane's
    /// current cores.
    pub fn register_current_thread(&self) {
        let tid = current_tid();
        let mut demand = ThreadDemand::open(tid);
        let now = demand.read().unwrap_or(0);
        let mut state = self.state.lock();
        self.woken.store(true, Ordering::Relaxed);
        state.threads.insert(tid, (demand, now));
        // Always placed: a thread of a runtime another app used last may have been
        // confined with that app.
        self.placement.place(tid, state.demoted);
        let unlisted = !std::mem::replace(&mut state.listed, true);
        drop(state);
        if unlisted && let Some(lanes) = self.watched.upgrade() {
            lanes.lock().push(self.me.clone());
        }
    }

    /// Called as a lane thread stops, or moves to another app's lane.
    pub fn unregister_current_thread(&self) {
        self.state.lock().threads.remove(&current_tid());
    }

    /// The lane's threads no longer count for it: its runtime was parked for another app
    /// (each thread registers again with the app it serves next).
    pub fn forget_threads(&self) {
        self.state.lock().threads.clear();
    }

    /// The threads counted for the lane now.
    #[cfg(test)]
    pub fn thread_ids(&self) -> Vec<libc::pid_t> {
        self.state.lock().threads.keys().copied().collect()
    }

    /// The app whose lane this is.
    pub fn app(&self) -> &AppName {
        &self.app
    }

    /// Whether the lane is confined to the batch cores now.
    pub fn is_demoted(&self) -> bool {
        self.state.lock().demoted
    }

    /// Called as one of the lane's threads wakes up (tokio's unpark hook).
    pub fn note_woken(&self) {
        if !self.woken.load(Ordering::Relaxed) {
            self.woken.store(true, Ordering::Relaxed);
        }
    }

    fn tick(&self, thresholds: Thresholds) {
        let mut state = self.state.lock();
        let mut used = 0;
        let woken = self.woken.swap(false, Ordering::Relaxed);
        let idle = state.recent.back().is_some_and(|&last| last == 0);
        if woken || !idle {
            state
                .threads
                .retain(|_, (demand, last)| match demand.read() {
                    Some(now) => {
                        used += now.saturating_sub(*last);
                        *last = now;
                        true
                    }
                    // The thread ended without unregistering (it cannot, but be safe).
                    None => false,
                });
        }
        state.recent.push_back(used);
        while state.recent.len() > CALM_WINDOW {
            state.recent.pop_front();
        }
        let busy = share(&state.recent, BUSY_WINDOW);
        let calm = share(&state.recent, CALM_WINDOW);
        if !state.demoted && busy >= thresholds.busy && state.recent.len() >= BUSY_WINDOW {
            state.demoted = true;
            for &tid in state.threads.keys() {
                self.placement.place(tid, true);
            }
            tracing::info!(app = %self.app, cores = busy, "busy app confined to the batch cores");
            self.logs.platform(
                LOG_NAME,
                format!(
                    "Warning: the app's dynos kept {busy:.2} CPU cores busy over the last {:.1}s; \
                     they run on the batch cores until it calms down, so other apps keep their share",
                    (BUSY_WINDOW as u32 * PERIOD).as_secs_f64()
                ),
            );
        } else if state.demoted && calm < thresholds.calm && state.recent.len() >= CALM_WINDOW {
            state.demoted = false;
            for &tid in state.threads.keys() {
                self.placement.place(tid, false);
            }
            tracing::info!(app = %self.app, "calm app may use every core again");
            self.logs.platform(
                LOG_NAME,
                format!(
                    "The app's dynos kept {calm:.2} CPU cores busy over the last {:.0}s; they may use every core again",
                    (CALM_WINDOW as u32 * PERIOD).as_secs_f64()
                ),
            );
        }
    }
}

/// The CPU cores (in units of one core) used over the newest `n` periods.
fn share(recent: &VecDeque<u64>, n: usize) -> f64 {
    let n = n.min(recent.len());
    if n == 0 {
        return 0.0;
    }
    let used: u64 = recent.iter().rev().take(n).sum();
    used as f64 / (n as u32 * PERIOD).as_nanos() as f64
}

/// The calling thread's id, as the kernel names it.
pub(crate) fn current_tid() -> libc::pid_t {
    // SAFETY: gettid has no arguments and cannot fail.
    unsafe { libc::gettid() }
}

/// How long one thread has wanted the CPU so far, in nanoseconds: the time it ran plus
/// the time it waited to run, from its `schedstat` in `/proc`. On a loaded host a
/// busy-looping guest may run only a fifth of the time, but it is runnable all of the
/// time, and that is what makes it busy. Where the kernel keeps no schedstat, the time it
/// ran (its per-thread CPU clock) stands in.
///
/// The file stays open and is read again from its start each period: with a thousand
/// lanes awake (a burst of requests to idle apps), opening ten thousand `/proc` paths a
/// second (a path walk and permission checks each) was most of the governor's time.
/// And the file is read only when the thread has run since the last read (its CPU
/// clock, one cheap system call, moved): the lanes a burst woke sit parked between
/// their few requests, and a wait not seen now is seen at the thread's next run, as the
/// figures are running totals.
struct ThreadDemand {
    tid: libc::pid_t,
    schedstat: Option<std::fs::File>,
    /// The CPU time and the demand at the last read of the file.
    last: Option<(u64, u64)>,
}

impl ThreadDemand {
    fn open(tid: libc::pid_t) -> ThreadDemand {
        ThreadDemand {
            tid,
            schedstat: std::fs::File::open(format!("/proc/self/task/{tid}/schedstat")).ok(),
            last: None,
        }
    }

    /// The demand now; `None` once the thread is gone.
    fn read(&mut self) -> Option<u64> {
        use std::os::unix::fs::FileExt;
        let ran = thread_cpu_ns(self.tid)?;
        let Some(file) = &self.schedstat else {
            return Some(ran);
        };
        if let Some((ran_then, demand)) = self.last
            && ran_then == ran
        {
            return Some(demand);
        }
        let mut buf = [0u8; 128];
        let demand = match file.read_at(&mut buf, 0) {
            Ok(0) => return None,
            Ok(n) => {
                let text = std::str::from_utf8(&buf[..n]).unwrap_or("");
                let mut fields = text.split_ascii_whitespace().map(str::parse::<u64>);
                match (fields.next(), fields.next()) {
                    (Some(Ok(ran)), Some(Ok(waited))) => ran.saturating_add(waited),
                    _ => ran,
                }
            }
            // What reading the file of a thread that ended gives.
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return None,
            Err(_) => ran,
        };
        // Never less than what it ran: the file lags the clock by the current slice.
        let demand = demand.max(ran);
        self.last = Some((ran, demand));
        Some(demand)
    }
}

/// A thread's CPU time so far, from the kernel's per-thread clock, which Linux names by
/// thread id (`MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED)`, as glibc's
/// `pthread_getcpuclockid` builds it). `None` once the thread is gone.
fn thread_cpu_ns(tid: libc::pid_t) -> Option<u64> {
    let clock = ((!tid) << 3) | 6;
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec to write; an unknown clock id is an error return.
    if unsafe { libc::clock_gettime(clock, &mut now) } != 0 {
        return None;
    }
    Some(now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The calling thread's CPU time, as the C library gives it.
    fn own_cpu_ns() -> u64 {
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: a valid timespec to write.
        assert_eq!(
            unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) },
            0
        );
        now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
    }

    #[test]
    fn a_threads_demand_is_at_least_its_cpu_time() {
        let tid = current_tid();
        let ran = thread_cpu_ns(tid).expect("own clock");
        let mut demand = ThreadDemand::open(tid);
        assert!(demand.schedstat.is_some());
        let wanted = demand.read().expect("own schedstat");
        // schedstat is updated at scheduling events, so allow it to lag a little.
        assert!(wanted + 50_000_000 >= ran, "{wanted} < {ran}");
        assert!(demand.read().expect("read again") >= wanted);
        assert_eq!(ThreadDemand::open(-5).read(), None);
        // A thread that ended reads as gone through the file kept open.
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || sender.send(ThreadDemand::open(current_tid())))
            .join()
            .expect("thread")
            .expect("sent");
        let mut ended = receiver.recv().expect("its demand");
        assert!(ended.schedstat.is_some());
        assert_eq!(ended.read(), None);
    }

    #[test]
    fn a_threads_clock_by_id_is_its_cpu_time() {
        let tid = current_tid();
        let spin = std::time::Instant::now();
        let start = own_cpu_ns();
        let mut n = 0u64;
        // Bounded by wall time: a loaded machine gives the thread less than a core.
        while own_cpu_ns() - start < 20_000_000 && spin.elapsed() < Duration::from_secs(10) {
            n = std::hint::black_box(n.wrapping_add(1));
        }
        let before = own_cpu_ns();
        let by_id = thread_cpu_ns(tid).expect("own clock");
        let after = own_cpu_ns();
        assert!(
            (before..=after).contains(&by_id),
            "{before} <= {by_id} <= {after}"
        );
        assert_eq!(thread_cpu_ns(-5), None);
    }

    #[test]
    fn shares_are_in_cores() {
        let period = PERIOD.as_nanos() as u64;
        let recent: VecDeque<u64> = [0, period, period, period / 2].into_iter().collect();
        assert!((share(&recent, 2) - 0.75).abs() < 1e-9);
        assert!((share(&recent, 10) - 0.625).abs() < 1e-9);
        assert_eq!(share(&VecDeque::new(), 5), 0.0);
    }

    #[test]
    fn a_busy_lane_is_confined_and_told_so() {
        // Any spinning counts as busy here: the machine running the test may be loaded.
        let governor = CpuGovernor::start(Thresholds {
            busy: 0.02,
            calm: 0.01,
        })
        .expect("governor");
        let logs = LogStream::new();
        let lane = governor.watch("spinning".parse().expect("name"), logs.clone());
        let spinner = {
            let lane = lane.clone();
            std::thread::spawn(move || {
                lane.register_current_thread();
                let spin = std::time::Instant::now();
                let mut n = 0u64;
                // Bounded: a loaded machine may give the thread less than a core.
                while spin.elapsed() < Duration::from_secs(10) && !lane.is_demoted() {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
                let demoted = lane.is_demoted();
                lane.unregister_current_thread();
                demoted
            })
        };
        assert!(
            spinner.join().expect("spinner"),
            "a spinning lane was not demoted"
        );
        let (history, _) = logs.replay_and_subscribe(10);
        assert!(
            history
                .iter()
                .any(|l| l.text.contains("run on the batch cores")),
            "{history:?}"
        );
    }
}
