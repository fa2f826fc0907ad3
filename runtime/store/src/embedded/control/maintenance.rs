//! An app's maintenance mode in the control database: a column of its row, changed with
//! its revision so that the host's next look applies it without reading anything else.

use super::ControlDb;
use crate::error::Result;
use crate::model::App;
use rusqlite::params;
use wdeploy_core::AppName;

impl ControlDb {
    pub fn set_maintenance(&self, name: &AppName, on: bool) -> Result<App> {
        // Already so: nothing changes, and no look is owed.
        self.conn.lock().execute(
            "UPDATE apps SET maintenance = ?2, revision = revision + 1
             WHERE name = ?1 AND maintenance != ?2",
            params![name.as_str(), on],
        )?;
        self.app(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::StoreError;

    #[test]
    fn maintenance_is_kept_moves_the_revision_once_and_needs_the_app() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("control.db");
        let hello: AppName = "hello".parse().unwrap();
        let state = ControlDb::open(&db).unwrap();
        let made = state.create_app(&hello).unwrap();
        assert!(!made.maintenance);
        let on = state.set_maintenance(&hello, true).unwrap();
        assert!(on.maintenance);
        assert!(on.revision > made.revision, "the next look must apply it");
        // Again: nothing changes, not even the revision.
        assert_eq!(state.set_maintenance(&hello, true).unwrap(), on);
        drop(state);
        let state = ControlDb::open(&db).unwrap();
        assert!(state.app(&hello).unwrap().maintenance);
        assert!(state.apps().unwrap()[0].maintenance);
        assert!(!state.set_maintenance(&hello, false).unwrap().maintenance);
        let nobody: AppName = "nobody".parse().unwrap();
        assert!(matches!(
            state.set_maintenance(&nobody, true),
            Err(StoreError::NotFound(_))
        ));
    }
}
