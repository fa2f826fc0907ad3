//! Log drains: `drains:add` sends every line the app's dynos, its router and the platform
//! write to syslog (TCP, TLS) and HTTPS receivers written here, framed as Heroku's
//! drains frame them; a stuck drain costs its own lines (an L10 line in the app's log),
//! never the app's or a neighbour's speed; drains survive a kill -9 of the host.

use crate::fixture::*;
use std::time::Duration;

/// A host whose drains may reach loopback and trust the test certificate.
fn drain_host(ca: &TestCa, extra: &[&str]) -> TestHost {
    let mut args = drain_host_args(&ca.pem());
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    TestHost::start_with(&args)
}

/// Checks one frame's exact shape, `<PRI>1 TIMESTAMP hello APP-NAME PROCID - MSG\n`, and
/// returns its (PRI, APP-NAME, PROCID, MSG).
fn fields(frame: &str) -> (String, String, String, String) {
    let body = frame
        .strip_suffix('\n')
        .unwrap_or_else(|| panic!("no closing newline: {frame:?}"));
    let mut parts = body.splitn(7, ' ');
    let mut next = || {
        parts
            .next()
            .unwrap_or_else(|| panic!("short frame {frame:?}"))
    };
    let (pri, stamp, host, app, procid, msgid, msg) =
        (next(), next(), next(), next(), next(), next(), next());
    let pri = pri
        .strip_prefix('<')
        .and_then(|p| p.strip_suffix(">1"))
        .unwrap_or_else(|| panic!("PRI and version: {frame:?}"));
    assert!(
        chrono::DateTime::parse_from_rfc3339(stamp).is_ok() && stamp.ends_with("+00:00"),
        "{frame:?}"
    );
    assert_eq!(
        stamp.len(),
        "2026-11-26T10:00:00.123456+00:00".len(),
        "{frame:?}"
    );
    assert_eq!((host, msgid), ("hello", "-"), "{frame:?}");
    (pri.into(), app.into(), procid.into(), msg.into())
}

/// Waits until `frames()` holds a frame of each `(PRI, APP-NAME, PROCID, MSG prefix)`.
fn wait_for_sources(
    what: &str,
    frames: impl Fn() -> Vec<String>,
    wanted: &[(&str, &str, &str, &str)],
) {
    poll_until(what, SOON, || {
        let frames = frames();
        let seen: Vec<_> = frames.iter().map(|f| fields(f)).collect();
        let missing: Vec<_> = wanted
            .iter()
            .filter(|(pri, app, procid, msg)| {
                !seen.iter().any(|(p, a, i, m)| {
                    (p.as_str(), a.as_str(), i.as_str()) == (*pri, *app, *procid)
                        && m.starts_with(msg)
                })
            })
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "missing {missing:?} in {} frames, last: {:?}",
                frames.len(),
                frames.last()
            ))
        }
    });
}

