//! The in-process HTTP front: routes by Host header to an app's least busy web dyno.

mod acme_challenge;
mod answers;
pub mod forward;
mod line;
pub mod node_calls;
mod per_second;

pub use acme_challenge::{CHALLENGE_PATH, ChallengeSource};

use crate::app::AppRuntime;
use crate::cluster::node_tls::NodeTlsCell;
use crate::dyno::web::DynoError;
use crate::listener::{Accepted, ListenerLimits, Transport};
use answers::{error, maintenance, page, refuse};
use forward::{ForwardError, Peers};
use http::header::{HOST, HeaderValue};
use hyper::body::{Body as _, Incoming};
use line::{LineSink, Metered, Protocol, RouterLine};
use parking_lot::RwLock;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

const REQUEST_ID: &str = "x-request-id";

/// Maps `NAME.DOMAIN` hosts, and the apps' custom domains, to apps.
pub struct Router {
    domain: String,
    apps: RwLock<HashMap<String, Arc<AppRuntime>>>,
    /// Custom domains (`www.example.com`) to the name of the app that has each.
    custom: RwLock<HashMap<String, String>>,
    /// In `dev`, the one app every request goes to, whatever its Host header.
    fallback: RwLock<Option<Arc<AppRuntime>>>,
    /// The other nodes running each app's web dynos, for apps with none here.
    peers: Peers,
    /// This node's name, in router lines (`node=`).
    node: std::sync::OnceLock<Arc<str>>,
    /// The port of the HTTPS listener, once it listens: where `force_https` sends
    /// clients (left out of the URL when it is 443).
    https_port: std::sync::OnceLock<u16>,
    app_finder: std::sync::OnceLock<AppFinder>,
    /// Lookups of apps the router does not know, so made-up names cannot flood the store.
    lookups: per_second::PerSecond,
    /// HTTP-01 challenges of the host's ACME orders, answered before any app.
    challenges: acme_challenge::Challenges,
    /// What the host does with the other nodes' calls (set once, by the host).
    node_calls: std::sync::OnceLock<node_calls::NodeCalls>,
}

/// Finds an app by name that the router does not know yet, routing it if it exists.
pub type AppFinder = Arc<
    dyn Fn(String) -> futures::future::BoxFuture<'static, Option<Arc<AppRuntime>>> + Send + Sync,
>;

/// Lookups of unknown app names the router makes per second at most.
const NEW_APP_LOOKUPS: u32 = 20;

impl Router {
    pub fn new(domain: &str) -> Arc<Router> {
        Arc::new(Router {
            domain: domain.to_ascii_lowercase(),
            apps: RwLock::new(HashMap::new()),
            custom: RwLock::new(HashMap::new()),
            fallback: RwLock::new(None),
            peers: Peers::default(),
            node: std::sync::OnceLock::new(),
            https_port: std::sync::OnceLock::new(),
            app_finder: std::sync::OnceLock::new(),
            lookups: per_second::PerSecond::new(NEW_APP_LOOKUPS),
            challenges: acme_challenge::Challenges::default(),
            node_calls: std::sync::OnceLock::new(),
        })
    }

    /// Names this node in router lines, and makes the TLS it forwards requests with and
    /// takes forwarded ones with from its cluster's `keys` (once: a node keeps its name
    /// and its cluster; [`Router::follow_cluster_keys`] follows the keys' rotations).
    pub fn set_node(&self, node: &str, keys: &wdeploy_store::ClusterKeys) -> anyhow::Result<()> {
        let tls = NodeTlsCell::of(node, keys, chrono::Utc::now())?;
        let _ = self.node.set(node.into());
        self.peers.set_tls(tls);
        Ok(())
    }

    /// Makes the TLS between nodes that of the cluster's `keys` as they stand now (a
    /// rotation, or the end of the previous key's grace), if it changed; whether it did.
    /// Connections kept to other nodes are not used again then, and those from nodes
    /// whose key is no longer trusted are closed.
    ///
    /// `None`: the keys as last read (the store could not be read), so that a grace ends
    /// on time all the same.
    pub fn follow_cluster_keys(
        &self,
        keys: Option<&wdeploy_store::ClusterKeys>,
    ) -> anyhow::Result<bool> {
        let Some(tls) = self.peers.tls() else {
            return Ok(false);
        };
        let now = chrono::Utc::now();
        match keys {
            Some(keys) => tls.follow(keys, now),
            None => tls.follow_last(now),
        }
    }

