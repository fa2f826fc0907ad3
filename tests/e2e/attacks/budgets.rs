//! Per-app budgets: a dyno's disk, the memory of crashed instances, an app's share of
//! the instance pool; one app over its budget, its neighbours unchanged.

use crate::fixture::*;
use std::time::Duration;

/// What the files under `dir` take on the host's disk (allocated blocks, as `du` counts).
fn disk_usage(dir: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("readable dyno dir") {
            let path = entry.expect("entry").path();
            let meta = std::fs::symlink_metadata(&path).expect("metadata");
            total += meta.blocks() * 512;
            if meta.is_dir() {
                pending.push(path);
            }
        }
    }
    total
}

/// A dyno writing without end fills its own `limits.disk_mb` and gets a full disk's
/// error, while the host's disk holds no more than the quota and a neighbour writes on;
/// an app cannot ask for more disk than the host allows.
#[test]
fn a_dyno_filling_its_disk_hits_its_quota_not_the_host() {
    let host = TestHost::start_with(&["--max-disk-mb", "16"]);
    let filler = faults_app().with_settings("[limits]\ndisk_mb = 4\n");
    host.create_and_push("filler", filler.path());
    let neighbour = faults_app().with_settings("[limits]\ndisk_mb = 16\n");
    host.create_and_push("neighbour", neighbour.path());

    let quota: u64 = 4 << 20;
    let started = std::time::Instant::now();
    let (status, body) = host.get("filler", "/fill?mb=256");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(", then "), "the disk never filled: {body}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let (_, body) = host.get("filler", "/fill?mb=256&name=raw&raw=1");
    assert!(body.contains("name: \"insufficient-space\""), "{body}");
    let (_, body) = host.get("filler", "/touch?n=100000");
    assert!(body.contains("then StorageFull"), "{body}");
    let used = disk_usage(&host.data().join("dynos/filler"));
    assert!(
        used <= quota + (64 << 10),
        "{used} bytes on the host's disk"
    );

    assert_eq!(
        host.get("neighbour", "/fill?mb=8"),
        (200, "filled 8388608 bytes, no error\n".into())
    );
    assert_eq!(host.get("filler", "/"), (200, "ok\n".into()));

    host.ok(&["apps:create", "greedy", "--no-link"]);
    let greedy = faults_app().with_settings("[limits]\ndisk_mb = 64\n");
    let err = host.fails(&[
        "push",
        "-a",
        "greedy",
        "--dir",
        greedy.path().to_str().unwrap(),
    ]);
    assert!(
        err.contains("limits.disk_mb = 64 is more than this host allows per dyno (16 MiB"),
        "{err}"
    );
}

/// Guests that grow their memory to the quota and crash give it back to the kernel when
/// their instance goes: the host does not stay gigabytes resident while idle.
#[test]
fn memory_of_crashed_memory_hogs_goes_back_to_the_kernel() {
    // Resident memory is measured: no other test's host may run meanwhile.
    let _alone = alone();
    let host = TestHost::start();
    let app = faults_app().with_settings("[limits]\nmemory_mb = 192\n");
    host.create_and_push("hog", app.path());
    assert_eq!(host.get("hog", "/"), (200, "ok\n".into()));
    let baseline = rss_kib(host.pid()) * 1024;

    for _ in 0..8 {
        let (status, body) = host.get("hog", "/alloc");
        assert_eq!(status, 500, "{body}");
    }
    let logs = host.ok(&["logs", "-a", "hog"]);
    assert_eq!(
        logs.matches("Error R14 (Memory quota exceeded)").count(),
        8,
        "{logs}"
    );
    // 8 × 192 MiB were touched; all but a few MiB must be gone soon after.
    let bound = baseline + (96 << 20);
    poll_until(
        "the host's memory back near its baseline",
        Duration::from_secs(10),
        || {
            let now = rss_kib(host.pid()) * 1024;
            if now <= bound {
                Ok(now)
            } else {
                Err(format!(
                    "{} MiB resident, baseline {} MiB",
                    now >> 20,
                    baseline >> 20
                ))
            }
        },
    );
    assert_eq!(host.get("hog", "/"), (200, "ok\n".into()));
}

/// One app's slow requests take its own share of the instance pool, not the host's: the
/// requests over its share get 503 H11 in its own log, and a neighbour serves and
/// restarts as usual.
#[test]
fn an_app_with_slow_requests_keeps_to_its_share_of_instances() {
    let host = TestHost::start_with(&["--max-instances", "8", "--max-app-instances", "3"]);
    host.create_and_push("greedy", faults_app().path());
    host.ok(&["config:set", "WEB_CONCURRENCY=10", "-a", "greedy"]);
    host.create_and_push("neighbour", faults_app().path());

    let statuses = std::thread::scope(|scope| {
        let slow: Vec<_> = (0..10)
            .map(|_| scope.spawn(|| host.get("greedy", "/slow?ms=4000")))
            .collect();
        // While they run, the neighbour answers and restarts.
        poll_until("greedy's requests over its share refused", SOON, || {
            let logs = host.ok(&["logs", "-a", "greedy", "--source", "router"]);
            (logs.matches("code=H11").count() == 7).then_some(())
        });
        assert_eq!(host.get("neighbour", "/"), (200, "ok\n".into()));
        host.ok(&["restart", "-a", "neighbour"]);
        assert_eq!(host.get("neighbour", "/"), (200, "ok\n".into()));
        let mut statuses: Vec<u16> = slow
            .into_iter()
            .map(|request| {
                let (status, body) = request.join().expect("request thread");
                assert!(status == 200 || body.contains("H11"), "{status} {body}");
                status
            })
            .collect();
        statuses.sort();
        statuses
    });
    assert_eq!(statuses, [200, 200, 200, 503, 503, 503, 503, 503, 503, 503]);
    let logs = host.ok(&["logs", "-a", "greedy"]);
    assert!(
        logs.contains("already runs 3 instances, its share of this host's instance pool"),
        "{logs}"
    );
    let neighbour_logs = host.ok(&["logs", "-a", "neighbour"]);
    assert!(!neighbour_logs.contains("code=H1"), "{neighbour_logs}");
    assert_eq!(host.get("greedy", "/"), (200, "ok\n".into()));
}
