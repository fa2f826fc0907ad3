//! The web dashboard: a page and its scripts, embedded in the binary and served on the
//! API listener, plus the login that gives a browser its session cookie.
//!
//! The page is a client of the same control API the CLI uses (its scripts call
//! `/apps/…` with the session cookie instead of a bearer token), so the dashboard and
//! the CLI can never disagree about what an app is or what an action does. Nothing here
//! is built at run time: the files below are the files served.
//!
//! A request authenticated by the cookie must also carry [`DASHBOARD_HEADER`] to change
//! anything. Browsers never send the cookie with another site's requests (SameSite=Strict)
//! and no other site may add that header (the API answers no CORS preflight), so a page
//! elsewhere can make the browser of a logged-in person do nothing.

pub mod session;

use crate::error::ApiError;
use crate::server::Platform;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use std::sync::Arc;

/// What a dashboard request must carry, besides its cookie, to change anything.
pub const DASHBOARD_HEADER: &str = "x-wdeploy-dashboard";

/// How the dashboard is served.
#[derive(Debug, Clone, Copy, Default)]
pub struct DashboardOptions {
    /// The API listener is reached over TLS: the session cookie is marked `Secure`.
    pub secure_cookie: bool,
}

/// The embedded files: name, content type, bytes.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/app.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("assets/style.css"),
    ),
    (
        "uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/vendor/uplot/uPlot.iife.min.js"),
    ),
    (
        "uPlot.min.css",
        "text/css; charset=utf-8",
        include_str!("assets/vendor/uplot/uPlot.min.css"),
    ),
];

const INDEX: &str = include_str!("assets/index.html");

/// Only this origin's scripts, styles, images and connections; never framed.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

#[derive(Clone)]
struct Dashboard {
    platform: Arc<dyn Platform>,
    options: DashboardOptions,
}

/// The dashboard's routes (none of them needs a token: the page itself shows the login).
pub fn routes(platform: Arc<dyn Platform>, options: DashboardOptions) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/dashboard/{file}", get(asset))
        .route(
            "/session",
            post(login)
                .delete(logout)
                .layer(DefaultBodyLimit::max(4096)),
        )
        .with_state(Dashboard { platform, options })
}

async fn index() -> Response {
    with_page_headers(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], INDEX))
}

async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, body)) => {
            with_page_headers(([(header::CONTENT_TYPE, *content_type)], *body))
        }
        None => ApiError::not_found(format!("no dashboard file {file}")).into_response(),
    }
}

fn with_page_headers(response: impl IntoResponse) -> Response {
    let mut response = response.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // A new binary may serve new files under the same names.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[derive(serde::Deserialize)]
struct Login {
    token: String,
}

/// `POST /session {"token": …}`: opens a session for a valid token.
async fn login(State(d): State<Dashboard>, body: axum::body::Bytes) -> Response {
    let Ok(Login { token }) = serde_json::from_slice(&body) else {
        return ApiError::invalid("send {\"token\": \"…\"}: the token `wdeploy host` printed")
            .into_response();
    };
    match d.platform.open_session(token.trim()).await {
        Ok(Some((caller, id))) => {
            let cookie = session::set_cookie(&id, d.options.secure_cookie);
            let body =
                axum::Json(serde_json::json!({ "user": caller.person, "admin": caller.admin }));
            match HeaderValue::from_str(&cookie) {
                Ok(cookie) => ([(header::SET_COOKIE, cookie)], body).into_response(),
                Err(_) => ApiError::internal("could not make the session cookie").into_response(),
            }
        }
        Ok(None) => ApiError::new(401, "unauthorized", "that token is not valid on this host")
            .into_response(),
        Err(e) => e.into_response(),
    }
}

/// `DELETE /session`: ends the browser's session.
async fn logout(State(d): State<Dashboard>, headers: HeaderMap) -> Response {
    if let Some(id) = session::from_cookies(&headers)
        && let Err(e) = d.platform.close_session(&id).await
    {
        return e.into_response();
    }
    let cookie = session::clear_cookie(d.options.secure_cookie);
    match HeaderValue::from_str(&cookie) {
        Ok(cookie) => (StatusCode::NO_CONTENT, [(header::SET_COOKIE, cookie)]).into_response(),
        Err(_) => StatusCode::NO_CONTENT.into_response(),
    }
}