    /// Which cluster key this node proves itself with now (`None` before it is named).
    pub fn node_key_id(&self) -> Option<String> {
        let tls = self.peers.tls()?;
        Some(tls.current().key_id().to_string())
    }

    /// How the router's plain listener speaks: HTTP to clients and, once this node is
    /// named ([`Router::set_node`]), TLS to the cluster's other nodes.
    pub fn plain_transport(&self) -> Transport {
        match self.peers.tls() {
            Some(tls) => Transport::PlainAndNodes(tls.clone()),
            None => Transport::Plain,
        }
    }

    fn node(&self) -> Arc<str> {
        self.node.get().cloned().unwrap_or_else(|| "local".into())
    }

    /// The other nodes that run up web dynos of each app.
    pub fn peers(&self) -> &Peers {
        &self.peers
    }

    pub fn add_app(&self, app: Arc<AppRuntime>) {
        self.apps.write().insert(app.name.to_string(), app);
    }

    pub fn remove_app(&self, name: &str) -> Option<Arc<AppRuntime>> {
        self.apps.write().remove(name)
    }

    /// The host's own domain: apps are served at `NAME.DOMAIN`.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Replaces the whole custom domain table (with the store's, at each full look).
    pub fn set_custom_domains(&self, domains: impl IntoIterator<Item = (String, String)>) {
        let table: HashMap<String, String> = domains.into_iter().collect();
        *self.custom.write() = table;
    }

    /// Sends every request whose host names no app to `app` (used by `wdeploy dev`).
    pub fn set_fallback(&self, app: Arc<AppRuntime>) {
        *self.fallback.write() = Some(app);
    }

    /// How to find an app this router does not know yet (one made through another node
    /// a moment ago): set once, by the host.
    pub fn set_app_finder(&self, finder: AppFinder) {
        let _ = self.app_finder.set(finder);
    }

    /// How to serve the calls other nodes make over the hop ([`node_calls`]): set once,
    /// by the host.
    pub fn set_node_calls(&self, calls: node_calls::NodeCalls) {
        let _ = self.node_calls.set(calls);
    }

    /// The app a Host header names, asking the host for one the router does not know yet
    /// (within [`NEW_APP_LOOKUPS`] a second, whatever names clients make up).
    async fn app_or_found(&self, host: &str) -> Option<Arc<AppRuntime>> {
        if let Some(app) = self.app_for(host) {
            return Some(app);
        }
        let name = self.name_in(host)?;
        let finder = self.app_finder.get()?.clone();
        if !self.lookups.take(Instant::now()) {
            return None;
        }
        finder(name).await
    }

    /// The app name in a Host header (`NAME.DOMAIN[:port]`, or a custom domain an app
    /// has), if any.
    fn name_in(&self, host: &str) -> Option<String> {
        let host = host_name(host);
        // `app.localhost.` is the same name, fully qualified.
        let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
        match host
            .strip_suffix(&self.domain)
            .and_then(|rest| rest.strip_suffix('.'))
        {
            Some(name) => Some(name.to_string()),
            None => self.custom.read().get(&host).cloned(),
        }
    }

    /// The app a Host header (`NAME.DOMAIN[:port]`) names.
    fn app_for(&self, host: &str) -> Option<Arc<AppRuntime>> {
        if let Some(name) = self.name_in(host)
            && let Some(app) = self.apps.read().get(&name)
        {
            return Some(app.clone());
        }
        self.fallback.read().clone()
    }

    /// Answers a request whose Host cannot be trusted with a 400, before any app sees
    /// it. Its router line goes to the app it would have reached only where that is not
    /// in doubt: `dev`'s one app. On a host it names no app for sure, so it is told in
    /// the host's own log.
    fn bad_request(
        &self,
        line: RouterLine,
        bad: BadHost,
        started: Instant,
    ) -> hyper::Response<HyperOutgoingBody> {
        let text = format!("Bad Request: {}\n", bad.what());
        let Some(app) = self.fallback.read().clone() else {
            tracing::info!(host = %line.host, request_id = %line.request_id, "bad request: {}", bad.what());
            return page(400, &line.request_id, &text);
        };
        refuse(
            line,
            &LineSink::of(&app),
            started,
            400,
            ("H25", bad.desc()),
            &text,
        )
    }

