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
