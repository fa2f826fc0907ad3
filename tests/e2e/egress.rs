//! `[egress] allow`: an app with an allow-list reaches only the hosts it names, is told
//! (an error for the guest, a line in its log) when it calls another, and `push` shows
//! what a release adds to or removes from the list before it goes live.
//!
//! Two echo servers on 127.0.0.1 with different ports stand for two services; the host
//! runs with `--allow-private-egress` so that loopback passes the host's own rule and
//! only the list decides.

use crate::fixture::*;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// A tiny HTTP/1.1 server on 127.0.0.1 answering every request with its `name`, counting
/// the connections it accepted; stopped when dropped.
struct EchoServer {
    port: u16,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EchoServer {
    fn start(name: &'static str) -> EchoServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let (accepted, stop) = (accepted.clone(), stop.clone());
            move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    accepted.fetch_add(1, Ordering::SeqCst);
                    if let Ok(conn) = conn {
                        answer(conn, name);
                    }
                }
            }
        });
        EchoServer {
            port,
            accepted,
            stop,
            thread: Some(thread),
        }
    }

    fn authority(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop, which sees the flag and ends.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads one request's head (at most 64 KiB) and answers `name` with a closed connection.
fn answer(mut conn: TcpStream, name: &str) {
    let _ = conn.set_read_timeout(Some(SOON));
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 << 10 {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let _ = write!(
        conn,
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{name}",
        name.len()
    );
}

/// The faults guest's outgoing GET of `server`, with the body it got.
fn fetch(host: &TestHost, server: &EchoServer) -> (u16, String) {
    host.get(
        "faults",
        &format!("/fetch?authority={}&path=x&body=1", server.authority()),
    )
}

const REFUSED: &str = "refused: not in wdeploy.toml [egress] allow";

/// APP's refusal lines, once there are `n` of them.
fn refusal_lines(host: &TestHost, app: &str, n: usize) -> Vec<String> {
    poll_until(&format!("{n} refusal lines in the app's log"), SOON, || {
        let logs = host.ok(&["logs", "-a", app]);
        let lines: Vec<String> = logs
            .lines()
            .filter(|l| l.contains(REFUSED))
            .map(str::to_string)
            .collect();
        if lines.len() == n {
            Ok(lines)
        } else {
            Err(logs)
        }
    })
}

#[test]
fn an_allow_list_reaches_only_what_it_names_and_push_shows_each_change() {
    let a = EchoServer::start("echo from a");
    let b = EchoServer::start("echo from b");
    let host = TestHost::start_with(&["--allow-private-egress"]);
    let reached_a = (200, "fetched: status 200\necho from a".to_string());
    let reached_b = (200, "fetched: status 200\necho from b".to_string());
    let denied = (
        502,
        "fetch failed: ErrorCode::HttpRequestDenied\n".to_string(),
    );

    // v1: only A. Push says so before the release goes live.
    let app = faults_app().with_settings(&format!("[egress]\nallow = [\"{}\"]\n", a.authority()));
    let out = host.create_and_push("faults", app.path());
    let said = format!(
        "-----> Egress allow-list: now restricted to {} (was unrestricted)",
        a.authority()
    );
    let (before, after) = out.split_once(&said).unwrap_or_else(|| panic!("{out}"));
    assert!(
        before.contains("Releasing slug") && after.contains("Released v1"),
        "{out}"
    );

    assert_eq!(fetch(&host, &a), reached_a);
    assert_eq!(fetch(&host, &b), denied);
    // Refused on the name asked for, before any connection.
    assert_eq!(b.accepted(), 0);
    let lines = refusal_lines(&host, "faults", 1);
    assert!(
        lines[0].contains(&format!(
            "wdeploy[web.1]: Outgoing request to {} {REFUSED}",
            b.authority()
        )),
        "{lines:?}"
    );
    // A name for the listed address is not the listed address.
    let by_name = format!("localhost:{}", a.port);
    assert_eq!(
        host.get("faults", &format!("/fetch?authority={by_name}&path=x")),
        denied
    );
    refusal_lines(&host, "faults", 2);

    // v2: B instead of A.
    app.write(
        "wdeploy.toml",
        &format!("[egress]\nallow = [\"{}\"]\n", b.authority()),
    );
    let out = host.push("faults", app.path());
    assert!(
        out.contains(&format!(
            "-----> Egress allow-list: + {}  - {}\n",
            b.authority(),
            a.authority()
        )),
        "{out}"
    );
    assert_eq!(fetch(&host, &b), reached_b);
    assert_eq!(fetch(&host, &a), denied);

    // v3: the same list again.
    let out = host.push("faults", app.path());
    assert!(
        out.contains(&format!(
            "-----> Egress allow-list: unchanged ({})\n",
            b.authority()
        )),
        "{out}"
    );

    // v4: no list: unrestricted again, both reachable.
    app.remove("wdeploy.toml");
    let out = host.push("faults", app.path());
    assert!(
        out.contains(&format!(
            "-----> Egress allow-list: removed, now unrestricted (was {})\n",
            b.authority()
        )),
        "{out}"
    );
    assert_eq!(fetch(&host, &a), reached_a);
    assert_eq!(fetch(&host, &b), reached_b);

    // The app's log keeps each change of capability beside its release.
    let logs = host.ok(&["logs", "-a", "faults", "--source", "wdeploy"]);
    for change in [
        "now restricted to",
        "Egress allow-list: +",
        "removed, now unrestricted",
    ] {
        assert!(logs.contains(change), "{change}: {logs}");
    }
    assert!(!logs.contains("allow-list: unchanged"), "{logs}");
}

#[test]
fn a_wasi_0_3_guest_is_held_to_the_same_list() {
    let a = EchoServer::start("echo from a");
    let b = EchoServer::start("echo from b");
    let host = TestHost::start_with(&["--allow-private-egress"]);
    let app =
        async_web_app().with_settings(&format!("[egress]\nallow = [\"{}\"]\n", a.authority()));
    let out = host.create_and_push("async-web", app.path());
    assert!(
        out.contains("Egress allow-list: now restricted to"),
        "{out}"
    );
    let fetch = |server: &EchoServer| {
        host.get(
            "async-web",
            &format!("/fetch?authority={}", server.authority()),
        )
    };
    assert_eq!(
        fetch(&a),
        (200, "fetched: status 200\necho from a".to_string())
    );
    let (status, text) = fetch(&b);
    assert_eq!(status, 200, "{text}");
    assert!(
        text.starts_with("fetch failed:") && text.contains("HttpRequestDenied"),
        "{text}"
    );
    assert_eq!(b.accepted(), 0);
    let lines = refusal_lines(&host, "async-web", 1);
    assert!(lines[0].contains(&b.authority()), "{lines:?}");
}

#[test]
fn a_bad_allow_list_is_refused_at_push_with_what_to_write() {
    let host = TestHost::start();
    host.ok(&["apps:create", "faults", "--no-link"]);
    for (pattern, says) in [
        (
            "https://api.stripe.com",
            "write the host alone (`api.stripe.com:443`)",
        ),
        (
            "*",
            "an app without an [egress] allow-list is unrestricted already",
        ),
        ("bücher.example", "punycode"),
        ("api.example.com:99999", "bad port"),
    ] {
        let app = faults_app().with_settings(&format!("[egress]\nallow = [\"{pattern}\"]\n"));
        let err = host.fails(&[
            "push",
            "-a",
            "faults",
            "--dir",
            app.path().to_str().unwrap(),
        ]);
        assert!(err.contains(says), "{pattern}: {err}");
    }
    // Nothing was released.
    assert!(!host.ok(&["releases", "-a", "faults"]).contains("v1"));
}

#[test]
fn the_hosts_public_address_rule_stays_under_an_allow_list() {
    // A host without --allow-private-egress: listing a loopback address does not open it.
    let a = EchoServer::start("echo from a");
    let host = TestHost::start();
    let app = faults_app().with_settings(&format!("[egress]\nallow = [\"{}\"]\n", a.authority()));
    host.create_and_push("faults", app.path());
    let (status, text) = fetch(&host, &a);
    assert_eq!(status, 502, "{text}");
    assert!(text.contains("DestinationIpProhibited"), "{text}");
    assert_eq!(a.accepted(), 0);
}
