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

/// People, tokens and access, behind whichever backend runs. Access is keyed by the app's
/// [`AppId`], so a new app that takes a destroyed one's name starts with no collaborators.
/// Every change is atomic and durable once it returns.
#[async_trait]
pub trait People: Send + Sync + 'static {
    /// Adds a person; `Conflict` if they exist.
    async fn add_user(&self, email: &Person, admin: bool) -> Result<User>;
    /// Adds a person unless they exist (the admin at every start); returns them.
    async fn ensure_user(&self, email: &Person, admin: bool) -> Result<User>;
    async fn user(&self, email: &Person) -> Result<Option<User>>;
    /// Every person, by email.
    async fn users(&self) -> Result<Vec<User>>;

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
}
