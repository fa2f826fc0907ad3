//! ACME accounts and HTTP-01 challenges in the KV bucket `wdeploy-acme`: the cluster
//! backend of [`AcmeStore`], shared by every node (the node that orders publishes the
//! challenge; whichever node's router the ACME server reaches answers it).
//!
//! Keys: `account.HEX(directory URL)` → the credentials (created only if absent, so the
//! cluster keeps one account per directory), and `challenge.TOKEN` → the key
//! authorization, written with a per-message TTL (the bucket allows them), so a
//! challenge its node never removed expires by itself. Tokens are checked to be base64url
//! first, so one is always a valid key.

use super::control::{create, list_keys};
use super::{Nats, unavailable};
use crate::acme::{AcmeStore, CHALLENGE_TTL, check_token, valid_token};
use crate::error::Result;
use async_nats::jetstream::kv;
use async_trait::async_trait;
use bytes::Bytes;
use std::time::Duration;

pub(super) const ACME: &str = "wdeploy-acme";

/// The ACME facet in JetStream KV.
pub struct ClusterAcme {
    nats: Nats,
    bucket: kv::Store,
    challenge_ttl: Duration,
}

fn account_key(directory: &str) -> String {
    format!("account.{}", hex::encode(directory))
}

fn challenge_key(token: &str) -> String {
    format!("challenge.{token}")
}

impl ClusterAcme {
    /// Opens (creating it on the cluster's first node) the bucket.
    pub async fn open(nats: &Nats) -> Result<ClusterAcme> {
        ClusterAcme::open_with_ttl(nats, CHALLENGE_TTL).await
    }

    /// Challenges kept for `challenge_ttl` (at least a second; tests shorten it).
    pub async fn open_with_ttl(nats: &Nats, challenge_ttl: Duration) -> Result<ClusterAcme> {
        let bucket = nats
            .bucket(kv::Config {
                bucket: ACME.to_string(),
                description: "wdeploy: ACME accounts and HTTP-01 challenges".to_string(),
                history: 1,
                storage: async_nats::jetstream::stream::StorageType::File,
                // Allows per-message TTLs (the challenges'); the markers left when one
                // expires go after a minute.
                limit_markers: Some(Duration::from_secs(60)),
                ..Default::default()
            })
            .await?;
        Ok(ClusterAcme {
            nats: nats.clone(),
            bucket,
            challenge_ttl: challenge_ttl.max(Duration::from_secs(1)),
        })
    }

    /// The keys of the challenges kept now (for tests: none pile up).
    pub async fn challenge_keys(&self) -> Result<Vec<String>> {
        let keys = list_keys(&self.bucket, "listing ACME challenges").await?;
        Ok(keys
            .into_iter()
            .filter(|k| k.starts_with("challenge."))
            .collect())
    }
}

