//! Faulty guests stay contained: traps, busy loops, memory hogs, crash loops, log floods
//! and outgoing calls to the node cost their own instance or app, never the host or a
//! neighbour; each instance and dyno keeps its own memory and filesystem.

use crate::fixture::*;

#[test]
fn crash_loops_busy_workers_and_log_floods_never_disturb_other_apps() {
    let host = TestHost::with_app("hello");
    let app = faults_app()
        .with_procfile("web: web\nworker: crasher\nspinner: spinner\n")
        .with_settings("[web]\ntimeout = 2\n\n[limits]\nmemory_mb = 64\n");
    host.create_and_push("faults", app.path());
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
    let ps = poll_until(
        "worker.1 crashed (with its next start) and spinner.1 up",
        SOON,
        || {
            let ps = host.ok(&["ps", "-a", "faults"]);
            if ps.contains("worker.1: crashed")
                && ps.contains("next start at")
                && ps.contains("spinner.1: up")
            {
                Ok(ps)
            } else {
                Err(ps)
            }
        },
    );
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
        ("/forget", 500, "code=H13"),
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
    assert!(
        platform.contains(
            "Instance crashed: the handler returned without setting a response; replacing it"
        ),
        "{platform}"
    );

    // Throughout, the other app and the faulty app's web dyno answer.
    for _ in 0..20 {
        assert_eq!(host.get("hello", "/"), (200, "Hello from wdeploy\n".into()));
        assert_eq!(host.get("faults", "/"), (200, "ok\n".into()));
    }
}

#[test]
fn trapping_guest_answers_500_and_the_dyno_keeps_serving() {
    let app = faults_app();
    let tmp = tempfile::tempdir().unwrap();
    let mut dev = dev(app.path(), tmp.path(), &[]);
    let port = dev.port();
    let base = format!("http://127.0.0.1:{port}");

    assert_eq!(get(&format!("{base}/")), (200, "ok\n".into()));
    let (status, _) = get(&format!("{base}/trap"));
    assert_eq!(status, 500);
    let line = dev.wait_for_text("code=H13", SOON);
    assert!(
        line.contains("path=\"/trap\"") && line.contains("status=500"),
        "{line}"
    );
    dev.wait_for_text("app[web.1]: deliberate trap from /trap", SOON);
    dev.wait_for_text("wdeploy[web.1]: Instance crashed: wasm trap", SOON);
    assert_eq!(get(&format!("{base}/")), (200, "ok\n".into()));

    // In dev, a guest may call services on the laptop: here, the dev router itself.
    assert_eq!(
        get(&format!("{base}/fetch?authority=127.0.0.1:{port}&path=")),
        (200, "fetched: status 200\n".into())
    );

    // The crashing worker is logged and restarted: at once, then after a delay.
    dev.wait_for_text("wdeploy[worker.1]: Process exited with status 1", SOON);
    dev.wait_for_text("wdeploy[worker.1]: State changed from up to crashed", SOON);
    dev.wait_for_text("wdeploy[worker.1]: Restarting in 1s", SOON);
    assert!(dev.interrupt(SOON).success());
}

#[test]
fn runaway_and_memory_hungry_guests_are_stopped_and_the_dyno_keeps_serving() {
    let app = faults_app().with_settings("[web]\ntimeout = 2\n\n[limits]\nmemory_mb = 64\n");
    let tmp = tempfile::tempdir().unwrap();
    let mut dev = dev(app.path(), tmp.path(), &[]);
    let base = format!("http://127.0.0.1:{}", dev.port());

    // A busy loop is cut off at the request deadline: 503 H12, the instance is discarded.
    assert_eq!(get(&format!("{base}/loop")).0, 503);
    dev.wait_for_text("code=H12", SOON);
    dev.wait_for_text("Instance crashed: deadline exceeded", SOON);
    assert_eq!(get(&format!("{base}/")), (200, "ok\n".into()));

    // Leaking host resources hits the per-instance handle limit, not the host's memory.
    assert_eq!(get(&format!("{base}/handles")).0, 500);
    assert_eq!(get(&format!("{base}/")), (200, "ok\n".into()));

    // Allocating past the quota kills the instance with an R14 line.
    assert_eq!(get(&format!("{base}/alloc")).0, 500);
    let r14 = dev.wait_for_text("Error R14 (Memory quota exceeded)", SOON);
    assert!(
        r14.contains("wdeploy[web.1]") && r14.contains("quota 64 MiB"),
        "{r14}"
    );
    assert_eq!(get(&format!("{base}/")), (200, "ok\n".into()));
    assert!(dev.interrupt(SOON).success());
}

