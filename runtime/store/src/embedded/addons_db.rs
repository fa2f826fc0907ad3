//! The embedded add-ons database: every app's key-value buckets and job queues, in one SQLite file
//! (WAL, `synchronous=FULL`) beside the state database.
//!
//! A separate file from `state.db` because add-on traffic comes from guests, at request
//! rate: its writes must not queue behind (or hold up) deploys and scaling, which share
//! `state.db`'s single writer. Every row carries its app's id (never its name: a later app
//! may take the name) and every query filters on it; callers pass the app they serve,
//! guests never name one. `usage` registers the apps that exist, with the bytes their data
//! counts against their quota, changed in the same transaction as every write.
//!
//! Version 1 databases keyed rows by app name; [`AddonDb::open`] re-keys them to the
//! apps' ids once, in one transaction, and drops the rows of apps that no longer exist.
//!
//! Writes are queued to one connection owned by a writer thread (SQLite has one writer
//! anyway), which commits concurrent writes together (`group_commit.rs`): write methods
//! are async and return once their write is durable. Reads go through a small pool of
//! connections that WAL lets run beside the writer, never waiting for it; they are
//! blocking calls (see `addons.rs` for which run where).

use super::group_commit::GroupWriter;
use crate::error::AddonError;
use crate::model::AppId;
use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Idle read connections kept open.
const IDLE_READERS: usize = 8;

pub(crate) type Result<T, E = AddonError> = std::result::Result<T, E>;

