//! The control API's HTTP routes over a [`Platform`] the host implements.
//!
//! This module knows the wire format and nothing of how the host keeps apps; every route
//! authenticates first, caps its body, and answers errors as JSON [`ApiError`]s.

use crate::dashboard::session;
use crate::dashboard::{self, DASHBOARD_HEADER, DashboardOptions};
use crate::error::ApiError;
use crate::people;
use crate::wire::*;
use async_trait::async_trait;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Extension, Path, Query, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, get, on, post, put};
use axum::{Json, Router};
use futures::stream::BoxStream;
use std::collections::BTreeMap;
use std::sync::Arc;
use wdeploy_core::addons::DEFAULT_BUCKET;
use wdeploy_core::{AppName, Digest, Formation, LogSource};

mod certs;
mod drains;
mod handlers;

use handlers::*;

/// Largest JSON body accepted.
pub const MAX_JSON_BYTES: usize = 1 << 20;
/// Largest blob (one component) accepted.
pub const MAX_BLOB_BYTES: usize = 256 << 20;

/// An upload's bytes as they arrive from the client.
pub type BlobStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = std::io::Result<Bytes>> + Send + 'static>>;

/// Who made a call (the person its token belongs to), recorded as the author of
/// releases and in the app's log for every change; an admin acts on every app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub person: wdeploy_core::Person,
    pub admin: bool,
}

impl std::fmt::Display for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.person.as_str())
    }
}

/// A stream of text chunks (log lines, one-off dyno output).
pub type TextStream = BoxStream<'static, String>;

/// A one-off dyno just started: its name and its output.
pub struct OneOffRun {
    pub dyno: String,
    pub output: TextStream,
}

/// Where a long call reports progress, line by line.
pub type Progress = futures::channel::mpsc::Sender<String>;

#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct LogQuery {
    /// History lines to send first (default 100).
    pub lines: Option<usize>,
    /// Keep the stream open for new lines.
    #[serde(default)]
    pub tail: bool,
    pub dyno: Option<String>,
    pub source: Option<LogSource>,
    /// With `tail`: send an empty line each period of this many seconds (1–300) without
    /// one, so a client can tell a quiet app from a host that vanished without closing
    /// the connection, and no proxy between them drops the connection as idle; and one
    /// right after the history, where the new lines start. The answer's [`HEARTBEAT_HEADER`]
    /// says the host does it.
    pub heartbeat: Option<u64>,
}

/// `?heartbeat=N` on a call that makes a release and answers plain JSON (`PATCH
/// config-vars`): with it, the answer is a release stream instead, as a push's is (its
/// progress, a heartbeat each quiet N s, the JSON last), so a client can tell a long
/// release phase from a host that vanished.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct ReleasingQuery {
    pub heartbeat: Option<u64>,
}

/// The message of a 404 for a route the host does not have: a client newer than the
/// host asks for what it cannot do yet.
pub const NO_SUCH_ROUTE: &str = "no such API route";

/// The header of a log stream whose host sends the heartbeat asked for: its seconds.
pub const HEARTBEAT_HEADER: &str = "x-wdeploy-heartbeat";
/// The header of a `run`'s answer naming the one-off dyno it started (`run.4821`).
pub const DYNO_HEADER: &str = "x-wdeploy-dyno";

/// `GET /apps/{app}/releases?limit=N&before=V`: a page of the release log, newest first,
/// as Heroku pages its lists; the next page is `before` the oldest version of this one.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct ReleaseQuery {
    /// Releases per page: [`DEFAULT_RELEASES_PAGE`] unless given, at most
    /// [`MAX_RELEASES_PAGE`].
    pub limit: Option<u32>,
    /// Only releases older than this version.
    pub before: Option<u64>,
}

/// Releases per page when the query does not say.
pub const DEFAULT_RELEASES_PAGE: u32 = 100;
/// Most releases per page.
pub const MAX_RELEASES_PAGE: u32 = 1000;

/// A checked [`ReleaseQuery`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReleasePage {
    pub limit: u32,
    pub before: Option<u64>,
}