#[test]
fn each_dyno_gets_an_empty_private_filesystem_removed_at_stop() {
    let app = faults_app();
    let tmp = tempfile::tempdir().unwrap();
    let mut dev = dev(app.path(), tmp.path(), &[]);
    let port = dev.port();
    let base = format!("http://127.0.0.1:{port}");

    assert_eq!(get(&format!("{base}/files")), (200, "files: []\n".into()));
    assert_eq!(get(&format!("{base}/write?name=notes.txt")).0, 200);
    // The next request (same dyno) sees the file; the host sees it in the dyno's directory.
    assert_eq!(
        get(&format!("{base}/files")),
        (200, "files: [notes.txt]\n".into())
    );
    assert_eq!(
        get(&format!("{base}/read?name=notes.txt")),
        (200, "written\n".into())
    );
    let dyno_dirs: Vec<_> = std::fs::read_dir(tmp.path().join("faults"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("web.1-")
        })
        .collect();
    assert_eq!(dyno_dirs.len(), 1);
    assert!(dyno_dirs[0].join("notes.txt").is_file());
    // Nothing of the host is visible: the guest's root is that directory.
    assert_eq!(get(&format!("{base}/read?name=etc/passwd")).0, 404);

    assert!(dev.interrupt(SOON).success());
    assert!(
        !dyno_dirs[0].exists(),
        "web.1's filesystem survived the stop"
    );
}

#[test]
fn request_isolation_gives_a_fresh_instance_per_request() {
    let app = faults_app().with_settings("[web]\nisolation = \"request\"\n");
    let tmp = tempfile::tempdir().unwrap();
    let mut dev = dev(app.path(), tmp.path(), &[]);
    let port = dev.port();
    for _ in 0..3 {
        assert_eq!(
            get(&format!("http://127.0.0.1:{port}/count")),
            (200, "1\n".into())
        );
    }
    assert!(dev.interrupt(SOON).success());
}

#[test]
fn warm_instances_keep_memory_between_requests() {
    let app = faults_app();
    let tmp = tempfile::tempdir().unwrap();
    let mut dev = dev_with_one_instance(app.path(), tmp.path());
    let port = dev.port();
    let counts: Vec<_> = (0..3)
        .map(|_| get(&format!("http://127.0.0.1:{port}/count")).1)
        .collect();
    assert_eq!(counts, ["1\n", "2\n", "3\n"]);
    // A trap discards the instance; its replacement starts from fresh memory.
    assert_eq!(get(&format!("http://127.0.0.1:{port}/trap")).0, 500);
    assert_eq!(get(&format!("http://127.0.0.1:{port}/count")).1, "1\n");
    assert!(dev.interrupt(SOON).success());
}

#[test]
fn an_instance_that_returns_without_a_response_is_replaced() {
    let app = faults_app();
    let tmp = tempfile::tempdir().unwrap();
    let mut dev = dev_with_one_instance(app.path(), tmp.path());
    let base = format!("http://127.0.0.1:{}", dev.port());
    assert_eq!(get(&format!("{base}/count")), (200, "1\n".into()));
    // The guest forgets to answer and could never answer again: it must not be reused.
    assert_eq!(get(&format!("{base}/forget")).0, 500);
    let line = dev.wait_for_text("code=H13", SOON);
    assert!(line.contains("path=\"/forget\""), "{line}");
    dev.wait_for_text(
        "wdeploy[web.1]: Instance crashed: the handler returned without setting a response",
        SOON,
    );
    assert_eq!(get(&format!("{base}/")), (200, "ok\n".into()));
    // The replacement started from fresh memory.
    assert_eq!(get(&format!("{base}/count")), (200, "1\n".into()));
    assert!(dev.interrupt(SOON).success());
}

#[test]
fn warm_instances_are_recycled_after_max_requests() {
    let app = faults_app().with_settings("[web]\nmax_requests = 2\n");
    let tmp = tempfile::tempdir().unwrap();
    let mut dev = dev_with_one_instance(app.path(), tmp.path());
    let port = dev.port();
    let counts: Vec<_> = (0..5)
        .map(|_| get(&format!("http://127.0.0.1:{port}/count")).1)
        .collect();
    assert_eq!(counts, ["1\n", "2\n", "1\n", "2\n", "1\n"]);
    assert!(dev.interrupt(SOON).success());
}

/// `wdeploy dev` of APP with `WEB_CONCURRENCY=1`: one warm instance serves every request,
/// so which instance answers is known.
fn dev_with_one_instance(app: &std::path::Path, tmp: &std::path::Path) -> Running {
    let env = write_env(tmp, "WEB_CONCURRENCY=1");
    dev(app, tmp, &["--env-file", env.to_str().unwrap()])
}
