//! Calls one node of a cluster makes to another over the hop between their routers,
//! which are no app's requests. Each acts on something only the other node holds, for a
//! client whose API call reached this node, as it does behind a load balancer: the input
//! of a one-off dyno the other node runs (`wdeploy run --stdin`), and the cancelling of
//! a release the other node is taking live (`wdeploy releases:cancel`).
//!
//! A node call is told apart by the [`NODE_CALL`] header, and is taken only on a
//! connection another node opened with the cluster's certificate
//! ([`Accepted::node`](crate::listener::Accepted)). The router drops that header from
//! every request a client sends before anything else reads it, so no client can make
//! its request (or one forwarded for it) count as a node's call. The node that took the
//! API call has already checked the caller's token and access: the node called trusts
//! it, as it trusts the requests that node forwards.
//!
//! The answer is the API's own: 204 once done, or an [`ApiError`] as JSON, which the
//! calling node gives its client as if it had failed there.

use bytes::Bytes;
use futures::TryStreamExt;
use http::HeaderValue;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wdeploy_api::ApiError;
use wdeploy_api::server::BlobStream;
use wdeploy_api::wire::ErrorBody;
use wdeploy_core::AppName;
use wdeploy_store::AppId;

/// The header that makes a request on the hop a node's call, naming which.
pub const NODE_CALL: &str = "x-wdeploy-node-call";
/// The app's id, so that an app renamed, or destroyed and made again under its name,
/// meanwhile is never acted on for another.
const APP_ID: &str = "x-wdeploy-app-id";
/// Who made the API call, for the called node's log.
const BY: &str = "x-wdeploy-by";

/// A call about `app`, which `by` asked of the node that sends it on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeCall {
    pub app: AppName,
    pub app_id: AppId,
    /// Who asked (as the caller's node named them).
    pub by: String,
    pub what: Asked,
}

/// What a node asks of another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Asked {
    /// The input of one-off dyno `dyno`, in the call's body.
    OneOffInput { dyno: String },
    /// Cancel release `version` going live; answered once it has stopped.
    CancelRelease { version: u64 },
}

impl Asked {
    /// The value of [`NODE_CALL`] that names it.
    fn kind(&self) -> &'static str {
        match self {
            Asked::OneOffInput { .. } => "one-off-input",
            Asked::CancelRelease { .. } => "cancel-release",
        }
    }
}

/// What the host does with a node's call (`input` is its body), then says how it went.
pub type NodeCalls = std::sync::Arc<
    dyn Fn(NodeCall, BlobStream) -> futures::future::BoxFuture<'static, Result<(), ApiError>>
        + Send
        + Sync,
>;

impl NodeCall {
    /// The request that carries the call, with `body`, to the node that acts on it.
    pub fn request<B>(&self, body: B) -> Result<hyper::Request<B>, ApiError> {
        let (method, path) = match &self.what {
            Asked::OneOffInput { dyno } => (
                http::Method::PUT,
                format!("/apps/{}/dynos/{dyno}/stdin", self.app),
            ),
            Asked::CancelRelease { version } => (
                http::Method::POST,
                format!("/apps/{}/releases/{version}/cancel", self.app),
            ),
        };
        hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, "wdeploy-node")
            .header(NODE_CALL, self.what.kind())
            .header(APP_ID, self.app_id.as_str())
            .header(BY, &self.by)
            .body(body)
            .map_err(|e| ApiError::invalid(format!("no node call can name that: {e}")))
    }

    /// The call `req` makes; one not readable is an error (only a node of another
    /// version could send one).
    fn of<B>(req: &hyper::Request<B>) -> Result<NodeCall, ApiError> {
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| ApiError::invalid(format!("a node call without {name}")))
        };
        let kind = header(NODE_CALL)?;
        let unreadable = || ApiError::invalid(format!("no node call: {}", req.uri().path()));
        let parts: Vec<&str> = req.uri().path().split('/').collect();
        let (app, what) = match (kind, parts.as_slice()) {
            ("one-off-input", ["", "apps", app, "dynos", dyno, "stdin"]) => {
                let dyno = dyno.to_string();
                (app, Asked::OneOffInput { dyno })
            }
            ("cancel-release", ["", "apps", app, "releases", version, "cancel"]) => {
                let version = version.parse().map_err(|_| unreadable())?;
                (app, Asked::CancelRelease { version })
            }
            ("one-off-input" | "cancel-release", _) => return Err(unreadable()),
            (other, _) => {
                return Err(ApiError::not_found(format!("no node call {other}")));
            }
        };
        Ok(NodeCall {
            app: app.parse().map_err(|_| unreadable())?,
            app_id: header(APP_ID)?.parse().map_err(ApiError::invalid)?,
            by: header(BY)?.to_string(),
            what,
        })
    }

    /// How `node` answered: `Ok` for 204, its [`ApiError`] otherwise (read from its
    /// body, or made from its status when the body is none).
    pub async fn answer(node: &str, response: hyper::Response<Incoming>) -> Result<(), ApiError> {
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = response.into_body().collect().await.map(|b| b.to_bytes());
        match body
            .ok()
            .and_then(|b| serde_json::from_slice::<ErrorBody>(&b).ok())
        {
            Some(e) => Err(ApiError::new(status.as_u16(), &e.id, e.message)),
            None => Err(ApiError::new(
                502,
                "bad_gateway",
                format!("node {node} answered with {status}"),
            )),
        }
    }
}

