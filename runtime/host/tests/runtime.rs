//! An app runtime against prebuilt components (the test-only `faults` and `stranger`
//! guests, built once by `wdeploy-test-components`): releases are loaded into a real
//! engine, dynos run, and the real router serves them over loopback. No `wdeploy`
//! binary and no buildpack: this is the layer between the unit tests and the end-to-end
//! tests.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wdeploy_core::{AppName, AppSettings, Digest, DynoState, Formation, LogSource, Procfile};
use wdeploy_host::{
    AddonBinding, AppRuntime, Backoff, Deadlines, Engine, EngineOptions, LogRate, LogStream,
    Release, ReleaseSpec, Router, Share,
};
use wdeploy_store::{AddonStore, AppId, Tenant};
use wdeploy_test_components as components;

struct Fixture {
    dir: tempfile::TempDir,
    engine: Arc<Engine>,
    addons: Arc<dyn AddonStore>,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture::with_engine(EngineOptions {
            max_instances: 32,
            max_memory_bytes: 256 << 20,
            ..EngineOptions::default()
        })
    }

    fn with_engine(options: EngineOptions) -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let engine = Engine::new(&options).expect("engine");
        let addons = wdeploy_store::embedded::open_addons(&dir.path().join("addons.db"), &[])
            .expect("add-ons database");
        Fixture {
            dir,
            engine,
            addons,
        }
    }

    /// A release of prebuilt components: (file name, path) pairs and a Procfile.
    async fn release(
        &self,
        app: &AppName,
        components: &[(&str, &str)],
        procfile: &str,
        settings: &str,
    ) -> anyhow::Result<Arc<Release>> {
        self.release_with(app, components, procfile, settings, &[])
            .await
    }

    /// [`Fixture::release`] with more config vars.
    async fn release_with(
        &self,
        app: &AppName,
        components: &[(&str, &str)],
        procfile: &str,
        settings: &str,
        vars: &[(&str, &str)],
    ) -> anyhow::Result<Arc<Release>> {
        let components: BTreeMap<String, (Digest, PathBuf)> = components
            .iter()
            .map(|(name, path)| {
                let digest = Digest::of_file(path.as_ref()).expect("component readable");
                (name.to_string(), (digest, PathBuf::from(path)))
            })
            .collect();
        let settings = AppSettings::parse(settings)?;
        let id = AppId::local(app);
        self.addons.create_app(&id).await?;
        let addons = AddonBinding {
            store: self.addons.clone(),
            tenant: Tenant {
                app: id,
                quota_bytes: settings.addons_quota_bytes(None),
            },
            logs: LogStream::new(),
            metrics: wdeploy_host::AppMetrics::detached(app.clone()),
        };
        Release::load(
            &self.engine,
            ReleaseSpec {
                app: app.clone(),
                version: 1,
                slug_id: Digest::of_bytes(procfile.as_bytes()),
                components,
                procfile: Procfile::parse(procfile)?,
                settings,
                // One instance per web dyno: a request waits until the previous one has
                // handed its instance back, so which instance serves is deterministic.
                config: [("GREETING", "hi"), ("WEB_CONCURRENCY", "1")]
                    .iter()
                    .chain(vars)
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                addons,
            },
        )
        .await
    }

    /// The faults web component as `app`'s one web dyno, served by a router on loopback.
    async fn serve_faults_web(&self, app: &str, settings: &str) -> (Arc<AppRuntime>, SocketAddr) {
        self.serve_faults_web_logging(app, settings, LogStream::new())
            .await
    }

    /// As [`Fixture::serve_faults_web`], the app's lines going to `logs`.
    async fn serve_faults_web_logging(
        &self,
        app: &str,
        settings: &str,
        logs: Arc<LogStream>,
    ) -> (Arc<AppRuntime>, SocketAddr) {
        let app = name(app);
        let release = self
            .release(
                &app,
                &[("web.wasm", components::FAULTS_WEB)],
                "web: web\n",
                settings,
            )
            .await
            .expect("release loads");
        let runtime = self.runtime_logging(&app, logs);
        runtime
            .deploy(
                release,
                &Share::whole(&serde_json::from_str(r#"{"web":1}"#).unwrap()),
            )
            .await
            .expect("deploys");
        let addr = serve(runtime.clone()).await;
        (runtime, addr)
    }

    fn runtime(&self, app: &AppName) -> Arc<AppRuntime> {
        self.runtime_with(app, Deadlines::default(), LogStream::new())
    }

    fn runtime_logging(&self, app: &AppName, logs: Arc<LogStream>) -> Arc<AppRuntime> {
        self.runtime_with(app, Deadlines::default(), logs)
    }

    /// An app runtime with these deadlines.
    fn runtime_with_deadlines(&self, app: &AppName, deadlines: Deadlines) -> Arc<AppRuntime> {
        self.runtime_with(app, deadlines, LogStream::new())
    }

    /// An app runtime with these deadlines (stopping workers get 1 s), logging to `logs`.
    fn runtime_with(
        &self,
        app: &AppName,
        deadlines: Deadlines,
        logs: Arc<LogStream>,
    ) -> Arc<AppRuntime> {
        AppRuntime::new(
            app.clone(),
            self.engine.clone(),
            logs,
            self.dir.path().join("dynos"),
            0,
            Backoff::new(vec![Duration::from_millis(200)], Duration::from_secs(60)),
            Deadlines {
                stop: Duration::from_secs(1),
                ..deadlines
            },
        )
    }
}

/// A router on a loopback port serving `runtime`, and its address.
async fn serve(runtime: Arc<AppRuntime>) -> std::net::SocketAddr {
    let router = Router::new("localhost");
    router.add_app(runtime);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(router.serve(
        listener,
        wdeploy_host::Transport::Plain,
        wdeploy_host::ListenerLimits::default(),
        std::future::pending(),
        Duration::from_secs(1),
    ));
    addr
}

/// A GET over a fresh connection: (status, body).
async fn get(addr: std::net::SocketAddr, host: &str, path: &str) -> (u16, String) {
    send(addr, &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n")).await
}

/// Sends a request head (its request line and headers, without the blank line), with
/// `Connection: close`, over a fresh connection: (status, body).
async fn send(addr: std::net::SocketAddr, head: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("{head}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("read");
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, body)
}

/// A chunked body's content: a guest still writing when its head went out streams.
fn dechunk(mut rest: &str) -> String {
    let mut body = String::new();
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || tail.len() < size {
            break;
        }
        body.push_str(&tail[..size]);
        rest = tail[size..].trim_start_matches("\r\n");
    }
    body
}

/// Polls `check` until it returns `Some`, for at most `timeout`.
async fn poll_until<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn log_text(logs: &LogStream) -> String {
    let (history, _) = logs.replay_and_subscribe(10_000);
    history.iter().map(|l| format!("{l}\n")).collect()
}

fn name(s: &str) -> AppName {
    s.parse().expect("app name")
}

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
        .deploy(
            release,
            &Share::whole(&serde_json::from_str(r#"{"web":1}"#).unwrap()),
        )
        .await
        .expect("deploys");
    let (one_off, task) = runtime
        .run(&"spin".parse().unwrap(), Vec::new(), None)
        .expect("a one-off starts");
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
    // Nor can a client pass for another node's router to keep the scheme it claims:
    // the forwarding mark counts only from a node's address, and is dropped.
    let spoofed = "X-Wdeploy-Forwarded: elsewhere\r\nX-Forwarded-Proto: https\r\n\
                   X-Forwarded-Port: 443\r\n";
    let (_, body) = send(addr, &header("x-forwarded-proto", spoofed)).await;
    assert_eq!(body, "http\n");
    let (_, body) = send(addr, &header("x-wdeploy-forwarded", spoofed)).await;
    assert_eq!(body, "");
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
    let web: Formation = serde_json::from_str(r#"{"web":1}"#).unwrap();
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
            &"spin".parse().unwrap(),
            Vec::new(),
            Some(Duration::from_millis(300)),
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
    let web = serde_json::from_str::<Formation>(r#"{"web":1}"#).unwrap();
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
