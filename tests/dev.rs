//! End to end: `wdeploy dev` builds real samples with the real Rust buildpack, runs them on
//! wasmtime and serves them over loopback HTTP.

mod common;

use common::*;
use std::path::Path;
use std::time::Duration;

const BUILD: Duration = Duration::from_secs(600);
const SOON: Duration = Duration::from_secs(30);

fn dev(app: &Path, run_dir: &Path, extra: &[&str]) -> Running {
    let mut cmd = wdeploy();
    cmd.arg("dev")
        .arg(app)
        .args(["--port", "0"])
        .args(extra)
        .env("WDEPLOY_RUN_DIR", run_dir);
    Running::spawn(cmd)
}

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
fn trapping_guest_answers_500_and_the_dyno_keeps_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let mut dev = dev(&sample("faults"), tmp.path(), &[]);
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
fn each_dyno_gets_an_empty_private_filesystem_removed_at_stop() {
    let tmp = tempfile::tempdir().unwrap();
    let mut dev = dev(&sample("faults"), tmp.path(), &[]);
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
    let app = copy_sample("faults");
    std::fs::write(
        app.path().join("wdeploy.toml"),
        "[web]\nisolation = \"request\"\n",
    )
    .unwrap();
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
    let tmp = tempfile::tempdir().unwrap();
    let mut dev = dev(
        &sample("faults"),
        tmp.path(),
        &[
            "--env-file",
            write_env(tmp.path(), "WEB_CONCURRENCY=1").to_str().unwrap(),
        ],
    );
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
fn warm_instances_are_recycled_after_max_requests() {
    let app = copy_sample("faults");
    std::fs::write(app.path().join("wdeploy.toml"), "[web]\nmax_requests = 2\n").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut dev = dev(
        app.path(),
        tmp.path(),
        &[
            "--env-file",
            write_env(tmp.path(), "WEB_CONCURRENCY=1").to_str().unwrap(),
        ],
    );
    let port = dev.port();
    let counts: Vec<_> = (0..5)
        .map(|_| get(&format!("http://127.0.0.1:{port}/count")).1)
        .collect();
    assert_eq!(counts, ["1\n", "2\n", "1\n", "2\n", "1\n"]);
    assert!(dev.interrupt(SOON).success());
}

fn write_env(dir: &Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("test.env");
    std::fs::write(&path, format!("{text}\n")).unwrap();
    path
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
    let app = copy_sample("hello");
    std::fs::write(app.path().join("Procfile"), procfile).unwrap();
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
fn a_directory_no_buildpack_detects_is_refused() {
    let app = tempfile::tempdir().unwrap();
    std::fs::write(app.path().join("README"), "not an app").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut dev = dev(app.path(), tmp.path(), &[]);
    assert!(!dev.wait(SOON).success());
    let out = dev.output();
    assert!(out.contains("no buildpack detected an app"), "{out}");
    // Each buildpack is listed, in detection order, with what it looks for.
    let rust = out.find("rust        looks for Cargo.toml").expect(&out);
    let wasm = out
        .find("wasm        looks for prebuilt components")
        .expect(&out);
    assert!(rust < wasm, "{out}");
    assert!(out.contains("--buildpack NAME|PATH"), "{out}");
}

#[test]
fn prebuilt_components_run_with_the_wasm_buildpack() {
    let app = tempfile::tempdir().unwrap();
    prebuilt_app(app.path());
    let tmp = tempfile::tempdir().unwrap();
    let mut dev = dev(app.path(), tmp.path(), &[]);
    let port = dev.port();
    assert!(dev.output().contains("-----> wasm app detected"));
    let (status, _) = get(&format!("http://127.0.0.1:{port}/greet"));
    assert_eq!(status, 200);
    dev.wait_for_text("app[worker.1]: tick", SOON);
    assert!(dev.interrupt(SOON).success());
}

#[test]
fn a_core_module_among_prebuilt_components_is_refused_by_name() {
    let app = tempfile::tempdir().unwrap();
    prebuilt_app(app.path());
    std::fs::write(app.path().join("old.wasm"), b"\0asm\x01\0\0\0").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut dev = dev(app.path(), tmp.path(), &[]);
    assert!(!dev.wait(BUILD).success());
    let out = dev.output();
    assert!(
        out.contains("old.wasm is a core WebAssembly module, not a component"),
        "{out}"
    );
}

#[test]
fn buildpack_override_runs_a_third_party_buildpack_folder() {
    // A Cargo.toml would make the rust buildpack win detection: the override beats it.
    let app = tempfile::tempdir().unwrap();
    std::fs::write(app.path().join("Cargo.toml"), "not really rust").unwrap();
    std::fs::create_dir(app.path().join("dist")).unwrap();
    prebuilt_app(&app.path().join("dist"));
    std::fs::rename(
        app.path().join("dist/Procfile"),
        app.path().join("Procfile"),
    )
    .unwrap();
    let bp = tempfile::tempdir().unwrap();
    std::fs::create_dir(bp.path().join("bin")).unwrap();
    let script = |name: &str, text: &str| {
        use std::os::unix::fs::PermissionsExt;
        let path = bp.path().join("bin").join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    script("detect", "#!/bin/sh\nexit 1\n");
    script(
        "compile",
        "#!/bin/sh\nset -e\necho '-----> dist buildpack copying dist/'\ncp \"$1\"/dist/*.wasm \"$1\"/\n",
    );
    let tmp = tempfile::tempdir().unwrap();
    let mut dev = dev(
        app.path(),
        tmp.path(),
        &["--buildpack", bp.path().to_str().unwrap()],
    );
    let port = dev.port();
    let out = dev.output();
    assert!(out.contains("(--buildpack)"), "{out}");
    assert!(out.contains("-----> dist buildpack copying dist/"), "{out}");
    let (status, _) = get(&format!("http://127.0.0.1:{port}/greet"));
    assert_eq!(status, 200);
    assert!(dev.interrupt(SOON).success());

    // An unknown name is refused with the list of built-ins.
    let mut refused = self::dev(app.path(), tmp.path(), &["--buildpack", "cobol"]);
    assert!(!refused.wait(SOON).success());
    let out = refused.output();
    assert!(out.contains("unknown buildpack `cobol`"), "{out}");
    assert!(out.contains("rust"), "{out}");
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

#[test]
fn runaway_and_memory_hungry_guests_are_stopped_and_the_dyno_keeps_serving() {
    let app = copy_sample("faults");
    std::fs::write(
        app.path().join("wdeploy.toml"),
        "[web]\ntimeout = 2\n\n[limits]\nmemory_mb = 64\n",
    )
    .unwrap();
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
fn add_ons_work_in_dev_and_keep_their_data_between_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let env = write_env(tmp.path(), "JOB_LEASE_SECONDS=5\n");
    let args = [
        "--env-file",
        env.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
    ];
    let wait_done = |base: &str, id: &str, expected: &str| {
        let deadline = std::time::Instant::now() + SOON;
        loop {
            let (_, body) = get(&format!("{base}/jobs/{id}"));
            if body == expected {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "job {id} is still `{body}`"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };

    let mut first = dev(&sample("jobs"), &tmp.path().join("run1"), &args);
    let base = format!("http://127.0.0.1:{}", first.port());
    let (status, id) = post(&format!("{base}/jobs"), "hello from dev");
    assert_eq!(status, 202, "{id}");
    wait_done(&base, id.trim(), "done: HELLO FROM DEV\n");
    // The worker read its lease from the config vars through wasi:config.
    first.wait_for_text("worker: taking jobs from `jobs` with a 5s lease", SOON);
    assert!(first.interrupt(SOON).success(), "{}", first.output());

    // A new run finds the job and its result where the first left them.
    let mut second = dev(&sample("jobs"), &tmp.path().join("run2"), &args);
    let base = format!("http://127.0.0.1:{}", second.port());
    wait_done(&base, id.trim(), "done: HELLO FROM DEV\n");
    let (status, next) = post(&format!("{base}/jobs"), "again");
    assert_eq!(status, 202, "{next}");
    assert!(next.trim().parse::<u64>().unwrap() > id.trim().parse::<u64>().unwrap());
    wait_done(&base, next.trim(), "done: AGAIN\n");
    assert!(second.interrupt(SOON).success(), "{}", second.output());
}

#[test]
fn a_python_syntax_error_is_reported_as_python_reports_it() {
    let app = copy_sample("python-web");
    std::fs::write(app.path().join("worker.py"), "def broken(:\n    pass\n").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut dev = dev(app.path(), tmp.path(), &[]);
    assert!(!dev.wait(BUILD).success());
    let out = dev.output();
    assert!(out.contains("  File \"worker.py\", line 1"), "{out}");
    assert!(out.contains("SyntaxError: invalid syntax"), "{out}");
    assert!(
        out.contains("could not build worker.py: see the Python error above"),
        "{out}"
    );
    assert!(!out.contains("Caused by"), "tool noise:\n{out}");
}

#[test]
fn a_missing_python_import_shows_the_python_traceback_only() {
    let app = copy_sample("python-web");
    std::fs::write(app.path().join("worker.py"), "import nosuchthing\n").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut dev = dev(app.path(), tmp.path(), &[]);
    assert!(!dev.wait(BUILD).success());
    let out = dev.output();
    assert!(
        out.contains("ModuleNotFoundError: No module named 'nosuchthing'"),
        "{out}"
    );
    assert!(out.contains("could not build worker.py"), "{out}");
    assert!(!out.contains("Caused by"), "tool noise:\n{out}");
}

#[test]
fn an_unchanged_source_is_not_built_again_and_one_changed_file_rebuilds() {
    let app = copy_sample("hello");
    let tmp = tempfile::tempdir().unwrap();
    // Whether the buildpack ran is read from the output, never from timings.
    let run = |expect_cached: bool| {
        let mut dev = dev(app.path(), &tmp.path().join("run"), &[]);
        dev.port();
        assert!(dev.interrupt(SOON).success());
        let out = dev.output();
        assert_eq!(
            out.contains("-----> Build cached (no source change)"),
            expect_cached,
            "{out}"
        );
        assert_eq!(
            out.contains("-----> Building for wasm32-wasip2"),
            !expect_cached,
            "{out}"
        );
    };
    run(false);
    run(true);
    let web = app.path().join("src/web.rs");
    let text = std::fs::read_to_string(&web).unwrap();
    std::fs::write(&web, format!("{text}\n// edited\n")).unwrap();
    run(false);
    run(true);
}

#[test]
fn a_javascript_syntax_error_is_reported_as_node_reports_it() {
    let app = copy_sample("js-web");
    std::fs::write(
        app.path().join("worker.js"),
        "export const run = {\n  run( {\n};\n",
    )
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut dev = dev(app.path(), tmp.path(), &[]);
    assert!(!dev.wait(BUILD).success());
    let out = dev.output();
    assert!(out.contains("       worker.js:3"), "{out}");
    assert!(out.contains("SyntaxError"), "{out}");
    assert!(
        out.contains("JavaScript syntax error in worker.js"),
        "{out}"
    );
    assert!(!out.contains("    at "), "stack frames:\n{out}");
}
