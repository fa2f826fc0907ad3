//! The host's side of the control API: apps, releases, config vars, formation, dynos and
//! logs, kept in the store and carried out by the apps' runtimes.

use crate::app::{AppRuntime, Formation};
use crate::engine::Engine;
use crate::logs::{LogLine, LogStream, SourceKind};
use crate::release::{Release, ReleaseSpec};
use crate::router::Router;
use async_trait::async_trait;
use futures::SinkExt;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use wdeploy_api::ApiError;
use wdeploy_api::server::{BlobStream, Caller, LogQuery, Platform, Progress, TextStream};
use wdeploy_api::wire::*;
use wdeploy_build::{AppSettings, Procfile, SlugManifest};
use wdeploy_store::{AddonError, Addons, BlobStore, NewRelease, ReleaseStatus, State, StoreError};

/// Where the host keeps its data and how it is reached.
#[derive(Debug, Clone)]
pub struct HostConfig {
    pub data_dir: PathBuf,
    pub domain: String,
    /// The router's port, for app URLs (`http://NAME.DOMAIN:PORT`).
    pub router_port: u16,
    /// How crashed worker dynos are restarted.
    pub backoff: crate::backoff::Backoff,
    /// How long a stopping worker has to exit after its stdin closes.
    pub stop_grace: std::time::Duration,
}

/// The host: store + engine + router + every app's runtime.
pub struct Host {
    config: HostConfig,
    state: State,
    blobs: BlobStore,
    /// Every app's key-value buckets and job queues.
    addons: Arc<Addons>,
    engine: Arc<Engine>,
    router: Arc<Router>,
    run_dir: PathBuf,
    apps: Mutex<HashMap<String, Arc<AppRuntime>>>,
}

impl Host {
    /// Opens (or creates) the data dir. Returns the host and, on first start only, the new
    /// admin token (its hash is stored; the token itself is also written to
    /// `DATA/admin-token`, readable only by the owner).
    pub fn open(
        config: HostConfig,
        engine: Arc<Engine>,
        router: Arc<Router>,
    ) -> anyhow::Result<(Arc<Host>, Option<String>)> {
        use anyhow::Context;
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
        let state =
            State::open(&config.data_dir.join("state.db")).context("opening the state database")?;
        let blobs =
            BlobStore::open(&config.data_dir.join("blobs")).context("opening the blob store")?;
        let addons = Arc::new(
            Addons::open(&config.data_dir.join("addons.db"))
                .context("opening the add-ons database")?,
        );
        let interrupted = state.fail_interrupted()?;
        if interrupted > 0 {
            tracing::warn!(
                "{interrupted} release(s) interrupted by the last stop were marked failed"
            );
        }
        let run_dir = config.data_dir.join("dynos");
        if run_dir.exists() {
            // Filesystems of dynos from a previous run: ephemeral by definition.
            let _ = std::fs::remove_dir_all(&run_dir);
        }
        std::fs::create_dir_all(&run_dir)?;
        let mut token = None;
        if !state.has_tokens()? {
            let fresh = format!(
                "{}{}",
                uuid::Uuid::new_v4().simple(),
                uuid::Uuid::new_v4().simple()
            );
            state.add_token(&token_hash(&fresh), "admin")?;
            write_private(&config.data_dir.join("admin-token"), &fresh)?;
            token = Some(fresh);
        }
        let host = Arc::new(Host {
            config,
            state,
            blobs,
            addons,
            engine,
            router,
            run_dir,
            apps: Mutex::new(HashMap::new()),
        });
        Ok((host, token))
    }

    /// Brings every app back at its current release and formation (after a restart).
    pub async fn restore(&self) -> anyhow::Result<()> {
        for app in self.state.apps()? {
            let runtime = self.runtime(&app.name);
            let Some(release) = self.state.current_release(&app.name)? else {
                continue;
            };
            if release.slug.is_none() {
                continue;
            }
            match self.start(&runtime, &release).await {
                Ok(()) => tracing::info!(app = %app.name, version = release.version, "restored"),
                Err(e) => {
                    tracing::error!(app = %app.name, "could not restore v{}: {e:#}", release.version);
                    runtime.logs.platform(
                        "api",
                        format!("Could not restore v{}: {e:#}", release.version),
                    );
                }
            }
        }
        Ok(())
    }

