//! A web app whose routes misbehave on purpose, for the platform's fault tests.
//!
//! - `/`              → `ok`
//! - `/trap`          → panics (a wasm trap)
//! - `/loop`          → spins forever
//! - `/alloc`         → allocates until something gives
//! - `/count`         → a counter kept in guest memory (shows instance reuse)
//! - `/forget`        → returns without setting a response, and leaves the instance
//!   unable to answer again (as a fetch handler that cannot respond twice): every later
//!   request to this instance also returns without a response
//! - `/files`         → lists the dyno's filesystem root
//! - `/write?name=N`  → writes file N
//! - `/read?name=N`   → reads file N
//! - `/env?name=K`    → the value of env var K
//! - `/flood?lines=N` → prints N log lines (and one line of 25,000 bytes), then `flooded`
//! - `/slow?ms=N`     → answers after N milliseconds
//! - `/handles`       → leaks host resources (header maps) until something gives
//! - `/fetch?authority=A&path=P[&body=1]` → an outgoing GET of http://A/P; its status (and
//!   with `body=1` the first 64 KiB of its body), or the error
//! - `/fill?mb=N&name=F[&append=1]` → writes file F (default `fill`) with Rust's std in
//!   64 KiB pieces until N MiB are written or a write fails: `filled B bytes, then KIND:
//!   ERROR` or `filled B bytes, no error`
//! - `/fill?mb=N&name=F&raw=1` → the same through `wasi:filesystem` itself (4 KiB
//!   `blocking-write-and-flush`es), the error being the stream's `filesystem-error-code`;
//!   the error's `to-debug-string` goes to the log (`fill: the write failed: …`)
//! - `/touch?n=N`     → creates up to N empty files `t0`, `t1`…: `touched C files, then …`
//! - `/remove?name=F` → removes file F

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

wasi::http::proxy::export!(Web);

struct Web;

static COUNT: AtomicU64 = AtomicU64::new(0);
static FORGOTTEN: AtomicBool = AtomicBool::new(false);

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
        if path == "/forget" {
            FORGOTTEN.store(true, Ordering::SeqCst);
        }
        if FORGOTTEN.load(Ordering::SeqCst) {
            println!("forgetting to answer {path}");
            return;
        }
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
            "/fill" if param("raw") == "1" => {
                fill_raw(&param("name"), param("mb").parse().unwrap_or(1))
            }
            "/fill" => fill(
                &param("name"),
                param("mb").parse().unwrap_or(1),
                param("append") == "1",
            ),
            "/touch" => touch(param("n").parse().unwrap_or(1)),
            "/remove" => match std::fs::remove_file(format!("/{}", param("name"))) {
                Ok(()) => (200, format!("removed {}\n", param("name"))),
                Err(e) => (500, format!("cannot remove: {e}\n")),
            },
            "/fetch" => fetch(&param("authority"), &param("path"), param("body") == "1"),
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

/// Writes `mb` MiB to `/name` (created or truncated; appended to with `append`) as an
/// app filling its disk would, and says how far it got and how the disk refused.
fn fill(name: &str, mb: u64, append: bool) -> (u16, String) {
    let name = if name.is_empty() { "fill" } else { name };
    let path = format!("/{name}");
    let opened = if append {
        std::fs::OpenOptions::new().create(true).append(true).open(&path)
    } else {
        std::fs::File::create(&path)
    };
    let mut file = match opened {
        Ok(file) => file,
        Err(e) => return (200, format!("filled 0 bytes, then {:?}: {e}\n", e.kind())),
    };
    let piece = vec![0x5au8; 64 << 10];
    let mut written: u64 = 0;
    while written < mb << 20 {
        if let Err(e) = file.write_all(&piece) {
            return (200, format!("filled {written} bytes, then {:?}: {e}\n", e.kind()));
        }
        written += piece.len() as u64;
    }
    (200, format!("filled {written} bytes, no error\n"))
}

/// [`fill`] without Rust's std and wasi-libc (which report every failed stream write as
/// EIO): the error code the host gives for the stream's failure, as a guest can ask it.
fn fill_raw(name: &str, mb: u64) -> (u16, String) {
    use wasi::filesystem::preopens::get_directories;
    use wasi::filesystem::types::{DescriptorFlags, OpenFlags, PathFlags, filesystem_error_code};
    use wasi::io::streams::StreamError;
    let name = if name.is_empty() { "fill" } else { name };
    let Some((root, _)) = get_directories().into_iter().next() else {
        return (500, "no preopened directory\n".to_string());
    };
    let file = match root.open_at(
        PathFlags::empty(),
        name,
        OpenFlags::CREATE | OpenFlags::TRUNCATE,
        DescriptorFlags::WRITE,
    ) {
        Ok(file) => file,
        Err(code) => return (200, format!("filled 0 bytes, then {code:?}\n")),
    };
    let stream = match file.write_via_stream(0) {
        Ok(stream) => stream,
        Err(code) => return (200, format!("filled 0 bytes, then {code:?}\n")),
    };
    let piece = [0x5au8; 4096];
    let mut written: u64 = 0;
    while written < mb << 20 {
        match stream.blocking_write_and_flush(&piece) {
            Ok(()) => written += piece.len() as u64,
            Err(StreamError::LastOperationFailed(e)) => {
                let code = filesystem_error_code(&e);
                // What the host says of the error, as an app logging it would show it.
                println!("fill: the write failed: {}", e.to_debug_string());
                return (200, format!("filled {written} bytes, then {code:?}\n"));
            }
            Err(StreamError::Closed) => {
                return (200, format!("filled {written} bytes, then closed\n"));
            }
        }
    }
    (200, format!("filled {written} bytes, no error\n"))
}

/// Creates up to `n` empty files, as an app exhausting the host's inodes would.
fn touch(n: u64) -> (u16, String) {
    for i in 0..n {
        if let Err(e) = std::fs::File::create(format!("/t{i}")) {
            return (200, format!("touched {i} files, then {:?}: {e}\n", e.kind()));
        }
    }
    (200, format!("touched {n} files, no error\n"))
}

/// An outgoing GET through wasi:http, as an app calling another service would.
fn fetch(authority: &str, path: &str, with_body: bool) -> (u16, String) {
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
        Some(Ok(Ok(response))) => {
            let head = format!("fetched: status {}\n", response.status());
            if !with_body {
                return (200, head);
            }
            match read_body(response) {
                Ok(body) => (200, format!("{head}{body}")),
                Err(e) => (502, format!("{head}body failed: {e}\n")),
            }
        }
        Some(Ok(Err(e))) => (502, format!("fetch failed: {e:?}\n")),
        _ => (502, "fetch failed\n".to_string()),
    }
}

/// Up to 64 KiB of an incoming response's body, as text.
fn read_body(response: wasi::http::types::IncomingResponse) -> Result<String, String> {
    let body = response.consume().map_err(|()| "no body".to_string())?;
    let stream = body.stream().map_err(|()| "no body stream".to_string())?;
    let mut bytes = Vec::new();
    while bytes.len() < 64 << 10 {
        match stream.blocking_read(16 << 10) {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(wasi::io::streams::StreamError::Closed) => break,
            Err(e) => return Err(format!("{e:?}")),
        }
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
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