impl ReleaseQuery {
    fn page(self) -> Result<ReleasePage, ApiError> {
        let limit = self.limit.unwrap_or(DEFAULT_RELEASES_PAGE);
        if !(1..=MAX_RELEASES_PAGE).contains(&limit) {
            return Err(ApiError::invalid(format!(
                "limit={limit}: a page holds 1 to {MAX_RELEASES_PAGE} releases"
            )));
        }
        if self.before == Some(0) {
            return Err(ApiError::invalid(
                "before=0: versions start at 1 (use the oldest version of the last page)",
            ));
        }
        Ok(ReleasePage {
            limit,
            before: self.before,
        })
    }
}

/// What the host does for each API call. Every app-scoped call gets a valid [`AppName`]
/// (a path naming no valid app is answered 404 before the host is asked).
#[async_trait]
pub trait Platform: Send + Sync + 'static {
    /// The caller a bearer token belongs to (`None`: nobody's). An error when the
    /// tokens cannot be read now (the store away): the client learns that, not that its
    /// token is wrong.
    async fn authenticate(&self, token: &str) -> Result<Option<Caller>, ApiError>;
    /// Opens a dashboard session for `token` if it is valid: its caller, and the value
    /// of the cookie that names the session ([`crate::dashboard::session`]).
    async fn open_session(&self, token: &str) -> Result<Option<(Caller, String)>, ApiError>;
    /// The caller of the live session a cookie's value names (`None`: none).
    async fn session_caller(&self, cookie: &str) -> Result<Option<Caller>, ApiError>;
    /// Ends the session a cookie's value names (a logout).
    async fn close_session(&self, cookie: &str) -> Result<(), ApiError>;
    /// Whether the caller may act on the app: an admin on every app, anyone else on the
    /// apps they have access to (`false` for an app that does not exist). Asked before
    /// every request under `/apps/NAME` (see [`crate::people`]).
    async fn may_act_on(&self, caller: &Caller, app: &AppName) -> Result<bool, ApiError>;
    /// The apps the caller may act on.
    async fn apps(&self, caller: &Caller) -> Result<Vec<AppInfo>, ApiError>;
    /// Creates an app; its creator gets access to it.
    async fn create_app(&self, by: &Caller, req: CreateApp) -> Result<AppInfo, ApiError>;
    async fn app(&self, app: &AppName) -> Result<AppInfo, ApiError>;
    async fn destroy_app(&self, app: &AppName) -> Result<(), ApiError>;
    /// The live nodes (an admin's), each with the key it proves itself with.
    async fn nodes(&self) -> Result<Vec<NodeStatus>, ApiError>;
    /// Rotates the cluster's key (an admin's; a host alone refuses).
    async fn rotate_cluster_key(
        &self,
        by: &Caller,
        req: KeyRotation,
    ) -> Result<RotatedKey, ApiError>;
    /// Changes the app itself (maintenance mode), not its releases; returns it after.
    async fn update_app(
        &self,
        app: &AppName,
        by: &Caller,
        update: AppUpdate,
    ) -> Result<AppInfo, ApiError>;
    async fn missing_blobs(&self, digests: Vec<Digest>) -> Result<Vec<Digest>, ApiError>;
    /// Stores an upload as it arrives: it is hashed and written to disk chunk by chunk,
    /// never held whole in memory, and refused once past [`MAX_BLOB_BYTES`].
    async fn put_blob(&self, digest: &Digest, body: BlobStream) -> Result<(), ApiError>;
    /// Creates a release and makes it serve; progress lines (release phase output, deploy
    /// steps) go to `progress` as they happen.
    async fn create_release(
        &self,
        app: &AppName,
        by: &Caller,
        req: CreateRelease,
        progress: Progress,
    ) -> Result<ReleaseInfo, ApiError>;
    /// A page of the release log, newest first.
    async fn releases(
        &self,
        app: &AppName,
        page: ReleasePage,
    ) -> Result<Vec<ReleaseInfo>, ApiError>;
    /// One release in full: its Procfile, settings and config vars too.
    async fn release(&self, app: &AppName, version: u64) -> Result<ReleaseDetail, ApiError>;
    /// What going live printed for a release (`releases:output`).
    async fn release_output(&self, app: &AppName, version: u64) -> Result<ReleaseOutput, ApiError>;
    /// A rollback (as a new release); `progress`, when given, hears it go live.
    async fn rollback(
        &self,
        app: &AppName,
        by: &Caller,
        req: Rollback,
        progress: Option<Progress>,
    ) -> Result<ReleaseInfo, ApiError>;
    /// Stops the release going live (its release phase or boot); returns it, failed.
    async fn cancel_release(&self, app: &AppName, by: &Caller) -> Result<ReleaseInfo, ApiError>;
    async fn config(&self, app: &AppName) -> Result<BTreeMap<String, String>, ApiError>;
    /// A config change (as a new release): the config vars after it; `progress`, when
    /// given, hears the release go live.
    async fn patch_config(
        &self,
        app: &AppName,
        by: &Caller,
        patch: ConfigPatch,
        progress: Option<Progress>,
    ) -> Result<BTreeMap<String, String>, ApiError>;
    async fn formation(&self, app: &AppName) -> Result<Formation, ApiError>;
    async fn scale(
        &self,
        app: &AppName,
        by: &Caller,
        patch: Formation,
    ) -> Result<Formation, ApiError>;
    async fn dynos(&self, app: &AppName) -> Result<Vec<DynoInfo>, ApiError>;
    async fn restart(&self, app: &AppName, by: &Caller, dyno: Option<&str>)
    -> Result<(), ApiError>;
    /// Stops a one-off dyno (`ps:stop run.N`), on whichever node runs it.
    async fn stop_dyno(&self, app: &AppName, by: &Caller, dyno: &str) -> Result<(), ApiError>;
    /// Starts a one-off dyno; the stream carries its output, then [`EXIT_MARKER`] + status.
    async fn run(&self, app: &AppName, by: &Caller, req: RunRequest)
    -> Result<OneOffRun, ApiError>;
    /// Sends `input` to the stdin of one-off dyno `dyno`, started with
    /// [`RunRequest::stdin`] on this node, until it ends (then the dyno's input ends) or
    /// the dyno does.
    async fn send_input(
        &self,
        app: &AppName,
        by: &Caller,
        dyno: &str,
        input: BlobStream,
    ) -> Result<(), ApiError>;
    async fn logs(&self, app: &AppName, query: LogQuery) -> Result<TextStream, ApiError>;
    /// Keys of one of the app's add-on buckets starting with `prefix`.
    async fn kv_keys(&self, app: &AppName, bucket: &str, prefix: &str) -> Result<KvKeys, ApiError>;
    async fn kv_get(&self, app: &AppName, bucket: &str, key: &str) -> Result<KvEntry, ApiError>;
    async fn kv_set(
        &self,
        app: &AppName,
        by: &Caller,
        bucket: &str,
        key: &str,
        value: String,
    ) -> Result<KvEntry, ApiError>;
    /// Deletes a key of one of the app's add-on buckets (not found if it is not there).
    async fn kv_delete(
        &self,
        app: &AppName,
        by: &Caller,
        bucket: &str,
        key: &str,
    ) -> Result<(), ApiError>;
    async fn queues(&self, app: &AppName) -> Result<Vec<QueueInfo>, ApiError>;
    /// What the app's add-on data takes: storage against its quota, and its queues.
    async fn addons(&self, app: &AppName) -> Result<AddonUsage, ApiError>;
    /// The app's custom domains.
    async fn domains(&self, app: &AppName) -> Result<Vec<DomainInfo>, ApiError>;
    /// Gives the app a custom domain (409 when another app has it).
    async fn add_domain(
        &self,
        app: &AppName,
        by: &Caller,
        req: CreateDomain,
    ) -> Result<DomainInfo, ApiError>;
    async fn remove_domain(
        &self,
        app: &AppName,
        by: &Caller,
        hostname: &str,
    ) -> Result<(), ApiError>;
    /// The TLS certificates of the app's domains.
    async fn certs(&self, app: &AppName) -> Result<Vec<CertInfo>, ApiError>;
    /// Checks a certificate the user brings and sets it for its domain (or every domain
    /// of the app it covers); answers the certificates set.
    async fn add_cert(
        &self,
        app: &AppName,
        by: &Caller,
        req: CreateCert,
    ) -> Result<Vec<CertInfo>, ApiError>;
    /// Removes the certificate of one of the app's domains.
    async fn remove_cert(
        &self,
        app: &AppName,
        by: &Caller,
        domain: &str,
    ) -> Result<CertInfo, ApiError>;
    /// Every metric of the host in the Prometheus text format ([`METRICS_CONTENT_TYPE`]).
    async fn metrics(&self) -> Result<String, ApiError>;
    /// The app's last hour on this node, for the dashboard.
    async fn app_metrics(&self, app: &AppName) -> Result<MetricsHistory, ApiError>;

    // People (the API checks who may call these: users are an admin's, tokens the
    // caller's own unless an admin's, collaborators anyone's with access to the app).
    async fn users(&self) -> Result<Vec<UserInfo>, ApiError>;
    /// Adds a person and makes their first token.
    async fn add_user(&self, by: &Caller, req: CreateUser) -> Result<NewToken, ApiError>;
    /// Removes a person with their tokens and access (never an admin).
    async fn remove_user(
        &self,
        by: &Caller,
        email: &wdeploy_core::Person,
    ) -> Result<UserRemoved, ApiError>;
    /// The caller's tokens (an admin's: everyone's).
    async fn tokens(&self, caller: &Caller) -> Result<Vec<TokenInfo>, ApiError>;
    async fn create_token(&self, caller: &Caller, req: CreateToken) -> Result<NewToken, ApiError>;
    /// Revokes one of the caller's tokens (an admin: anyone's), never the last admin token.
    async fn revoke_token(
        &self,
        caller: &Caller,
        id: &wdeploy_core::TokenId,
    ) -> Result<(), ApiError>;
    async fn collaborators(&self, app: &AppName) -> Result<Vec<Collaborator>, ApiError>;
    async fn add_collaborator(
        &self,
        app: &AppName,
        by: &Caller,
        email: &wdeploy_core::Person,
    ) -> Result<(), ApiError>;
    async fn remove_collaborator(
        &self,
        app: &AppName,
        by: &Caller,
        email: &wdeploy_core::Person,
    ) -> Result<(), ApiError>;
    /// The app's log drains.
    async fn drains(&self, app: &AppName) -> Result<Vec<DrainInfo>, ApiError>;
    async fn add_drain(&self, app: &AppName, req: CreateDrain) -> Result<DrainInfo, ApiError>;
    /// Removes the drain `which` names: its id or its URL.
    async fn remove_drain(&self, app: &AppName, which: &str) -> Result<DrainInfo, ApiError>;
}

