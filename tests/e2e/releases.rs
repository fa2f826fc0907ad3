//! Releases: the release phase (its failure keeps the old release serving, its output
//! kept for `releases:output`, `releases:retry` running it again), `promote` to another
//! app, and the components a release refuses before anything of them runs.

use crate::fixture::*;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[test]
fn a_failing_release_phase_stops_the_deploy_and_the_old_release_keeps_serving() {
    let host = TestHost::start();
    host.create_and_push("faults", faults_app().path());
    assert_eq!(host.get("faults", "/"), (200, "ok\n".into()));

    let app = faults_app().with_procfile("web: web\nrelease: crasher\n");
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
    // Later, anyone with access reads what v2's push showed, and why it failed.
    let info = host.ok(&["releases:info", "v2", "-a", "faults"]);
    assert!(
        info.contains("Why:      wdeploy releases:output v2 -a faults"),
        "{info}"
    );
    let output = host.ok(&["releases:output", "-a", "faults"]);
    for line in [
        "-----> Running release command `crasher.wasm` as release.",
        "       crasher: giving up\n",
        "error: release v2 failed: the release command failed with exit status 1\n",
    ] {
        assert!(output.contains(line), "{line} not in:\n{output}");
    }
    let output = host.ok(&["releases:output", "v1", "-a", "faults"]);
    assert!(output.contains("-----> Starting v1"), "{output}");
    assert!(!output.contains("error:"), "{output}");
    let err = host.fails(&["releases:output", "v9", "-a", "faults"]);
    assert!(err.contains("release v9 of faults not found"), "{err}");
    // A release nobody watched (a config change) keeps its output too; one that went
    // live nowhere (config before the first push) has none, and says so.
    host.ok(&["config:set", "A=1", "-a", "faults"]);
    let output = host.ok(&["releases:output", "v3", "-a", "faults"]);
    assert!(output.contains("-----> Starting v3"), "{output}");
    host.ok(&["apps:create", "--no-link", "empty"]);
    host.ok(&["config:set", "A=1", "-a", "empty"]);
    let out = host.cli(&["releases:output", "-a", "empty"]);
    assert!(out.status.success() && out.stdout.is_empty(), "{out:?}");
    assert!(
        stderr(&out).contains("v1 of empty kept no output"),
        "{}",
        stderr(&out)
    );
    // `releases:retry` runs the newest release again, its release phase included.
    let retried = host.cli(&["releases:retry", "-a", "faults"]);
    assert_eq!(
        String::from_utf8_lossy(&retried.stdout),
        "Retry v3: now v4\n"
    );
    assert!(
        stderr(&retried).contains("-----> Starting v4"),
        "{}",
        stderr(&retried)
    );
    let err = host.fails(&["releases:retry", "-a", "empty"]);
    assert!(err.contains("v1 has no slug to run"), "{err}");
}

#[test]
fn a_failed_release_is_retried_once_what_its_release_phase_needs_is_ready() {
    let host = TestHost::start();
    host.create_and_push("later", faults_app().path());
    // The release command fails until a moment a few seconds away, then succeeds.
    let ready_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 20;
    host.ok(&[
        "config:set",
        &format!("CRASH_UNTIL={ready_at}"),
        "-a",
        "later",
    ]);
    let app = faults_app().with_procfile("web: web\nrelease: crasher\n");
    let out = host.cli(&["push", "-a", "later", "--dir", app.path().to_str().unwrap()]);
    assert!(!out.status.success(), "{}", stderr(&out));
    let releases = host.ok(&["releases", "-a", "later"]);
    assert!(
        releases.contains("v3") && releases.contains("failed"),
        "{releases}"
    );

    poll_until(
        "the release command's moment",
        Duration::from_secs(40),
        || {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs();
            (now > ready_at).then_some(())
        },
    );
    let retried = host.cli(&["releases:retry", "-a", "later"]);
    assert!(retried.status.success(), "{}", stderr(&retried));
    assert_eq!(
        String::from_utf8_lossy(&retried.stdout),
        "Retry v3: now v4\n"
    );
    assert!(
        stderr(&retried).contains("crasher: ready"),
        "{}",
        stderr(&retried)
    );
    let releases = host.ok(&["releases", "-a", "later"]);
    let newest = releases.lines().nth(1).unwrap_or_default();
    assert!(
        newest.starts_with("v4") && newest.contains("Retry v3") && newest.contains("(current)"),
        "{releases}"
    );
    // The release phase ran: its Procfile is v3's, and the app serves.
    let info = host.ok(&["releases:info", "v4", "-a", "later"]);
    assert!(info.contains("release: crasher"), "{info}");
    assert_eq!(host.get("later", "/"), (200, "ok\n".into()));
}

