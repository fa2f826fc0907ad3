//! A cluster of three real hosts on one real `nats-server` (JetStream), on loopback:
//! state shared, dynos placed over the nodes, requests forwarded, logs gathered, and the
//! faults a cluster must ride out (a node killed, NATS away).

use crate::fixture::*;
use std::time::Duration;

/// How long a moved dyno may take to come up elsewhere: the 15 s from the
/// heartbeat expiring, plus the heartbeat's time to live.
pub(crate) const MOVE: Duration = Duration::from_secs(25);

/// `ps` of APP as one node sees it: (dyno, node) of every dyno that is up.
pub(crate) fn up_dynos(node: &TestHost, app: &str) -> Vec<(String, String)> {
    let ps = node.ok(&["ps", "-a", app]);
    let mut up: Vec<(String, String)> = ps
        .lines()
        .filter(|l| l.contains(": up "))
        .filter_map(|l| {
            let dyno = l.split(':').next()?.to_string();
            let on = l.rsplit_once(" on ")?.1.trim().to_string();
            Some((dyno, on))
        })
        .collect();
    up.sort();
    up
}

/// Waits until NODE's `ps` shows one up web dyno of APP on each of a, b and c.
pub(crate) fn one_web_dyno_per_node(node: &TestHost, app: &str) -> Vec<(String, String)> {
    poll_until("one web dyno on each node", MOVE, || {
        let up: Vec<_> = up_dynos(node, app)
            .into_iter()
            .filter(|(dyno, _)| dyno.starts_with("web."))
            .collect();
        let mut nodes: Vec<&str> = up.iter().map(|(_, n)| n.as_str()).collect();
        nodes.sort();
        if nodes == ["a", "b", "c"] {
            Ok(up)
        } else {
            Err(format!("{up:?}"))
        }
    })
}

/// Waits until every node's `ps` shows the same one web dyno of APP per node: dynos may
/// move while placement settles after a scale (each with preboot).
pub(crate) fn settled_spread(nodes: &[&TestHost], app: &str) -> Vec<(String, String)> {
    poll_until("every node's ps to agree", MOVE, || {
        let seen: Vec<_> = nodes
            .iter()
            .map(|node| one_web_dyno_per_node(node, app))
            .collect();
        if seen.iter().all(|s| s == &seen[0]) {
            Ok(seen[0].clone())
        } else {
            Err(format!("{seen:?}"))
        }
    })
}