/// The `Content-Type` of `/metrics`: the Prometheus text format, version 0.0.4.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

type Shared = Arc<dyn Platform>;

/// The API router with the dashboard served as it is over plain HTTP.
pub fn router(platform: Shared) -> Router {
    router_with(platform, DashboardOptions::default())
}

/// The API router: every API route behind authentication (a bearer token, or the
/// dashboard's session cookie), and the dashboard's page and login beside them.
pub fn router_with(platform: Shared, dashboard: DashboardOptions) -> Router {
    let auth = Auth {
        platform: platform.clone(),
    };
    let blobs = Router::new()
        .route("/blobs/{digest}", put(put_blob))
        .layer(DefaultBodyLimit::disable());
    let mut api = Router::new()
        .route("/apps", get(apps).post(create_app))
        .route("/blobs/missing", post(missing_blobs))
        .route("/cluster/rotate-key", post(rotate_cluster_key))
        .route("/cluster/nodes", get(nodes));
    for (path, methods) in app_router() {
        api = api.route(path, methods);
    }
    let api = api
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(MAX_JSON_BYTES))
        .merge(people::routes().layer(DefaultBodyLimit::max(MAX_JSON_BYTES)))
        .merge(blobs)
        .fallback(|| async { ApiError::not_found(NO_SUCH_ROUTE) })
        .layer(axum::middleware::from_fn_with_state(auth, authenticate))
        .with_state(platform.clone());
    dashboard::routes(platform, dashboard).merge(api)
}

