//! A dyno's ephemeral disk quota: a conservative count of what its guests may have added
//! to its directory, checked before every write, and the directory's real usage, measured
//! again before a write is refused (so deleting files frees space, as on a real disk).

use parking_lot::Mutex;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The allocation unit the accounting assumes: a write is charged for every block it
/// touches, so small writes at scattered offsets cannot allocate more than they are
/// charged for. 4 KiB is the block size of ext4, XFS and tmpfs pages.
pub const BLOCK_BYTES: u64 = 4096;

/// What one directory entry (a file, directory or link, empty or not) costs, besides its
/// data: its inode and its name in the parent. Charging it keeps a guest from exhausting
/// the host's inodes with millions of empty files.
pub const ENTRY_BYTES: u64 = 4096;

/// A full rescan is allowed at most once per this many times its own last duration, so
/// a guest writing at the edge of its quota keeps at most a tenth of a core scanning.
const SCAN_SPACING: u32 = 10;

/// `ENOSPC` on Linux and the BSDs (checked by a test): what a full disk reports.
pub const ENOSPC: i32 = 28;

/// The error a guest gets from a write that does not fit: a full disk's.
pub fn disk_full() -> std::io::Error {
    std::io::Error::from_raw_os_error(ENOSPC)
}

/// The quota of one dyno's directory, shared by every instance of the dyno.
#[derive(Debug)]
pub struct DiskQuota {
    root: PathBuf,
    limit: u64,
    /// Bytes the directory may hold now: the last scan plus everything charged since.
    /// Never below the real usage (every growth is charged before it happens).
    used: AtomicU64,
    /// Every byte ever charged, so a scan can add what was charged while it ran.
    charged: AtomicU64,
    /// The tree changed (grew or shrank) since the last scan, so a scan may find room.
    changed: AtomicBool,
    /// One scan at a time; when the last one ended and how long it took.
    scans: tokio::sync::Mutex<Option<(Instant, Duration)>>,
    /// The last scan's result, for tests and the log.
    scanned: Mutex<Option<u64>>,
}

impl DiskQuota {
    /// A quota of `limit` bytes over `root`, an empty directory.
    pub fn new(root: &Path, limit: u64) -> Arc<DiskQuota> {
        Arc::new(DiskQuota {
            root: root.to_path_buf(),
            limit,
            used: AtomicU64::new(0),
            charged: AtomicU64::new(0),
            changed: AtomicBool::new(false),
            scans: tokio::sync::Mutex::new(None),
            scanned: Mutex::new(None),
        })
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes left under the quota by the conservative count.
    pub fn remaining(&self) -> u64 {
        self.limit.saturating_sub(self.used.load(Ordering::Acquire))
    }

    /// Whether a scan might find more room than the count says.
    pub fn changed(&self) -> bool {
        self.changed.load(Ordering::Acquire)
    }

    /// The tree may have shrunk (a file removed or truncated): the next refusal rescans.
    pub fn note_change(&self) {
        self.changed.store(true, Ordering::Release);
    }

    /// Counts `bytes` of growth if they fit under the quota by the count; no scan.
    pub fn try_charge(&self, bytes: u64) -> bool {
        let fits = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|total| *total <= self.limit)
            })
            .is_ok();
        if fits {
            self.charged.fetch_add(bytes, Ordering::AcqRel);
            self.note_change();
        }
        fits
    }

    /// Counts `bytes` of growth, measuring the directory again first when the count says
    /// they do not fit but the tree changed since the last measure.
    pub async fn reserve(&self, bytes: u64) -> Result<(), DiskFull> {
        if self.try_charge(bytes) {
            return Ok(());
        }
        self.rescan().await;
        if self.try_charge(bytes) {
            Ok(())
        } else {
            Err(DiskFull)
        }
    }

    /// Measures the directory again if the tree changed since the last measure (and the
    /// last scan was long enough ago), so the count drops to the real usage.
    pub async fn rescan(&self) {
        if !self.changed() {
            return;
        }
        let mut last = self.scans.lock().await;
        // Another caller may have scanned while this one waited for the lock.
        if !self.changed() {
            return;
        }
        if let Some((ended, took)) = *last {
            let next = ended + took * SCAN_SPACING;
            tokio::time::sleep_until(next.into()).await;
        }
        let started = Instant::now();
        let charged_before = self.charged.load(Ordering::Acquire);
        self.changed.store(false, Ordering::Release);
        let root = self.root.clone();
        let measured = tokio::task::spawn_blocking(move || usage(&root)).await;
        let took = started.elapsed();
        *last = Some((Instant::now(), took));
        let real = match measured {
            Ok(Ok(real)) => real,
            Ok(Err(e)) => {
                tracing::warn!(root = %self.root.display(), "could not measure a dyno's disk: {e}");
                return;
            }
            Err(e) => {
                tracing::warn!(root = %self.root.display(), "disk scan panicked: {e}");
                return;
            }
        };
        *self.scanned.lock() = Some(real);
        // Writes charged during the scan may or may not be in `real`: count them again.
        let during = self
            .charged
            .load(Ordering::Acquire)
            .saturating_sub(charged_before);
        self.used
            .store(real.saturating_add(during), Ordering::Release);
        tracing::debug!(root = %self.root.display(), real, during, ?took, "rescanned a dyno's disk");
    }

    /// What the last scan measured, if one ran.
    pub fn last_scan(&self) -> Option<u64> {
        *self.scanned.lock()
    }
}

