//! What the blob collector's read of every release's slug costs on the embedded store:
//! each app's log in turn (the default of `ControlStore::release_slugs`, and the
//! collector's read before 2026-11-28) against the embedded store's one query, in the
//! same process on the same database. `cargo bench -p wdeploy-store --bench release_slugs
//! [-- APPS]` (10,000 apps by default, one release each with a 200-byte config var).

use std::collections::HashSet;
use std::time::Instant;

fn main() {
    let apps: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(run(apps));
}

async fn run(apps: usize) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let me = wdeploy_store::NodeInfo {
        name: "bench".parse().expect("a node name"),
        advertise: String::new(),
        started_at: chrono::Utc::now(),
        version: String::new(),
        leaving: false,
    };
    let store = wdeploy_store::embedded::open(dir.path(), me).expect("the store");
    let control = &store.control;
    for i in 0..apps {
        let name: wdeploy_core::AppName = format!("app-{i}").parse().expect("a name");
        control.create_app(&name).await.expect("an app");
        let release = wdeploy_store::NewRelease {
            slug: Some(wdeploy_core::Digest::of_bytes(b"hello")),
            procfile: "web: web\n".into(),
            settings: String::new(),
            config: [("GREETING".to_string(), "x".repeat(200))].into(),
            description: "Deploy".into(),
            author: "admin".into(),
            node: None,
            created_at: None,
        };
        control.append_release(&name, 1, release).await.expect("v1");
    }
    println!("{apps} apps, one release each");
    for _ in 0..3 {
        let start = Instant::now();
        let mut each = HashSet::new();
        for app in control.apps().await.expect("the apps") {
            let releases = control.releases(&app.name).await.expect("releases");
            each.extend(releases.into_iter().filter_map(|r| r.slug));
        }
        let per_app = start.elapsed();
        let start = Instant::now();
        let once = control.release_slugs().await.expect("the slugs");
        let one_query = start.elapsed();
        assert_eq!(each, once);
        println!(
            "each app's log: {per_app:.1?}   one query: {one_query:.1?}   ratio {:.0}",
            per_app.as_secs_f64() / one_query.as_secs_f64()
        );
    }
}
