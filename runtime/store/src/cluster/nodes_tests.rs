//! [`ClusterNodes`] against a real `nats-server`: two nodes on connections of their own.

use super::*;
use crate::cluster::testing::NatsServer;
use chrono::Utc;
use std::time::Instant;
use wdeploy_core::{DynoState, ProcessType};

fn info(name: &str) -> NodeInfo {
    NodeInfo {
        name: name.parse().unwrap(),
        advertise: format!("{name}.local:8080"),
        started_at: Utc::now(),
        version: String::new(),
        leaving: false,
    }
}

async fn connect(server: &NatsServer, name: &str) -> Nats {
    Nats::connect(&server.url(), &name.parse().unwrap())
        .await
        .unwrap()
}

async fn node(server: &NatsServer, name: &str) -> ClusterNodes {
    ClusterNodes::open(&connect(server, name).await, info(name))
        .await
        .unwrap()
}

async fn live_names(node: &ClusterNodes) -> Vec<String> {
    let live = node.live().await.unwrap();
    live.iter().map(|n| n.name.to_string()).collect()
}

fn dyno(name: &str) -> DynoRecord {
    DynoRecord {
        name: name.to_string(),
        process_type: ProcessType::web(),
        state: DynoState::Up,
        since: Utc::now(),
        next_start: None,
        release: 3,
        command: "serve".to_string(),
    }
}

/// The next item of `changes` within `within`, if any.
async fn change_within(changes: &mut BoxStream<'static, ()>, within: Duration) -> bool {
    matches!(
        tokio::time::timeout(within, changes.next()).await,
        Ok(Some(()))
    )
}

