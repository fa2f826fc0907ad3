//! The host's side of the control API: apps, releases, config vars, formation, dynos,
//! logs and add-on data, kept in the store and carried out by the apps' runtimes.
//!
//! - `mod.rs`: the [`Host`], its apps' runtimes, start (restore) and stop;
//! - `bootstrap`: the admin token;
//! - `releases`: the release pipeline (append, load, release phase, preboot) and the
//!   calls that make releases: deploys, rollbacks, config changes;
//! - `streams`: log streams and one-off dynos' output;
//! - `addon_admin`: `kv:*` and `queue:stats`;
//! - `platform`: the API's `Platform` trait, call by call;
//! - `errors`: how failures reach clients.

mod addon_admin;
mod bootstrap;
mod errors;
mod platform;
mod releases;
mod streams;

use crate::app::AppRuntime;
use crate::dyno::backoff::Backoff;
use crate::guest::engine::Engine;
use crate::logs::LogStream;
use crate::router::Router;
use errors::Result;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use wdeploy_core::AppName;
use wdeploy_store::Store;

/// Where the host keeps its local data and how it is reached.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// The admin token file and the dynos' filesystems live here (the store may too).
    pub data_dir: PathBuf,
    pub domain: String,
    /// The router's port, for app URLs (`http://NAME.DOMAIN:PORT`).
    pub router_port: u16,
    /// How crashed worker dynos are restarted.
    pub backoff: Backoff,
    /// How long a stopping worker has to exit after its stdin closes.
    pub stop_grace: std::time::Duration,
    /// The most add-on storage any app gets, in MB, whatever its `limits.addons_mb`.
    pub max_addons_mb: u64,
    /// Lines per second each app's dynos may log (the rest are dropped and counted).
    pub log_rate: crate::logs::rate::LogRate,
}

/// The host: store + engine + router + every app's runtime.
pub struct Host {
    config: HostConfig,
    store: Store,
    engine: Arc<Engine>,
    router: Arc<Router>,
    run_dir: PathBuf,
    apps: Mutex<HashMap<AppName, Arc<AppEntry>>>,
}

/// One app this host runs.
struct AppEntry {
    runtime: Arc<AppRuntime>,
    /// One permit: held across "record a release, then run it" (and by scaling, which
    /// must apply to the release that goes live), so the app's releases go live in
    /// version order. It orders work; the data it is about lives in the store.
    releasing: tokio::sync::Semaphore,
}

impl AppEntry {
    /// Waits for this app's release in progress, if any, to finish.
    async fn release_turn(&self) -> Result<tokio::sync::SemaphorePermit<'_>> {
        self.releasing.acquire().await.map_err(|_| {
            // Never closed; the error exists only because the type allows it.
            wdeploy_api::ApiError::internal(format!(
                "the release queue of {} closed",
                self.runtime.name
            ))
            .into()
        })
    }
}

impl Host {
    /// A host over `store`. Returns it and, on first start only, the new admin token (its
    /// hash is stored; the token itself is also written to `DATA/admin-token`, readable
    /// only by the owner).
    pub async fn open(
        config: HostConfig,
        store: Store,
        engine: Arc<Engine>,
        router: Arc<Router>,
    ) -> anyhow::Result<(Arc<Host>, Option<String>)> {
        use anyhow::Context;
        let run_dir = config.data_dir.join("dynos");
        if run_dir.exists() {
            // Filesystems of dynos from a previous run: ephemeral by definition.
            let _ = std::fs::remove_dir_all(&run_dir);
        }
        std::fs::create_dir_all(&run_dir)
            .with_context(|| format!("creating {}", run_dir.display()))?;
        let token = bootstrap::admin_token(&*store.control, &config.data_dir)
            .await
            .context("making the admin token")?;
        let host = Arc::new(Host {
            config,
            store,
            engine,
            router,
            run_dir,
            apps: Mutex::new(HashMap::new()),
        });
        Ok((host, token))
    }

    /// Brings every app back at its current release and formation (after a restart).
    pub async fn restore(&self) -> anyhow::Result<()> {
        for app in self.store.control.apps().await? {
            let Some(release) = self.store.control.release_head(&app.name).await?.current else {
                continue;
            };
            if release.slug.is_none() {
                continue;
            }
            let entry = self.entry(&app.name);
            match self.start(&entry.runtime, &release).await {
                Ok(()) => tracing::info!(app = %app.name, version = release.version, "restored"),
                Err(e) => {
                    tracing::error!(app = %app.name, "could not restore v{}: {e:#}", release.version);
                    entry.runtime.logs.platform(
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
        let apps: Vec<_> = self.apps.lock().values().cloned().collect();
        for app in apps {
            app.runtime.stop().await;
        }
    }

    /// An app that exists in the store, with its runtime.
    async fn existing(&self, app: &AppName) -> Result<Arc<AppEntry>> {
        self.store.control.app(app).await?;
        Ok(self.entry(app))
    }

    /// The app's runtime, created (and routed) on first use.
    fn entry(&self, app: &AppName) -> Arc<AppEntry> {
        let mut apps = self.apps.lock();
        apps.entry(app.clone())
            .or_insert_with(|| {
                let runtime = AppRuntime::new(
                    app.clone(),
                    self.engine.clone(),
                    LogStream::with_rate(self.config.log_rate),
                    self.run_dir.clone(),
                    self.config.router_port,
                    self.config.backoff.clone(),
                    self.config.stop_grace,
                );
                self.router.add_app(runtime.clone());
                Arc::new(AppEntry {
                    runtime,
                    releasing: tokio::sync::Semaphore::new(1),
                })
            })
            .clone()
    }

    /// Forgets an app's runtime (on destroy) and stops its dynos.
    async fn forget(&self, app: &AppName) {
        let entry = self.apps.lock().remove(app);
        self.router.remove_app(app);
        if let Some(entry) = entry {
            entry.runtime.stop().await;
        }
    }
}
