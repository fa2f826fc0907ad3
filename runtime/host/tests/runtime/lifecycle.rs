//! Dynos starting, serving, crashing, booting and stopping; what the router tells apps.

use super::*;

#[tokio::test]
async fn a_web_dyno_keeps_warm_instances_and_survives_a_trapping_request() {
    let fx = Fixture::new();
    let (runtime, addr) = fx.serve_faults_web("faults", "").await;

    assert_eq!(
        get(addr, "faults.localhost", "/").await,
        (200, "ok\n".into())
    );
    // One warm instance serves requests one after another: its memory persists.
    let counts = [
        get(addr, "faults.localhost", "/count").await,
        get(addr, "faults.localhost", "/count").await,
    ];
    assert_eq!(counts, [(200, "1\n".into()), (200, "2\n".into())]);

    let (status, body) = get(addr, "faults.localhost", "/trap").await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("H13"), "{body}");
    assert_eq!(
        get(addr, "faults.localhost", "/").await,
        (200, "ok\n".into())
    );
    let logs = log_text(&runtime.logs);
    assert!(logs.contains("deliberate trap from /trap"), "{logs}");
    assert!(logs.contains("code=H13"), "{logs}");
    assert!(
        logs.contains("wdeploy[web.1]: State changed from starting to up"),
        "{logs}"
    );
    // Config vars are the dyno's environment.
    assert_eq!(
        get(addr, "faults.localhost", "/env?name=GREETING").await,
        (200, "hi\n".into())
    );
    // A host name no app has is answered by the router itself.
    assert_eq!(get(addr, "other.localhost", "/").await.0, 404);
    runtime.stop().await;
}

