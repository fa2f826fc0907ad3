//! Who may do what: the authorization of every API call, and the routes that manage
//! people, their tokens and their access to apps.
//!
//! Authorization happens in one place, [`authorize`], run by the authentication layer for
//! every API request once its caller is known: a path under `/apps/NAME` is served only
//! when the platform says the caller may act on that app ([`Platform::may_act_on`]);
//! otherwise the answer is the same 404 as for an app that does not exist, so a person
//! cannot learn which app names others use. This is structural: a route added under
//! `/apps/{app}` later is behind it without doing anything. The few routes outside
//! `/apps/NAME` check what they need themselves ([`require_admin`]).

use crate::error::ApiError;
use crate::server::{Caller, Platform};
use crate::wire::*;
use axum::extract::{Extension, Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use std::sync::Arc;
use wdeploy_core::{AppName, Person, TokenId};

type Shared = Arc<dyn Platform>;

/// The refusal for a path under `/apps/` the caller may not act on, or that names no valid
/// app: what a missing app answers.
fn no_such_app(name: &str) -> ApiError {
    ApiError::not_found(format!("app {name} not found"))
}

/// The app a request path is about: `Some(Ok(name))` under `/apps/NAME`, `Some(Err(raw))`
/// when the segment there is no valid name, `None` for every other path.
pub(crate) fn app_of_path(path: &str) -> Option<Result<AppName, String>> {
    let rest = path.strip_prefix("/apps/")?;
    let segment = rest.split('/').next().unwrap_or_default();
    Some(segment.parse().map_err(|_| segment.to_string()))
}

/// Refuses a request about an app its caller may not act on (before any handler runs).
/// A segment that is no valid app name is refused as well: the router would percent-decode
/// it into a name this check never saw.
pub(crate) async fn authorize(
    platform: &dyn Platform,
    caller: &Caller,
    path: &str,
) -> Result<(), ApiError> {
    match app_of_path(path) {
        None => Ok(()),
        Some(Err(raw)) => Err(no_such_app(&raw)),
        Some(Ok(app)) if platform.may_act_on(caller, &app).await? => Ok(()),
        Some(Ok(app)) => Err(no_such_app(&app)),
    }
}

/// A 403 unless the caller is an admin.
pub(crate) fn require_admin(caller: &Caller, what: &str) -> Result<(), ApiError> {
    if caller.admin {
        Ok(())
    } else {
        Err(ApiError::new(
            403,
            "forbidden",
            format!("only an admin may {what}"),
        ))
    }
}

/// The routes of people, tokens and collaborators (behind authentication, like all).
pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route("/account", get(account))
        .route("/users", get(users).post(add_user))
        .route("/users/{email}", delete(remove_user))
        .route("/tokens", get(tokens).post(create_token))
        .route("/tokens/{id}", delete(revoke_token))
}

/// Who the caller is: the API knows that from the token alone.
async fn account(Extension(by): Extension<Caller>) -> Json<Account> {
    Json(Account {
        email: by.person,
        admin: by.admin,
    })
}

async fn users(
    State(p): State<Shared>,
    Extension(by): Extension<Caller>,
) -> Result<Json<Vec<UserInfo>>, ApiError> {
    require_admin(&by, "list users")?;
    p.users().await.map(Json)
}

async fn add_user(
    State(p): State<Shared>,
    Extension(by): Extension<Caller>,
    crate::server::JsonBody(req): crate::server::JsonBody<CreateUser>,
) -> Result<Response, ApiError> {
    require_admin(&by, "add users")?;
    let token = p.add_user(&by, req).await?;
    Ok((http::StatusCode::CREATED, Json(token)).into_response())
}

async fn remove_user(
    State(p): State<Shared>,
    Extension(by): Extension<Caller>,
    Path(email): Path<String>,
) -> Result<Json<UserRemoved>, ApiError> {
    require_admin(&by, "remove users")?;
    let email: Person = email
        .parse()
        .map_err(|e| ApiError::invalid(format!("{e}")))?;
    p.remove_user(&by, &email).await.map(Json)
}

async fn tokens(
    State(p): State<Shared>,
    Extension(by): Extension<Caller>,
) -> Result<Json<Vec<TokenInfo>>, ApiError> {
    p.tokens(&by).await.map(Json)
}

async fn create_token(
    State(p): State<Shared>,
    Extension(by): Extension<Caller>,
    crate::server::JsonBody(req): crate::server::JsonBody<CreateToken>,
) -> Result<Response, ApiError> {
    if req.user.as_ref().is_some_and(|user| *user != by.person) {
        require_admin(&by, "make a token for someone else")?;
    }
    let token = p.create_token(&by, req).await?;
    Ok((http::StatusCode::CREATED, Json(token)).into_response())
}

async fn revoke_token(
    State(p): State<Shared>,
    Extension(by): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<http::StatusCode, ApiError> {
    let id: TokenId = id.parse().map_err(|e| ApiError::invalid(format!("{e}")))?;
    p.revoke_token(&by, &id).await?;
    Ok(http::StatusCode::NO_CONTENT)
}

pub(crate) async fn collaborators(
    State(p): State<Shared>,
    crate::server::AppPath(app): crate::server::AppPath,
) -> Result<Json<Vec<Collaborator>>, ApiError> {
    p.collaborators(&app).await.map(Json)
}

pub(crate) async fn add_collaborator(
    State(p): State<Shared>,
    crate::server::AppPath(app): crate::server::AppPath,
    Extension(by): Extension<Caller>,
    crate::server::JsonBody(req): crate::server::JsonBody<Collaborator>,
) -> Result<Response, ApiError> {
    p.add_collaborator(&app, &by, &req.email).await?;
    Ok((http::StatusCode::CREATED, Json(req)).into_response())
}

pub(crate) async fn remove_collaborator(
    State(p): State<Shared>,
    crate::server::AppPath(app): crate::server::AppPath,
    Extension(by): Extension<Caller>,
    Path((_, email)): Path<(String, String)>,
) -> Result<http::StatusCode, ApiError> {
    let email: Person = email
        .parse()
        .map_err(|e| ApiError::invalid(format!("{e}")))?;
    p.remove_collaborator(&app, &by, &email).await?;
    Ok(http::StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_app_of_a_path() {
        let app = |p: &str| app_of_path(p).map(|r| r.map(|a| a.to_string()));
        assert_eq!(app("/apps"), None);
        assert_eq!(app("/appsx/y"), None);
        assert_eq!(app("/blobs/missing"), None);
        assert_eq!(app("/apps/hello"), Some(Ok("hello".into())));
        assert_eq!(app("/apps/hello/dynos/web.1"), Some(Ok("hello".into())));
        assert_eq!(app("/apps/"), Some(Err("".into())));
        assert_eq!(
            app("/apps/%68ello/config-vars"),
            Some(Err("%68ello".into()))
        );
        assert_eq!(app("/apps//hello"), Some(Err("".into())));
    }
}
