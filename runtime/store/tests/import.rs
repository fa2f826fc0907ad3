//! `import::from_embedded`: a single host's data directory copied into a new store, an
//! embedded one and a cluster on a real `nats-server`, then read back through the same
//! facets a host reads: nothing a person, an app or its add-ons had is missing or
//! changed, the source is untouched, and a store in use is never imported into.

use chrono::{TimeZone, Utc};
use std::path::Path;
use std::time::Duration;
use wdeploy_core::{AppName, Digest, Domain, Person, ReleaseStatus, TokenId};
use wdeploy_store::cluster::testing::NatsServer;
use wdeploy_store::{
    CertSource, Drain, NewRelease, NodeInfo, Store, StoredCert, Tenant, TokenRecord, import,
};

fn me(name: &str) -> NodeInfo {
    NodeInfo {
        name: name.parse().unwrap(),
        advertise: "127.0.0.1:1".into(),
        started_at: Utc::now(),
        version: String::new(),
        leaving: false,
    }
}

fn tenant(app: &wdeploy_store::App) -> Tenant {
    Tenant {
        app: app.id.clone(),
        quota_bytes: 1 << 20,
    }
}

fn release(config: &[(&str, &str)], slug: Option<Digest>) -> NewRelease {
    NewRelease {
        slug,
        procfile: "web: web\n".into(),
        settings: "[web]\nidle_after = \"15m\"\n".into(),
        config: config
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        description: "Deploy".into(),
        author: "bob@example.com".into(),
        node: None,
        created_at: Utc.with_ymd_and_hms(2026, 3, 4, 5, 6, 7).single(),
    }
}

/// A host's data directory with one of everything: people and tokens, a blob, an app
/// with a succeeded and a failed release, formation, maintenance, a domain and its
/// certificate, a drain, a collaborator, key-value entries in two buckets with a
/// counter, and jobs (one done, one leased, one ready).
async fn a_used_host(data: &Path) -> Vec<u8> {
    let store = wdeploy_store::embedded::open(data, me("solo")).unwrap();
    let bob: Person = "bob@example.com".parse().unwrap();
    let added = Utc.with_ymd_and_hms(2026, 2, 3, 4, 5, 6).single().unwrap();
    store.people.add_user_at(&bob, false, added).await.unwrap();
    store
        .people
        .add_token(&TokenRecord {
            id: TokenId::from_random(&[1, 2, 3, 4, 5, 6]),
            hash: Digest::of_bytes(b"bob's token"),
            user: bob.clone(),
            description: "bob's laptop".into(),
            created_at: Utc::now(),
        })
        .await
        .unwrap();
    let manifest = b"{\"components\":{}}".to_vec();
    let slug = Digest::of_bytes(&manifest);
    let bytes = futures::stream::iter([Ok(bytes::Bytes::from(manifest.clone()))]);
    store
        .blobs
        .put(&slug, Box::pin(bytes), 1 << 20)
        .await
        .unwrap();

    let name: AppName = "shop".parse().unwrap();
    let app = store.control.create_app(&name).await.unwrap();
    store.addons.create_app(&app.id).await.unwrap();
    let control = &store.control;
    control
        .append_release(&name, 1, release(&[("A", "1")], Some(slug.clone())))
        .await
        .unwrap();
    control
        .finish_release(&name, 1, ReleaseStatus::Succeeded)
        .await
        .unwrap();
    control
        .append_release(&name, 2, release(&[("A", "2")], Some(slug)))
        .await
        .unwrap();
    control
        .finish_release(&name, 2, ReleaseStatus::Failed)
        .await
        .unwrap();
    control
        .set_release_output(&name, 2, "error: release v2 failed\n")
        .await
        .unwrap();
    control
        .scale(
            &name,
            &serde_json::from_str(r#"{"web":2,"worker":1}"#).unwrap(),
        )
        .await
        .unwrap();
    control.set_maintenance(&name, true).await.unwrap();
    let domain: Domain = "shop.example.com".parse().unwrap();
    control.add_domain(&name, &domain).await.unwrap();
    store
        .certs
        .put_cert(StoredCert {
            domain: domain.clone(),
            app: name.clone(),
            source: CertSource::Manual,
            chain_pem: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into(),
            key_pem: "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n".into(),
            issuer: "Example CA".into(),
            not_after: Utc.with_ymd_and_hms(2031, 5, 1, 12, 0, 0).single(),
            updated_at: Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).single().unwrap(),
            acme_error: None,
        })
        .await
        .unwrap();
    control
        .add_drain(
            &name,
            Drain::new("https://logs.example.com/in".parse().unwrap()),
        )
        .await
        .unwrap();
    store.people.grant(&app.id, &bob).await.unwrap();

    let addons = &store.addons;
    let t = tenant(&app);
    addons
        .set(&t, "default", "greeting", b"hi".to_vec())
        .await
        .unwrap();
    addons
        .set(&t, "carts", "c1", vec![0, 255, 7])
        .await
        .unwrap();
    addons.increment(&t, "default", "hits", 41).await.unwrap();
    for payload in ["done", "leased", "ready"] {
        addons
            .enqueue(&t, "mail", payload.as_bytes().to_vec())
            .await
            .unwrap();
    }
    let done = addons
        .take(&t, "mail", Duration::from_secs(60))
        .await
        .unwrap();
    addons.ack(&t, done.unwrap().id).await.unwrap();
    addons
        .take(&t, "mail", Duration::from_secs(60))
        .await
        .unwrap();
    // (Another app, with nothing but its name.)
    control.create_app(&"empty".parse().unwrap()).await.unwrap();
    b"{\"components\":{}}".to_vec()
}

