//! The cluster control store against a real `nats-server`, reached by two connections
//! as two nodes would: create-if-absent and compare-and-swap hold across them.

use futures::TryStreamExt;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wdeploy_core::{AppName, Digest, Domain, Formation, ReleaseStatus};
use wdeploy_store::cluster::testing::NatsServer;
use wdeploy_store::cluster::{ClusterControl, Nats};
use wdeploy_store::{ControlStore, NewRelease, StoreError};

async fn node(server: &NatsServer, name: &str) -> (Nats, Arc<ClusterControl>) {
    let nats = Nats::connect(&server.url(), &name.parse().unwrap())
        .await
        .unwrap();
    let control = ClusterControl::open(&nats).await.unwrap();
    (nats, Arc::new(control))
}

async fn two_nodes() -> (NatsServer, Arc<ClusterControl>, Arc<ClusterControl>) {
    let server = NatsServer::start().unwrap();
    let (_, a) = node(&server, "node-a").await;
    let (_, b) = node(&server, "node-b").await;
    (server, a, b)
}

fn name(s: &str) -> AppName {
    s.parse().unwrap()
}

fn deploy(description: &str) -> NewRelease {
    NewRelease {
        node: None,
        slug: Some(Digest::of_bytes(b"slug")),
        procfile: "web: web\n".into(),
        settings: String::new(),
        config: BTreeMap::new(),
        description: description.into(),
        author: "admin".into(),
        created_at: None,
    }
}

fn config_change(config: BTreeMap<String, String>) -> NewRelease {
    NewRelease {
        node: None,
        slug: None,
        config,
        ..deploy("Set config")
    }
}

