//! Giving freed memory back to the system once hostile connections are gone.
//!
//! Measured on the attack of issue 12 (2,000 connections each holding 60 KB of an
//! unfinished request head, debug build, idle host): bounding the read buffers
//! ([`super::MAX_HEADER_BYTES`]) bounds the peak (30 MB → 180 MB; 400 KB heads are
//! refused with a 431 and cost nothing), but glibc's malloc keeps what the connections
//! freed in its per-thread arenas, as free chunks scattered between live ones: the host
//! stayed at 59 MB after they closed. `malloc_trim(0)` returns every free page of every
//! arena (not only the top of the heap) with `madvise`, which brought the host back to
//! 31 MB within a second. It is cheap next to what it answers (a few milliseconds, on a blocking
//! thread) and runs only once many connections have closed, at most once per
//! [`SETTLE`]. A different allocator would change the whole process's behaviour
//! (wasmtime, SQLite) for this one pattern; trimming keeps glibc and targets it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Connections close in bursts; trimming waits for the burst to end.
const SETTLE: Duration = Duration::from_secs(1);

/// Schedules one trim after [`SETTLE`] unless one is pending (`pending` is the flag).
pub(super) fn trim_soon(pending: &Arc<AtomicBool>) {
    if pending.swap(true, Ordering::AcqRel) {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        pending.store(false, Ordering::Release);
        return;
    };
    let pending = pending.clone();
    runtime.spawn(async move {
        tokio::time::sleep(SETTLE).await;
        pending.store(false, Ordering::Release);
        let _ = tokio::task::spawn_blocking(release_freed_memory).await;
    });
}

/// Hands the allocator's free pages back to the system.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists; it takes the
    // arenas' locks like any malloc call.
    unsafe {
        libc::malloc_trim(0);
    }
}
