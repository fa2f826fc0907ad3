//! One app over a budget of its own (disk, instances, log lines, memory) while its
//! neighbour is measured.

use super::*;

/// What the files under `dir` take on the host's disk (allocated blocks, as `du` counts).
fn disk_usage(dir: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("readable dyno dir") {
            let entry = entry.expect("entry");
            let meta = std::fs::symlink_metadata(entry.path()).expect("metadata");
            total += meta.blocks() * 512;
            if meta.is_dir() {
                pending.push(entry.path());
            }
        }
    }
    total
}

/// A dyno's directory is made when its guest first uses the filesystem: an app that never
/// opens a file costs none (waking many idle apps made two directories each before).
#[tokio::test]
async fn a_dynos_directory_is_made_only_when_its_guest_opens_a_file() {
    let fx = Fixture::new();
    let (runtime, addr) = fx.serve_faults_web("lazy", "").await;
    let dir = fx.dir.path().join("dynos/lazy");
    assert_eq!(get(addr, "lazy.localhost", "/").await.0, 200);
    assert!(
        !dir.exists(),
        "a request that opened no file made {}",
        dir.display()
    );
    let (status, body) = get(addr, "lazy.localhost", "/fill?mb=1").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        disk_usage(&dir) >= 1 << 20,
        "the file was written in the dyno's directory"
    );
    runtime.stop().await;
    // The directory goes with the dyno's last instance, which may still be finishing
    // the request it answered when `stop` returns.
    poll_until(
        "the stopped dyno's directory to be removed",
        Duration::from_secs(5),
        || std::fs::read_dir(&dir).map_or(Some(()), |mut d| d.next().is_none().then_some(())),
    )
    .await;
}

#[tokio::test]
async fn a_dyno_filling_its_disk_gets_a_full_disk_and_its_neighbour_writes_on() {
    let fx = Fixture::new();
    let (filler, addr) = fx
        .serve_faults_web("filler", "[limits]\ndisk_mb = 4\n")
        .await;
    let (neighbour, neighbour_addr) = fx.serve_faults_web("neighbour", "").await;
    let quota: u64 = 4 << 20;
    let dir = fx.dir.path().join("dynos/filler");

    // Writing 16 MiB into a 4 MiB disk fails after about 4 MiB, and the host's disk holds
    // no more than that. The guest's wasi-libc reports any failed stream write as EIO;
    // a guest asking wasi:filesystem why (`filesystem-error-code`) hears it is a full
    // disk, as does one creating a file (ENOSPC, Rust's StorageFull).
    let (status, body) = get(addr, "filler.localhost", "/fill?mb=16").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(", then "), "{body}");
    let filled: u64 = body
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("a byte count");
    assert!(filled >= quota - (256 << 10) && filled <= quota, "{body}");
    let used = disk_usage(&dir);
    assert!(used <= quota + (64 << 10), "{used} bytes on disk");
    let (_, body) = get(addr, "filler.localhost", "/fill?mb=16&name=raw&raw=1").await;
    assert!(body.contains("name: \"insufficient-space\""), "{body}");
    let (_, body) = get(addr, "filler.localhost", "/fill?mb=16&name=more&append=1").await;
    assert!(
        body.starts_with("filled 0 bytes, then StorageFull"),
        "{body}"
    );
    let (_, body) = get(addr, "filler.localhost", "/touch?n=100000").await;
    assert!(body.contains("then StorageFull"), "{body}");
    assert!(disk_usage(&dir) <= quota + (64 << 10));

    // The neighbour on the same host writes as usual.
    assert_eq!(
        get(neighbour_addr, "neighbour.localhost", "/fill?mb=8").await,
        (200, "filled 8388608 bytes, no error\n".into())
    );

    // Deleting a file frees its space, as on a real disk.
    assert_eq!(
        get(addr, "filler.localhost", "/remove?name=fill").await,
        (200, "removed fill\n".into())
    );
    assert_eq!(
        get(addr, "filler.localhost", "/fill?mb=2&name=again").await,
        (200, "filled 2097152 bytes, no error\n".into())
    );
    assert!(disk_usage(&dir) <= quota + (64 << 10));
    filler.stop().await;
    neighbour.stop().await;
}

