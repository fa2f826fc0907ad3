//! People, their tokens and their access to apps, for the API's [`Platform`] calls: who a
//! token is, whether they may act on an app, and the changes to all three (each one
//! written in the app's log with who made it when it concerns an app).
//!
//! [`Platform`]: wdeploy_api::server::Platform

use super::Host;
use super::bootstrap::{new_token, token_hash};
use super::errors::Result;
use std::collections::HashSet;
use wdeploy_api::ApiError;
use wdeploy_api::dashboard::session;
use wdeploy_api::server::Caller;
use wdeploy_api::wire::*;
use wdeploy_core::{AppName, Person, TokenId};
use wdeploy_store::{SessionRecord, StoreError, TokenOwner, TokenRecord};

/// Most tokens one person may hold: each is a store entry anyone with a token could
/// otherwise make without end.
pub(crate) const MAX_TOKENS_PER_PERSON: usize = 50;
/// Longest description of a token, in characters.
const MAX_DESCRIPTION: usize = 200;

impl Host {
    /// The caller a token belongs to, if any.
    pub(super) async fn caller(&self, token: &str) -> Result<Option<Caller>> {
        let owner = self.store.people.token(&token_hash(token)).await?;
        Ok(owner.map(caller_of))
    }

    /// Opens a dashboard session for `token`, kept in the store so that every node knows
    /// it: its caller and the cookie's value; `None` for a token that is nobody's. A
    /// login is one of the person's calls: past their rate, no session is kept.
    pub(super) async fn open_dashboard_session(
        &self,
        token: &str,
    ) -> Result<Option<(Caller, String)>> {
        let hash = token_hash(token);
        let Some(owner) = self.store.people.token(&hash).await? else {
            return Ok(None);
        };
        let token_id = owner.token.id.clone();
        let caller = caller_of(owner);
        self.admit_call(&caller).await?;
        let (cookie, secret) = session::new_session(&token_id);
        let lifetime = chrono::Duration::from_std(session::LIFETIME).unwrap_or_default();
        let record = SessionRecord {
            secret,
            token: hash,
            expires_ms: (chrono::Utc::now() + lifetime).timestamp_millis(),
        };
        let max = session::MAX_SESSIONS_PER_TOKEN;
        self.store
            .people
            .open_session(&token_id, record, max)
            .await?;
        Ok(Some((caller, cookie)))
    }

    /// The caller of the live session a cookie's value names: as the token it was opened
    /// with, read again now.
    pub(super) async fn dashboard_caller(&self, cookie: &str) -> Result<Option<Caller>> {
        let Some((token_id, secret)) = session::parse(cookie) else {
            return Ok(None);
        };
        let Some(hash) = self.store.people.session(&token_id, &secret).await? else {
            return Ok(None);
        };
        let owner = self.store.people.token(&hash).await?;
        Ok(owner.map(caller_of))
    }

    /// Ends the session a cookie's value names.
    pub(super) async fn close_dashboard_session(&self, cookie: &str) -> Result<()> {
        if let Some((token_id, secret)) = session::parse(cookie) {
            self.store.people.close_session(&token_id, &secret).await?;
        }
        Ok(())
    }

