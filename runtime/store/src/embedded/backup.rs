//! A backup of an embedded data directory taken while its host runs (`wdeploy backup`):
//! each database copied as one consistent snapshot (`VACUUM INTO`, a read transaction,
//! which under WAL never waits for the host's writer nor holds it up), then every blob,
//! verified as it is copied. The backup is then opened as a store and checked: every
//! slug its releases reference is in it, with every component the slug names. A host
//! started on it (`--data`) restores the host as it was at the snapshot, and
//! `wdeploy cluster:import --from` reads it as it would the host's own directory.

use super::BlobDir;
use crate::error::{Result, StoreError};
use crate::model::NodeInfo;
use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::time::Duration;

/// What a backup holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackedUp {
    pub apps: usize,
    pub blobs: usize,
    pub blob_bytes: u64,
}

/// Backs up the embedded store in `data_dir` into `dest` (absent or empty). The copying
/// runs on a blocking thread.
pub async fn backup(data_dir: &Path, dest: &Path) -> Result<BackedUp> {
    let (from, to) = (data_dir.to_path_buf(), dest.to_path_buf());
    let (blobs, blob_bytes) = tokio::task::spawn_blocking(move || copy(&from, &to))
        .await
        .map_err(|e| StoreError::Backend(format!("the backup task failed: {e}")))??;
    let apps = check(dest).await?;
    Ok(BackedUp {
        apps,
        blobs,
        blob_bytes,
    })
}

/// The databases' snapshots, then the blobs: how many, and their bytes.
fn copy(data_dir: &Path, dest: &Path) -> Result<(usize, u64)> {
    if !data_dir.join("state.db").is_file() {
        return Err(StoreError::Invalid(format!(
            "{}: not a host's data directory (no state.db in it)",
            data_dir.display()
        )));
    }
    std::fs::create_dir_all(dest)?;
    if std::fs::read_dir(dest)?.next().is_some() {
        return Err(StoreError::Conflict(format!(
            "{} is not empty: back up into a new directory",
            dest.display()
        )));
    }
    super::set_mode(dest, 0o700)?;
    // The control state first: a blob its releases reference was stored before them.
    for db in ["state.db", "addons.db"] {
        snapshot(&data_dir.join(db), &dest.join(db))?;
    }
    let source = BlobDir::reading(&data_dir.join("blobs"));
    let target = BlobDir::open(&dest.join("blobs"))?;
    let (mut blobs, mut blob_bytes) = (0, 0);
    for (digest, _) in source.stored()? {
        let file = match std::fs::File::open(source.path(&digest)) {
            Ok(file) => file,
            // Collected since it was listed: no release of the snapshot referenced it,
            // or the check says so.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e.into()),
        };
        blob_bytes += target.put(&digest, file, u64::MAX)?;
        blobs += 1;
    }
    Ok((blobs, blob_bytes))
}

/// `VACUUM INTO`: one read transaction's view of the database, written compact to `to`.
fn snapshot(from: &Path, to: &Path) -> Result<()> {
    if !from.is_file() {
        return Ok(());
    }
    let conn = Connection::open_with_flags(
        from,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(30))?;
    let target = to
        .to_str()
        .ok_or_else(|| StoreError::Invalid(format!("{}: not a UTF-8 path", to.display())))?;
    conn.execute("VACUUM INTO ?1", [target])?;
    super::private_database(to)?;
    Ok(())
}

/// Opens the backup as a host would (a release the snapshot caught pending is failed, as
/// at a host's start) and checks that it holds every blob its releases reference; the
/// number of apps.
async fn check(dest: &Path) -> Result<usize> {
    let me = NodeInfo {
        name: "backup".parse().map_err(StoreError::Invalid)?,
        advertise: String::new(),
        started_at: chrono::Utc::now(),
        version: String::new(),
        leaving: false,
    };
    let dir = dest.to_path_buf();
    let store = tokio::task::spawn_blocking(move || super::open(&dir, me))
        .await
        .map_err(|e| StoreError::Backend(format!("opening the backup failed: {e}")))??;
    let again = "back up again, into a new directory";
    let referenced = (store.referenced_blobs().await)
        .map_err(|e| StoreError::Invalid(format!("the backup is not whole ({e}): {again}")))?;
    let mut missing = Vec::new();
    for digest in referenced {
        if !store.blobs.has(&digest).await? {
            missing.push(digest.to_string());
        }
    }
    if !missing.is_empty() {
        return Err(StoreError::Invalid(format!(
            "the backup lacks {} blob(s) its releases reference ({}): removed while it was \
             copied? {again}",
            missing.len(),
            missing.join(", ")
        )));
    }
    Ok(store.control.apps().await?.len())
}
