//! The cluster add-on store against a real `nats-server`, each "node" its own connection.

use super::*;
use crate::cluster::testing::NatsServer;
use std::sync::Arc;
use std::time::Instant;
use wdeploy_core::addons::{MAX_BATCH, MAX_KEY_BYTES, MAX_LEASE, MAX_PAYLOAD_BYTES, PAGE_KEYS};

const LEASE: Duration = Duration::from_secs(30);
const NO_QUOTA: u64 = 1 << 40;

/// A server and `n` nodes' add-on stores on it, each over its own connection.
async fn cluster(n: usize) -> (NatsServer, Vec<Arc<ClusterAddons>>) {
    let server = NatsServer::start().expect("start nats-server");
    let mut nodes = Vec::new();
    for i in 0..n {
        let name = format!("node-{i}").parse().unwrap();
        let nats = Nats::connect(&server.url(), &name).await.unwrap();
        nodes.push(Arc::new(ClusterAddons::open(&nats).await.unwrap()));
    }
    (server, nodes)
}

/// A registered app with `quota` bytes.
async fn register(store: &ClusterAddons, quota: u64) -> Tenant {
    let app = Tenant {
        app: AppId::random(),
        quota_bytes: quota,
    };
    store.create_app(&app.app).await.unwrap();
    app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_with_any_bytes_are_shared_listed_in_byte_order_and_per_app() {
    let (_server, nodes) = cluster(2).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let app = register(a, NO_QUOTA).await;
    let other = register(a, NO_QUOTA).await;

    let odd = [
        "",
        "user/ä",
        "user/.",
        "user/*",
        "user/>",
        "user/ ",
        "user/\n",
        "user/🦀",
        "user/a.b",
        "users",
    ];
    for key in odd {
        a.set(&app, "we.ird bucket*", key, key.as_bytes().to_vec())
            .await
            .unwrap();
    }
    // Another bucket and another app: never listed.
    a.set(&app, "other", "user/x", b"x".to_vec()).await.unwrap();
    a.set(&other, "we.ird bucket*", "user/y", b"y".to_vec())
        .await
        .unwrap();
    for key in odd {
        let value = b.get(&app, "we.ird bucket*", key).await.unwrap();
        assert_eq!(value.as_deref(), Some(key.as_bytes()), "{key:?}");
        assert!(b.exists(&app, "we.ird bucket*", key).await.unwrap());
    }
    let mut expected: Vec<String> = odd
        .iter()
        .filter(|k| k.starts_with("user/"))
        .map(|k| k.to_string())
        .collect();
    expected.sort();
    let page = b.keys(&app, "we.ird bucket*", "user/", 0).await.unwrap();
    assert_eq!(
        page,
        KeyPage {
            keys: expected,
            next: None
        }
    );
    assert_eq!(
        b.keys(&app, "we.ird bucket*", "", 0)
            .await
            .unwrap()
            .keys
            .len(),
        odd.len()
    );
    // Nothing matches: an empty page at once.
    let started = Instant::now();
    let none = b.keys(&app, "never written", "", 0).await.unwrap();
    assert_eq!(
        none,
        KeyPage {
            keys: vec![],
            next: None
        }
    );
    assert!(started.elapsed() < Duration::from_secs(1));

    b.delete(&app, "we.ird bucket*", "user/*").await.unwrap();
    b.delete(&app, "we.ird bucket*", "never there")
        .await
        .unwrap();
    assert_eq!(a.get(&app, "we.ird bucket*", "user/*").await.unwrap(), None);
    assert!(!a.exists(&app, "we.ird bucket*", "user/*").await.unwrap());

    // Pages of PAGE_KEYS, across a batch set on one node and listed on the other.
    let entries: Vec<(String, Vec<u8>)> = (0..MAX_BATCH)
        .map(|n| (format!("page/{n:05}"), b"x".to_vec()))
        .collect();
    a.set_many(&app, "default", entries).await.unwrap();
    for n in MAX_BATCH..PAGE_KEYS + 5 {
        a.set(&app, "default", &format!("page/{n:05}"), b"x".to_vec())
            .await
            .unwrap();
    }
    let first = b.keys(&app, "default", "page/", 0).await.unwrap();
    assert_eq!(first.keys.len(), PAGE_KEYS);
    assert_eq!(first.keys[0], "page/00000");
    let second = b
        .keys(&app, "default", "page/", first.next.unwrap())
        .await
        .unwrap();
    assert_eq!(second.keys.len(), 5);
    assert_eq!(second.keys[4], format!("page/{:05}", PAGE_KEYS + 4));
    assert_eq!(second.next, None);

    let got = b
        .get_many(&app, "default", vec!["page/00001".into(), "nope".into()])
        .await
        .unwrap();
    assert_eq!(got, vec![Some(b"x".to_vec()), None]);
    b.delete_many(&app, "default", vec!["page/00001".into(), "nope".into()])
        .await
        .unwrap();
    assert!(!a.exists(&app, "default", "page/00001").await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_increments_over_three_nodes_count_exactly() {
    let (_server, nodes) = cluster(3).await;
    let app = register(&nodes[0], NO_QUOTA).await;
    let started = Instant::now();
    let tasks: Vec<_> = (0..300)
        .map(|n| {
            let (node, app) = (nodes[n % 3].clone(), app.clone());
            tokio::spawn(async move { node.increment(&app, "default", "hits", 1).await })
        })
        .collect();
    let mut seen = Vec::new();
    for task in tasks {
        seen.push(task.await.unwrap().unwrap());
    }
    seen.sort_unstable();
    assert_eq!(seen, (1..=300).collect::<Vec<u64>>());
    let value = nodes[1].get(&app, "default", "hits").await.unwrap();
    assert_eq!(value.as_deref(), Some(&b"300"[..]));
    // Usage counts the counter once, at its final size.
    let usage = nodes[2].usage(&app.app).await.unwrap();
    assert_eq!(usage, stored_bytes("default", "hits", 3));
    eprintln!(
        "300 concurrent increments over 3 nodes: {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_on_two_nodes_process_every_job_exactly_once() {
    let (_server, nodes) = cluster(2).await;
    let app = register(&nodes[0], NO_QUOTA).await;
    let mut ids = Vec::new();
    for n in 0..20 {
        let node = &nodes[n % 2];
        ids.push(
            node.enqueue(&app, "jobs", format!("job {n}").into_bytes())
                .await
                .unwrap(),
        );
    }
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), 20, "job ids are unique across nodes: {ids:?}");

    let started = Instant::now();
    let workers: Vec<_> = (0..6)
        .map(|w| {
            let (node, app) = (nodes[w % 2].clone(), app.clone());
            tokio::spawn(async move {
                let mut done = Vec::new();
                while let Some(job) = node.take(&app, "jobs", LEASE).await.unwrap() {
                    assert_eq!(job.attempt, 1);
                    node.ack(&app, job.id).await.unwrap();
                    done.push((job.id, job.payload));
                }
                done
            })
        })
        .collect();
    let mut processed = Vec::new();
    for worker in workers {
        processed.extend(worker.await.unwrap());
    }
    processed.sort_unstable();
    let got: Vec<u64> = processed.iter().map(|(id, _)| *id).collect();
    assert_eq!(got, unique, "each job exactly once");
    let stats = nodes[1].queue_stats(&app).await.unwrap();
    let expected = QueueStats {
        queue: "jobs".into(),
        ready: 0,
        leased: 0,
        done: 20,
    };
    assert_eq!(stats, vec![expected]);
    eprintln!("20 jobs by 6 workers on 2 nodes: {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_lease_expires_is_taken_again_by_another_node() {
    let (_server, nodes) = cluster(2).await;
    let app = register(&nodes[0], NO_QUOTA).await;
    let id = nodes[0]
        .enqueue(&app, "jobs", b"work".to_vec())
        .await
        .unwrap();
    let lease = Duration::from_secs(1);
    let first = nodes[0].take(&app, "jobs", lease).await.unwrap().unwrap();
    assert_eq!((first.id, first.attempt), (id, 1));
    assert_eq!(nodes[1].take(&app, "jobs", lease).await.unwrap(), None);
    let stats = nodes[1].queue_stats(&app).await.unwrap();
    assert_eq!((stats[0].ready, stats[0].leased), (0, 1));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let again = nodes[1].take(&app, "jobs", LEASE).await.unwrap().unwrap();
    assert_eq!(
        (again.id, again.attempt, again.payload),
        (id, 2, b"work".to_vec())
    );
    nodes[1].ack(&app, id).await.unwrap();
    // The first worker's late ack is harmless; an id the app never had is not.
    nodes[0].ack(&app, id).await.unwrap();
    assert!(matches!(
        nodes[0].ack(&app, id + 1).await,
        Err(AddonError::NoSuchJob(_))
    ));
    assert_eq!(nodes[0].take(&app, "jobs", LEASE).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn done_jobs_are_forgotten_after_the_retention() {
    let (_server, nodes) = cluster(1).await;
    let store = &nodes[0];
    let app = register(store, NO_QUOTA).await;
    let now = now_ms();
    let old = store
        .enqueue_at(&app, "jobs", b"old".to_vec(), now)
        .await
        .unwrap();
    store.take_at(&app, "jobs", LEASE, now).await.unwrap();
    store.ack_at(&app, old, now).await.unwrap();
    let new = store
        .enqueue_at(&app, "jobs", b"new".to_vec(), now)
        .await
        .unwrap();
    let later = now + DONE_RETENTION_MS + 1;
    store.take_at(&app, "jobs", LEASE, later).await.unwrap();
    let before = store.usage(&app.app).await.unwrap();
    store.ack_at(&app, new, later).await.unwrap();
    assert_eq!(store.queue_stats_at(&app, later).await.unwrap()[0].done, 1);
    let after = store.usage(&app.app).await.unwrap();
    assert_eq!(before - after, stored_bytes("jobs", "", 3));
}

const DONE_RETENTION_MS: i64 = wdeploy_core::addons::DONE_RETENTION.as_millis() as i64;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quota_refuses_what_would_pass_it_and_deletes_give_room_back() {
    let (_server, nodes) = cluster(2).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let entry = stored_bytes("default", "k0", 100);
    let quota = entry * 3;
    let app = register(a, quota).await;
    for n in 0..3 {
        nodes[n % 2]
            .set(&app, "default", &format!("k{n}"), vec![0; 100])
            .await
            .unwrap();
    }
    assert_eq!(b.usage(&app.app).await.unwrap(), quota);
    let err = b
        .set(&app, "default", "k3", vec![0; 100])
        .await
        .unwrap_err();
    assert!(
        matches!(err, AddonError::OverQuota { used, quota: q, .. } if used == quota && q == quota),
        "{err}"
    );
    assert!(matches!(
        a.enqueue(&app, "jobs", b"x".to_vec()).await,
        Err(AddonError::OverQuota { .. })
    ));
    assert!(matches!(
        a.set_many(&app, "default", vec![("k9".into(), vec![1])])
            .await,
        Err(AddonError::OverQuota { .. })
    ));
    assert!(matches!(
        a.increment(&app, "default", "n", 1).await,
        Err(AddonError::OverQuota { .. })
    ));
    // Overwriting with a value no bigger fits; a bigger one does not.
    a.set(&app, "default", "k0", vec![1; 50]).await.unwrap();
    assert!(b.set(&app, "default", "k1", vec![1; 200]).await.is_err());
    assert_eq!(a.usage(&app.app).await.unwrap(), quota - 50);
    // Deleting gives room back.
    b.delete(&app, "default", "k2").await.unwrap();
    a.delete_many(&app, "default", vec!["k1".into(), "nope".into()])
        .await
        .unwrap();
    assert_eq!(
        b.usage(&app.app).await.unwrap(),
        stored_bytes("default", "k0", 50)
    );
    b.enqueue(&app, "jobs", vec![0; 100]).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_of_an_app_not_registered_or_deleted_are_refused() {
    let (_server, nodes) = cluster(2).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let never = Tenant {
        app: AppId::random(),
        quota_bytes: NO_QUOTA,
    };
    assert!(matches!(
        a.set(&never, "default", "k", b"v".to_vec()).await,
        Err(AddonError::AppGone)
    ));
    let app = register(a, NO_QUOTA).await;
    let neighbour = register(b, NO_QUOTA).await;
    a.set(&app, "default", "k", b"v".to_vec()).await.unwrap();
    a.increment(&app, "default", "n", 1).await.unwrap();
    let id = a.enqueue(&app, "jobs", b"j".to_vec()).await.unwrap();
    b.set(&neighbour, "default", "k", b"v".to_vec())
        .await
        .unwrap();
    b.delete_app(&app.app).await.unwrap();

    for write in [
        a.set(&app, "default", "k", b"v".to_vec()).await.map(drop),
        a.increment(&app, "default", "n", 1).await.map(drop),
        a.enqueue(&app, "jobs", b"j".to_vec()).await.map(drop),
        a.set_many(&app, "default", vec![("x".into(), vec![])])
            .await,
    ] {
        assert!(matches!(write, Err(AddonError::AppGone)), "{write:?}");
    }
    assert_eq!(a.get(&app, "default", "k").await.unwrap(), None);
    assert_eq!(a.keys(&app, "default", "", 0).await.unwrap().keys.len(), 0);
    assert_eq!(a.take(&app, "jobs", LEASE).await.unwrap(), None);
    assert!(matches!(
        a.ack(&app, id).await,
        Err(AddonError::NoSuchJob(_))
    ));
    assert!(a.queue_stats(&app).await.unwrap().is_empty());
    assert_eq!(a.usage(&app.app).await.unwrap(), 0);
    // Its neighbour is untouched.
    let kept = a.get(&neighbour, "default", "k").await.unwrap();
    assert_eq!(kept.as_deref(), Some(&b"v"[..]));
}

/// Runs the same calls on the embedded and the cluster backends and compares every
/// answer (errors included, by their `Debug`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_answers_as_the_embedded_backend_does() {
    let (_server, nodes) = cluster(1).await;
    let dir = tempfile::tempdir().unwrap();
    let embedded = crate::embedded::open_addons(&dir.path().join("addons.db"), &[]).unwrap();
    let cluster: Arc<dyn AddonStore> = nodes[0].clone();
    let id = AppId::random();
    let quota = 2_000;
    let app = Tenant {
        app: id.clone(),
        quota_bytes: quota,
    };
    let mut answers: [Vec<String>; 2] = [Vec::new(), Vec::new()];
    for (store, out) in [embedded, cluster].iter().zip(answers.iter_mut()) {
        let mut log = |what: &str, answer: String| out.push(format!("{what}: {answer}"));
        log(
            "unregistered set",
            format!("{:?}", store.set(&app, "b", "k", vec![1]).await),
        );
        store.create_app(&id).await.unwrap();
        log("create again", format!("{:?}", store.create_app(&id).await));
        let long_key = "k".repeat(MAX_KEY_BYTES + 1);
        let calls = [
            format!("{:?}", store.set(&app, "b", "k", b"v".to_vec()).await),
            format!("{:?}", store.set(&app, "b", &long_key, b"v".to_vec()).await),
            format!(
                "{:?}",
                store.set(&app, "b", "big", vec![0; (1 << 20) + 1]).await
            ),
            format!("{:?}", store.get(&app, "", "k").await),
            format!("{:?}", store.get(&app, &"b".repeat(65), "k").await),
            format!("{:?}", store.keys(&app, "b", &long_key, 0).await),
            format!(
                "{:?}",
                store
                    .get_many(&app, "b", vec![String::new(); MAX_BATCH + 1])
                    .await
            ),
            format!("{:?}", store.set(&app, "b", "word", b"abc".to_vec()).await),
            format!("{:?}", store.increment(&app, "b", "word", 1).await),
            format!(
                "{:?}",
                store
                    .set(&app, "b", "max", u64::MAX.to_string().into())
                    .await
            ),
            format!("{:?}", store.increment(&app, "b", "max", 1).await),
            format!("{:?}", store.increment(&app, "b", "n", 41).await),
            format!("{:?}", store.increment(&app, "b", "n", 1).await),
            format!("{:?}", store.get(&app, "b", "n").await),
            format!(
                "{:?}",
                store
                    .set_many(
                        &app,
                        "b",
                        vec![
                            ("ok".into(), b"1".to_vec()),
                            ("x".into(), vec![0; (1 << 20) + 1])
                        ]
                    )
                    .await
            ),
            format!("{:?}", store.exists(&app, "b", "ok").await),
            format!(
                "{:?}",
                store
                    .set_many(
                        &app,
                        "b",
                        vec![("a".into(), b"1".to_vec()), ("c".into(), b"2".to_vec())]
                    )
                    .await
            ),
            format!("{:?}", store.keys(&app, "b", "", 0).await),
            format!(
                "{:?}",
                store
                    .get_many(&app, "b", vec!["c".into(), "no".into(), "a".into()])
                    .await
            ),
            format!(
                "{:?}",
                store
                    .delete_many(&app, "b", vec!["a".into(), "no".into()])
                    .await
            ),
            format!("{:?}", store.keys(&app, "b", "", 0).await),
            format!("{:?}", store.usage(&id).await),
            format!("{:?}", store.set(&app, "b", "huge", vec![0; 2_000]).await),
            format!("{:?}", store.enqueue(&app, "q2", b"one".to_vec()).await),
            format!("{:?}", store.enqueue(&app, "q1", b"two".to_vec()).await),
            format!("{:?}", store.enqueue(&app, "q1", b"three".to_vec()).await),
            format!("{:?}", store.enqueue(&app, "", b"x".to_vec()).await),
            format!(
                "{:?}",
                store
                    .enqueue(&app, "q1", vec![0; MAX_PAYLOAD_BYTES + 1])
                    .await
            ),
            format!("{:?}", store.take(&app, "q1", Duration::ZERO).await),
            format!(
                "{:?}",
                store
                    .take(&app, "q1", MAX_LEASE + Duration::from_secs(1))
                    .await
            ),
            format!("{:?}", store.take(&app, "q1", LEASE).await),
            format!("{:?}", store.ack(&app, 2).await),
            format!("{:?}", store.ack(&app, 2).await),
            format!("{:?}", store.ack(&app, u64::MAX).await),
            format!("{:?}", store.take(&app, "q1", LEASE).await),
            format!("{:?}", store.take(&app, "q1", LEASE).await),
            format!("{:?}", store.queue_stats(&app).await),
            format!("{:?}", store.usage(&id).await),
            format!("{:?}", store.delete(&app, "b", "k").await),
            format!("{:?}", store.usage(&id).await),
        ];
        for (n, answer) in calls.into_iter().enumerate() {
            log(&format!("call {n}"), answer);
        }
        store.delete_app(&id).await.unwrap();
        log(
            "usage after delete",
            format!("{:?}", store.usage(&id).await),
        );
        log(
            "set after delete",
            format!("{:?}", store.set(&app, "b", "k", vec![]).await),
        );
    }
    let [embedded, cluster] = answers;
    for (e, c) in embedded.iter().zip(&cluster) {
        assert_eq!(e, c);
    }
    assert_eq!(embedded.len(), cluster.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_fail_fast_while_nats_is_down() {
    let (mut server, nodes) = cluster(1).await;
    let store = &nodes[0];
    let app = register(store, NO_QUOTA).await;
    store
        .set(&app, "default", "k", b"v".to_vec())
        .await
        .unwrap();
    server.stop();
    let deadline = Instant::now() + Duration::from_secs(5);
    while store.nats.is_connected() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = Instant::now();
    let answers = [
        store.get(&app, "default", "k").await.map(drop),
        store.set(&app, "default", "k", b"v".to_vec()).await,
        store.increment(&app, "default", "n", 1).await.map(drop),
        store.keys(&app, "default", "", 0).await.map(drop),
        store.enqueue(&app, "jobs", b"j".to_vec()).await.map(drop),
        store.take(&app, "jobs", LEASE).await.map(drop),
        store.ack(&app, 1).await,
        store.queue_stats(&app).await.map(drop),
        store.usage(&app.app).await.map(drop),
        store.create_app(&AppId::random()).await,
        store.delete_app(&app.app).await,
    ];
    let took = started.elapsed();
    for answer in answers {
        let err = answer.unwrap_err();
        assert!(
            matches!(&err, AddonError::Backend(m) if m.contains("the cluster store is unavailable")),
            "{err}"
        );
    }
    assert!(took < Duration::from_secs(1), "took {took:?}");

    // Back with the server: the data is still there.
    server.resume().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !store.nats.is_connected() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let value = store.get(&app, "default", "k").await.unwrap();
    assert_eq!(value.as_deref(), Some(&b"v"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_longest_key_fits_and_a_value_over_max_payload_is_refused_cleanly() {
    let (_server, nodes) = cluster(1).await;
    let store = &nodes[0];
    let app = register(store, NO_QUOTA).await;
    let key = "\u{7f}".repeat(MAX_KEY_BYTES);
    let bucket = "\u{1}".repeat(wdeploy_core::addons::MAX_NAME_BYTES);
    store.set(&app, &bucket, &key, b"v".to_vec()).await.unwrap();
    assert_eq!(
        store.keys(&app, &bucket, &key, 0).await.unwrap().keys,
        vec![key.clone()]
    );
    let value = vec![7; wdeploy_core::addons::MAX_VALUE_BYTES];
    let started = Instant::now();
    let written = store.set(&app, "default", "big", value).await;
    // The test server keeps NATS's default max_payload (1 MB): refused before sending,
    // so the connection stays up (the server would close it) and usage is handed back.
    assert!(
        matches!(&written, Err(AddonError::Backend(m)) if m.contains("max_payload: 2MB")),
        "{written:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(store.nats.is_connected());
    assert_eq!(
        store.usage(&app.app).await.unwrap(),
        stored_bytes(&bucket, &key, 1)
    );
    let fits = vec![7; 1_000_000];
    store
        .set(&app, "default", "big", fits.clone())
        .await
        .unwrap();
    let read = store.get(&app, "default", "big").await.unwrap();
    assert_eq!(read, Some(fits));
    let payload = vec![7; MAX_PAYLOAD_BYTES];
    let id = store.enqueue(&app, "jobs", payload.clone()).await.unwrap();
    let job = store.take(&app, "jobs", LEASE).await.unwrap().unwrap();
    assert_eq!((job.id, job.payload), (id, payload));
}
