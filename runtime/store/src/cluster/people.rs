//! People, tokens and access in JetStream KV buckets: the cluster backend of [`People`].
//!
//! Key layout (emails hex-encoded, so any address is a valid key):
//!
//! - `wdeploy-users`: `HEX(email)` → `{email, admin, created_at}`, created only if absent;
//! - `wdeploy-tokens`: `HEX` of the token's hash → `{name, created_at, id, description}`
//!   (`name` is the person's email; tokens of an older cluster get an id when a node opens
//!   the bucket);
//! - `wdeploy-access`: `APPID.HEX(email)` → `{email, created_at}`: one key per grant, so a
//!   check is one read and destroying an app purges `APPID.>`;
//! - `wdeploy-rates`: `HEX(email)` → the person's API calls left, shared by every node
//!   (entries expire after an hour).

use super::control::{cas, create, encode, list_keys, read};
use super::{Nats, unavailable};
use crate::embedded::random_token_id;
use crate::error::{Result, StoreError};
use crate::model::AppId;
use crate::people::{
    CallBucket, People, RemovedUser, SessionRecord, TokenOwner, TokenRecord, User,
};
use async_nats::jetstream::kv;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use wdeploy_core::{Digest, Person, TokenId};

const USERS: &str = "wdeploy-users";
const TOKENS: &str = "wdeploy-tokens";
const ACCESS: &str = "wdeploy-access";
/// `HEX(email)` → the person's [`CallBucket`]; an entry an hour old goes (its bucket is
/// long full again by then).
const RATES: &str = "wdeploy-rates";
/// `TOKENID` → the dashboard sessions opened with that token; an entry not written for
/// longer than a session lasts goes by itself.
const SESSIONS: &str = "wdeploy-sessions";
/// Longer than any session lasts (the dashboard's are 12 hours).
const SESSIONS_KEPT: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// People and their access in JetStream KV, shared by every node of the cluster.
pub struct ClusterPeople {
    nats: Nats,
    users: kv::Store,
    tokens: kv::Store,
    access: kv::Store,
    rates: kv::Store,
    sessions: kv::Store,
}

#[derive(Serialize, Deserialize, PartialEq)]
struct StoredUser {
    email: Person,
    admin: bool,
    created_at: DateTime<Utc>,
}

#[derive(Serialize, Deserialize, Clone)]
struct StoredToken {
    /// The person's email.
    name: Person,
    created_at: DateTime<Utc>,
    /// Absent only in a token of an older cluster, until `open` gives it one.
    #[serde(default)]
    id: Option<TokenId>,
    #[serde(default)]
    description: String,
}

#[derive(Serialize, Deserialize)]
struct StoredAccess {
    email: Person,
    created_at: DateTime<Utc>,
}

impl ClusterPeople {
    /// Opens (creating them if this is the cluster's first node) the people buckets, and
    /// gives tokens of an older cluster their public id.
    pub async fn open(nats: &Nats) -> Result<ClusterPeople> {
        let bucket = |name: &str| kv::Config {
            bucket: name.to_string(),
            history: 1,
            storage: async_nats::jetstream::stream::StorageType::File,
            ..Default::default()
        };
        let people = ClusterPeople {
            nats: nats.clone(),
            users: nats.bucket(bucket(USERS)).await?,
            tokens: nats.bucket(bucket(TOKENS)).await?,
            access: nats.bucket(bucket(ACCESS)).await?,
            rates: nats
                .bucket(kv::Config {
                    max_age: std::time::Duration::from_secs(3600),
                    ..bucket(RATES)
                })
                .await?,
            sessions: nats
                .bucket(kv::Config {
                    max_age: SESSIONS_KEPT,
                    ..bucket(SESSIONS)
                })
                .await?,
        };
        for key in list_keys(&people.tokens, "listing tokens").await? {
            cas(
                &people.tokens,
                &key,
                "giving a token an id",
                |t: Option<&StoredToken>| {
                    let t = t?;
                    t.id.is_none().then(|| StoredToken {
                        id: Some(random_token_id()),
                        ..t.clone()
                    })
                },
            )
            .await?;
        }
        Ok(people)
    }

    async fn read_token(&self, key: &str) -> Result<Option<TokenRecord>> {
        let (stored, _) = read::<StoredToken>(&self.tokens, key, "a token").await?;
        let Some(stored) = stored else {
            return Ok(None);
        };
        let hash: Digest = format!("sha256:{key}")
            .parse()
            .map_err(|e| StoreError::Backend(format!("stored token key is unreadable: {e}")))?;
        let id = stored
            .id
            .ok_or_else(|| StoreError::Backend("a token has no id yet".into()))?;
        Ok(Some(TokenRecord {
            id,
            hash,
            user: stored.name,
            description: stored.description,
            created_at: stored.created_at,
        }))
    }

