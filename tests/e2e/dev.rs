//! `wdeploy dev`, the local loop: serving with config vars and every log source, swapping
//! in each edit without dropping a request, and refusing what cannot run.

use crate::fixture::*;

#[test]
fn hello_serves_with_config_vars_and_logs_every_source() {
    let tmp = tempfile::tempdir().unwrap();
    let env = tmp.path().join("dev.env");
    std::fs::write(&env, "# greeting for the test\nGREETING=the test suite\n").unwrap();
    let run_dir = tmp.path().join("run");
    let mut dev = dev(
        &sample("hello"),
        &run_dir,
        &["--env-file", env.to_str().unwrap()],
    );
    let port = dev.port();

    let (status, body) = get(&format!("http://127.0.0.1:{port}/greet"));
    assert_eq!(status, 200);
    assert_eq!(body, "Hello from the test suite\n");
    // A handler that has finished by the time it answers is sent whole, with its length,
    // not as a chunked stream.
    let response = http()
        .get(&format!("http://127.0.0.1:{port}/greet"))
        .call()
        .unwrap();
    let headers = response.headers();
    assert_eq!(
        headers.get("content-length").and_then(|v| v.to_str().ok()),
        Some("26"),
        "{headers:?}"
    );
    assert!(headers.get("transfer-encoding").is_none(), "{headers:?}");

    dev.wait_for_text("app[web.1]: handling /greet on web.1", SOON);
    let router = dev.wait_for("router line", SOON, |l| {
        l.contains("wdeploy[router]: at=info method=GET path=\"/greet\"")
            && l.contains("status=200")
    });
    assert!(router.contains("dyno=web.1"), "{router}");
    assert!(router.contains("bytes=26"), "{router}");
    let tick = dev.wait_for_text("app[worker.1]: tick", SOON);
    // Lines are stamped logplex-style: 2026-11-25T10:00:00.123456+00:00 app[worker.1]: tick 1
    let stamp = tick.split(' ').next().unwrap();
    assert!(stamp.len() == 32 && stamp.ends_with("+00:00"), "{tick}");

    let status = dev.interrupt(SOON);
    assert!(
        status.success(),
        "dev exited with {status}:\n{}",
        dev.output()
    );
    dev.wait_for_text("wdeploy[worker.1]: State changed from up to down", SOON);
    assert!(!run_dir.exists(), "dyno filesystems left behind");
}

#[test]
fn edits_rebuild_and_swap_without_dropping_requests() {
    let app = copy_sample("hello");
    let tmp = tempfile::tempdir().unwrap();
    let mut dev = dev(app.path(), tmp.path(), &[]);
    let port = dev.port();
    let url = format!("http://127.0.0.1:{port}/");
    assert_eq!(get(&url), (200, "Hello from wdeploy\n".into()));

    // A client keeps requesting through the swap; every answer must be a 200.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (url, stop) = (url.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut failures = Vec::new();
            let mut count = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                count += 1;
                match try_get(&url) {
                    Ok((200, _)) => {}
                    Ok((status, body)) => failures.push(format!("{status} {body}")),
                    Err(e) => failures.push(e.to_string()),
                }
            }
            (count, failures)
        })
    };

    let source = app.path().join("src/web.rs");
    let text = std::fs::read_to_string(&source).unwrap();
    std::fs::write(&source, text.replace("Hello from", "Howdy from")).unwrap();
    dev.wait_for_text("=====> v2 is serving", BUILD);
    assert_eq!(get(&url), (200, "Howdy from wdeploy\n".into()));

    // A save that changes nothing, written as `sed -i` writes (a temporary file renamed
    // over the source): the edited file is named, and nothing restarts.
    let starts = |out: &str| out.matches("Starting process").count();
    let started = starts(&dev.output());
    let temporary = app.path().join("src/sedAb12Cd");
    std::fs::write(&temporary, std::fs::read(&source).unwrap()).unwrap();
    std::fs::rename(&temporary, &source).unwrap();
    dev.wait_for_text("The build is unchanged: v2 keeps serving", BUILD);
    let out = dev.output();
    assert!(
        out.contains("=====> src/web.rs changed, rebuilding"),
        "{out}"
    );
    assert_eq!(starts(&out), started, "{out}");

    // A broken edit shows the compiler error and v2 keeps serving.
    let text = std::fs::read_to_string(&source).unwrap();
    std::fs::write(&source, text.replace("struct Web;", "struct Web")).unwrap();
    let failed = dev.wait_for_text("Build failed, v2 keeps serving", BUILD);
    assert!(failed.contains("compile"), "{failed}");
    assert!(
        dev.output().contains("error"),
        "no compiler error shown:\n{}",
        dev.output()
    );
    assert_eq!(get(&url), (200, "Howdy from wdeploy\n".into()));

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (count, failures) = load.join().unwrap();
    assert!(count > 0);
    assert!(
        failures.is_empty(),
        "{} of {count} requests failed: {failures:?}",
        failures.len()
    );
    assert!(dev.interrupt(SOON).success());
}

