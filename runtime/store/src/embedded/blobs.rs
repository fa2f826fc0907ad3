//! Content-addressed blobs under `DATA/blobs/sha256/ab/cdef…`: the embedded backend of
//! [`BlobStore`].
//!
//! Writes go to a temporary file in the same filesystem, are hashed while written,
//! fsynced and renamed into place (then the directory is fsynced), so a blob path either
//! does not exist or holds exactly the content its name promises at the time of the
//! write. Reads verify again: a blob corrupted on disk later is refused, never run. A
//! blob verified once is not hashed again while its file is unchanged (same inode, size
//! and change time, which any write to it moves): a host restoring a hundred thousand
//! apps of one slug hashes its components once, not a hundred thousand times.

use crate::blobs::{BlobStore, ByteStream};
use crate::error::{Result, StoreError};
use async_trait::async_trait;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;
use wdeploy_core::Digest;
use wdeploy_core::digest::Hasher;

#[derive(Clone)]
pub struct BlobDir {
    root: PathBuf,
    /// Blobs found intact, with their file as it was then.
    verified: Arc<Mutex<HashMap<Digest, Stamp>>>,
}

/// What changes when a file is written to or replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    inode: u64,
    len: u64,
    changed_ns: i128,
}

impl Stamp {
    fn of(meta: &fs::Metadata) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        Stamp {
            inode: meta.ino(),
            len: meta.len(),
            changed_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
        }
    }
}

impl BlobDir {
    /// Opens the store; half-written uploads of a previous run are removed.
    pub fn open(root: &Path) -> Result<BlobDir> {
        fs::create_dir_all(root.join("sha256"))?;
        let tmp = root.join("tmp");
        if tmp.exists() {
            fs::remove_dir_all(&tmp)?;
        }
        fs::create_dir_all(&tmp)?;
        Ok(BlobDir {
            root: root.to_path_buf(),
            verified: Arc::default(),
        })
    }

    /// The blob directory of a store another process may have open, to read only: unlike
    /// [`BlobDir::open`], nothing in it is made or cleaned (its `tmp` holds the uploads
    /// under way).
    pub fn reading(root: &Path) -> BlobDir {
        BlobDir {
            root: root.to_path_buf(),
            verified: Arc::default(),
        }
    }

