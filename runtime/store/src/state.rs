//! Apps, releases, config vars and formation in SQLite (WAL).
//!
//! Every change a caller is told about is one committed transaction with
//! `synchronous=FULL`, so an acknowledged change survives a kill -9 (or a power cut), and
//! a change interrupted half way leaves nothing behind.

use crate::error::{Result, StoreError};
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    pub name: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReleaseStatus {
    /// Created; its dynos are being started.
    Pending,
    /// Went live (or, without a slug, recorded a config change).
    Succeeded,
    /// Never served: a dyno failed to boot or the release phase failed.
    Failed,
}

impl ReleaseStatus {
    fn as_str(self) -> &'static str {
        match self {
            ReleaseStatus::Pending => "pending",
            ReleaseStatus::Succeeded => "succeeded",
            ReleaseStatus::Failed => "failed",
        }
    }
    fn parse(s: &str) -> ReleaseStatus {
        match s {
            "succeeded" => ReleaseStatus::Succeeded,
            "failed" => ReleaseStatus::Failed,
            _ => ReleaseStatus::Pending,
        }
    }
}

/// One immutable entry of an app's release log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub app: String,
    pub version: u64,
    /// `sha256:` of the slug manifest blob; `None` for config changes before any deploy.
    pub slug: Option<String>,
    /// Procfile text of the slug.
    pub procfile: String,
    /// `wdeploy.toml` text of the slug (empty when absent).
    pub settings: String,
    pub config: BTreeMap<String, String>,
    pub description: String,
    pub author: String,
    pub created_at: DateTime<Utc>,
    pub status: ReleaseStatus,
}

/// What a new release is made of; the version and time are assigned by the store.
#[derive(Debug, Clone)]
pub struct NewRelease {
    pub slug: Option<String>,
    pub procfile: String,
    pub settings: String,
    pub config: BTreeMap<String, String>,
    pub description: String,
    pub author: String,
    pub status: ReleaseStatus,
}

