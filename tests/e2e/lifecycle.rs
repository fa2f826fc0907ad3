//! Stopping dynos and hosts: workers get their stdin closed and a grace period, web
//! requests in flight finish across a restart and a host's SIGTERM.

use crate::fixture::*;

#[test]
fn stopping_workers_close_stdin_then_give_a_grace_period() {
    let host = TestHost::start_with(&["--stop-grace", "2"]);
    host.create_and_push("hello", &sample("hello"));
    host.ok(&["ps:scale", "worker=1", "-a", "hello"]);
    let logs = poll_until("worker.1's first tick", SOON, || {
        let logs = host.ok(&["logs", "--dyno", "worker.1", "-a", "hello"]);
        if logs.contains("app[worker.1]: tick 1") {
            Ok(logs)
        } else {
            Err(logs)
        }
    });
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
    let app = faults_app().with_procfile("web: web\nspinner: spinner\n");
    host.create_and_push("busy", app.path());
    host.ok(&["ps:scale", "spinner=1", "-a", "busy"]);
    let ps = poll_until("spinner.1 to be up", SOON, || {
        let ps = host.ok(&["ps", "-a", "busy"]);
        if ps.contains("spinner.1: up") {
            Ok(ps)
        } else {
            Err(ps)
        }
    });
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
    let mut host = TestHost::start_with(&["--stop-grace", "2"]);
    host.create_and_push("faults", faults_app().path());
    let slow = |host: &TestHost| {
        let (url, header) = (host.url("/slow?ms=1500"), host.host_header("faults"));
        std::thread::spawn(move || {
            let mut r = http().get(&url).header("host", &header).call().unwrap();
            (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
        })
    };
    // Waits until the guest has started serving the `nth` slow request.
    let in_flight = |host: &TestHost, nth: usize| {
        poll_until("the slow request to reach a dyno", SOON, || {
            let logs = host.ok(&["logs", "--source", "app", "-a", "faults"]);
            if logs.matches("slow: sleeping 1500ms").count() >= nth {
                Ok(())
            } else {
                Err(logs)
            }
        })
    };

    // `restart` boots a new web.1 and retires the old one only after its request.
    let request = slow(&host);
    in_flight(&host, 1);
    host.ok(&["restart", "-a", "faults"]);
    assert_eq!(request.join().unwrap(), (200, "slept 1500ms\n".into()));

    // SIGTERM stops the host only after the request in flight is answered.
    let request = slow(&host);
    in_flight(&host, 2);
    host.sigterm();
    assert_eq!(request.join().unwrap(), (200, "slept 1500ms\n".into()));
    let status = host.wait_exit(SOON);
    assert!(status.success(), "host exited with {status}");
}

/// A host outlives whoever reads its output: with the reader of its stdout gone (a closed
/// pipe, a log collector restarted), a SIGTERM still stops it cleanly, where its last
/// line used to panic it before the stop.
#[test]
fn a_host_whose_output_reader_went_stops_cleanly() {
    let _share = share();
    let data = tempfile::tempdir().unwrap();
    let mut child = wdeploy()
        .arg("host")
        .arg("--data")
        .arg(data.path())
        .args(["--listen", "127.0.0.1:0", "--api", "127.0.0.1:0"])
        .args(["--acme-directory", NO_ACME_DIRECTORY])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn wdeploy host");
    read_then_hang_up(&mut child, "the login line", |l| {
        l.starts_with("wdeploy host: log in with: ")
    });
    let pid = child.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = exited(&mut child, "the host to stop", SOON);
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "{status:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// `logs --tail` outlives its connection. A dropped network, then a host restarted (on
/// new ports, behind a proxy that follows it), each end its stream: the tail says so,
/// connects again, and prints what came meanwhile, each line once.
#[test]
fn a_log_tail_connects_again_and_prints_each_line_once() {
    let mut host = TestHost::start();
    host.create_and_push("hello", &sample("hello"));
    let api = |host: &TestHost| std::net::SocketAddr::from(([127, 0, 0, 1], host.api_port()));
    let proxy = Proxy::start(api(&host));
    host.get("hello", "/before");
    let mut cmd = host.command(&[
        "logs", "--tail", "--source", "router", "-n", "1500", "-a", "hello",
    ]);
    cmd.env("WDEPLOY_HOST", proxy.url());
    let mut tail = Running::spawn(cmd);
    tail.wait_for_text("path=\"/before\"", SOON);

    proxy.cut();
    host.get("hello", "/while-away");
    tail.wait_for_text("wdeploy: connected again", SOON);
    tail.wait_for_text("path=\"/while-away\"", SOON);
    host.get("hello", "/after");
    tail.wait_for_text("path=\"/after\"", SOON);

    host.restart();
    proxy.point_to(api(&host));
    host.wait_restored("hello", "/restored");
    poll_until("the tail to connect to the restarted host", SOON, || {
        host.get("hello", "/after-restart");
        tail.line_with("path=\"/after-restart\"")
            .ok_or_else(|| tail.output())
    });
    let out = tail.output();
    assert!(
        out.contains("wdeploy: the host closed the log stream; connecting again")
            || out.contains("wdeploy: the log stream broke"),
        "{out}"
    );
    for path in ["/before", "/while-away", "/after"] {
        let times = out
            .lines()
            .filter(|l| l.contains(&format!("path=\"{path}\"")))
            .count();
        assert_eq!(times, 1, "{path} printed {times} times:\n{out}");
    }
    tail.kill_9();
}

/// A tail whose host goes silent without closing anything (a machine gone, a network
/// partition) gives up on the connection once the host's heartbeats stop, and connects
/// again; a quiet app is not that: its heartbeats keep the tail where it is.
#[test]
fn a_log_tail_whose_host_goes_silent_connects_again() {
    let host = TestHost::start();
    host.create_and_push("hello", &sample("hello"));
    let proxy = Proxy::start(std::net::SocketAddr::from((
        [127, 0, 0, 1],
        host.api_port(),
    )));
    // The API: a tail that asks for a heartbeat gets an empty line in each quiet second.
    let url = |query: &str| format!("{}/apps/hello/log-sessions?{query}", host.api);
    let auth = format!("Bearer {}", host.token);
    let mut response = http()
        .get(&url("lines=0&tail=true&source=router&heartbeat=1"))
        .header("authorization", &auth)
        .call()
        .expect("a log session");
    assert_eq!(
        response
            .headers()
            .get("x-wdeploy-heartbeat")
            .map(|v| v.as_bytes()),
        Some(&b"1"[..])
    );
    let mut beats = [0u8; 2];
    std::io::Read::read_exact(&mut response.body_mut().as_reader(), &mut beats)
        .expect("two heartbeats");
    assert_eq!(&beats, b"\n\n");
    for (query, said) in [
        (
            "tail=true&heartbeat=0",
            "heartbeat=0: give 1 to 300 seconds",
        ),
        (
            "tail=false&heartbeat=5",
            "heartbeat=5 is for a stream that stays open",
        ),
    ] {
        let mut refused = http()
            .get(&url(query))
            .header("authorization", &auth)
            .call()
            .expect("an answer");
        let body = refused.body_mut().read_to_string().unwrap_or_default();
        assert_eq!(refused.status(), 422, "{body}");
        assert!(body.contains(said), "{body}");
    }
    // A release stream and a run's output take heartbeats as well, within the same bounds.
    for (path, body) in [
        (
            "releases",
            format!(
                r#"{{"slug":"sha256:{}","procfile":"web: web","description":"x","heartbeat":0}}"#,
                "0".repeat(64)
            ),
        ),
        (
            "dynos",
            r#"{"process_type":"worker","heartbeat":301}"#.to_string(),
        ),
    ] {
        let mut refused = http()
            .post(&format!("{}/apps/hello/{path}", host.api))
            .header("authorization", &auth)
            .header("content-type", "application/json")
            .send(body.as_str())
            .expect("an answer");
        let text = refused.body_mut().read_to_string().unwrap_or_default();
        assert_eq!(refused.status(), 422, "{path}: {text}");
        assert!(text.contains("give 1 to 300 seconds"), "{path}: {text}");
    }

    // Only the router's lines: nothing comes without a request.
    let mut cmd = host.command(&["logs", "--tail", "--source", "router", "-a", "hello"]);
    cmd.env("WDEPLOY_HOST", proxy.url());
    let mut tail = Running::spawn(cmd);
    host.get("hello", "/before");
    tail.wait_for_text("path=\"/before\"", SOON);
    // Quiet for longer than the host's heartbeat (10 s): the tail stays connected.
    std::thread::sleep(std::time::Duration::from_secs(12));
    host.get("hello", "/quiet");
    tail.wait_for_text("path=\"/quiet\"", SOON);
    assert!(
        !tail.output().contains("connecting again"),
        "{}",
        tail.output()
    );

    proxy.silence();
    host.get("hello", "/unheard");
    let gave_up = tail.wait_for_text("wdeploy: the host sent nothing for 30s", SOON);
    assert!(
        gave_up.contains("(it sends a line at least every 10s); connecting again"),
        "{gave_up}"
    );
    tail.wait_for_text("wdeploy: connected again", SOON);
    // What the silent connection lost comes with the history, once.
    tail.wait_for_text("path=\"/unheard\"", SOON);
    host.get("hello", "/after");
    tail.wait_for_text("path=\"/after\"", SOON);
    let out = tail.output();
    for path in ["/before", "/quiet", "/unheard", "/after"] {
        let times = out
            .lines()
            .filter(|l| l.contains(&format!("path=\"{path}\"")))
            .count();
        assert_eq!(times, 1, "{path} printed {times} times:\n{out}");
    }
    // Heartbeats are not printed.
    assert!(!out.lines().any(str::is_empty), "{out}");
    tail.kill_9();
}

/// An attached `run` whose host goes silent without closing anything ends with an error
/// once the host's heartbeats stop, where it used to wait forever. (A quiet command gets
/// the heartbeats a quiet log tail gets, checked above: the API sends both alike.)
#[test]
fn an_attached_run_whose_host_goes_silent_gives_up() {
    let host = TestHost::start();
    host.create_and_push("hello", &sample("hello"));
    let proxy = Proxy::start(std::net::SocketAddr::from((
        [127, 0, 0, 1],
        host.api_port(),
    )));
    // `release` prints one line and ends: through the proxy, with heartbeats asked for.
    let mut cmd = host.command(&["run", "release", "-a", "hello"]);
    cmd.env("WDEPLOY_HOST", proxy.url());
    let out = cmd.output().expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains('\0'), "a heartbeat was printed: {text:?}");

    // The worker ticks each second: silenced, `run` hears nothing more.
    let mut cmd = host.command(&["run", "worker", "-a", "hello"]);
    cmd.env("WDEPLOY_HOST", proxy.url());
    let mut run = Running::spawn(cmd);
    run.wait_for_text("tick", SOON);
    proxy.silence();
    let gave_up = run.wait_for_text("the host sent nothing for 30s", SOON);
    assert!(
        gave_up.contains("the connection is lost, and the dyno, attached to it, stops with it"),
        "{gave_up}"
    );
    assert_eq!(run.wait(SOON).code(), Some(1));
}