    /// The people keys of the access bucket under `prefix` (`APPID.`), decoded.
    async fn access_keys(&self) -> Result<Vec<(String, Person)>> {
        let mut found = Vec::new();
        for key in list_keys(&self.access, "listing access").await? {
            if let Some((app, email)) = key.split_once('.') {
                let email = hex::decode(email)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .and_then(|s| s.parse::<Person>().ok())
                    .ok_or_else(|| {
                        StoreError::Backend(format!("access key {key} is unreadable"))
                    })?;
                found.push((app.to_string(), email));
            }
        }
        Ok(found)
    }
}

fn user_key(email: &Person) -> String {
    hex::encode(email.as_str())
}

fn access_key(app: &AppId, email: &Person) -> String {
    format!("{app}.{}", hex::encode(email.as_str()))
}

fn to_user(stored: StoredUser) -> User {
    User {
        email: stored.email,
        admin: stored.admin,
        created_at: stored.created_at,
    }
}

#[async_trait]
impl People for ClusterPeople {
    async fn add_user_at(
        &self,
        email: &Person,
        admin: bool,
        created_at: DateTime<Utc>,
    ) -> Result<User> {
        self.nats.check()?;
        let user = StoredUser {
            email: email.clone(),
            admin,
            created_at,
        };
        if !create(
            &self.users,
            &user_key(email),
            encode(&user)?,
            "adding a user",
        )
        .await?
        {
            return Err(StoreError::Conflict(format!("{email} is already a user")));
        }
        Ok(to_user(user))
    }

    async fn ensure_user(&self, email: &Person, admin: bool) -> Result<User> {
        match self.add_user(email, admin).await {
            Err(StoreError::Conflict(_)) => self
                .user(email)
                .await?
                .ok_or_else(|| StoreError::Backend(format!("user {email} vanished"))),
            other => other,
        }
    }

    async fn user(&self, email: &Person) -> Result<Option<User>> {
        self.nats.check()?;
        let (user, _) = read::<StoredUser>(&self.users, &user_key(email), "a user").await?;
        Ok(user.map(to_user))
    }

    async fn users(&self) -> Result<Vec<User>> {
        self.nats.check()?;
        let mut users = Vec::new();
        for key in list_keys(&self.users, "listing users").await? {
            if let (Some(user), _) = read::<StoredUser>(&self.users, &key, "a user").await? {
                users.push(to_user(user));
            }
        }
        users.sort_by(|a, b| a.email.cmp(&b.email));
        Ok(users)
    }

    async fn add_token(&self, token: &TokenRecord) -> Result<()> {
        self.nats.check()?;
        let value = encode(&StoredToken {
            name: token.user.clone(),
            created_at: token.created_at,
            id: Some(token.id.clone()),
            description: token.description.clone(),
        })?;
        if !create(&self.tokens, token.hash.hex(), value, "adding a token").await? {
            return Err(StoreError::Conflict("that token exists".into()));
        }
        Ok(())
    }

    async fn token(&self, hash: &Digest) -> Result<Option<TokenOwner>> {
        self.nats.check()?;
        let Some(token) = self.read_token(hash.hex()).await? else {
            return Ok(None);
        };
        let admin = self.user(&token.user).await?.is_some_and(|u| u.admin);
        Ok(Some(TokenOwner { token, admin }))
    }

    async fn tokens(&self) -> Result<Vec<TokenRecord>> {
        self.nats.check()?;
        let mut tokens = Vec::new();
        for key in list_keys(&self.tokens, "listing tokens").await? {
            if let Some(token) = self.read_token(&key).await? {
                tokens.push(token);
            }
        }
        tokens.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(tokens)
    }

    async fn revoke_token(&self, id: &TokenId) -> Result<()> {
        let tokens = self.tokens().await?;
        let token = tokens
            .iter()
            .find(|t| &t.id == id)
            .ok_or_else(|| StoreError::NotFound(format!("token {id}")))?;
        self.tokens
            .delete(token.hash.hex())
            .await
            .map_err(|e| unavailable(format!("revoking a token: {e}")))
    }

    async fn remove_user(&self, email: &Person) -> Result<RemovedUser> {
        if self.user(email).await?.is_none() {
            return Err(StoreError::NotFound(format!("user {email}")));
        }
        let mut tokens = 0;
        for token in self.tokens().await?.iter().filter(|t| &t.user == email) {
            self.tokens
                .delete(token.hash.hex())
                .await
                .map_err(|e| unavailable(format!("revoking a token: {e}")))?;
            tokens += 1;
        }
        let apps = self.apps_of(email).await?;
        for app in &apps {
            self.access
                .delete(access_key(app, email))
                .await
                .map_err(|e| unavailable(format!("taking access away: {e}")))?;
        }
        self.users
            .delete(user_key(email))
            .await
            .map_err(|e| unavailable(format!("removing a user: {e}")))?;
        Ok(RemovedUser { tokens, apps })
    }