/// A write did not fit in the dyno's disk quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the dyno's ephemeral disk is full")]
pub struct DiskFull;

/// Bytes a write of `len` bytes at `offset` may allocate: every block it touches.
pub fn block_span(offset: u64, len: u64) -> u64 {
    if len == 0 {
        return 0;
    }
    let first = offset / BLOCK_BYTES;
    let last = offset.saturating_add(len - 1) / BLOCK_BYTES;
    (last - first + 1).saturating_mul(BLOCK_BYTES)
}

/// Bytes a write of `len` bytes at an unknown offset (an append) may allocate.
pub fn block_bound(len: u64) -> u64 {
    if len == 0 {
        return 0;
    }
    (len.div_ceil(BLOCK_BYTES) + 1).saturating_mul(BLOCK_BYTES)
}

/// What the tree under `root` takes on disk by the quota's measure: for every entry
/// below it, [`ENTRY_BYTES`] plus the blocks it has allocated. Symbolic links are not
/// followed; entries that vanish during the walk are skipped.
pub fn usage(root: &Path) -> std::io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut total: u64 = 0;
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && dir != root => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let meta = match std::fs::symlink_metadata(entry.path()) {
                Ok(meta) => meta,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            total = total
                .saturating_add(ENTRY_BYTES)
                .saturating_add(meta.blocks().saturating_mul(512));
            if meta.is_dir() {
                pending.push(entry.path());
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enospc_is_a_full_disk_here() {
        assert_eq!(disk_full().kind(), std::io::ErrorKind::StorageFull);
    }

    #[test]
    fn writes_are_charged_for_every_block_they_touch() {
        assert_eq!(block_span(0, 0), 0);
        assert_eq!(block_span(0, 1), 4096);
        assert_eq!(block_span(0, 4096), 4096);
        assert_eq!(block_span(4095, 2), 8192);
        assert_eq!(block_span(1 << 40, 1), 4096);
        assert_eq!(block_span(u64::MAX - 1, 10), 4096);
        assert_eq!(block_bound(1), 8192);
        assert_eq!(block_bound(4096), 8192);
        assert_eq!(block_bound(4097), 12288);
    }

    #[test]
    fn usage_counts_entries_and_allocated_blocks_not_holes() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(usage(dir.path()).unwrap(), 0);
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::fs::write(dir.path().join("d/f"), vec![7u8; 100_000]).unwrap();
        let sparse = std::fs::File::create(dir.path().join("sparse")).unwrap();
        sparse.set_len(1 << 30).unwrap();
        let used = usage(dir.path()).unwrap();
        // Three entries, 100 KB of data, the directory's own block(s); the 1 GiB hole
        // allocates nothing.
        assert!(used >= 3 * ENTRY_BYTES + 100_000, "{used}");
        assert!(used < 3 * ENTRY_BYTES + 100_000 + (64 << 10), "{used}");
    }

    #[tokio::test]
    async fn a_full_quota_refuses_until_files_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let quota = DiskQuota::new(dir.path(), 64 << 10);
        assert!(quota.try_charge(60 << 10));
        assert!(!quota.try_charge(8 << 10));
        // The count is conservative: nothing was written, so a scan finds room again.
        quota.reserve(8 << 10).await.unwrap();
        assert_eq!(quota.last_scan(), Some(0));
        // Really fill it.
        std::fs::write(dir.path().join("big"), vec![1u8; 56 << 10]).unwrap();
        while quota.try_charge(4096) {}
        assert_eq!(quota.reserve(8 << 10).await, Err(DiskFull));
        assert!(quota.last_scan().unwrap() >= 56 << 10);
        // Refused without a new scan while nothing changed.
        assert_eq!(quota.reserve(8 << 10).await, Err(DiskFull));
        std::fs::remove_file(dir.path().join("big")).unwrap();
        quota.note_change();
        quota.reserve(8 << 10).await.unwrap();
    }
}
