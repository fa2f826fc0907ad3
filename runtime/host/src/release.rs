//! A release loaded into the engine: compiled components, pre-instantiated per process type.

use crate::addons::AppAddons;
use crate::engine::Engine;
use crate::state::StoreData;
use anyhow::{Context, bail};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use wasmtime::component::Component;
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wdeploy_build::{AppSettings, ProcessType, Procfile, Slug};
use wdeploy_store::Addons;

/// Everything needed to start dynos of one release, prepared once.
pub struct Release {
    pub app: Arc<str>,
    /// `vN` of the app's release log (in `dev`, the build count).
    pub version: u64,
    pub slug_id: String,
    pub procfile: Procfile,
    pub settings: AppSettings,
    pub config: BTreeMap<String, String>,
    /// The app's add-ons, bound to this app for every instance of the release.
    pub addons: Arc<AppAddons>,
    web: Option<ProxyPre<StoreData>>,
    commands: HashMap<String, CommandPre<StoreData>>,
}

/// What a release is made of, before loading.
pub struct ReleaseSpec<'a> {
    pub app: &'a str,
    pub version: u64,
    pub slug_id: String,
    /// Component file name → (digest, where its bytes are on disk).
    pub components: BTreeMap<String, (String, PathBuf)>,
    pub procfile: Procfile,
    pub settings: AppSettings,
    pub config: BTreeMap<String, String>,
    /// Where the app's add-on data lives (the host's add-ons database).
    pub addons: Arc<Addons>,
}

impl<'a> ReleaseSpec<'a> {
    /// A release of a slug just built on this machine (`wdeploy dev`).
    pub fn from_slug(
        app: &'a str,
        version: u64,
        slug: &Slug,
        config: BTreeMap<String, String>,
        addons: Arc<Addons>,
    ) -> Self {
        ReleaseSpec {
            app,
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
            settings: slug.settings.clone(),
            config,
            addons,
        }
    }
}

impl Release {
    /// Compiles (or loads from cache) every component the Procfile names and checks that
    /// each imports only what the host provides (naming every import it lacks) and exports
    /// the world its process type needs: `web` → `wasi:http/incoming-handler`, the others
    /// → `wasi:cli/run`. Nothing starts if any of this fails.
    pub async fn load(engine: &Arc<Engine>, spec: ReleaseSpec<'_>) -> anyhow::Result<Arc<Release>> {
        wdeploy_build::slug::check_procfile_names(&spec.procfile, spec.components.keys())?;
        let mut compiled: HashMap<String, Component> = HashMap::new();
        for process in spec.procfile.processes.values() {
            if compiled.contains_key(&process.component) {
                continue;
            }
            let Some((digest, path)) = spec.components.get(&process.component) else {
                bail!(
                    "process type `{}` runs `{}`, which the slug lacks",
                    process.name,
                    process.component
                );
            };
            let component = engine.load_component(path, digest).await?;
            compiled.insert(process.component.clone(), component);
        }

        let mut web = None;
        let mut commands = HashMap::new();
        for process in spec.procfile.processes.values() {
            let component = &compiled[&process.component];
            let pre = crate::imports::instantiate_pre(engine, component, &process.component)
                .with_context(|| format!("process type `{}`", process.name))?;
            if process.is_web() {
                let proxy = ProxyPre::new(pre)
                    .map_err(|e| world_error(process, "wasi:http/incoming-handler", e))?;
                web = Some(proxy);
            } else {
                let command =
                    CommandPre::new(pre).map_err(|e| world_error(process, "wasi:cli/run", e))?;
                commands.insert(process.name.clone(), command);
            }
        }
        let app: Arc<str> = spec.app.into();
        Ok(Arc::new(Release {
            addons: Arc::new(AppAddons::new(
                app.clone(),
                spec.addons,
                spec.config.clone(),
            )),
            app,
            version: spec.version,
            slug_id: spec.slug_id,
            procfile: spec.procfile,
            settings: spec.settings,
            config: spec.config,
            web,
            commands,
        }))
    }

    pub fn web(&self) -> Option<&ProxyPre<StoreData>> {
        self.web.as_ref()
    }

    pub fn command(&self, process_type: &str) -> Option<&CommandPre<StoreData>> {
        self.commands.get(process_type)
    }

    /// The environment of a dyno of this release: config vars, then the platform's own.
    pub fn dyno_env(&self, dyno: &str, port: u16) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = self
            .config
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        env.retain(|(k, _)| k != "DYNO" && k != "PORT");
        env.push(("DYNO".into(), dyno.into()));
        env.push(("PORT".into(), port.to_string()));
        env
    }

    /// `WEB_CONCURRENCY`: warm instances per web dyno (a config var; defaults to 4).
    pub fn web_concurrency(&self) -> usize {
        self.config
            .get("WEB_CONCURRENCY")
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|n| (1..=1024).contains(n))
            .unwrap_or(DEFAULT_WEB_CONCURRENCY)
    }
}

/// Instances per web dyno when `WEB_CONCURRENCY` is not set.
pub const DEFAULT_WEB_CONCURRENCY: usize = 4;

fn world_error(process: &ProcessType, export: &str, e: wasmtime::Error) -> anyhow::Error {
    anyhow::Error::from(e).context(format!(
        "process type `{}`: component {} does not export {export}",
        process.name, process.component
    ))
}
