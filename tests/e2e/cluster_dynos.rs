//! Dynos across a cluster's nodes: restarts (one dyno, a process type, all) reaching
//! the node that runs each, one-offs named apart on each node and stopped or fed input
//! through any, and apps placed on every node.

use crate::cluster::{MOVE, one_web_dyno_per_node, settled_spread, up_dynos};
use crate::fixture::*;

#[test]
fn restarts_reach_the_node_running_the_dyno_and_edge_apps_run_on_every_node() {
    let cluster = Cluster::start(3);
    let (a, b, c) = (cluster.node("a"), cluster.node("b"), cluster.node("c"));
    a.create_and_push("hello", &sample("hello"));
    a.ok(&["ps:scale", "web=3", "-a", "hello"]);
    let spread = settled_spread(&[a, b, c], "hello");
    let on_b = spread.iter().find(|(_, n)| n == "b").unwrap().0.clone();
    // Restart b's dyno through c, then every dyno through a.
    let logged = |wanted: Vec<String>| {
        poll_until("the restarts in the log", MOVE, || {
            let logs = a.ok(&["logs", "-a", "hello", "-n", "1500"]);
            match wanted.iter().find(|w| !logs.contains(w.as_str())) {
                None => Ok(()),
                Some(missing) => Err(format!("no `{missing}`")),
            }
        })
    };
    c.ok(&["restart", &on_b, "-a", "hello"]);
    logged(vec![format!("Restarting {on_b} on node b")]);
    a.ok(&["restart", "-a", "hello"]);
    logged(vec![
        "Restarting all dynos on node b".to_string(),
        "Restarting all dynos on node c".to_string(),
    ]);
    one_web_dyno_per_node(c, "hello");
    // A process type: each node restarts its own dynos of it.
    b.ok(&["restart", "web", "-a", "hello"]);
    logged(vec![
        "Restarting web by admin".to_string(),
        "Restarting web on node a".to_string(),
        "Restarting web on node c".to_string(),
    ]);
    one_web_dyno_per_node(c, "hello");
    let err = b.fails(&["restart", "web.9", "-a", "hello"]);
    assert!(err.contains("no dyno web.9 is running"), "{err}");

    // A detached one-off runs on the node asked, and is never restarted. Each node names
    // its own, at random and apart from the names the others have published: b's and c's
    // differ, so a name says which node to reach.
    let detached = |node: &TestHost| {
        let started = node.ok(&["run:detached", "worker", "-a", "hello"]);
        started
            .split_whitespace()
            .find(|w| w.starts_with("run."))
            .unwrap_or_else(|| panic!("{started}"))
            .to_string()
    };
    let on_b = detached(b);
    let one_off_of = |app: &str, name: &str, node: &str| {
        let ps = a.ok(&["ps", "-a", app]);
        ps.lines()
            .any(|l| l.starts_with(&format!("{name}: up")) && l.contains(&format!(" on {node}: ")))
    };
    let one_off_on = |name: &str, node: &str| one_off_of("hello", name, node);
    // c names its one-off once it knows b's.
    poll_until("b's one-off in c's view", MOVE, || {
        let ps = c.ok(&["ps", "-a", "hello"]);
        if ps.contains(&format!("{on_b}: up")) {
            Ok(())
        } else {
            Err(ps)
        }
    });
    let on_c = detached(c);
    assert_ne!(on_b, on_c);
    poll_until("both one-offs in a's ps", MOVE, || {
        if one_off_on(&on_b, "b") && one_off_on(&on_c, "c") {
            Ok(())
        } else {
            Err(a.ok(&["ps", "-a", "hello"]))
        }
    });
    let err = a.fails(&["restart", &on_b, "-a", "hello"]);
    assert!(err.contains("`wdeploy ps:stop"), "{err}");
    let stopped = |name: &str, node: &str| {
        poll_until(&format!("{name} to leave ps"), MOVE, || {
            if one_off_on(name, node) {
                Err(a.ok(&["ps", "-a", "hello"]))
            } else {
                Ok(())
            }
        })
    };
    // Asked on b, b's own stops at once; asked on a, c's is reached through the store.
    b.ok(&["ps:stop", &on_b, "-a", "hello"]);
    stopped(&on_b, "b");
    assert!(one_off_on(&on_c, "c"), "{}", a.ok(&["ps", "-a", "hello"]));
    a.ok(&["ps:stop", &on_c, "-a", "hello"]);
    stopped(&on_c, "c");
    logged(vec![
        format!("wdeploy[{on_b}]: Stopping process: stopped by "),
        format!("wdeploy[{on_c}]: Stopping process: stopped with ps:stop through another node"),
    ]);

    // `run --stdin` through b: its input goes through b's API, where the dyno runs. The
    // input's end is the worker's SIGTERM: it shuts down cleanly.
    let mut cmd = b.command(&["run", "--stdin", "worker", "-a", "hello"]);
    cmd.stdin(std::process::Stdio::piped());
    let mut attached = Running::spawn(cmd);
    let input = attached.take_stdin();
    attached.wait_for_text("as run.", MOVE);
    ends_saying(attached, input, "worker: stdin closed, shutting down");
    // Behind a load balancer that sends each connection to the next node, `run` starts
    // the dyno on b and its input reaches a's API: a sends it on to b over the hop.
    let echo = faults_app().with_procfile("web: web\necho: echo\n");
    a.create_and_push("faults", echo.path());
    let balancer = Proxy::each_in_turn(vec![b.api_addr(), a.api_addr()]);
    let mut cmd = b.command(&["run", "--stdin", "echo", "-a", "faults"]);
    cmd.env("WDEPLOY_HOST", balancer.url())
        .stdin(std::process::Stdio::piped());
    let mut attached = Running::spawn(cmd);
    let mut input = attached.take_stdin();
    std::io::Write::write_all(&mut input, b"through a\n").expect("write");
    attached.wait_for_text("echo: through a", MOVE);
    let started = attached.wait_for_text("as run.", MOVE);
    let name = started
        .split_whitespace()
        .find(|w| w.starts_with("run."))
        .unwrap_or_else(|| panic!("{started}"))
        .to_string();
    poll_until("the one-off on b", MOVE, || {
        match one_off_of("faults", &name, "b") {
            true => Ok(()),
            false => Err(a.ok(&["ps", "-a", "faults"])),
        }
    });
    ends_saying(
        attached,
        input,
        "echo: end of input after 10 bytes in 1 lines",
    );
    // A client's request that names itself a node's call is the app's, through every
    // node (served there, or forwarded): the header never reaches the app, nor makes the
    // request count as a node's on the hop.
    for node in [a, b, c] {
        let mut response = http()
            .get(&node.url("/header?name=x-wdeploy-node-call"))
            .header("host", &node.host_header("faults"))
            .header("x-wdeploy-node-call", "one-off-input")
            .call()
            .expect("the router answers");
        let body = response.body_mut().read_to_string().unwrap_or_default();
        assert_eq!((response.status().as_u16(), body.as_str()), (200, ""));
    }
    // A one-off gone, or never there, is not found through any node.
    let mut gone = http()
        .put(&format!("{}/apps/faults/dynos/{name}/stdin", a.api))
        .header("authorization", &format!("Bearer {}", a.token))
        .send("x\n")
        .expect("a answers");
    let body = gone.body_mut().read_to_string().unwrap_or_default();
    assert_eq!(gone.status(), 404, "{body}");

    // `releases:cancel` through b stops the release a takes live (the push reached a):
    // its release command spins until cancelled.
    let spinning = faults_app().with_procfile("web: web\necho: echo\nrelease: spinner\n");
    let dir = spinning.path().to_str().unwrap();
    let mut held = Running::spawn(a.command(&["push", "-a", "faults", "--dir", dir]));
    held.wait_for_text("-----> Running release command", BUILD);
    let said = b.ok(&["releases:cancel", "-a", "faults"]);
    assert!(
        said.contains("Cancelled v2") && said.contains("failed"),
        "{said}"
    );
    assert_eq!(held.wait(MOVE).code(), Some(1), "{}", held.output());
    assert_eq!(c.get("faults", "/"), (200, "ok\n".to_string()));
    let err = b.fails(&["releases:cancel", "-a", "faults"]);
    assert!(err.contains("faults has no release in progress"), "{err}");
    let log = c.ok(&["logs", "-a", "faults", "-n", "1500"]);
    assert!(
        log.contains("Cancelling v2 by admin through another node"),
        "{log}"
    );

    // `placement = "every-node"`: web=1 means one web dyno on each node.
    let edge = copy_sample("hello").with_settings("[web]\nplacement = \"every-node\"\n");
    b.create_and_push("edge", edge.path());
    poll_until("web.1 of edge on every node", MOVE, || {
        let up = up_dynos(c, "edge");
        let expected: Vec<(String, String)> = ["a", "b", "c"]
            .iter()
            .map(|n| ("web.1".to_string(), n.to_string()))
            .collect();
        if up == expected {
            Ok(())
        } else {
            Err(format!("{up:?}"))
        }
    });

    // An app destroyed and made again under its name while a node looks away (stopped
    // here, as a slow node or a look that fell between the two would): that node must
    // not keep serving the old app's dyno, whose release has the same version (v2, its
    // config then its push) but the old config, nor miss publishing the new app's.
    let served_everywhere = |greeting: &str| {
        for node in [a, b, c] {
            poll_until(greeting, MOVE, || match node.get("twice", "/") {
                (200, text) if text.contains(greeting) => Ok(()),
                other => Err(format!("{other:?}")),
            });
        }
    };
    a.ok(&["apps:create", "twice", "--no-link"]);
    a.ok(&["config:set", "GREETING=the first app", "-a", "twice"]);
    a.push("twice", edge.path());
    served_everywhere("the first app");
    one_web_dyno_per_node(a, "twice");
    let signal = |name: &str| {
        let status = std::process::Command::new("kill")
            .args([name, &c.pid().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill {name}");
    };
    signal("-STOP");
    a.ok(&["apps:destroy", "twice", "--confirm", "twice"]);
    a.ok(&["apps:create", "twice", "--no-link"]);
    a.ok(&["config:set", "GREETING=the second app", "-a", "twice"]);
    a.push("twice", edge.path());
    signal("-CONT");
    served_everywhere("the second app");
    one_web_dyno_per_node(b, "twice");
}

#[test]
fn a_rename_through_one_node_moves_the_app_on_every_node() {
    let cluster = Cluster::start(3);
    let (a, b, c) = (cluster.node("a"), cluster.node("b"), cluster.node("c"));
    a.create_and_push("before", &sample("hello"));
    a.ok(&["config:set", "GREETING=renamed", "-a", "before"]);
    a.ok(&["ps:scale", "web=3", "-a", "before"]);
    settled_spread(&[a, b, c], "before");

    let said = b.ok(&["apps:rename", "after", "-a", "before"]);
    assert!(said.starts_with("Renamed before to after"), "{said}");
    // Every node serves the new name from a dyno of its own again, and knows no app of
    // the old name.
    settled_spread(&[a, b, c], "after");
    for node in [a, b, c] {
        poll_until("the new name served and the old one gone", MOVE, || match (
            node.get("after", "/"),
            node.get("before", "/"),
        ) {
            ((200, body), (404, _)) if body.contains("renamed") => Ok(()),
            other => Err(format!("{other:?}")),
        });
        let err = node.fails(&["ps", "-a", "before"]);
        assert!(err.contains("app before not found"), "{err}");
    }
    // Each node's log of the app goes on under its new name: what came before the
    // rename, and the rename itself.
    for node in [a, c] {
        poll_until("the log carried over", MOVE, || {
            let log = node.ok(&["logs", "-a", "after", "-n", "1500"]);
            let wanted = [
                "Set GREETING config vars by admin",
                "Renamed from before to after by admin",
            ];
            match wanted.iter().find(|w| !log.contains(*w)) {
                None => Ok(()),
                Some(missing) => Err(format!("no `{missing}` in:\n{log}")),
            }
        });
    }
}

/// Ends the input of an attached `run --stdin`, which must then exit 0 having printed
/// `said`.
fn ends_saying(mut attached: Running, input: std::process::ChildStdin, said: &str) {
    drop(input);
    assert!(attached.wait(MOVE).success(), "{}", attached.output());
    assert!(attached.output().contains(said), "{}", attached.output());
}