    /// Where a blob lives. A [`Digest`] is 64 hex digits, so it never names a path
    /// outside the store.
    pub fn path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.root.join("sha256").join(&hex[..2]).join(&hex[2..])
    }

    pub fn has(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    /// Every blob here, with its file's modification time (when it was written).
    pub fn stored(&self) -> Result<Vec<(Digest, SystemTime)>> {
        let mut all = Vec::new();
        for shard in fs::read_dir(self.root.join("sha256"))? {
            let shard = shard?;
            let prefix = shard.file_name().to_string_lossy().into_owned();
            if !shard.file_type()?.is_dir() {
                continue;
            }
            for file in fs::read_dir(shard.path())? {
                let file = file?;
                let name = format!("sha256:{prefix}{}", file.file_name().to_string_lossy());
                // Anything else in the tree is no blob of ours: left alone.
                let Ok(digest) = name.parse::<Digest>() else {
                    continue;
                };
                all.push((digest, file.metadata()?.modified()?));
            }
        }
        Ok(all)
    }

    /// Deletes a blob's file (already gone: fine) and forgets that it was verified.
    pub fn remove(&self, digest: &Digest) -> Result<()> {
        self.verified.lock().remove(digest);
        match fs::remove_file(self.path(digest)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Stores `content` under `digest`, refusing it if it does not hash to `digest` or is
    /// longer than `limit` bytes. Returns the size written.
    pub fn put(&self, digest: &Digest, mut content: impl Read, limit: u64) -> Result<u64> {
        let path = self.path(digest);
        let mut tmp = tempfile::NamedTempFile::new_in(self.root.join("tmp"))?;
        let mut hasher = Hasher::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut size = 0u64;
        loop {
            let n = content.read(&mut buf)?;
            if n == 0 {
                break;
            }
            size += n as u64;
            if size > limit {
                return Err(StoreError::TooLarge { limit });
            }
            hasher.update(&buf[..n]);
            tmp.write_all(&buf[..n])?;
        }
        let actual = hasher.finish();
        if actual != *digest {
            return Err(StoreError::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        tmp.as_file().sync_all()?;
        let dir = path
            .parent()
            .ok_or_else(|| StoreError::Backend("blob path has no parent".into()))?;
        fs::create_dir_all(dir)?;
        tmp.persist(&path).map_err(|e| StoreError::Io(e.error))?;
        File::open(dir)?.sync_all()?;
        Ok(size)
    }

    /// Checks that the blob exists and still hashes to its digest; returns its path.
    pub fn verified_path(&self, digest: &Digest) -> Result<PathBuf> {
        let path = self.path(digest);
        let file = File::open(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => StoreError::NotFound(format!("blob {digest}")),
            _ => StoreError::Io(e),
        })?;
        let stamp = Stamp::of(&file.metadata()?);
        if self.verified.lock().get(digest) == Some(&stamp) {
            return Ok(path);
        }
        let actual = Digest::of_reader(file)?;
        if actual != *digest {
            self.verified.lock().remove(digest);
            return Err(StoreError::Corrupt {
                digest: digest.clone(),
                actual,
            });
        }
        self.verified.lock().insert(digest.clone(), stamp);
        Ok(path)
    }

    /// Reads a whole blob, verified.
    pub fn read(&self, digest: &Digest) -> Result<Vec<u8>> {
        let path = self.verified_path(digest)?;
        Ok(fs::read(path)?)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        call: impl FnOnce(&BlobDir) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let dir = self.clone();
        super::off_async("blob store", move || call(&dir))
            .await
            .map_err(StoreError::Backend)?
    }
}

/// Every call hashes or touches disk, so each runs on a blocking thread.
#[async_trait]
impl BlobStore for BlobDir {
    async fn has(&self, digest: &Digest) -> Result<bool> {
        let digest = digest.clone();
        self.blocking(move |dir| Ok(dir.has(&digest))).await
    }

    async fn put(
        &self,
        digest: &Digest,
        content: ByteStream,
        limit: u64,
    ) -> Result<(u64, PathBuf)> {
        let digest = digest.clone();
        // The upload is pulled from the connection as the blocking thread writes it.
        let reader = tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(content));
        self.blocking(move |dir| {
            let size = dir.put(&digest, reader, limit)?;
            Ok((size, dir.path(&digest)))
        })
        .await
    }

    async fn local_path(&self, digest: &Digest) -> Result<PathBuf> {
        let digest = digest.clone();
        self.blocking(move |dir| dir.verified_path(&digest)).await
    }

    async fn read(&self, digest: &Digest) -> Result<Vec<u8>> {
        let digest = digest.clone();
        self.blocking(move |dir| dir.read(&digest)).await
    }

    async fn stored(&self) -> Result<Vec<(Digest, SystemTime)>> {
        self.blocking(|dir| dir.stored()).await
    }

    async fn remove(&self, digest: &Digest) -> Result<()> {
        let digest = digest.clone();
        self.blocking(move |dir| dir.remove(&digest)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_verifies_and_read_detects_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobDir::open(dir.path()).unwrap();
        let d = Digest::of_bytes(b"component");
        assert!(!store.has(&d));
        assert_eq!(store.put(&d, &b"component"[..], 100).unwrap(), 9);
        assert!(store.has(&d));
        assert_eq!(store.read(&d).unwrap(), b"component");

        let wrong = store.put(&d, &b"other"[..], 100).unwrap_err();
        assert!(
            matches!(wrong, StoreError::DigestMismatch { .. }),
            "{wrong}"
        );
        let big = store
            .put(&Digest::of_bytes(b"0123456789"), &b"0123456789"[..], 5)
            .unwrap_err();
        assert!(matches!(big, StoreError::TooLarge { .. }));

        // Damaged after a read verified it: the next read hashes it again.
        std::thread::sleep(std::time::Duration::from_millis(10));
        fs::write(store.path(&d), b"tamperex").unwrap();
        let err = store.read(&d).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("corrupted"));
        // Nothing is left behind in tmp.
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn blobs_are_listed_with_their_time_and_removed_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobDir::open(dir.path()).unwrap();
        let (a, b) = (Digest::of_bytes(b"a"), Digest::of_bytes(b"b"));
        let before = SystemTime::now() - std::time::Duration::from_secs(1);
        store.put(&a, &b"a"[..], 10).unwrap();
        store.put(&b, &b"b"[..], 10).unwrap();
        fs::write(dir.path().join("sha256").join("stray"), b"not a blob").unwrap();
        let mut listed = store.stored().unwrap();
        listed.sort();
        assert_eq!(listed.iter().map(|(d, _)| d.clone()).collect::<Vec<_>>(), {
            let mut both = vec![a.clone(), b.clone()];
            both.sort();
            both
        });
        assert!(listed.iter().all(|(_, at)| *at >= before));
        assert_eq!(store.read(&a).unwrap(), b"a");
        store.remove(&a).unwrap();
        store.remove(&a).unwrap();
        assert!(!store.has(&a) && store.has(&b));
        assert!(matches!(store.read(&a), Err(StoreError::NotFound(_))));
    }
}
