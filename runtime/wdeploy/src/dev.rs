//! `wdeploy dev`: build the app in a directory, run one dyno of each process type behind
//! the router on 127.0.0.1, print the log stream, rebuild and swap on every edit.

use crate::building::{AppBuild, dir_key};
use crate::envfile;
use crate::printer::Printer;
use crate::watch;
use anyhow::{Context, bail};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{broadcast, mpsc, watch as signal_watch};
use wdeploy_buildpack::Slug;
use wdeploy_core::{AppName, Digest, Formation, ProcessType, Procfile};
use wdeploy_host::{
    AddonBinding, AppRuntime, Backoff, Egress, Engine, EngineOptions, LogStream, Release,
    ReleaseSpec, Router, Share,
};
use wdeploy_store::{AddonStore, AppId, Tenant};

#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// The app's directory
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Port of the router on 127.0.0.1 (0 picks a free one)
    #[arg(long, short, default_value_t = 5000, env = "PORT")]
    pub port: u16,
    /// KEY=VALUE lines that become config vars (default: DIR/.env when present)
    #[arg(long)]
    pub env_file: Option<PathBuf>,
    /// Where dyno filesystems live (default: a fresh temporary directory)
    #[arg(long, hide = true, env = "WDEPLOY_RUN_DIR")]
    pub run_dir: Option<PathBuf>,
    /// Where the app's add-on data (key-value, queues) is kept between runs (default: a
    /// directory per app dir under the wdeploy cache)
    #[arg(long, env = "WDEPLOY_DEV_DATA")]
    pub data: Option<PathBuf>,
    /// Build with this buildpack instead of detecting one: a built-in's name (rust,
    /// python, javascript, wasm) or the path of a folder with bin/detect and bin/compile
    #[arg(long, value_name = "NAME|PATH")]
    pub buildpack: Option<String>,
}

