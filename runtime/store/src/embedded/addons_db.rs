//! The embedded add-ons database: every app's key-value buckets and job queues, in one SQLite file
//! (WAL, `synchronous=FULL`) beside the state database.
//!
//! A separate file from `state.db` because add-on traffic comes from guests, at request
//! rate: its writes must not queue behind (or hold up) deploys and scaling, which share
//! `state.db`'s single writer. Every row carries its app's name and every query filters on
//! it; callers pass the app they serve, guests never name one.
//!
//! Writes go through one connection behind a mutex (SQLite has one writer anyway; waiting
//! on an in-process lock is fairer and cheaper than SQLite's busy-retry loop), reads
//! through a small pool of connections that WAL lets run beside the writer. Every call
//! blocks on disk I/O: async callers run it on a blocking thread.

use crate::error::AddonError;
use parking_lot::Mutex;
use rusqlite::{Connection, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Idle read connections kept open.
const IDLE_READERS: usize = 8;

pub(crate) type Result<T, E = AddonError> = std::result::Result<T, E>;

/// The add-ons' database of one host (or of one `wdeploy dev` app).
pub struct AddonDb {
    path: PathBuf,
    writer: Mutex<Connection>,
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
";

impl AddonDb {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> Result<AddonDb> {
        let writer = connect(path)?;
        writer.execute_batch(SCHEMA)?;
        Ok(AddonDb {
            path: path.to_path_buf(),
            writer: Mutex::new(writer),
            readers: Mutex::new(Vec::new()),
        })
    }

    /// Runs `f` in an immediate write transaction and commits it.
    pub(crate) fn write<T>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T>,
    ) -> Result<T> {
        let mut conn = self.writer.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
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

    /// Removes every key and job of `app` (when the app is destroyed, so a new app of the
    /// same name starts empty).
    pub fn delete_app(&self, app: &str) -> Result<()> {
        self.write(|tx| {
            tx.execute("DELETE FROM kv WHERE app = ?1", [app])?;
            tx.execute("DELETE FROM jobs WHERE app = ?1", [app])?;
            Ok(())
        })
    }
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
pub(crate) fn open_temp() -> (tempfile::TempDir, AddonDb) {
    let dir = tempfile::tempdir().expect("temp dir");
    let addons = AddonDb::open(&dir.path().join("addons.db")).expect("open addons.db");
    (dir, addons)
}
