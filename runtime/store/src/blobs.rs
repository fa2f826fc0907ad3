//! Content-addressed blobs under `DATA/blobs/sha256/ab/cdef…`.
//!
//! Writes go to a temporary file in the same filesystem, are hashed while written,
//! fsynced and renamed into place (then the directory is fsynced), so a blob path either
//! does not exist or holds exactly the content its name promises at the time of the
//! write. Reads verify again: a blob corrupted on disk later is refused, never run.

use crate::error::{Result, StoreError};
use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

#[derive(Clone)]
pub struct BlobStore {
    root: PathBuf,
}

impl BlobStore {
    /// Opens the store; half-written uploads of a previous run are removed.
    pub fn open(root: &Path) -> Result<BlobStore> {
        fs::create_dir_all(root.join("sha256"))?;
        let tmp = root.join("tmp");
        if tmp.exists() {
            fs::remove_dir_all(&tmp)?;
        }
        fs::create_dir_all(&tmp)?;
        Ok(BlobStore {
            root: root.to_path_buf(),
        })
    }

    /// Where a blob lives; `None` for anything that is not a well-formed digest (so a
    /// digest can never name a path outside the store).
    pub fn path(&self, digest: &str) -> Option<PathBuf> {
        let hex = parse(digest)?;
        Some(self.root.join("sha256").join(&hex[..2]).join(&hex[2..]))
    }

    pub fn has(&self, digest: &str) -> bool {
        self.path(digest).is_some_and(|p| p.is_file())
    }

    /// Stores `content` under `digest`, refusing it if it does not hash to `digest` or is
    /// longer than `limit` bytes. Returns the size written.
    pub fn put(&self, digest: &str, mut content: impl Read, limit: u64) -> Result<u64> {
        let path = self
            .path(digest)
            .ok_or_else(|| StoreError::Invalid(format!("`{digest}` is not a sha256 digest")))?;
        let mut tmp = tempfile::NamedTempFile::new_in(self.root.join("tmp"))?;
        let mut hasher = Sha256::new();
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
        let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
        if actual != digest {
            return Err(StoreError::DigestMismatch {
                expected: digest.to_string(),
                actual,
            });
        }
        tmp.as_file().sync_all()?;
        let dir = path.parent().expect("blob paths have a parent");
        fs::create_dir_all(dir)?;
        tmp.persist(&path).map_err(|e| StoreError::Io(e.error))?;
        File::open(dir)?.sync_all()?;
        Ok(size)
    }

    /// Checks that the blob exists and still hashes to its digest; returns its path.
    pub fn verified_path(&self, digest: &str) -> Result<PathBuf> {
        let path = self
            .path(digest)
            .ok_or_else(|| StoreError::Invalid(format!("`{digest}` is not a sha256 digest")))?;
        let file = File::open(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => StoreError::NotFound(format!("blob {digest}")),
            _ => StoreError::Io(e),
        })?;
        let actual = hash_reader(file)?;
        if actual != digest {
            return Err(StoreError::Corrupt {
                digest: digest.to_string(),
                actual,
            });
        }
        Ok(path)
    }

    /// Reads a whole blob, verified.
    pub fn read(&self, digest: &str) -> Result<Vec<u8>> {
        let path = self.verified_path(digest)?;
        Ok(fs::read(path)?)
    }
}

fn hash_reader(mut r: impl Read) -> Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("sha256:{}", hex::encode(hasher.finalize())))
}

/// The hex part of a well-formed `sha256:` digest.
fn parse(digest: &str) -> Option<&str> {
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))).then_some(hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(bytes: &[u8]) -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
    }

    #[test]
    fn put_verifies_and_read_detects_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let d = digest(b"component");
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
            .put(&digest(b"0123456789"), &b"0123456789"[..], 5)
            .unwrap_err();
        assert!(matches!(big, StoreError::TooLarge { .. }));
        assert!(store.put("sha256:../../etc/passwd", &b""[..], 5).is_err());

        fs::write(store.path(&d).unwrap(), b"tampered").unwrap();
        let err = store.read(&d).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("corrupted"));
        // Nothing is left behind in tmp.
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }
}
