//! Streams that stay open through a dropped network, a host restarted elsewhere and a
//! host gone silent: `logs --tail` connects again and prints each line once; an attached
//! `run` gives up; heartbeats keep a quiet stream apart from a dead one. The CLI talks to
//! the host through a loopback [`Proxy`] that can cut, silence or move its connections.
//! And the stream the other way: `run --stdin` sends its input to the dyno's stdin.

use crate::fixture::*;
use std::process::Command;

/// A host running hello, and a proxy to its API.
fn hello_behind_a_proxy() -> (TestHost, Proxy) {
    let host = TestHost::start();
    host.create_and_push("hello", &sample("hello"));
    let proxy = Proxy::start(host.api_addr());
    (host, proxy)
}

/// `wdeploy ARGS…` against `host` through `proxy`.
fn through(proxy: &Proxy, host: &TestHost, args: &[&str]) -> Command {
    let mut cmd = host.command(args);
    cmd.env("WDEPLOY_HOST", proxy.url());
    cmd
}

/// Asserts that the router line of each of `paths` is in `out` once.
fn printed_once(out: &str, paths: &[&str]) {
    for path in paths {
        let times = out
            .lines()
            .filter(|l| l.contains(&format!("path=\"{path}\"")))
            .count();
        assert_eq!(times, 1, "{path} printed {times} times:\n{out}");
    }
}

/// `logs --tail` outlives its connection. A dropped network, then a host restarted (on
/// new ports, behind a proxy that follows it), each end its stream: the tail says so,
/// connects again, and prints what came meanwhile, each line once.
#[test]
fn a_log_tail_connects_again_and_prints_each_line_once() {
    let (mut host, proxy) = hello_behind_a_proxy();
    host.get("hello", "/before");
    let mut tail = Running::spawn(through(
        &proxy,
        &host,
        &[
            "logs", "--tail", "--source", "router", "-n", "1500", "-a", "hello",
        ],
    ));
    tail.wait_for_text("path=\"/before\"", SOON);

    proxy.cut();
    host.get("hello", "/while-away");
    tail.wait_for_text("wdeploy: connected again", SOON);
    tail.wait_for_text("path=\"/while-away\"", SOON);
    host.get("hello", "/after");
    tail.wait_for_text("path=\"/after\"", SOON);

    host.restart();
    proxy.point_to(host.api_addr());
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
    printed_once(&out, &["/before", "/while-away", "/after"]);
    tail.kill_9();
}

/// A tail whose host goes silent without closing anything (a machine gone, a network
/// partition) gives up on the connection once the host's heartbeats stop, and connects
/// again; a quiet app is not that: its heartbeats keep the tail where it is.
#[test]
fn a_log_tail_whose_host_goes_silent_connects_again() {
    let (host, proxy) = hello_behind_a_proxy();
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
    let mut tail = Running::spawn(through(
        &proxy,
        &host,
        &["logs", "--tail", "--source", "router", "-a", "hello"],
    ));
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
    printed_once(&out, &["/before", "/quiet", "/unheard", "/after"]);
    // Heartbeats are not printed.
    assert!(!out.lines().any(str::is_empty), "{out}");
    tail.kill_9();
}

/// An attached `run` whose host goes silent without closing anything ends with an error
/// once the host's heartbeats stop, where it used to wait forever. (A quiet command gets
/// the heartbeats a quiet log tail gets, checked above: the API sends both alike.)
#[test]
fn an_attached_run_whose_host_goes_silent_gives_up() {
    let (host, proxy) = hello_behind_a_proxy();
    // `release` prints one line and ends: through the proxy, with heartbeats asked for.
    let out = through(&proxy, &host, &["run", "release", "-a", "hello"])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains('\0'), "a heartbeat was printed: {text:?}");

    // The worker ticks each second: silenced, `run` hears nothing more.
    let mut run = Running::spawn(through(&proxy, &host, &["run", "worker", "-a", "hello"]));
    run.wait_for_text("tick", SOON);
    proxy.silence();
    let gave_up = run.wait_for_text("the host sent nothing for 30s", SOON);
    assert!(
        gave_up.contains("the connection is lost, and the dyno, attached to it, stops with it"),
        "{gave_up}"
    );
    assert_eq!(run.wait(SOON).code(), Some(1));
}