#[tokio::test]
async fn a_crashing_worker_is_restarted_with_back_off_and_scaling_keeps_the_rest() {
    let fx = Fixture::new();
    let app = name("crashy");
    let procfile = "web: web\nworker: crasher\n";
    let release = fx
        .release(
            &app,
            &[
                ("web.wasm", components::FAULTS_WEB),
                ("crasher.wasm", components::FAULTS_CRASHER),
            ],
            procfile,
            "",
        )
        .await
        .expect("release loads");
    let runtime = fx.runtime(&app);
    let formation: Formation = serde_json::from_str(r#"{"web":1,"worker":1}"#).unwrap();
    runtime
        .deploy(release, &Share::whole(&formation))
        .await
        .expect("deploys");

    poll_until("a crash and a restart", Duration::from_secs(30), || {
        let logs = log_text(&runtime.logs);
        (logs.matches("Process exited with status 1").count() >= 2).then_some(())
    })
    .await;
    let logs = log_text(&runtime.logs);
    assert!(logs.contains("app[worker.1]: crasher: giving up"), "{logs}");
    assert!(logs.contains("State changed from up to crashed"), "{logs}");
    let states: Vec<_> = runtime
        .dynos()
        .into_iter()
        .map(|d| (d.name, d.state))
        .collect();
    assert!(
        states.contains(&("web.1".to_string(), DynoState::Up)),
        "{states:?}"
    );

    let more: Formation = serde_json::from_str(r#"{"web":3,"worker":0}"#).unwrap();
    runtime.scale(&Share::whole(&more)).await.expect("scales");
    let names: Vec<_> = runtime.dynos().into_iter().map(|d| d.name).collect();
    assert_eq!(names, ["web.1", "web.2", "web.3"]);
    runtime.stop().await;
}

#[tokio::test]
async fn scaling_out_gives_each_dyno_a_thread_up_to_the_hosts_limit() {
    let fx = Fixture::with_engine(EngineOptions {
        max_instances: 32,
        max_memory_bytes: 256 << 20,
        lanes: LaneOptions {
            threads: 2,
            ..LaneOptions::default()
        },
        ..EngineOptions::default()
    });
    let (runtime, addr) = fx.serve_faults_web("scaled", "").await;
    assert_eq!(get(addr, "scaled.localhost", "/").await.0, 200);
    assert_eq!(runtime.lane_threads(), Some(1), "one dyno, one thread");

    for (web, threads) in [(3, 2), (1, 1), (2, 2)] {
        let formation: Formation =
            serde_json::from_str(&format!(r#"{{"web":{web}}}"#)).expect("formation");
        runtime
            .scale(&Share::whole(&formation))
            .await
            .expect("scales");
        // Every dyno answers, the ones kept by the scale and the new ones.
        for _ in 0..2 * web {
            assert_eq!(get(addr, "scaled.localhost", "/").await.0, 200);
        }
        assert_eq!(
            runtime.lane_threads(),
            Some(threads),
            "web={web} on a host of at most 2 threads per app"
        );
    }
    runtime.stop().await;
}

#[tokio::test]
async fn a_component_importing_what_the_host_lacks_is_refused_by_name() {
    let fx = Fixture::new();
    let err = fx
        .release(
            &name("stranger"),
            &[("stranger.wasm", components::STRANGER)],
            "worker: stranger\n",
            "",
        )
        .await
        .map(|_| ())
        .expect_err("the release must be refused");
    let message = format!("{err:#}");
    assert!(
        message
            .contains("stranger.wasm imports wasi:foo/bar@1.0.0, which this host does not provide"),
        "{message}"
    );

    // A web process type whose component is a worker does not export the handler.
    let err = fx
        .release(
            &name("wrong-world"),
            &[("crasher.wasm", components::FAULTS_CRASHER)],
            "web: crasher\n",
            "",
        )
        .await
        .map(|_| ())
        .expect_err("a worker component cannot serve web");
    assert!(
        format!("{err:#}").contains(
            "component crasher.wasm exports wasi:cli/run@0.2.0; a web process exports \
             wasi:http/incoming-handler@0.2.x (WASI 0.2) or wasi:http/handler@0.3.0"
        ),
        "{err:#}"
    );
}

#[tokio::test]
async fn request_isolation_gives_every_request_a_fresh_instance() {
    let fx = Fixture::new();
    let (runtime, addr) = fx
        .serve_faults_web("fresh", "[web]\nisolation = \"request\"\n")
        .await;
    // A reused instance would count 1, 2: a fresh one starts at 1 every time.
    for _ in 0..2 {
        assert_eq!(
            get(addr, "fresh.localhost", "/count").await,
            (200, "1\n".into())
        );
    }
    let router_lines = runtime
        .logs
        .replay_and_subscribe(100)
        .0
        .iter()
        .filter(|l| l.kind == LogSource::Router)
        .count();
    assert_eq!(router_lines, 2);
    runtime.stop().await;
}

#[tokio::test]
async fn one_off_dynos_show_in_ps_and_stop_with_their_app() {
    let fx = Fixture::new();
    let app = name("oneoff");
    let release = fx
        .release(
            &app,
            &[
                ("web.wasm", components::FAULTS_WEB),
                ("spinner.wasm", components::FAULTS_SPINNER),
            ],
            "web: web\nspin: spinner\n",
            "",
        )
        .await
        .expect("release loads");
    let runtime = fx.runtime(&app);
    runtime
        .deploy(release, &Share::whole(&one_web()))
        .await
        .expect("deploys");
    // Every name other nodes run is left to them: here, all but one.
    let taken: std::collections::BTreeSet<String> = (1000..=9999)
        .map(|n| format!("run.{n}"))
        .filter(|name| name != "run.4321")
        .collect();
    let (one_off, task) = runtime
        .run(OneOffCommand::of("spin".parse().unwrap()), None, &taken)
        .expect("a one-off starts");
    assert_eq!(one_off, "run.4321");
    let listed = runtime
        .dynos()
        .into_iter()
        .find(|d| d.name == one_off)
        .expect("ps lists the one-off");
    assert_eq!(
        (
            listed.process_type.as_str(),
            listed.state,
            listed.command.as_str()
        ),
        ("spin", DynoState::Up, "spinner.wasm")
    );

    // A spinner never exits on its own: stopping the app (as destroying it does) stops it.
    runtime.stop().await;
    let ended = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the one-off stops with its app");
    assert!(
        ended.is_err(),
        "the one-off was stopped, not finished: {ended:?}"
    );
    assert!(runtime.dynos().is_empty(), "{:?}", runtime.dynos());
    assert!(log_text(&runtime.logs).contains("Stopping process: the app is stopping"));
}

#[tokio::test]
async fn the_router_tells_the_app_about_the_client_and_reads_host_names_strictly() {
    let fx = Fixture::new();
    let (runtime, addr) = fx.serve_faults_web("faults", "").await;
    let header = |name: &str, extra: &str| {
        format!("GET /header?name={name} HTTP/1.1\r\nHost: faults.localhost\r\n{extra}")
    };

    // X-Forwarded-For gets the client's address appended; Proto and Port are the
    // router's, whatever the client claimed.
    let (_, body) = send(
        addr,
        &header("x-forwarded-for", "X-Forwarded-For: 203.0.113.9\r\n"),
    )
    .await;
    assert_eq!(body, "203.0.113.9, 127.0.0.1\n");
    let (_, body) = send(
        addr,
        &header("x-forwarded-proto", "X-Forwarded-Proto: https\r\n"),
    )
    .await;
    assert_eq!(body, "http\n");
    // Nor can a client pass for another node's router to keep the scheme it claims,
    // whatever it sends (an older node's forwarding mark among it): only another node's
    // TLS connection carries forwarded requests.
    let spoofed = "X-Wdeploy-Forwarded: elsewhere\r\nX-Forwarded-Proto: https\r\n\
                   X-Forwarded-Port: 443\r\n";
    let (_, body) = send(addr, &header("x-forwarded-proto", spoofed)).await;
    assert_eq!(body, "http\n");
    let (_, body) = send(addr, &header("x-forwarded-port", "")).await;
    assert_eq!(body, format!("{}\n", addr.port()));
    let (_, body) = send(addr, &header("via", "")).await;
    assert_eq!(body, "1.1 wdeploy\n");

    // Two Host headers are a bad request; a fully qualified name (trailing dot) is the
    // same app; in absolute form the URI's authority routes, as the guest sees it.
    let (status, body) = send(
        addr,
        "GET / HTTP/1.1\r\nHost: faults.localhost\r\nHost: other.localhost\r\n",
    )
    .await;
    assert_eq!(status, 400, "{body}");
    // HTTP/1.1 requires a Host: without one (or with one that is not visible ASCII) the
    // router answers 400 itself instead of handing the guest a request without an
    // authority. HTTP/1.0 may omit it, but then names no app on a host.
    let (status, body) = send(addr, "GET / HTTP/1.1\r\n").await;
    assert_eq!(
        (status, body.as_str()),
        (400, "Bad Request: no Host header\n")
    );
    let (status, body) = send(addr, "GET / HTTP/1.1\r\nHost: faults.local\u{e9}host\r\n").await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = send(addr, "GET / HTTP/1.0\r\n").await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("no Host header"), "{body}");
    assert!(
        !log_text(&runtime.logs).contains("status=400"),
        "a request naming no app was logged as the app's"
    );
    assert_eq!(
        get(addr, "faults.localhost.", "/").await,
        (200, "ok\n".into())
    );
    let (status, body) = send(
        addr,
        "GET http://faults.localhost/authority HTTP/1.1\r\nHost: other.localhost\r\n",
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "faults.localhost\n"));
    runtime.stop().await;
}

/// The faults web component as one web dyno of `runtime`, served on loopback: the
/// release that keeps serving while a later one cannot boot.
async fn serve_a_good_release(
    fx: &Fixture,
    runtime: &Arc<AppRuntime>,
    app: &AppName,
) -> (Formation, SocketAddr) {
    let web = one_web();
    let good = fx
        .release(
            app,
            &[("web.wasm", components::FAULTS_WEB)],
            "web: web\n",
            "",
        )
        .await
        .expect("release loads");
    runtime
        .deploy(good, &Share::whole(&web))
        .await
        .expect("deploys");
    (web, serve(runtime.clone()).await)
}

/// The stuck web component, looping in its start function (`BOOT_LOOP_AFTER=0`).
async fn stuck_release(fx: &Fixture, app: &AppName) -> Arc<Release> {
    fx.release_with(
        app,
        &[("stuck.wasm", components::STUCK)],
        "web: stuck\n",
        "",
        &[("BOOT_LOOP_AFTER", "0")],
    )
    .await
    .expect("release loads")
}

#[tokio::test]
async fn a_start_function_that_never_returns_is_stopped_at_the_boot_deadline() {
    let fx = Fixture::new();
    let app = name("booting");
    let runtime = fx.runtime_with_deadlines(
        &app,
        Deadlines {
            boot: Duration::from_millis(500),
            ..Deadlines::default()
        },
    );
    let (web, addr) = serve_a_good_release(&fx, &runtime, &app).await;

    let started = Instant::now();
    let err = runtime
        .deploy(stuck_release(&fx, &app).await, &Share::whole(&web))
        .await
        .expect_err("a start function that loops cannot boot");
    // Generous against a loaded machine; before the deadline this never returned.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let err = format!("{err:#}");
    assert!(
        err.contains("could not start web.1: Error R10 (Boot timeout)"),
        "{err}"
    );
    assert!(err.contains("within 500ms of launch"), "{err}");
    assert!(log_text(&runtime.logs).contains("Error R10 (Boot timeout) -> web.1 did not start"));
    // The release that was up keeps serving.
    assert_eq!(
        get(addr, "booting.localhost", "/").await,
        (200, "ok\n".into())
    );
}

#[tokio::test]
async fn a_boot_in_progress_is_cancelled_and_the_old_release_keeps_serving() {
    let fx = Fixture::new();
    let app = name("cancelled");
    // The default boot deadline (60 s): only the cancellation can end this boot soon.
    let runtime = fx.runtime(&app);
    let (web, addr) = serve_a_good_release(&fx, &runtime, &app).await;

    let cancel = tokio_util::sync::CancellationToken::new();
    let stuck = stuck_release(&fx, &app).await;
    let share = Share::whole(&web);
    let deploy = runtime.deploy_until(stuck, &share, wdeploy_host::WebStart::Boot, &cancel);
    let cancelling = async {
        poll_until("web.1 to start booting", Duration::from_secs(20), || {
            log_text(&runtime.logs)
                .matches("Starting process")
                .nth(1)
                .map(|_| ())
        })
        .await;
        cancel.cancel();
    };
    let started = Instant::now();
    let (outcome, ()) = tokio::join!(deploy, cancelling);
    let err = format!("{:#}", outcome.expect_err("the boot was cancelled"));
    assert!(
        err.contains("cancelled while web.1 of v1 was starting"),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        get(addr, "cancelled.localhost", "/").await,
        (200, "ok\n".into())
    );
    // The app still changes: its formation lock was let go.
    runtime.restart(None).await.expect("restarts");
}

#[tokio::test]
async fn a_one_off_dyno_stops_at_its_time_limit_and_leaves_ps() {
    let fx = Fixture::new();
    let app = name("limited");
    let release = fx
        .release(
            &app,
            &[("spinner.wasm", components::FAULTS_SPINNER)],
            "spin: spinner\n",
            "",
        )
        .await
        .expect("release loads");
    let runtime = fx.runtime_with_deadlines(
        &app,
        Deadlines {
            one_off: Duration::from_secs(600),
            ..Deadlines::default()
        },
    );
    runtime
        .deploy(release, &Share::default())
        .await
        .expect("deploys");
    let (one_off, task) = runtime
        .run(
            OneOffCommand::of("spin".parse().unwrap()),
            Some(Duration::from_millis(300)),
            &Default::default(),
        )
        .expect("a one-off starts");
    let ended = tokio::time::timeout(Duration::from_secs(20), task)
        .await
        .expect("the one-off stops at its time limit")
        .expect("its task ends by itself");
    assert_eq!(
        ended,
        Err("it ran past its time limit of 300ms and was stopped".to_string())
    );
    assert!(runtime.dynos().is_empty(), "{:?}", runtime.dynos());
    assert!(log_text(&runtime.logs).contains(&format!(
        "[{one_off}]: Stopping process: it ran past its time limit of 300ms"
    )));
}
