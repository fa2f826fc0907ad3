//! Stopping and restarting dynos and hosts: workers get their stdin closed and a grace
//! period, a restart reaches the dynos it names, web requests in flight finish across a
//! restart and a host's SIGTERM.

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

/// `restart web` restarts every dyno of that process type and no other, as Heroku's
/// `ps:restart web`; a type with no dynos, or the release phase, is refused by name.
#[test]
fn a_restart_of_a_process_type_restarts_its_dynos_alone() {
    let host = TestHost::start_with(&["--stop-grace", "2"]);
    host.create_and_push("hello", &sample("hello"));
    host.ok(&["ps:scale", "web=2", "worker=2", "-a", "hello"]);
    host.ok(&["ps:wait", "-a", "hello"]);
    let starts = |dyno: &str| {
        let logs = host.ok(&["logs", "-n", "1500", "-a", "hello"]);
        logs.matches(&format!("wdeploy[{dyno}]: Starting process"))
            .count()
    };
    let before: Vec<usize> = ["web.1", "web.2", "worker.1", "worker.2"]
        .iter()
        .map(|d| starts(d))
        .collect();

    let out = host.ok(&["restart", "worker", "-a", "hello"]);
    assert!(out.contains("Restarted the worker dynos of hello"), "{out}");
    let after: Vec<usize> = ["web.1", "web.2", "worker.1", "worker.2"]
        .iter()
        .map(|d| starts(d))
        .collect();
    assert_eq!(after, [before[0], before[1], before[2] + 1, before[3] + 1]);

    host.ok(&["ps:restart", "web", "-a", "hello"]);
    let logs = host.ok(&["logs", "-n", "1500", "-a", "hello"]);
    assert!(
        logs.contains("wdeploy[api]: Restarting web by admin"),
        "{logs}"
    );
    let after: Vec<usize> = ["web.1", "web.2", "worker.1", "worker.2"]
        .iter()
        .map(|d| starts(d))
        .collect();
    assert_eq!(
        after,
        [before[0] + 1, before[1] + 1, before[2] + 1, before[3] + 1]
    );
    assert_eq!(host.get("hello", "/").0, 200);
    let ps = host.ok(&["ps", "-a", "hello"]);
    assert_eq!(ps.matches(": up ").count(), 4, "{ps}");

    let err = host.fails(&["restart", "release", "-a", "hello"]);
    assert!(err.contains("the release phase is not restarted"), "{err}");
    host.ok(&["ps:scale", "worker=0", "-a", "hello"]);
    let err = host.fails(&["restart", "worker", "-a", "hello"]);
    assert!(err.contains("no worker dynos are running"), "{err}");
    let err = host.fails(&["restart", "Web!", "-a", "hello"]);
    assert!(
        err.contains("is not a dyno (web.1) or a process type (web)"),
        "{err}"
    );
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