#[test]
fn every_source_reaches_syslog_tls_and_https_drains_framed_as_herokus() {
    let ca = TestCa::new();
    let host = drain_host(&ca, &[]);
    host.create_and_push("hello", &sample("hello"));
    let syslog = SyslogReceiver::start(Some(&ca));
    let plain = SyslogReceiver::start(None);
    let https = HttpReceiver::start(Some(&ca));
    let https_url = https
        .url("/logs?app=hello")
        .replace("https://", "https://user:s3cret@");

    for url in [syslog.url(), plain.url(), https_url.clone()] {
        let added = host.ok(&["drains:add", &url, "-a", "hello"]);
        assert_eq!(added, format!("Successfully added drain {url}\n"));
    }
    let listed = host.ok(&["drains", "-a", "hello"]);
    assert!(listed.starts_with("=== Drains\n"), "{listed}");
    for url in [syslog.url(), plain.url(), https_url.clone()] {
        assert!(listed.contains(&format!("{url} (d.")), "{listed}");
    }
    // Refused with one clear line each: the same drain twice, a bad URL.
    let twice = host.fails(&["drains:add", &syslog.url(), "-a", "hello"]);
    assert!(twice.contains("already drains to"), "{twice}");
    let bad = host.fails(&["drains:add", "ftp://127.0.0.1:21", "-a", "hello"]);
    assert!(bad.contains("scheme `ftp` is not one of"), "{bad}");
    let portless = host.fails(&["drains:add", "syslog://127.0.0.1", "-a", "hello"]);
    assert!(portless.contains("needs a port"), "{portless}");

    // Lines from every source: web and worker dynos, the router, the platform.
    host.ok(&["ps:scale", "worker=1", "-a", "hello"]);
    assert_eq!(host.get("hello", "/drained").0, 200);
    let wanted = [
        ("190", "app", "web.1", "handling /drained on web.1"),
        ("190", "app", "worker.1", "tick "),
        (
            "158",
            "wdeploy",
            "router",
            "at=info method=GET path=\"/drained\"",
        ),
        (
            "45",
            "wdeploy",
            "worker.1",
            "Starting process with command `worker",
        ),
        ("45", "wdeploy", "api", "Scaled to worker=1 by "),
    ];
    wait_for_sources(
        "every source at the syslog+tls drain",
        || syslog.frames(),
        &wanted,
    );
    wait_for_sources(
        "every source at the syslog drain",
        || plain.frames(),
        &wanted,
    );
    let frames = || -> Vec<String> {
        https
            .posts()
            .iter()
            .flat_map(|post| post.frames().unwrap_or_else(|e| panic!("{e}: {post:?}")))
            .collect()
    };
    wait_for_sources("every source at the https drain", frames, &wanted);
    for post in https.posts() {
        assert_eq!(post.path, "/logs?app=hello");
        assert_eq!(post.header("content-type"), Some("application/logplex-1"));
        let count: usize = post.header("logplex-msg-count").unwrap().parse().unwrap();
        assert_eq!(count, post.frames().unwrap().len(), "{post:?}");
        assert!(
            post.header("logplex-frame-id")
                .is_some_and(|id| !id.is_empty())
        );
        assert!(
            post.header("logplex-drain-token")
                .unwrap()
                .starts_with("d.")
        );
        // user:s3cret
        assert_eq!(post.header("authorization"), Some("Basic dXNlcjpzM2NyZXQ="));
    }

    // Removed by URL: lines stop going there, the others go on.
    let removed = host.ok(&["drains:remove", &plain.url(), "-a", "hello"]);
    assert_eq!(
        removed,
        format!("Successfully removed drain {}\n", plain.url())
    );
    assert!(!host.ok(&["drains", "-a", "hello"]).contains(&plain.url()));
    let gone = host.fails(&["drains:remove", &plain.url(), "-a", "hello"]);
    assert!(gone.contains("not found"), "{gone}");
    assert_eq!(host.get("hello", "/after-removal").0, 200);
    wait_for_sources(
        "the line after the removal at the drain kept",
        || syslog.frames(),
        &[("190", "app", "web.1", "handling /after-removal")],
    );
    assert!(!plain.frames().iter().any(|f| f.contains("/after-removal")));

    // The drain's credentials are the user's: in no log of the host or the app.
    let app_log = host.ok(&["logs", "-n", "1500", "-a", "hello"]);
    assert!(!app_log.contains("s3cret") && !host.output().contains("s3cret"));
}

#[test]
fn drains_to_private_addresses_are_refused_unless_the_host_allows_them() {
    let host = TestHost::start();
    host.ok(&["apps:create", "hello", "--no-link"]);
    let receiver = SyslogReceiver::start(None);
    let refused = host.fails(&["drains:add", &receiver.url(), "-a", "hello"]);
    assert!(
        refused.contains("127.0.0.1 is not a public address")
            && refused.contains("--allow-private-drains"),
        "{refused}"
    );
    assert!(host.ok(&["drains", "-a", "hello"]).contains("no drains"));
}