/// One route under `/apps/{app}`: its method, path and handler.
type AppRoute = (http::Method, &'static str, MethodRouter<Shared>);

fn at<H, T>(method: http::Method, path: &'static str, handler: H) -> AppRoute
where
    H: axum::handler::Handler<T, Shared>,
    T: 'static,
{
    let filter = match method.clone() {
        http::Method::GET => MethodFilter::GET,
        http::Method::POST => MethodFilter::POST,
        http::Method::PUT => MethodFilter::PUT,
        http::Method::PATCH => MethodFilter::PATCH,
        _ => MethodFilter::DELETE,
    };
    (method, path, on(filter, handler))
}

/// Every route about one app, in one table: the router serves these, and
/// [`app_routes`] lists them for the tests that prove each is behind the authorization
/// of [`crate::people`] (which covers any path under `/apps/NAME`, listed here or not).
fn app_route_table() -> Vec<AppRoute> {
    use http::Method as M;
    vec![
        at(M::GET, "/apps/{app}", app),
        at(M::DELETE, "/apps/{app}", destroy_app),
        at(M::PATCH, "/apps/{app}", update_app),
        at(M::GET, "/apps/{app}/releases", releases),
        at(M::POST, "/apps/{app}/releases", create_release),
        at(M::POST, "/apps/{app}/releases/cancel", cancel_release),
        at(M::GET, "/apps/{app}/releases/{version}", release),
        at(
            M::GET,
            "/apps/{app}/releases/{version}/output",
            release_output,
        ),
        at(M::POST, "/apps/{app}/rollback", rollback),
        at(M::GET, "/apps/{app}/config-vars", config),
        at(M::PATCH, "/apps/{app}/config-vars", patch_config),
        at(M::GET, "/apps/{app}/formation", formation),
        at(M::PATCH, "/apps/{app}/formation", scale),
        at(M::GET, "/apps/{app}/dynos", dynos),
        at(M::POST, "/apps/{app}/dynos", run),
        at(M::DELETE, "/apps/{app}/dynos", restart_all),
        at(M::DELETE, "/apps/{app}/dynos/{dyno}", restart_one),
        at(M::POST, "/apps/{app}/dynos/{dyno}/actions/stop", stop_one),
        (
            M::PUT,
            "/apps/{app}/dynos/{dyno}/stdin",
            // Streamed into the dyno as it arrives, never held whole.
            put(send_input).layer(DefaultBodyLimit::disable()),
        ),
        at(M::GET, "/apps/{app}/log-sessions", logs),
        at(M::GET, "/apps/{app}/log-events", log_events),
        at(M::GET, "/apps/{app}/addons", addons),
        at(M::GET, "/apps/{app}/domains", domains),
        at(M::POST, "/apps/{app}/domains", add_domain),
        at(M::DELETE, "/apps/{app}/domains/{hostname}", remove_domain),
        at(M::GET, "/apps/{app}/certs", certs::list),
        at(M::POST, "/apps/{app}/certs", certs::add),
        at(M::DELETE, "/apps/{app}/certs/{domain}", certs::remove),
        at(M::GET, "/apps/{app}/log-drains", drains::list),
        at(M::POST, "/apps/{app}/log-drains", drains::add),
        at(M::DELETE, "/apps/{app}/log-drains/{drain}", drains::remove),
        at(M::GET, "/apps/{app}/kv/keys", kv_keys),
        at(M::GET, "/apps/{app}/kv/entry", kv_get),
        at(M::PUT, "/apps/{app}/kv/entry", kv_set),
        at(M::DELETE, "/apps/{app}/kv/entry", kv_delete),
        at(M::GET, "/apps/{app}/queues", queues),
        at(M::GET, "/apps/{app}/metrics", app_metrics),
        at(M::GET, "/apps/{app}/collaborators", people::collaborators),
        at(
            M::POST,
            "/apps/{app}/collaborators",
            people::add_collaborator,
        ),
        at(
            M::DELETE,
            "/apps/{app}/collaborators/{email}",
            people::remove_collaborator,
        ),
    ]
}

/// The app routes' table as the router needs it: one method router per path.
fn app_router() -> BTreeMap<&'static str, MethodRouter<Shared>> {
    let mut paths: BTreeMap<&'static str, MethodRouter<Shared>> = BTreeMap::new();
    for (_, path, methods) in app_route_table() {
        let merged = match paths.remove(path) {
            Some(before) => before.merge(methods),
            None => methods,
        };
        paths.insert(path, merged);
    }
    paths
}

/// Every route about one app (method, path with `{app}` and maybe one more parameter).
pub fn app_routes() -> Vec<(http::Method, &'static str)> {
    app_route_table()
        .into_iter()
        .map(|(method, path, _)| (method, path))
        .collect()
}

/// `/metrics` alone, without a token: for `wdeploy host --metrics ADDR`, a listener of its
/// own that a scraper on a private network reaches (the API keeps its tokens).
pub fn metrics_router(platform: Shared) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::not_found("only /metrics is served here") })
        .with_state(platform)
}

