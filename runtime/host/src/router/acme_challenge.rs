//! HTTP-01 challenges (RFC 8555 §8.3): `GET /.well-known/acme-challenge/TOKEN` on any
//! host name is answered by the router itself, before any app, with the key
//! authorization the host's ACME order published in the store (on whichever node), so an
//! app's own routes, its `force_https` and its dynos' state never stand in the way.
//!
//! Only a token of the ACME alphabet is looked up; answers found are kept a minute (a CA
//! fetches from several vantage points); lookups of tokens not kept are limited to
//! [`CHALLENGE_LOOKUPS`] a second, so made-up tokens cannot flood the store. Each answer
//! is told in the host's own log (a router line: no app is involved).

use super::Router;
use super::per_second::PerSecond;
use futures::future::BoxFuture;
use hyper::body::Body as _;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// Where challenges are answered.
pub const CHALLENGE_PATH: &str = "/.well-known/acme-challenge/";

/// Finds the key authorization of a token (the store's challenge), if it is one.
pub type ChallengeSource = Arc<dyn Fn(String) -> BoxFuture<'static, Option<String>> + Send + Sync>;

/// Store lookups of challenge tokens the router makes per second at most.
pub const CHALLENGE_LOOKUPS: u32 = 20;

/// How long a found answer is kept, and how many at most.
const KEEP_FOUND: Duration = Duration::from_secs(60);
const MAX_FOUND: usize = 1024;

/// The router's part of HTTP-01.
pub(super) struct Challenges {
    source: OnceLock<ChallengeSource>,
    lookups: PerSecond,
    /// Answers found lately: token → (key authorization, when found).
    found: Mutex<HashMap<String, (String, Instant)>>,
}

impl Default for Challenges {
    fn default() -> Challenges {
        Challenges {
            source: OnceLock::new(),
            lookups: PerSecond::new(CHALLENGE_LOOKUPS),
            found: Mutex::default(),
        }
    }
}

/// What the router does with a challenge request.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Found(String),
    /// Not a token, or no challenge under way has it.
    Unknown,
    /// Over [`CHALLENGE_LOOKUPS`].
    Busy,
}

impl Challenges {
    /// The token a request asks for, if it is a challenge request this router answers
    /// (a GET or HEAD under [`CHALLENGE_PATH`], on a host whose challenges are set).
    fn token_in<B>(&self, req: &hyper::Request<B>) -> Option<String> {
        self.source.get()?;
        if !matches!(*req.method(), http::Method::GET | http::Method::HEAD) {
            return None;
        }
        req.uri()
            .path()
            .strip_prefix(CHALLENGE_PATH)
            .map(str::to_string)
    }

    async fn look_up(&self, token: &str, now: Instant) -> Outcome {
        if !wdeploy_store::acme::valid_token(token) {
            return Outcome::Unknown;
        }
        if let Some((answer, at)) = self.found.lock().get(token)
            && now.duration_since(*at) < KEEP_FOUND
        {
            return Outcome::Found(answer.clone());
        }
        if !self.lookups.take(now) {
            return Outcome::Busy;
        }
        let Some(source) = self.source.get().cloned() else {
            return Outcome::Unknown;
        };
        let Some(answer) = source(token.to_string()).await else {
            return Outcome::Unknown;
        };
        let mut found = self.found.lock();
        if found.len() >= MAX_FOUND {
            found.retain(|_, (_, at)| now.duration_since(*at) < KEEP_FOUND);
        }
        if found.len() < MAX_FOUND {
            found.insert(token.to_string(), (answer.clone(), now));
        }
        Outcome::Found(answer)
    }
}

impl Router {
    /// Where the router finds the challenges of the host's ACME orders: set once, by the
    /// host. Until then (and in `wdeploy dev`) challenge paths go to the apps like any.
    pub fn set_challenge_source(&self, source: ChallengeSource) {
        let _ = self.challenges.source.set(source);
    }