pub struct State {
    conn: Mutex<Connection>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS apps (
    name TEXT PRIMARY KEY,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS releases (
    app TEXT NOT NULL REFERENCES apps(name) ON DELETE CASCADE,
    version INTEGER NOT NULL,
    slug TEXT,
    procfile TEXT NOT NULL,
    settings TEXT NOT NULL,
    config TEXT NOT NULL,
    description TEXT NOT NULL,
    author TEXT NOT NULL,
    created_at TEXT NOT NULL,
    status TEXT NOT NULL,
    PRIMARY KEY (app, version)
);
CREATE TABLE IF NOT EXISTS formation (
    app TEXT NOT NULL REFERENCES apps(name) ON DELETE CASCADE,
    process_type TEXT NOT NULL,
    quantity INTEGER NOT NULL,
    PRIMARY KEY (app, process_type)
);
CREATE TABLE IF NOT EXISTS tokens (
    hash TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at TEXT NOT NULL
);
";

impl State {
    pub fn open(path: &Path) -> Result<State> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        Ok(State {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn create_app(&self, name: &str) -> Result<App> {
        let now = Utc::now();
        let inserted = self.conn().execute(
            "INSERT OR IGNORE INTO apps (name, created_at) VALUES (?1, ?2)",
            params![name, now.to_rfc3339()],
        )?;
        if inserted == 0 {
            return Err(StoreError::Conflict(format!("app {name} already exists")));
        }
        Ok(App {
            name: name.to_string(),
            created_at: now,
        })
    }

    pub fn apps(&self) -> Result<Vec<App>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT name, created_at FROM apps ORDER BY name")?;
        let rows = stmt.query_map([], row_to_app)?;
        rows.map(|row| row.map_err(StoreError::from)).collect()
    }

    pub fn app(&self, name: &str) -> Result<App> {
        self.conn()
            .query_row(
                "SELECT name, created_at FROM apps WHERE name = ?1",
                params![name],
                row_to_app,
            )
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("app {name}")))
    }

    /// Deletes an app with its releases and formation (blobs stay: other apps may share them).
    pub fn delete_app(&self, name: &str) -> Result<()> {
        let deleted = self
            .conn()
            .execute("DELETE FROM apps WHERE name = ?1", params![name])?;
        if deleted == 0 {
            return Err(StoreError::NotFound(format!("app {name}")));
        }
        Ok(())
    }

    /// Appends a release as the app's next version, atomically.
    pub fn append_release(&self, app: &str, new: NewRelease) -> Result<Release> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let exists: bool = tx
            .query_row("SELECT 1 FROM apps WHERE name = ?1", params![app], |_| {
                Ok(true)
            })
            .optional()?
            .unwrap_or(false);
        if !exists {
            return Err(StoreError::NotFound(format!("app {app}")));
        }
        let version: u64 = tx.query_row(
            "SELECT COALESCE(MAX(version), 0) + 1 FROM releases WHERE app = ?1",
            params![app],
            |r| r.get(0),
        )?;
        let now = Utc::now();
        tx.execute(
            "INSERT INTO releases (app, version, slug, procfile, settings, config, description, author, created_at, status)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                app,
                version,
                new.slug,
                new.procfile,
                new.settings,
                serde_json::to_string(&new.config)?,
                new.description,
                new.author,
                now.to_rfc3339(),
                new.status.as_str()
            ],
        )?;
        tx.commit()?;
        Ok(Release {
            app: app.to_string(),
            version,
            slug: new.slug,
            procfile: new.procfile,
            settings: new.settings,
            config: new.config,
            description: new.description,
            author: new.author,
            created_at: now,
            status: new.status,
        })
    }

    /// Records how a pending release ended. Only a pending release may change status.
    pub fn finish_release(&self, app: &str, version: u64, status: ReleaseStatus) -> Result<()> {
        self.conn().execute(
            "UPDATE releases SET status = ?3 WHERE app = ?1 AND version = ?2 AND status = 'pending'",
            params![app, version, status.as_str()],
        )?;
        Ok(())
    }

    /// Marks every release still pending as failed: they were being started when the host
    /// went down, were never acknowledged, and must not count as current. Returns how many.
    pub fn fail_interrupted(&self) -> Result<usize> {
        Ok(self.conn().execute(
            "UPDATE releases SET status = 'failed' WHERE status = 'pending'",
            [],
        )?)
    }

    /// The release log, newest first.
    pub fn releases(&self, app: &str) -> Result<Vec<Release>> {
        self.app(app)?;
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT app, version, slug, procfile, settings, config, description, author, created_at, status
             FROM releases WHERE app = ?1 ORDER BY version DESC",
        )?;
        let rows = stmt.query_map(params![app], row_to_release)?;
        rows.map(|r| r?.map_err(StoreError::from)).collect()
    }

    pub fn release(&self, app: &str, version: u64) -> Result<Release> {
        self.app(app)?;
        self.conn()
            .query_row(
                "SELECT app, version, slug, procfile, settings, config, description, author, created_at, status
                 FROM releases WHERE app = ?1 AND version = ?2",
                params![app, version],
                row_to_release,
            )
            .optional()?
            .transpose()?
            .ok_or_else(|| StoreError::NotFound(format!("release v{version} of {app}")))
    }

    /// The newest release that succeeded: its slug is what runs, its config is current.
    pub fn current_release(&self, app: &str) -> Result<Option<Release>> {
        Ok(self
            .releases(app)?
            .into_iter()
            .find(|r| r.status == ReleaseStatus::Succeeded))
    }

    pub fn formation(&self, app: &str) -> Result<BTreeMap<String, u32>> {
        self.app(app)?;
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT process_type, quantity FROM formation WHERE app = ?1 ORDER BY process_type",
        )?;
        let rows = stmt.query_map(params![app], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, u32>(1)?))
        })?;
        rows.map(|r| r.map_err(StoreError::from)).collect()
    }

    /// Sets the quantity of several process types in one transaction.
    pub fn set_formation(&self, app: &str, quantities: &BTreeMap<String, u32>) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for (process_type, quantity) in quantities {
            tx.execute(
                "INSERT INTO formation (app, process_type, quantity) VALUES (?1, ?2, ?3)
                 ON CONFLICT (app, process_type) DO UPDATE SET quantity = excluded.quantity",
                params![app, process_type, quantity],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    pub fn add_token(&self, hash: &str, name: &str) -> Result<()> {
        self.conn().execute(
            "INSERT OR REPLACE INTO tokens (hash, name, created_at) VALUES (?1, ?2, ?3)",
            params![hash, name, Utc::now().to_rfc3339()],
        )?;
        Ok(())
    }

    /// The name of the token with this hash, if any.
    pub fn token(&self, hash: &str) -> Result<Option<String>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT name FROM tokens WHERE hash = ?1",
                params![hash],
                |r| r.get(0),
            )
            .optional()?)
    }

    pub fn has_tokens(&self) -> Result<bool> {
        Ok(self
            .conn()
            .query_row("SELECT COUNT(*) FROM tokens", [], |r| r.get::<_, i64>(0))?
            > 0)
    }
}