/// How long in-flight requests may take to finish when stopping.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How long workers have to exit after their stdin closes (short, as in `heroku local`).
const WORKER_GRACE: Duration = Duration::from_secs(5);

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    // Handle Ctrl-C and SIGTERM from the very start, so a stop during the build or the
    // first requests is a clean stop too.
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let printer = Printer::stdout();
    let dir = args
        .dir
        .canonicalize()
        .with_context(|| format!("app directory {} not found", args.dir.display()))?;
    let app = dir_key(&dir)?;
    let cache = crate::paths::cache_root()?;
    let env_file = match &args.env_file {
        Some(path) => {
            if !path.is_file() {
                bail!("env file {} not found", path.display());
            }
            Some(path.clone())
        }
        None => Some(dir.join(".env")).filter(|p| p.is_file()),
    };
    let builder = Builder {
        app: AppBuild::new(&dir, args.buildpack.as_deref())?,
        env_file,
    };
    // Add-on data outlives `dev` runs (a counter keeps counting), like a local database.
    let data_dir = match &args.data {
        Some(dir) => dir.clone(),
        None => cache.join("dev-data").join(&builder.app.key),
    };
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating the data directory {}", data_dir.display()))?;
    // One app, always the same id: a database of an older wdeploy (keyed by the app's
    // name) is re-keyed to it.
    let app_id = AppId::local(&app);
    let addons = wdeploy_store::embedded::open_addons(
        &data_dir.join("addons.db"),
        &[(app.clone(), app_id.clone())],
    )
    .context("opening the add-ons database")?;

    // Watch before the first build, so an edit made at any point after it started is seen.
    let (_watcher, mut changes) = watch::watch(&dir)?;
    printer.note(&format!("=====> Building {app} from {}", dir.display()));
    let (slug, config) = tokio::select! {
        built = builder.build() => built?,
        _ = interrupt.recv() => return Ok(()),
        _ = terminate.recv() => return Ok(()),
    };

    let engine = Engine::new(&EngineOptions {
        cache_dir: Some(cache.join("compiled")),
        // On a laptop, calling a service on localhost is the point.
        egress: Egress::Any,
        ..EngineOptions::default()
    })?;
    let run_dir = RunDir::new(args.run_dir)?;
    // An app without a web process type listens on nothing (so a worker-only app never
    // clashes with another app on the port); one whose edit adds `web` listens then.
    let listener = match slug.procfile.get(ProcessType::WEB) {
        Some(_) => Some(listen(args.port).await?),
        None => None,
    };
    let port = match &listener {
        Some(listener) => listener.local_addr()?.port(),
        None => args.port,
    };

    let logs = LogStream::new();
    let mut lines = logs.subscribe();
    let runtime = AppRuntime::new(
        app.clone(),
        engine.clone(),
        logs.clone(),
        run_dir.path.clone(),
        port,
        Backoff::default(),
        wdeploy_host::Deadlines {
            stop: WORKER_GRACE,
            ..wdeploy_host::Deadlines::default()
        },
    );
    let addons = DevAddons {
        store: addons,
        id: app_id,
        logs: logs.clone(),
        metrics: runtime.metrics.clone(),
    };
    let mut version = 1;
    let mut serving_build = BuildKey::of(&slug, &config);
    let release = Release::load(
        &engine,
        release_spec(&app, version, &slug, config, addons.clone()),
    )
    .await?;
    let started = runtime
        .deploy(
            release.clone(),
            &Share::whole(&Formation::one_of_each(&release.procfile)),
        )
        .await;
    if let Err(e) = started {
        runtime.stop().await;
        drain(&mut lines, &printer);
        return Err(e);
    }
    let router = Router::new("localhost");
    router.set_fallback(runtime.clone());
    let mut serving = listener.map(|listener| Serving::start(&router, listener));
    printer.note(&format!(
        "=====> add-on data (key-value, queues) in {}",
        data_dir.display()
    ));
    match &serving {
        Some(_) => printer.note(&format!(
            "=====> {app} v{version} listening on http://127.0.0.1:{port} (Ctrl-C to stop)"
        )),
        None => printer.note(&format!(
            "=====> {app} v{version} running {} (no web process type, so no HTTP listener; Ctrl-C to stop)",
            dyno_names(&release.procfile)
        )),
    }

    let (built_tx, mut built_rx) = mpsc::channel(1);
    let mut building = false;
    let mut dirty = false;
    // A quiet app prints nothing to find its reader gone by: look every second too.
    let mut reader_check = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            line = lines.recv() => {
                print_line(line, &printer);
                if printer.reader_gone() {
                    break;
                }
            }
            _ = reader_check.tick() => {
                if printer.reader_left() {
                    break;
                }
            }
            Some(path) = changes.recv() => {
                if building {
                    dirty = true;
                } else {
                    printer.note(&format!("=====> {} changed, rebuilding", display_rel(&dir, &path)));
                    building = true;
                    builder.spawn(built_tx.clone());
                }
            }
            Some(built) = built_rx.recv() => {
                building = false;
                let built = built.map(|(slug, config)| {
                    let key = BuildKey::of(&slug, &config);
                    (slug, config, key)
                });
                match built {
                    // A save that changed nothing the build reads (an editor's save
                    // without an edit, a file the buildpack ignores): no restart.
                    Ok((_, _, key)) if key == serving_build => {
                        printer.note(&format!("=====> The build is unchanged: v{version} keeps serving"));
                    }
                    Ok((slug, config, key)) => {
                        version += 1;
                        let swapped = swap(&engine, &runtime, &app, version, &slug, config, &addons).await;
                        drain(&mut lines, &printer);
                        match swapped {
                            Ok(has_web) => {
                                serving_build = key;
                                printer.note(&format!("=====> v{version} is serving"));
                                if has_web && serving.is_none() {
                                    // The first build with `web`: listen now.
                                    match listen(args.port).await {
                                        Ok(listener) => {
                                            let at = listener.local_addr().map_or(args.port, |a| a.port());
                                            serving = Some(Serving::start(&router, listener));
                                            printer.note(&format!("=====> {app} listening on http://127.0.0.1:{at}"));
                                        }
                                        Err(e) => printer.note(&format!("=====> {e:#}")),
                                    }
                                }
                            }
                            Err(e) => {
                                version -= 1;
                                printer.note(&format!("=====> Deploy failed, v{version} keeps serving: {e:#}"));
                            }
                        }
                    }
                    Err(e) => printer.note(&format!("=====> Build failed, v{version} keeps serving: {e:#}")),
                }
                if std::mem::take(&mut dirty) {
                    building = true;
                    builder.spawn(built_tx.clone());
                }
            }
            _ = interrupt.recv() => break,
            _ = terminate.recv() => break,
        }
    }

    printer.note("=====> Stopping all processes");
    let stopped = serving.map(Serving::stop);
    runtime.stop().await;
    if let Some(stopped) = stopped {
        let _ = stopped.await;
    }
    drop(runtime);
    drain(&mut lines, &printer);
    drop(router);
    run_dir.remove();
    Ok(())
}

/// Loads a new build and swaps it in with preboot; true when it has a web process type.
async fn swap(
    engine: &Arc<Engine>,
    runtime: &AppRuntime,
    app: &AppName,
    version: u64,
    slug: &Slug,
    config: BTreeMap<String, String>,
    addons: &DevAddons,
) -> anyhow::Result<bool> {
    let spec = release_spec(app, version, slug, config, addons.clone());
    let release = Release::load(engine, spec).await?;
    runtime
        .deploy(
            release.clone(),
            &Share::whole(&Formation::one_of_each(&release.procfile)),
        )
        .await?;
    Ok(release.procfile.get(ProcessType::WEB).is_some())
}

/// Binds the router's port on 127.0.0.1.
async fn listen(port: u16) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("cannot listen on 127.0.0.1:{port} (is it in use? try --port)"))
}

/// The router serving on its listener, until told to stop.
struct Serving {
    stop: signal_watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Serving {
    fn start(router: &Arc<Router>, listener: tokio::net::TcpListener) -> Serving {
        let (stop, mut stopped) = signal_watch::channel(false);
        let task = tokio::spawn(router.clone().serve(
            listener,
            wdeploy_host::Transport::Plain,
            wdeploy_host::ListenerLimits::default(),
            async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            },
            STOP_GRACE,
        ));
        Serving { stop, task }
    }