    /// The answer to a challenge request, or `None` for any other request.
    pub(super) async fn acme_challenge<B>(
        &self,
        req: &hyper::Request<B>,
        request_id: &str,
        peer: SocketAddr,
    ) -> Option<hyper::Response<HyperOutgoingBody>> {
        let token = self.challenges.token_in(req)?;
        let started = Instant::now();
        let outcome = self.challenges.look_up(&token, started).await;
        let mut response = match &outcome {
            Outcome::Found(answer) => super::page(200, request_id, answer),
            Outcome::Unknown => super::page(404, request_id, "No such ACME challenge\n"),
            Outcome::Busy => {
                let mut busy = super::page(503, request_id, "Too many ACME challenge lookups\n");
                busy.headers_mut()
                    .insert(http::header::RETRY_AFTER, http::HeaderValue::from(1));
                busy
            }
        };
        if matches!(outcome, Outcome::Found(_)) {
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/octet-stream"),
            );
        }
        let host = req
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        tracing::info!(
            target: "wdeploy::router",
            at = if matches!(outcome, Outcome::Found(_)) { "info" } else { "error" },
            method = %req.method(),
            path = %req.uri().path(),
            host,
            request_id,
            fwd = %peer.ip(),
            node = %self.node(),
            status = response.status().as_u16(),
            bytes = response.body().size_hint().exact().unwrap_or(0),
            service = ?started.elapsed(),
            "acme-challenge"
        );
        Some(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn request(method: http::Method, path: &str) -> hyper::Request<()> {
        hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, "www.example.test")
            .body(())
            .unwrap()
    }

    /// Challenges answering `known`, counting the lookups made.
    fn challenges(known: &'static str, lookups: Arc<AtomicU32>) -> Challenges {
        let challenges = Challenges::default();
        let _ = challenges.source.set(Arc::new(move |token: String| {
            lookups.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move { (token == known).then(|| format!("{token}.thumbprint")) })
        }));
        challenges
    }

    #[test]
    fn only_challenge_requests_are_taken_and_only_once_a_source_is_set() {
        let path = "/.well-known/acme-challenge/abc";
        assert_eq!(
            Challenges::default().token_in(&request(http::Method::GET, path)),
            None
        );
        let set = challenges("abc", Arc::default());
        assert_eq!(
            set.token_in(&request(http::Method::GET, path)).as_deref(),
            Some("abc")
        );
        assert_eq!(
            set.token_in(&request(http::Method::HEAD, path)).as_deref(),
            Some("abc")
        );
        assert_eq!(set.token_in(&request(http::Method::POST, path)), None);
        assert_eq!(
            set.token_in(&request(http::Method::GET, "/.well-known/other")),
            None
        );
        assert_eq!(set.token_in(&request(http::Method::GET, "/")), None);
    }

    #[tokio::test]
    async fn known_tokens_are_answered_and_kept_bad_ones_never_looked_up() {
        let lookups = Arc::new(AtomicU32::new(0));
        let set = challenges("tok_en-1", lookups.clone());
        let now = Instant::now();
        let found = Outcome::Found("tok_en-1.thumbprint".to_string());
        assert_eq!(set.look_up("tok_en-1", now).await, found);
        // A CA's other vantage points: answered from what was found.
        assert_eq!(set.look_up("tok_en-1", now).await, found);
        assert_eq!(lookups.load(Ordering::SeqCst), 1);
        assert_eq!(set.look_up("other", now).await, Outcome::Unknown);
        assert_eq!(lookups.load(Ordering::SeqCst), 2);
        for bad in ["", "../../etc", "a%2Fb", "a.b", "tok en"] {
            assert_eq!(set.look_up(bad, now).await, Outcome::Unknown, "{bad}");
        }
        assert_eq!(
            lookups.load(Ordering::SeqCst),
            2,
            "bad tokens are not looked up"
        );
        // Past a minute it is looked up again.
        let later = now + KEEP_FOUND;
        assert_eq!(set.look_up("tok_en-1", later).await, found);
        assert_eq!(lookups.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn made_up_tokens_spend_the_lookup_budget_and_no_more() {
        let lookups = Arc::new(AtomicU32::new(0));
        let set = challenges("real", lookups.clone());
        let now = Instant::now();
        let found = Outcome::Found("real.thumbprint".to_string());
        assert_eq!(set.look_up("real", now).await, found);
        for n in 1..CHALLENGE_LOOKUPS {
            assert_eq!(
                set.look_up(&format!("fake{n}"), now).await,
                Outcome::Unknown
            );
        }
        assert_eq!(set.look_up("fake-over", now).await, Outcome::Busy);
        assert_eq!(lookups.load(Ordering::SeqCst), CHALLENGE_LOOKUPS);
        // A token found before is still answered, without a lookup.
        assert_eq!(set.look_up("real", now).await, found);
        // The next second has its own budget.
        let next = now + Duration::from_secs(1);
        assert_eq!(set.look_up("fake-next", next).await, Outcome::Unknown);
        assert_eq!(lookups.load(Ordering::SeqCst), CHALLENGE_LOOKUPS + 1);
    }
}
