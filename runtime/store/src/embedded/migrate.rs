//! What opening `state.db` does to a database an older wdeploy made: columns added,
//! values filled in, once.

use crate::error::Result;
use crate::model::AppId;
use rusqlite::Connection;
use rusqlite::params;

/// Adds the revision column to a database made before it (every app at revision 0).
pub(super) fn add_revisions(conn: &Connection) -> Result<()> {
    add_app_column(conn, "revision", "INTEGER NOT NULL DEFAULT 0")
}

/// Adds the maintenance column to a database made before it (every app serving).
pub(super) fn add_maintenance(conn: &Connection) -> Result<()> {
    add_app_column(conn, "maintenance", "INTEGER NOT NULL DEFAULT 0")
}

/// Adds `column` to the apps table unless it has it (both names are this file's own).
fn add_app_column(conn: &Connection, column: &str, definition: &str) -> Result<()> {
    let has_column = conn
        .prepare("SELECT 1 FROM pragma_table_info('apps') WHERE name = ?1")?
        .exists([column])?;
    if !has_column {
        conn.execute_batch(&format!(
            "ALTER TABLE apps ADD COLUMN {column} {definition}"
        ))?;
    }
    Ok(())
}

/// Gives every app of a database made before app ids its id (and adds the column), in
/// one transaction; a database that has them is left as it is.
pub(super) fn give_apps_ids(conn: &mut Connection) -> Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let has_column = tx
        .prepare("SELECT 1 FROM pragma_table_info('apps') WHERE name = 'id'")?
        .exists([])?;
    if !has_column {
        tx.execute_batch("ALTER TABLE apps ADD COLUMN id TEXT")?;
    }
    let unnamed: Vec<String> = tx
        .prepare("SELECT name FROM apps WHERE id IS NULL")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for name in &unnamed {
        tx.execute(
            "UPDATE apps SET id = ?2 WHERE name = ?1",
            params![name, AppId::random().as_str()],
        )?;
    }
    tx.execute_batch("CREATE UNIQUE INDEX IF NOT EXISTS apps_id ON apps (id)")?;
    tx.commit()?;
    if !unnamed.is_empty() {
        tracing::info!("gave {} app(s) made before app ids an id", unnamed.len());
    }
    Ok(())
}