#[test]
fn a_component_of_the_wrong_world_is_refused_at_release_time() {
    let host = TestHost::start();
    host.ok(&["apps:create", "mixed-up", "--no-link"]);
    // `web` must be an HTTP handler; the worker component is a command.
    let app = copy_sample("hello").with_procfile("web: worker\n");
    let err = host.fails(&[
        "push",
        "-a",
        "mixed-up",
        "--dir",
        app.path().to_str().unwrap(),
    ]);
    // It says what the component exports and what a web process must export.
    assert!(
        err.contains("process type `web`: component worker.wasm exports wasi:cli/run@0.2."),
        "{err}"
    );
    assert!(
        err.contains(
            "a web process exports wasi:http/incoming-handler@0.2.x (WASI 0.2) or wasi:http/handler@0.3.0"
        ),
        "{err}"
    );
    let releases = host.ok(&["releases", "-a", "mixed-up"]);
    assert!(releases.contains("(failed)"), "{releases}");
}

#[test]
fn a_component_importing_an_unknown_interface_is_refused_at_push() {
    let host = TestHost::with_app("hello");
    let stranger = stranger_app();
    let err = host.fails(&[
        "push",
        "-a",
        "hello",
        "--dir",
        stranger.path().to_str().unwrap(),
    ]);
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

/// `promote --to`: the build one app runs, released on another with that app's own config
/// vars, nothing built or uploaded; only a release that went live is promoted.
#[test]
fn promote_releases_one_apps_build_on_another_with_its_own_config() {
    let host = TestHost::start();
    host.create_and_push("staging", &sample("hello"));
    host.ok(&["config:set", "GREETING=staging", "-a", "staging"]);
    host.ok(&["apps:create", "production", "--no-link"]);
    host.ok(&["config:set", "GREETING=production", "-a", "production"]);

    let out = host.ok(&["promote", "--to", "production", "-a", "staging"]);
    assert!(
        out.contains("-----> Promoting staging v2 (slug sha256:"),
        "{out}"
    );
    assert!(out.contains("Running release command"), "{out}");
    assert!(out.contains("-----> Released v2 on production"), "{out}");
    assert_eq!(
        host.get("production", "/"),
        (200, "Hello from production\n".into())
    );
    let slug = |app: &str| {
        let info = host.ok(&["releases:info", "-a", app]);
        info.lines()
            .find(|l| l.starts_with("Slug:"))
            .unwrap_or_else(|| panic!("{info}"))
            .to_string()
    };
    assert_eq!(slug("staging"), slug("production"));
    let releases = host.ok(&["releases", "-n", "1", "-a", "production"]);
    assert!(releases.contains("Promote staging v2"), "{releases}");

    // An explicit version, and what cannot be promoted.
    host.ok(&["promote", "v1", "--to", "production", "-a", "staging"]);
    let releases = host.ok(&["releases", "-n", "1", "-a", "production"]);
    assert!(releases.contains("v3    Promote staging v1"), "{releases}");
    let err = host.fails(&["promote", "--to", "staging", "-a", "staging"]);
    assert!(err.contains("`--to` names another"), "{err}");
    let err = host.fails(&["promote", "v9", "--to", "production", "-a", "staging"]);
    assert!(err.contains("release v9 of staging not found"), "{err}");
    host.ok(&["apps:create", "empty", "--no-link"]);
    let err = host.fails(&["promote", "--to", "production", "-a", "empty"]);
    assert!(err.contains("empty has no release to promote"), "{err}");
    let err = host.fails(&["promote", "--to", "nowhere", "-a", "staging"]);
    assert!(err.contains("app nowhere not found"), "{err}");
    let failing = faults_app().with_procfile("web: web\nrelease: crasher\n");
    let dir = failing.path().to_str().unwrap();
    assert!(
        !host
            .cli(&["push", "-a", "staging", "--dir", dir])
            .status
            .success()
    );
    let err = host.fails(&["promote", "v3", "--to", "production", "-a", "staging"]);
    assert!(
        err.contains("v3 of staging failed: only a release that went live is promoted"),
        "{err}"
    );
}
