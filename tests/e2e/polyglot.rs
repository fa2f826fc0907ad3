//! The Python and JavaScript samples and test apps, built by their real buildpacks (which
//! install componentize-py with pip and componentize-js with npm): deployed to a host and
//! run in `dev`, and their build errors. The test apps (`tests/e2e/apps/`) are written the
//! way apps for other WebAssembly hosts are, and must build unchanged. Every test here returns at once when `WDEPLOY_SKIP_POLYGLOT` is set (see
//! [`skip_polyglot`]).

use crate::fixture::*;
use std::process::Command;

/// Pushes a polyglot sample and checks what every sample does: the web greets with
/// GREETING, counts visits in the key-value add-on across a restart, and the worker's
/// lines reach the log stream.
fn polyglot_sample_serves_config_kv_and_worker_logs(
    sample_name: &str,
    buildpack: &str,
    language: &str,
    worker_line: &str,
) {
    let host = TestHost::start();
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
    let logs = poll_until(&format!("worker.1 to log `{worker_line}`"), SOON, || {
        let logs = host.ok(&["logs", "--dyno", "worker.1", "-a", app]);
        if logs.contains(&format!("app[worker.1]: {worker_line}")) {
            Ok(logs)
        } else {
            Err(logs)
        }
    });
    assert!(logs.contains(worker_line), "{logs}");
}

#[test]
fn the_python_sample_is_built_by_its_buildpack_and_serves() {
    if skip_polyglot() {
        return;
    }
    polyglot_sample_serves_config_kv_and_worker_logs(
        "python-web",
        "python",
        "Python",
        "python tick 1",
    );
}

#[test]
fn the_javascript_sample_is_built_by_its_buildpack_and_serves() {
    if skip_polyglot() {
        return;
    }
    // Two requests to one dyno in a row also prove the buildpack's request isolation: a
    // reused StarlingMonkey instance cannot answer a second fetch event.
    polyglot_sample_serves_config_kv_and_worker_logs(
        "js-web",
        "javascript",
        "JavaScript",
        "js tick 1",
    );
}

