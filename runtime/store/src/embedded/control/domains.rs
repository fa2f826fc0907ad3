//! The apps' custom domains in the control database: one row per domain, so the primary
//! key is the rule that a domain belongs to one app at most. Rows go with their app
//! (`ON DELETE CASCADE`).

use super::ControlDb;
use crate::error::{Result, StoreError};
use rusqlite::{OptionalExtension, params};
use wdeploy_core::{AppName, Domain};

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS domains (
    domain TEXT PRIMARY KEY,
    app TEXT NOT NULL REFERENCES apps(name) ON DELETE CASCADE,
    created_at TEXT NOT NULL
);
";

impl ControlDb {
    pub fn add_domain(&self, app: &AppName, domain: &Domain) -> Result<()> {
        self.app(app)?;
        let conn = self.conn.lock();
        let owner: Option<String> = conn
            .query_row(
                "SELECT app FROM domains WHERE domain = ?1",
                params![domain.as_str()],
                |r| r.get(0),
            )
            .optional()?;
        match owner {
            Some(owner) if owner == app.as_str() => Ok(()),
            Some(_) => Err(StoreError::Conflict(format!(
                "{domain} is already added to another app"
            ))),
            None => {
                conn.execute(
                    "INSERT INTO domains (domain, app, created_at) VALUES (?1, ?2, ?3)",
                    params![
                        domain.as_str(),
                        app.as_str(),
                        chrono::Utc::now().to_rfc3339()
                    ],
                )?;
                Ok(())
            }
        }
    }

    pub fn remove_domain(&self, app: &AppName, domain: &Domain) -> Result<()> {
        let removed = self.conn.lock().execute(
            "DELETE FROM domains WHERE domain = ?1 AND app = ?2",
            params![domain.as_str(), app.as_str()],
        )?;
        if removed == 0 {
            return Err(StoreError::NotFound(format!("domain {domain} of {app}")));
        }
        Ok(())
    }

    pub fn domains(&self, app: &AppName) -> Result<Vec<Domain>> {
        self.app(app)?;
        let conn = self.conn.lock();
        let mut stmt = conn.prepare("SELECT domain FROM domains WHERE app = ?1 ORDER BY domain")?;
        let rows = stmt.query_map(params![app.as_str()], |r| r.get::<_, String>(0))?;
        rows.map(|row| super::stored(&row?)).collect()
    }

    pub fn all_domains(&self) -> Result<Vec<(Domain, AppName)>> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare("SELECT domain, app FROM domains ORDER BY domain")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        rows.map(|row| {
            let (domain, app) = row?;
            Ok((super::stored(&domain)?, super::stored(&app)?))
        })
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_domain_belongs_to_one_app_and_goes_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = ControlDb::open(&dir.path().join("control.db")).unwrap();
        let (a, b): (AppName, AppName) = ("alpha".parse().unwrap(), "beta".parse().unwrap());
        db.create_app(&a).unwrap();
        db.create_app(&b).unwrap();
        let www: Domain = "www.example.com".parse().unwrap();
        db.add_domain(&a, &www).unwrap();
        db.add_domain(&a, &www).unwrap(); // again: nothing changes
        assert!(matches!(
            db.add_domain(&b, &www),
            Err(StoreError::Conflict(_))
        ));
        assert!(matches!(
            db.remove_domain(&b, &www),
            Err(StoreError::NotFound(_))
        ));
        assert!(matches!(
            db.add_domain(&"gamma".parse().unwrap(), &www),
            Err(StoreError::NotFound(_))
        ));
        assert_eq!(db.domains(&a).unwrap(), vec![www.clone()]);
        assert_eq!(db.all_domains().unwrap(), vec![(www.clone(), a.clone())]);
        db.delete_app(&a).unwrap();
        assert!(db.all_domains().unwrap().is_empty());
        db.add_domain(&b, &www).unwrap();
        db.remove_domain(&b, &www).unwrap();
        assert!(db.domains(&b).unwrap().is_empty());
    }
}