    /// Accepts connections within `limits` until `shutdown` resolves, then lets open
    /// connections finish their current requests (for at most `grace`). The router may
    /// serve several listeners at once: plain HTTP, and HTTPS (`transport`).
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        transport: Transport,
        limits: ListenerLimits,
        shutdown: impl std::future::Future<Output = ()>,
        grace: Duration,
    ) {
        let name = if transport.is_tls() {
            "router-tls"
        } else {
            "router"
        };
        if transport.is_tls()
            && let Ok(addr) = listener.local_addr()
        {
            let _ = self.https_port.set(addr.port());
        }
        let service = |conn: Accepted| {
            let router = self.clone();
            hyper::service::service_fn(move |req| {
                let router = router.clone();
                async move { Ok::<_, std::convert::Infallible>(router.route(req, conn).await) }
            })
        };
        crate::listener::serve(name, listener, transport, limits, service, shutdown, grace).await;
    }

    /// Serves one request that came in on connection `conn`: find the app and a dyno,
    /// pass the request, log the outcome.
    async fn route(
        &self,
        mut req: hyper::Request<Incoming>,
        conn: Accepted,
    ) -> hyper::Response<HyperOutgoingBody> {
        let Accepted {
            peer,
            local,
            tls,
            // Only another node's TLS connection carries forwarded requests: nothing a
            // client sends makes its request skip `force_https` or keep its own
            // `X-Forwarded-Proto`.
            node: forwarded,
        } = conn;
        if node_calls::is_node_call(&req) {
            if forwarded {
                return node_calls::serve(self.node_calls.get(), req).await;
            }
            // A client's: it must not reach a node as a call, forwarded or not.
            req.headers_mut().remove(node_calls::NODE_CALL);
        }
        let started = Instant::now();
        let request_id = match req.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()) {
            Some(id) if valid_request_id(id) => id.to_string(),
            _ => uuid::Uuid::new_v4().to_string(),
        };
        if let Some(answer) = self.acme_challenge(&req, &request_id, peer).await {
            return answer;
        }
        let bad_host = BadHost::of(&req);
        // HTTP/1.0 may leave Host out. With one app to serve (`dev`), the request is its,
        // addressed as the client reached the router (guests need an authority); on a
        // host such a request names no app.
        if bad_host.is_none()
            && req.uri().authority().is_none()
            && !req.headers().contains_key(HOST)
            && self.fallback.read().is_some()
            && let Ok(value) = HeaderValue::from_str(&local.to_string())
        {
            req.headers_mut().insert(HOST, value);
        }
        // RFC 9112 §3.2: a request in absolute form is routed by its URI's authority
        // (what the guest sees too), whatever Host says.
        let host = req
            .uri()
            .authority()
            .map(|a| a.as_str())
            .or_else(|| req.headers().get(HOST).and_then(|h| h.to_str().ok()))
            .unwrap_or("")
            .to_string();
        if let Ok(value) = HeaderValue::from_str(&request_id) {
            req.headers_mut().insert(REQUEST_ID, value);
        }
        forwarded_headers(req.headers_mut(), peer, local.port(), tls, forwarded);
        let mut line = RouterLine {
            protocol: Protocol::of(tls, req.version()),
            method: req.method().to_string(),
            path: req
                .uri()
                .path_and_query()
                .map_or("/".to_string(), |p| p.to_string()),
            host: host.clone(),
            request_id: request_id.clone(),
            fwd: peer.ip().to_string(),
            dyno: None,
            node: self.node(),
            code: None,
            connect_ms: 0,
            service_ms: 0,
            status: 0,
            bytes: 0,
        };
        if let Some(bad) = bad_host {
            return self.bad_request(line, bad, started);
        }

        let Some(app) = self.app_or_found(&host).await else {
            tracing::info!(%host, "no such app");
            let text = if host.is_empty() {
                "No such app: the request names no host (it has no Host header)\n".to_string()
            } else {
                format!("No such app: nothing is deployed at {host}\n")
            };
            return page(404, &request_id, &text);
        };
        let logs = LineSink::of(&app);
        // The router's own error answer to this request (on the app's page, if it has one).
        let fail = |line, status, code| error(line, &logs, started, status, code, &app);
        if app.in_maintenance() {
            return maintenance(line, &logs, started, &app);
        }
        // Without an HTTPS listener there is nowhere to send the client: it is served
        // over HTTP as before.
        if !tls
            && !forwarded
            && app.forces_https()
            && let Some(&port) = self.https_port.get()
        {
            return to_https(line, &logs, started, &host, port);
        }
        let Some(dyno) = app.pick_web() else {
            // Another node may run the app's web dynos; a request forwarded once is
            // served here or not at all.
            if forwarded || !self.peers.known_or_found(app.name.as_str()).await {
                return fail(line, 503, ("H14", "No web dynos running"));
            }
            return match self.peers.forward(app.name.as_str(), req).await {
                // The serving node writes the router line (with its `node=`).
                Ok((response, _node)) => response,
                Err(ForwardError::NoPeer) => fail(line, 503, ("H14", "No web dynos running")),
                Err(ForwardError::Failed(why)) => {
                    tracing::warn!(app = %app.name, "forwarding failed: {why}");
                    fail(line, 503, ("H13", "Connection closed without response"))
                }
            };
        };
        line.dyno = Some(dyno.name().to_string());
        line.connect_ms = started.elapsed().as_millis();
        // The guest's deadline runs from the request's arrival; the dyno enforces it (and
        // logs the crash). The router's own timer is a backstop a little later, for a guest
        // that waits in a host call past its deadline.
        let deadline = tokio::time::Instant::now() + dyno.timeout();
        let outcome = tokio::time::timeout_at(
            deadline + DEADLINE_BACKSTOP,
            dyno.handle(req, deadline.into_std()),
        )
        .await;
        let mut response = match outcome {
            Ok(Ok(response)) => response,
            // The dyno already logged why ("Instance crashed: …").
            Ok(Err(DynoError::Crashed(_) | DynoError::NoResponse)) => {
                return fail(line, 500, ("H13", "Connection closed without response"));
            }
            // The app's own requests hold its whole share of the host: like Heroku's
            // H11 (backlog too deep), the app is not keeping up with its traffic.
            Ok(Err(e @ DynoError::OverShare(_))) => {
                app.logs
                    .platform(dyno.name(), format!("Request {request_id} refused: {e}"));
                return fail(line, 503, ("H11", "Backlog too deep"));
            }
            Ok(Err(e @ (DynoError::Guest(_) | DynoError::Boot(_)))) => {
                app.logs
                    .platform(dyno.name(), format!("Request {request_id} failed: {e}"));
                return fail(line, 503, ("H10", "App crashed"));
            }
            // Whichever notices first, the router's timer or the guest's deadline.
            Ok(Err(DynoError::Timeout)) | Err(_) => {
                return fail(line, 503, ("H12", "Request timeout"));
            }
        };
        if let Ok(value) = HeaderValue::from_str(&request_id) {
            response.headers_mut().insert(REQUEST_ID, value);
        }
        line.status = response.status().as_u16();
        let (parts, body) = response.into_parts();
        hyper::Response::from_parts(parts, Metered::wrap(body, line, started, logs))
    }
}

