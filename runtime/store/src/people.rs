//! People, their API tokens and their access to apps: who may call the API and on which
//! apps it may act.

use crate::error::Result;
use crate::model::AppId;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use wdeploy_core::{Digest, Person, TokenId};

/// A person known to the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub email: Person,
    /// An admin acts on every app and manages people; the admin token's person is one.
    pub admin: bool,
    pub created_at: DateTime<Utc>,
}

/// A token as kept: its hash (never the token), its public id and whose it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: TokenId,
    pub hash: Digest,
    pub user: Person,
    pub description: String,
    pub created_at: DateTime<Utc>,
}

/// A token's owner as a lookup finds it: the token and whether its person is an admin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenOwner {
    pub token: TokenRecord,
    pub admin: bool,
}

/// A dashboard session, opened with a token: the browser's cookie names the token's
/// public id and a secret, of which only the hash is kept.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SessionRecord {
    /// The sha256 of the cookie's secret.
    pub secret: Digest,
    /// The hash of the token it was opened with: it authenticates as that token, so a
    /// token revoked ends its sessions at once.
    pub token: Digest,
    /// When it ends, in milliseconds since the epoch.
    pub expires_ms: i64,
}

/// What went with a person removed ([`People::remove_user`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovedUser {
    /// How many tokens of theirs were revoked.
    pub tokens: usize,
    /// The apps they had access to.
    pub apps: Vec<AppId>,
}

/// People, tokens and access, behind whichever backend runs. Access is keyed by the app's
/// [`AppId`], so a new app that takes a destroyed one's name starts with no collaborators.
/// Every change is atomic and durable once it returns.
#[async_trait]
pub trait People: Send + Sync + 'static {
    /// Adds a person now; `Conflict` if they exist.
    async fn add_user(&self, email: &Person, admin: bool) -> Result<User> {
        self.add_user_at(email, admin, chrono::Utc::now()).await
    }
    /// Adds a person added at `created_at` (an import keeps when each person was added);
    /// `Conflict` if they exist.
    async fn add_user_at(
        &self,
        email: &Person,
        admin: bool,
        created_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<User>;
    /// Adds a person unless they exist (the admin at every start); returns them.
    async fn ensure_user(&self, email: &Person, admin: bool) -> Result<User>;
    async fn user(&self, email: &Person) -> Result<Option<User>>;
    /// Every person, by email.
    async fn users(&self) -> Result<Vec<User>>;
    /// Removes a person with everything that lets them act: their tokens first (none of
    /// them works again once this returns, or once a cut-short removal got that far), then
    /// their access to every app, then the person, so that a removal cut short can be
    /// made again. `NotFound` if there is no such person.
    async fn remove_user(&self, email: &Person) -> Result<RemovedUser>;

    /// Stores a token's hash (never the token) for a person.
    async fn add_token(&self, token: &TokenRecord) -> Result<()>;
    /// The token with this hash and its owner, if any. The hash is the lookup key: the
    /// secret itself is never compared.
    async fn token(&self, hash: &Digest) -> Result<Option<TokenOwner>>;
    /// Every token, oldest first.
    async fn tokens(&self) -> Result<Vec<TokenRecord>>;
    /// Deletes a token; `NotFound` if no token has this id.
    async fn revoke_token(&self, id: &TokenId) -> Result<()>;
    async fn has_tokens(&self) -> Result<bool>;

    /// Keeps a dashboard session opened with token `token_id`, which then has at most
    /// `max` sessions: past them, the one closest to its end goes. Every node knows it.
    async fn open_session(
        &self,
        token_id: &TokenId,
        session: SessionRecord,
        max: usize,
    ) -> Result<()>;
    /// The hash of the token a live session of `token_id` whose secret hashes to `secret`
    /// was opened with, if there is one.
    async fn session(&self, token_id: &TokenId, secret: &Digest) -> Result<Option<Digest>>;
    /// Ends that session (nothing if there is none).
    async fn close_session(&self, token_id: &TokenId, secret: &Digest) -> Result<()>;

    /// Lets a person act on an app (nothing changes if they already may).
    async fn grant(&self, app: &AppId, email: &Person) -> Result<()>;
    /// Takes that away; `NotFound` if they had no access.
    async fn revoke(&self, app: &AppId, email: &Person) -> Result<()>;
    async fn may_act_on(&self, app: &AppId, email: &Person) -> Result<bool>;
    /// The people with access to an app, by email.
    async fn collaborators(&self, app: &AppId) -> Result<Vec<Person>>;
    /// The apps a person has access to.
    async fn apps_of(&self, email: &Person) -> Result<Vec<AppId>>;
    /// Forgets every access to an app (it is being destroyed).
    async fn forget_app(&self, app: &AppId) -> Result<()>;

    /// Takes up to `want` of `person`'s API calls from a budget every node shares (`rate`
    /// a second after `burst` at once): how many it got, 0 when none is left. So a person
    /// does not get each node's budget by spreading calls over the nodes; a node takes a
    /// few at a time and spends them itself, for fewer store calls. By default all of
    /// them: a store of one node, whose host's own count is the whole budget.
    async fn take_calls(
        &self,
        _person: &Person,
        _rate: u32,
        _burst: u32,
        want: u32,
    ) -> Result<u32> {
        Ok(want)
    }
}

