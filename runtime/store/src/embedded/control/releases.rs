//! The release log in the control database: append-only, one row per version, a
//! pending release finished once (succeeded or failed), and the head (newest version,
//! newest succeeded) read in two indexed lookups.

use super::{ControlDb, Row, bump_revision, parse_time, stored};
use crate::error::{Result, StoreError};
use crate::model::{NewRelease, Release, ReleaseHead, check_release_output};
use chrono::Utc;
use rusqlite::{OptionalExtension, params};
use wdeploy_core::{AppName, Digest, ReleaseStatus};

const RELEASE_COLUMNS: &str =
    "app, version, slug, procfile, settings, config, description, author, created_at, status";

impl ControlDb {
    /// Inserts `new` as `version`; the primary key makes this create-if-absent.
    pub fn append_release(&self, app: &AppName, version: u64, new: NewRelease) -> Result<Release> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        let exists = tx
            .query_row(
                "SELECT 1 FROM apps WHERE name = ?1",
                params![app.as_str()],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        if !exists {
            return Err(StoreError::NotFound(format!("app {app}")));
        }
        let now = new.created_at.unwrap_or_else(Utc::now);
        let status = new.first_status();
        let inserted = tx.execute(
            "INSERT OR IGNORE INTO releases (app, version, slug, procfile, settings, config, description, author, created_at, status)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                app.as_str(),
                version,
                new.slug.as_ref().map(Digest::as_str),
                new.procfile,
                new.settings,
                serde_json::to_string(&new.config).map_err(|e| StoreError::Backend(e.to_string()))?,
                new.description,
                new.author,
                now.to_rfc3339(),
                status.as_str()
            ],
        )?;
        if inserted == 0 {
            return Err(StoreError::VersionTaken {
                app: app.to_string(),
                version,
            });
        }
        bump_revision(&tx, app)?;
        tx.commit()?;
        Ok(Release {
            app: app.clone(),
            version,
            slug: new.slug,
            procfile: new.procfile,
            settings: new.settings,
            config: new.config,
            description: new.description,
            author: new.author,
            created_at: now,
            status,
            // One host: a release it left pending is failed when it opens the store.
            node: None,
        })
    }

    /// Records how a pending release ended. Only a pending release may change status.
    pub fn finish_release(&self, app: &AppName, version: u64, status: ReleaseStatus) -> Result<()> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        let changed = tx.execute(
            "UPDATE releases SET status = ?3 WHERE app = ?1 AND version = ?2 AND status = 'pending'",
            params![app.as_str(), version, status.as_str()],
        )?;
        if changed > 0 {
            bump_revision(&tx, app)?;
        }
        tx.commit()?;
        Ok(())
    }

    pub fn set_release_output(&self, app: &AppName, version: u64, output: &str) -> Result<()> {
        check_release_output(output)?;
        let conn = self.conn.lock();
        let kept = conn.execute(
            "INSERT INTO release_outputs (app, version, output)
             SELECT app, version, ?3 FROM releases WHERE app = ?1 AND version = ?2
             ON CONFLICT (app, version) DO UPDATE SET output = excluded.output",
            params![app.as_str(), version, output],
        )?;
        if kept == 0 {
            return Err(StoreError::NotFound(format!("release v{version} of {app}")));
        }
        Ok(())
    }

    pub fn release_output(&self, app: &AppName, version: u64) -> Result<String> {
        self.release(app, version)?;
        let conn = self.conn.lock();
        let output = conn
            .query_row(
                "SELECT output FROM release_outputs WHERE app = ?1 AND version = ?2",
                params![app.as_str(), version],
                |r| r.get(0),
            )
            .optional()?;
        Ok(output.unwrap_or_default())
    }

    /// Marks every release still pending as failed: they were being started when the host
    /// went down, were never acknowledged, and must not count as current. Returns how many.
    pub fn fail_interrupted(&self) -> Result<usize> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        tx.execute(
            "UPDATE apps SET revision = revision + 1
             WHERE name IN (SELECT app FROM releases WHERE status = 'pending')",
            [],
        )?;
        let failed = tx.execute(
            "UPDATE releases SET status = 'failed' WHERE status = 'pending'",
            [],
        )?;
        tx.commit()?;
        Ok(failed)
    }

    /// The release log, newest first.
    pub fn releases(&self, app: &AppName) -> Result<Vec<Release>> {
        self.app(app)?;
        let conn = self.conn.lock();
        let mut stmt = conn.prepare(&format!(
            "SELECT {RELEASE_COLUMNS} FROM releases WHERE app = ?1 ORDER BY version DESC"
        ))?;
        let rows = stmt.query_map(params![app.as_str()], row_to_release)?;
        rows.map(|r| r?).collect()
    }

    /// Every slug any release references, in one read (one consistent snapshot, whatever
    /// is renamed or destroyed meanwhile).
    pub fn release_slugs(&self) -> Result<std::collections::HashSet<Digest>> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare("SELECT DISTINCT slug FROM releases WHERE slug IS NOT NULL")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        rows.map(|slug| stored(&slug?)).collect()
    }

    /// At most `limit` releases older than `before`, newest first: a range of the
    /// primary key, read in order and cut at `limit`.
    pub fn releases_page(
        &self,
        app: &AppName,
        before: Option<u64>,
        limit: u32,
    ) -> Result<Vec<Release>> {
        self.app(app)?;
        let before = before.map_or(i64::MAX, |v| i64::try_from(v).unwrap_or(i64::MAX));
        let conn = self.conn.lock();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {RELEASE_COLUMNS} FROM releases WHERE app = ?1 AND version < ?2
             ORDER BY version DESC LIMIT ?3"
        ))?;
        let rows = stmt.query_map(params![app.as_str(), before, limit], row_to_release)?;
        rows.map(|r| r?).collect()
    }

    pub fn release(&self, app: &AppName, version: u64) -> Result<Release> {
        self.app(app)?;
        self.conn
            .lock()
            .query_row(
                &format!("SELECT {RELEASE_COLUMNS} FROM releases WHERE app = ?1 AND version = ?2"),
                params![app.as_str(), version],
                row_to_release,
            )
            .optional()?
            .transpose()?
            .ok_or_else(|| StoreError::NotFound(format!("release v{version} of {app}")))
    }

    /// The newest version and the newest succeeded release, in two indexed lookups.
    pub fn release_head(&self, app: &AppName) -> Result<ReleaseHead> {
        self.app(app)?;
        let conn = self.conn.lock();
        let latest: u64 = conn.query_row(
            "SELECT COALESCE(MAX(version), 0) FROM releases WHERE app = ?1",
            params![app.as_str()],
            |r| r.get(0),
        )?;
        let current = conn
            .query_row(
                &format!(
                    "SELECT {RELEASE_COLUMNS} FROM releases WHERE app = ?1 AND status = 'succeeded'
                     ORDER BY version DESC LIMIT 1"
                ),
                params![app.as_str()],
                row_to_release,
            )
            .optional()?
            .transpose()?;
        Ok(ReleaseHead { latest, current })
    }
}

fn row_to_release(r: &rusqlite::Row<'_>) -> Row<Release> {
    let app: String = r.get(0)?;
    let slug: Option<String> = r.get(2)?;
    let config: String = r.get(5)?;
    let created: String = r.get(8)?;
    let status: String = r.get(9)?;
    let (version, procfile, settings, description, author) =
        (r.get(1)?, r.get(3)?, r.get(4)?, r.get(6)?, r.get(7)?);
    Ok((|| {
        Ok(Release {
            app: stored(&app)?,
            version,
            slug: slug.as_deref().map(stored).transpose()?,
            procfile,
            settings,
            config: serde_json::from_str(&config)
                .map_err(|e| StoreError::Backend(format!("stored config is unreadable: {e}")))?,
            description,
            author,
            created_at: parse_time(&created),
            status: ReleaseStatus::parse(&status).ok_or_else(|| {
                StoreError::Backend(format!("stored release status `{status}` is unknown"))
            })?,
            node: None,
        })
    })())
}
