//! The absolute request URI a WASI 0.3 web guest reads its scheme and authority from.

use hyper::body::Incoming;

/// The request with the absolute URI a WASI 0.3 guest reads its scheme and authority
/// from (0.2's `new_incoming_request` takes them from the Host header itself). The router
/// has checked the Host header; without one the URI stays as it is.
pub fn with_absolute_uri(mut req: hyper::Request<Incoming>) -> hyper::Request<Incoming> {
    if req.uri().authority().is_some() {
        return req;
    }
    let host = req
        .headers()
        .get(hyper::header::HOST)
        .and_then(|host| host.to_str().ok())
        .and_then(|host| host.parse::<http::uri::Authority>().ok());
    if let Some(authority) = host {
        let mut parts = req.uri().clone().into_parts();
        parts.scheme = Some(http::uri::Scheme::HTTP);
        parts.authority = Some(authority);
        if parts.path_and_query.is_none() {
            parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
        }
        if let Ok(uri) = http::Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
    req
}