/// The add-ons' database of one host (or of one `wdeploy dev` app).
pub struct AddonDb {
    path: PathBuf,
    writer: GroupWriter,
    readers: Mutex<Vec<Connection>>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS kv (
    app TEXT NOT NULL,
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (app, bucket, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    app TEXT NOT NULL,
    queue TEXT NOT NULL,
    payload BLOB NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    -- Unix ms from which the job may be taken: its enqueue time, then its lease's end.
    visible_at INTEGER NOT NULL,
    enqueued_at INTEGER NOT NULL,
    -- Unix ms of the ack; NULL while the job is pending.
    done_at INTEGER
);
CREATE INDEX IF NOT EXISTS jobs_pending ON jobs (app, queue, id) WHERE done_at IS NULL;
CREATE INDEX IF NOT EXISTS jobs_done ON jobs (app, done_at) WHERE done_at IS NOT NULL;
-- The apps whose writes are accepted, and the bytes their data counts (stored_bytes).
CREATE TABLE IF NOT EXISTS usage (
    app TEXT PRIMARY KEY,
    bytes INTEGER NOT NULL
) WITHOUT ROWID;
";

/// `PRAGMA user_version` of a database keyed by app id (0 or 1: keyed by app name).
const KEYED_BY_ID: i64 = 2;

/// What a row counts in SQL, as [`crate::addons::stored_bytes`] counts it in Rust
/// (`length` of TEXT counts characters, so names are cast to bytes).
const KV_ROW_BYTES: &str =
    "(64 + length(CAST(bucket AS BLOB)) + length(CAST(key AS BLOB)) + length(value))";
pub(crate) const JOB_ROW_BYTES: &str = "(64 + length(CAST(queue AS BLOB)) + length(payload))";

impl AddonDb {
    /// Opens (or creates) the database at `path` for the apps `apps` (name, id): each is
    /// registered, and a database still keyed by app name has those names re-keyed to the
    /// ids (rows of names not in `apps` belong to destroyed apps and are dropped).
    pub fn open(path: &Path, apps: &[(String, AppId)]) -> Result<AddonDb> {
        let mut writer = connect(path)?;
        let existed = writer
            .query_row(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'kv'",
                [],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        let version: i64 = writer.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let tx = writer.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(SCHEMA)?;
        if existed && version < KEYED_BY_ID {
            rekey_by_id(&tx, apps)?;
        }
        tx.pragma_update(None, "user_version", KEYED_BY_ID)?;
        for (_, id) in apps {
            tx.execute(
                "INSERT OR IGNORE INTO usage (app, bytes) VALUES (?1, 0)",
                [id.as_str()],
            )?;
        }
        tx.commit()?;
        Ok(AddonDb {
            path: path.to_path_buf(),
            writer: GroupWriter::start(writer)
                .map_err(|e| AddonError::Backend(format!("starting the add-on writer: {e}")))?,
            readers: Mutex::new(Vec::new()),
        })
    }

    /// Runs `f` in a write transaction and returns once that is committed (durable):
    /// concurrent writes share a transaction and its fsync ([`GroupWriter`]), each in a
    /// savepoint of its own, so a write that fails fails alone.
    pub(crate) async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.writer.write(f).await
    }

    /// Runs `f` on a read connection from the pool (opening one if all are busy).
    pub(crate) fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let idle = self.readers.lock().pop();
        let conn = match idle {
            Some(conn) => conn,
            None => connect(&self.path)?,
        };
        let out = f(&conn);
        let mut readers = self.readers.lock();
        if readers.len() < IDLE_READERS {
            readers.push(conn);
        }
        out
    }

    /// Registers an app: its writes are accepted from now on.
    pub async fn create_app(&self, app: &str) -> Result<()> {
        let app = app.to_string();
        self.write(move |tx| {
            tx.execute(
                "INSERT OR IGNORE INTO usage (app, bytes) VALUES (?1, 0)",
                [&app],
            )?;
            Ok(())
        })
        .await
    }

    /// Removes every key and job of `app` and its registration (when the app is
    /// destroyed: instances still bound to it can no longer write).
    pub async fn delete_app(&self, app: &str) -> Result<()> {
        let app = app.to_string();
        self.write(move |tx| {
            tx.execute("DELETE FROM kv WHERE app = ?1", [&app])?;
            tx.execute("DELETE FROM jobs WHERE app = ?1", [&app])?;
            tx.execute("DELETE FROM usage WHERE app = ?1", [&app])?;
            Ok(())
        })
        .await
    }

    /// Bytes the app's data counts against its quota (0 for an unknown app).
    pub fn usage(&self, app: &str) -> Result<u64> {
        self.read(|conn| {
            let bytes: Option<i64> = conn
                .query_row("SELECT bytes FROM usage WHERE app = ?1", [app], |r| {
                    r.get(0)
                })
                .optional()?;
            Ok(bytes.unwrap_or(0).max(0) as u64)
        })
    }
}

/// Counts `delta` more bytes (`delta > 0`) against the app's quota, in the transaction of
/// the write that stores them: refused over the quota, or when the app is not registered
/// (destroyed while a dyno of it still ran).
pub(crate) fn charge(tx: &Connection, app: &str, quota: u64, delta: i64) -> Result<()> {
    let used: i64 = tx
        .prepare_cached("SELECT bytes FROM usage WHERE app = ?1")?
        .query_row([app], |r| r.get(0))
        .optional()?
        .ok_or(AddonError::AppGone)?;
    if delta > 0 && used.saturating_add(delta) as u64 > quota {
        return Err(AddonError::OverQuota {
            used: used.max(0) as u64,
            quota,
            needed: delta as u64,
        });
    }
    if delta != 0 {
        tx.prepare_cached("UPDATE usage SET bytes = MAX(bytes + ?2, 0) WHERE app = ?1")?
            .execute(params![app, delta])?;
    }
    Ok(())
}

/// Stops counting `bytes` (deleted rows) against the app's quota.
pub(crate) fn refund(tx: &Connection, app: &str, bytes: u64) -> Result<()> {
    if bytes > 0 {
        tx.execute(
            "UPDATE usage SET bytes = MAX(bytes - ?2, 0) WHERE app = ?1",
            params![app, bytes as i64],
        )?;
    }
    Ok(())
}

/// The one-time migration of a database keyed by app name: rows of the apps in `apps`
/// take their ids, rows of any other name (apps destroyed since) are dropped, and every
/// app's usage is counted. Runs inside the caller's transaction: all or nothing.
fn rekey_by_id(tx: &rusqlite::Transaction<'_>, apps: &[(String, AppId)]) -> Result<()> {
    tx.execute_batch(
        "CREATE TEMP TABLE rekey (name TEXT PRIMARY KEY, id TEXT NOT NULL) WITHOUT ROWID",
    )?;
    for (name, id) in apps {
        tx.execute(
            "INSERT OR REPLACE INTO temp.rekey (name, id) VALUES (?1, ?2)",
            params![name, id.as_str()],
        )?;
    }
    let dropped = tx.execute(
        "DELETE FROM kv WHERE app NOT IN (SELECT name FROM temp.rekey)",
        [],
    )? + tx.execute(
        "DELETE FROM jobs WHERE app NOT IN (SELECT name FROM temp.rekey)",
        [],
    )?;
    tx.execute(
        "UPDATE kv SET app = (SELECT id FROM temp.rekey WHERE name = kv.app)",
        [],
    )?;
    tx.execute(
        "UPDATE jobs SET app = (SELECT id FROM temp.rekey WHERE name = jobs.app)",
        [],
    )?;
    tx.execute_batch(&format!(
        "INSERT OR REPLACE INTO usage (app, bytes)
         SELECT app, SUM(bytes) FROM (
            SELECT app, {KV_ROW_BYTES} AS bytes FROM kv
            UNION ALL SELECT app, {JOB_ROW_BYTES} AS bytes FROM jobs)
         GROUP BY app;
         DROP TABLE temp.rekey;"
    ))?;
    tracing::info!(
        "add-on data re-keyed from app names to app ids ({} apps; {dropped} rows of destroyed apps dropped)",
        apps.len()
    );
    Ok(())
}

fn connect(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // Every acknowledged write (a counter increment, an enqueued job) survives kill -9.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.busy_timeout(Duration::from_secs(10))?;
    Ok(conn)
}

/// Now, in Unix milliseconds: leases are wall-clock times, so they outlive a host restart.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A fresh add-ons database in a temporary directory, for the store's unit tests.
#[cfg(test)]
pub(crate) async fn open_temp() -> (tempfile::TempDir, AddonDb) {
    let dir = tempfile::tempdir().expect("temp dir");
    let addons = AddonDb::open(&dir.path().join("addons.db"), &[]).expect("open addons.db");
    // The unit tests' apps, by id: `a` and `b`.
    addons.create_app("a").await.expect("register a");
    addons.create_app("b").await.expect("register b");
    (dir, addons)
}

/// A quota the unit tests of other limits never reach.
#[cfg(test)]
pub(crate) const NO_QUOTA: u64 = 1 << 40;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addons::stored_bytes;