/// Runs `dev` on a copy of hello with `procfile`; it must fail. Returns its output.
fn dev_refusing_procfile(procfile: &str) -> String {
    let app = copy_sample("hello").with_procfile(procfile);
    let tmp = tempfile::tempdir().unwrap();
    let mut dev = dev(app.path(), tmp.path(), &[]);
    let status = dev.wait(BUILD);
    assert!(!status.success(), "dev accepted {procfile:?}");
    dev.output()
}

#[test]
fn bad_procfile_is_refused_with_its_line_number() {
    let out = dev_refusing_procfile("web: web\nworker worker\n");
    assert!(
        out.contains("error: Procfile line 2: expected `name: component [args…]`"),
        "{out}"
    );
    assert!(
        !out.contains("Building for"),
        "compiled before checking the Procfile:\n{out}"
    );
}

#[test]
fn procfile_naming_a_missing_component_is_refused_before_start() {
    let out = dev_refusing_procfile("web: web\nclock: clock\n");
    assert!(
        out.contains("process type `clock` runs component `clock.wasm`, which the slug lacks (it has: release.wasm, web.wasm, worker.wasm)"),
        "{out}"
    );
    assert!(!out.contains("State changed"), "a dyno started:\n{out}");
}

#[test]
fn a_missing_env_file_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut dev = dev(
        &sample("hello"),
        tmp.path(),
        &["--env-file", "/nonexistent/.env"],
    );
    assert!(!dev.wait(SOON).success());
    assert!(
        dev.output()
            .contains("env file /nonexistent/.env not found"),
        "{}",
        dev.output()
    );
}

