//! Apps, releases, config vars and formation in SQLite (WAL): the embedded
//! backend of [`ControlStore`].
//!
//! Every change a caller is told about is one committed transaction with
//! `synchronous=FULL`, so an acknowledged change survives a kill -9 (or a power cut), and
//! a change interrupted half way leaves nothing behind. Calls block on disk: the
//! [`ControlStore`] implementation runs each on a blocking thread.

mod certs;
mod domains;
mod maintenance;
mod releases;
mod rename;

use crate::control::ControlStore;
use crate::error::{Result, StoreError};
use crate::model::{App, AppId, Drain, NewRelease, Release, ReleaseHead};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;
use std::sync::Arc;
use wdeploy_core::{AppName, Domain, Formation, ReleaseStatus};

/// The control-plane database. One connection: control-plane writes are rare and small.
pub struct ControlDb {
    pub(super) conn: Mutex<Connection>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS apps (
    name TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    -- AppId: random, made at creation, never reused. NULL only in a database made before
    -- ids, until `open` gives each app one.
    id TEXT,
    -- Bumped in the same transaction as every change to the app's releases, formation or
    -- drains
    -- (App::revision).
    revision INTEGER NOT NULL DEFAULT 0,
    -- 1 while the router answers with a maintenance page (App::maintenance).
    maintenance INTEGER NOT NULL DEFAULT 0
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
-- What going live printed for a release (releases:output), apart from the release so
-- that reading the log never reads it.
CREATE TABLE IF NOT EXISTS release_outputs (
    app TEXT NOT NULL,
    version INTEGER NOT NULL,
    output TEXT NOT NULL,
    PRIMARY KEY (app, version),
    FOREIGN KEY (app, version) REFERENCES releases(app, version) ON DELETE CASCADE
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

impl ControlDb {
    pub fn open(path: &Path) -> Result<ControlDb> {
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        conn.execute_batch(domains::SCHEMA)?;
        conn.execute_batch(certs::SCHEMA)?;
        conn.execute_batch(super::drains::SCHEMA)?;
        conn.execute_batch(super::acme::SCHEMA)?;
        super::migrate::give_apps_ids(&mut conn)?;
        super::migrate::add_revisions(&conn)?;
        super::migrate::add_maintenance(&conn)?;
        super::people::migrate(&mut conn)?;
        Ok(ControlDb {
            conn: Mutex::new(conn),
        })
    }

    pub fn create_app(&self, name: &AppName) -> Result<App> {
        self.create_app_at(name, Utc::now())
    }

    pub fn create_app_at(&self, name: &AppName, now: DateTime<Utc>) -> Result<App> {
        let id = AppId::random();
        let inserted = self.conn.lock().execute(
            "INSERT OR IGNORE INTO apps (name, created_at, id) VALUES (?1, ?2, ?3)",
            params![name.as_str(), now.to_rfc3339(), id.as_str()],
        )?;
        if inserted == 0 {
            return Err(StoreError::Conflict(format!("app {name} already exists")));
        }
        Ok(App {
            name: name.clone(),
            id,
            created_at: now,
            revision: Some(0),
            maintenance: false,
        })
    }

    pub fn apps(&self) -> Result<Vec<App>> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare(
            "SELECT name, created_at, id, revision, maintenance FROM apps ORDER BY name",
        )?;
        let rows = stmt.query_map([], row_to_app)?;
        rows.map(|row| row?).collect()
    }

    pub fn app(&self, name: &AppName) -> Result<App> {
        self.conn
            .lock()
            .query_row(
                "SELECT name, created_at, id, revision, maintenance FROM apps WHERE name = ?1",
                params![name.as_str()],
                row_to_app,
            )
            .optional()?
            .transpose()?
            .ok_or_else(|| StoreError::NotFound(format!("app {name}")))
    }

    /// Deletes an app with its releases and formation (blobs stay: other apps may share them).
    pub fn delete_app(&self, name: &AppName) -> Result<()> {
        let deleted = self
            .conn
            .lock()
            .execute("DELETE FROM apps WHERE name = ?1", params![name.as_str()])?;
        if deleted == 0 {
            return Err(StoreError::NotFound(format!("app {name}")));
        }
        Ok(())
    }

    pub fn formation(&self, app: &AppName) -> Result<Formation> {
        self.app(app)?;
        let conn = self.conn.lock();
        read_formation(&conn, app)
    }

    /// Sets the quantity of several process types in one transaction; returns the result.
    pub fn scale(&self, app: &AppName, patch: &Formation) -> Result<Formation> {
        self.app(app)?;
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        for (process_type, quantity) in patch.iter() {
            tx.execute(
                "INSERT INTO formation (app, process_type, quantity) VALUES (?1, ?2, ?3)
                 ON CONFLICT (app, process_type) DO UPDATE SET quantity = excluded.quantity",
                params![app.as_str(), process_type.as_str(), quantity],
            )?;
        }
        bump_revision(&tx, app)?;
        let formation = read_formation(&tx, app)?;
        tx.commit()?;
        Ok(formation)
    }
}

/// [`ControlStore`] over the database, every call on a blocking thread so SQLite's disk
/// waits (an fsync per change) never hold an async worker.
#[derive(Clone)]
pub struct EmbeddedControl(pub(crate) Arc<ControlDb>);

impl EmbeddedControl {
    pub(super) async fn blocking<T: Send + 'static>(
        &self,
        call: impl FnOnce(&ControlDb) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let db = self.0.clone();
        super::off_async("state database", move || call(&db))
            .await
            .map_err(StoreError::Backend)?
    }
}

#[async_trait]
impl ControlStore for EmbeddedControl {
    async fn create_app_at(&self, name: &AppName, created_at: DateTime<Utc>) -> Result<App> {
        let name = name.clone();
        self.blocking(move |db| db.create_app_at(&name, created_at))
            .await
    }
    async fn apps(&self) -> Result<Vec<App>> {
        self.blocking(|db| db.apps()).await
    }
    async fn app(&self, name: &AppName) -> Result<App> {
        let name = name.clone();
        self.blocking(move |db| db.app(&name)).await
    }
    async fn delete_app(&self, name: &AppName) -> Result<()> {
        let name = name.clone();
        self.blocking(move |db| db.delete_app(&name)).await
    }
    async fn set_maintenance(&self, name: &AppName, on: bool) -> Result<App> {
        let name = name.clone();
        self.blocking(move |db| db.set_maintenance(&name, on)).await
    }
    async fn rename_app(&self, name: &AppName, new: &AppName) -> Result<App> {
        let (name, new) = (name.clone(), new.clone());
        self.blocking(move |db| db.rename_app(&name, &new)).await
    }
    async fn append_release(
        &self,
        app: &AppName,
        version: u64,
        new: NewRelease,
    ) -> Result<Release> {
        let app = app.clone();
        self.blocking(move |db| db.append_release(&app, version, new))
            .await
    }
    async fn finish_release(
        &self,
        app: &AppName,
        version: u64,
        status: ReleaseStatus,
    ) -> Result<()> {
        let app = app.clone();
        self.blocking(move |db| db.finish_release(&app, version, status))
            .await
    }
    async fn set_release_output(&self, app: &AppName, version: u64, output: &str) -> Result<()> {
        let (app, output) = (app.clone(), output.to_string());
        self.blocking(move |db| db.set_release_output(&app, version, &output))
            .await
    }
    async fn release_output(&self, app: &AppName, version: u64) -> Result<String> {
        let app = app.clone();
        self.blocking(move |db| db.release_output(&app, version))
            .await
    }
    async fn releases(&self, app: &AppName) -> Result<Vec<Release>> {
        let app = app.clone();
        self.blocking(move |db| db.releases(&app)).await
    }
    async fn release_slugs(&self) -> Result<std::collections::HashSet<wdeploy_core::Digest>> {
        self.blocking(|db| db.release_slugs()).await
    }
    async fn releases_page(
        &self,
        app: &AppName,
        before: Option<u64>,
        limit: u32,
    ) -> Result<Vec<Release>> {
        let app = app.clone();
        self.blocking(move |db| db.releases_page(&app, before, limit))
            .await
    }
    async fn release(&self, app: &AppName, version: u64) -> Result<Release> {
        let app = app.clone();
        self.blocking(move |db| db.release(&app, version)).await
    }
    async fn release_head(&self, app: &AppName) -> Result<ReleaseHead> {
        let app = app.clone();
        self.blocking(move |db| db.release_head(&app)).await
    }
    async fn formation(&self, app: &AppName) -> Result<Formation> {
        let app = app.clone();
        self.blocking(move |db| db.formation(&app)).await
    }
    async fn scale(&self, app: &AppName, patch: &Formation) -> Result<Formation> {
        let (app, patch) = (app.clone(), patch.clone());
        self.blocking(move |db| db.scale(&app, &patch)).await
    }
    async fn drains(&self, app: &AppName) -> Result<Vec<Drain>> {
        let app = app.clone();
        self.blocking(move |db| db.drains(&app)).await
    }
    async fn add_drain(&self, app: &AppName, drain: Drain) -> Result<Drain> {
        let app = app.clone();
        self.blocking(move |db| db.add_drain(&app, drain)).await
    }
    async fn remove_drain(&self, app: &AppName, which: &str) -> Result<Drain> {
        let (app, which) = (app.clone(), which.to_string());
        self.blocking(move |db| db.remove_drain(&app, &which)).await
    }
    async fn add_domain(&self, app: &AppName, domain: &Domain) -> Result<()> {
        let (app, domain) = (app.clone(), domain.clone());
        self.blocking(move |db| db.add_domain(&app, &domain)).await
    }
    async fn remove_domain(&self, app: &AppName, domain: &Domain) -> Result<()> {
        let (app, domain) = (app.clone(), domain.clone());
        self.blocking(move |db| db.remove_domain(&app, &domain))
            .await
    }
    async fn domains(&self, app: &AppName) -> Result<Vec<Domain>> {
        let app = app.clone();
        self.blocking(move |db| db.domains(&app)).await
    }
    async fn all_domains(&self) -> Result<Vec<(Domain, AppName)>> {
        self.blocking(|db| db.all_domains()).await
    }
}

fn read_formation(conn: &Connection, app: &AppName) -> Result<Formation> {
    let mut stmt = conn.prepare(
        "SELECT process_type, quantity FROM formation WHERE app = ?1 ORDER BY process_type",
    )?;
    let rows = stmt.query_map(params![app.as_str()], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, u32>(1)?))
    })?;
    let mut formation = Formation::new();
    for row in rows {
        let (process_type, quantity) = row?;
        formation.set(stored(&process_type)?, quantity);
    }
    Ok(formation)
}