/// Sends a plain request for an app with `force_https` to the same URL over HTTPS:
/// `301` for GET and HEAD, `308` for the others (which keeps their method and body),
/// as a browser and a client library each expect; `port` is the HTTPS listener's.
fn to_https(
    mut line: RouterLine,
    logs: &LineSink,
    started: Instant,
    host: &str,
    port: u16,
) -> hyper::Response<HyperOutgoingBody> {
    let name = host_name(host);
    let authority = if port == 443 {
        name.to_string()
    } else {
        format!("{name}:{port}")
    };
    let location = format!("https://{authority}{}", line.path);
    let status = if matches!(line.method.as_str(), "GET" | "HEAD") {
        301
    } else {
        308
    };
    let mut response = page(status, &line.request_id, &format!("Moved to {location}\n"));
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(http::header::LOCATION, value);
    }
    line.status = status;
    line.bytes = response.body().size_hint().exact().unwrap_or(0);
    logs.write(line, started);
    response
}

/// How long after a request's deadline the router gives up on the dyno by itself: the
/// guest's own deadline (checked on its lane at every epoch tick) normally ends the
/// request first and says so in the log.
const DEADLINE_BACKSTOP: Duration = Duration::from_secs(1);

/// What the app learns of the client, as Heroku's router tells it: `X-Forwarded-For`
/// (the client's address appended to any it sent), `X-Forwarded-Proto` and
/// `X-Forwarded-Port` (set by the router, never taken from the client), and `Via`.
///
/// A request another node's router `forwarded` keeps the scheme and port that router
/// set: they describe the client's connection, not the hop between nodes. Only a
/// request that came over another node's TLS connection counts (`router::forward`).
fn forwarded_headers(
    headers: &mut http::HeaderMap,
    peer: SocketAddr,
    port: u16,
    tls: bool,
    forwarded: bool,
) {
    let client = peer.ip().to_string();
    let chain = match headers.get(FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(earlier) if !earlier.trim().is_empty() => format!("{earlier}, {client}"),
        _ => client,
    };
    if let Ok(value) = HeaderValue::from_str(&chain) {
        headers.insert(FORWARDED_FOR, value);
    }
    let kept = forwarded
        && matches!(
            headers.get(FORWARDED_PROTO).map(HeaderValue::as_bytes),
            Some(b"http" | b"https")
        )
        && headers
            .get(FORWARDED_PORT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|p| p.parse::<u16>().is_ok());
    if !kept {
        let scheme = if tls { "https" } else { "http" };
        headers.insert(FORWARDED_PROTO, HeaderValue::from_static(scheme));
        headers.insert(FORWARDED_PORT, HeaderValue::from(port));
    }
    headers.append(http::header::VIA, HeaderValue::from_static("1.1 wdeploy"));
}