    /// The add-ons schema before app ids (version 0): rows keyed by app name.
    const NAME_KEYED_SCHEMA: &str = "
        CREATE TABLE kv (app TEXT NOT NULL, bucket TEXT NOT NULL, key TEXT NOT NULL,
            value BLOB NOT NULL, PRIMARY KEY (app, bucket, key)) WITHOUT ROWID;
        CREATE TABLE jobs (id INTEGER PRIMARY KEY AUTOINCREMENT, app TEXT NOT NULL,
            queue TEXT NOT NULL, payload BLOB NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
            visible_at INTEGER NOT NULL, enqueued_at INTEGER NOT NULL, done_at INTEGER);
        INSERT INTO kv VALUES ('hello', 'default', 'greeting', X'6869');
        INSERT INTO kv VALUES ('hello', 'default', 'hits', X'3432');
        INSERT INTO kv VALUES ('gone', 'default', 'secret', X'7373');
        INSERT INTO jobs (app, queue, payload, visible_at, enqueued_at)
            VALUES ('hello', 'jobs', X'7061796c6f6164', 0, 0);
        INSERT INTO jobs (app, queue, payload, visible_at, enqueued_at)
            VALUES ('gone', 'jobs', X'6f6c64', 0, 0);
    ";

    #[tokio::test]
    async fn a_database_keyed_by_names_is_rekeyed_to_ids_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("addons.db");
        Connection::open(&path)
            .unwrap()
            .execute_batch(NAME_KEYED_SCHEMA)
            .unwrap();
        let hello = AppId::random();
        let apps = [("hello".to_string(), hello.clone())];
        let db = AddonDb::open(&path, &apps).unwrap();