    /// Stops every app's dynos.
    pub async fn stop(&self) {
        let apps: Vec<_> = self
            .apps
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        for app in apps {
            app.stop().await;
        }
    }

    /// The app's runtime, created (and routed) on first use.
    fn runtime(&self, app: &str) -> Arc<AppRuntime> {
        let mut apps = self.apps.lock().unwrap_or_else(|p| p.into_inner());
        apps.entry(app.to_string())
            .or_insert_with(|| {
                let runtime = AppRuntime::new(
                    app,
                    self.engine.clone(),
                    LogStream::new(),
                    self.run_dir.clone(),
                    self.config.router_port,
                    self.config.backoff.clone(),
                    self.config.stop_grace,
                );
                self.router.add_app(runtime.clone());
                runtime
            })
            .clone()
    }

    /// Loads a stored release (verifying every blob) and runs it at the stored formation;
    /// no release phase (it ran when the release was made).
    async fn start(
        &self,
        runtime: &Arc<AppRuntime>,
        release: &wdeploy_store::Release,
    ) -> anyhow::Result<()> {
        let loaded = self.load(release).await?;
        self.run_formation(runtime, loaded).await
    }

    /// Runs a loaded release at the app's stored formation, with preboot.
    async fn run_formation(
        &self,
        runtime: &Arc<AppRuntime>,
        loaded: Arc<Release>,
    ) -> anyhow::Result<()> {
        let formation = self.formation_for(&loaded.app, &loaded)?;
        runtime.deploy(loaded, &formation).await
    }

    async fn load(&self, release: &wdeploy_store::Release) -> anyhow::Result<Arc<Release>> {
        use anyhow::Context;
        let slug_id = release.slug.clone().context("the release has no slug")?;
        let manifest: SlugManifest = serde_json::from_slice(&self.blobs.read(&slug_id)?)
            .with_context(|| format!("slug {slug_id} is not a slug manifest"))?;
        let mut components = BTreeMap::new();
        for (name, file) in &manifest.components {
            let path = self.blobs.verified_path(&file.digest)?;
            components.insert(name.clone(), (file.digest.clone(), path));
        }
        let procfile = Procfile::parse(&release.procfile)?;
        let settings = AppSettings::parse(&release.settings)?;
        Release::load(
            &self.engine,
            ReleaseSpec {
                app: &release.app,
                version: release.version,
                slug_id,
                components,
                procfile,
                settings,
                config: release.config.clone(),
                addons: self.addons.clone(),
            },
        )
        .await
    }

    /// The stored formation, limited to the release's process types; a first deploy of an
    /// app with a `web` type gets `web=1` (as on Heroku).
    fn formation_for(&self, app: &str, release: &Release) -> Result<Formation, StoreError> {
        let mut formation = self.state.formation(app)?;
        if formation.is_empty() && release.procfile.get("web").is_some() {
            formation.insert("web".into(), 1);
            self.state.set_formation(app, &formation)?;
        }
        formation.retain(|t, _| release.procfile.get(t).is_some_and(|p| !p.is_release()));
        Ok(formation)
    }