const FORWARDED_FOR: &str = "x-forwarded-for";
const FORWARDED_PROTO: &str = "x-forwarded-proto";
const FORWARDED_PORT: &str = "x-forwarded-port";

/// What is wrong with a request's Host (RFC 9112 §3.2): the router cannot tell which
/// app it is for, nor hand it to a guest, which must be told an authority.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BadHost {
    /// An HTTP/1.1 request in origin form without a Host header (HTTP/1.0 may omit it).
    Missing,
    /// Two or more Host headers.
    Repeated,
    /// A Host header that is not visible ASCII.
    Invalid,
}

impl BadHost {
    fn of<B>(req: &hyper::Request<B>) -> Option<BadHost> {
        let mut hosts = req.headers().get_all(HOST).iter();
        match (hosts.next(), hosts.next()) {
            (Some(_), Some(_)) => Some(BadHost::Repeated),
            (Some(host), None) if host.to_str().is_err() => Some(BadHost::Invalid),
            (Some(_), None) => None,
            (None, _) if req.uri().authority().is_some() => None,
            (None, _) if req.version() <= http::Version::HTTP_10 => None,
            (None, _) => Some(BadHost::Missing),
        }
    }

    /// For the client: `Bad Request: no Host header`.
    fn what(self) -> &'static str {
        match self {
            BadHost::Missing => "no Host header",
            BadHost::Repeated => "more than one Host header",
            BadHost::Invalid => "the Host header is not valid",
        }
    }

    /// For the router line (Heroku's H25 is a request the router refuses as malformed).
    fn desc(self) -> &'static str {
        match self {
            BadHost::Missing => "HTTP restriction: no Host header",
            BadHost::Repeated => "HTTP restriction: more than one Host header",
            BadHost::Invalid => "HTTP restriction: invalid Host header",
        }
    }
}

/// A Host header's name without its port (`www.example.com:8080` -> `www.example.com`).
fn host_name(host: &str) -> &str {
    host.rsplit_once(':').map_or(host, |(name, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            name
        } else {
            host
        }
    })
}

/// Heroku keeps an incoming request id of 20–200 characters from a safe alphabet.
fn valid_request_id(id: &str) -> bool {
    (20..=200).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'=' | b'/' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids() {
        assert!(valid_request_id("0123456789abcdef0123"));
        assert!(!valid_request_id("short"));
        assert!(!valid_request_id("0123456789abcdef0123 with spaces"));
    }

    fn request(version: http::Version, uri: &str, hosts: &[&[u8]]) -> hyper::Request<()> {
        let mut req = hyper::Request::builder()
            .version(version)
            .uri(uri)
            .body(())
            .expect("request");
        for host in hosts {
            let value = HeaderValue::from_bytes(host).expect("header value");
            req.headers_mut().append(HOST, value);
        }
        req
    }

    #[test]
    fn a_host_is_required_once_and_readable() {
        use http::Version;
        let bad = |version, uri, hosts: &[&[u8]]| BadHost::of(&request(version, uri, hosts));
        assert_eq!(bad(Version::HTTP_11, "/", &[b"a.localhost"]), None);
        assert_eq!(bad(Version::HTTP_11, "/", &[]), Some(BadHost::Missing));
        // HTTP/1.0 may leave it out, and an absolute URI names its authority.
        assert_eq!(bad(Version::HTTP_10, "/", &[]), None);
        assert_eq!(bad(Version::HTTP_11, "http://a.localhost/", &[]), None);
        assert_eq!(
            bad(Version::HTTP_11, "/", &[b"a.localhost", b"b.localhost"]),
            Some(BadHost::Repeated)
        );
        assert_eq!(
            bad(Version::HTTP_10, "/", &[b"a.localhost", b"a.localhost"]),
            Some(BadHost::Repeated)
        );
        assert_eq!(
            bad(Version::HTTP_11, "/", &[b"caf\xe9.localhost"]),
            Some(BadHost::Invalid)
        );
    }
}
