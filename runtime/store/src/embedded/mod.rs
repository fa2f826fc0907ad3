//! The embedded backend, the default: one host, no other service. Blobs are files under
//! `DATA/blobs`, the control plane is `DATA/state.db` and the add-on data `DATA/addons.db`
//! (both SQLite, WAL, `synchronous=FULL`). Two databases, so guest traffic at request rate
//! never queues behind (or holds up) deploys and scaling, which share `state.db`'s writer.

mod acme;
mod addons;
mod addons_db;
mod backup;
mod blobs;
mod control;
mod drains;
pub mod export;
mod group_commit;
mod kv;
mod migrate;
mod nodes;
mod people;
mod queue;

pub use acme::EmbeddedAcme;
pub use addons::EmbeddedAddons;
pub use addons_db::AddonDb;
pub use backup::{BackedUp, backup};
pub use blobs::BlobDir;
pub use control::{ControlDb, EmbeddedControl};
pub use nodes::{LocalNode, NoBus};
pub(crate) use people::random_token_id;

use crate::Store;
use crate::error::{AddonError, Result, StoreError};
use crate::model::{AppId, NodeInfo};
use std::path::Path;
use std::sync::Arc;
use wdeploy_core::AppName;

/// Opens (or creates) the embedded store in `data_dir`, for the host `me` (the only node). Releases left pending by a kill
/// are marked failed (they were never acknowledged) and half-written uploads removed.
/// Blocking: call before serving, or from a blocking thread.
pub fn open(data_dir: &Path, me: NodeInfo) -> Result<Store> {
    std::fs::create_dir_all(data_dir)?;
    // Config vars (database passwords, API keys) live here: the host's user only.
    set_mode(data_dir, 0o700)?;
    let lock = lock(data_dir)?;
    let control = ControlDb::open(&data_dir.join("state.db"))?;
    private_database(&data_dir.join("state.db"))?;
    let interrupted = control.fail_interrupted()?;
    if interrupted > 0 {
        tracing::warn!("{interrupted} release(s) interrupted by the last stop were marked failed");
    }
    let blobs = BlobDir::open(&data_dir.join("blobs"))?;
    // The apps that exist, so add-on data still keyed by name is re-keyed to their ids
    // (once) and each is registered in the add-ons database.
    let apps: Vec<(AppName, AppId)> = control
        .apps()?
        .into_iter()
        .map(|app| (app.name, app.id))
        .collect();
    let addons = open_addons(&data_dir.join("addons.db"), &apps)?;
    let control = EmbeddedControl(Arc::new(control));
    Ok(Store {
        acme: Arc::new(EmbeddedAcme::new(control.0.clone())),
        control: Arc::new(control.clone()),
        certs: Arc::new(control.clone()),
        people: Arc::new(control),
        blobs: Arc::new(blobs),
        addons,
        nodes: Arc::new(LocalNode::holding(me, lock)?),
        log_bus: Arc::new(NoBus),
    })
}

