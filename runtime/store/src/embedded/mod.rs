//! The embedded backend, the default: one host, no other service. Blobs are files under
//! `DATA/blobs`, the control plane is `DATA/state.db` and the add-on data `DATA/addons.db`
//! (both SQLite, WAL, `synchronous=FULL`). Two databases, so guest traffic at request rate
//! never queues behind (or holds up) deploys and scaling, which share `state.db`'s writer.

mod addons;
mod addons_db;
mod blobs;
mod control;
mod kv;
mod queue;

pub use addons::EmbeddedAddons;
pub use addons_db::AddonDb;
pub use blobs::BlobDir;
pub use control::{ControlDb, EmbeddedControl};

use crate::Store;
use crate::error::{AddonError, Result, StoreError};
use std::path::Path;
use std::sync::Arc;

/// Opens (or creates) the embedded store in `data_dir`. Releases left pending by a kill
/// are marked failed (they were never acknowledged) and half-written uploads removed.
/// Blocking: call before serving, or from a blocking thread.
pub fn open(data_dir: &Path) -> Result<Store> {
    std::fs::create_dir_all(data_dir)?;
    // Config vars (database passwords, API keys) live here: the host's user only.
    set_mode(data_dir, 0o700)?;
    let control = ControlDb::open(&data_dir.join("state.db"))?;
    private_database(&data_dir.join("state.db"))?;
    let interrupted = control.fail_interrupted()?;
    if interrupted > 0 {
        tracing::warn!("{interrupted} release(s) interrupted by the last stop were marked failed");
    }
    let blobs = BlobDir::open(&data_dir.join("blobs"))?;
    let addons = open_addons(&data_dir.join("addons.db"))?;
    Ok(Store {
        control: Arc::new(EmbeddedControl(Arc::new(control))),
        blobs: Arc::new(blobs),
        addons,
    })
}

/// Opens just an add-ons database (what `wdeploy dev` keeps between runs).
pub fn open_addons(path: &Path) -> Result<Arc<dyn crate::AddonStore>> {
    let db = AddonDb::open(path).map_err(|e| StoreError::Backend(e.to_string()))?;
    private_database(path)?;
    Ok(Arc::new(EmbeddedAddons(Arc::new(db))))
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// Makes a SQLite database and its WAL files readable by the host's user only (SQLite
/// gives WAL files created later the database file's mode).
fn private_database(db: &Path) -> std::io::Result<()> {
    for suffix in ["", "-wal", "-shm"] {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        match set_mode(Path::new(&name), 0o600) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            other => other?,
        }
    }
    Ok(())
}

/// Runs `call` on a blocking thread, so SQLite's and the disk's waits never hold one of
/// the async workers that also run guests and the router.
async fn off_async<T: Send + 'static>(
    what: &str,
    call: impl FnOnce() -> T + Send + 'static,
) -> std::result::Result<T, String> {
    tokio::task::spawn_blocking(call)
        .await
        .map_err(|e| format!("{what} task failed: {e}"))
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> StoreError {
        StoreError::Backend(format!("database: {e}"))
    }
}

impl From<rusqlite::Error> for AddonError {
    fn from(e: rusqlite::Error) -> AddonError {
        AddonError::Backend(format!("database: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &std::path::Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn the_data_dir_and_databases_are_private_to_the_host_user() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let _store = super::open(&data).unwrap();
        assert_eq!(mode(&data), 0o700);
        for file in ["state.db", "state.db-wal", "addons.db", "addons.db-wal"] {
            assert_eq!(mode(&data.join(file)), 0o600, "{file}");
        }
    }
}
