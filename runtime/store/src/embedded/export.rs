//! Reading an embedded store's add-on data out, app by app, for an import into another
//! store (`crate::import`): the key-value entries in pages, and the jobs not yet done.
//! Read-only, through a connection of its own: the source's data never changes.

use crate::error::{Result, StoreError};
use crate::model::AppId;
use rusqlite::{Connection, OpenFlags, params};
use std::path::Path;

/// Entries read per page: a page is held in memory while it is written elsewhere.
const PAGE: u32 = 256;

/// One key-value entry of an app.
pub struct Entry {
    pub bucket: String,
    pub key: String,
    pub value: Vec<u8>,
}

/// A job of an app not yet done (a leased one is exported as ready: its lease is the
/// source's).
pub struct QueuedJob {
    /// Its id in the source: the order jobs were enqueued in.
    pub id: u64,
    pub queue: String,
    pub payload: Vec<u8>,
}

/// The add-on database of an embedded data directory, opened read-only.
pub struct AddonExport {
    conn: Connection,
}

impl AddonExport {
    /// Opens `DATA/addons.db`. Open the store itself first (`super::open`): it brings
    /// the database to this version's layout.
    pub fn open(data_dir: &Path) -> Result<AddonExport> {
        let path = data_dir.join("addons.db");
        if !path.is_file() {
            return Err(StoreError::Invalid(format!(
                "{}: no add-on database in this data directory",
                path.display()
            )));
        }
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        Ok(AddonExport { conn })
    }

    /// The app's entries after `(bucket, key)` (from the first with `None`), in order,
    /// a page at a time; an empty page is the end.
    pub fn entries(&self, app: &AppId, after: Option<(&str, &str)>) -> Result<Vec<Entry>> {
        let (bucket, key) = after.unwrap_or(("", ""));
        let mut statement = self.conn.prepare_cached(
            "SELECT bucket, key, value FROM kv
             WHERE app = ?1 AND (bucket > ?2 OR (bucket = ?2 AND key > ?3))
             ORDER BY bucket, key LIMIT ?4",
        )?;
        let rows = statement.query_map(params![app.as_str(), bucket, key, PAGE], |r| {
            Ok(Entry {
                bucket: r.get(0)?,
                key: r.get(1)?,
                value: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The app's jobs not yet done enqueued after job `after` (from the first with 0),
    /// oldest first, a page at a time; an empty page is the end.
    pub fn jobs(&self, app: &AppId, after: u64) -> Result<Vec<QueuedJob>> {
        let mut statement = self.conn.prepare_cached(
            "SELECT id, queue, payload FROM jobs WHERE app = ?1 AND done_at IS NULL AND id > ?2
             ORDER BY id LIMIT ?3",
        )?;
        let rows = statement.query_map(params![app.as_str(), after, PAGE], |r| {
            Ok(QueuedJob {
                id: r.get(0)?,
                queue: r.get(1)?,
                payload: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}