/// `run --stdin`: what the command reads goes to the dyno's stdin as it comes (a line at a
/// time from a terminal), its end is the end of the dyno's input, past the API's JSON
/// cap; the input of a one-off goes once, and only to a one-off that asked for it.
#[test]
fn a_one_off_reads_the_input_its_run_sends() {
    let host = TestHost::start();
    let app = faults_app().with_procfile("web: web\necho: echo\n");
    host.create_and_push("faults", app.path());
    let run_with = |input: &[u8]| {
        let mut cmd = host.command(&["run", "--stdin", "echo", "-a", "faults"]);
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("spawn wdeploy run");
        let mut stdin = child.stdin.take().expect("piped");
        let input = input.to_vec();
        // Written while the output is read: a large input outruns any pipe's buffer.
        let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &input));
        let out = child.wait_with_output().expect("wdeploy run ends");
        writer.join().expect("writer").expect("wrote the input");
        out
    };
    let out = run_with(b"hello\nworld\n");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(
        text.contains("echo: hello\necho: world\necho: end of input after 12 bytes in 2 lines"),
        "{text}"
    );
    // Three times the API's largest JSON body, streamed rather than held.
    let big = "x".repeat(1023) + "\n";
    let out = run_with(big.repeat(3 * 1024).as_bytes());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("echo: end of input after 3145728 bytes in 3072 lines"),
        "{text}{}",
        stderr(&out)
    );

    // A line goes as soon as it is written, with the input still open.
    let mut cmd = host.command(&["run", "-i", "echo", "-a", "faults"]);
    cmd.stdin(std::process::Stdio::piped());
    let mut live = Running::spawn(cmd);
    let mut stdin = live.take_stdin();
    std::io::Write::write_all(&mut stdin, b"first\n").expect("write");
    live.wait_for_text("echo: first", SOON);
    let started = live.wait_for_text("as run.", SOON);
    let dyno = started
        .split_whitespace()
        .find(|w| w.starts_with("run."))
        .expect("the dyno's name")
        .to_string();
    // Its input is being sent: nobody else's goes in.
    let put = |dyno: &str| {
        let mut response = http()
            .put(&format!("{}/apps/faults/dynos/{dyno}/stdin", host.api))
            .header("authorization", &format!("Bearer {}", host.token))
            .send("intruder\n")
            .expect("the API answers");
        let status = response.status().as_u16();
        (
            status,
            response.body_mut().read_to_string().unwrap_or_default(),
        )
    };
    let (status, body) = put(&dyno);
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("input is sent by another client"), "{body}");
    std::io::Write::write_all(&mut stdin, b"second\n").expect("write");
    drop(stdin);
    assert!(live.wait(SOON).success(), "{}", live.output());
    let said = live.output();
    assert!(
        said.contains("echo: second\necho: end of input after 13 bytes in 2 lines"),
        "{said}"
    );
    assert!(!said.contains("intruder"), "{said}");

    // Only a one-off that asked for it takes input, and only an attached one can.
    let started = host.ok(&["run:detached", "echo", "-a", "faults"]);
    let detached = started
        .split_whitespace()
        .find(|w| w.starts_with("run."))
        .expect("the dyno's name")
        .to_string();
    let (status, body) = put(&detached);
    assert_eq!(status, 409, "{body}");
    assert!(
        body.contains("was not started to read its client's input"),
        "{body}"
    );
    host.ok(&["ps:stop", &detached, "-a", "faults"]);
    let (status, body) = put("run.1");
    assert_eq!(status, 404, "{body}");
    let err = host.fails(&["run:detached", "--stdin", "echo", "-a", "faults"]);
    assert!(err.contains("a detached one-off reads no input"), "{err}");
}