    /// Appends a release and, if it has a slug, makes it serve: load it (blobs verified),
    /// run its release phase, start its dynos with preboot. Records how that went; on
    /// any failure the previous release keeps serving.
    ///
    /// `make` builds the new release from the current one while the app's release lock is
    /// held, so concurrent changes (two `config:set`s) never lose each other's updates.
    async fn release(
        &self,
        app: &str,
        progress: &Reporter,
        make: impl FnOnce(Option<wdeploy_store::Release>) -> Result<NewRelease, ApiError>,
    ) -> Result<(ReleaseInfo, BTreeMap<String, String>), ApiError> {
        let runtime = self.runtime(app);
        let _releasing = runtime.releasing.lock().await;
        let new = make(self.state.current_release(app).map_err(store_error)?)?;
        let has_slug = new.slug.is_some();
        let description = new.description.clone();
        let mut record = self
            .state
            .append_release(
                app,
                NewRelease {
                    status: if has_slug {
                        ReleaseStatus::Pending
                    } else {
                        ReleaseStatus::Succeeded
                    },
                    ..new
                },
            )
            .map_err(store_error)?;
        runtime.logs.platform(
            "api",
            format!(
                "Release v{}: {description} by {}",
                record.version, record.author
            ),
        );
        if has_slug {
            match self.go_live(&runtime, &record, progress).await {
                Ok(()) => {
                    self.state
                        .finish_release(app, record.version, ReleaseStatus::Succeeded)
                        .map_err(store_error)?;
                    record.status = ReleaseStatus::Succeeded;
                    runtime
                        .logs
                        .platform("api", format!("Deployed v{}", record.version));
                }
                Err(e) => {
                    self.state
                        .finish_release(app, record.version, ReleaseStatus::Failed)
                        .map_err(store_error)?;
                    runtime
                        .logs
                        .platform("api", format!("Release v{} failed: {e:#}", record.version));
                    return Err(ApiError::invalid(format!(
                        "release v{} failed, the previous release keeps serving: {e:#}",
                        record.version
                    )));
                }
            }
        }
        let config = record.config.clone();
        Ok((self.release_info(app, &record), config))
    }

    async fn go_live(
        &self,
        runtime: &Arc<AppRuntime>,
        record: &wdeploy_store::Release,
        progress: &Reporter,
    ) -> anyhow::Result<()> {
        let loaded = self.load(record).await?;
        self.release_phase(runtime, &loaded, progress).await?;
        progress
            .say(format!(
                "-----> Starting v{} (the old dynos stop once it is up)",
                record.version
            ))
            .await;
        self.run_formation(runtime, loaded).await
    }

    /// Runs the `release` process type, if any, as a one-off dyno; its output goes to the
    /// log stream and to `progress`. A non-zero exit or a trap fails the release.
    async fn release_phase(
        &self,
        runtime: &Arc<AppRuntime>,
        release: &Arc<Release>,
        progress: &Reporter,
    ) -> anyhow::Result<()> {
        let Some(process) = release.procfile.get("release") else {
            return Ok(());
        };
        let (_, mut live) = runtime.logs.replay_and_subscribe(0);
        let (name, task) = runtime.one_off(release.clone(), "release", "release", Vec::new())?;
        progress
            .say(format!(
                "-----> Running release command `{}` as {name}",
                process.component
            ))
            .await;
        let mut out = progress.sender();
        match follow_one_off(&mut live, &name, task, &mut out, "       ").await {
            Ok(0) => {
                progress.say("-----> Release command succeeded").await;
                Ok(())
            }
            Ok(code) => anyhow::bail!("the release command failed with exit status {code}"),
            Err(why) => anyhow::bail!("the release command crashed: {why}"),
        }
    }

    fn release_info(&self, app: &str, r: &wdeploy_store::Release) -> ReleaseInfo {
        let current = self
            .state
            .current_release(app)
            .ok()
            .flatten()
            .map(|c| c.version);
        ReleaseInfo {
            version: r.version,
            description: r.description.clone(),
            slug: r.slug.clone(),
            user: r.author.clone(),
            created_at: r.created_at.to_rfc3339(),
            status: match r.status {
                ReleaseStatus::Pending => "pending",
                ReleaseStatus::Succeeded => "succeeded",
                ReleaseStatus::Failed => "failed",
            }
            .into(),
            current: current == Some(r.version),
        }
    }

    fn app_info(&self, name: &str) -> Result<AppInfo, ApiError> {
        let app = self.state.app(name).map_err(store_error)?;
        let release = self.state.current_release(name).map_err(store_error)?;
        Ok(AppInfo {
            web_url: format!(
                "http://{name}.{}:{}",
                self.config.domain, self.config.router_port
            ),
            created_at: app.created_at.to_rfc3339(),
            release: release.map(|r| r.version),
            formation: self.state.formation(name).map_err(store_error)?,
            name: app.name,
        })
    }