/// Locks `DATA/lock` for this process, so that no second host (nor an import reading
/// it) opens the same data directory while one runs: each would take the other's
/// releases for interrupted ones, and their writes would interleave. The kernel drops
/// the lock with the process, however it ends.
fn lock(data_dir: &Path) -> Result<std::fs::File> {
    let path = data_dir.join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Conflict(format!(
            "another wdeploy host uses the data directory {}: stop it first (one host per \
             data directory)",
            data_dir.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(e.into()),
    }
}

/// Opens an add-ons database for the apps `apps` (each registered; data an older
/// database keyed by their names is re-keyed to their ids). `wdeploy dev` opens its own,
/// kept between runs, for its one app.
pub fn open_addons(path: &Path, apps: &[(AppName, AppId)]) -> Result<Arc<dyn crate::AddonStore>> {
    let apps: Vec<(String, AppId)> = apps
        .iter()
        .map(|(name, id)| (name.to_string(), id.clone()))
        .collect();
    let db = AddonDb::open(path, &apps).map_err(|e| StoreError::Backend(e.to_string()))?;
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
    use crate::{AddonError, Tenant};
    use std::os::unix::fs::PermissionsExt;
    use wdeploy_core::AppName;

    fn me() -> crate::NodeInfo {
        crate::NodeInfo {
            name: "test".parse().unwrap(),
            advertise: String::new(),
            started_at: chrono::Utc::now(),
            version: String::new(),
            leaving: false,
        }
    }

    fn tenant(app: &crate::App) -> Tenant {
        Tenant {
            app: app.id.clone(),
            quota_bytes: 1 << 20,
        }
    }

    #[tokio::test]
    async fn a_data_dir_made_before_app_ids_is_migrated_once() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path();
        rusqlite::Connection::open(data.join("state.db"))
            .unwrap()
            .execute_batch(
                "CREATE TABLE apps (name TEXT PRIMARY KEY, created_at TEXT NOT NULL);
                 INSERT INTO apps VALUES ('hello', '2026-01-01T00:00:00Z');",
            )
            .unwrap();
        rusqlite::Connection::open(data.join("addons.db"))
            .unwrap()
            .execute_batch(
                "CREATE TABLE kv (app TEXT NOT NULL, bucket TEXT NOT NULL, key TEXT NOT NULL,
                    value BLOB NOT NULL, PRIMARY KEY (app, bucket, key)) WITHOUT ROWID;
                 CREATE TABLE jobs (id INTEGER PRIMARY KEY AUTOINCREMENT, app TEXT NOT NULL,
                    queue TEXT NOT NULL, payload BLOB NOT NULL,
                    attempts INTEGER NOT NULL DEFAULT 0, visible_at INTEGER NOT NULL,
                    enqueued_at INTEGER NOT NULL, done_at INTEGER);
                 INSERT INTO kv VALUES ('hello', 'default', 'hits', X'3132');
                 INSERT INTO kv VALUES ('destroyed', 'default', 'hits', X'39');",
            )
            .unwrap();
        let hello: AppName = "hello".parse().unwrap();
        let store = super::open(data, me()).unwrap();
        let app = store.control.app(&hello).await.unwrap();
        let kv = store.addons.get(&tenant(&app), "default", "hits").await;
        assert_eq!(kv.unwrap().as_deref(), Some(&b"12"[..]));
        assert!(store.addons.usage(&app.id).await.unwrap() > 0);
        drop(store);
        let store = super::open(data, me()).unwrap();
        assert_eq!(store.control.app(&hello).await.unwrap().id, app.id);
        let app = tenant(&app);
        let n = store.addons.increment(&app, "default", "hits", 1);
        assert_eq!(n.await.unwrap(), 13);
    }

    #[tokio::test]
    async fn a_dyno_of_a_destroyed_app_cannot_reach_a_new_app_of_its_name() {
        let tmp = tempfile::tempdir().unwrap();
        let store = super::open(tmp.path(), me()).unwrap();
        let name: AppName = "xapp".parse().unwrap();
        // As the host creates and destroys an app.
        let old = store.control.create_app(&name).await.unwrap();
        store.addons.create_app(&old.id).await.unwrap();
        let bound = tenant(&old);
        store
            .addons
            .set(&bound, "default", "secret", b"old".to_vec())
            .await
            .unwrap();
        store.addons.delete_app(&old.id).await.unwrap();
        store.control.delete_app(&name).await.unwrap();
        let new = store.control.create_app(&name).await.unwrap();
        store.addons.create_app(&new.id).await.unwrap();
        assert_ne!(new.id, old.id);

        let fresh = tenant(&new);
        assert_eq!(
            store.addons.get(&fresh, "default", "secret").await.unwrap(),
            None
        );
        // The old binding writes nowhere: not into the new app, not back into its own.
        let write = store.addons.set(&bound, "default", "secret", b"x".to_vec());
        assert!(matches!(write.await, Err(AddonError::AppGone)));
        let job = store.addons.enqueue(&bound, "jobs", b"x".to_vec());
        assert!(matches!(job.await, Err(AddonError::AppGone)));
        assert_eq!(
            store.addons.get(&fresh, "default", "secret").await.unwrap(),
            None
        );
        assert!(
            store
                .addons
                .take(&fresh, "jobs", std::time::Duration::from_secs(30))
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(store.addons.usage(&new.id).await.unwrap(), 0);
    }

    #[test]
    fn one_store_at_a_time_opens_a_data_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let first = super::open(tmp.path(), me()).unwrap();
        let second = super::open(tmp.path(), me()).map(|_| ()).unwrap_err();
        assert!(
            second
                .to_string()
                .contains("another wdeploy host uses the data directory"),
            "{second}"
        );
        drop(first);
        super::open(tmp.path(), me()).unwrap();
    }

    fn mode(path: &std::path::Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn the_data_dir_and_databases_are_private_to_the_host_user() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let _store = super::open(&data, me()).unwrap();
        assert_eq!(mode(&data), 0o700);
        for file in ["state.db", "state.db-wal", "addons.db", "addons.db-wal"] {
            assert_eq!(mode(&data.join(file)), 0o600, "{file}");
        }
    }
}
