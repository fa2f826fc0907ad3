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
use wdeploy_core::SlugManifest;

/// What a backup holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackedUp {
    pub apps: usize,
    pub blobs: usize,
    pub blob_bytes: u64,
}

/// Backs up the embedded store in `data_dir` into `dest` (absent or empty).
pub fn backup(data_dir: &Path, dest: &Path) -> Result<BackedUp> {
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
            // or the check below says so.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e.into()),
        };
        blob_bytes += target.put(&digest, file, u64::MAX)?;
        blobs += 1;
    }
    let apps = check(dest)?;
    Ok(BackedUp {
        apps,
        blobs,
        blob_bytes,
    })
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
/// at a host's start) and checks that it holds what its releases reference; the number
/// of apps.
fn check(dest: &Path) -> Result<usize> {
    let me = NodeInfo {
        name: "backup".parse().map_err(StoreError::Invalid)?,
        advertise: String::new(),
        started_at: chrono::Utc::now(),
        version: String::new(),
    };
    let store = super::open(dest, me)?;
    let control = super::ControlDb::open(&dest.join("state.db"))?;
    let blobs = BlobDir::reading(&dest.join("blobs"));
    let mut missing = Vec::new();
    for slug in control.release_slugs()? {
        if !blobs.has(&slug) {
            missing.push(slug.to_string());
            continue;
        }
        let manifest: SlugManifest = serde_json::from_slice(&std::fs::read(blobs.path(&slug))?)
            .map_err(|e| StoreError::Invalid(format!("slug manifest {slug} is unreadable: {e}")))?;
        missing.extend(
            (manifest.components.values())
                .filter(|file| !blobs.has(&file.digest))
                .map(|file| file.digest.to_string()),
        );
    }
    drop(store);
    if !missing.is_empty() {
        return Err(StoreError::Invalid(format!(
            "the backup lacks {} blob(s) its releases reference ({}): removed while it was \
             copied? Back up again, into a new directory",
            missing.len(),
            missing.join(", ")
        )));
    }
    Ok(control.apps()?.len())
}