/// What authentication needs: the tokens and the sessions, through the platform.
#[derive(Clone)]
struct Auth {
    platform: Shared,
}

async fn authenticate(State(auth): State<Auth>, mut req: Request, next: Next) -> Response {
    let bearer = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_string());
    let caller = match (bearer, session::from_cookies(req.headers())) {
        (Some(token), _) => auth.platform.authenticate(&token).await,
        (None, Some(cookie)) => {
            let safe = matches!(*req.method(), http::Method::GET | http::Method::HEAD);
            let caller = auth.platform.session_caller(&cookie).await;
            if matches!(caller, Ok(Some(_)))
                && !safe
                && !req.headers().contains_key(DASHBOARD_HEADER)
            {
                return ApiError::new(
                    403,
                    "forbidden",
                    format!("a change made with the dashboard's cookie must carry the {DASHBOARD_HEADER} header"),
                )
                .into_response();
            }
            caller
        }
        (None, None) => Ok(None),
    };
    let caller = match caller {
        Ok(caller) => caller,
        Err(e) => return e.into_response(),
    };
    let Some(caller) = caller else {
        return ApiError::unauthorized().into_response();
    };
    // The one authorization point of every app route.
    if let Err(refused) = people::authorize(&*auth.platform, &caller, req.uri().path()).await {
        return refused.into_response();
    }
    req.extensions_mut().insert(caller);
    next.run(req).await
}