    /// An admin may act on every app, anyone else on the apps they have access to; nobody
    /// on an app that does not exist.
    pub(super) async fn may_act(&self, caller: &Caller, app: &AppName) -> Result<bool> {
        if caller.admin {
            return Ok(true);
        }
        let id = match self.store.control.app(app).await {
            Ok(app) => app.id,
            Err(StoreError::NotFound(_)) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        Ok(self.store.people.may_act_on(&id, &caller.person).await?)
    }

    /// The apps the caller may act on, by name.
    pub(super) async fn apps_of(&self, caller: &Caller) -> Result<Vec<wdeploy_store::App>> {
        let apps = self.store.control.apps().await?;
        if caller.admin {
            return Ok(apps);
        }
        let theirs: HashSet<_> = self
            .store
            .people
            .apps_of(&caller.person)
            .await?
            .into_iter()
            .collect();
        Ok(apps
            .into_iter()
            .filter(|a| theirs.contains(&a.id))
            .collect())
    }

    pub(super) async fn user_list(&self) -> Result<Vec<UserInfo>> {
        let users = self.store.people.users().await?;
        Ok(users
            .into_iter()
            .map(|u| UserInfo {
                email: u.email,
                admin: u.admin,
                created_at: u.created_at,
            })
            .collect())
    }

    pub(super) async fn add_person(&self, by: &Caller, req: CreateUser) -> Result<NewToken> {
        self.store
            .people
            .add_user(&req.email, false)
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => ApiError::conflict(format!(
                    "{} is already a user (they make more tokens with `wdeploy tokens:create`)",
                    req.email
                ))
                .into(),
                e => super::errors::ControlError::from(e),
            })?;
        tracing::info!(user = %req.email, by = %by, "user added");
        let description = req
            .description
            .unwrap_or_else(|| format!("made by users:add ({by})"));
        self.make_token(&req.email, &description).await
    }

    /// Removes a person with their tokens and their access to every app (written in
    /// each of those apps' logs). An admin is never removed: the host would be left
    /// without the person every node makes sure of at start.
    pub(super) async fn remove_person(&self, by: &Caller, email: &Person) -> Result<UserRemoved> {
        let no_user = || ApiError::not_found(format!("no user {email} (see `wdeploy users`)"));
        match self.store.people.user(email).await? {
            None => return Err(no_user().into()),
            Some(user) if user.admin => {
                return Err(ApiError::conflict(format!(
                    "{email} is an admin, and an admin is never removed: revoke a token of \
                     theirs with `wdeploy tokens:revoke ID`"
                ))
                .into());
            }
            Some(_) => {}
        }
        let removed = match self.store.people.remove_user(email).await {
            Err(StoreError::NotFound(_)) => return Err(no_user().into()),
            other => other?,
        };
        let names: std::collections::HashMap<_, _> = self
            .store
            .control
            .apps()
            .await?
            .into_iter()
            .map(|app| (app.id, app.name))
            .collect();
        let mut apps: Vec<AppName> = removed
            .apps
            .iter()
            .filter_map(|id| names.get(id).cloned())
            .collect();
        apps.sort();
        for app in &apps {
            self.log_change(app, format!("Access of {email} ended: removed by {by}"));
        }
        tracing::info!(user = %email, by = %by, tokens = removed.tokens, "user removed");
        Ok(UserRemoved {
            email: email.clone(),
            tokens: removed.tokens,
            apps,
        })
    }

    /// A new token for `user` made by an admin (the API checked): a person who lost
    /// their tokens, or whose tokens were revoked, gets in again.
    pub(super) async fn token_for(
        &self,
        by: &Caller,
        user: &Person,
        description: Option<String>,
    ) -> Result<NewToken> {
        if self.store.people.user(user).await?.is_none() {
            return Err(ApiError::not_found(format!(
                "no user {user}: an admin adds them first with `wdeploy users:add {user}`"
            ))
            .into());
        }
        let description = description.unwrap_or_else(|| format!("made by tokens:create ({by})"));
        let made = self.make_token(user, &description).await?;
        tracing::info!(user = %user, by = %by, token = %made.info.id, "token made for a user");
        Ok(made)
    }

    pub(super) async fn make_token(&self, user: &Person, description: &str) -> Result<NewToken> {
        if description.chars().count() > MAX_DESCRIPTION {
            return Err(ApiError::invalid(format!(
                "a token's description is at most {MAX_DESCRIPTION} characters"
            ))
            .into());
        }
        let theirs = self
            .store
            .people
            .tokens()
            .await?
            .iter()
            .filter(|t| &t.user == user)
            .count();
        if theirs >= MAX_TOKENS_PER_PERSON {
            return Err(ApiError::conflict(format!(
                "{user} has {theirs} tokens, the most one person may have: revoke some first \
                 (`wdeploy tokens`, `wdeploy tokens:revoke ID`)"
            ))
            .into());
        }
        let (token, record) =
            new_token(user, description).map_err(|e| ApiError::internal(format!("{e}")))?;
        self.store.people.add_token(&record).await?;
        Ok(NewToken {
            info: token_info(record),
            token,
        })
    }

    pub(super) async fn token_list(&self, caller: &Caller) -> Result<Vec<TokenInfo>> {
        let tokens = self.store.people.tokens().await?;
        Ok(tokens
            .into_iter()
            .filter(|t| caller.admin || t.user == caller.person)
            .map(token_info)
            .collect())
    }

    /// Revokes a token of the caller's (an admin: anyone's). Another person's token is
    /// "not found" to a non-admin; the last token of the admins is never revoked, so the
    /// host cannot be left with nobody able to manage it.
    pub(super) async fn revoke(&self, caller: &Caller, id: &TokenId) -> Result<()> {
        let tokens = self.store.people.tokens().await?;
        let not_found =
            || ApiError::not_found(format!("token {id} not found (see `wdeploy tokens`)"));
        let token = tokens
            .iter()
            .find(|t| &t.id == id && (caller.admin || t.user == caller.person))
            .ok_or_else(not_found)?;
        let admins: HashSet<Person> = self
            .store
            .people
            .users()
            .await?
            .into_iter()
            .filter(|u| u.admin)
            .map(|u| u.email)
            .collect();
        if admins.contains(&token.user)
            && tokens.iter().filter(|t| admins.contains(&t.user)).count() == 1
        {
            return Err(ApiError::conflict(format!(
                "token {id} is the last admin token: make another first (`wdeploy tokens:create`), \
                 then revoke this one"
            ))
            .into());
        }
        self.store.people.revoke_token(id).await?;
        tracing::info!(token = %id, user = %token.user, by = %caller, "token revoked");
        Ok(())
    }

    pub(super) async fn collaborator_list(&self, app: &AppName) -> Result<Vec<Collaborator>> {
        let id = self.store.control.app(app).await?.id;
        let people = self.store.people.collaborators(&id).await?;
        Ok(people
            .into_iter()
            .map(|email| Collaborator { email })
            .collect())
    }

    pub(super) async fn grant(&self, app: &AppName, by: &Caller, email: &Person) -> Result<()> {
        let id = self.store.control.app(app).await?.id;
        if self.store.people.user(email).await?.is_none() {
            return Err(ApiError::not_found(format!(
                "no user {email}: an admin adds them first with `wdeploy users:add {email}`"
            ))
            .into());
        }
        self.store.people.grant(&id, email).await?;
        self.log_change(app, format!("Access granted to {email} by {by}"));
        Ok(())
    }

    pub(super) async fn take_away(&self, app: &AppName, by: &Caller, email: &Person) -> Result<()> {
        let id = self.store.control.app(app).await?.id;
        self.store
            .people
            .revoke(&id, email)
            .await
            .map_err(|e| match e {
                StoreError::NotFound(_) => {
                    ApiError::not_found(format!("{email} has no access to {app}")).into()
                }
                e => super::errors::ControlError::from(e),
            })?;
        self.log_change(app, format!("Access of {email} removed by {by}"));
        Ok(())
    }

    fn log_change(&self, app: &AppName, line: String) {
        self.entry(app).runtime.logs.platform("api", line);
    }
}

/// Who acts with a token its owner holds.
fn caller_of(owner: TokenOwner) -> Caller {
    Caller {
        person: owner.token.user,
        admin: owner.admin,
    }
}

fn token_info(t: TokenRecord) -> TokenInfo {
    TokenInfo {
        id: t.id,
        user: t.user,
        description: t.description,
        created_at: t.created_at,
    }
}