/// Reads the imported store as a host would and checks every part of it.
async fn check_imported(target: &Store, source: &Store, imported: bool) {
    let name: AppName = "shop".parse().unwrap();
    let apps: Vec<_> = target.control.apps().await.unwrap();
    let names: Vec<_> = apps.iter().map(|a| a.name.to_string()).collect();
    assert_eq!(names, ["empty", "shop"]);
    let app = target.control.app(&name).await.unwrap();
    let old = source.control.app(&name).await.unwrap();
    assert!(app.maintenance);
    assert_eq!(app.created_at, old.created_at);
    // Bob as he was, when he was added included.
    let people = |users: Vec<wdeploy_store::User>| {
        let bob = users
            .into_iter()
            .find(|u| u.email.as_str() == "bob@example.com");
        bob.map(|u| (u.admin, u.created_at))
    };
    assert_eq!(
        people(target.people.users().await.unwrap()),
        people(source.people.users().await.unwrap())
    );

    let strip = |releases: Vec<wdeploy_store::Release>| -> Vec<_> {
        releases
            .into_iter()
            .map(|r| wdeploy_store::Release { node: None, ..r })
            .collect()
    };
    let mut copied = strip(target.control.releases(&name).await.unwrap());
    let mut original = strip(source.control.releases(&name).await.unwrap());
    copied.sort_by_key(|r| r.version);
    original.sort_by_key(|r| r.version);
    assert_eq!(copied, original);
    assert_eq!(copied[1].status, ReleaseStatus::Failed);
    let head = target.control.release_head(&name).await.unwrap();
    assert_eq!((head.latest, head.current.map(|r| r.version)), (2, Some(1)));
    assert_eq!(
        target.control.release_output(&name, 2).await.unwrap(),
        "error: release v2 failed\n"
    );
    assert_eq!(
        target.control.formation(&name).await.unwrap(),
        source.control.formation(&name).await.unwrap()
    );
    assert_eq!(
        target.control.domains(&name).await.unwrap(),
        source.control.domains(&name).await.unwrap()
    );
    assert_eq!(
        target.certs.certs(&name).await.unwrap(),
        source.certs.certs(&name).await.unwrap()
    );
    assert_eq!(
        target.control.drains(&name).await.unwrap(),
        source.control.drains(&name).await.unwrap()
    );

    let bob: Person = "bob@example.com".parse().unwrap();
    assert!(target.people.may_act_on(&app.id, &bob).await.unwrap());
    let token = target.people.token(&Digest::of_bytes(b"bob's token")).await;
    let token = token.unwrap().expect("bob's token works");
    assert_eq!((token.token.user, token.admin), (bob, false));
    assert_eq!(
        target.people.tokens().await.unwrap(),
        source.people.tokens().await.unwrap()
    );

    let manifest = b"{\"components\":{}}";
    let slug = Digest::of_bytes(manifest);
    assert_eq!(target.blobs.read(&slug).await.unwrap(), manifest);

    let t = tenant(&app);
    let addons = &target.addons;
    let get = |bucket: &'static str, key: &'static str| addons.get(&t, bucket, key);
    assert_eq!(
        get("default", "greeting").await.unwrap(),
        Some(b"hi".to_vec())
    );
    assert_eq!(get("carts", "c1").await.unwrap(), Some(vec![0, 255, 7]));
    assert_eq!(get("default", "hits").await.unwrap(), Some(b"41".to_vec()));
    let stats = addons.queue_stats(&t).await.unwrap();
    assert_eq!(
        stats
            .iter()
            .map(|q| (q.queue.as_str(), q.ready, q.leased))
            .collect::<Vec<_>>(),
        // A backup keeps the lease running at the snapshot; an import makes the job ready.
        [(
            "mail",
            if imported { 2 } else { 1 },
            if imported { 0 } else { 1 }
        )]
    );
    // An import gives the app a new id; a backup keeps it.
    if imported {
        assert_ne!(app.id, old.id);
    } else {
        assert_eq!(app.id, old.id);
    }
}