/// Sends a request head (without its blank line) to `dev`'s router over a fresh
/// connection, with `Connection: close`: (status, body).
fn send_raw(port: u16, head: &str) -> (u16, String) {
    use std::io::Write as _;
    let mut stream = connect_from(std::net::Ipv4Addr::LOCALHOST, port);
    stream
        .write_all(format!("{head}Connection: close\r\n\r\n").as_bytes())
        .unwrap();
    let response = read_until_closed(&mut stream, SOON).unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

/// HTTP/1.1 requires Host: a request without one is a 400 from the router, with its
/// line in the log (it was handed to the guest without an authority: a 503 `H10`). An
/// HTTP/1.0 request may leave it out, and `dev`'s one app serves it as addressed.
#[test]
fn a_request_without_host_is_a_bad_request_unless_http_1_0() {
    let app = faults_app().with_procfile("web: web\n");
    let tmp = tempfile::tempdir().unwrap();
    let mut dev = dev(app.path(), tmp.path(), &[]);
    let port = dev.port();

    assert_eq!(
        send_raw(port, "GET /missing-host HTTP/1.1\r\n"),
        (400, "Bad Request: no Host header\n".into())
    );
    let line = dev.wait_for("the router's line", SOON, |l| {
        l.contains("wdeploy[router]:") && l.contains("path=\"/missing-host\"")
    });
    assert!(
        line.contains("at=error code=H25 desc=\"HTTP restriction: no Host header\"")
            && line.contains("status=400"),
        "{line}"
    );
    let (status, _) = send_raw(
        port,
        "GET /twice HTTP/1.1\r\nHost: a.localhost\r\nHost: b.localhost\r\n",
    );
    assert_eq!(status, 400);
    let line = dev.wait_for("the router's line", SOON, |l| {
        l.contains("wdeploy[router]:") && l.contains("path=\"/twice\"")
    });
    assert!(line.contains("more than one Host header"), "{line}");

    assert_eq!(
        send_raw(port, "GET /authority HTTP/1.0\r\n"),
        (200, format!("127.0.0.1:{port}\n"))
    );
    assert!(dev.interrupt(SOON).success());
    assert!(!dev.output().contains("H10"), "{}", dev.output());
}

/// An app with no `web` process type runs its other types and listens on nothing (the
/// port `dev` would use stays someone else's); an edit that adds `web` listens then.
#[test]
fn an_app_without_web_runs_its_workers_and_listens_once_web_appears() {
    let app = tempfile::tempdir().unwrap();
    prebuilt_app(app.path());
    std::fs::write(app.path().join("Procfile"), "worker: worker\n").unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let mut dev = dev(app.path(), tmp.path(), &["--port", &port]);

    let running = dev.wait_for("what runs", BUILD, |l| l.contains(" v1 running "));
    assert!(
        running.ends_with(
            " v1 running worker.1 (no web process type, so no HTTP listener; Ctrl-C to stop)"
        ),
        "{running}"
    );
    dev.wait_for_text("app[worker.1]: tick 1", SOON);
    assert!(!dev.output().contains("listening on"), "{}", dev.output());

    drop(taken);
    std::fs::write(app.path().join("Procfile"), "web: web\nworker: worker\n").unwrap();
    dev.wait_for_text("=====> v2 is serving", BUILD);
    let listening = dev.wait_for_text("listening on http://127.0.0.1:", SOON);
    assert!(listening.ends_with(&format!(":{port}")), "{listening}");
    assert_eq!(dev.port().to_string(), port);
    let (status, _) = get(&format!("http://127.0.0.1:{port}/greet"));
    assert_eq!(status, 200);
    assert!(dev.interrupt(SOON).success());
}

/// Guests never see the host's backtraces, whatever its environment: an error handed to
/// a guest (a write past its disk quota) says what happened, and the `to-debug-string`
/// the app logs carries no host stack with `RUST_BACKTRACE=1` (nor
/// `RUST_LIB_BACKTRACE=1`) set for wdeploy.
#[test]
fn guests_see_no_host_backtraces_whatever_the_environment() {
    let app = faults_app()
        .with_procfile("web: web\n")
        .with_settings("[limits]\ndisk_mb = 1\n");
    let tmp = tempfile::tempdir().unwrap();
    let mut cmd = dev_command(app.path(), tmp.path(), &[]);
    cmd.env("RUST_BACKTRACE", "1")
        .env("RUST_LIB_BACKTRACE", "1");
    let mut dev = Running::spawn_shared(cmd);
    let port = dev.port();

    let (status, body) = get(&format!("http://127.0.0.1:{port}/fill?mb=4&name=raw&raw=1"));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("insufficient-space"), "{body}");
    let failed = dev.wait_for_text("app[web.1]: fill: the write failed: ", SOON);
    assert!(failed.contains("No space left on device"), "{failed}");
    // Once it has exited, all it printed has been read.
    assert!(dev.interrupt(SOON).success());
    let out = dev.output();
    assert!(!out.contains("Stack backtrace"), "{out}");
    assert!(!out.contains("wdeploy_host::"), "{out}");
    assert!(!out.contains("std::backtrace"), "{out}");
}