        let id = hello.as_str();
        assert_eq!(
            db.get(id, "default", "greeting").unwrap().as_deref(),
            Some(&b"hi"[..])
        );
        assert_eq!(db.get("hello", "default", "greeting").unwrap(), None);
        let job = db
            .take(id, "jobs", std::time::Duration::from_secs(30))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(job.payload, b"payload");
        // The app destroyed before the upgrade: its rows are gone, under any key.
        assert_eq!(db.get("gone", "default", "secret").unwrap(), None);
        assert!(db.queue_stats("gone").unwrap().is_empty());
        // Usage counted as writes count it.
        let expected = stored_bytes("default", "greeting", 2)
            + stored_bytes("default", "hits", 2)
            + stored_bytes("jobs", "", 7);
        assert_eq!(db.usage(id).unwrap(), expected);
        // Counters and writes carry on under the id.
        assert_eq!(
            db.increment(id, u64::MAX, "default", "hits", 1)
                .await
                .unwrap(),
            43
        );
        drop(db);

        // Once: reopening (even with another app list) changes nothing.
        let db = AddonDb::open(&path, &[]).unwrap();
        assert_eq!(
            db.get(id, "default", "hits").unwrap().as_deref(),
            Some(&b"43"[..])
        );
        assert_eq!(db.usage(id).unwrap(), expected);
    }

    #[tokio::test]
    async fn writes_of_an_app_not_registered_or_destroyed_are_refused() {
        let (_dir, db) = open_temp().await;
        assert!(matches!(
            db.set("never-created", NO_QUOTA, "default", "k", b"v".to_vec())
                .await,
            Err(AddonError::AppGone)
        ));
        db.set("a", NO_QUOTA, "default", "k", b"v".to_vec())
            .await
            .unwrap();
        db.enqueue("a", NO_QUOTA, "jobs", b"j".to_vec())
            .await
            .unwrap();
        db.delete_app("a").await.unwrap();
        // A dyno still bound to the destroyed app cannot write anything back.
        assert!(matches!(
            db.set("a", NO_QUOTA, "default", "k", b"v".to_vec()).await,
            Err(AddonError::AppGone)
        ));
        assert!(matches!(
            db.enqueue("a", NO_QUOTA, "jobs", b"j".to_vec()).await,
            Err(AddonError::AppGone)
        ));
        assert!(matches!(
            db.increment("a", NO_QUOTA, "default", "n", 1).await,
            Err(AddonError::AppGone)
        ));
        assert_eq!(db.get("a", "default", "k").unwrap(), None);
        assert_eq!(db.usage("a").unwrap(), 0);
        // Its neighbour is untouched.
        db.set("b", NO_QUOTA, "default", "k", b"v".to_vec())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn the_quota_counts_every_write_and_refuses_what_would_pass_it() {
        let (_dir, db) = open_temp().await;
        let entry = stored_bytes("default", "k0", 100);
        let quota = entry * 3;
        for n in 0..3 {
            db.set("a", quota, "default", &format!("k{n}"), vec![0; 100])
                .await
                .unwrap();
        }
        assert_eq!(db.usage("a").unwrap(), quota);
        let err = db
            .set("a", quota, "default", "k3", vec![0; 100])
            .await
            .unwrap_err();
        assert!(
            matches!(err, AddonError::OverQuota { used, quota: q, .. } if used == quota && q == quota),
            "{err}"
        );
        assert!(err.to_string().contains("limits.addons_mb"), "{err}");
        assert!(matches!(
            db.enqueue("a", quota, "jobs", b"x".to_vec()).await,
            Err(AddonError::OverQuota { .. })
        ));
        assert!(matches!(
            db.set_many("a", quota, "default", vec![("k9".into(), vec![1])])
                .await,
            Err(AddonError::OverQuota { .. })
        ));
        // Overwriting with a value no bigger fits; a bigger one does not.
        db.set("a", quota, "default", "k0", vec![1; 50])
            .await
            .unwrap();
        assert!(
            db.set("a", quota, "default", "k1", vec![1; 200])
                .await
                .is_err()
        );
        assert_eq!(db.usage("a").unwrap(), quota - 50);
        // Deleting gives room back.
        db.delete("a", "default", "k2").await.unwrap();
        db.delete_many("a", "default", vec!["k1".into(), "nope".into()])
            .await
            .unwrap();
        assert_eq!(db.usage("a").unwrap(), stored_bytes("default", "k0", 50));
        db.enqueue("a", quota, "jobs", vec![0; 100]).await.unwrap();
        // A neighbour's quota is its own.
        db.set("b", quota, "default", "k0", vec![0; 100])
            .await
            .unwrap();
        assert_eq!(db.usage("b").unwrap(), entry);
    }
}
