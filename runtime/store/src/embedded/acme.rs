//! ACME accounts and HTTP-01 challenges in `state.db`: the embedded backend of
//! [`AcmeStore`]. An account holds its private key: like config vars, it lives only in
//! the host user's private database.

use super::control::ControlDb;
use crate::acme::{AcmeStore, CHALLENGE_TTL, check_token, valid_token};
use crate::error::{Result, StoreError};
use async_trait::async_trait;
use chrono::Utc;
use rusqlite::{OptionalExtension, params};
use std::sync::Arc;
use std::time::Duration;

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS acme_accounts (
    directory TEXT PRIMARY KEY,
    credentials TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS acme_challenges (
    token TEXT PRIMARY KEY,
    key_authorization TEXT NOT NULL,
    -- Unix seconds: past it the challenge is gone (read as absent, deleted at the next put).
    expires_at INTEGER NOT NULL
);
";

/// The ACME facet over the control database.
#[derive(Clone)]
pub struct EmbeddedAcme {
    db: Arc<ControlDb>,
    challenge_ttl: Duration,
}

impl EmbeddedAcme {
    pub(crate) fn new(db: Arc<ControlDb>) -> EmbeddedAcme {
        EmbeddedAcme::with_ttl(db, CHALLENGE_TTL)
    }

    /// Challenges kept for `challenge_ttl` (tests shorten it).
    pub(crate) fn with_ttl(db: Arc<ControlDb>, challenge_ttl: Duration) -> EmbeddedAcme {
        EmbeddedAcme { db, challenge_ttl }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        call: impl FnOnce(&ControlDb) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let db = self.db.clone();
        super::off_async("state database", move || call(&db))
            .await
            .map_err(StoreError::Backend)?
    }
}

fn now_secs() -> i64 {
    Utc::now().timestamp()
}

#[async_trait]
impl AcmeStore for EmbeddedAcme {
    async fn account(&self, directory: &str) -> Result<Option<String>> {
        let directory = directory.to_string();
        self.blocking(move |db| {
            Ok(db
                .conn
                .lock()
                .query_row(
                    "SELECT credentials FROM acme_accounts WHERE directory = ?1",
                    params![directory],
                    |r| r.get(0),
                )
                .optional()?)
        })
        .await
    }

    async fn save_account(&self, directory: &str, credentials: String) -> Result<String> {
        let directory = directory.to_string();
        self.blocking(move |db| {
            let mut conn = db.conn.lock();
            let tx = conn.transaction()?;
            tx.execute(
                "INSERT OR IGNORE INTO acme_accounts (directory, credentials, created_at)
                 VALUES (?1, ?2, ?3)",
                params![directory, credentials, Utc::now().to_rfc3339()],
            )?;
            let kept: String = tx.query_row(
                "SELECT credentials FROM acme_accounts WHERE directory = ?1",
                params![directory],
                |r| r.get(0),
            )?;
            tx.commit()?;
            Ok(kept)
        })
        .await
    }

    async fn put_challenge(&self, token: &str, key_authorization: &str) -> Result<()> {
        check_token(token)?;
        let (token, key_authorization) = (token.to_string(), key_authorization.to_string());
        let ttl = i64::try_from(self.challenge_ttl.as_secs()).unwrap_or(i64::MAX);
        self.blocking(move |db| {
            let mut conn = db.conn.lock();
            let tx = conn.transaction()?;
            let now = now_secs();
            // Challenges whose node stopped before removing them go here.
            tx.execute(
                "DELETE FROM acme_challenges WHERE expires_at <= ?1",
                params![now],
            )?;
            tx.execute(
                "INSERT OR REPLACE INTO acme_challenges (token, key_authorization, expires_at)
                 VALUES (?1, ?2, ?3)",
                params![token, key_authorization, now.saturating_add(ttl)],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn challenge(&self, token: &str) -> Result<Option<String>> {
        if !valid_token(token) {
            return Ok(None);
        }
        let token = token.to_string();
        self.blocking(move |db| {
            Ok(db
                .conn
                .lock()
                .query_row(
                    "SELECT key_authorization FROM acme_challenges
                     WHERE token = ?1 AND expires_at > ?2",
                    params![token, now_secs()],
                    |r| r.get(0),
                )
                .optional()?)
        })
        .await
    }

    async fn remove_challenge(&self, token: &str) -> Result<()> {
        if !valid_token(token) {
            return Ok(());
        }
        let token = token.to_string();
        self.blocking(move |db| {
            db.conn.lock().execute(
                "DELETE FROM acme_challenges WHERE token = ?1",
                params![token],
            )?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &std::path::Path, ttl: Duration) -> EmbeddedAcme {
        let db = ControlDb::open(&dir.join("state.db")).unwrap();
        EmbeddedAcme::with_ttl(Arc::new(db), ttl)
    }

    #[tokio::test]
    async fn accounts_are_created_once_per_directory_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let le = "https://acme-v02.api.letsencrypt.org/directory";
        let pebble = "https://127.0.0.1:14000/dir";
        {
            let acme = open(dir.path(), CHALLENGE_TTL);
            assert_eq!(acme.account(le).await.unwrap(), None);
            let first = acme
                .save_account(le, "{\"id\":\"a\"}".into())
                .await
                .unwrap();
            assert_eq!(first, "{\"id\":\"a\"}");
            // Another node (or a second order) made one meanwhile: the first one wins.
            let second = acme
                .save_account(le, "{\"id\":\"b\"}".into())
                .await
                .unwrap();
            assert_eq!(second, "{\"id\":\"a\"}");
            assert_eq!(acme.account(pebble).await.unwrap(), None);
            acme.save_account(pebble, "{\"id\":\"p\"}".into())
                .await
                .unwrap();
        }
        let acme = open(dir.path(), CHALLENGE_TTL);
        assert_eq!(
            acme.account(le).await.unwrap().as_deref(),
            Some("{\"id\":\"a\"}")
        );
        assert_eq!(
            acme.account(pebble).await.unwrap().as_deref(),
            Some("{\"id\":\"p\"}")
        );
    }

    #[tokio::test]
    async fn challenges_are_kept_until_removed_and_no_longer_than_their_ttl() {
        let dir = tempfile::tempdir().unwrap();
        let acme = open(dir.path(), CHALLENGE_TTL);
        acme.put_challenge("tok-1_A", "tok-1_A.thumb")
            .await
            .unwrap();
        acme.put_challenge("tok2", "tok2.thumb").await.unwrap();
        assert_eq!(
            acme.challenge("tok-1_A").await.unwrap().as_deref(),
            Some("tok-1_A.thumb")
        );
        assert_eq!(acme.challenge("nope").await.unwrap(), None);
        // A token no ACME server makes is neither kept nor looked up.
        let bad = acme.put_challenge("../x", "x").await;
        assert!(matches!(bad, Err(StoreError::Invalid(_))), "{bad:?}");
        assert_eq!(acme.challenge("a b").await.unwrap(), None);
        acme.remove_challenge("tok-1_A").await.unwrap();
        acme.remove_challenge("tok-1_A").await.unwrap();
        assert_eq!(acme.challenge("tok-1_A").await.unwrap(), None);
        assert!(acme.challenge("tok2").await.unwrap().is_some());

        // Past its TTL a challenge reads as gone, and the next put deletes it.
        let short = open(dir.path(), Duration::ZERO);
        short.put_challenge("brief", "brief.thumb").await.unwrap();
        assert_eq!(short.challenge("brief").await.unwrap(), None);
        acme.put_challenge("later", "later.thumb").await.unwrap();
        let left: i64 = acme
            .db
            .conn
            .lock()
            .query_row(
                "SELECT COUNT(*) FROM acme_challenges WHERE token = 'brief'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(left, 0, "an expired challenge is deleted by the next put");
    }
}