fn formation(json: &str) -> Formation {
    serde_json::from_str(json).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_are_created_once_and_deleted_with_their_data() {
    let (server, a, b) = two_nodes().await;
    let hello = name("hello");
    let first = a.create_app(&hello).await.unwrap();
    let err = b.create_app(&hello).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    b.create_app(&name("abc")).await.unwrap();
    let names: Vec<String> = a
        .apps()
        .await
        .unwrap()
        .iter()
        .map(|app| app.name.to_string())
        .collect();
    assert_eq!(names, ["abc", "hello"]);
    assert_eq!(b.app(&hello).await.unwrap(), first);
    assert!(matches!(
        a.app(&name("nope")).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        a.releases(&name("nope")).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        a.append_release(&name("nope"), 1, deploy("x")).await,
        Err(StoreError::NotFound(_))
    ));

    a.append_release(&hello, 1, deploy("Deploy 1"))
        .await
        .unwrap();
    a.append_release(&hello, 2, deploy("Deploy 2"))
        .await
        .unwrap();
    a.scale(&hello, &formation(r#"{"web":2}"#)).await.unwrap();
    b.delete_app(&hello).await.unwrap();
    assert!(matches!(
        a.delete_app(&hello).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(a.app(&hello).await, Err(StoreError::NotFound(_))));
    // Its releases (and head) and formation are gone from the buckets, not just unreachable.
    let js = async_nats::jetstream::new(async_nats::connect(server.url()).await.unwrap());
    let releases = js.get_key_value("wdeploy-releases").await.unwrap();
    let keys: Vec<String> = releases.keys().await.unwrap().try_collect().await.unwrap();
    assert!(
        !keys.iter().any(|k| k.starts_with(first.id.as_str())),
        "{keys:?}"
    );
    let formation = js.get_key_value("wdeploy-formation").await.unwrap();
    assert_eq!(formation.get(first.id.as_str()).await.unwrap(), None);

    // A new app of the same name is someone else, and starts empty at v1.
    let again = a.create_app(&hello).await.unwrap();
    assert_ne!(again.id, first.id);
    let head = b.release_head(&hello).await.unwrap();
    assert_eq!((head.latest, head.current.is_none()), (0, true));
    assert!(b.releases(&hello).await.unwrap().is_empty());
    assert!(b.formation(&hello).await.unwrap().is_empty());
    let v1 = b.append_release(&hello, 1, deploy("Fresh")).await.unwrap();
    assert_eq!(v1.version, 1);
    assert_eq!(a.apps().await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_appends_of_one_version_have_one_winner() {
    let (_server, a, b) = two_nodes().await;
    let app = name("racer");
    a.create_app(&app).await.unwrap();
    a.append_release(&app, 1, deploy("v1")).await.unwrap();
    for version in 2..=8 {
        let (ra, rb) = tokio::join!(
            a.append_release(&app, version, deploy("from a")),
            b.append_release(&app, version, deploy("from b")),
        );
        let (won, lost) = match (ra, rb) {
            (Ok(won), Err(lost)) | (Err(lost), Ok(won)) => (won, lost),
            (ra, rb) => panic!("v{version}: expected one winner, got {ra:?} and {rb:?}"),
        };
        assert_eq!(won.version, version);
        assert!(
            matches!(lost, StoreError::VersionTaken { version: v, .. } if v == version),
            "{lost}"
        );
        // The log keeps the winner's.
        let stored = b.release(&app, version).await.unwrap();
        assert_eq!(stored.description, won.description);
    }
    // Versions stay dense: a version past the newest + 1 is refused.
    let gap = a.append_release(&app, 10, deploy("gap")).await.unwrap_err();
    assert!(matches!(gap, StoreError::Invalid(_)), "{gap}");
    assert_eq!(a.release_head(&app).await.unwrap().latest, 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_read_modify_writes_on_two_nodes_lose_nothing() {
    let (_server, a, b) = two_nodes().await;
    let app = name("busy");
    a.create_app(&app).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (store, app) = (if i % 2 == 0 { a.clone() } else { b.clone() }, app.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let head = store.release_head(&app).await.unwrap();
                let mut config = head.current.map(|r| r.config).unwrap_or_default();
                config.insert(format!("K{i}"), i.to_string());
                match store
                    .append_release(&app, head.latest + 1, config_change(config))
                    .await
                {
                    Ok(release) => return release.version,
                    Err(StoreError::VersionTaken { .. }) => continue,
                    Err(e) => panic!("cycle {i}: {e}"),
                }
            }
        }));
    }
    let mut versions = Vec::new();
    for task in tasks {
        versions.push(task.await.unwrap());
    }
    versions.sort();
    assert_eq!(versions, (1..=20).collect::<Vec<u64>>());
    let log = b.releases(&app).await.unwrap();
    assert_eq!(
        log.iter().map(|r| r.version).collect::<Vec<_>>(),
        (1..=20).rev().collect::<Vec<u64>>()
    );
    let head = a.release_head(&app).await.unwrap();
    assert_eq!(head.latest, 20);
    let current = head.current.unwrap();
    assert_eq!(current.version, 20);
    assert_eq!(current.config.len(), 20, "every cycle's change is kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releases_finish_once_and_page_like_the_embedded_store() {
    let (_server, a, b) = two_nodes().await;
    let app = name("pages");
    a.create_app(&app).await.unwrap();
    let v1 = a.append_release(&app, 1, deploy("Deploy 1")).await.unwrap();
    assert_eq!(v1.status, ReleaseStatus::Pending);
    b.finish_release(&app, 1, ReleaseStatus::Succeeded)
        .await
        .unwrap();
    a.append_release(&app, 2, deploy("Deploy 2")).await.unwrap();
    a.finish_release(&app, 2, ReleaseStatus::Failed)
        .await
        .unwrap();
    // Only a pending release changes status.
    b.finish_release(&app, 2, ReleaseStatus::Succeeded)
        .await
        .unwrap();
    b.finish_release(&app, 1, ReleaseStatus::Failed)
        .await
        .unwrap();
    a.append_release(&app, 3, deploy("Deploy 3")).await.unwrap();
    // Finishing what does not exist changes nothing, like the embedded store.
    a.finish_release(&app, 9, ReleaseStatus::Failed)
        .await
        .unwrap();
    a.finish_release(&name("nope"), 1, ReleaseStatus::Failed)
        .await
        .unwrap();

    let statuses: Vec<ReleaseStatus> = b
        .releases(&app)
        .await
        .unwrap()
        .iter()
        .map(|r| r.status)
        .collect();
    use ReleaseStatus::*;
    assert_eq!(statuses, [Pending, Failed, Succeeded]);
    let head = b.release_head(&app).await.unwrap();
    assert_eq!((head.latest, head.current.unwrap().version), (3, 1));

    let versions = |before, limit| {
        let b = b.clone();
        let app = app.clone();
        async move {
            let page = b.releases_page(&app, before, limit).await.unwrap();
            page.iter().map(|r| r.version).collect::<Vec<u64>>()
        }
    };
    assert_eq!(versions(None, 2).await, [3, 2]);
    assert_eq!(versions(Some(2), 2).await, [1]);
    assert_eq!(versions(Some(1), 2).await, Vec::<u64>::new());
    assert_eq!(versions(Some(u64::MAX), 10).await, [3, 2, 1]);
    assert_eq!(versions(None, 0).await, Vec::<u64>::new());
    let release = a.release(&app, 2).await.unwrap();
    assert_eq!(
        (release.app.as_str(), release.description.as_str()),
        ("pages", "Deploy 2")
    );
    assert!(matches!(
        a.release(&app, 4).await,
        Err(StoreError::NotFound(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_scales_on_two_nodes_all_land() {
    let (_server, a, b) = two_nodes().await;
    let app = name("scaled");
    a.create_app(&app).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..10u32 {
        let (store, app) = (if i % 2 == 0 { a.clone() } else { b.clone() }, app.clone());
        tasks.push(tokio::spawn(async move {
            let patch = formation(&format!(r#"{{"p{i}":{i},"web":{i}}}"#));
            store.scale(&app, &patch).await.unwrap()
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let after = b.formation(&app).await.unwrap();
    for i in 0..10u32 {
        assert_eq!(after.quantity(format!("p{i}")), i, "{}", after.summary());
    }
    let after = a.scale(&app, &formation(r#"{"web":7}"#)).await.unwrap();
    assert_eq!((after.quantity("web"), after.quantity("p3")), (7, 3));
    assert!(matches!(
        a.formation(&name("nope")).await,
        Err(StoreError::NotFound(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_tokens_and_access_are_shared() {
    use wdeploy_core::{Person, TokenId};
    use wdeploy_store::cluster::ClusterPeople;
    use wdeploy_store::{AppId, People, TokenRecord};
    let server = NatsServer::start().unwrap();
    let (nats_a, _) = node(&server, "node-a").await;
    let (nats_b, _) = node(&server, "node-b").await;
    let a = ClusterPeople::open(&nats_a).await.unwrap();
    let b = ClusterPeople::open(&nats_b).await.unwrap();
    assert!(!b.has_tokens().await.unwrap());
    let ann: Person = "ann@x.io".parse().unwrap();
    a.ensure_user(&Person::admin(), true).await.unwrap();
    b.add_user(&ann, false).await.unwrap();
    assert!(matches!(
        a.add_user(&ann, true).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(!b.ensure_user(&ann, true).await.unwrap().admin);
    let token = TokenRecord {
        id: TokenId::from_random(&[1, 2, 3, 4, 5, 6]),
        hash: Digest::of_bytes(b"token"),
        user: ann.clone(),
        description: "laptop".into(),
        created_at: chrono::Utc::now(),
    };
    a.add_token(&token).await.unwrap();
    assert!(b.has_tokens().await.unwrap());
    let owner = b.token(&token.hash).await.unwrap().unwrap();
    assert_eq!(
        (owner.token.id.clone(), owner.admin),
        (token.id.clone(), false)
    );
    assert_eq!(b.token(&Digest::of_bytes(b"other")).await.unwrap(), None);
    assert_eq!(b.tokens().await.unwrap().len(), 1);

    let (app, other) = (AppId::random(), AppId::random());
    a.grant(&app, &ann).await.unwrap();
    a.grant(&app, &ann).await.unwrap();
    a.grant(&other, &Person::admin()).await.unwrap();
    assert!(b.may_act_on(&app, &ann).await.unwrap());
    assert!(!b.may_act_on(&other, &ann).await.unwrap());
    assert_eq!(b.collaborators(&app).await.unwrap(), vec![ann.clone()]);
    assert_eq!(b.apps_of(&ann).await.unwrap(), vec![app.clone()]);
    b.revoke(&app, &ann).await.unwrap();
    assert!(!a.may_act_on(&app, &ann).await.unwrap());
    assert!(matches!(
        b.revoke(&app, &ann).await,
        Err(StoreError::NotFound(_))
    ));
    a.grant(&app, &ann).await.unwrap();
    b.forget_app(&app).await.unwrap();
    assert!(a.collaborators(&app).await.unwrap().is_empty());
    assert_eq!(
        a.collaborators(&other).await.unwrap(),
        vec![Person::admin()]
    );

    b.revoke_token(&token.id).await.unwrap();
    assert_eq!(a.token(&token.hash).await.unwrap(), None);
    assert!(matches!(
        a.revoke_token(&token.id).await,
        Err(StoreError::NotFound(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_fail_fast_while_nats_is_down_and_work_once_it_is_back() {
    let mut server = NatsServer::start().unwrap();
    let (nats, control) = node(&server, "node-a").await;
    let app = name("offline");
    control.create_app(&app).await.unwrap();
    server.stop();

    // The first call may race the client noticing; it still ends, as Unavailable.
    let started = Instant::now();
    let err = control.app(&app).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    while nats.is_connected() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = Instant::now();
    let outcomes = [
        control.app(&app).await.map(drop),
        control.apps().await.map(drop),
        control.create_app(&name("other")).await.map(drop),
        control.append_release(&app, 1, deploy("x")).await.map(drop),
        control.release_head(&app).await.map(drop),
        control
            .scale(&app, &formation(r#"{"web":1}"#))
            .await
            .map(drop),
    ];
    for outcome in outcomes {
        assert!(
            matches!(outcome, Err(StoreError::Unavailable(_))),
            "{outcome:?}"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );

    server.resume().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !nats.is_connected() {
        assert!(Instant::now() < deadline, "did not reconnect");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(control.app(&app).await.unwrap().name, app);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_domain_is_one_apps_across_nodes_and_goes_with_it() {
    let (_server, one, two) = two_nodes().await;
    for app in ["alpha", "beta"] {
        one.create_app(&name(app)).await.unwrap();
    }
    let www: Domain = "www.example.com".parse().unwrap();
    // Two nodes racing to give the domain to two apps: one wins, the other is told.
    let (alpha, beta) = (name("alpha"), name("beta"));
    let (a, b) = tokio::join!(one.add_domain(&alpha, &www), two.add_domain(&beta, &www));
    assert!(a.is_ok() != b.is_ok(), "{a:?} {b:?}");
    let owner = if a.is_ok() { "alpha" } else { "beta" };
    let other = if a.is_ok() { "beta" } else { "alpha" };
    assert!(matches!(
        two.add_domain(&name(other), &www).await,
        Err(StoreError::Conflict(_))
    ));
    two.add_domain(&name(owner), &www).await.unwrap(); // again: nothing changes
    assert_eq!(two.domains(&name(owner)).await.unwrap(), vec![www.clone()]);
    assert!(two.domains(&name(other)).await.unwrap().is_empty());
    assert_eq!(
        one.all_domains().await.unwrap(),
        vec![(www.clone(), name(owner))]
    );
    assert!(matches!(
        one.remove_domain(&name(other), &www).await,
        Err(StoreError::NotFound(_))
    ));
    // Destroyed with its app; a new app of the same name does not inherit it.
    one.delete_app(&name(owner)).await.unwrap();
    one.create_app(&name(owner)).await.unwrap();
    assert!(two.domains(&name(owner)).await.unwrap().is_empty());
    two.add_domain(&name(other), &www).await.unwrap();
    two.remove_domain(&name(other), &www).await.unwrap();
    assert!(one.all_domains().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drains_are_shared_by_the_nodes_capped_and_go_with_their_app() {
    use wdeploy_store::{Drain, MAX_DRAINS_PER_APP};
    let (_server, a, b) = two_nodes().await;
    let hello = name("hello");
    a.create_app(&hello).await.unwrap();
    let drain = |url: &str| Drain::new(url.parse().unwrap());
    // Two nodes adding at once: both land (compare-and-swap), the cap holds.
    let adds = (0..MAX_DRAINS_PER_APP + 3).map(|n| {
        let node = if n % 2 == 0 { a.clone() } else { b.clone() };
        let (hello, drain) = (
            hello.clone(),
            drain(&format!("https://logs.example.com/{n}")),
        );
        tokio::spawn(async move { node.add_drain(&hello, drain).await })
    });
    let results: Vec<_> = futures::future::join_all(adds).await;
    let added = results.iter().filter(|r| matches!(r, Ok(Ok(_)))).count();
    assert_eq!(added, MAX_DRAINS_PER_APP);
    for result in results {
        match result.unwrap() {
            Ok(_) | Err(StoreError::Invalid(_)) => {}
            Err(e) => panic!("{e}"),
        }
    }
    let seen = b.drains(&hello).await.unwrap();
    assert_eq!(seen.len(), MAX_DRAINS_PER_APP);
    assert_eq!(seen, a.drains(&hello).await.unwrap());
    // The same URL twice is refused; removing by URL or id.
    let first = seen[0].clone();
    assert!(matches!(
        a.add_drain(&hello, drain(first.url.as_str())).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        b.remove_drain(&hello, first.url.as_str()).await.unwrap(),
        first
    );
    assert!(matches!(
        a.remove_drain(&hello, first.id.as_str()).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        a.drains(&hello).await.unwrap().len(),
        MAX_DRAINS_PER_APP - 1
    );
    // A new app of the same name starts without drains.
    a.delete_app(&hello).await.unwrap();
    assert!(matches!(
        b.drains(&hello).await,
        Err(StoreError::NotFound(_))
    ));
    b.create_app(&hello).await.unwrap();
    assert!(a.drains(&hello).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_set_on_one_node_is_seen_by_the_other_and_never_revives_an_app() {
    let (_server, a, b) = two_nodes().await;
    let hello = name("hello");
    let made = a.create_app(&hello).await.unwrap();
    assert!(!made.maintenance);
    let on = a.set_maintenance(&hello, true).await.unwrap();
    assert!(on.maintenance);
    assert_eq!(on.id, made.id);
    assert!(b.app(&hello).await.unwrap().maintenance);
    assert!(b.apps().await.unwrap()[0].maintenance);
    // Again: nothing changes.
    assert!(b.set_maintenance(&hello, true).await.unwrap().maintenance);
    assert!(!b.set_maintenance(&hello, false).await.unwrap().maintenance);
    assert!(!a.app(&hello).await.unwrap().maintenance);

    b.delete_app(&hello).await.unwrap();
    assert!(matches!(
        a.set_maintenance(&hello, true).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(a.apps().await.unwrap().is_empty(), "no app made by it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_keeps_its_output_apart_until_its_app_goes() {
    let (_server, a, b) = two_nodes().await;
    let app = name("outputs");
    a.create_app(&app).await.unwrap();
    a.append_release(&app, 1, deploy("Deploy 1")).await.unwrap();
    assert_eq!(b.release_output(&app, 1).await.unwrap(), "");
    a.set_release_output(&app, 1, "first\n").await.unwrap();
    b.set_release_output(&app, 1, "replaced\n").await.unwrap();
    assert_eq!(a.release_output(&app, 1).await.unwrap(), "replaced\n");
    // Reading the log never reads it, and it is no release of its own.
    assert_eq!(b.releases(&app).await.unwrap().len(), 1);
    assert_eq!(b.release_head(&app).await.unwrap().latest, 1);
    for missing in [
        a.set_release_output(&app, 2, "x").await,
        a.release_output(&app, 2).await.map(drop),
    ] {
        assert!(
            matches!(missing, Err(StoreError::NotFound(_))),
            "{missing:?}"
        );
    }
    let over = "x".repeat(wdeploy_store::MAX_RELEASE_OUTPUT + 1);
    assert!(matches!(
        a.set_release_output(&app, 1, &over).await,
        Err(StoreError::Invalid(_))
    ));
    // Destroyed with its app: a new app of the name starts with none.
    a.delete_app(&app).await.unwrap();
    b.create_app(&app).await.unwrap();
    b.append_release(&app, 1, deploy("Deploy 1")).await.unwrap();
    assert_eq!(a.release_output(&app, 1).await.unwrap(), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_slugs_of_every_release_are_read_through_each_app() {
    let (_server, a, b) = two_nodes().await;
    let slug = |s: &str| Digest::of_bytes(s.as_bytes());
    for (app, slugs) in [("app-a", ["one", "two"]), ("app-b", ["two", "three"])] {
        a.create_app(&name(app)).await.unwrap();
        for (i, s) in slugs.into_iter().enumerate() {
            let release = NewRelease {
                slug: Some(slug(s)),
                ..deploy("Deploy")
            };
            a.append_release(&name(app), i as u64 + 1, release)
                .await
                .unwrap();
        }
    }
    b.append_release(&name("app-b"), 3, config_change(BTreeMap::new()))
        .await
        .unwrap();
    let all = ["one", "two", "three"].map(slug).into_iter().collect();
    assert_eq!(b.release_slugs().await.unwrap(), all);
    a.delete_app(&name("app-b")).await.unwrap();
    let left = ["one", "two"].map(slug).into_iter().collect();
    assert_eq!(b.release_slugs().await.unwrap(), left);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persons_api_calls_are_counted_across_nodes() {
    use wdeploy_core::Person;
    use wdeploy_store::People;
    use wdeploy_store::cluster::ClusterPeople;
    let server = NatsServer::start().unwrap();
    let (nats_a, _) = node(&server, "node-a").await;
    let (nats_b, _) = node(&server, "node-b").await;
    let a = ClusterPeople::open(&nats_a).await.unwrap();
    let b = ClusterPeople::open(&nats_b).await.unwrap();
    let (ann, bob): (Person, Person) = ("ann@x.io".parse().unwrap(), "bob@x.io".parse().unwrap());
    // A burst of 6 at 1 a second: 4 taken through a, 2 (of 3 asked) through b, then
    // none on either.
    assert_eq!(a.take_calls(&ann, 1, 6, 4).await.unwrap(), 4);
    assert_eq!(b.take_calls(&ann, 1, 6, 3).await.unwrap(), 2);
    assert_eq!(a.take_calls(&ann, 1, 6, 1).await.unwrap(), 0);
    assert_eq!(b.take_calls(&ann, 1, 6, 1).await.unwrap(), 0);
    // Another person's budget is their own.
    assert_eq!(b.take_calls(&bob, 1, 6, 1).await.unwrap(), 1);
    // As time passes, one more call (a refused take spends nothing), then none again.
    let deadline = Instant::now() + Duration::from_secs(10);
    while b.take_calls(&ann, 1, 6, 1).await.unwrap() == 0 {
        assert!(Instant::now() < deadline, "no call came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(a.take_calls(&ann, 1, 6, 1).await.unwrap(), 0);
}