#[tokio::test]
async fn an_app_holding_its_share_of_instances_gets_h11_and_its_neighbours_run_on() {
    // A pool of 6 instances, at most 3 per app.
    let fx = Fixture::with_engine(EngineOptions {
        max_instances: 6,
        max_app_instances: Some(3),
        max_memory_bytes: 256 << 20,
        ..EngineOptions::default()
    });
    let web = one_web();
    let greedy = fx.runtime(&name("greedy"));
    let release = fx
        .release_with(
            &name("greedy"),
            &[("web.wasm", components::FAULTS_WEB)],
            "web: web\n",
            "",
            &[("WEB_CONCURRENCY", "8")],
        )
        .await
        .expect("release loads");
    greedy
        .deploy(release, &Share::whole(&web))
        .await
        .expect("deploys");
    let (neighbour, neighbour_addr) = fx.serve_faults_web("neighbour", "").await;
    let addr = serve(greedy.clone()).await;

    // Eight slow requests at once: the app gets three instances, the other five are
    // refused at once with H11 in its own log, not by exhausting the host's pool.
    let slow: Vec<_> = (0..8)
        .map(|_| tokio::spawn(get(addr, "greedy.localhost", "/slow?ms=3000")))
        .collect();
    let h11 = |logs: &LogStream| log_text(logs).matches("code=H11").count();
    poll_until("five H11 router lines", Duration::from_secs(20), || {
        (h11(&greedy.logs) == 5).then_some(())
    })
    .await;

    // Meanwhile the neighbour serves, and restarts (which boots a new instance first).
    let started = Instant::now();
    assert_eq!(
        get(neighbour_addr, "neighbour.localhost", "/").await,
        (200, "ok\n".into())
    );
    neighbour
        .restart(None)
        .await
        .expect("the neighbour restarts");
    assert_eq!(
        get(neighbour_addr, "neighbour.localhost", "/").await,
        (200, "ok\n".into())
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    let mut statuses = Vec::new();
    for request in slow {
        let (status, body) = request.await.expect("request task");
        if status == 503 {
            assert!(body.contains("H11"), "{body}");
        }
        statuses.push(status);
    }
    statuses.sort();
    assert_eq!(statuses, [200, 200, 200, 503, 503, 503, 503, 503]);
    let logs = log_text(&greedy.logs);
    assert!(
        logs.contains("already runs 3 instances, its share of this host's instance pool"),
        "{logs}"
    );
    assert_eq!(h11(&neighbour.logs), 0);
    // Its requests done, the app is served again.
    assert_eq!(
        get(addr, "greedy.localhost", "/").await,
        (200, "ok\n".into())
    );
    greedy.stop().await;
    neighbour.stop().await;
}

/// Lines of `live` received so far: (the app's, those the L10 lines say were dropped).
fn count_lines(
    live: &mut tokio::sync::broadcast::Receiver<Arc<wdeploy_host::LogLine>>,
) -> (usize, usize) {
    let (mut app, mut dropped) = (0, 0);
    loop {
        match live.try_recv() {
            Ok(line) if line.kind == LogSource::App => app += 1,
            Ok(line) => {
                if let Some(rest) = line
                    .text
                    .strip_prefix("Error L10 (output buffer overflow): ")
                {
                    let n = rest.split(' ').next().and_then(|n| n.parse::<usize>().ok());
                    dropped += n.expect("L10 line with a count");
                }
            }
            Err(tokio::sync::broadcast::error::TryRecvError::Empty) => return (app, dropped),
            Err(e) => panic!("the subscriber lost lines: {e}"),
        }
    }
}

#[tokio::test]
async fn an_app_flooding_its_log_loses_its_own_lines_and_its_neighbour_none() {
    let fx = Fixture::new();
    let rate = LogRate {
        per_second: 200,
        burst: 1000,
    };
    let (flooder, flooder_addr) = fx
        .serve_faults_web_logging("flooder", "", LogStream::with_rate(rate))
        .await;
    let (quiet, quiet_addr) = fx
        .serve_faults_web_logging("quiet", "", LogStream::with_rate(rate))
        .await;
    let mut flood_live = flooder.logs.subscribe();
    let mut quiet_live = quiet.logs.subscribe();

    // 20,000 lines (and one of 25,000 bytes, split in three) beside 500 (and the three).
    let started = Instant::now();
    let (flood, calm) = tokio::join!(
        get(flooder_addr, "flooder.localhost", "/flood?lines=20000"),
        get(quiet_addr, "quiet.localhost", "/flood?lines=500"),
    );
    let elapsed = started.elapsed();
    assert_eq!(flood, (200, "flooded\n".into()));
    assert_eq!(calm, (200, "flooded\n".into()));

    // Every line of the neighbour arrived, and nothing was dropped there.
    let (quiet_lines, quiet_dropped) = count_lines(&mut quiet_live);
    assert_eq!((quiet_lines, quiet_dropped), (503, 0));

    // The flooder got its burst and the rate, no more; the drops are told (at most once
    // a second, the last once its first drop is a second old, here when logs are read):
    // read until every line is accounted for.
    let (mut passed, mut dropped) = (0, 0);
    poll_until(
        "every flooded line passed or counted",
        Duration::from_secs(10),
        || {
            let _ = flooder.logs.replay_and_subscribe(0);
            let (more_passed, more_dropped) = count_lines(&mut flood_live);
            passed += more_passed;
            dropped += more_dropped;
            (passed + dropped >= 20_003).then_some(())
        },
    )
    .await;
    let allowed = 1000 + (200.0 * elapsed.as_secs_f64()) as usize + 1;
    assert!(
        (1000..=allowed).contains(&passed),
        "{passed} lines passed in {elapsed:?}"
    );
    assert_eq!(passed + dropped, 20_003, "every line passed or counted");
    let l10 = log_text(&flooder.logs).matches("Error L10").count();
    assert!(
        (1..=2 + elapsed.as_secs() as usize).contains(&l10),
        "{l10} L10 lines in {elapsed:?}"
    );
    assert!(!log_text(&quiet.logs).contains("Error L10"));
    flooder.stop().await;
    quiet.stop().await;
}

/// All of an app's instances share one memory budget (`--max-app-memory-mb`): an
/// instance growing past what is left crashes with R15 even below its own quota, and
/// another app, with a budget of its own, is untouched.
#[tokio::test]
async fn an_app_growing_past_its_memory_budget_crashes_alone() {
    let fx = Fixture::with_engine(EngineOptions {
        max_instances: 32,
        max_memory_bytes: 256 << 20,
        max_app_memory_bytes: 48 << 20,
        ..EngineOptions::default()
    });
    let settings = "[limits]\nmemory_mb = 128\n";
    let (hog, hog_addr) = fx.serve_faults_web("hog", settings).await;
    let (quiet, quiet_addr) = fx.serve_faults_web("quiet", settings).await;
    assert_eq!(get(hog_addr, "hog.localhost", "/alloc").await.0, 500);
    let said = log_text(&hog.logs);
    assert!(
        said.contains("Error R15 (Memory quota vastly exceeded)")
            && said.contains("budget is 48 MiB"),
        "{said}"
    );
    assert!(!said.contains("R14"), "{said}");
    // The crashed instance gave its memory back: the app serves again.
    assert_eq!(
        get(hog_addr, "hog.localhost", "/").await,
        (200, "ok\n".into())
    );
    assert_eq!(
        get(quiet_addr, "quiet.localhost", "/").await,
        (200, "ok\n".into())
    );
    assert!(!log_text(&quiet.logs).contains("R15"));
    hog.stop().await;
    quiet.stop().await;
}
