//! A web app answering each path with the same kind of greeting, written in a different
//! way: the idioms WASI 0.2 handlers use to write a response body, for the tests and the
//! benchmark (`bench/idioms.sh`) that check every one of them reaches the host's
//! single-buffer response. Each sets its response first, then writes, as the `wasi`
//! crate's examples do.
//!
//! - `/writeln`      → `writeln!` on the stream, `flush`, `finish` (as samples/hello):
//!   `Hello from writeln`
//! - `/blocking`     → one `blocking-write-and-flush`, then `finish`: `Hello from blocking`
//! - `/writes`       → four `write`s, each followed by `flush` and a wait for the flush
//!   to complete (the stream's own protocol), then `finish`: `Hello from writes`
//! - `/write-finish` → one `write` (no flush), then `finish`: `Hello from write-finish`
//! - `/large?kb=N`   → N KiB (default 1024) of `abc…z` repeated, in 4 KiB
//!   `blocking-write-and-flush`es
//! - `/slow?ms=N`    → `first`, a sleep of N ms (default 200), `second`
//! - `/trailers`     → `Hello with trailers`, then `finish` with the trailer
//!   `x-idiom: trailers` (announced by a `trailer` header)
//! - `/trap-mid-body` → `partial`, then a panic (a wasm trap) before `finish`
//!
//! Every body ends with a newline; any other path is a 404.

use std::io::Write as _;
use wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use wasi::io::streams::OutputStream;

wasi::http::proxy::export!(Idioms);

struct Idioms;

impl wasi::exports::http::incoming_handler::Guest for Idioms {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let full = request.path_with_query().unwrap_or_else(|| "/".into());
        let (path, query) = full.split_once('?').unwrap_or((full.as_str(), ""));
        let param = |key: &str, default: u64| {
            query
                .split('&')
                .find_map(|kv| kv.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        let known = [
            "/writeln",
            "/blocking",
            "/writes",
            "/write-finish",
            "/large",
            "/slow",
            "/trailers",
            "/trap-mid-body",
        ];
        let status = if known.contains(&path) { 200 } else { 404 };

        let headers = Fields::new();
        let _ = headers.set("content-type", &[b"text/plain; charset=utf-8".to_vec()]);
        if path == "/trailers" {
            // HTTP/1.1 sends only the trailers a response announces.
            let _ = headers.set("trailer", &[b"x-idiom".to_vec()]);
        }
        let response = OutgoingResponse::new(headers);
        let _ = response.set_status_code(status);
        let Ok(body) = response.body() else { return };
        ResponseOutparam::set(response_out, Ok(response));
        let Ok(mut out) = body.write() else { return };

        let mut trailers = None;
        match path {
            "/writeln" => {
                let idiom = "writeln";
                let _ = writeln!(out, "Hello from {idiom}");
                let _ = out.flush();
            }
            "/blocking" => {
                let _ = out.blocking_write_and_flush(b"Hello from blocking\n");
            }
            "/writes" => {
                for piece in ["Hello", " from", " writes", "\n"] {
                    write_and_flush(&out, piece.as_bytes());
                }
            }
            "/write-finish" => {
                wait_writable(&out);
                let _ = out.write(b"Hello from write-finish\n");
            }
            "/large" => {
                let len = param("kb", 1024) << 10;
                let pattern: Vec<u8> = (0..4096u32).map(|i| b'a' + (i % 26) as u8).collect();
                let mut sent = 0;
                while sent < len {
                    // Each piece starts where the pattern stands at `sent`, so the whole
                    // body is `abc…z` repeated.
                    let start = (sent % 26) as usize;
                    let n = (len - sent).min(4096 - 26) as usize;
                    if out.blocking_write_and_flush(&pattern[start..start + n]).is_err() {
                        return;
                    }
                    sent += n as u64;
                }
            }
            "/slow" => {
                let _ = out.blocking_write_and_flush(b"first\n");
                std::thread::sleep(std::time::Duration::from_millis(param("ms", 200)));
                let _ = out.blocking_write_and_flush(b"second\n");
            }
            "/trailers" => {
                let _ = out.blocking_write_and_flush(b"Hello with trailers\n");
                let fields = Fields::new();
                let _ = fields.set("x-idiom", &[b"trailers".to_vec()]);
                trailers = Some(fields);
            }
            "/trap-mid-body" => {
                let _ = out.blocking_write_and_flush(b"partial\n");
                panic!("deliberate trap in the middle of a body");
            }
            _ => {
                let _ = out.blocking_write_and_flush(b"not found\n");
            }
        }
        drop(out);
        let _ = OutgoingBody::finish(body, trailers);
    }
}

/// `write`, then `flush`, then a wait until the flush has completed, as the stream's
/// documentation asks of a writer that does not use the blocking calls.
fn write_and_flush(out: &OutputStream, bytes: &[u8]) {
    wait_writable(out);
    if out.write(bytes).is_err() || out.flush().is_err() {
        return;
    }
    wait_writable(out);
}

/// Waits until the stream accepts a write (or has failed).
fn wait_writable(out: &OutputStream) {
    while let Ok(0) = out.check_write() {
        out.subscribe().block();
    }
}