    async fn open_session(
        &self,
        token_id: &TokenId,
        session: SessionRecord,
        max: usize,
    ) -> Result<()> {
        self.nats.check()?;
        let now = Utc::now().timestamp_millis();
        cas(
            &self.sessions,
            token_id.as_str(),
            "opening a session",
            |before: Option<&Vec<SessionRecord>>| {
                let mut open: Vec<SessionRecord> = before
                    .into_iter()
                    .flatten()
                    .filter(|s| s.expires_ms > now && s.secret != session.secret)
                    .cloned()
                    .collect();
                open.sort_by_key(|s| s.expires_ms);
                let over = (open.len() + 1).saturating_sub(max.max(1));
                open.drain(..over);
                open.push(session.clone());
                Some(open)
            },
        )
        .await?;
        Ok(())
    }

    async fn session(&self, token_id: &TokenId, secret: &Digest) -> Result<Option<Digest>> {
        self.nats.check()?;
        let (open, _) =
            read::<Vec<SessionRecord>>(&self.sessions, token_id.as_str(), "a session").await?;
        let now = Utc::now().timestamp_millis();
        Ok(open
            .into_iter()
            .flatten()
            .find(|s| &s.secret == secret && s.expires_ms > now)
            .map(|s| s.token))
    }

    async fn close_session(&self, token_id: &TokenId, secret: &Digest) -> Result<()> {
        self.nats.check()?;
        cas(
            &self.sessions,
            token_id.as_str(),
            "closing a session",
            |before: Option<&Vec<SessionRecord>>| {
                let open = before?;
                open.iter().any(|s| &s.secret == secret).then(|| {
                    let kept = open.iter().filter(|s| &s.secret != secret);
                    kept.cloned().collect()
                })
            },
        )
        .await?;
        Ok(())
    }

    async fn has_tokens(&self) -> Result<bool> {
        self.nats.check()?;
        Ok(!list_keys(&self.tokens, "looking for tokens")
            .await?
            .is_empty())
    }

    async fn grant(&self, app: &AppId, email: &Person) -> Result<()> {
        self.nats.check()?;
        let value = encode(&StoredAccess {
            email: email.clone(),
            created_at: Utc::now(),
        })?;
        // Already there (made by another grant) is as good as made by this one.
        create(
            &self.access,
            &access_key(app, email),
            value,
            "granting access",
        )
        .await?;
        Ok(())
    }

    async fn revoke(&self, app: &AppId, email: &Person) -> Result<()> {
        if !self.may_act_on(app, email).await? {
            return Err(StoreError::NotFound(format!("access of {email}")));
        }
        self.access
            .delete(access_key(app, email))
            .await
            .map_err(|e| unavailable(format!("revoking access: {e}")))
    }

    async fn may_act_on(&self, app: &AppId, email: &Person) -> Result<bool> {
        self.nats.check()?;
        let key = access_key(app, email);
        let (access, _) = read::<StoredAccess>(&self.access, &key, "access").await?;
        Ok(access.is_some())
    }

    async fn collaborators(&self, app: &AppId) -> Result<Vec<Person>> {
        self.nats.check()?;
        let mut people: Vec<Person> = self
            .access_keys()
            .await?
            .into_iter()
            .filter(|(id, _)| id == app.as_str())
            .map(|(_, email)| email)
            .collect();
        people.sort();
        Ok(people)
    }

    async fn apps_of(&self, email: &Person) -> Result<Vec<AppId>> {
        self.nats.check()?;
        let mut apps = Vec::new();
        for (id, who) in self.access_keys().await? {
            if &who == email {
                apps.push(id.parse().map_err(StoreError::Backend)?);
            }
        }
        apps.sort();
        Ok(apps)
    }

    async fn forget_app(&self, app: &AppId) -> Result<()> {
        self.nats.check()?;
        let subject = format!("{}{app}.>", self.access.prefix);
        self.access
            .stream
            .purge()
            .filter(subject)
            .await
            .map_err(|e| unavailable(format!("forgetting the app's access: {e}")))?;
        Ok(())
    }

    async fn take_calls(&self, person: &Person, rate: u32, burst: u32, want: u32) -> Result<u32> {
        self.nats.check()?;
        let now_ms = Utc::now().timestamp_millis();
        let mut given = 0;
        cas(
            &self.rates,
            &user_key(person),
            "a person's API calls",
            |before| {
                // (Again from nothing at each attempt of the compare-and-swap.)
                given = 0;
                let (after, n) = CallBucket::take(before.copied(), now_ms, rate, burst, want)?;
                given = n;
                Some(after)
            },
        )
        .await?;
        Ok(given)
    }
}
