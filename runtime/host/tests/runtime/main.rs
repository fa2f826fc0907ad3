//! An app runtime against prebuilt components (the test-only `faults` and `stranger`
//! guests, built once by `wdeploy-test-components`): releases are loaded into a real
//! engine, dynos run, and the real router serves them over loopback. No `wdeploy`
//! binary and no buildpack: this is the layer between the unit tests and the end-to-end
//! tests.
//!
//! One test binary, a module per area: `lifecycle` (dynos starting, serving, crashing,
//! booting and stopping, and what the router tells apps) and `budgets` (one app over a
//! budget of its own while its neighbour is measured).

mod budgets;
mod lifecycle;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wdeploy_core::{AppName, AppSettings, Digest, DynoState, Formation, LogSource, Procfile};
use wdeploy_host::{
    AddonBinding, AppRuntime, Backoff, Deadlines, Engine, EngineOptions, LaneOptions, LogRate,
    LogStream, OneOffCommand, Release, ReleaseSpec, Router, Share,
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
            .deploy(release, &Share::whole(&one_web()))
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

/// One web dyno: the formation most tests deploy.
fn one_web() -> Formation {
    serde_json::from_str(r#"{"web":1}"#).expect("a formation")
}

fn name(s: &str) -> AppName {
    s.parse().expect("app name")
}
