//! Deadlines: start functions, release commands and one-offs that never end, a host
//! restarting beside an app that cannot boot.

use crate::fixture::*;
use std::time::{Duration, Instant};

/// How long a push may take when a deadline of a few seconds stops it: the build of a
/// prebuilt app, an upload, a compile and the deadline itself, on a loaded machine.
/// Before deadlines such a push hung for ever.
const STOPPED_BY_A_DEADLINE: Duration = Duration::from_secs(90);

/// A release's status in `releases`: `failed`, `(current)`…, from its line.
fn release_line(host: &TestHost, app: &str, version: u32) -> String {
    let releases = host.ok(&["releases", "-a", app]);
    releases
        .lines()
        .find(|l| l.starts_with(&format!("v{version} ")))
        .unwrap_or_else(|| panic!("no v{version}:\n{releases}"))
        .to_string()
}

/// Runs the CLI, which must end within `limit` (else the test fails, instead of hanging
/// as these commands did before deadlines): whether it succeeded, and its output.
fn within(host: &TestHost, limit: Duration, args: &[&str]) -> (bool, String) {
    let mut running = Running::spawn(host.command(args));
    let success = running.wait(limit).success();
    (success, running.output())
}

/// [`within`] for a command that must succeed; returns its output.
fn ok_within(host: &TestHost, limit: Duration, args: &[&str]) -> String {
    let (success, output) = within(host, limit, args);
    assert!(success, "wdeploy {args:?} failed:\n{output}");
    output
}

/// [`within`] for a command that must fail; returns its output.
fn fails_within(host: &TestHost, limit: Duration, args: &[&str]) -> String {
    let (success, output) = within(host, limit, args);
    assert!(!success, "wdeploy {args:?} succeeded:\n{output}");
    output
}

/// A component whose start function never returns used to hang `push` at "Starting v1",
/// then every change of its app waited behind it for ever while it burned a core.
#[test]
fn a_looping_start_function_fails_the_push_and_the_app_stays_manageable() {
    let host = TestHost::start_with(&["--boot-timeout", "3"]);
    host.ok(&["apps:create", "stuck", "--no-link"]);
    host.ok(&["config:set", "BOOT_LOOP_AFTER=0", "-a", "stuck"]);
    let app = stuck_app();
    let dir = app.path().to_str().unwrap();

    let err = fails_within(
        &host,
        STOPPED_BY_A_DEADLINE,
        &["push", "-a", "stuck", "--dir", dir],
    );
    assert!(err.contains("release v2 failed"), "{err}");
    assert!(err.contains("could not start web.1"), "{err}");
    assert!(err.contains("Error R10 (Boot timeout)"), "{err}");
    assert!(err.contains("within 3s of launch"), "{err}");
    assert!(release_line(&host, "stuck", 2).contains("(failed)"));
    let logs = host.ok(&["logs", "-n", "200", "-a", "stuck"]);
    assert!(
        logs.contains("[web.1]: Error R10 (Boot timeout) -> web.1 did not start within 3s"),
        "{logs}"
    );
    assert_eq!(host.get("stuck", "/").0, 503);

    // While the next push hangs at boot, the app can still be changed: the change waits
    // at most for the boot deadline. Without the variable, the start function returns.
    let mut push = Running::spawn(host.command(&["push", "-a", "stuck", "--dir", dir]));
    push.wait_for_text("-----> Starting v3", STOPPED_BY_A_DEADLINE);
    ok_within(
        &host,
        STOPPED_BY_A_DEADLINE,
        &["config:unset", "BOOT_LOOP_AFTER", "-a", "stuck"],
    );
    assert!(!push.wait(SOON).success(), "{}", push.output());
    assert!(
        push.output().contains("Error R10 (Boot timeout)"),
        "{}",
        push.output()
    );
    host.push("stuck", app.path());
    assert_eq!(host.get("stuck", "/"), (200, "ok".into()));
    assert!(release_line(&host, "stuck", 5).contains("(current)"));

    ok_within(&host, SOON, &["ps:scale", "web=2", "-a", "stuck"]);
    ok_within(
        &host,
        SOON,
        &["apps:destroy", "stuck", "--confirm", "stuck"],
    );
    assert!(!host.ok(&["apps"]).contains("stuck"));
}

/// A release command that never exits used to hold its app's releases for ever.
#[test]
fn a_release_command_that_never_exits_fails_at_the_release_timeout() {
    let host = TestHost::start_with(&["--release-timeout", "3"]);
    host.create_and_push("rel", faults_app().with_procfile("web: web\n").path());
    let hung = faults_app().with_procfile("web: web\nrelease: spinner\n");

    let err = fails_within(
        &host,
        STOPPED_BY_A_DEADLINE,
        &["push", "-a", "rel", "--dir", hung.path().to_str().unwrap()],
    );
    assert!(
        err.contains("release v2 failed, the previous release keeps serving"),
        "{err}"
    );
    assert!(
        err.contains("the release command ran past the release timeout of 3s and was stopped"),
        "{err}"
    );
    assert!(release_line(&host, "rel", 2).contains("(failed)"));
    assert!(release_line(&host, "rel", 1).contains("(current)"));
    assert_eq!(host.get("rel", "/"), (200, "ok\n".into()));
    let logs = host.ok(&["logs", "-n", "200", "-a", "rel"]);
    assert!(
        logs.contains("ran past the release timeout of 3s"),
        "{logs}"
    );
    // The stopped release dyno leaves `ps` (at the guest's next yield).
    poll_until("release.N to leave ps", SOON, || {
        let ps = host.ok(&["ps", "-a", "rel"]);
        if ps.contains("release.") {
            Err(ps)
        } else {
            Ok(())
        }
    });
}

