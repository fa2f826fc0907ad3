//! Renaming an app in the control database. The tables key an app's rows by its name, so
//! every one of them moves with the app's row, in one transaction: a reader sees the app
//! under one name or the other, never half of it under each.

use super::ControlDb;
use crate::error::{Result, StoreError};
use crate::model::App;
use rusqlite::{OptionalExtension, params};
use wdeploy_core::AppName;

/// The tables whose `app` column names an app, children before parents.
const BY_NAME: &[&str] = &[
    "release_outputs",
    "releases",
    "formation",
    "drains",
    "certs",
    "domains",
];

impl ControlDb {
    pub fn rename_app(&self, name: &AppName, new: &AppName) -> Result<App> {
        {
            let mut conn = self.conn.lock();
            let tx = conn.transaction()?;
            let exists = |who: &AppName| -> Result<bool> {
                Ok(tx
                    .query_row(
                        "SELECT 1 FROM apps WHERE name = ?1",
                        params![who.as_str()],
                        |_| Ok(()),
                    )
                    .optional()?
                    .is_some())
            };
            if !exists(name)? {
                return Err(StoreError::NotFound(format!("app {name}")));
            }
            if exists(new)? {
                return Err(StoreError::Conflict(format!("app {new} already exists")));
            }
            // The keys move one table at a time: checked at the commit, when every row
            // names the new name again.
            tx.pragma_update(None, "defer_foreign_keys", "ON")?;
            tx.execute(
                "UPDATE apps SET name = ?2, revision = revision + 1 WHERE name = ?1",
                params![name.as_str(), new.as_str()],
            )?;
            for table in BY_NAME {
                tx.execute(
                    &format!("UPDATE {table} SET app = ?2 WHERE app = ?1"),
                    params![name.as_str(), new.as_str()],
                )?;
            }
            tx.commit()?;
        }
        self.app(new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::testing::manual;
    use crate::model::testing::new_release;
    use wdeploy_core::{Domain, Formation};

    fn app(s: &str) -> AppName {
        s.parse().unwrap()
    }

    #[test]
    fn a_renamed_app_keeps_everything_under_its_new_name_alone() {
        let dir = tempfile::tempdir().unwrap();
        let db = ControlDb::open(&dir.path().join("control.db")).unwrap();
        let (old, new, other) = (app("old-name"), app("new-name"), app("other"));
        let made = db.create_app(&old).unwrap();
        db.create_app(&other).unwrap();
        db.append_release(&old, 1, new_release("Deploy", &[("A", "1")]))
            .unwrap();
        db.set_release_output(&old, 1, "-----> Started").unwrap();
        let web3: Formation = serde_json::from_str(r#"{"web": 3}"#).unwrap();
        db.scale(&old, &web3).unwrap();
        let domain: Domain = "www.example.com".parse().unwrap();
        db.add_domain(&old, &domain).unwrap();
        db.put_cert(manual(&old, &domain, "CA")).unwrap();

        let renamed = db.rename_app(&old, &new).unwrap();
        assert_eq!(
            (renamed.name.clone(), renamed.id.clone()),
            (new.clone(), made.id)
        );
        assert!(
            renamed.revision > made.revision,
            "the next look must see it"
        );
        assert!(matches!(db.app(&old), Err(StoreError::NotFound(_))));
        assert_eq!(db.releases(&new).unwrap().len(), 1);
        assert_eq!(db.release_output(&new, 1).unwrap(), "-----> Started");
        assert_eq!(db.formation(&new).unwrap(), web3);
        assert_eq!(db.all_domains().unwrap(), vec![(domain, new.clone())]);
        let certs = db.certs(&new).unwrap();
        assert_eq!((certs.len(), &certs[0].app), (1, &new));
        let names: Vec<_> = db.apps().unwrap().into_iter().map(|a| a.name).collect();
        assert_eq!(names, vec![new.clone(), other.clone()]);

        // A taken name, or a missing app, is refused and changes nothing.
        assert!(matches!(
            db.rename_app(&new, &other),
            Err(StoreError::Conflict(_))
        ));
        assert!(matches!(
            db.rename_app(&old, &app("third")),
            Err(StoreError::NotFound(_))
        ));
        assert_eq!(db.releases(&new).unwrap().len(), 1);
        // The old name is free again.
        db.create_app(&old).unwrap();
        assert!(db.releases(&old).unwrap().is_empty());
    }
}