    fn existing(&self, app: &str) -> Result<(), ApiError> {
        self.state.app(app).map(|_| ()).map_err(store_error)
    }

    /// Runs an add-ons database call on a blocking thread.
    async fn addon_call<T: Send + 'static>(
        &self,
        call: impl FnOnce(&Addons) -> Result<T, AddonError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let addons = self.addons.clone();
        tokio::task::spawn_blocking(move || call(&addons))
            .await
            .map_err(|e| ApiError::internal(format!("add-on call failed: {e}")))?
            .map_err(addon_error)
    }
}

#[async_trait]
impl Platform for Host {
    fn authenticate(&self, token: &str) -> Option<Caller> {
        self.state
            .token(&token_hash(token))
            .ok()
            .flatten()
            .map(Caller)
    }

    async fn apps(&self) -> Result<Vec<AppInfo>, ApiError> {
        let apps = self.state.apps().map_err(store_error)?;
        apps.iter().map(|a| self.app_info(&a.name)).collect()
    }

    async fn create_app(&self, req: CreateApp) -> Result<AppInfo, ApiError> {
        let name = match req.name {
            Some(name) => name,
            None => format!("app-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]),
        };
        validate_app_name(&name)?;
        self.state.create_app(&name).map_err(store_error)?;
        // Add-on data left by an app of the same name whose destroy was interrupted.
        let app = name.clone();
        self.addon_call(move |addons| addons.delete_app(&app))
            .await?;
        self.runtime(&name).logs.platform("api", "App created");
        self.app_info(&name)
    }

    async fn app(&self, app: &str) -> Result<AppInfo, ApiError> {
        self.app_info(app)
    }

    async fn destroy_app(&self, app: &str) -> Result<(), ApiError> {
        self.existing(app)?;
        let runtime = self
            .apps
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(app);
        self.router.remove_app(app);
        if let Some(runtime) = runtime {
            runtime.stop().await;
        }
        // Add-on data first: a new app of the same name must start empty.
        let name = app.to_string();
        self.addon_call(move |addons| addons.delete_app(&name))
            .await?;
        self.state.delete_app(app).map_err(store_error)
    }

    async fn missing_blobs(&self, digests: Vec<String>) -> Result<Vec<String>, ApiError> {
        if let Some(bad) = digests.iter().find(|d| !wdeploy_build::digest::is_valid(d)) {
            return Err(ApiError::invalid(format!("`{bad}` is not a sha256 digest")));
        }
        Ok(digests.into_iter().filter(|d| !self.blobs.has(d)).collect())
    }

    async fn put_blob(&self, digest: &str, body: BlobStream) -> Result<(), ApiError> {
        let limit = wdeploy_api::server::MAX_BLOB_BYTES as u64;
        let blobs = self.blobs.clone();
        let owned = digest.to_string();
        // The store reads synchronously (hash, temp file, fsync, rename) on a blocking
        // thread, pulling the upload from the connection as it goes.
        let reader = tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(body));
        tokio::task::spawn_blocking(move || blobs.put(&owned, reader, limit))
            .await
            .map_err(|e| ApiError::internal(format!("storing the upload: {e}")))?
            .map_err(store_error)?;
        // Compile while the client uploads the rest and creates the release.
        if let Some(path) = self.blobs.path(digest) {
            self.engine.precompile(path, digest.to_string());
        }
        Ok(())
    }