/// `releases:cancel` stops a hung release phase or boot at once, and a destroy cancels
/// the release in progress instead of waiting for it (default deadlines: an hour, 60 s).
#[test]
fn a_hung_release_is_cancelled_and_a_destroy_does_not_wait_for_it() {
    let host = TestHost::start();
    host.create_and_push("hung", faults_app().with_procfile("web: web\n").path());
    let hung = faults_app().with_procfile("web: web\nrelease: spinner\n");
    let hung_dir = hung.path().to_str().unwrap();

    let mut push = Running::spawn(host.command(&["push", "-a", "hung", "--dir", hung_dir]));
    push.wait_for_text("Running release command", STOPPED_BY_A_DEADLINE);
    let cancelled = host.ok(&["releases:cancel", "-a", "hung"]);
    assert!(cancelled.contains("Cancelled v2"), "{cancelled}");
    assert!(cancelled.contains("failed"), "{cancelled}");
    assert!(!push.wait(SOON).success());
    assert!(push.output().contains("cancelled"), "{}", push.output());
    assert_eq!(host.get("hung", "/"), (200, "ok\n".into()));
    assert!(release_line(&host, "hung", 1).contains("(current)"));
    let err = host.fails(&["releases:cancel", "-a", "hung"]);
    assert!(err.contains("hung has no release in progress"), "{err}");

    // A boot that would take the whole boot deadline (60 s here) is cancelled too.
    host.ok(&["config:set", "BOOT_LOOP_AFTER=0", "-a", "hung"]);
    let stuck = stuck_app();
    let mut push = Running::spawn(host.command(&[
        "push",
        "-a",
        "hung",
        "--dir",
        stuck.path().to_str().unwrap(),
    ]));
    push.wait_for_text("-----> Starting v4", STOPPED_BY_A_DEADLINE);
    ok_within(
        &host,
        Duration::from_secs(30),
        &["releases:cancel", "-a", "hung"],
    );
    assert!(!push.wait(SOON).success());
    assert!(release_line(&host, "hung", 4).contains("(failed)"));
    assert_eq!(host.get("hung", "/"), (200, "ok\n".into()));

    // A destroy in the middle of a hung release phase cancels it and completes.
    let mut push = Running::spawn(host.command(&["push", "-a", "hung", "--dir", hung_dir]));
    push.wait_for_text("Running release command", STOPPED_BY_A_DEADLINE);
    ok_within(
        &host,
        Duration::from_secs(30),
        &["apps:destroy", "hung", "--confirm", "hung"],
    );
    assert!(!push.wait(SOON).success());
    assert!(!host.ok(&["apps"]).contains("hung"));
    assert_eq!(host.get("hung", "/").0, 404);
}

