//! People, tokens and access in `state.db`: the embedded backend of [`People`].
//!
//! `tokens` predates people: a token's `name` is its person's email (the admin token's is
//! `admin`); `id` and `description` were added later and are filled in once on open.
//! `access` is keyed by the app's id (no foreign key to `apps`, which is keyed by name):
//! the host forgets an app's rows when it destroys the app.

use super::control::{ControlDb, EmbeddedControl};
use crate::error::{Result, StoreError};
use crate::model::AppId;
use crate::people::{People, RemovedUser, SessionRecord, TokenOwner, TokenRecord, User};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use wdeploy_core::{Digest, Person, TokenId};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users (
    email TEXT PRIMARY KEY,
    admin INTEGER NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS access (
    app_id TEXT NOT NULL,
    email TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (app_id, email)
);
CREATE INDEX IF NOT EXISTS access_by_email ON access (email);
CREATE TABLE IF NOT EXISTS sessions (
    token_id TEXT NOT NULL,
    secret TEXT NOT NULL,
    token TEXT NOT NULL,
    expires_ms INTEGER NOT NULL,
    PRIMARY KEY (token_id, secret)
);
";

/// Creates the people tables and gives tokens of an older database their id and
/// description, in one transaction.
pub(super) fn migrate(conn: &mut Connection) -> Result<()> {
    let tx = conn.transaction()?;
    tx.execute_batch(SCHEMA)?;
    let columns: Vec<String> = tx
        .prepare("SELECT name FROM pragma_table_info('tokens')")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    if !columns.iter().any(|c| c == "id") {
        tx.execute_batch(
            "ALTER TABLE tokens ADD COLUMN id TEXT;
             ALTER TABLE tokens ADD COLUMN description TEXT NOT NULL DEFAULT '';",
        )?;
        let hashes: Vec<String> = tx
            .prepare("SELECT hash FROM tokens WHERE id IS NULL")?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        for hash in hashes {
            tx.execute(
                "UPDATE tokens SET id = ?1 WHERE hash = ?2",
                params![random_token_id().as_str(), hash],
            )?;
        }
        tx.execute_batch("CREATE UNIQUE INDEX IF NOT EXISTS tokens_by_id ON tokens (id);")?;
    }
    tx.commit()?;
    Ok(())
}

/// A fresh public id for a token made before ids (from a CSPRNG, through uuid v4).
pub(crate) fn random_token_id() -> TokenId {
    let uuid = uuid::Uuid::new_v4();
    let mut bytes = [0u8; 6];
    bytes.copy_from_slice(&uuid.as_bytes()[..6]);
    TokenId::from_random(&bytes)
}

impl ControlDb {
    fn add_user(
        &self,
        email: &Person,
        admin: bool,
        or_existing: bool,
        created_at: DateTime<Utc>,
    ) -> Result<User> {
        let conn = self.conn.lock();
        let inserted = conn.execute(
            "INSERT OR IGNORE INTO users (email, admin, created_at) VALUES (?1, ?2, ?3)",
            params![email.as_str(), admin, created_at.to_rfc3339()],
        )?;
        if inserted == 0 && !or_existing {
            return Err(StoreError::Conflict(format!("{email} is already a user")));
        }
        read_user(&conn, email)?
            .ok_or_else(|| StoreError::Backend(format!("user {email} vanished")))
    }

    fn users(&self) -> Result<Vec<User>> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare("SELECT email, admin, created_at FROM users ORDER BY email")?;
        let rows = stmt.query_map([], row_to_user)?;
        rows.map(|row| row?).collect()
    }

    /// Removes a person, their tokens and their access in one transaction.
    fn remove_user(&self, email: &Person) -> Result<RemovedUser> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        let apps: Vec<String> = tx
            .prepare("SELECT app_id FROM access WHERE email = ?1 ORDER BY app_id")?
            .query_map(params![email.as_str()], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let tokens = tx.execute(
            "DELETE FROM tokens WHERE name = ?1",
            params![email.as_str()],
        )?;
        tx.execute(
            "DELETE FROM access WHERE email = ?1",
            params![email.as_str()],
        )?;
        if tx.execute(
            "DELETE FROM users WHERE email = ?1",
            params![email.as_str()],
        )? == 0
        {
            return Err(StoreError::NotFound(format!("user {email}")));
        }
        tx.commit()?;
        let apps = apps.iter().map(|a| stored(a)).collect::<Result<_>>()?;
        Ok(RemovedUser { tokens, apps })
    }

    fn add_token(&self, token: &TokenRecord) -> Result<()> {
        self.conn.lock().execute(
            "INSERT INTO tokens (hash, name, created_at, id, description) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                token.hash.as_str(),
                token.user.as_str(),
                token.created_at.to_rfc3339(),
                token.id.as_str(),
                token.description
            ],
        )?;
        Ok(())
    }

    fn token(&self, hash: &Digest) -> Result<Option<TokenOwner>> {
        let conn = self.conn.lock();
        let found = conn
            .query_row(
                "SELECT t.hash, t.name, t.created_at, t.id, t.description, COALESCE(u.admin, 0)
                 FROM tokens t LEFT JOIN users u ON u.email = t.name WHERE t.hash = ?1",
                params![hash.as_str()],
                |r| Ok((row_to_token(r), r.get::<_, bool>(5)?)),
            )
            .optional()?;
        match found {
            None => Ok(None),
            Some((token, admin)) => Ok(Some(TokenOwner {
                token: token??,
                admin,
            })),
        }
    }

    fn tokens(&self) -> Result<Vec<TokenRecord>> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare(
            "SELECT hash, name, created_at, id, description FROM tokens ORDER BY created_at, id",
        )?;
        let rows = stmt.query_map([], row_to_token)?;
        rows.map(|row| row?).collect()
    }

    fn revoke_token(&self, id: &TokenId) -> Result<()> {
        let deleted = self
            .conn
            .lock()
            .execute("DELETE FROM tokens WHERE id = ?1", params![id.as_str()])?;
        if deleted == 0 {
            return Err(StoreError::NotFound(format!("token {id}")));
        }
        Ok(())
    }

    /// Keeps a session of `token_id`, in one transaction with the removal of the ended
    /// ones and, past `max`, of those closest to their end.
    fn open_session(&self, token_id: &TokenId, session: &SessionRecord, max: usize) -> Result<()> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        let now = Utc::now().timestamp_millis();
        tx.execute("DELETE FROM sessions WHERE expires_ms <= ?1", params![now])?;
        tx.execute(
            "DELETE FROM sessions WHERE token_id = ?1 AND secret IN (SELECT secret FROM \
             sessions WHERE token_id = ?1 ORDER BY expires_ms DESC LIMIT -1 OFFSET ?2)",
            params![token_id.as_str(), max.saturating_sub(1) as i64],
        )?;
        tx.execute(
            "INSERT OR REPLACE INTO sessions (token_id, secret, token, expires_ms) \
             VALUES (?1, ?2, ?3, ?4)",
            params![
                token_id.as_str(),
                session.secret.as_str(),
                session.token.as_str(),
                session.expires_ms
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn session(&self, token_id: &TokenId, secret: &Digest) -> Result<Option<Digest>> {
        let token: Option<String> = self
            .conn
            .lock()
            .query_row(
                "SELECT token FROM sessions WHERE token_id = ?1 AND secret = ?2 AND expires_ms > ?3",
                params![token_id.as_str(), secret.as_str(), Utc::now().timestamp_millis()],
                |r| r.get(0),
            )
            .optional()?;
        token.map(|t| stored(&t)).transpose()
    }

    fn close_session(&self, token_id: &TokenId, secret: &Digest) -> Result<()> {
        self.conn.lock().execute(
            "DELETE FROM sessions WHERE token_id = ?1 AND secret = ?2",
            params![token_id.as_str(), secret.as_str()],
        )?;
        Ok(())
    }

    fn grant(&self, app: &AppId, email: &Person) -> Result<()> {
        self.conn.lock().execute(
            "INSERT OR IGNORE INTO access (app_id, email, created_at) VALUES (?1, ?2, ?3)",
            params![app.as_str(), email.as_str(), Utc::now().to_rfc3339()],
        )?;
        Ok(())
    }

    fn revoke(&self, app: &AppId, email: &Person) -> Result<()> {
        let deleted = self.conn.lock().execute(
            "DELETE FROM access WHERE app_id = ?1 AND email = ?2",
            params![app.as_str(), email.as_str()],
        )?;
        if deleted == 0 {
            return Err(StoreError::NotFound(format!("access of {email}")));
        }
        Ok(())
    }

    fn may_act_on(&self, app: &AppId, email: &Person) -> Result<bool> {
        Ok(self
            .conn
            .lock()
            .query_row(
                "SELECT 1 FROM access WHERE app_id = ?1 AND email = ?2",
                params![app.as_str(), email.as_str()],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    fn access_column(&self, sql: &str, key: &str) -> Result<Vec<String>> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare(sql)?;
        let rows = stmt.query_map(params![key], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

fn read_user(conn: &Connection, email: &Person) -> Result<Option<User>> {
    conn.query_row(
        "SELECT email, admin, created_at FROM users WHERE email = ?1",
        params![email.as_str()],
        row_to_user,
    )
    .optional()?
    .transpose()
}

fn row_to_user(r: &rusqlite::Row) -> rusqlite::Result<Result<User>> {
    let (email, admin, created_at): (String, bool, String) = (r.get(0)?, r.get(1)?, r.get(2)?);
    Ok((|| {
        Ok(User {
            email: stored(&email)?,
            admin,
            created_at: time(&created_at)?,
        })
    })())
}

fn row_to_token(r: &rusqlite::Row) -> rusqlite::Result<Result<TokenRecord>> {
    let hash: String = r.get(0)?;
    let user: String = r.get(1)?;
    let created_at: String = r.get(2)?;
    let id: String = r.get(3)?;
    let description: String = r.get(4)?;
    Ok((|| {
        Ok(TokenRecord {
            id: stored(&id)?,
            hash: stored(&hash)?,
            user: stored(&user)?,
            description,
            created_at: time(&created_at)?,
        })
    })())
}

fn stored<T: std::str::FromStr>(text: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    text.parse()
        .map_err(|e| StoreError::Backend(format!("stored value `{text}` is unreadable: {e}")))
}

fn time(text: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Backend(format!("stored time `{text}` is unreadable: {e}")))
}

#[async_trait]
impl People for EmbeddedControl {
    async fn add_user_at(
        &self,
        email: &Person,
        admin: bool,
        created_at: DateTime<Utc>,
    ) -> Result<User> {
        let email = email.clone();
        self.blocking(move |db| db.add_user(&email, admin, false, created_at))
            .await
    }
    async fn ensure_user(&self, email: &Person, admin: bool) -> Result<User> {
        let email = email.clone();
        self.blocking(move |db| db.add_user(&email, admin, true, Utc::now()))
            .await
    }
    async fn user(&self, email: &Person) -> Result<Option<User>> {
        let email = email.clone();
        self.blocking(move |db| read_user(&db.conn.lock(), &email))
            .await
    }
    async fn users(&self) -> Result<Vec<User>> {
        self.blocking(|db| db.users()).await
    }
    async fn remove_user(&self, email: &Person) -> Result<RemovedUser> {
        let email = email.clone();
        self.blocking(move |db| db.remove_user(&email)).await
    }
    async fn open_session(
        &self,
        token_id: &TokenId,
        session: SessionRecord,
        max: usize,
    ) -> Result<()> {
        let token_id = token_id.clone();
        self.blocking(move |db| db.open_session(&token_id, &session, max))
            .await
    }
    async fn session(&self, token_id: &TokenId, secret: &Digest) -> Result<Option<Digest>> {
        let (token_id, secret) = (token_id.clone(), secret.clone());
        self.blocking(move |db| db.session(&token_id, &secret))
            .await
    }
    async fn close_session(&self, token_id: &TokenId, secret: &Digest) -> Result<()> {
        let (token_id, secret) = (token_id.clone(), secret.clone());
        self.blocking(move |db| db.close_session(&token_id, &secret))
            .await
    }
    async fn add_token(&self, token: &TokenRecord) -> Result<()> {
        let token = token.clone();
        self.blocking(move |db| db.add_token(&token)).await
    }
    async fn token(&self, hash: &Digest) -> Result<Option<TokenOwner>> {
        let hash = hash.clone();
        self.blocking(move |db| db.token(&hash)).await
    }
    async fn tokens(&self) -> Result<Vec<TokenRecord>> {
        self.blocking(|db| db.tokens()).await
    }
    async fn revoke_token(&self, id: &TokenId) -> Result<()> {
        let id = id.clone();
        self.blocking(move |db| db.revoke_token(&id)).await
    }
    async fn has_tokens(&self) -> Result<bool> {
        self.blocking(|db| {
            let n: i64 = db
                .conn
                .lock()
                .query_row("SELECT COUNT(*) FROM tokens", [], |r| r.get(0))?;
            Ok(n > 0)
        })
        .await
    }
    async fn grant(&self, app: &AppId, email: &Person) -> Result<()> {
        let (app, email) = (app.clone(), email.clone());
        self.blocking(move |db| db.grant(&app, &email)).await
    }
    async fn revoke(&self, app: &AppId, email: &Person) -> Result<()> {
        let (app, email) = (app.clone(), email.clone());
        self.blocking(move |db| db.revoke(&app, &email)).await
    }
    async fn may_act_on(&self, app: &AppId, email: &Person) -> Result<bool> {
        let (app, email) = (app.clone(), email.clone());
        self.blocking(move |db| db.may_act_on(&app, &email)).await
    }
    async fn collaborators(&self, app: &AppId) -> Result<Vec<Person>> {
        let app = app.clone();
        self.blocking(move |db| {
            db.access_column(
                "SELECT email FROM access WHERE app_id = ?1 ORDER BY email",
                app.as_str(),
            )?
            .iter()
            .map(|e| stored(e))
            .collect()
        })
        .await
    }
    async fn apps_of(&self, email: &Person) -> Result<Vec<AppId>> {
        let email = email.clone();
        self.blocking(move |db| {
            db.access_column(
                "SELECT app_id FROM access WHERE email = ?1 ORDER BY app_id",
                email.as_str(),
            )?
            .iter()
            .map(|id| stored(id))
            .collect()
        })
        .await
    }
    async fn forget_app(&self, app: &AppId) -> Result<()> {
        let app = app.clone();
        self.blocking(move |db| {
            db.conn.lock().execute(
                "DELETE FROM access WHERE app_id = ?1",
                params![app.as_str()],
            )?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn person(s: &str) -> Person {
        s.parse().unwrap()
    }

    fn token(user: &str, secret: &str) -> TokenRecord {
        TokenRecord {
            id: random_token_id(),
            hash: Digest::of_bytes(secret.as_bytes()),
            user: person(user),
            description: format!("{user}'s"),
            created_at: Utc::now(),
        }
    }

    #[tokio::test]
    async fn people_tokens_and_access_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let people = EmbeddedControl(Arc::new(ControlDb::open(&path).unwrap()));
        assert!(!people.has_tokens().await.unwrap());
        people.ensure_user(&Person::admin(), true).await.unwrap();
        people.ensure_user(&Person::admin(), false).await.unwrap();
        let ann = people.add_user(&person("ann@x.io"), false).await.unwrap();
        assert!(!ann.admin);
        assert!(matches!(
            people.add_user(&person("ann@x.io"), false).await,
            Err(StoreError::Conflict(_))
        ));
        let (admin_token, ann_token) = (token("admin", "a"), token("ann@x.io", "b"));
        people.add_token(&admin_token).await.unwrap();
        people.add_token(&ann_token).await.unwrap();
        let app = AppId::random();
        people.grant(&app, &person("ann@x.io")).await.unwrap();
        people.grant(&app, &person("ann@x.io")).await.unwrap();
        drop(people);

        let people = EmbeddedControl(Arc::new(ControlDb::open(&path).unwrap()));
        let owner = people.token(&ann_token.hash).await.unwrap().unwrap();
        assert_eq!((owner.token, owner.admin), (ann_token.clone(), false));
        let owner = people.token(&admin_token.hash).await.unwrap().unwrap();
        assert!(owner.admin);
        assert_eq!(people.token(&Digest::of_bytes(b"c")).await.unwrap(), None);
        assert_eq!(people.tokens().await.unwrap().len(), 2);
        assert!(people.may_act_on(&app, &person("ann@x.io")).await.unwrap());
        assert!(!people.may_act_on(&app, &Person::admin()).await.unwrap());
        assert!(
            !people
                .may_act_on(&AppId::random(), &person("ann@x.io"))
                .await
                .unwrap()
        );
        assert_eq!(
            people.collaborators(&app).await.unwrap(),
            vec![person("ann@x.io")]
        );
        assert_eq!(
            people.apps_of(&person("ann@x.io")).await.unwrap(),
            vec![app.clone()]
        );

        people.revoke_token(&ann_token.id).await.unwrap();
        assert_eq!(people.token(&ann_token.hash).await.unwrap(), None);
        assert!(matches!(
            people.revoke_token(&ann_token.id).await,
            Err(StoreError::NotFound(_))
        ));
        people.revoke(&app, &person("ann@x.io")).await.unwrap();
        assert!(matches!(
            people.revoke(&app, &person("ann@x.io")).await,
            Err(StoreError::NotFound(_))
        ));
        people.grant(&app, &person("ann@x.io")).await.unwrap();
        people.forget_app(&app).await.unwrap();
        assert!(people.collaborators(&app).await.unwrap().is_empty());
    }

    #[test]
    fn tokens_of_an_older_database_get_ids() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE tokens (hash TEXT PRIMARY KEY, name TEXT NOT NULL, created_at TEXT NOT NULL);",
            )
            .unwrap();
            conn.execute(
                "INSERT INTO tokens VALUES (?1, 'admin', ?2)",
                params![Digest::of_bytes(b"old").as_str(), Utc::now().to_rfc3339()],
            )
            .unwrap();
        }
        let db = ControlDb::open(&path).unwrap();
        let tokens = db.tokens().unwrap();
        assert_eq!(tokens.len(), 1);
        assert_eq!(tokens[0].user, Person::admin());
        assert_eq!(tokens[0].id.as_str().len(), TokenId::LEN);
    }
}