    async fn create_release(
        &self,
        app: &str,
        by: &Caller,
        req: CreateRelease,
        progress: Progress,
    ) -> Result<ReleaseInfo, ApiError> {
        self.existing(app)?;
        Procfile::parse(&req.procfile).map_err(|e| ApiError::invalid(e.to_string()))?;
        AppSettings::parse(&req.settings).map_err(|e| ApiError::invalid(format!("{e:#}")))?;
        if !self.blobs.has(&req.slug) {
            return Err(ApiError::invalid(format!(
                "slug {} has not been uploaded",
                req.slug
            )));
        }
        let (release, _) = self
            .release(app, &Reporter(Some(progress)), |current| {
                Ok(NewRelease {
                    slug: Some(req.slug),
                    procfile: req.procfile,
                    settings: req.settings,
                    config: current.map(|r| r.config).unwrap_or_default(),
                    description: req.description,
                    author: by.0.clone(),
                    status: ReleaseStatus::Pending,
                })
            })
            .await?;
        Ok(release)
    }

    async fn releases(&self, app: &str) -> Result<Vec<ReleaseInfo>, ApiError> {
        let releases = self.state.releases(app).map_err(store_error)?;
        Ok(releases.iter().map(|r| self.release_info(app, r)).collect())
    }

    async fn rollback(
        &self,
        app: &str,
        by: &Caller,
        req: Rollback,
    ) -> Result<ReleaseInfo, ApiError> {
        self.existing(app)?;
        let (release, _) = self
            .release(app, &Reporter(None), |current| {
                let current = current.ok_or_else(|| {
                    ApiError::invalid(format!("{app} has no release to roll back from"))
                })?;
                let target_version = match req.version {
                    Some(v) => v,
                    None => current
                        .version
                        .checked_sub(1)
                        .filter(|v| *v > 0)
                        .ok_or_else(|| {
                            ApiError::invalid(format!(
                                "v{} is the first release: nothing to roll back to",
                                current.version
                            ))
                        })?,
                };
                let target = self
                    .state
                    .release(app, target_version)
                    .map_err(store_error)?;
                if target.slug.is_none() {
                    return Err(ApiError::invalid(format!(
                        "v{target_version} has no slug to run"
                    )));
                }
                Ok(NewRelease {
                    slug: target.slug,
                    procfile: target.procfile,
                    settings: target.settings,
                    config: target.config,
                    description: format!("Rollback to v{target_version}"),
                    author: by.0.clone(),
                    status: ReleaseStatus::Pending,
                })
            })
            .await?;
        Ok(release)
    }

    async fn config(&self, app: &str) -> Result<BTreeMap<String, String>, ApiError> {
        self.existing(app)?;
        let current = self.state.current_release(app).map_err(store_error)?;
        Ok(current.map(|r| r.config).unwrap_or_default())
    }

    async fn patch_config(
        &self,
        app: &str,
        by: &Caller,
        patch: ConfigPatch,
    ) -> Result<BTreeMap<String, String>, ApiError> {
        self.existing(app)?;
        if patch.is_empty() {
            return Err(ApiError::invalid("no config vars given"));
        }
        for key in patch.keys() {
            if !valid_config_key(key) {
                return Err(ApiError::invalid(format!(
                    "`{key}` is not a valid config var name (letters, digits and `_`, not starting with a digit)"
                )));
            }
        }
        let (_, config) = self
            .release(app, &Reporter(None), |current| {
                let mut config = current
                    .as_ref()
                    .map(|r| r.config.clone())
                    .unwrap_or_default();
                let (mut set, mut unset) = (Vec::new(), Vec::new());
                for (key, value) in patch {
                    match value {
                        Some(v) => {
                            config.insert(key.clone(), v);
                            set.push(key);
                        }
                        None => {
                            config.remove(&key);
                            unset.push(key);
                        }
                    }
                }
                let description = match (set.is_empty(), unset.is_empty()) {
                    (false, true) => format!("Set {} config vars", set.join(", ")),
                    (true, false) => format!("Unset {} config vars", unset.join(", ")),
                    _ => format!(
                        "Set {} and unset {} config vars",
                        set.join(", "),
                        unset.join(", ")
                    ),
                };
                let (slug, procfile, settings) = match current {
                    Some(r) => (r.slug, r.procfile, r.settings),
                    None => (None, String::new(), String::new()),
                };
                Ok(NewRelease {
                    slug,
                    procfile,
                    settings,
                    config,
                    description,
                    author: by.0.clone(),
                    status: ReleaseStatus::Pending,
                })
            })
            .await?;
        Ok(config)
    }