#[test]
fn a_stuck_drain_drops_its_own_lines_while_the_app_and_a_neighbour_go_on() {
    let ca = TestCa::new();
    // Dynos may log a flood whole: what is dropped is the stuck drain's doing alone.
    let host = drain_host(&ca, &["--log-rate", "1000000", "--log-burst", "1000000"]);
    host.create_and_push("faults", faults_app().path());
    host.create_and_push("hello", &sample("hello"));
    let stuck = StuckReceiver::start();
    let healthy = SyslogReceiver::start(None);
    host.ok(&["drains:add", &stuck.url(), "-a", "faults"]);
    host.ok(&["drains:add", &healthy.url(), "-a", "hello"]);

    assert_eq!(host.get("faults", "/"), (200, "ok\n".into()));
    poll_until("the stuck drain's connection", SOON, || {
        (stuck.connections() > 0).then_some(())
    });
    // More lines than the drain's queue holds (10,000), with its first batch unanswered.
    assert_eq!(
        host.get("faults", "/flood?lines=30000"),
        (200, "flooded\n".into())
    );
    // The app answers every request of a burst while its drain is stuck, and so does
    // its neighbour, whose drain gets every line.
    for n in 0..100 {
        assert_eq!(host.get("faults", "/"), (200, "ok\n".into()), "request {n}");
        assert_eq!(
            host.get("hello", &format!("/burst-{n}")).0,
            200,
            "request {n}"
        );
    }
    poll_until("every line of the neighbour at its drain", SOON, || {
        let frames = healthy.frames();
        let missing: Vec<usize> = (0..100)
            .filter(|n| {
                let line = format!(" - handling /burst-{n} on web.1\n");
                !frames.iter().any(|f| f.ends_with(&line))
            })
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!("missing {missing:?}"))
        }
    });
    // The app's log says how many lines its drain dropped, as Heroku's does.
    let l10 = poll_until("the L10 line of the stuck drain", SOON, || {
        let log = host.ok(&["logs", "-n", "1500", "-a", "faults"]);
        let line = log
            .lines()
            .find(|l| l.contains("]: Error L10 (output buffer overflow): "))
            .map(str::to_string);
        line.ok_or_else(|| log.lines().rev().take(3).collect::<Vec<_>>().join("\n"))
    });
    assert!(l10.contains(" wdeploy[d."), "{l10}");
    let dropped: usize = l10
        .split("Error L10 (output buffer overflow): ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{l10}"));
    assert!(dropped > 0, "{l10}");
    assert!(
        l10.contains(" messages dropped since ") && l10.ends_with('.'),
        "{l10}"
    );
    assert!(
        !host
            .ok(&["logs", "-n", "1500", "-a", "hello"])
            .contains("Error L10")
    );
}

#[test]
fn drains_survive_a_kill_9_of_the_host() {
    let ca = TestCa::new();
    let mut host = drain_host(&ca, &[]);
    host.create_and_push("hello", &sample("hello"));
    let receiver = SyslogReceiver::start(Some(&ca));
    host.ok(&["drains:add", &receiver.url(), "-a", "hello"]);
    let listed = host.ok(&["drains", "-a", "hello"]);

    host.kill_9();
    host.restart();
    assert_eq!(host.wait_restored("hello", "/after-restart").0, 200);
    assert_eq!(host.ok(&["drains", "-a", "hello"]), listed);
    wait_for_sources(
        "a line written after the restart at the drain",
        || receiver.frames(),
        &[("190", "app", "web.1", "handling /after-restart")],
    );
}

#[test]
fn in_a_cluster_each_node_ships_its_own_lines_once() {
    let cluster = Cluster::start_with(2, &["--allow-private-drains"]);
    let (a, b) = (cluster.node("a"), cluster.node("b"));
    a.create_and_push("hello", &sample("hello"));
    a.ok(&["ps:scale", "web=2", "-a", "hello"]);
    let receiver = SyslogReceiver::start(None);
    // Added through one node, learnt by the other from the store.
    a.ok(&["drains:add", &receiver.url(), "-a", "hello"]);
    assert!(b.ok(&["drains", "-a", "hello"]).contains(&receiver.url()));
    // A web dyno on each node: each node's router serves from its own.
    poll_until(
        "a web dyno up on each node",
        Duration::from_secs(25),
        || {
            let ps = a.ok(&["ps", "-a", "hello"]);
            let up_on = |node: &str| {
                ps.lines().any(|l| {
                    l.starts_with("web.")
                        && l.contains(": up ")
                        && l.ends_with(&format!(" on {node}"))
                })
            };
            if up_on("a") && up_on("b") {
                Ok(())
            } else {
                Err(ps)
            }
        },
    );
    // Node b ships once it has read the drains (within a converge look): asked until
    // its lines arrive, the app's and then the router's (written once the response is
    // sent, a moment after the app's).
    for (node, path) in [(a, "/via-a"), (b, "/via-b")] {
        poll_until(&format!("{path} at the drain"), SOON, || {
            let frames = receiver.frames();
            let app_line = frames
                .iter()
                .any(|f| f.contains(&format!(" - handling {path} on web.")));
            let router_line = frames.iter().any(|f| {
                f.contains(" wdeploy router - ") && f.contains(&format!("path=\"{path}\""))
            });
            if app_line && router_line {
                return Some(());
            }
            if !app_line {
                assert_eq!(node.get("hello", path).0, 200);
            }
            None
        });
    }
    // Both nodes' router lines arrive, and no line twice: a node does not ship the lines
    // it is relayed from the other.
    let frames = receiver.frames();
    for node in ["a", "b"] {
        assert!(
            frames
                .iter()
                .any(|f| f.contains(" wdeploy router - ") && f.contains(&format!(" node={node}"))),
            "no router line of node {node}: {frames:#?}"
        );
    }
    let mut unique = frames.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), frames.len(), "a line came twice: {frames:#?}");
}
