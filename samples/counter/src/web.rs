//! A hit counter in the app's key-value add-on: `GET /` counts a visit and answers the new
//! count, `GET /count` answers the count without changing it.
//!
//! The count lives in the host's store, not in the instance: it is shared by every web
//! dyno of the app, survives restarts and deploys, and `increment` is atomic, so no visit
//! is lost however many dynos count at once.

use std::io::Write as _;
use wasi::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

/// Bindings for the add-ons (`wdeploy:platform/addons`), generated from the vendored WIT.
/// In a module of their own: they define a `wasi` module, beside the `wasi` crate.
mod addons {
    wit_bindgen::generate!({
        path: "wit",
        world: "wdeploy:platform/addons",
        generate_all,
    });
}

use addons::wasi::keyvalue::{atomics, store};

/// The key the count is kept under, in the app's default bucket.
const HITS: &str = "hits";

wasi::http::proxy::export!(Web);

struct Web;

impl wasi::exports::http::incoming_handler::Guest for Web {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_else(|| "/".into());
        let (status, body) = match (request.method(), path.as_str()) {
            (Method::Get, "/") => match visit() {
                Ok(n) => (200, format!("{n}\n")),
                Err(e) => (500, format!("could not count: {e}\n")),
            },
            (Method::Get, "/count") => match count() {
                Ok(n) => (200, format!("{n}\n")),
                Err(e) => (500, format!("could not read the count: {e}\n")),
            },
            _ => (404, "not found\n".to_string()),
        };
        respond(response_out, status, &body);
    }
}

/// Counts one visit: one atomic increment in the host's store.
fn visit() -> Result<u64, String> {
    let bucket = store::open("").map_err(describe)?;
    atomics::increment(&bucket, HITS, 1).map_err(describe)
}

fn count() -> Result<u64, String> {
    let bucket = store::open("").map_err(describe)?;
    match bucket.get(HITS).map_err(describe)? {
        None => Ok(0),
        Some(bytes) => String::from_utf8_lossy(&bytes)
            .parse()
            .map_err(|_| format!("`{HITS}` does not hold a number")),
    }
}

fn describe(e: store::Error) -> String {
    match e {
        store::Error::NoSuchStore => "no such bucket".into(),
        store::Error::AccessDenied => "access denied".into(),
        store::Error::Other(message) => message,
    }
}

fn respond(out: ResponseOutparam, status: u16, body: &str) {
    let headers = Fields::new();
    let _ = headers.set("content-type", &[b"text/plain; charset=utf-8".to_vec()]);
    let response = OutgoingResponse::new(headers);
    let _ = response.set_status_code(status);
    let Ok(outgoing) = response.body() else {
        return;
    };
    ResponseOutparam::set(out, Ok(response));
    if let Ok(mut stream) = outgoing.write() {
        let _ = stream.write_all(body.as_bytes());
        let _ = stream.flush();
    }
    let _ = OutgoingBody::finish(outgoing, None);
}