#[async_trait]
impl AcmeStore for ClusterAcme {
    async fn account(&self, directory: &str) -> Result<Option<String>> {
        self.nats.check()?;
        let value = self
            .bucket
            .get(account_key(directory))
            .await
            .map_err(|e| unavailable(format!("reading the ACME account: {e}")))?;
        Ok(value.map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    async fn save_account(&self, directory: &str, credentials: String) -> Result<String> {
        self.nats.check()?;
        let key = account_key(directory);
        let what = "saving the ACME account";
        if create(&self.bucket, &key, Bytes::from(credentials.clone()), what).await? {
            return Ok(credentials);
        }
        // Another node made one first: that one is the cluster's.
        match self.account(directory).await? {
            Some(kept) => Ok(kept),
            None => Err(unavailable(format!(
                "{what}: the account there vanished meanwhile"
            ))),
        }
    }

    async fn put_challenge(&self, token: &str, key_authorization: &str) -> Result<()> {
        check_token(token)?;
        self.nats.check()?;
        // A put carrying a TTL (the KV API's own puts cannot): a token published again
        // (an order retried) replaces the one there, with a new TTL.
        let key = challenge_key(token);
        let subject = format!(
            "{}{key}",
            self.bucket
                .put_prefix
                .as_deref()
                .unwrap_or(&self.bucket.prefix)
        );
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(
            async_nats::header::NATS_MESSAGE_TTL,
            self.challenge_ttl.as_secs().to_string().as_str(),
        );
        let what = "publishing an ACME challenge";
        let ack = self
            .nats
            .js
            .publish_with_headers(subject, headers, Bytes::from(key_authorization.to_string()))
            .await
            .map_err(|e| unavailable(format!("{what}: {e}")))?;
        ack.await.map_err(|e| unavailable(format!("{what}: {e}")))?;
        Ok(())
    }

    async fn challenge(&self, token: &str) -> Result<Option<String>> {
        if !valid_token(token) {
            return Ok(None);
        }
        self.nats.check()?;
        let value = self
            .bucket
            .get(challenge_key(token))
            .await
            .map_err(|e| unavailable(format!("reading an ACME challenge: {e}")))?;
        Ok(value.map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    async fn remove_challenge(&self, token: &str) -> Result<()> {
        if !valid_token(token) {
            return Ok(());
        }
        self.nats.check()?;
        self.bucket
            .purge(challenge_key(token))
            .await
            .map_err(|e| unavailable(format!("removing an ACME challenge: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::testing::NatsServer;
    use crate::error::StoreError;
    use std::time::Instant;

    async fn node(server: &NatsServer, name: &str, ttl: Duration) -> ClusterAcme {
        let nats = Nats::connect(&server.url(), &name.parse().unwrap())
            .await
            .unwrap();
        ClusterAcme::open_with_ttl(&nats, ttl).await.unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_account_per_directory_and_challenges_shared_by_nodes() {
        let server = NatsServer::start().unwrap();
        let a = node(&server, "a", CHALLENGE_TTL).await;
        let b = node(&server, "b", CHALLENGE_TTL).await;
        let dir = "https://127.0.0.1:14000/dir";
        assert_eq!(a.account(dir).await.unwrap(), None);
        assert_eq!(a.save_account(dir, "A".into()).await.unwrap(), "A");
        // The second node to make one keeps the first's.
        assert_eq!(b.save_account(dir, "B".into()).await.unwrap(), "A");
        assert_eq!(b.account(dir).await.unwrap().as_deref(), Some("A"));
        assert_eq!(b.account("https://other/dir").await.unwrap(), None);

        // Published on one node, answered on the other.
        a.put_challenge("tok_1-x", "tok_1-x.thumb").await.unwrap();
        assert_eq!(
            b.challenge("tok_1-x").await.unwrap().as_deref(),
            Some("tok_1-x.thumb")
        );
        // Published again (an order retried): the new one.
        a.put_challenge("tok_1-x", "tok_1-x.again").await.unwrap();
        assert_eq!(
            b.challenge("tok_1-x").await.unwrap().as_deref(),
            Some("tok_1-x.again")
        );
        assert_eq!(b.challenge("unknown").await.unwrap(), None);
        let bad = a.put_challenge("a.b", "x").await;
        assert!(matches!(bad, Err(StoreError::Invalid(_))), "{bad:?}");
        assert_eq!(b.challenge("a.>").await.unwrap(), None);
        b.remove_challenge("tok_1-x").await.unwrap();
        b.remove_challenge("tok_1-x").await.unwrap();
        assert_eq!(a.challenge("tok_1-x").await.unwrap(), None);
        // The account stays.
        assert_eq!(a.account(dir).await.unwrap().as_deref(), Some("A"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_challenge_nobody_removes_expires_by_itself() {
        let server = NatsServer::start().unwrap();
        let acme = node(&server, "a", Duration::from_secs(1)).await;
        acme.save_account("https://x/dir", "A".into())
            .await
            .unwrap();
        for n in 0..5 {
            acme.put_challenge(&format!("left{n}"), "k").await.unwrap();
        }
        assert_eq!(acme.challenge_keys().await.unwrap().len(), 5);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = acme.challenge_keys().await.unwrap();
            if left.is_empty() {
                break;
            }
            assert!(Instant::now() < deadline, "still kept after 20 s: {left:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(acme.challenge("left0").await.unwrap(), None);
        // Accounts have no TTL.
        assert_eq!(
            acme.account("https://x/dir").await.unwrap().as_deref(),
            Some("A")
        );
    }
}