/// Takes every item already there or arriving within 300 ms.
async fn drain(changes: &mut BoxStream<'static, ()>) {
    while change_within(changes, Duration::from_millis(300)).await {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_join_leave_and_expire() {
    let server = NatsServer::start().unwrap();
    let a = node(&server, "node-a").await;
    let b = node(&server, "node-b").await;
    assert!(a.is_connected());
    assert_eq!(live_names(&a).await, Vec::<String>::new());

    a.heartbeat(false).await.unwrap();
    b.heartbeat(false).await.unwrap();
    assert_eq!(live_names(&a).await, ["node-a", "node-b"]);
    assert_eq!(
        b.live().await.unwrap(),
        vec![a.me().clone(), b.me().clone()]
    );

    // A node stopping says so first, and is still live while it hands its dynos over.
    b.heartbeat(true).await.unwrap();
    let leaving: Vec<(String, bool)> = (a.live().await.unwrap().into_iter())
        .map(|n| (n.name.to_string(), n.leaving))
        .collect();
    assert_eq!(
        leaving,
        [("node-a".to_string(), false), ("node-b".to_string(), true)]
    );

    // A clean stop takes the node out at once.
    b.leave().await.unwrap();
    assert_eq!(live_names(&a).await, ["node-a"]);

    // A node that stops heartbeating is gone within the TTL (and a bit), and the others
    // hear of it.
    let mut changes = a.changes().await.unwrap();
    b.heartbeat(false).await.unwrap();
    assert!(change_within(&mut changes, Duration::from_secs(2)).await);
    drain(&mut changes).await;
    let last_beat = Instant::now();
    b.heartbeat(false).await.unwrap();
    let gone = loop {
        a.heartbeat(false).await.unwrap();
        let live = live_names(&a).await;
        assert!(live.contains(&"node-a".to_string()));
        if !live.contains(&"node-b".to_string()) {
            break last_beat.elapsed();
        }
        assert!(
            last_beat.elapsed() < HEARTBEAT_TTL + Duration::from_secs(3),
            "node-b still live"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("node-b gone {gone:?} after its last heartbeat");
    assert!(
        gone >= HEARTBEAT_TTL - Duration::from_millis(500),
        "{gone:?}"
    );
    assert!(gone <= HEARTBEAT_TTL + Duration::from_secs(1), "{gone:?}");
    // Its expiry is a change (its heartbeats, and a's, were not).
    assert!(change_within(&mut changes, Duration::from_secs(2)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dyno_records_per_app_and_node() {
    let server = NatsServer::start().unwrap();
    let a = node(&server, "node-a").await;
    let b = node(&server, "node-b").await;
    let (app1, app2, app3) = (AppId::random(), AppId::random(), AppId::random());

    a.set_dynos(&app1, vec![dyno("web.1"), dyno("web.2")])
        .await
        .unwrap();
    b.set_dynos(&app1, vec![dyno("web.3")]).await.unwrap();
    b.set_dynos(&app2, vec![dyno("web.1")]).await.unwrap();

    let of_app1 = b.dynos(&app1).await.unwrap();
    assert_eq!(of_app1.len(), 2);
    assert_eq!(of_app1[0].node.as_str(), "node-a");
    assert_eq!(dyno_names(&of_app1[0]), ["web.1", "web.2"]);
    assert_eq!(of_app1[0].dynos[0].command, "serve");
    assert_eq!(of_app1[1].node.as_str(), "node-b");
    assert_eq!(of_app1[1].dynos.len(), 1);
    let of_app2 = a.dynos(&app2).await.unwrap();
    assert_eq!(of_app2.len(), 1);
    assert_eq!(of_app2[0].node.as_str(), "node-b");
    assert_eq!(of_app2[0].dynos[0].name, "web.1");
    // No record at all: an empty answer, at once.
    let started = Instant::now();
    assert!(a.dynos(&app3).await.unwrap().is_empty());
    assert!(started.elapsed() < Duration::from_secs(1));

    // Replacing, then removing.
    a.set_dynos(&app1, vec![dyno("web.9")]).await.unwrap();
    let of_app1 = b.dynos(&app1).await.unwrap();
    assert_eq!(of_app1[0].dynos.len(), 1);
    assert_eq!(of_app1[0].dynos[0].name, "web.9");
    a.set_dynos(&app1, vec![]).await.unwrap();
    let of_app1 = b.dynos(&app1).await.unwrap();
    assert_eq!(of_app1.len(), 1);
    assert_eq!(of_app1[0].node.as_str(), "node-b");
    b.set_dynos(&app1, vec![]).await.unwrap();
    assert!(a.dynos(&app1).await.unwrap().is_empty());
    assert_eq!(a.dynos(&app2).await.unwrap().len(), 1);

    // Reads leave no consumers behind: only the two nodes' change watches remain.
    for _ in 0..20 {
        a.dynos(&app2).await.unwrap();
        a.dynos(&app3).await.unwrap();
    }
    let mut stream = a.dynos.stream.clone();
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let consumers = stream.info().await.unwrap().state.consumer_count;
        if consumers == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "{consumers} consumers");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_node_stops_its_watcher() {
    let server = NatsServer::start().unwrap();
    let a = node(&server, "node-a").await;
    let mut changes = a.changes().await.unwrap();
    drop(a);
    // The watcher ended (and with it the hints' source): the stream ends.
    let ended = tokio::time::timeout(Duration::from_secs(2), changes.next()).await;
    assert!(matches!(ended, Ok(None)), "{ended:?}");
}

fn dyno_names(node: &NodeDynos) -> Vec<&str> {
    node.dynos.iter().map(|d| d.name.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_follow_other_connections_and_outlive_an_outage() {
    let mut server = NatsServer::start().unwrap();
    let a = node(&server, "node-a").await;
    let other = connect(&server, "control").await;
    let formation = other
        .bucket(plain_bucket("wdeploy-formation"))
        .await
        .unwrap();
    let mut changes = a.changes().await.unwrap();
    drain(&mut changes).await;

    formation.put("app.web", "2".into()).await.unwrap();
    assert!(change_within(&mut changes, Duration::from_secs(2)).await);
    drain(&mut changes).await;
    // A burst is at least one item (here, likely merged).
    for n in 0..50 {
        formation
            .put("app.web", n.to_string().into())
            .await
            .unwrap();
    }
    assert!(change_within(&mut changes, Duration::from_secs(2)).await);
    drain(&mut changes).await;

    server.stop();
    let deadline = Instant::now() + Duration::from_secs(5);
    while a.is_connected() {
        assert!(Instant::now() < deadline, "still connected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(matches!(a.live().await, Err(StoreError::Unavailable(_))));
    assert!(matches!(
        a.changes().await.map(|_| ()),
        Err(StoreError::Unavailable(_))
    ));

    server.resume().unwrap();
    let started = Instant::now();
    // One item after the reconnect: changes may have been missed meanwhile.
    assert!(change_within(&mut changes, Duration::from_secs(10)).await);
    eprintln!(
        "change hint {:?} after the server came back",
        started.elapsed()
    );
    assert!(a.is_connected());
    drain(&mut changes).await;

    formation.put("app.web", "3".into()).await.unwrap();
    assert!(change_within(&mut changes, Duration::from_secs(3)).await);
    a.set_dynos(&AppId::random(), vec![dyno("web.1")])
        .await
        .unwrap();
    drain(&mut changes).await;
    // Control buckets the node created itself are watched as well.
    let releases = other.js.get_key_value("wdeploy-releases").await.unwrap();
    releases.put("app.v1", "{}".into()).await.unwrap();
    assert!(change_within(&mut changes, Duration::from_secs(3)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_holds_the_same_cluster_key_and_a_foreign_one_is_refused() {
    let server = NatsServer::start().unwrap();
    let (a, b) = tokio::join!(node(&server, "node-a"), node(&server, "node-b"));
    // Asked at the same moment by two nodes: one creates it, both get that one.
    let (from_a, from_b) = tokio::join!(a.cluster_key(), b.cluster_key());
    let key = from_a.unwrap();
    assert_eq!(from_b.unwrap(), key);
    assert_eq!(format!("{key:?}"), "ClusterKey(..)");
    // A node joining later, or asking again, gets the same key.
    let c = node(&server, "node-c").await;
    assert_eq!(c.cluster_key().await.unwrap(), key);
    assert_eq!(a.cluster_key().await.unwrap(), key);
    // A key someone else wrote there is refused with a way out, never used.
    let meta = connect(&server, "node-d").await.meta().await.unwrap();
    meta.put(CLUSTER_KEY, b"short".to_vec().into())
        .await
        .unwrap();
    let refused = c.cluster_key().await.unwrap_err().to_string();
    assert!(
        refused.contains("5 bytes") && refused.contains("remove it"),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_is_every_nodes_and_the_one_it_replaced_is_trusted_for_the_grace() {
    let server = NatsServer::start().unwrap();
    let (a, b) = tokio::join!(node(&server, "node-a"), node(&server, "node-b"));
    let first = a.cluster_keys().await.unwrap();
    assert_eq!(first.previous, None);
    assert_eq!(b.cluster_keys().await.unwrap(), first);

    let before = Utc::now();
    let rotated = b.rotate_cluster_key(Duration::from_secs(60)).await.unwrap();
    assert_ne!(rotated.current, first.current);
    let (old, until) = rotated.previous.clone().unwrap();
    assert_eq!(old, first.current);
    assert!(until >= before + chrono::Duration::seconds(60), "{until}");
    // Every node reads the same, the plain key included.
    assert_eq!(a.cluster_keys().await.unwrap(), rotated);
    assert_eq!(a.cluster_key().await.unwrap(), rotated.current);
    assert_eq!(rotated.previous_at(Utc::now()), Some(&first.current));
    assert_eq!(
        rotated.previous_at(until),
        None,
        "trusted until then, not after"
    );

    // Rotated again: the first key is trusted no more at all.
    let again = a.rotate_cluster_key(Duration::ZERO).await.unwrap();
    assert_eq!(again.previous.as_ref().unwrap().0, rotated.current);
    assert_eq!(again.previous_at(Utc::now()), None);
    assert_eq!(b.cluster_keys().await.unwrap(), again);
}