/// A value this store wrote, read back into its type.
pub(super) fn stored<T: std::str::FromStr>(text: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    text.parse()
        .map_err(|e| StoreError::Backend(format!("stored value `{text}` is unreadable: {e}")))
}

type Row<T> = rusqlite::Result<Result<T>>;

fn row_to_app(r: &rusqlite::Row<'_>) -> Row<App> {
    let name: String = r.get(0)?;
    let created: String = r.get(1)?;
    let id: Option<String> = r.get(2)?;
    let revision: i64 = r.get(3)?;
    let maintenance: bool = r.get(4)?;
    Ok((|| {
        Ok(App {
            name: stored(&name)?,
            id: stored(id.as_deref().unwrap_or_default())?,
            created_at: parse_time(&created),
            revision: Some(revision as u64),
            maintenance,
        })
    })())
}

/// Marks a change to the app's releases, formation or drains (inside the transaction
/// making it).
pub(super) fn bump_revision(tx: &rusqlite::Transaction<'_>, app: &AppName) -> Result<()> {
    tx.execute(
        "UPDATE apps SET revision = revision + 1 WHERE name = ?1",
        params![app.as_str()],
    )?;
    Ok(())
}

pub(super) fn parse_time(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::testing::new_release;

    fn name(s: &str) -> AppName {
        s.parse().unwrap()
    }

    #[test]
    fn the_slugs_of_every_release_are_read_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let state = ControlDb::open(&dir.path().join("state.db")).unwrap();
        let (a, b) = (name("app-a"), name("app-b"));
        let slug = |s: &str| Some(wdeploy_core::Digest::of_bytes(s.as_bytes()));
        for (app, slugs) in [(&a, ["one", "two"]), (&b, ["two", "three"])] {
            state.create_app(app).unwrap();
            for (i, s) in slugs.into_iter().enumerate() {
                let release = NewRelease {
                    slug: slug(s),
                    ..new_release("Deploy", &[])
                };
                state.append_release(app, i as u64 + 1, release).unwrap();
            }
        }
        let config_only = NewRelease {
            slug: None,
            ..new_release("Set config", &[])
        };
        state.append_release(&b, 3, config_only).unwrap();
        let all: std::collections::HashSet<_> = ["one", "two", "three"]
            .into_iter()
            .filter_map(slug)
            .collect();
        assert_eq!(state.release_slugs().unwrap(), all);
        state.delete_app(&b).unwrap();
        let left: std::collections::HashSet<_> =
            ["one", "two"].into_iter().filter_map(slug).collect();
        assert_eq!(state.release_slugs().unwrap(), left);
    }

    #[test]
    fn release_log_is_append_only_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.db");
        let hello = name("hello");
        {
            let state = ControlDb::open(&db).unwrap();
            state.create_app(&hello).unwrap();
            assert!(matches!(
                state.create_app(&hello),
                Err(StoreError::Conflict(_))
            ));
            let v1 = state
                .append_release(&hello, 1, new_release("Deploy 1", &[]))
                .unwrap();
            assert_eq!(v1.version, 1);
            state
                .finish_release(&hello, 1, ReleaseStatus::Succeeded)
                .unwrap();
            // Create-if-absent: a second writer of v1 loses and is told so.
            assert!(matches!(
                state.append_release(&hello, 1, new_release("Racer", &[])),
                Err(StoreError::VersionTaken { version: 1, .. })
            ));
            let v2 = state
                .append_release(&hello, 2, new_release("Set A", &[("A", "1")]))
                .unwrap();
            assert_eq!(v2.version, 2);
            state
                .finish_release(&hello, 2, ReleaseStatus::Failed)
                .unwrap();
            // A finished release never changes again.
            state
                .finish_release(&hello, 2, ReleaseStatus::Succeeded)
                .unwrap();
            let web3: Formation = serde_json::from_str(r#"{"web":3}"#).unwrap();
            assert_eq!(state.scale(&hello, &web3).unwrap().quantity("web"), 3);
        }
        let state = ControlDb::open(&db).unwrap();
        state
            .append_release(&hello, 3, new_release("Deploy 3", &[]))
            .unwrap();
        assert_eq!(state.fail_interrupted().unwrap(), 1);
        let releases = state.releases(&hello).unwrap();
        assert_eq!(
            releases.iter().map(|r| r.status).collect::<Vec<_>>(),
            [
                ReleaseStatus::Failed,
                ReleaseStatus::Failed,
                ReleaseStatus::Succeeded
            ]
        );
        let head = state.release_head(&hello).unwrap();
        assert_eq!((head.latest, head.current.unwrap().version), (3, 1));
        let versions = |before, limit| -> Vec<u64> {
            let page = state.releases_page(&hello, before, limit).unwrap();
            page.iter().map(|r| r.version).collect()
        };
        assert_eq!(versions(None, 2), [3, 2]);
        assert_eq!(versions(Some(2), 2), [1]);
        assert_eq!(versions(Some(1), 2), Vec::<u64>::new());
        assert_eq!(versions(Some(u64::MAX), 10), [3, 2, 1]);
        assert_eq!(state.formation(&hello).unwrap().quantity("web"), 3);
        assert!(matches!(
            state.releases(&name("nope")),
            Err(StoreError::NotFound(_))
        ));
        state.delete_app(&hello).unwrap();
        assert!(state.apps().unwrap().is_empty());
    }

    #[test]
    fn the_revision_changes_with_releases_and_formation_only() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("control.db");
        let hello = name("hello");
        let state = ControlDb::open(&db).unwrap();
        state.create_app(&hello).unwrap();
        let revision = || state.app(&hello).unwrap().revision.unwrap();
        let mut seen = vec![revision()];
        state
            .append_release(&hello, 1, new_release("Deploy", &[]))
            .unwrap();
        seen.push(revision());
        state
            .finish_release(&hello, 1, ReleaseStatus::Succeeded)
            .unwrap();
        seen.push(revision());
        // A release that is not pending does not change: neither does the revision.
        state
            .finish_release(&hello, 1, ReleaseStatus::Failed)
            .unwrap();
        assert_eq!(revision(), *seen.last().unwrap());
        let web2: Formation = serde_json::from_str(r#"{"web":2}"#).unwrap();
        state.scale(&hello, &web2).unwrap();
        seen.push(revision());
        state
            .append_release(&hello, 2, new_release("Deploy 2", &[]))
            .unwrap();
        seen.push(revision());
        // Reads leave it alone.
        state.release_head(&hello).unwrap();
        assert_eq!(revision(), *seen.last().unwrap());
        drop(state);
        // A release left pending is failed at the next open: a change too.
        let state = ControlDb::open(&db).unwrap();
        assert_eq!(state.fail_interrupted().unwrap(), 1);
        seen.push(state.app(&hello).unwrap().revision.unwrap());
        let mut distinct = seen.clone();
        distinct.dedup();
        assert_eq!(distinct, seen, "every change moves the revision: {seen:?}");
        assert_eq!(state.apps().unwrap()[0].revision, seen.last().copied());
    }

    #[test]
    fn apps_made_before_ids_get_one_each_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.db");
        Connection::open(&db)
            .unwrap()
            .execute_batch(
                "CREATE TABLE apps (name TEXT PRIMARY KEY, created_at TEXT NOT NULL);
                 INSERT INTO apps VALUES ('one', '2026-01-01T00:00:00Z');
                 INSERT INTO apps VALUES ('two', '2026-01-01T00:00:00Z');",
            )
            .unwrap();
        let ids = |state: &ControlDb| -> Vec<AppId> {
            state.apps().unwrap().into_iter().map(|a| a.id).collect()
        };
        let first = ids(&ControlDb::open(&db).unwrap());
        assert_eq!(first.len(), 2);
        assert_ne!(first[0], first[1]);
        let state = ControlDb::open(&db).unwrap();
        assert_eq!(ids(&state), first, "ids are kept, not made again");
        // A new app of a destroyed one's name is someone else.
        let one = name("one");
        state.delete_app(&one).unwrap();
        let again = state.create_app(&one).unwrap();
        assert_ne!(again.id, first[0]);
        assert_eq!(state.app(&one).unwrap().id, again.id);
    }

    #[test]
    fn a_release_keeps_its_output_apart_until_its_app_goes() {
        let dir = tempfile::tempdir().unwrap();
        let state = ControlDb::open(&dir.path().join("state.db")).unwrap();
        let hello = name("hello");
        state.create_app(&hello).unwrap();
        state
            .append_release(&hello, 1, new_release("Deploy 1", &[]))
            .unwrap();
        assert_eq!(state.release_output(&hello, 1).unwrap(), "");
        state.set_release_output(&hello, 1, "first\n").unwrap();
        state.set_release_output(&hello, 1, "replaced\n").unwrap();
        assert_eq!(state.release_output(&hello, 1).unwrap(), "replaced\n");
        for missing in [
            state.set_release_output(&hello, 2, "x"),
            state.release_output(&hello, 2).map(drop),
        ] {
            assert!(
                matches!(missing, Err(StoreError::NotFound(_))),
                "{missing:?}"
            );
        }
        let over = "x".repeat(crate::MAX_RELEASE_OUTPUT + 1);
        assert!(matches!(
            state.set_release_output(&hello, 1, &over),
            Err(StoreError::Invalid(_))
        ));
        // Destroyed with its app: a new app of the name starts with none.
        state.delete_app(&hello).unwrap();
        state.create_app(&hello).unwrap();
        state
            .append_release(&hello, 1, new_release("Deploy 1", &[]))
            .unwrap();
        assert_eq!(state.release_output(&hello, 1).unwrap(), "");
    }
}