/// One-off dynos end: at their time limit, and with their app.
#[test]
fn one_off_dynos_stop_at_their_time_limit_and_with_their_app() {
    let host = TestHost::start_with(&["--one-off-timeout", "600"]);
    host.create_and_push(
        "oneoff",
        faults_app()
            .with_procfile("web: web\nspinner: spinner\n")
            .path(),
    );

    let text = fails_within(
        &host,
        SOON,
        &["run", "--timeout", "2", "spinner", "-a", "oneoff"],
    );
    assert!(text.contains("ran past its time limit of 2s"), "{text}");
    poll_until("run.N to leave ps", SOON, || {
        let ps = host.ok(&["ps", "-a", "oneoff"]);
        if ps.contains("run.") { Err(ps) } else { Ok(()) }
    });

    // A one-off is attached to its `wdeploy run`, as on Heroku: the client going away
    // stops the dyno, silent as it is (it would otherwise spin for 600 s unseen).
    let mut run = Running::spawn(host.command(&["run", "spinner", "-a", "oneoff"]));
    run.wait_for_text("Running `spinner` as run.", SOON);
    poll_until("the one-off in ps", SOON, || {
        let ps = host.ok(&["ps", "-a", "oneoff"]);
        ps.contains("run.").then_some(())
    });
    let ps = host.ok(&["ps", "-a", "oneoff"]);
    let name = ps
        .split_whitespace()
        .find_map(|w| {
            w.strip_prefix("run.")
                .map(|n| format!("run.{}", n.trim_end_matches(':')))
        })
        .unwrap_or_else(|| panic!("no one-off in {ps}"));
    // Listed apart from the formation, with its own command, as Heroku lists them.
    assert!(ps.starts_with("=== run: one-off processes (1)\n"), "{ps}");
    assert!(
        ps.contains(": spinner.wasm\n=== web: `web.wasm` (1)\n"),
        "{ps}"
    );
    let err = host.fails(&["ps:restart", &name, "-a", "oneoff"]);
    assert!(
        err.contains("is a one-off dyno, which is not restarted: `wdeploy ps:stop"),
        "{err}"
    );
    // Killed outright: SIGINT would be ignored where the tests run as a background job.
    run.kill_9();
    poll_until("the interrupted one-off to leave ps", SOON, || {
        let ps = host.ok(&["ps", "-a", "oneoff"]);
        if ps.contains("run.") { Err(ps) } else { Ok(()) }
    });
    let logs = host.ok(&["logs", "--source", "wdeploy", "-a", "oneoff"]);
    assert!(
        logs.contains("]: Stopping process: its `wdeploy run` went away"),
        "{logs}"
    );

    // Detached (Heroku's `run:detached`), it runs on without its client, until `ps:stop`.
    let started = host.ok(&["run:detached", "spinner", "-a", "oneoff"]);
    assert!(started.contains(" (detached): "), "{started}");
    let detached = started
        .split_whitespace()
        .find(|w| w.starts_with("run."))
        .unwrap_or_else(|| panic!("{started}"))
        .to_string();
    let ps = host.ok(&["ps", "-a", "oneoff"]);
    assert!(ps.contains(&format!("{detached}: up")), "{ps}");
    let err = host.fails(&["ps:stop", "web.1", "-a", "oneoff"]);
    assert!(err.contains("web.1 is one of the formation"), "{err}");
    let err = host.fails(&["ps:stop", "run.9999", "-a", "oneoff"]);
    assert!(err.contains("no dyno run.9999 is running"), "{err}");
    host.ok(&["ps:stop", &detached, "-a", "oneoff"]);
    poll_until("the stopped one-off to leave ps", SOON, || {
        let ps = host.ok(&["ps", "-a", "oneoff"]);
        if ps.contains("run.") { Err(ps) } else { Ok(()) }
    });
    let logs = host.ok(&["logs", "--source", "wdeploy", "-a", "oneoff"]);
    assert!(
        logs.contains(&format!("[{detached}]: Stopping process: stopped by ")),
        "{logs}"
    );

    // A one-off of a destroyed app stops with it (it would otherwise spin for 600 s).
    let mut run = Running::spawn(host.command(&["run", "spinner", "-a", "oneoff"]));
    run.wait_for_text("Running `spinner` as run.", SOON);
    poll_until("the one-off in ps", SOON, || {
        let ps = host.ok(&["ps", "-a", "oneoff"]);
        ps.contains("run.").then_some(())
    });
    host.ok(&["apps:destroy", "oneoff", "--confirm", "oneoff"]);
    assert!(!run.wait(SOON).success(), "{}", run.output());
}

/// A host used to restore every app before it listened, one after another: one app that
/// could not boot kept the whole host offline.
#[test]
fn a_restarting_host_answers_while_an_app_cannot_boot() {
    let mut host = TestHost::start_with(&["--boot-timeout", "15"]);
    host.create_and_push("calm", faults_app().with_procfile("web: web\n").path());
    host.create_and_push("late", stuck_app().path());
    // From a moment after this release went live, the app's start function loops: it
    // boots now and will hang at the next boot, after the restart.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let after = now + 10;
    host.ok(&[
        "config:set",
        &format!("BOOT_LOOP_AFTER={after}"),
        "-a",
        "late",
    ]);
    assert_eq!(host.get("late", "/"), (200, "ok".into()));
    poll_until("the clock to pass BOOT_LOOP_AFTER", SOON, || {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        (now > after).then_some(())
    });

    host.restart();
    let started = Instant::now();
    // The API and the other app answer while `late` is stuck at boot (15 s).
    assert!(host.ok(&["apps"]).contains("late"));
    assert_eq!(host.wait_restored("calm", "/"), (200, "ok\n".into()));
    let (status, _) = host.get("late", "/");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the API and calm took {:?}",
        started.elapsed()
    );
    assert_eq!(status, 503, "late answered before its boot deadline");
    let router = host.ok(&["logs", "--source", "router", "-a", "late"]);
    assert!(router.contains("code=H14"), "{router}");

    // It fails at the boot deadline, says why, and stays manageable.
    poll_until("late's boot to time out", SOON, || {
        let logs = host.ok(&["logs", "-n", "200", "-a", "late"]);
        logs.contains("Could not restore v2").then_some(())
    });
    let logs = host.ok(&["logs", "-n", "200", "-a", "late"]);
    assert!(logs.contains("Error R10 (Boot timeout)"), "{logs}");
    host.ok(&["config:unset", "BOOT_LOOP_AFTER", "-a", "late"]);
    assert_eq!(host.get("late", "/"), (200, "ok".into()));
}