fn row_to_app(r: &rusqlite::Row<'_>) -> rusqlite::Result<App> {
    Ok(App {
        name: r.get(0)?,
        created_at: parse_time(&r.get::<_, String>(1)?),
    })
}

type RowResult = std::result::Result<Release, serde_json::Error>;

fn row_to_release(r: &rusqlite::Row<'_>) -> rusqlite::Result<RowResult> {
    let config: String = r.get(5)?;
    let status: String = r.get(9)?;
    let created: String = r.get(8)?;
    Ok(serde_json::from_str(&config).map(|config| Release {
        app: r.get(0).unwrap_or_default(),
        version: r.get(1).unwrap_or_default(),
        slug: r.get(2).unwrap_or_default(),
        procfile: r.get(3).unwrap_or_default(),
        settings: r.get(4).unwrap_or_default(),
        config,
        description: r.get(6).unwrap_or_default(),
        author: r.get(7).unwrap_or_default(),
        created_at: parse_time(&created),
        status: ReleaseStatus::parse(&status),
    }))
}

fn parse_time(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_release(description: &str, config: &[(&str, &str)]) -> NewRelease {
        NewRelease {
            slug: Some("sha256:00".into()),
            procfile: "web: web\n".into(),
            settings: String::new(),
            config: config
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            description: description.into(),
            author: "admin".into(),
            status: ReleaseStatus::Pending,
        }
    }

    #[test]
    fn release_log_is_append_only_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.db");
        {
            let state = State::open(&db).unwrap();
            state.create_app("hello").unwrap();
            assert!(matches!(
                state.create_app("hello"),
                Err(StoreError::Conflict(_))
            ));
            let v1 = state
                .append_release("hello", new_release("Deploy 1", &[]))
                .unwrap();
            assert_eq!(v1.version, 1);
            state
                .finish_release("hello", 1, ReleaseStatus::Succeeded)
                .unwrap();
            let v2 = state
                .append_release("hello", new_release("Set A", &[("A", "1")]))
                .unwrap();
            assert_eq!(v2.version, 2);
            state
                .finish_release("hello", 2, ReleaseStatus::Failed)
                .unwrap();
            // A finished release never changes again.
            state
                .finish_release("hello", 2, ReleaseStatus::Succeeded)
                .unwrap();
            state
                .set_formation("hello", &BTreeMap::from([("web".into(), 3)]))
                .unwrap();
        }
        let state = State::open(&db).unwrap();
        state
            .append_release("hello", new_release("Deploy 3", &[]))
            .unwrap();
        assert_eq!(state.fail_interrupted().unwrap(), 1);
        assert_eq!(
            state.releases("hello").unwrap()[0].status,
            ReleaseStatus::Failed
        );
        let releases: Vec<_> = state
            .releases("hello")
            .unwrap()
            .into_iter()
            .skip(1)
            .collect();
        assert_eq!(releases.len(), 2);
        assert_eq!(releases[0].status, ReleaseStatus::Failed);
        assert_eq!(state.current_release("hello").unwrap().unwrap().version, 1);
        assert_eq!(state.formation("hello").unwrap()["web"], 3);
        assert!(matches!(
            state.releases("nope"),
            Err(StoreError::NotFound(_))
        ));
        state.delete_app("hello").unwrap();
        assert!(state.apps().unwrap().is_empty());
    }
}