#[test]
fn a_push_through_one_node_is_served_seen_and_logged_by_every_node() {
    let cluster = Cluster::start(3);
    let (a, b, c) = (cluster.node("a"), cluster.node("b"), cluster.node("c"));
    a.create_and_push("hello", &sample("hello"));
    assert_eq!(a.get("hello", "/"), (200, "Hello from wdeploy\n".into()));
    // The other nodes answer through their routers: forwarded to a's web dyno at first,
    // then from their own when the app is scaled.
    for node in [b, c] {
        poll_until("the other nodes to serve hello", SOON, || {
            match node.get("hello", "/") {
                (200, body) if body == "Hello from wdeploy\n" => Ok(()),
                other => Err(format!("{other:?}")),
            }
        });
    }
    // Maintenance mode set through one node is every node's, and turned off through
    // another, every node serves again.
    c.ok(&["maintenance:on", "-a", "hello"]);
    let answer_everywhere = |status: u16, text: &str| {
        for node in [a, b, c] {
            poll_until("every node's answer", SOON, || {
                match node.get("hello", "/") {
                    (got, body) if got == status && body.contains(text) => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            });
        }
    };
    answer_everywhere(503, "Offline for maintenance");
    b.ok(&["maintenance:off", "-a", "hello"]);
    answer_everywhere(200, "Hello from wdeploy");
    // A request through a node without the web dyno is forwarded: its request id is kept
    // and the router line of the node that served it carries both.
    let owner = up_dynos(a, "hello")[0].1.clone();
    let forwarder = [a, b, c]
        .into_iter()
        .zip(["a", "b", "c"])
        .find(|(_, name)| *name != owner)
        .unwrap();
    let request_id = "forwarded-request-0123456789";
    let response = http()
        .get(&forwarder.0.url("/"))
        .header("host", &forwarder.0.host_header("hello"))
        .header("x-request-id", request_id)
        .call()
        .unwrap();
    if response.status().as_u16() != 200 {
        // Say why (the H-code, which node) before failing: every node's router lines.
        let lines: Vec<String> = [a, b, c]
            .iter()
            .map(|n| n.ok(&["logs", "--source", "router", "-a", "hello", "-n", "50"]))
            .collect();
        panic!(
            "forwarded through {} (owner {owner}): {}\n{}",
            forwarder.1,
            response.status(),
            lines.join("\n---\n")
        );
    }
    assert_eq!(response.headers()["x-request-id"], request_id);
    poll_until("the serving node's router line", SOON, || {
        let router = a.ok(&["logs", "--source", "router", "-a", "hello", "-n", "300"]);
        let line = router.lines().find(|l| l.contains(request_id));
        match line {
            Some(l) if l.contains(&format!("node={owner} ")) && l.contains("status=200") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    // An HTTP/2 request (h2c) is forwarded too: the hop between nodes is HTTP/1.1.
    assert_eq!(
        h2c_get(forwarder.0.router_port, "hello.localhost", "/"),
        (200, "Hello from wdeploy\n".to_string())
    );
    // Only a node's TLS connection carries forwarded requests. What an older node marked
    // a forwarded request with, sent by a client, changes nothing, from any address: the
    // request is forwarded as any other, not refused as already forwarded.
    let spoofed = raw_request_on(
        connect_from(
            std::net::Ipv4Addr::new(127, 0, 0, 2),
            forwarder.0.router_port,
        ),
        "GET",
        "hello.localhost",
        "/",
        "X-Wdeploy-Forwarded: elsewhere\r\n",
    );
    assert_eq!(
        (spoofed.status, spoofed.text().as_str()),
        (200, "Hello from wdeploy\n")
    );
    // Nor from a node's own address (every node here is on 127.0.0.1): taken as
    // forwarded already, it would be refused with an H14 by a node without the web dyno.
    let from_a_node = raw_request_on(
        connect_from(std::net::Ipv4Addr::LOCALHOST, forwarder.0.router_port),
        "GET",
        "hello.localhost",
        "/",
        &format!(
            "X-Wdeploy-Forwarded: {owner} 1800000000 {}\r\n",
            "ab".repeat(32)
        ),
    );
    assert_eq!(
        (from_a_node.status, from_a_node.text().as_str()),
        (200, "Hello from wdeploy\n")
    );
    // A request a node really forwards (over TLS, each node proving itself with the
    // cluster's certificate) reaches the app with the port of the router the client
    // spoke to: the receiving node knew it was forwarded, and kept that router's scheme
    // and port. A hop in plain HTTP fails this.
    a.create_and_push("faults", faults_app().path());
    let owner = poll_until("faults' web dyno up", SOON, || {
        up_dynos(a, "faults").first().map(|(_, node)| node.clone())
    });
    let (via, _) = [(a, "a"), (b, "b"), (c, "c")]
        .into_iter()
        .find(|(_, name)| *name != owner)
        .unwrap();
    poll_until("faults served through another node", SOON, || {
        match via.get("faults", "/") {
            (200, _) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    let port = via.get("faults", "/header?name=x-forwarded-port");
    assert_eq!(port, (200, format!("{}\n", via.router_port)));
    for node in [a, b, c] {
        let releases = node.ok(&["releases", "-a", "hello"]);
        assert!(releases.contains("v1"), "{releases}");
        assert_eq!(
            node.ok(&["apps"])
                .lines()
                .filter(|l| l.contains("hello"))
                .count(),
            1
        );
    }

    // web=3 means three in all: one per node.
    a.ok(&["ps:scale", "web=3", "-a", "hello"]);
    let spread = settled_spread(&[a, b, c], "hello");

    // Two config changes at once on two nodes: both land, as two releases.
    std::thread::scope(|s| {
        s.spawn(|| b.ok(&["config:set", "FIRST=1", "-a", "hello"]));
        s.spawn(|| c.ok(&["config:set", "SECOND=2", "-a", "hello"]));
    });
    for node in [a, b, c] {
        let config = node.ok(&["config", "-a", "hello"]);
        assert!(
            config.contains("FIRST") && config.contains("SECOND"),
            "{config}"
        );
        let releases = node.ok(&["releases", "-a", "hello"]);
        assert!(
            releases.contains("v2") && releases.contains("v3"),
            "{releases}"
        );
    }
    a.ok(&["config:set", "GREETING=the cluster", "-a", "hello"]);
    // `ps:wait` through c returns once the dynos of every node run v4: each node then
    // serves the new config at once.
    assert_eq!(
        c.ok(&["ps:wait", "--timeout", "60", "-a", "hello"]),
        "Every dyno of hello runs v4\n"
    );
    for node in [a, b, c] {
        assert_eq!(
            node.get("hello", "/"),
            (200, "Hello from the cluster\n".to_string())
        );
    }

    // `logs --tail` on a shows the lines of dynos running on b and c.
    let mut tail = Running::spawn(a.command(&["logs", "--tail", "-a", "hello", "-n", "0"]));
    let remote: Vec<String> = spread
        .iter()
        .filter(|(_, node)| node != "a")
        .map(|(dyno, _)| format!("app[{dyno}]: handling /"))
        .collect();
    poll_until("a's tail to show b's and c's dynos", MOVE, || {
        for node in [b, c] {
            node.get("hello", "/");
        }
        let out = tail.output();
        match remote.iter().find(|line| !out.contains(line.as_str())) {
            None => Ok(()),
            Some(missing) => Err(format!("no `{missing}` in:\n{out}")),
        }
    });
    tail.kill_9();
    let router = a.ok(&["logs", "--source", "router", "-a", "hello", "-n", "300"]);
    for node in ["a", "b", "c"] {
        assert!(router.contains(&format!("node={node} ")), "{router}");
    }
}

/// A client per router, each GETting `/` of an app every 20 ms until stopped.
struct ClientLoops {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Requests answered so far, all clients together.
    answered: std::sync::Arc<std::sync::atomic::AtomicU64>,
    clients: Vec<std::thread::JoinHandle<(u64, Vec<String>)>>,
}

impl ClientLoops {
    fn start(nodes: &[&TestHost], app: &str) -> ClientLoops {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let answered = std::sync::Arc::new(AtomicU64::new(0));
        let clients = nodes
            .iter()
            .map(|node| {
                let (url, header) = (node.url("/"), node.host_header(app));
                let (stop, answered) = (stop.clone(), answered.clone());
                std::thread::spawn(move || {
                    let agent = http();
                    let (mut requests, mut failures) = (0, Vec::new());
                    while !stop.load(Ordering::SeqCst) {
                        requests += 1;
                        match agent.get(&url).header("host", &header).call() {
                            Ok(r) if r.status().as_u16() == 200 => {
                                answered.fetch_add(1, Ordering::SeqCst);
                            }
                            Ok(mut r) => {
                                let body = r.body_mut().read_to_string().unwrap_or_default();
                                failures.push(format!("status {}: {}", r.status(), body.trim()));
                            }
                            Err(e) => failures.push(e.to_string()),
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    (requests, failures)
                })
            })
            .collect();
        ClientLoops {
            stop,
            answered,
            clients,
        }
    }

    /// The answers the clients have had so far, between them.
    fn answered(&self) -> u64 {
        self.answered.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Waits until the clients have had `n` answers between them.
    fn wait_answered(&self, n: u64) {
        poll_until("the clients to be answered", SOON, || {
            let answered = self.answered.load(std::sync::atomic::Ordering::SeqCst);
            if answered >= n {
                Ok(())
            } else {
                Err(format!("{answered} answers"))
            }
        });
    }

    /// Stops the clients: each one's (requests, failures with what they were).
    fn finish(self) -> Vec<(u64, Vec<String>)> {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.clients
            .into_iter()
            .map(|c| c.join().unwrap())
            .collect()
    }
}

#[test]
fn a_node_killed_loses_nothing_and_its_dynos_come_back_on_the_others() {
    let mut cluster = Cluster::start(3);
    {
        let a = cluster.node("a");
        a.create_and_push("hello", &sample("hello"));
        a.ok(&["config:set", "KEPT=yes", "-a", "hello"]);
        a.ok(&["ps:scale", "web=3", "-a", "hello"]);
        one_web_dyno_per_node(a, "hello");
    }
    let clients = ClientLoops::start(&[cluster.node("a"), cluster.node("c")], "hello");
    clients.wait_answered(20);
    cluster.nodes[1].kill_9();
    let a = cluster.node("a");
    // The bound: within 15 s of b's heartbeat expiring.
    let moved = wdeploy_store::nodes::HEARTBEAT_TTL + Duration::from_secs(15);
    poll_until("three web dynos on a and c", moved, || {
        let up = up_dynos(a, "hello");
        let on_survivors = up.iter().filter(|(d, n)| d.starts_with("web.") && n != "b");
        if on_survivors.count() == 3 && up.iter().all(|(_, n)| n != "b") {
            Ok(())
        } else {
            Err(format!("{up:?}"))
        }
    });
    for (requests, failures) in clients.finish() {
        assert!(requests > 10, "{requests}");
        assert!(
            failures.is_empty(),
            "{} of {requests} failed: {failures:?}",
            failures.len()
        );
    }
    // Everything acknowledged before the kill is still there, on both survivors.
    for node in [cluster.node("a"), cluster.node("c")] {
        assert!(node.ok(&["config", "-a", "hello"]).contains("KEPT"));
        assert!(node.ok(&["releases", "-a", "hello"]).contains("v2"));
        assert_eq!(node.get("hello", "/"), (200, "Hello from wdeploy\n".into()));
    }
}

/// A node stopped (SIGTERM, a rolling upgrade) hands its dynos to the others before it
/// goes: its web dyno runs up elsewhere while it still serves, so clients of the other
/// nodes see no failed request, and it says so as it stops.
#[test]
fn a_node_stopped_hands_its_dynos_over_first() {
    let mut cluster = Cluster::start(3);
    cluster.node("a").create_and_push("hello", &sample("hello"));
    let web_on = |node: &TestHost| {
        let up = up_dynos(node, "hello");
        let on = up.iter().find(|(dyno, _)| dyno == "web.1");
        on.map(|(_, n)| n.clone()).ok_or(format!("{up:?}"))
    };
    let first = poll_until("web.1 up", MOVE, || web_on(cluster.node("a")));
    let stopping = usize::from(first.as_bytes()[0] - b'a');
    let staying: Vec<usize> = (0..3).filter(|&i| i != stopping).collect();
    // The other nodes learn where the new app's web dyno runs at their next look (until
    // then they answer H14): the clients start once both serve it.
    for &i in &staying {
        poll_until(
            "the app served through every node",
            MOVE,
            || match cluster.nodes[i].get("hello", "/") {
                (200, _) => Ok(()),
                other => Err(format!("{other:?}")),
            },
        );
    }
    let clients = {
        let others: Vec<&TestHost> = staying.iter().map(|&i| &cluster.nodes[i]).collect();
        ClientLoops::start(&others, "hello")
    };
    clients.wait_answered(20);
    let node = &mut cluster.nodes[stopping];
    node.sigterm();
    assert!(node.wait_exit(MOVE).success(), "{}", node.output());
    let said = node.output();
    assert!(
        said.contains("wdeploy host: the other nodes run this node's dynos"),
        "{said}"
    );
    let survivor = &cluster.nodes[staying[0]];
    poll_until("web.1 up on another node", MOVE, || {
        match web_on(survivor) {
            Ok(on) if on != first => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    let answered = clients.answered();
    clients.wait_answered(answered + 20);
    for (requests, failures) in clients.finish() {
        assert!(
            failures.is_empty(),
            "{} of {requests} failed: {failures:?}",
            failures.len()
        );
    }
}

#[test]
fn add_on_data_is_exact_and_jobs_run_once_across_nodes() {
    let cluster = Cluster::start(3);
    let (a, b, c) = (cluster.node("a"), cluster.node("b"), cluster.node("c"));
    a.create_and_push("counter", &sample("counter"));
    a.ok(&["ps:scale", "web=3", "-a", "counter"]);
    one_web_dyno_per_node(c, "counter");
    // 300 requests at once, 10 clients per router.
    let counts: Vec<u64> = std::thread::scope(|s| {
        let clients: Vec<_> = [a, b, c]
            .iter()
            .flat_map(|node| std::iter::repeat_n(*node, 10))
            .map(|node| {
                s.spawn(move || {
                    let agent = http();
                    (0..10)
                        .map(|_| {
                            let mut r = agent
                                .get(&node.url("/"))
                                .header("host", &node.host_header("counter"))
                                .call()
                                .unwrap();
                            let body = r.body_mut().read_to_string().unwrap();
                            assert_eq!(r.status().as_u16(), 200, "{body}");
                            body.trim().parse::<u64>().unwrap()
                        })
                        .collect::<Vec<u64>>()
                })
            })
            .collect();
        clients
            .into_iter()
            .flat_map(|c| c.join().unwrap())
            .collect()
    });
    let mut counts = counts;
    counts.sort();
    assert_eq!(counts, (1..=300).collect::<Vec<_>>());
    assert_eq!(b.get("counter", "/count"), (200, "300\n".into()));

    a.create_and_push("jobs", &sample("jobs"));
    a.ok(&["ps:scale", "worker=2", "-a", "jobs"]);
    poll_until("workers on two nodes", MOVE, || {
        let up = up_dynos(a, "jobs");
        let workers: std::collections::BTreeSet<&str> = up
            .iter()
            .filter(|(d, _)| d.starts_with("worker."))
            .map(|(_, n)| n.as_str())
            .collect();
        if workers.len() == 2 {
            Ok(())
        } else {
            Err(format!("{up:?}"))
        }
    });
    let ids: Vec<(u64, String)> = (0..20)
        .map(|n| {
            let text = format!("job number {n}");
            let node = [a, b, c][n % 3];
            let (status, body) = node.post("jobs", "/jobs", &text);
            assert_eq!(status, 202, "{body}");
            (body.trim().parse().unwrap(), text)
        })
        .collect();
    for (id, text) in &ids {
        let expected = format!("done: {}\n", text.to_uppercase());
        poll_until(&format!("job {id}"), SOON, || {
            match c.get("jobs", &format!("/jobs/{id}")) {
                (_, body) if body == expected => Ok(()),
                other => Err(format!("{other:?}")),
            }
        });
        let key = format!("job/{id}/runs");
        assert_eq!(b.ok(&["kv:get", &key, "-a", "jobs"]), "1\n", "{key}");
    }
}

#[test]
fn the_cluster_rides_out_nats_going_away_and_refuses_a_node_of_another_schema() {
    let mut cluster = Cluster::start(3);
    {
        let a = cluster.node("a");
        a.create_and_push("hello", &sample("hello"));
        a.ok(&["ps:scale", "web=3", "-a", "hello"]);
        one_web_dyno_per_node(a, "hello");
        a.ok(&["config:set", "BEFORE=1", "-a", "hello"]);
    }
    cluster.nats.stop();
    let outage = std::time::Instant::now();
    while outage.elapsed() < Duration::from_secs(10) {
        for node in &cluster.nodes {
            assert_eq!(
                node.get("hello", "/").0,
                200,
                "a node stopped serving without NATS"
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let started = std::time::Instant::now();
    let err = cluster
        .node("b")
        .fails(&["config:set", "DURING=1", "-a", "hello"]);
    assert!(err.contains("the cluster store is unavailable"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "it hung: {:?}",
        started.elapsed()
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    cluster.nats.resume().expect("nats-server again");
    let b = cluster.node("b");
    poll_until("config:set to work again", SOON, || {
        let out = b.cli(&["config:set", "AFTER=1", "-a", "hello"]);
        if out.status.success() {
            Ok(())
        } else {
            Err(stderr(&out))
        }
    });
    for node in &cluster.nodes {
        let config = node.ok(&["config", "-a", "hello"]);
        assert!(
            config.contains("BEFORE") && config.contains("AFTER"),
            "{config}"
        );
        assert!(!config.contains("DURING"), "{config}");
        assert_eq!(node.get("hello", "/").0, 200);
    }

    // A node of another state schema does not join.
    wdeploy_store::cluster::testing::write_schema(&cluster.nats.url(), 99).unwrap();
    let out = wdeploy()
        .args(["host", "--data"])
        .arg(tempfile::tempdir().unwrap().path())
        .args(["--listen", "127.0.0.1:0", "--api", "127.0.0.1:0"])
        .args(["--cluster", &cluster.nats.url(), "--node", "d"])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(
        err.contains("schema v1") && err.contains("schema v99"),
        "{err}"
    );
}