/// The imported add-on data in use: the counter counts on, the jobs not done come in
/// order (after an import the leased one is ready again: its lease was the source's).
async fn use_imported(target: &Store, imported: bool) {
    let app = target.control.app(&"shop".parse().unwrap()).await.unwrap();
    let (t, addons) = (tenant(&app), &target.addons);
    assert_eq!(
        addons.increment(&t, "default", "hits", 1).await.unwrap(),
        42
    );
    let lease = Duration::from_secs(60);
    let mut taken = Vec::new();
    while let Some(job) = addons.take(&t, "mail", lease).await.unwrap() {
        taken.push(String::from_utf8(job.payload).unwrap());
    }
    let expected: &[&str] = if imported {
        &["leased", "ready"]
    } else {
        &["ready"]
    };
    assert_eq!(taken, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_host_moves_whole_into_a_new_embedded_store() {
    let (from, to) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    a_used_host(from.path()).await;
    let target = wdeploy_store::embedded::open(to.path(), me("a")).unwrap();
    let mut said = Vec::new();
    let done = import::from_embedded(from.path(), &target, &mut |line| said.push(line))
        .await
        .unwrap();
    assert_eq!(
        (
            done.apps,
            done.releases,
            done.entries,
            done.jobs,
            done.tokens
        ),
        (2, 2, 3, 2, 1)
    );
    assert!(
        said.iter()
            .any(|l| l.starts_with("Copied shop: 2 releases")),
        "{said:?}"
    );
    let source = wdeploy_store::embedded::open(from.path(), me("solo")).unwrap();
    check_imported(&target, &source, true).await;

    // A second import into the same store is refused, and changes nothing.
    let again = import::from_embedded(from.path(), &target, &mut |_| {}).await;
    let err = again.expect_err("the target is in use").to_string();
    assert!(err.contains("a new cluster only"), "{err}");
    check_imported(&target, &source, true).await;
    // Nor is a directory that is no host's imported.
    let empty = tempfile::tempdir().unwrap();
    let fresh = wdeploy_store::embedded::open(&empty.path().join("t"), me("b")).unwrap();
    let err = import::from_embedded(&empty.path().join("nothing"), &fresh, &mut |_| {})
        .await
        .expect_err("no data dir")
        .to_string();
    assert!(err.contains("not a host's data directory"), "{err}");
    use_imported(&target, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_host_moves_whole_into_a_new_cluster() {
    let server = NatsServer::start().unwrap();
    let (from, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    a_used_host(from.path()).await;
    let target = wdeploy_store::cluster::open(wdeploy_store::cluster::ClusterOptions {
        address: server.url().parse().unwrap(),
        me: me("a"),
        cache_dir: cache.path().to_path_buf(),
    })
    .await
    .unwrap();
    import::from_embedded(from.path(), &target, &mut |_| {})
        .await
        .unwrap();
    let source = wdeploy_store::embedded::open(from.path(), me("solo")).unwrap();
    check_imported(&target, &source, true).await;
    use_imported(&target, true).await;
}

/// `embedded::backup` while the store is open, as a running host holds it: the backup
/// opens as a store with everything the source had, under the same ids, and a backup
/// into a directory with anything in it is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_of_an_open_store_holds_it_whole() {
    let (from, to) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    a_used_host(from.path()).await;
    let source = wdeploy_store::embedded::open(from.path(), me("solo")).unwrap();
    let dest = to.path().join("backup");
    let backed = wdeploy_store::embedded::backup(from.path(), &dest)
        .await
        .unwrap();
    assert_eq!((backed.apps, backed.blobs), (2, 1));
    let again = wdeploy_store::embedded::backup(from.path(), &dest)
        .await
        .unwrap_err();
    assert!(again.to_string().contains("is not empty"), "{again}");
    let backup = wdeploy_store::embedded::open(&dest, me("restored")).unwrap();
    check_imported(&backup, &source, false).await;
    use_imported(&backup, false).await;
}