    async fn formation(&self, app: &str) -> Result<BTreeMap<String, u32>, ApiError> {
        self.state.formation(app).map_err(store_error)
    }

    async fn scale(
        &self,
        app: &str,
        by: &Caller,
        patch: BTreeMap<String, u32>,
    ) -> Result<BTreeMap<String, u32>, ApiError> {
        self.existing(app)?;
        let runtime = self.runtime(app);
        let _releasing = runtime.releasing.lock().await;
        let release = runtime.current_release();
        for (process_type, quantity) in &patch {
            if *quantity > 100 {
                return Err(ApiError::invalid(format!(
                    "{process_type}={quantity}: at most 100 dynos per process type"
                )));
            }
            if let Some(release) = &release {
                match release.procfile.get(process_type) {
                    None => {
                        return Err(ApiError::not_found(format!(
                            "no process type `{process_type}` in v{} (types: {})",
                            release.version,
                            release.procfile.type_names()
                        )));
                    }
                    Some(p) if p.is_release() => {
                        return Err(ApiError::invalid(
                            "the release process type runs once per deploy; it cannot be scaled",
                        ));
                    }
                    Some(_) => {}
                }
            }
        }
        self.state.set_formation(app, &patch).map_err(store_error)?;
        let formation = self.state.formation(app).map_err(store_error)?;
        if let Some(release) = release {
            let mut wanted = formation.clone();
            wanted.retain(|t, _| release.procfile.get(t).is_some());
            runtime
                .scale(&wanted)
                .await
                .map_err(|e| ApiError::internal(format!("{e:#}")))?;
        }
        let summary: Vec<String> = patch.iter().map(|(t, n)| format!("{t}={n}")).collect();
        runtime.logs.platform(
            "api",
            format!("Scaled to {} by {}", summary.join(" "), by.0),
        );
        Ok(formation)
    }

    async fn dynos(&self, app: &str) -> Result<Vec<DynoInfo>, ApiError> {
        self.existing(app)?;
        Ok(self
            .runtime(app)
            .dynos()
            .into_iter()
            .map(|d| DynoInfo {
                name: d.name,
                process_type: d.process_type,
                state: d.state.as_str().into(),
                since: d.since.to_rfc3339(),
                next_start: d.next_start.map(|t| t.to_rfc3339()),
                release: d.release,
                command: d.command,
            })
            .collect())
    }

    async fn restart(&self, app: &str, dyno: Option<&str>) -> Result<(), ApiError> {
        self.existing(app)?;
        let runtime = self.runtime(app);
        runtime
            .logs
            .platform("api", format!("Restarting {}", dyno.unwrap_or("all dynos")));
        runtime
            .restart(dyno)
            .await
            .map_err(|e| ApiError::invalid(format!("{e:#}")))
    }

    async fn run(&self, app: &str, req: RunRequest) -> Result<TextStream, ApiError> {
        self.existing(app)?;
        let runtime = self.runtime(app);
        let (_, mut live) = runtime.logs.replay_and_subscribe(0);
        let (name, task) = runtime
            .run(&req.process_type, req.args)
            .map_err(|e| ApiError::invalid(format!("{e:#}")))?;
        let (mut tx, rx) = futures::channel::mpsc::channel::<String>(256);
        tokio::spawn(async move {
            let _ = tx
                .send(format!("Running `{}` as {name}\n", req.process_type))
                .await;
            let code = match follow_one_off(&mut live, &name, task, &mut tx, "").await {
                Ok(code) => code,
                Err(why) => {
                    let _ = tx.send(format!("{name} crashed: {why}\n")).await;
                    1
                }
            };
            let _ = tx.send(format!("{EXIT_MARKER}{code}\n")).await;
        });
        Ok(Box::pin(rx))
    }

