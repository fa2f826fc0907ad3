//! A dyno's ephemeral filesystem: an empty private directory with a disk quota, removed
//! when the dyno is gone. It is made when a guest of the dyno first asks for its
//! preopens (`guest/preopens.rs`), so a host restoring or waking many apps that never
//! open a file creates no directory for them.

use crate::guest::disk::DiskQuota;
use crate::guest::preopens::LazyRoot;
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// An empty directory owned by one dyno. It is removed when dropped, which happens once
/// the dyno is stopped and its last in-flight request has finished.
#[derive(Debug)]
pub struct EphemeralDir {
    path: PathBuf,
    /// Whether the directory has been made. A lock, not a flag: instances of one dyno on
    /// two lane threads may ask at once, and the second must not clear what the first
    /// just made.
    made: parking_lot::Mutex<bool>,
    /// What the dyno's instances may write into it (`limits.disk_mb`).
    quota: Arc<DiskQuota>,
}

static NEXT: AtomicU64 = AtomicU64::new(1);

impl EphemeralDir {
    /// `base/app/dyno-N` with a quota of `limit` bytes, made by the first [`LazyRoot::made`].
    pub fn planned(base: &Path, app: &str, dyno: &str, limit: u64) -> EphemeralDir {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = base.join(app).join(format!("{dyno}-{n}"));
        let quota = DiskQuota::new(&path, limit);
        EphemeralDir {
            path,
            made: parking_lot::Mutex::new(false),
            quota,
        }
    }
}

impl LazyRoot for EphemeralDir {
    /// The directory, fresh and empty the first time it is asked for.
    fn made(&self) -> anyhow::Result<&Path> {
        let mut made = self.made.lock();
        if !*made {
            // Never expected (a run's directory starts empty, and N is unique in it), but
            // what another dyno left is not handed to this one.
            if self.path.exists() {
                std::fs::remove_dir_all(&self.path)?;
            }
            std::fs::create_dir_all(&self.path).with_context(|| {
                format!("creating the dyno's filesystem at {}", self.path.display())
            })?;
            *made = true;
        }
        Ok(&self.path)
    }

    fn quota(&self) -> &Arc<DiskQuota> {
        &self.quota
    }
}

impl Drop for EphemeralDir {
    fn drop(&mut self) {
        if !*self.made.get_mut() {
            // Never asked for: nothing to remove.
            return;
        }
        if let Err(e) = std::fs::remove_dir_all(&self.path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.path.display(), "could not remove dyno filesystem: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::EphemeralDir;
    use crate::guest::preopens::LazyRoot;

    #[test]
    fn made_empty_when_asked_for_and_removed_on_drop() {
        let base = tempfile::tempdir().unwrap();
        let dir = EphemeralDir::planned(base.path(), "app", "web.1", 1 << 20);
        assert_eq!(dir.quota().limit(), 1 << 20);
        assert_eq!(
            std::fs::read_dir(base.path()).unwrap().count(),
            0,
            "nothing is made before a guest asks"
        );
        let path = dir.made().unwrap().to_path_buf();
        assert_eq!(std::fs::read_dir(&path).unwrap().count(), 0);
        std::fs::write(path.join("f"), "x").unwrap();
        assert_eq!(dir.made().unwrap(), path, "made once, then the same");
        assert!(path.join("f").exists());
        drop(dir);
        assert!(!path.exists());
    }
}
