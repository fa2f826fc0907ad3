//! A web app whose routes misbehave on purpose, for the platform's fault tests.
//!
//! - `/`              → `ok`
//! - `/trap`          → panics (a wasm trap)
//! - `/loop`          → spins forever
//! - `/alloc`         → allocates until something gives
//! - `/count`         → a counter kept in guest memory (shows instance reuse)
//! - `/files`         → lists the dyno's filesystem root
//! - `/write?name=N`  → writes file N
//! - `/read?name=N`   → reads file N
//! - `/env?name=K`    → the value of env var K
//! - `/flood?lines=N` → prints N log lines (and one line of 25,000 bytes), then `flooded`
//! - `/slow?ms=N`     → answers after N milliseconds
//! - `/handles`       → leaks host resources (header maps) until something gives
//! - `/fetch?authority=A&path=P` → an outgoing GET of http://A/P; its status, or the error

use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

wasi::http::proxy::export!(Web);

struct Web;

static COUNT: AtomicU64 = AtomicU64::new(0);

impl wasi::exports::http::incoming_handler::Guest for Web {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let full = request.path_with_query().unwrap_or_else(|| "/".into());
        let (path, query) = full.split_once('?').unwrap_or((full.as_str(), ""));
        let param = |key: &str| {
            query
                .split('&')
                .find_map(|kv| kv.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
                .unwrap_or("")
                .to_string()
        };
        let (status, text) = match path {
            "/" => (200, "ok\n".to_string()),
            "/trap" => panic!("deliberate trap from /trap"),
            "/loop" => loop {
                std::hint::spin_loop();
            },
            "/alloc" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 16 * 1024 * 1024]);
                }
            }
            "/count" => {
                let n = COUNT.fetch_add(1, Ordering::SeqCst) + 1;
                (200, format!("{n}\n"))
            }
            "/files" => match std::fs::read_dir("/") {
                Ok(entries) => {
                    let mut names: Vec<String> = entries
                        .filter_map(|e| e.ok())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect();
                    names.sort();
                    (200, format!("files: [{}]\n", names.join(",")))
                }
                Err(e) => (500, format!("cannot list /: {e}\n")),
            },
            "/write" => match std::fs::write(format!("/{}", param("name")), b"written") {
                Ok(()) => (200, format!("wrote {}\n", param("name"))),
                Err(e) => (500, format!("cannot write: {e}\n")),
            },
            "/read" => match std::fs::read_to_string(format!("/{}", param("name"))) {
                Ok(s) => (200, format!("{s}\n")),
                Err(e) => (404, format!("cannot read: {e}\n")),
            },
            "/flood" => {
                let lines: u64 = param("lines").parse().unwrap_or(1000);
                for n in 0..lines {
                    println!("flood line {n} {}", "x".repeat(80));
                }
                println!("{}", "y".repeat(25_000));
                (200, "flooded\n".to_string())
            }
            "/handles" => loop {
                std::mem::forget(Fields::new());
            },
            "/slow" => {
                let ms: u64 = param("ms").parse().unwrap_or(1000);
                println!("slow: sleeping {ms}ms");
                std::thread::sleep(std::time::Duration::from_millis(ms));
                (200, format!("slept {ms}ms\n"))
            }
            "/fetch" => fetch(&param("authority"), &param("path")),
            "/env" => (200, format!("{}\n", std::env::var(param("name")).unwrap_or_default())),
            "/header" => {
                // Every value of one request header, one per line, as the guest sees it.
                let values = request.headers().get(&param("name"));
                let lines: String = values
                    .iter()
                    .map(|v| format!("{}\n", String::from_utf8_lossy(v)))
                    .collect();
                (200, lines)
            }
            "/authority" => (200, format!("{}\n", request.authority().unwrap_or_default())),
            _ => (404, "not found\n".to_string()),
        };
        respond(response_out, status, &text);
    }
}

/// An outgoing GET through wasi:http, as an app calling another service would.
fn fetch(authority: &str, path: &str) -> (u16, String) {
    use wasi::http::outgoing_handler;
    use wasi::http::types::{OutgoingRequest, Scheme};
    let request = OutgoingRequest::new(Fields::new());
    let _ = request.set_scheme(Some(&Scheme::Http));
    let _ = request.set_authority(Some(authority));
    let _ = request.set_path_with_query(Some(&format!("/{path}")));
    let pending = match outgoing_handler::handle(request, None) {
        Ok(pending) => pending,
        Err(e) => return (502, format!("fetch refused: {e:?}\n")),
    };
    pending.subscribe().block();
    match pending.get() {
        Some(Ok(Ok(response))) => (200, format!("fetched: status {}\n", response.status())),
        Some(Ok(Err(e))) => (502, format!("fetch failed: {e:?}\n")),
        _ => (502, "fetch failed\n".to_string()),
    }
}

fn respond(out: ResponseOutparam, status: u16, text: &str) {
    let response = OutgoingResponse::new(Fields::new());
    let _ = response.set_status_code(status);
    let Ok(body) = response.body() else { return };
    ResponseOutparam::set(out, Ok(response));
    if let Ok(mut stream) = body.write() {
        let _ = stream.write_all(text.as_bytes());
        let _ = stream.flush();
    }
    let _ = OutgoingBody::finish(body, None);
}