/// Whether `req` is a node's call; on a client's connection it never is.
pub(super) fn is_node_call<B>(req: &hyper::Request<B>) -> bool {
    req.headers().contains_key(NODE_CALL)
}

/// Serves a node's call with `calls` (the host's), answering as the API would.
pub(super) async fn serve(
    calls: Option<&NodeCalls>,
    req: hyper::Request<Incoming>,
) -> hyper::Response<HyperOutgoingBody> {
    let outcome = match (calls, NodeCall::of(&req)) {
        (_, Err(e)) => Err(e),
        (None, Ok(_)) => Err(ApiError::new(
            503,
            "unavailable",
            "this node is still starting: it takes no node calls yet",
        )),
        (Some(calls), Ok(call)) => {
            let body = req
                .into_body()
                .into_data_stream()
                .map_err(std::io::Error::other);
            calls(call, Box::pin(body)).await
        }
    };
    match outcome {
        Ok(()) => respond(204, Bytes::new()),
        Err(e) => {
            let body = ErrorBody {
                id: e.id,
                message: e.message,
            };
            let json = serde_json::to_vec(&body).unwrap_or_default();
            let mut response = respond(e.status, json.into());
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
    }
}

fn respond(status: u16, body: Bytes) -> hyper::Response<HyperOutgoingBody> {
    let body = Full::new(body)
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut response = hyper::Response::new(body);
    *response.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(what: Asked) -> NodeCall {
        NodeCall {
            app: "shop".parse().expect("a name"),
            app_id: "0123456789abcdef0123456789abcdef".parse().expect("an id"),
            by: "bob@example.com".into(),
            what,
        }
    }

    #[test]
    fn a_call_reads_back_as_it_was_made() {
        for what in [
            Asked::OneOffInput {
                dyno: "run.1234".into(),
            },
            Asked::CancelRelease { version: 7 },
        ] {
            let req = call(what.clone()).request(()).expect("a request");
            assert!(is_node_call(&req));
            assert_eq!(NodeCall::of(&req).expect("read"), call(what));
        }
    }

    #[test]
    fn a_call_that_names_nothing_readable_is_refused() {
        let input = || Asked::OneOffInput {
            dyno: "run.1".into(),
        };
        let mut req = call(input()).request(()).expect("a request");
        *req.uri_mut() = "/apps/shop/dynos/run.1/stdin/more".parse().expect("a uri");
        assert_eq!(NodeCall::of(&req).expect_err("refused").status, 422);
        let mut req = call(Asked::CancelRelease { version: 1 })
            .request(())
            .expect("a request");
        *req.uri_mut() = "/apps/shop/releases/v1/cancel".parse().expect("a uri");
        assert_eq!(NodeCall::of(&req).expect_err("refused").status, 422);
        let mut req = call(input()).request(()).expect("a request");
        req.headers_mut()
            .insert(APP_ID, HeaderValue::from_static("shop"));
        assert_eq!(NodeCall::of(&req).expect_err("refused").status, 422);
        let mut req = call(input()).request(()).expect("a request");
        req.headers_mut()
            .insert(NODE_CALL, HeaderValue::from_static("restart"));
        assert_eq!(NodeCall::of(&req).expect_err("refused").status, 404);
    }
}