/// `config:set` and `rollback` wait for their release as `push` does: its release phase
/// and boot on stderr as they happen (stdout keeps its one line), and heartbeats, so a
/// host gone silent mid-release ends them with an error rather than a wait for ever.
#[test]
fn config_changes_and_rollbacks_stream_their_release_and_notice_a_silent_host() {
    let host = TestHost::start_with(&["--boot-timeout", "120"]);
    host.create_and_push("stuck", stuck_app().path());
    let proxy = Proxy::start(host.api_addr());

    let out = through(&proxy, &host, &["config:set", "A=1", "-a", "stuck"])
        .output()
        .expect("config:set");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Set A and restarted stuck, v2\n"
    );
    let said = stderr(&out);
    assert!(said.contains("-----> Starting v2"), "{said}");
    assert!(!said.contains('\0'), "a heartbeat was printed: {said:?}");
    let out = through(&proxy, &host, &["rollback", "-a", "stuck"])
        .output()
        .expect("rollback");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Rollback to v1: now v3\n"
    );
    assert!(
        stderr(&out).contains("-----> Starting v3"),
        "{}",
        stderr(&out)
    );

    // The API: asked for, a heartbeat; not asked for, the plain JSON as before.
    let auth = format!("Bearer {}", host.token);
    let mut streamed = http()
        .patch(&format!("{}/apps/stuck/config-vars?heartbeat=1", host.api))
        .header("authorization", &auth)
        .header("content-type", "application/json")
        .send(r#"{"B":"2"}"#)
        .expect("an answer");
    assert_eq!(
        streamed
            .headers()
            .get("x-wdeploy-heartbeat")
            .map(|v| v.as_bytes()),
        Some(&b"1"[..])
    );
    let text = streamed.body_mut().read_to_string().expect("the stream");
    assert!(text.contains("\u{0}result={"), "{text:?}");
    let mut plain = http()
        .patch(&format!("{}/apps/stuck/config-vars", host.api))
        .header("authorization", &auth)
        .header("content-type", "application/json")
        .send(r#"{"B":null}"#)
        .expect("an answer");
    // (The config of v1, rolled back to: none.)
    assert_eq!(plain.body_mut().read_to_string().expect("JSON"), "{}");

    // A boot that loops until its deadline (120 s), then a host that goes silent.
    let mut change = Running::spawn(through(
        &proxy,
        &host,
        &["config:set", "BOOT_LOOP_AFTER=0", "-a", "stuck"],
    ));
    change.wait_for_text("-----> Starting v6", SOON);
    proxy.silence();
    let gave_up = change.wait_for_text("the host sent nothing for 30s", SOON);
    assert!(
        gave_up.contains("whether the release went live, `wdeploy releases` tells"),
        "{gave_up}"
    );
    assert_eq!(change.wait(SOON).code(), Some(1));
    host.ok(&["releases:cancel", "-a", "stuck"]);
}

/// `run:detached --tail`: the dyno's lines from its first, followed as `logs --tail`
/// follows them; the follower gone, the dyno runs on, as detached means.
#[test]
fn a_detached_one_off_is_followed_and_outlives_its_follower() {
    let host = TestHost::start();
    host.create_and_push("hello", &sample("hello"));
    let mut follower =
        Running::spawn(host.command(&["run:detached", "--tail", "worker", "-a", "hello"]));
    let started = follower.wait_for_text("(detached)", SOON);
    let name = started
        .split_whitespace()
        .find(|w| w.starts_with("run."))
        .expect("the dyno's name")
        .to_string();
    follower.wait_for_text(&format!("app[{name}]: worker {name} starting"), SOON);
    // Another dyno's line meanwhile is not the one-off's.
    assert_eq!(host.get("hello", "/").0, 200);
    follower.wait_for_text(&format!("app[{name}]: tick 2"), SOON);
    assert!(
        !follower.output().contains("app[web.1]"),
        "{}",
        follower.output()
    );
    // Killed outright: a test's child may inherit an ignored SIGINT (a background job's).
    follower.kill_9();
    let ps = host.ok(&["ps", "-a", "hello"]);
    assert!(ps.contains(&format!("{name}: up")), "{ps}");
    host.ok(&["ps:stop", &name, "-a", "hello"]);
}