    async fn logs(&self, app: &str, query: LogQuery) -> Result<TextStream, ApiError> {
        self.existing(app)?;
        if let Some(source) = &query.source
            && !["app", "router", "wdeploy"].contains(&source.as_str())
        {
            return Err(ApiError::invalid(format!(
                "unknown log source `{source}` (use app, router or wdeploy)"
            )));
        }
        let runtime = self.runtime(app);
        let keep = move |line: &LogLine| {
            query.dyno.as_ref().is_none_or(|d| *line.process == **d)
                && query.source.as_ref().is_none_or(|s| match line.kind {
                    SourceKind::App => s == "app",
                    SourceKind::Router => s == "router",
                    SourceKind::Platform => s == "wdeploy",
                })
        };
        let (history, mut live) = runtime.logs.replay_and_subscribe(crate::logs::BUFFER_LINES);
        let mut lines: Vec<String> = history
            .iter()
            .filter(|l| keep(l))
            .map(|l| format!("{l}\n"))
            .collect();
        let n = query.lines.unwrap_or(100);
        lines.drain(..lines.len().saturating_sub(n));
        let (mut tx, rx) = futures::channel::mpsc::channel::<String>(256);
        let tail = query.tail;
        tokio::spawn(async move {
            for line in lines {
                if tx.send(line).await.is_err() {
                    return;
                }
            }
            if !tail {
                return;
            }
            loop {
                let text = match live.recv().await {
                    Ok(line) if keep(&line) => format!("{line}\n"),
                    Ok(_) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        format!("wdeploy: {n} log lines dropped (reader too slow)\n")
                    }
                    Err(_) => return,
                };
                if tx.send(text).await.is_err() {
                    return;
                }
            }
        });
        Ok(Box::pin(rx))
    }

    async fn kv_keys(&self, app: &str, bucket: &str, prefix: &str) -> Result<KvKeys, ApiError> {
        self.existing(app)?;
        let (app, bucket_name, prefix) = (app.to_string(), bucket.to_string(), prefix.to_string());
        let page = self
            .addon_call(move |addons| addons.keys(&app, &bucket_name, &prefix, 0))
            .await?;
        Ok(KvKeys {
            bucket: bucket.to_string(),
            keys: page.keys,
            truncated: page.next.is_some(),
        })
    }

    async fn kv_get(&self, app: &str, bucket: &str, key: &str) -> Result<KvEntry, ApiError> {
        self.existing(app)?;
        let (app_name, bucket_name, key_name) =
            (app.to_string(), bucket.to_string(), key.to_string());
        let value = self
            .addon_call(move |addons| addons.get(&app_name, &bucket_name, &key_name))
            .await?
            .ok_or_else(|| {
                ApiError::not_found(format!("key `{key}` not found in bucket {bucket} of {app}"))
            })?;
        Ok(kv_entry(bucket, key, value))
    }

    async fn kv_set(
        &self,
        app: &str,
        by: &Caller,
        bucket: &str,
        key: &str,
        value: String,
    ) -> Result<KvEntry, ApiError> {
        self.existing(app)?;
        let (app_name, bucket_name, key_name) =
            (app.to_string(), bucket.to_string(), key.to_string());
        let bytes = value.into_bytes();
        let stored = bytes.clone();
        self.addon_call(move |addons| addons.set(&app_name, &bucket_name, &key_name, &stored))
            .await?;
        self.runtime(app).logs.platform(
            "api",
            format!("Set key `{key}` of bucket {bucket} by {}", by.0),
        );
        Ok(kv_entry(bucket, key, bytes))
    }

    async fn queues(&self, app: &str) -> Result<Vec<QueueInfo>, ApiError> {
        self.existing(app)?;
        let app = app.to_string();
        let stats = self
            .addon_call(move |addons| addons.queue_stats(&app))
            .await?;
        Ok(stats
            .into_iter()
            .map(|q| QueueInfo {
                queue: q.queue,
                ready: q.ready,
                leased: q.leased,
                done: q.done,
            })
            .collect())
    }
}

