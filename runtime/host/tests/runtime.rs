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
    AddonBinding, AppRuntime, Backoff, Engine, EngineOptions, LogRate, LogStream, Release,
    ReleaseSpec, Router,
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
        let dir = tempfile::tempdir().expect("temp dir");
        let engine = Engine::new(&EngineOptions {
            max_instances: 32,
            max_memory_bytes: 256 << 20,
            ..EngineOptions::default()
        })
        .expect("engine");
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
                config: BTreeMap::from([
                    ("GREETING".to_string(), "hi".to_string()),
                    ("WEB_CONCURRENCY".to_string(), "1".to_string()),
                ]),
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
            .deploy(release, &serde_json::from_str(r#"{"web":1}"#).unwrap())
            .await
            .expect("deploys");
        let addr = serve(runtime.clone()).await;
        (runtime, addr)
    }

    fn runtime(&self, app: &AppName) -> Arc<AppRuntime> {
        self.runtime_logging(app, LogStream::new())
    }

    fn runtime_logging(&self, app: &AppName, logs: Arc<LogStream>) -> Arc<AppRuntime> {
        AppRuntime::new(
            app.clone(),
            self.engine.clone(),
            logs,
            self.dir.path().join("dynos"),
            0,
            Backoff::new(vec![Duration::from_millis(200)], Duration::from_secs(60)),
            Duration::from_secs(1),
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
    tokio::spawn(router.serve(listener, std::future::pending(), Duration::from_secs(1)));
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
    runtime.deploy(release, &formation).await.expect("deploys");

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
    runtime.scale(&more).await.expect("scales");
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
        format!("{err:#}").contains("does not export wasi:http/incoming-handler"),
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
        .deploy(release, &serde_json::from_str(r#"{"web":1}"#).unwrap())
        .await
        .expect("deploys");
    let (one_off, task) = runtime
        .run(&"spin".parse().unwrap(), Vec::new())
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
    // a second, the last once its first drop is a second old, here when logs are read).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let _ = flooder.logs.replay_and_subscribe(0);
    let (passed, dropped) = count_lines(&mut flood_live);
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
