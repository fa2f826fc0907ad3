//! A WASI 0.3 web app (an async `wasi:http/handler@0.3.0` export), for the platform's
//! tests of component-model async guests.
//!
//! - `/`              → `Hello from WASI 0.3`, its body streamed in two writes
//! - `/count`         → a counter kept in guest memory (shows instance reuse)
//! - `/visits`        → `increment`s the key `visits` of the key-value add-on
//! - `/echo`          → the request body, read through its stream
//! - `/sleep?ms=N`    → answers after an async wait of N milliseconds (the instance is
//!   free for other requests meanwhile)
//! - `/trap`          → panics (a wasm trap)
//! - `/loop`          → spins forever
//! - `/forget`        → answers with an error code instead of a response
//! - `/linger`        → answers `lingering`, and leaves a task behind that waits for ever
//! - `/fetch?authority=A` → an outgoing GET of http://A/ through `wasi:http/client`:
//!   `fetched: status S` and its body, or `fetch failed: ERROR`

use std::sync::atomic::{AtomicU64, Ordering};

wit_bindgen::generate!({
    path: "wit",
    world: "wdeploy:async-guest/async-web",
    generate_all,
});

use wasi::http::types::{ErrorCode, Fields, Request, Response};

struct Web;

static COUNT: AtomicU64 = AtomicU64::new(0);

impl exports::wasi::http::handler::Guest for Web {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let full = request.get_path_with_query().unwrap_or_else(|| "/".into());
        let (path, query) = full.split_once('?').unwrap_or((full.as_str(), ""));
        let param = |key: &str| {
            query
                .split('&')
                .find_map(|kv| kv.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
                .unwrap_or("")
                .to_string()
        };
        println!("async-web: {path}");
        let pieces: Vec<Vec<u8>> = match path {
            "/" => vec![b"Hello from ".to_vec(), b"WASI 0.3\n".to_vec()],
            "/count" => {
                let n = COUNT.fetch_add(1, Ordering::SeqCst) + 1;
                vec![format!("{n}\n").into_bytes()]
            }
            "/visits" => {
                let bucket = wasi::keyvalue::store::open("").map_err(internal)?;
                let n = wasi::keyvalue::atomics::increment(&bucket, "visits", 1)
                    .map_err(internal)?;
                vec![format!("visit {n}\n").into_bytes()]
            }
            "/echo" => {
                let (_, finished) = wit_future::new(|| Ok(()));
                let (mut body, _trailers) = Request::consume_body(request, finished);
                let mut all = Vec::new();
                loop {
                    let (status, chunk) = body.read(Vec::with_capacity(16 << 10)).await;
                    all.extend_from_slice(&chunk);
                    if !matches!(status, wit_bindgen::StreamResult::Complete(_)) {
                        break;
                    }
                }
                vec![all]
            }
            "/sleep" => {
                let ms: u64 = param("ms").parse().unwrap_or(100);
                wasi::clocks::monotonic_clock::wait_for(ms * 1_000_000).await;
                vec![format!("slept {ms}ms\n").into_bytes()]
            }
            "/trap" => panic!("deliberate trap from /trap"),
            "/loop" => loop {
                std::hint::spin_loop();
            },
            "/forget" => return Err(ErrorCode::InternalError(Some("forgot".into()))),
            "/linger" => {
                wit_bindgen::spawn(async {
                    loop {
                        wasi::clocks::monotonic_clock::wait_for(1_000_000_000).await;
                    }
                });
                vec![b"lingering\n".to_vec()]
            }
            "/fetch" => vec![fetch(&param("authority")).await.into_bytes()],
            _ => vec![b"not found\n".to_vec()],
        };
        let status = if path == "/" || pieces.first().is_none_or(|p| p != b"not found\n") {
            200
        } else {
            404
        };
        Ok(respond(status, pieces))
    }
}

/// A `text/plain` response whose body is written piece by piece by a task of its own
/// (a stream's writer waits for its reader, which the host gets with the response).
fn respond(status: u16, pieces: Vec<Vec<u8>>) -> Response {
    let headers = Fields::from_list(&[("content-type".into(), b"text/plain".to_vec())])
        .expect("valid header");
    let (mut body_tx, body_rx) = wit_stream::new();
    let (trailers_tx, trailers_rx) = wit_future::new(|| Ok(None));
    let (response, _sent) = Response::new(headers, Some(body_rx), trailers_rx);
    let _ = response.set_status_code(status);
    wit_bindgen::spawn(async move {
        for piece in pieces {
            let rest = body_tx.write_all(piece).await;
            if !rest.is_empty() {
                return;
            }
        }
        drop(body_tx);
        let _ = trailers_tx.write(Ok(None)).await;
    });
    response
}

/// An outgoing GET of `http://AUTHORITY/`, as an app calling another service would.
async fn fetch(authority: &str) -> String {
    use wasi::http::types::Scheme;
    let (_, trailers) = wit_future::new(|| Ok(None));
    let (request, _sent) = Request::new(Fields::new(), None, trailers, None);
    let _ = request.set_scheme(Some(&Scheme::Http));
    let _ = request.set_authority(Some(authority));
    let _ = request.set_path_with_query(Some("/"));
    let response = match wasi::http::client::send(request).await {
        Ok(response) => response,
        Err(e) => return format!("fetch failed: {e:?}\n"),
    };
    let status = response.get_status_code();
    let (_, finished) = wit_future::new(|| Ok(()));
    let (mut body, _trailers) = Response::consume_body(response, finished);
    let mut all = Vec::new();
    while all.len() < 64 << 10 {
        let (result, chunk) = body.read(Vec::with_capacity(16 << 10)).await;
        all.extend_from_slice(&chunk);
        if !matches!(result, wit_bindgen::StreamResult::Complete(_)) {
            break;
        }
    }
    let body = String::from_utf8_lossy(&all);
    format!("fetched: status {status}\n{body}")
}

fn internal(e: impl std::fmt::Debug) -> ErrorCode {
    ErrorCode::InternalError(Some(format!("{e:?}")))
}

export!(Web);