    /// Stops taking connections; the returned task ends once requests in flight have
    /// (within [`STOP_GRACE`]).
    fn stop(self) -> tokio::task::JoinHandle<()> {
        let _ = self.stop.send(true);
        self.task
    }
}

/// The dynos `dev` runs of a Procfile, for people: `worker.1, clock.1`.
fn dyno_names(procfile: &Procfile) -> String {
    let names: Vec<String> = Formation::one_of_each(procfile)
        .iter()
        .map(|(process_type, _)| format!("{process_type}.1"))
        .collect();
    if names.is_empty() {
        "no dynos".to_string()
    } else {
        names.join(", ")
    }
}

/// A release of a slug just built on this machine, its components read where the build
/// left them.
fn release_spec(
    app: &AppName,
    version: u64,
    slug: &Slug,
    config: BTreeMap<String, String>,
    addons: DevAddons,
) -> ReleaseSpec {
    ReleaseSpec {
        app: app.clone(),
        version,
        slug_id: slug.id(),
        components: slug
            .manifest
            .components
            .iter()
            .map(|(name, file)| {
                (
                    name.clone(),
                    (file.digest.clone(), slug.component_path(name)),
                )
            })
            .collect(),
        procfile: slug.procfile.clone(),
        addons: addons.binding(&slug.settings),
        settings: slug.settings.clone(),
        config,
    }
}

/// The add-ons of the one app `dev` runs: its own database, the same id every run.
#[derive(Clone)]
struct DevAddons {
    store: Arc<dyn AddonStore>,
    id: AppId,
    logs: Arc<LogStream>,
    metrics: Arc<wdeploy_host::AppMetrics>,
}

impl DevAddons {
    /// On a laptop the app gets the quota it asks for (no host ceiling).
    fn binding(&self, settings: &wdeploy_core::AppSettings) -> AddonBinding {
        AddonBinding {
            store: self.store.clone(),
            tenant: Tenant {
                app: self.id.clone(),
                quota_bytes: settings.addons_quota_bytes(None),
            },
            logs: self.logs.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

/// What a release of `dev` is made of: a build with the same key runs exactly as the
/// one serving, so it is not swapped in.
#[derive(PartialEq)]
struct BuildKey {
    components: Digest,
    procfile: Procfile,
    settings: String,
    config: BTreeMap<String, String>,
}

impl BuildKey {
    fn of(slug: &Slug, config: &BTreeMap<String, String>) -> BuildKey {
        BuildKey {
            components: slug.id(),
            procfile: slug.procfile.clone(),
            settings: slug.settings_text.clone(),
            config: config.clone(),
        }
    }
}

/// Everything needed to build the app again.
#[derive(Clone)]
struct Builder {
    app: AppBuild,
    env_file: Option<PathBuf>,
}

impl Builder {
    /// Builds on a blocking thread, printing the buildpack's output as it comes. The env
    /// file is read again each time so edits to it apply on the next build.
    async fn build(&self) -> anyhow::Result<(Slug, BTreeMap<String, String>)> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let config = match &this.env_file {
                Some(path) => envfile::load(path)?,
                None => BTreeMap::new(),
            };
            let printer = Printer::stdout();
            let slug = this.app.build(&config, &mut |line| printer.note(line))?;
            Ok((slug, config))
        })
        .await
        .context("build task failed")?
    }

    fn spawn(&self, done: mpsc::Sender<anyhow::Result<(Slug, BTreeMap<String, String>)>>) {
        let this = self.clone();
        tokio::spawn(async move {
            let _ = done.send(this.build().await).await;
        });
    }
}

fn print_line(
    line: Result<Arc<wdeploy_host::LogLine>, broadcast::error::RecvError>,
    printer: &Printer,
) {
    match line {
        Ok(line) => printer.print(&line),
        Err(broadcast::error::RecvError::Lagged(n)) => {
            printer.note(&format!("=====> {n} log lines dropped (output too slow)"))
        }
        Err(broadcast::error::RecvError::Closed) => {}
    }
}

/// Prints whatever the stream still holds (the last lines before stopping).
fn drain(lines: &mut broadcast::Receiver<Arc<wdeploy_host::LogLine>>, printer: &Printer) {
    while let Ok(line) = lines.try_recv() {
        printer.print(&line);
    }
}

/// The directory dyno filesystems live in; removed when `dev` stops.
struct RunDir {
    path: PathBuf,
}

impl RunDir {
    fn new(chosen: Option<PathBuf>) -> anyhow::Result<RunDir> {
        let path = match chosen {
            Some(path) => path,
            None => std::env::temp_dir().join(format!("wdeploy-dev-{}", std::process::id())),
        };
        std::fs::create_dir_all(&path)
            .with_context(|| format!("creating run directory {}", path.display()))?;
        Ok(RunDir { path })
    }

    fn remove(self) {
        // Each dyno removed its own filesystem when it stopped; this clears what remains.
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

fn display_rel(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}
