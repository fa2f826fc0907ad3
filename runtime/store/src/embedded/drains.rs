//! The apps' log drains in `state.db`: a table beside the apps, each change one
//! transaction that also moves the app's revision (so the converge loop, which passes by
//! apps whose revision it has seen, applies the change).

use super::control::{ControlDb, bump_revision, parse_time, stored};
use crate::error::{Result, StoreError};
use crate::model::{Drain, MAX_DRAINS_PER_APP};
use rusqlite::{Connection, params};
use wdeploy_core::AppName;

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS drains (
    app TEXT NOT NULL REFERENCES apps(name) ON DELETE CASCADE,
    id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (app, url)
);
";

impl ControlDb {
    pub fn drains(&self, app: &AppName) -> Result<Vec<Drain>> {
        self.app(app)?;
        read_drains(&self.conn.lock(), app)
    }

    pub fn add_drain(&self, app: &AppName, drain: Drain) -> Result<Drain> {
        self.app(app)?;
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        let drains = read_drains(&tx, app)?;
        if drains.iter().any(|d| d.url == drain.url) {
            return Err(StoreError::Conflict(format!(
                "{app} already drains to {}",
                drain.url.redacted()
            )));
        }
        if drains.len() >= MAX_DRAINS_PER_APP {
            return Err(StoreError::Invalid(format!(
                "{app} has {MAX_DRAINS_PER_APP} drains, the most an app may have: remove one first"
            )));
        }
        tx.execute(
            "INSERT INTO drains (app, id, url, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![
                app.as_str(),
                drain.id.as_str(),
                drain.url.as_str(),
                drain.created_at.to_rfc3339()
            ],
        )?;
        bump_revision(&tx, app)?;
        tx.commit()?;
        Ok(drain)
    }

    pub fn remove_drain(&self, app: &AppName, which: &str) -> Result<Drain> {
        self.app(app)?;
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        let drain = read_drains(&tx, app)?
            .into_iter()
            .find(|d| d.is(which))
            .ok_or_else(|| StoreError::NotFound(format!("drain {which} of {app}")))?;
        tx.execute(
            "DELETE FROM drains WHERE app = ?1 AND id = ?2",
            params![app.as_str(), drain.id.as_str()],
        )?;
        bump_revision(&tx, app)?;
        tx.commit()?;
        Ok(drain)
    }
}

fn read_drains(conn: &Connection, app: &AppName) -> Result<Vec<Drain>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, url, created_at FROM drains WHERE app = ?1 ORDER BY created_at, id",
    )?;
    let rows = stmt.query_map(params![app.as_str()], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
        ))
    })?;
    let mut drains = Vec::new();
    for row in rows {
        let (id, url, created) = row?;
        drains.push(Drain {
            id: stored(&id)?,
            url: stored(&url)?,
            created_at: parse_time(&created),
        });
    }
    Ok(drains)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(url: &str) -> Drain {
        Drain::new(url.parse().unwrap())
    }

    #[test]
    fn drains_are_kept_per_app_refused_twice_capped_and_move_the_revision() {
        let dir = tempfile::tempdir().unwrap();
        let db_path = dir.path().join("state.db");
        let hello: AppName = "hello".parse().unwrap();
        let other: AppName = "other".parse().unwrap();
        let added = {
            let db = ControlDb::open(&db_path).unwrap();
            db.create_app(&hello).unwrap();
            db.create_app(&other).unwrap();
            let revision = || db.app(&hello).unwrap().revision.unwrap();
            let before = revision();
            let added = db
                .add_drain(&hello, drain("syslog://logs.example.com:514"))
                .unwrap();
            assert!(revision() > before, "a drain change moves the revision");
            // The same URL, written another way, is the same drain.
            let again = db.add_drain(&hello, drain("SYSLOG://logs.example.com:514/"));
            assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
            // Another app may drain to it.
            db.add_drain(&other, drain("syslog://logs.example.com:514"))
                .unwrap();
            for n in 1..MAX_DRAINS_PER_APP {
                db.add_drain(&hello, drain(&format!("https://logs.example.com/{n}")))
                    .unwrap();
            }
            let over = db.add_drain(&hello, drain("https://logs.example.com/over"));
            assert!(matches!(over, Err(StoreError::Invalid(_))), "{over:?}");
            assert!(matches!(
                db.drains(&"nope".parse().unwrap()),
                Err(StoreError::NotFound(_))
            ));
            added
        };
        // Durable: read back after reopening, oldest first.
        let db = ControlDb::open(&db_path).unwrap();
        let drains = db.drains(&hello).unwrap();
        assert_eq!(drains.len(), MAX_DRAINS_PER_APP);
        assert_eq!(drains[0], added);
        // Removed by URL or by id.
        let revision = db.app(&hello).unwrap().revision;
        let removed = db
            .remove_drain(&hello, "syslog://logs.example.com:514")
            .unwrap();
        assert_eq!(removed.id, added.id);
        assert!(db.app(&hello).unwrap().revision > revision);
        let second = drains[1].id.clone();
        db.remove_drain(&hello, second.as_str()).unwrap();
        assert!(matches!(
            db.remove_drain(&hello, second.as_str()),
            Err(StoreError::NotFound(_))
        ));
        assert_eq!(db.drains(&hello).unwrap().len(), MAX_DRAINS_PER_APP - 2);
        assert_eq!(db.drains(&other).unwrap().len(), 1);
        // They go with their app.
        db.delete_app(&hello).unwrap();
        db.create_app(&hello).unwrap();
        assert!(db.drains(&hello).unwrap().is_empty());
    }
}
