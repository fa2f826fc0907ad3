//! End to end: a real `wdeploy host` in a temp data dir on free ports, driven by the real
//! `wdeploy` CLI the way a user does (login, apps:create, push, config, rollback, scale…).

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

const SOON: Duration = Duration::from_secs(60);

/// A running host and the environment a CLI needs to reach it.
struct TestHost {
    running: Running,
    data: PathBuf,
    api: String,
    router_port: u16,
    token: String,
    config_home: tempfile::TempDir,
}

impl TestHost {
    fn start(data: &Path) -> TestHost {
        TestHost::start_with(data, &[])
    }

    fn start_with(data: &Path, extra: &[&str]) -> TestHost {
        let mut cmd = wdeploy();
        cmd.arg("host")
            .arg("--data")
            .arg(data)
            .args(["--listen", "127.0.0.1:0", "--api", "127.0.0.1:0"])
            .args(extra);
        let running = Running::spawn(cmd);
        let api_line = running.wait_for_text("wdeploy host: API on http://", SOON);
        let api = api_line.split("API on ").nth(1).unwrap().trim().to_string();
        let router_line = running.wait_for_text("wdeploy host: router on http://", SOON);
        let router_port = router_line
            .split("router on http://127.0.0.1:")
            .nth(1)
            .and_then(|t| t.split(' ').next())
            .and_then(|p| p.parse().ok())
            .expect("router port");
        let token = std::fs::read_to_string(data.join("admin-token"))
            .unwrap()
            .trim()
            .to_string();
        TestHost {
            running,
            data: data.to_path_buf(),
            api,
            router_port,
            token,
            config_home: tempfile::tempdir().unwrap(),
        }
    }

    /// Runs the CLI against this host, with its own config dir.
    fn cli(&self, args: &[&str]) -> Output {
        self.cli_with_token(&self.token, args)
    }

    fn cli_with_token(&self, token: &str, args: &[&str]) -> Output {
        let mut cmd = wdeploy();
        cmd.args(args)
            .env("XDG_CONFIG_HOME", self.config_home.path())
            .env("WDEPLOY_HOST", &self.api)
            .env("WDEPLOY_TOKEN", token);
        cmd.output().expect("run wdeploy")
    }

    /// Runs the CLI and returns its stdout, failing the test if it fails.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "wdeploy {args:?} failed:\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    }

    /// GET through the router by Host header.
    fn get(&self, app: &str, path: &str) -> (u16, String) {
        let url = format!("http://127.0.0.1:{}{path}", self.router_port);
        let mut response = http()
            .get(&url)
            .header("host", &format!("{app}.localhost:{}", self.router_port))
            .call()
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let status = response.status().as_u16();
        (
            status,
            response.body_mut().read_to_string().unwrap_or_default(),
        )
    }

