//! Scale to zero: web dynos that had no request for `idle_after` release their instances
//! (`ps` shows `idle`), and the next request wakes one, with no failed request.

use crate::fixture::*;

/// Polls `ps` until it shows `dyno` in `state`.
fn wait_state(host: &TestHost, app: &str, dyno: &str, state: &str) -> String {
    let want = format!("{dyno}: {state}");
    poll_until(&format!("{app} {want}"), SOON, || {
        let ps = host.ok(&["ps", "-a", app]);
        if ps.contains(&want) { Ok(ps) } else { Err(ps) }
    })
}

#[test]
fn an_idle_app_sleeps_wakes_with_a_fresh_instance_and_comes_back_idle_after_a_restart() {
    let mut host = TestHost::start();
    let sleepy = faults_app().with_settings("[web]\nidle_after = \"1s\"\n");
    host.create_and_push("sleepy", sleepy.path());
    let counter = copy_sample("counter").with_settings("[web]\nidle_after = \"1s\"\n");
    host.create_and_push("counter", counter.path());

    // Warm: the same instance serves both requests.
    assert_eq!(host.get("sleepy", "/count"), (200, "1\n".into()));
    assert_eq!(host.get("sleepy", "/count"), (200, "2\n".into()));
    assert_eq!(host.get("counter", "/"), (200, "1\n".into()));

    wait_state(&host, "sleepy", "web.1", "idle");
    let logs = host.ok(&["logs", "-n", "100", "-a", "sleepy"]);
    assert!(
        logs.contains("wdeploy[web.1]: Idling: no request for 1s"),
        "{logs}"
    );
    assert!(
        logs.contains("wdeploy[web.1]: State changed from up to idle"),
        "{logs}"
    );

    // The next request wakes the dyno: a fresh instance (its memory starts over), and
    // the app's durable state as it was.
    assert_eq!(host.get("sleepy", "/count"), (200, "1\n".into()));
    wait_state(&host, "sleepy", "web.1", "up");
    let logs = host.ok(&["logs", "-n", "100", "-a", "sleepy"]);
    assert!(
        logs.contains("wdeploy[web.1]: State changed from idle to up"),
        "{logs}"
    );
    wait_state(&host, "counter", "web.1", "idle");
    assert_eq!(host.get("counter", "/"), (200, "2\n".into()));

    // After a restart, the apps come back idle (no instance made for them) and wake on
    // their first request.
    host.kill_9();
    host.restart();
    wait_state(&host, "sleepy", "web.1", "idle");
    let logs = host.ok(&["logs", "-n", "100", "-a", "sleepy"]);
    assert!(
        logs.contains("State changed from starting to idle"),
        "{logs}"
    );
    assert_eq!(host.get("sleepy", "/count"), (200, "1\n".into()));
    assert_eq!(host.get("counter", "/"), (200, "3\n".into()));
}

#[test]
fn a_hosts_idle_default_applies_unless_the_app_says_never() {
    let host = TestHost::start_with(&["--idle-after", "1s"]);
    let app = AppDir::new("hello");
    prebuilt_app(app.path());
    host.create_and_push("default", app.path());
    let awake = AppDir::new("awake");
    prebuilt_app(awake.path());
    let awake = awake.with_settings("[web]\nidle_after = \"never\"\n");
    host.create_and_push("awake", awake.path());
    assert_eq!(host.get("default", "/").0, 200);
    assert_eq!(host.get("awake", "/").0, 200);

    wait_state(&host, "default", "web.1", "idle");
    // Both had their last request before `default` slept: `awake` would be idle too.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let ps = host.ok(&["ps", "-a", "awake"]);
    assert!(ps.contains("web.1: up"), "{ps}");

    // A bad value is refused at start with the way to write it.
    let out = wdeploy()
        .args(["host", "--idle-after", "15 minutes"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("write a number with s, m, h or d"),
        "{}",
        stderr(&out)
    );
}