/// A JSON body whose rejection (bad JSON, too large) is an [`ApiError`] too.
pub(crate) struct JsonBody<T>(pub(crate) T);

impl<T, S> axum::extract::FromRequest<S> for JsonBody<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(JsonBody(value)),
            Err(rejection) => Err(ApiError::new(
                rejection.status().as_u16(),
                if rejection.status().as_u16() == 413 {
                    "payload_too_large"
                } else {
                    "bad_request"
                },
                rejection.body_text(),
            )),
        }
    }
}

/// The `{app}` of a route as an [`AppName`]; a path naming no valid app is 404, as an
/// app that does not exist is.
pub(crate) struct AppPath(pub(crate) AppName);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for AppPath {
    type Rejection = ApiError;
    async fn from_request_parts(
        parts: &mut http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        let params = Path::<BTreeMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::invalid(e.body_text()))?;
        let name = params.0.get("app").cloned().unwrap_or_default();
        name.parse()
            .map(AppPath)
            .map_err(|_| ApiError::not_found(format!("app {name} not found")))
    }
}

/// A query string whose rejection (an unknown log source, say) is an [`ApiError`] too.
struct QueryParams<T>(T);

impl<T, S> axum::extract::FromRequestParts<S> for QueryParams<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;
    async fn from_request_parts(
        parts: &mut http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| QueryParams(q.0))
            .map_err(|e| ApiError::invalid(e.body_text()))
    }
}