#[test]
fn a_python_syntax_error_is_reported_as_python_reports_it() {
    if skip_polyglot() {
        return;
    }
    let app = copy_sample("python-web");
    app.write("worker.py", "def broken(:\n    pass\n");
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
    if skip_polyglot() {
        return;
    }
    let app = copy_sample("python-web");
    app.write("worker.py", "import nosuchthing\n");
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
fn a_javascript_syntax_error_is_reported_as_node_reports_it() {
    if skip_polyglot() {
        return;
    }
    let app = copy_sample("js-web");
    app.write("worker.js", "export const run = {\n  run( {\n};\n");
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

/// `wdeploy dev` of the test app NAME (in place, so that a push of it reuses the build)
/// with its add-on data in `tmp`, so that counts start at 1.
fn dev_test_app(name: &str, tmp: &std::path::Path) -> Running {
    let data = tmp.join("data");
    dev(
        &test_app(name),
        &tmp.join("run"),
        &["--data", data.to_str().unwrap()],
    )
}

/// Waits for `line` in the logs of APP's dyno `worker.1` on `host`.
fn wait_for_worker_line(host: &TestHost, app: &str, line: &str) {
    poll_until(&format!("worker.1 to log `{line}`"), SOON, || {
        let logs = host.ok(&["logs", "--dyno", "worker.1", "-a", app]);
        if logs.contains(&format!("app[worker.1]: {line}")) {
            Ok(())
        } else {
            Err(logs)
        }
    });
}

#[test]
fn python_written_for_wasi_http_proxy_builds_unchanged_and_serves() {
    if skip_polyglot() {
        return;
    }
    // web.py imports wasi:http/types as `types` and answers through componentize-py's
    // `poll_loop` (Stream for the request body, Sink for the response's); worker.py
    // imports `types` and `poll_loop` too.
    let app = "python-compat";
    let answer =
        |echo: &str, hits: u64| (200, format!("echo={echo} hits={hits} dyno=web.1 disk ok\n"));

    let tmp = tempfile::tempdir().unwrap();
    let mut dev = dev_test_app(app, tmp.path());
    let url = format!("http://127.0.0.1:{}/echo", dev.port());
    assert_eq!(post(&url, "ping"), answer("ping", 1));
    assert_eq!(post(&url, "pong"), answer("pong", 2));
    dev.wait_for_text(
        "app[worker.1]: python-compat worker ready to GET /status",
        SOON,
    );
    assert!(dev.interrupt(SOON).success());

    let host = TestHost::start();
    host.create_and_push(app, &test_app(app));
    assert_eq!(host.post(app, "/echo", "ping"), answer("ping", 1));
    assert_eq!(host.ok(&["kv:get", "hits", "-a", app]), "1\n");
    host.ok(&["ps:scale", "worker=1", "-a", app]);
    wait_for_worker_line(&host, app, "python-compat worker ready to GET /status");
}

#[test]
fn javascript_importing_other_wasi_versions_and_bundled_with_esbuild_builds_and_serves() {
    if skip_polyglot() {
        return;
    }
    // web.js is shaped like an esbuild bundle importing wasi:cli/environment@0.2.4 and
    // wasi:http/types@0.2.12; worker.js imports @0.2.4 and a local module importing
    // @0.2.12 and @0.2.4. StarlingMonkey speaks 0.2.10.
    let app = "js-compat";
    let answer = |hits: u64| (200, format!("hits={hits} dyno=web.1 fields ok\n"));

    let tmp = tempfile::tempdir().unwrap();
    let mut dev = dev_test_app(app, tmp.path());
    let url = format!("http://127.0.0.1:{}/", dev.port());
    assert_eq!(get(&url), answer(1));
    assert_eq!(get(&url), answer(2));
    dev.wait_for_text("app[worker.1]: js-compat tick 1", SOON);
    assert!(dev.interrupt(SOON).success());

    let host = TestHost::start();
    host.create_and_push(app, &test_app(app));
    assert_eq!(host.get(app, "/"), answer(1));
    assert_eq!(host.ok(&["kv:get", "hits", "-a", app]), "1\n");
    host.ok(&["ps:scale", "worker=1", "-a", app]);
    wait_for_worker_line(&host, app, "js-compat tick 1");
}

#[test]
fn a_javascript_import_the_platform_lacks_is_named_with_what_to_change() {
    if skip_polyglot() {
        return;
    }
    let app = copy_test_app("js-compat").with_procfile("web: web\n");
    app.write(
        "web.js",
        "import { bar } from 'wasi:foo/bar@0.9.0';\n\
         addEventListener('fetch', (e) => e.respondWith(new Response(bar())));\n",
    );
    let tmp = tempfile::tempdir().unwrap();
    let mut dev = dev(app.path(), tmp.path(), &[]);
    assert!(!dev.wait(BUILD).success());
    let out = dev.output();
    assert!(
        out.contains(
            "web.js imports wasi:foo/bar@0.9.0, which the platform does not provide to a JavaScript `web` process"
        ),
        "{out}"
    );
    assert!(out.contains("at any version 0.2.x"), "{out}");
    assert!(out.contains("Change the import to one of these."), "{out}");
    assert!(!out.contains("ReferenceError"), "tool noise:\n{out}");
    assert!(!out.contains("wizer"), "tool noise:\n{out}");
}

#[test]
fn javascript_importing_an_npm_package_is_told_to_bundle_it() {
    if skip_polyglot() {
        return;
    }
    // Refused before componentize-js runs: it would fail in wizer with a ReferenceError.
    let app = copy_test_app("js-compat").with_procfile("web: web\n");
    app.write("web.js", "import pad from 'left-pad';\nexport { pad };\n");
    let tmp = tempfile::tempdir().unwrap();
    let mut dev = dev(app.path(), tmp.path(), &[]);
    assert!(!dev.wait(BUILD).success());
    let out = dev.output();
    assert!(
        out.contains("web.js imports left-pad, an npm package: componentize-js does not bundle them, so bundle web.js first"),
        "{out}"
    );
    assert!(!out.contains("Building web.js"), "{out}");
}

/// `wdeploy dev APP` with a build cache of its own, empty: a buildpack that installed
/// its tools before failing would print "Installing".
fn dev_on_a_fresh_cache(app: &std::path::Path, tmp: &std::path::Path) -> Running {
    let mut cmd: Command = wdeploy();
    cmd.arg("dev")
        .arg(app)
        .args(["--port", "0"])
        .env("WDEPLOY_CACHE_DIR", tmp.join("cache"))
        .env("WDEPLOY_RUN_DIR", tmp.join("run"));
    Running::spawn_shared(cmd)
}

/// A Procfile mistake in a copy of the test app NAME, whose modules end in `.EXT`, is
/// reported before its buildpack installs anything, in `dev` and in a push.
fn procfile_mistakes_are_reported_before_installing(test_app_name: &str, ext: &str) {
    let no_procfile = copy_test_app(test_app_name);
    no_procfile.remove("Procfile");
    no_procfile.remove(&format!("web.{ext}"));
    let missing_module = copy_test_app(test_app_name).with_procfile("web: web\nworker: nosuch\n");
    let cases = [
        (
            &no_procfile,
            format!(
                "no Procfile and no web.{ext}: add a Procfile (`web: web` builds web.{ext} into web.wasm)"
            ),
        ),
        (
            &missing_module,
            format!("Procfile: process type `worker` runs nosuch, but there is no nosuch.{ext}"),
        ),
    ];
    let host = TestHost::start();
    host.ok(&["apps:create", test_app_name, "--no-link"]);
    for (app, message) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let mut dev = dev_on_a_fresh_cache(app.path(), tmp.path());
        assert!(!dev.wait(BUILD).success());
        let out = dev.output();
        assert!(out.contains(&message), "{out}");
        assert!(!out.contains("Installing"), "installed tools first:\n{out}");

        let dir = app.path().to_str().unwrap();
        let pushed = host.cli(&["push", "-a", test_app_name, "--dir", dir]);
        assert!(!pushed.status.success());
        // The build runs in the CLI, which prints the buildpack's lines on stdout.
        let out = String::from_utf8_lossy(&pushed.stdout);
        assert!(out.contains(&message), "{out}");
    }
}

#[test]
fn a_python_procfile_mistake_is_reported_before_installing_componentize_py() {
    if skip_polyglot() {
        return;
    }
    procfile_mistakes_are_reported_before_installing("python-compat", "py");
}

#[test]
fn a_javascript_procfile_mistake_is_reported_before_installing_componentize_js() {
    if skip_polyglot() {
        return;
    }
    procfile_mistakes_are_reported_before_installing("js-compat", "js");
}