    fn push(&self, app: &str, dir: &Path) -> String {
        self.ok(&["push", "-a", app, "--dir", dir.to_str().unwrap()])
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn push_config_rollback_scale_and_logs() {
    let data = tempfile::tempdir().unwrap();
    let host = TestHost::start(data.path());
    host.ok(&["apps:create", "hello", "--no-link"]);

    let pushed = host.push("hello", &sample("hello"));
    assert!(pushed.contains("-----> Released v1"), "{pushed}");
    // The release phase ran before the release went live, its output streamed to push.
    assert!(
        pushed.contains("-----> Running release command `release.wasm` as release."),
        "{pushed}"
    );
    assert!(
        pushed.contains("       release phase: migrations up to date"),
        "{pushed}"
    );
    assert!(
        pushed.contains(&format!(
            "http://hello.localhost:{} deployed",
            host.router_port
        )),
        "{pushed}"
    );
    assert_eq!(host.get("hello", "/"), (200, "Hello from wdeploy\n".into()));
    // An unknown host name is a 404 page, not another app.
    assert_eq!(host.get("nope", "/").0, 404);

    host.ok(&["config:set", "GREETING=config vars", "-a", "hello"]);
    assert_eq!(
        host.get("hello", "/"),
        (200, "Hello from config vars\n".into())
    );
    assert_eq!(
        host.ok(&["config:get", "GREETING", "-a", "hello"]),
        "config vars\n"
    );

    let rolled = host.ok(&["rollback", "v1", "-a", "hello"]);
    assert!(rolled.contains("Rollback to v1"), "{rolled}");
    assert_eq!(host.get("hello", "/"), (200, "Hello from wdeploy\n".into()));
    let releases = host.ok(&["releases", "-a", "hello"]);
    let lines: Vec<&str> = releases.lines().collect();
    assert!(
        lines[1].starts_with("v3")
            && lines[1].contains("Rollback to v1")
            && lines[1].contains("(current)"),
        "{releases}"
    );
    assert!(
        lines[2].starts_with("v2") && lines[2].contains("Set GREETING config vars"),
        "{releases}"
    );
    assert!(
        lines[3].starts_with("v1") && lines[3].contains("Deploy "),
        "{releases}"
    );

    let again = host.push("hello", &sample("hello"));
    assert!(
        again.contains("nothing to upload") && again.contains("(0 bytes)"),
        "{again}"
    );

    host.ok(&["ps:scale", "web=3", "-a", "hello"]);
    let ps = host.ok(&["ps", "-a", "hello"]);
    for dyno in ["web.1: up", "web.2: up", "web.3: up"] {
        assert!(ps.contains(dyno), "{ps}");
    }
    for _ in 0..9 {
        assert_eq!(host.get("hello", "/").0, 200);
    }
    let router = host.ok(&["logs", "--source", "router", "-n", "9", "-a", "hello"]);
    for dyno in ["dyno=web.1 ", "dyno=web.2 ", "dyno=web.3 "] {
        assert!(
            router.contains(dyno),
            "no request reached {dyno}:\n{router}"
        );
    }
    // `logs --tail` follows new lines as they happen.
    let mut tail = wdeploy();
    tail.args([
        "logs", "--tail", "-n", "0", "--source", "router", "-a", "hello",
    ])
    .env("XDG_CONFIG_HOME", host.config_home.path())
    .env("WDEPLOY_HOST", &host.api)
    .env("WDEPLOY_TOKEN", &host.token);
    let tail = Running::spawn(tail);
    let mut seen = String::new();
    for _ in 0..50 {
        host.get("hello", "/tailed");
        if let Some(line) = tail
            .lines()
            .into_iter()
            .find(|l| l.contains("path=\"/tailed\""))
        {
            seen = line;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        seen.contains("wdeploy[router]: at=info") && seen.contains("status=200"),
        "{seen}"
    );
    drop(tail);

    let logs = host.ok(&["logs", "-n", "1500", "-a", "hello"]);
    assert!(logs.contains("app[web.2]: handling / on web.2"), "{logs}");
    assert!(
        logs.contains("wdeploy[api]: Release v2: Set GREETING config vars"),
        "{logs}"
    );
    assert!(
        logs.contains("wdeploy[web.3]: State changed from starting to up"),
        "{logs}"
    );
    assert!(logs.contains("wdeploy[api]: Scaled to web=3"), "{logs}");
}

#[test]
fn one_off_dynos_stream_output_and_exit_status() {
    let data = tempfile::tempdir().unwrap();
    let host = TestHost::start(data.path());
    host.ok(&["apps:create", "faults", "--no-link"]);
    host.push("faults", &sample("faults"));
    let out = host.cli(&["run", "worker", "-a", "faults"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}{}", stderr(&out));
    assert!(text.contains("crasher: giving up"), "{text}");
    let logs = host.ok(&["logs", "--dyno", "run.1000", "-a", "faults"]);
    assert!(logs.contains("app[run.1000]: crasher: giving up"), "{logs}");
    assert!(logs.contains("Process exited with status 1"), "{logs}");
}

#[test]
fn wrong_token_gets_401_and_a_clear_cli_error() {
    let data = tempfile::tempdir().unwrap();
    let host = TestHost::start(data.path());
    let mut response = http().get(&format!("{}/apps", host.api)).call().unwrap();
    assert_eq!(response.status().as_u16(), 401);
    let body = response.body_mut().read_to_string().unwrap();
    assert!(body.contains("\"id\":\"unauthorized\""), "{body}");

    let out = host.cli_with_token("not-the-token", &["apps"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: invalid credentials"), "{err}");

    // Unknown app and bad names are clear errors too.
    let out = host.cli(&["releases", "-a", "ghost"]);
    assert!(
        stderr(&out).contains("app ghost not found"),
        "{}",
        stderr(&out)
    );
    let out = host.cli(&["apps:create", "../etc", "--no-link"]);
    assert!(
        stderr(&out).contains("not a valid app name"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_corrupted_blob_is_refused_and_the_old_release_keeps_serving() {
    let data = tempfile::tempdir().unwrap();
    let host = TestHost::start(data.path());
    host.ok(&["apps:create", "hello", "--no-link"]);
    host.push("hello", &sample("hello"));
    // Damage every stored component.
    for blob in blob_files(&host.data.join("blobs/sha256")) {
        let bytes = std::fs::read(&blob).unwrap();
        if bytes.starts_with(b"\0asm") {
            let mut damaged = bytes.clone();
            let last = damaged.len() - 1;
            damaged[last] ^= 0xff;
            std::fs::write(&blob, damaged).unwrap();
        }
    }
    let out = host.cli(&["config:set", "GREETING=never", "-a", "hello"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("is corrupted on disk"),
        "{}",
        stderr(&out)
    );
    assert_eq!(host.get("hello", "/"), (200, "Hello from wdeploy\n".into()));
}

fn blob_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(blob_files(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn a_host_killed_with_sigkill_comes_back_with_the_same_release_and_formation() {
    let data = tempfile::tempdir().unwrap();
    let host = TestHost::start(data.path());
    host.ok(&["apps:create", "hello", "--no-link"]);
    host.push("hello", &sample("hello"));
    host.ok(&["config:set", "GREETING=durable", "-a", "hello"]);
    host.ok(&["ps:scale", "web=2", "worker=1", "-a", "hello"]);
    let releases_before = host.ok(&["releases", "-a", "hello"]);

    let TestHost {
        mut running,
        config_home,
        ..
    } = host;
    let pid = running_pid(&running);
    Command::new("kill").args(["-KILL", &pid]).status().unwrap();
    running.wait(SOON);
    drop(config_home);

    let host = TestHost::start(data.path());
    assert_eq!(host.get("hello", "/"), (200, "Hello from durable\n".into()));
    assert_eq!(host.ok(&["releases", "-a", "hello"]), releases_before);
    let ps = host.ok(&["ps", "-a", "hello"]);
    for dyno in ["web.1: up", "web.2: up", "worker.1: "] {
        assert!(ps.contains(dyno), "{ps}");
    }
    assert!(!ps.contains("web.3"), "{ps}");
    // The compiled components came from the on-disk cache, not a recompile.
    assert!(data.path().join("compiled").read_dir().unwrap().count() >= 2);
}

fn running_pid(running: &Running) -> String {
    running.pid().to_string()
}

#[test]
fn a_component_of_the_wrong_world_is_refused_at_release_time() {
    let data = tempfile::tempdir().unwrap();
    let host = TestHost::start(data.path());
    host.ok(&["apps:create", "mixed-up", "--no-link"]);
    let app = copy_sample("hello");
    // `web` must be an HTTP handler; the worker component is a command.
    std::fs::write(app.path().join("Procfile"), "web: worker\n").unwrap();
    let out = host.cli(&[
        "push",
        "-a",
        "mixed-up",
        "--dir",
        app.path().to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(
            "process type `web`: component worker.wasm does not export wasi:http/incoming-handler"
        ),
        "{err}"
    );
    let releases = host.ok(&["releases", "-a", "mixed-up"]);
    assert!(releases.contains("(failed)"), "{releases}");
}

#[test]
fn router_answers_h14_without_web_dynos_and_caps_api_bodies() {
    let data = tempfile::tempdir().unwrap();
    let host = TestHost::start(data.path());
    host.ok(&["apps:create", "hello", "--no-link"]);
    host.push("hello", &sample("hello"));
    host.ok(&["ps:scale", "web=0", "-a", "hello"]);
    assert_eq!(host.get("hello", "/").0, 503);
    let router = host.ok(&["logs", "--source", "router", "-n", "1", "-a", "hello"]);
    assert!(
        router.contains("at=error code=H14") && router.contains("status=503"),
        "{router}"
    );

    // Just over the 1 MiB cap, so the whole request fits in loopback buffers and the client
    // reads the 413 instead of a broken pipe when the host refuses it without reading.
    let huge = format!("{{\"name\": \"{}\"}}", "x".repeat((1 << 20) + 1024));
    let mut response = http()
        .post(&format!("{}/apps", host.api))
        .header("authorization", &format!("Bearer {}", host.token))
        .header("content-type", "application/json")
        .send(huge.as_bytes())
        .unwrap();
    assert_eq!(response.status().as_u16(), 413);
    let body = response.body_mut().read_to_string().unwrap();
    assert!(body.contains("payload_too_large"), "{body}");

    // Blobs stream to disk, so their cap is checked against the declared length before
    // anything is read: a 300 MB upload is refused at once.
    use std::io::{Read as _, Write as _};
    let api = host.api.trim_start_matches("http://");
    let mut conn = std::net::TcpStream::connect(api).unwrap();
    let digest = format!("sha256:{}", "0".repeat(64));
    write!(
        conn,
        "PUT /blobs/{digest} HTTP/1.1\r\nhost: {api}\r\nauthorization: Bearer {}\r\n\
         content-length: 300000000\r\nconnection: close\r\n\r\n",
        host.token
    )
    .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("payload_too_large"), "{answer}");
}

#[test]
fn twenty_deploys_under_continuous_load_fail_no_request() {
    let data = tempfile::tempdir().unwrap();
    let host = TestHost::start(data.path());
    host.ok(&["apps:create", "hello", "--no-link"]);
    host.push("hello", &sample("hello"));
    host.ok(&["ps:scale", "web=2", "-a", "hello"]);

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let url = format!("http://127.0.0.1:{}/", host.router_port);
    let host_header = format!("hello.localhost:{}", host.router_port);
    let load: Vec<_> = (0..2)
        .map(|_| {
            let (stop, url, host_header) = (stop.clone(), url.clone(), host_header.clone());
            std::thread::spawn(move || {
                let agent = http();
                let (mut ok, mut failures) = (0u32, Vec::new());
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match agent.get(&url).header("host", &host_header).call() {
                        Ok(mut r) if r.status() == 200 => {
                            let _ = r.body_mut().read_to_string();
                            ok += 1;
                        }
                        Ok(r) => failures.push(format!("status {}", r.status())),
                        Err(e) => failures.push(e.to_string()),
                    }
                }
                (ok, failures)
            })
        })
        .collect();

    // Each config change is a new release started with preboot.
    for n in 1..=20 {
        host.ok(&[
            "config:set",
            &format!("GREETING=release {n}"),
            "-a",
            "hello",
        ]);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    for thread in load {
        let (ok, failures) = thread.join().unwrap();
        assert!(
            failures.is_empty(),
            "{} requests failed: {failures:?}",
            failures.len()
        );
        total += ok;
    }
    assert!(total > 20, "only {total} requests were made");
    assert_eq!(
        host.get("hello", "/"),
        (200, "Hello from release 20\n".into())
    );
}

#[test]
fn a_failing_release_phase_stops_the_deploy_and_the_old_release_keeps_serving() {
    let data = tempfile::tempdir().unwrap();
    let host = TestHost::start(data.path());
    host.ok(&["apps:create", "faults", "--no-link"]);
    host.push("faults", &sample("faults"));
    assert_eq!(host.get("faults", "/"), (200, "ok\n".into()));

    let app = copy_sample("faults");
    std::fs::write(app.path().join("Procfile"), "web: web\nrelease: crasher\n").unwrap();
    let out = host.cli(&[
        "push",
        "-a",
        "faults",
        "--dir",
        app.path().to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("       crasher: giving up"),
        "release output not streamed:\n{text}"
    );
    let err = stderr(&out);
    assert!(err.contains("release v2 failed, the previous release keeps serving: the release command failed with exit status 1"), "{err}");
    assert_eq!(host.get("faults", "/"), (200, "ok\n".into()));
    let releases = host.ok(&["releases", "-a", "faults"]);
    assert!(
        releases.lines().nth(1).unwrap().contains("(failed)"),
        "{releases}"
    );
    assert!(
        releases.lines().nth(2).unwrap().contains("(current)"),
        "{releases}"
    );
}

#[test]
fn crash_loops_busy_workers_and_log_floods_never_disturb_other_apps() {
    let data = tempfile::tempdir().unwrap();
    let host = TestHost::start(data.path());
    host.ok(&["apps:create", "hello", "--no-link"]);
    host.push("hello", &sample("hello"));
    host.ok(&["apps:create", "faults", "--no-link"]);
    let app = copy_sample("faults");
    std::fs::write(
        app.path().join("Procfile"),
        "web: web\nworker: crasher\nspinner: spinner\n",
    )
    .unwrap();
    std::fs::write(
        app.path().join("wdeploy.toml"),
        "[web]\ntimeout = 2\n\n[limits]\nmemory_mb = 64\n",
    )
    .unwrap();
    host.ok(&[
        "push",
        "-a",
        "faults",
        "--dir",
        app.path().to_str().unwrap(),
    ]);
    host.ok(&["ps:scale", "worker=1", "spinner=1", "-a", "faults"]);

    // A guest's outgoing HTTP reaches public addresses only: not this host's API, nor
    // another app through the router on loopback.
    let api = host.api.trim_start_matches("http://");
    for authority in [api.to_string(), format!("localhost:{}", host.router_port)] {
        let (status, text) = host.get("faults", &format!("/fetch?authority={authority}&path=apps"));
        assert_eq!(status, 502, "{text}");
        assert!(text.contains("DestinationIpProhibited"), "{text}");
    }

    // The crashing worker shows as crashed with its next start; the spinner is up.
    let mut ps = String::new();
    for _ in 0..100 {
        ps = host.ok(&["ps", "-a", "faults"]);
        if ps.contains("worker.1: crashed")
            && ps.contains("next start at")
            && ps.contains("spinner.1: up")
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        ps.contains("worker.1: crashed") && ps.contains("next start at"),
        "{ps}"
    );
    assert!(ps.contains("spinner.1: up"), "{ps}");
    let crash_log = host.ok(&["logs", "--dyno", "worker.1", "-a", "faults"]);
    assert!(
        crash_log.contains("Process exited with status 1"),
        "{crash_log}"
    );
    assert!(
        crash_log.contains("State changed from up to crashed"),
        "{crash_log}"
    );

    // A flood of log lines: the app's history stays bounded, long lines are split.
    assert_eq!(
        host.get("faults", "/flood?lines=20000"),
        (200, "flooded\n".into())
    );
    let logs = host.ok(&[
        "logs", "-n", "5000", "--dyno", "web.1", "--source", "app", "-a", "faults",
    ]);
    let lines: Vec<&str> = logs.lines().collect();
    assert!(lines.len() <= 1500, "{} lines of history", lines.len());
    let longest = lines.iter().map(|l| l.len()).max().unwrap_or(0);
    assert!(longest < 10_100, "a line of {longest} bytes was not split");

    // Each fault gets its status and router code; the faulty app keeps serving.
    let faults = [
        ("/trap", 500, "code=H13"),
        ("/loop", 503, "code=H12"),
        ("/alloc", 500, "code=H13"),
        ("/slow?ms=3000", 503, "code=H12"),
    ];
    for (path, status, code) in faults {
        assert_eq!(host.get("faults", path).0, status, "{path}");
        let router = host.ok(&["logs", "--source", "router", "-n", "1", "-a", "faults"]);
        assert!(
            router.contains(code) && router.contains(&format!("path=\"{path}\"")),
            "{router}"
        );
        assert_eq!(host.get("hello", "/"), (200, "Hello from wdeploy\n".into()));
        assert_eq!(host.get("faults", "/"), (200, "ok\n".into()));
    }
    assert_eq!(
        host.get("faults", "/slow?ms=100"),
        (200, "slept 100ms\n".into())
    );
    let platform = host.ok(&["logs", "--source", "wdeploy", "-n", "200", "-a", "faults"]);
    assert!(
        platform.contains("Error R14 (Memory quota exceeded)"),
        "{platform}"
    );
    assert!(
        platform.contains("Instance crashed: deadline exceeded"),
        "{platform}"
    );

    // Throughout, the other app and the faulty app's web dyno answer.
    for _ in 0..20 {
        assert_eq!(host.get("hello", "/"), (200, "Hello from wdeploy\n".into()));
        assert_eq!(host.get("faults", "/"), (200, "ok\n".into()));
    }
}

#[test]
fn kill_9_in_the_middle_of_changes_leaves_a_consistent_store() {
    let data = tempfile::tempdir().unwrap();
    let mut host = TestHost::start(data.path());
    host.ok(&["apps:create", "hello", "--no-link"]);
    host.push("hello", &sample("hello"));
    let mut acknowledged_config: Option<u32> = None;
    let mut acknowledged_web: u32 = 1;

    for round in 1..=4u32 {
        // A config change and a scale race a kill -9 that lands at a different moment
        // each round (the pause places the kill; it synchronises nothing).
        let run = |args: Vec<String>| {
            let (api, token, config) = (
                host.api.clone(),
                host.token.clone(),
                host.config_home.path().to_path_buf(),
            );
            std::thread::spawn(move || {
                let mut cmd = wdeploy();
                cmd.args(&args)
                    .env("XDG_CONFIG_HOME", config)
                    .env("WDEPLOY_HOST", api)
                    .env("WDEPLOY_TOKEN", token);
                cmd.output().map(|o| o.status.success()).unwrap_or(false)
            })
        };
        let web = 1 + round % 2;
        let config = run(vec![
            "config:set".into(),
            format!("ROUND={round}"),
            "-a".into(),
            "hello".into(),
        ]);
        let scale = run(vec![
            "ps:scale".into(),
            format!("web={web}"),
            "-a".into(),
            "hello".into(),
        ]);
        std::thread::sleep(Duration::from_millis(40 * u64::from(round)));
        Command::new("kill")
            .args(["-KILL", &host.running.pid().to_string()])
            .status()
            .unwrap();
        host.running.wait(SOON);
        if config.join().unwrap() {
            acknowledged_config = Some(round);
        }
        if scale.join().unwrap() {
            acknowledged_web = web;
        }

        host = TestHost::start(data.path());
        let releases = host.ok(&["releases", "-a", "hello"]);
        assert!(!releases.contains("(pending)"), "{releases}");
        assert_eq!(releases.matches("(current)").count(), 1, "{releases}");
        let config = host.ok(&["config", "-a", "hello"]);
        if let Some(n) = acknowledged_config {
            // An acknowledged change is there (or a later one that replaced it).
            let value: u32 = config
                .lines()
                .find_map(|l| l.strip_prefix("ROUND:"))
                .map(|v| v.trim().parse().unwrap())
                .unwrap_or_else(|| panic!("acknowledged ROUND={n} lost:\n{config}"));
            assert!(value >= n, "ROUND={value} but ROUND={n} was acknowledged");
        }
        let info = host.ok(&["apps:info", "-a", "hello"]);
        let formation = info
            .lines()
            .find(|l| l.starts_with("Formation:"))
            .unwrap()
            .to_string();
        if acknowledged_web == web {
            assert!(formation.contains(&format!("web={web}")), "{formation}");
        }
        assert_eq!(host.get("hello", "/").0, 200);
    }
}

#[test]
fn stopping_workers_close_stdin_then_give_a_grace_period() {
    let data = tempfile::tempdir().unwrap();
    let host = TestHost::start_with(data.path(), &["--stop-grace", "2"]);
    host.ok(&["apps:create", "hello", "--no-link"]);
    host.push("hello", &sample("hello"));
    host.ok(&["ps:scale", "worker=1", "-a", "hello"]);
    let mut logs = String::new();
    for _ in 0..100 {
        logs = host.ok(&["logs", "--dyno", "worker.1", "-a", "hello"]);
        if logs.contains("app[worker.1]: tick 1") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(logs.contains("tick 1"), "{logs}");

    // A worker that watches stdin exits cleanly when it closes.
    host.ok(&["ps:scale", "worker=0", "-a", "hello"]);
    let logs = host.ok(&["logs", "--dyno", "worker.1", "-a", "hello"]);
    let stopping = logs
        .find("Stopping process: stdin closed, 2s to exit")
        .expect(&logs);
    let clean = logs
        .find("app[worker.1]: worker: stdin closed, shutting down")
        .expect(&logs);
    let exited = logs
        .find("wdeploy[worker.1]: Process exited with status 0")
        .expect(&logs);
    let down = logs
        .find("wdeploy[worker.1]: State changed from up to down")
        .expect(&logs);
    assert!(
        stopping < clean && clean < exited && exited < down,
        "{logs}"
    );
    assert!(!logs.contains("R12"), "{logs}");

    // One that ignores it is stopped after the grace period, with an R12 line.
    host.ok(&["apps:create", "busy", "--no-link"]);
    let app = copy_sample("faults");
    std::fs::write(app.path().join("Procfile"), "web: web\nspinner: spinner\n").unwrap();
    host.ok(&["push", "-a", "busy", "--dir", app.path().to_str().unwrap()]);
    host.ok(&["ps:scale", "spinner=1", "-a", "busy"]);
    let mut ps = String::new();
    for _ in 0..100 {
        ps = host.ok(&["ps", "-a", "busy"]);
        if ps.contains("spinner.1: up") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(ps.contains("spinner.1: up"), "{ps}");
    host.ok(&["ps:scale", "spinner=0", "-a", "busy"]);
    let logs = host.ok(&["logs", "--dyno", "spinner.1", "-a", "busy"]);
    assert!(
        logs.contains("Error R12 (Exit timeout) -> the process did not exit within 2s"),
        "{logs}"
    );
    assert!(
        logs.contains("wdeploy[spinner.1]: State changed from up to down"),
        "{logs}"
    );
    assert_eq!(host.get("hello", "/").0, 200);
}

#[test]
fn in_flight_requests_finish_across_a_restart_and_a_host_sigterm() {
    let data = tempfile::tempdir().unwrap();
    let host = TestHost::start_with(data.path(), &["--stop-grace", "2"]);
    host.ok(&["apps:create", "faults", "--no-link"]);
    host.push("faults", &sample("faults"));
    let slow = |host: &TestHost| {
        let url = format!("http://127.0.0.1:{}/slow?ms=1500", host.router_port);
        let header = format!("faults.localhost:{}", host.router_port);
        std::thread::spawn(move || {
            let mut r = http().get(&url).header("host", &header).call().unwrap();
            (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
        })
    };
    // Waits (bounded) until the guest has started serving a slow request.
    let in_flight = |host: &TestHost, nth: usize| {
        for _ in 0..200 {
            let logs = host.ok(&["logs", "--source", "app", "-a", "faults"]);
            if logs.matches("slow: sleeping 1500ms").count() >= nth {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("the slow request never reached a dyno");
    };

    // `restart` boots a new web.1 and retires the old one only after its request.
    let request = slow(&host);
    in_flight(&host, 1);
    host.ok(&["restart", "-a", "faults"]);
    assert_eq!(request.join().unwrap(), (200, "slept 1500ms\n".into()));

    // SIGTERM stops the host only after the request in flight is answered.
    let request = slow(&host);
    in_flight(&host, 2);
    let TestHost { mut running, .. } = host;
    Command::new("kill")
        .args(["-TERM", &running.pid().to_string()])
        .status()
        .unwrap();
    assert_eq!(request.join().unwrap(), (200, "slept 1500ms\n".into()));
    let status = running.wait(SOON);
    assert!(status.success(), "host exited with {status}");
}

#[test]
fn kill_9_in_the_middle_of_a_push_leaves_a_consistent_store() {
    let data = tempfile::tempdir().unwrap();
    let host = TestHost::start(data.path());
    host.ok(&["apps:create", "faults", "--no-link"]);
    host.push("faults", &sample("faults"));

    // A second push with new components; the host dies while it is being released.
    let app = copy_sample("faults");
    std::fs::write(app.path().join("wdeploy.toml"), "[web]\ntimeout = 5\n").unwrap();
    let source = app.path().join("src/web.rs");
    let text = std::fs::read_to_string(&source).unwrap();
    std::fs::write(
        &source,
        text.replace(
            "(200, \"ok\\n\".to_string())",
            "(200, \"ok v2\\n\".to_string())",
        ),
    )
    .unwrap();
    let mut push = wdeploy();
    push.args([
        "push",
        "-a",
        "faults",
        "--dir",
        app.path().to_str().unwrap(),
    ])
    .env("XDG_CONFIG_HOME", host.config_home.path())
    .env("WDEPLOY_HOST", &host.api)
    .env("WDEPLOY_TOKEN", &host.token);
    let mut push = Running::spawn(push);
    push.wait_for_text("-----> Uploading", Duration::from_secs(600));
    Command::new("kill")
        .args(["-KILL", &host.running.pid().to_string()])
        .status()
        .unwrap();
    let pushed = push.wait(SOON).success();
    drop(host);

    let host = TestHost::start(data.path());
    let releases = host.ok(&["releases", "-a", "faults"]);
    assert!(!releases.contains("(pending)"), "{releases}");
    // An acknowledged push is live; an unacknowledged one is either whole or absent.
    let (status, body) = host.get("faults", "/");
    assert_eq!(status, 200);
    if pushed {
        assert_eq!(body, "ok v2\n", "{releases}");
    } else {
        assert!(body == "ok\n" || body == "ok v2\n", "{body}\n{releases}");
    }
    // The next push completes whatever the killed one left half done.
    host.push("faults", app.path());
    assert_eq!(host.get("faults", "/"), (200, "ok v2\n".into()));
    assert_eq!(
        host.ok(&["releases", "-a", "faults"])
            .matches("(current)")
            .count(),
        1
    );
}

impl TestHost {
    /// POST a body through the router by Host header.
    fn post(&self, app: &str, path: &str, body: &str) -> (u16, String) {
        let url = format!("http://127.0.0.1:{}{path}", self.router_port);
        let mut response = http()
            .post(&url)
            .header("host", &format!("{app}.localhost:{}", self.router_port))
            .send(body.as_bytes())
            .unwrap_or_else(|e| panic!("POST {url}: {e}"));
        let status = response.status().as_u16();
        (
            status,
            response.body_mut().read_to_string().unwrap_or_default(),
        )
    }

    /// Polls `check` until it returns `Some`, or fails the test at the deadline.
    fn until<T>(&self, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
        let deadline = std::time::Instant::now() + SOON;
        loop {
            if let Some(found) = check() {
                return found;
            }
            if std::time::Instant::now() >= deadline {
                panic!(
                    "timed out waiting for {what}; host output:\n{}",
                    self.running.output()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn the_counter_is_exact_across_three_dynos_survives_restarts_and_apps_never_share_keys() {
    let data = tempfile::tempdir().unwrap();
    let host = TestHost::start(data.path());
    host.ok(&["apps:create", "counter", "--no-link"]);
    host.push("counter", &sample("counter"));
    host.ok(&["ps:scale", "web=3", "-a", "counter"]);

    // N requests at once (20 clients), spread over the three dynos.
    const CLIENTS: u64 = 20;
    const EACH: u64 = 10;
    let url = format!("http://127.0.0.1:{}/", host.router_port);
    let header = format!("counter.localhost:{}", host.router_port);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (url, header) = (url.clone(), header.clone());
            std::thread::spawn(move || {
                let agent = http();
                (0..EACH)
                    .map(|_| {
                        let mut r = agent.get(&url).header("host", &header).call().unwrap();
                        let body = r.body_mut().read_to_string().unwrap();
                        assert_eq!(r.status().as_u16(), 200, "{body}");
                        body.trim().parse::<u64>().unwrap()
                    })
                    .collect::<Vec<u64>>()
            })
        })
        .collect();
    let mut counts: Vec<u64> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    counts.sort();
    // Every increment was atomic: each request saw its own count, none was lost.
    assert_eq!(counts, (1..=CLIENTS * EACH).collect::<Vec<_>>());
    let total = format!("{}\n", CLIENTS * EACH);
    assert_eq!(host.get("counter", "/count"), (200, total.clone()));
    let router = host.ok(&["logs", "--source", "router", "-n", "200", "-a", "counter"]);
    for dyno in ["dyno=web.1 ", "dyno=web.2 ", "dyno=web.3 "] {
        assert!(router.contains(dyno), "no request reached {dyno}");
    }
    assert_eq!(host.ok(&["kv:get", "hits", "-a", "counter"]), total);

    // The count is the app's, not the dynos': it survives a restart and a host restart.
    host.ok(&["restart", "-a", "counter"]);
    assert_eq!(host.get("counter", "/count"), (200, total.clone()));
    let TestHost {
        mut running,
        config_home,
        ..
    } = host;
    Command::new("kill")
        .args(["-KILL", &running.pid().to_string()])
        .status()
        .unwrap();
    running.wait(SOON);
    drop(config_home);
    let host = TestHost::start(data.path());
    assert_eq!(host.get("counter", "/count"), (200, total));
    assert_eq!(
        host.get("counter", "/"),
        (200, format!("{}\n", CLIENTS * EACH + 1))
    );

    // Another app with the same key names sees only its own data, over HTTP and kv:*.
    host.ok(&["apps:create", "other", "--no-link"]);
    host.push("other", &sample("counter"));
    assert_eq!(host.get("other", "/count"), (200, "0\n".into()));
    assert_eq!(host.get("other", "/"), (200, "1\n".into()));
    host.ok(&["kv:set", "hits", "1000", "-a", "other"]);
    assert_eq!(host.get("other", "/"), (200, "1001\n".into()));
    assert_eq!(
        host.get("counter", "/count"),
        (200, format!("{}\n", CLIENTS * EACH + 1))
    );
    assert_eq!(host.ok(&["kv:get", "hits", "-a", "other"]), "1001\n");
    assert_eq!(host.ok(&["kv:keys", "-a", "other"]), "hits\n");
    let out = host.cli(&["kv:get", "visits", "-a", "other"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("key `visits` not found in bucket default of other"),
        "{}",
        stderr(&out)
    );
    // Limits are clear errors.
    let out = host.cli(&["kv:set", &"k".repeat(1025), "v", "-a", "other"]);
    assert!(
        stderr(&out).contains("key of 1025 bytes is over the limit of 1024 bytes"),
        "{}",
        stderr(&out)
    );
    // A destroyed app's data goes with it.
    host.ok(&["apps:destroy", "other", "--confirm", "other"]);
    host.ok(&["apps:create", "other", "--no-link"]);
    assert_eq!(host.ok(&["kv:keys", "-a", "other"]), "");
}

#[test]
fn jobs_are_processed_once_and_again_after_a_worker_crashes_mid_job() {
    let data = tempfile::tempdir().unwrap();
    let host = TestHost::start(data.path());
    host.ok(&["apps:create", "jobs", "--no-link"]);
    host.push("jobs", &sample("jobs"));
    host.ok(&["ps:scale", "worker=2", "-a", "jobs"]);

    // Two workers compete for 20 jobs: each is done, by exactly one run.
    let ids: Vec<(u64, String)> = (0..20)
        .map(|n| {
            let text = format!("job number {n}");
            let (status, body) = host.post("jobs", "/jobs", &text);
            assert_eq!(status, 202, "{body}");
            (body.trim().parse().unwrap(), text)
        })
        .collect();
    for (id, text) in &ids {
        let done = format!("done: {}\n", text.to_uppercase());
        host.until(&format!("job {id}"), || {
            (host.get("jobs", &format!("/jobs/{id}")).1 == done).then_some(())
        });
    }
    for (id, _) in &ids {
        let key = format!("job/{id}/runs");
        assert_eq!(host.ok(&["kv:get", &key, "-a", "jobs"]), "1\n", "{key}");
    }
    let stats = host.ok(&["queue:stats", "-a", "jobs"]);
    let row: Vec<&str> = stats.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row, ["jobs", "0", "0", "20"], "{stats}");

    // A payload over the queue's limit is an error value the guest answers with.
    let (status, body) = host.post("jobs", "/jobs", &"x".repeat(300 << 10));
    assert_eq!(
        (status, body.as_str()),
        (
            413,
            "job refused: payload of 307200 bytes is over the limit of 262144 bytes\n"
        )
    );

    // A worker that dies mid-job never acks; the job comes back when its lease expires.
    host.ok(&["config:set", "JOB_LEASE_SECONDS=2", "-a", "jobs"]);
    let (status, body) = host.post("jobs", "/jobs", "crash-once");
    assert_eq!(status, 202, "{body}");
    let id: u64 = body.trim().parse().unwrap();
    host.until("the crashed job to be retried", || {
        (host.get("jobs", &format!("/jobs/{id}")).1 == "done: CRASH-ONCE\n").then_some(())
    });
    for (what, value) in [("runs", "2\n"), ("attempt", "2\n"), ("crashed", "yes\n")] {
        let key = format!("job/{id}/{what}");
        assert_eq!(host.ok(&["kv:get", &key, "-a", "jobs"]), value, "{key}");
    }
    let logs = host.ok(&["logs", "-n", "1500", "-a", "jobs"]);
    assert!(
        logs.contains(&format!("job {id}: crashing on purpose")),
        "{logs}"
    );
    assert!(logs.contains("Process crashed"), "{logs}");
    assert!(
        logs.contains(&format!("job {id}: attempt 2: crash-once")),
        "{logs}"
    );
    let stats = host.ok(&["queue:stats", "-a", "jobs"]);
    assert!(stats.lines().nth(1).unwrap().ends_with(" 21"), "{stats}");
}

#[test]
fn a_component_importing_an_unknown_interface_is_refused_at_push() {
    let data = tempfile::tempdir().unwrap();
    let host = TestHost::start(data.path());
    host.ok(&["apps:create", "hello", "--no-link"]);
    host.push("hello", &sample("hello"));
    let out = host.cli(&[
        "push",
        "-a",
        "hello",
        "--dir",
        sample("stranger").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(
            "process type `worker`: component stranger.wasm imports wasi:foo/bar@1.0.0, \
             which this host does not provide"
        ),
        "{err}"
    );
    // Nothing of it was deployed: the previous release serves, its dynos untouched.
    assert_eq!(host.get("hello", "/"), (200, "Hello from wdeploy\n".into()));
    let releases = host.ok(&["releases", "-a", "hello"]);
    assert!(
        releases.lines().nth(1).unwrap().contains("(failed)"),
        "{releases}"
    );
    let logs = host.ok(&["logs", "-n", "1500", "-a", "hello"]);
    assert!(
        logs.contains("Release v2 failed: process type `worker`: component stranger.wasm"),
        "{logs}"
    );
    assert!(!logs.contains("command `stranger"), "{logs}");
}

/// Pushes a polyglot sample (built by its real buildpack, which installs its own tools)
/// and checks what every sample does: the web greets with GREETING, counts visits in the
/// key-value add-on across a restart, and the worker's lines reach the log stream.
fn polyglot_sample_serves_config_kv_and_worker_logs(
    sample_name: &str,
    buildpack: &str,
    language: &str,
    worker_line: &str,
) {
    let data = tempfile::tempdir().unwrap();
    let host = TestHost::start(data.path());
    let app = sample_name;
    host.ok(&["apps:create", app, "--no-link"]);
    host.ok(&["config:set", "GREETING=Howdy", "-a", app]);
    let pushed = host.push(app, &sample(sample_name));
    assert!(
        pushed.contains(&format!("-----> {buildpack} app detected")),
        "{pushed}"
    );
    let visit = |n: u64| (200, format!("Howdy from {language}! Visit number {n}\n"));
    assert_eq!(host.get(app, "/"), visit(1));
    assert_eq!(host.get(app, "/"), visit(2));
    host.ok(&["restart", "-a", app]);
    assert_eq!(host.get(app, "/"), visit(3));
    assert_eq!(host.ok(&["kv:get", "visits", "-a", app]), "3\n");

    host.ok(&["ps:scale", "worker=1", "-a", app]);
    let mut logs = String::new();
    for _ in 0..200 {
        logs = host.ok(&["logs", "--dyno", "worker.1", "-a", app]);
        if logs.contains(&format!("app[worker.1]: {worker_line}")) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(logs.contains(worker_line), "{logs}");
}

#[test]
fn the_python_sample_is_built_by_its_buildpack_and_serves() {
    polyglot_sample_serves_config_kv_and_worker_logs(
        "python-web",
        "python",
        "Python",
        "python tick 1",
    );
}

#[test]
fn the_javascript_sample_is_built_by_its_buildpack_and_serves() {
    // Two requests to one dyno in a row also prove the buildpack's request isolation: a
    // reused StarlingMonkey instance cannot answer a second fetch event.
    polyglot_sample_serves_config_kv_and_worker_logs(
        "js-web",
        "javascript",
        "JavaScript",
        "js tick 1",
    );
}