/// `dev`'s terminal shows the log stream, not wasmtime's own warnings: an app's outgoing
/// request to a port nobody listens on made wasmtime-wasi-http warn `connect error`
/// between the app's lines, though the app's own answer already says so. Asked for with
/// `RUST_LOG` (or `WDEPLOY_LOG`), they are shown.
#[test]
fn the_dev_terminal_shows_wasmtimes_warnings_only_when_asked() {
    let app = faults_app().with_procfile("web: web\n");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let refused = format!("/fetch?authority={}&path=x", closed.local_addr().unwrap());
    drop(closed);
    for asked in [None, Some("warn")] {
        let tmp = tempfile::tempdir().unwrap();
        let mut cmd = dev_command(app.path(), tmp.path(), &[]);
        cmd.env_remove("WDEPLOY_LOG").env_remove("RUST_LOG");
        if let Some(filter) = asked {
            cmd.env("RUST_LOG", filter);
        }
        let mut dev = Running::spawn_shared(cmd);
        let port = dev.port();
        let (status, body) = get(&format!("http://127.0.0.1:{port}{refused}"));
        assert_eq!(
            (status, body.as_str()),
            (502, "fetch failed: ErrorCode::ConnectionRefused\n")
        );
        dev.wait_for("the router's line", SOON, |l| {
            l.contains("wdeploy[router]:") && l.contains("path=\"/fetch")
        });
        if asked.is_some() {
            dev.wait_for_text("WARN wasmtime_wasi_http", SOON);
        }
        // Once it has exited, all it printed (stdout and stderr) has been read.
        assert!(dev.interrupt(SOON).success());
        if asked.is_none() {
            assert!(!dev.output().contains("WARN"), "{}", dev.output());
        }
    }
}

/// `dev | head`: once its output's reader is gone, `dev` stops as on Ctrl-C (dynos
/// stopped, exit 0) instead of running on, printing to nobody.
#[test]
fn dev_stops_when_the_reader_of_its_output_goes() {
    let _share = share();
    let tmp = tempfile::tempdir().unwrap();
    // A web dyno alone, and no request: once web.1 is up, nothing more is printed, so
    // dev cannot wait for a line to find no reader.
    let app = copy_sample("hello").with_procfile("web: web\n");
    let mut child = dev_command(app.path(), tmp.path(), &[])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn wdeploy dev");
    read_then_hang_up(&mut child, "web.1 up", |l| {
        l.contains("wdeploy[web.1]: State changed from starting to up")
    });
    let status = exited(&mut child, "dev to stop without a reader", SOON);
    assert!(status.success(), "{status:?}");
    // Stopped as on Ctrl-C: the dynos' filesystems went with them.
    assert!(
        std::fs::read_dir(tmp.path()).map_or(true, |mut dir| dir.next().is_none()),
        "dyno filesystems left behind in the run dir"
    );
}

/// `wdeploy config --shell > .env`, then `dev`: the app runs locally with its host's
/// config vars, each value as it was (quotes, `$`, backquotes, a second line).
#[test]
fn config_as_a_shell_env_file_runs_the_app_locally_with_its_values() {
    let host = TestHost::start();
    host.ok(&["apps:create", "--no-link", "greeter"]);
    let greeting = "it's \"quoted\", $HOME and `id`\nsecond line";
    host.ok(&[
        "config:set",
        &format!("GREETING={greeting}"),
        "OTHER=plain",
        "-a",
        "greeter",
    ]);
    let shell = host.ok(&["config", "--shell", "-a", "greeter"]);
    assert!(shell.contains("\nOTHER=plain\n"), "{shell}");
    assert_eq!(
        host.ok(&["config:get", "OTHER", "--shell", "-a", "greeter"]),
        "OTHER=plain\n"
    );
    let err = host.fails(&["config", "--shell", "--json", "-a", "greeter"]);
    assert!(err.contains("cannot be used with"), "{err}");

    let tmp = tempfile::tempdir().unwrap();
    let env = tmp.path().join(".env");
    std::fs::write(&env, &shell).unwrap();
    let mut dev = dev(
        &sample("hello"),
        &tmp.path().join("run"),
        &["--env-file", env.to_str().unwrap()],
    );
    let (status, body) = get(&format!("http://127.0.0.1:{}/greet", dev.port()));
    assert_eq!(
        (status, body.as_str()),
        (200, format!("Hello from {greeting}\n").as_str())
    );
    assert!(dev.interrupt(SOON).success());
}
