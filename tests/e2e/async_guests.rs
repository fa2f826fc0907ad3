//! WASI 0.3 (component-model async) web components, as current toolchains build them
//! (Spin 4's Rust template, wit-bindgen's async exports): served through the same router,
//! limits, logs and add-ons as WASI 0.2 ones, beside them; and a component asking for a
//! WASI version this host does not serve is refused at push, by version and file name.

use crate::fixture::*;

/// The WASI 0.3 guest in `dev`: a streamed body, instance reuse, the request body, an
/// async wait, an add-on, a trap and a runaway loop, each as for a WASI 0.2 guest.
#[test]
fn an_async_web_component_serves_in_dev_like_any_web_component() {
    let app = async_web_app().with_settings("[web]\ntimeout = 2\n");
    let tmp = tempfile::tempdir().unwrap();
    let env = write_env(tmp.path(), "WEB_CONCURRENCY=1");
    let mut dev = dev(
        app.path(),
        tmp.path(),
        &["--env-file", env.to_str().unwrap()],
    );
    let base = format!("http://127.0.0.1:{}", dev.port());

    assert_eq!(
        get(&format!("{base}/")),
        (200, "Hello from WASI 0.3\n".into())
    );
    dev.wait_for_text("app[web.1]: async-web: /", SOON);
    let line = dev.wait_for_text("wdeploy[router]: at=info method=GET path=\"/\"", SOON);
    assert!(line.contains("status=200"), "{line}");
    // One warm instance serves one request after the other.
    let counts: Vec<_> = (0..3).map(|_| get(&format!("{base}/count")).1).collect();
    assert_eq!(counts, ["1\n", "2\n", "3\n"]);
    assert_eq!(get(&format!("{base}/visits")), (200, "visit 1\n".into()));
    assert_eq!(get(&format!("{base}/visits")), (200, "visit 2\n".into()));
    let body = "x".repeat(100_000);
    assert_eq!(post(&format!("{base}/echo"), &body), (200, body.clone()));
    assert_eq!(
        get(&format!("{base}/sleep?ms=50")),
        (200, "slept 50ms\n".into())
    );

    // A trap discards the instance; its replacement starts from fresh memory.
    assert_eq!(get(&format!("{base}/trap")).0, 500);
    dev.wait_for_text("code=H13", SOON);
    dev.wait_for_text("wdeploy[web.1]: Instance crashed: wasm trap", SOON);
    assert_eq!(get(&format!("{base}/count")), (200, "1\n".into()));

    // A runaway loop is stopped at the request deadline.
    assert_eq!(get(&format!("{base}/loop")).0, 503);
    dev.wait_for_text("code=H12", SOON);
    dev.wait_for_text("Instance crashed: deadline exceeded", SOON);
    assert_eq!(
        get(&format!("{base}/")),
        (200, "Hello from WASI 0.3\n".into())
    );

    // A task left waiting after the response holds the instance until the request's
    // deadline, no longer: then the instance is replaced.
    assert_eq!(get(&format!("{base}/linger")), (200, "lingering\n".into()));
    poll_until("the lingering instance to be stopped", SOON, || {
        let output = dev.output();
        let stopped = output
            .matches("wdeploy[web.1]: Instance crashed: deadline exceeded; replacing it")
            .count();
        if stopped == 2 { Ok(()) } else { Err(output) }
    });
    assert_eq!(get(&format!("{base}/count")), (200, "1\n".into()));

    // An error code instead of a response is the guest's answer, not a crash.
    assert_eq!(get(&format!("{base}/forget")).0, 503);
    dev.wait_for_text("wdeploy[web.1]: Request", SOON);
    // The instance is kept: its count goes on.
    assert_eq!(get(&format!("{base}/count")), (200, "2\n".into()));
    assert!(dev.interrupt(SOON).success());
}

/// On a host, a WASI 0.3 app and a WASI 0.2 app side by side, through one router.
#[test]
fn async_and_plain_web_components_run_side_by_side_on_a_host() {
    let host = TestHost::start();
    host.create_and_push("hello", &sample("hello"));
    let pushed = host.create_and_push("async-web", async_web_app().path());
    assert!(pushed.contains("Released v"), "{pushed}");
    for n in 1..=3 {
        assert_eq!(
            host.get("async-web", "/visits"),
            (200, format!("visit {n}\n"))
        );
        assert_eq!(host.get("hello", "/"), (200, "Hello from wdeploy\n".into()));
    }
    assert_eq!(host.ok(&["kv:get", "visits", "-a", "async-web"]), "3\n");
    host.ok(&["ps:scale", "web=2", "-a", "async-web"]);
    let ps = host.ok(&["ps", "-a", "async-web"]);
    assert!(ps.contains("web.1") && ps.contains("web.2"), "{ps}");
    assert_eq!(
        host.get("async-web", "/"),
        (200, "Hello from WASI 0.3\n".into())
    );
    let logs = host.ok(&["logs", "-n", "50", "-a", "async-web"]);
    assert!(logs.contains("app[web.1]: async-web: /visits"), "{logs}");
}

/// A component built for a WASI version this host does not serve is refused before any
/// dyno starts, naming the version and the component's own file name; so is a file that
/// is no component at all, by its name rather than its digest.
#[test]
fn a_component_needing_an_unserved_wasi_version_is_refused_by_name() {
    let host = TestHost::start();
    let app = async_web_app();
    // The same component importing WASI 0.9.0 (a same-length edit of every version).
    let path = app.path().join("async_web.wasm");
    let bytes = std::fs::read(&path).unwrap();
    let edited = replace_all(&bytes, b"@0.3.0", b"@0.9.0");
    assert_ne!(edited, bytes);
    std::fs::write(&path, edited).unwrap();
    host.ok(&["apps:create", "future", "--no-link"]);
    let refused = host.fails(&[
        "push",
        "-a",
        "future",
        "--dir",
        app.path().to_str().unwrap(),
    ]);
    assert!(
        refused.contains("component async_web.wasm imports wasi:") && refused.contains("@0.9.0"),
        "{refused}"
    );
    assert!(
        refused.contains("this host serves WASI 0.2.x and WASI 0.3.0"),
        "{refused}"
    );

    // Garbage after a component header: the error names web.wasm, not a blob digest.
    let junk = AppDir::new("junk");
    let mut bytes = vec![0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];
    bytes.extend_from_slice(&[0xff; 64]);
    std::fs::write(junk.path().join("web.wasm"), &bytes).unwrap();
    junk.write("Procfile", "web: web\n");
    host.ok(&["apps:create", "junk", "--no-link"]);
    let refused = host.fails(&["push", "-a", "junk", "--dir", junk.path().to_str().unwrap()]);
    assert!(refused.contains("compiling web.wasm"), "{refused}");
    assert!(!refused.contains("sha256"), "{refused}");
}

fn replace_all(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut i = 0;
    while i < haystack.len() {
        if haystack[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    out
}