/// A person's API calls as a token bucket kept in a shared store: the calls left, and
/// when (Unix milliseconds, the clock of the node that spent last).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CallBucket {
    pub tokens: f64,
    pub at_ms: i64,
}

impl CallBucket {
    /// The bucket after taking up to `want` calls at `now_ms`, refilled at `rate` a second
    /// up to `burst` since `previous` (a full bucket when there is none), with how many it
    /// gave; `None` when no call is left. A clock behind the last spender's refills
    /// nothing, never a negative amount.
    pub fn take(
        previous: Option<CallBucket>,
        now_ms: i64,
        rate: u32,
        burst: u32,
        want: u32,
    ) -> Option<(CallBucket, u32)> {
        let burst = f64::from(burst);
        let tokens = match previous {
            None => burst,
            Some(b) => {
                let elapsed = (now_ms - b.at_ms).max(0) as f64 / 1000.0;
                (b.tokens + elapsed * f64::from(rate)).min(burst)
            }
        };
        // Whole calls only; at least one is needed to give any.
        let given = tokens.floor().min(f64::from(want));
        (given >= 1.0).then(|| {
            let bucket = CallBucket {
                tokens: tokens - given,
                at_ms: now_ms.max(previous.map_or(now_ms, |b| b.at_ms)),
            };
            (bucket, given as u32)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::CallBucket;

    #[test]
    fn a_shared_call_bucket_refills_at_its_rate_up_to_its_burst() {
        let take = |b: Option<CallBucket>, now, want| CallBucket::take(b, now, 2, 3, want);
        let mut bucket = None;
        for _ in 0..3 {
            let (after, given) = take(bucket, 1_000, 1).expect("a call");
            assert_eq!(given, 1);
            bucket = Some(after);
        }
        assert_eq!(take(bucket, 1_000, 1), None);
        // Half a second at 2 a second: one more call, though two were asked for.
        let (after, given) = take(bucket, 1_500, 2).expect("refilled");
        assert_eq!(given, 1);
        assert!(after.tokens.abs() < 1e-9);
        assert_eq!(take(Some(after), 1_500, 1), None);
        // A node whose clock is behind refills nothing, and keeps the later time.
        assert_eq!(take(Some(after), 900, 1), None);
        // Long idle: full again, not more.
        let (full, given) = take(Some(after), 3_600_000, 10).expect("full");
        assert_eq!((given, full.tokens), (3, 0.0));
    }
}
