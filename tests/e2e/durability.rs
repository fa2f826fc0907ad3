//! What survives: kill -9 of the host at rest, in the middle of changes and of a push;
//! corrupted blobs on disk are refused, never run.

use crate::fixture::*;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[test]
fn a_corrupted_blob_is_refused_and_the_old_release_keeps_serving() {
    let host = TestHost::with_app("hello");
    // Damage every stored component.
    for blob in blob_files(&host.data().join("blobs/sha256")) {
        let bytes = std::fs::read(&blob).unwrap();
        if bytes.starts_with(b"\0asm") {
            let mut damaged = bytes.clone();
            let last = damaged.len() - 1;
            damaged[last] ^= 0xff;
            std::fs::write(&blob, damaged).unwrap();
        }
    }
    let err = host.fails(&["config:set", "GREETING=never", "-a", "hello"]);
    assert!(err.contains("is corrupted on disk"), "{err}");
    assert_eq!(host.get("hello", "/"), (200, "Hello from wdeploy\n".into()));
}

fn blob_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(blob_files(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn a_host_killed_with_sigkill_comes_back_with_the_same_release_and_formation() {
    let mut host = TestHost::with_app("hello");
    host.ok(&["config:set", "GREETING=durable", "-a", "hello"]);
    host.ok(&["ps:scale", "web=2", "worker=1", "-a", "hello"]);
    let releases_before = host.ok(&["releases", "-a", "hello"]);

    host.kill_9();
    host.restart();
    // Restored once the host listens: the app answers when it is up.
    assert_eq!(
        host.wait_restored("hello", "/"),
        (200, "Hello from durable\n".into())
    );
    assert_eq!(host.ok(&["releases", "-a", "hello"]), releases_before);
    let ps = poll_until("every dyno back", SOON, || {
        let ps = host.ok(&["ps", "-a", "hello"]);
        if ["web.1: up", "web.2: up", "worker.1: "]
            .iter()
            .all(|dyno| ps.contains(dyno))
        {
            Ok(ps)
        } else {
            Err(ps)
        }
    });
    assert!(!ps.contains("web.3"), "{ps}");
    // The compiled components came from the on-disk cache, not a recompile.
    assert!(host.data().join("compiled").read_dir().unwrap().count() >= 2);
}

#[test]
fn kill_9_in_the_middle_of_changes_leaves_a_consistent_store() {
    let mut host = TestHost::with_app("hello");
    let mut acknowledged_config: Option<u32> = None;
    let mut acknowledged_web: u32 = 1;

    for round in 1..=4u32 {
        // A config change and a scale race a kill -9 that lands at a different moment
        // each round (the pause places the kill; it synchronises nothing).
        let run = |args: &[&str]| {
            let mut cmd = host.command(args);
            std::thread::spawn(move || cmd.output().map(|o| o.status.success()).unwrap_or(false))
        };
        let web = 1 + round % 2;
        let config = run(&["config:set", &format!("ROUND={round}"), "-a", "hello"]);
        let scale = run(&["ps:scale", &format!("web={web}"), "-a", "hello"]);
        std::thread::sleep(Duration::from_millis(40 * u64::from(round)));
        host.kill_9();
        if config.join().unwrap() {
            acknowledged_config = Some(round);
        }
        if scale.join().unwrap() {
            acknowledged_web = web;
        }

        host.restart();
        let releases = host.ok(&["releases", "-a", "hello"]);
        assert!(!releases.contains("(pending)"), "{releases}");
        assert_eq!(releases.matches("(current)").count(), 1, "{releases}");
        let config = host.ok(&["config", "-a", "hello"]);
        if let Some(n) = acknowledged_config {
            // An acknowledged change is there (or a later one that replaced it).
            let value: u32 = config
                .lines()
                .find_map(|l| l.strip_prefix("ROUND:"))
                .map(|v| v.trim().parse().unwrap())
                .unwrap_or_else(|| panic!("acknowledged ROUND={n} lost:\n{config}"));
            assert!(value >= n, "ROUND={value} but ROUND={n} was acknowledged");
        }
        let info = host.ok(&["apps:info", "-a", "hello"]);
        let formation = info
            .lines()
            .find(|l| l.starts_with("Formation:"))
            .unwrap()
            .to_string();
        if acknowledged_web == web {
            assert!(formation.contains(&format!("web={web}")), "{formation}");
        }
        assert_eq!(host.wait_restored("hello", "/").0, 200);
    }
}

#[test]
fn kill_9_in_the_middle_of_a_push_leaves_a_consistent_store() {
    let mut host = TestHost::with_app("hello");
    let hello = (200, "Hello from wdeploy\n".to_string());
    assert_eq!(host.get("hello", "/"), hello);

    // A second push with new components (prebuilt ones this time: faults' web answers
    // `ok`) and new settings; the host dies while it is being released.
    let app = faults_app()
        .with_procfile("web: web\n")
        .with_settings("[web]\ntimeout = 5\n");
    let mut push = Running::spawn(host.command(&[
        "push",
        "-a",
        "hello",
        "--dir",
        app.path().to_str().unwrap(),
    ]));
    push.wait_for_text("-----> Uploading", BUILD);
    host.kill_9();
    let pushed = push.wait(SOON).success();

    host.restart();
    let releases = host.ok(&["releases", "-a", "hello"]);
    assert!(!releases.contains("(pending)"), "{releases}");
    // An acknowledged push is live; an unacknowledged one is either whole or absent.
    let (status, body) = host.wait_restored("hello", "/");
    assert_eq!(status, 200);
    if pushed {
        assert_eq!(body, "ok\n", "{releases}");
    } else {
        assert!(body == hello.1 || body == "ok\n", "{body}\n{releases}");
    }
    // The next push completes whatever the killed one left half done.
    host.push("hello", app.path());
    assert_eq!(host.get("hello", "/"), (200, "ok\n".into()));
    assert_eq!(
        host.ok(&["releases", "-a", "hello"])
            .matches("(current)")
            .count(),
        1
    );
}

/// Group commit acknowledges a write only once its transaction is on disk: kill -9 of the
/// host in the middle of 1,000 concurrent increments (32 clients, three dynos) loses none
/// of the increments a client was answered for.
#[test]
fn kill_9_in_the_middle_of_concurrent_increments_loses_no_acknowledged_one() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let mut host = TestHost::with_app("counter");
    host.ok(&["ps:scale", "web=3", "-a", "counter"]);
    poll_until("three web dynos", SOON, || {
        let ps = host.ok(&["ps", "-a", "counter"]);
        if ps.contains("web.3: up") {
            Ok(())
        } else {
            Err(ps)
        }
    });

    const CLIENTS: usize = 32;
    const EACH: usize = 1000 / CLIENTS + 1;
    let answered = Arc::new(AtomicUsize::new(0));
    let (url, header) = (host.url("/"), host.host_header("counter"));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (url, header, answered) = (url.clone(), header.clone(), answered.clone());
            std::thread::spawn(move || {
                let agent = http();
                let mut acknowledged = Vec::new();
                for _ in 0..EACH {
                    // Any failure is the kill (a refused or cut connection): stop there.
                    let Ok(mut r) = agent.get(&url).header("host", &header).call() else {
                        break;
                    };
                    let Ok(body) = r.body_mut().read_to_string() else {
                        break;
                    };
                    if r.status().as_u16() != 200 {
                        break;
                    }
                    acknowledged.push(body.trim().parse::<u64>().expect("a count"));
                    answered.fetch_add(1, Ordering::Relaxed);
                }
                acknowledged
            })
        })
        .collect();
    // Kill when about a third has been answered, while the rest are in flight.
    poll_until("a third of the increments answered", SOON, || {
        let n = answered.load(Ordering::Relaxed);
        if n >= 333 { Ok(()) } else { Err(n) }
    });
    host.kill_9();
    let mut acknowledged: Vec<u64> = clients
        .into_iter()
        .flat_map(|c| c.join().expect("client"))
        .collect();
    assert!(
        acknowledged.len() < CLIENTS * EACH,
        "the kill came after every increment: nothing was in flight"
    );

    host.restart();
    let (status, body) = host.wait_restored("counter", "/count");
    assert_eq!(status, 200, "{body}");
    let count: u64 = body.trim().parse().expect("the count");
    acknowledged.sort_unstable();
    let before = acknowledged.len();
    acknowledged.dedup();
    assert_eq!(
        acknowledged.len(),
        before,
        "two clients were given the same count"
    );
    // Each acknowledged increment answered the count it made: all of them are below the
    // count found after the restart, so none was lost.
    let highest = acknowledged.last().copied().unwrap_or(0);
    assert!(
        count >= highest && count >= acknowledged.len() as u64,
        "{count} after the restart, but {} increments were acknowledged, up to {highest}",
        acknowledged.len()
    );
    assert!(
        count <= (CLIENTS * EACH) as u64,
        "{count} is more than was sent"
    );
}