/// A value as the API shows it: text when it is UTF-8, hex otherwise.
fn kv_entry(bucket: &str, key: &str, value: Vec<u8>) -> KvEntry {
    let (value, encoding) = match String::from_utf8(value) {
        Ok(text) => (text, "utf-8"),
        Err(e) => (hex_string(e.as_bytes()), "hex"),
    };
    KvEntry {
        bucket: bucket.to_string(),
        key: key.to_string(),
        value,
        encoding: encoding.into(),
    }
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Add-on errors as API errors: limits and bad names are the caller's (422).
fn addon_error(e: AddonError) -> ApiError {
    match e {
        e @ (AddonError::TooLarge { .. } | AddonError::Invalid(_)) => {
            ApiError::invalid(e.to_string())
        }
        e @ AddonError::NoSuchJob(_) => ApiError::not_found(e.to_string()),
        e @ AddonError::Db(_) => ApiError::internal(e.to_string()),
    }
}

/// Progress lines of a release, for a client that is watching (push) or nobody.
struct Reporter(Option<Progress>);

impl Reporter {
    async fn say(&self, line: impl Into<String>) {
        if let Some(tx) = &self.0 {
            let _ = tx.clone().send(format!("{}\n", line.into())).await;
        }
    }

    /// A sender for raw lines; without a watcher, one whose lines go nowhere.
    fn sender(&self) -> Progress {
        self.0
            .clone()
            .unwrap_or_else(|| futures::channel::mpsc::channel(1).0)
    }
}

/// Forwards a one-off dyno's output (its `app[NAME]` lines, each after `indent`) into
/// `out` until it ends, and returns its exit status or why it crashed. A client that
/// went away does not stop the dyno.
async fn follow_one_off(
    live: &mut tokio::sync::broadcast::Receiver<Arc<LogLine>>,
    name: &str,
    task: tokio::task::JoinHandle<Result<i32, String>>,
    out: &mut futures::channel::mpsc::Sender<String>,
    indent: &str,
) -> Result<i32, String> {
    tokio::pin!(task);
    let outcome = loop {
        tokio::select! {
            line = live.recv() => match line {
                Ok(line) if &*line.process == name && line.kind == SourceKind::App => {
                    let _ = out.send(format!("{indent}{}\n", line.text)).await;
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Closed) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    let _ = out.send(format!("{indent}({n} lines dropped)\n")).await;
                }
            },
            outcome = &mut task => break outcome,
        }
    };
    while let Ok(line) = live.try_recv() {
        if &*line.process == name && line.kind == SourceKind::App {
            let _ = out.send(format!("{indent}{}\n", line.text)).await;
        }
    }
    outcome.unwrap_or_else(|e| Err(e.to_string()))
}

/// `[a-z][a-z0-9-]{1,29}`: also keeps names safe in paths and host names.
fn validate_app_name(name: &str) -> Result<(), ApiError> {
    let ok = (2..=30).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "`{name}` is not a valid app name: use 2-30 characters, lowercase letters, digits and `-`, starting with a letter"
        )))
    }
}

fn valid_config_key(key: &str) -> bool {
    let mut chars = key.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && key.len() <= 256
}

fn token_hash(token: &str) -> String {
    wdeploy_build::digest::of_bytes(token.as_bytes())
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    writeln!(file, "{text}")?;
    file.sync_all()
}

/// Store errors as API errors: what the user did wrong is 4xx, the rest 500.
fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::NotFound(what) => ApiError::not_found(format!("{what} not found")),
        StoreError::Conflict(m) => ApiError::conflict(m),
        StoreError::Invalid(m) => ApiError::invalid(m),
        e @ (StoreError::Corrupt { .. } | StoreError::DigestMismatch { .. }) => {
            ApiError::invalid(e.to_string())
        }
        e @ StoreError::TooLarge { .. } => ApiError::new(413, "payload_too_large", e.to_string()),
        e => ApiError::internal(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_names() {
        assert!(validate_app_name("hello").is_ok());
        assert!(validate_app_name("my-app-2").is_ok());
        for bad in [
            "a",
            "Hello",
            "2app",
            "../etc",
            "a.b",
            "x".repeat(31).as_str(),
        ] {
            assert!(validate_app_name(bad).is_err(), "{bad}");
        }
    }
}
