//! A release loaded into the engine: compiled components, pre-instantiated per process type.

use crate::addons::{AddonBinding, AppAddons};
use crate::guest::allow_list::AppEgress;
use crate::guest::data::StoreData;
use crate::guest::engine::{Engine, Flavor, Loaded};
use anyhow::{Context, bail};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi_http::handler::ProxyPre;
use wasmtime_wasi_http::p3::bindings::ServicePre;
use wdeploy_core::{AppName, AppSettings, Digest, Process, ProcessType, Procfile};

/// Everything needed to start dynos of one release, prepared once.
pub struct Release {
    pub app: AppName,
    /// `vN` of the app's release log (in `dev`, the build count).
    pub version: u64,
    pub slug_id: Digest,
    pub procfile: Procfile,
    pub settings: AppSettings,
    pub config: BTreeMap<String, String>,
    /// The app's add-ons, bound to this app for every instance of the release.
    pub addons: Arc<AppAddons>,
    /// The release's `[egress] allow` list, shared by every instance of it.
    pub egress: Arc<AppEgress>,
    web: Option<ProxyPre<StoreData>>,
    commands: HashMap<ProcessType, CommandPre<StoreData>>,
    /// Keeps the compiled components in the engine's memory while the release lives.
    _compiled: Vec<Loaded>,
}

/// What a release is made of, before loading.
pub struct ReleaseSpec {
    pub app: AppName,
    pub version: u64,
    pub slug_id: Digest,
    /// Component file name → (digest, a local file holding its bytes).
    pub components: BTreeMap<String, (Digest, PathBuf)>,
    pub procfile: Procfile,
    pub settings: AppSettings,
    pub config: BTreeMap<String, String>,
    /// Where the app's add-on data lives (the store's add-on facet), under which id and
    /// quota.
    pub addons: AddonBinding,
}

impl Release {
    /// Compiles (or loads from cache) every component the Procfile names and checks that
    /// each imports only what the host provides (naming every import it lacks) and exports
    /// the world its process type needs: `web` → `wasi:http/incoming-handler`, the others
    /// → `wasi:cli/run`. Nothing starts if any of this fails.
    pub async fn load(engine: &Arc<Engine>, spec: ReleaseSpec) -> anyhow::Result<Arc<Release>> {
        spec.procfile.check_components(spec.components.keys())?;
        let mut compiled: HashMap<String, Loaded> = HashMap::new();
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
            let component = engine
                .load_component(&process.component, path, digest)
                .await?;
            compiled.insert(process.component.clone(), component);
        }

        let mut web = None;
        let mut commands = HashMap::new();
        for process in spec.procfile.processes.values() {
            let loaded = &compiled[&process.component];
            if !process.is_web() && loaded.flavor == Flavor::Async {
                bail!(
                    "process type `{}`: component {} is a WASI 0.3 (component-model async) component; this host runs those as `web` only: build `{}` for WASI 0.2 (wasm32-wasip2, wasi:cli/run@0.2.x)",
                    process.name,
                    process.component,
                    process.name
                );
            }
            let pre = crate::guest::imports::instantiate_pre(
                engine,
                &loaded.component,
                loaded.flavor,
                &process.component,
            )
            .with_context(|| format!("process type `{}`", process.name))?;
            if process.is_web() {
                let proxy = match loaded.flavor {
                    Flavor::Plain => {
                        wasmtime_wasi_http::p2::bindings::ProxyPre::new(pre).map(ProxyPre::P2)
                    }
                    Flavor::Async => ServicePre::new(pre).map(ProxyPre::P3),
                };
                web = Some(proxy.map_err(|e| web_world_error(engine, process, loaded, e))?);
            } else {
                let command =
                    CommandPre::new(pre).map_err(|e| world_error(process, "wasi:cli/run", e))?;
                commands.insert(process.name.clone(), command);
            }
        }
        Ok(Arc::new(Release {
            addons: Arc::new(AppAddons::new(
                spec.app.clone(),
                spec.addons,
                spec.config.clone(),
            )),
            egress: Arc::new(AppEgress::new(spec.settings.egress.allow.clone())),
            app: spec.app,
            version: spec.version,
            slug_id: spec.slug_id,
            procfile: spec.procfile,
            settings: spec.settings,
            config: spec.config,
            web,
            commands,
            _compiled: compiled.into_values().collect(),
        }))
    }

    pub fn web(&self) -> Option<&ProxyPre<StoreData>> {
        self.web.as_ref()
    }

    pub fn command(&self, process_type: impl AsRef<str>) -> Option<&CommandPre<StoreData>> {
        self.commands.get(process_type.as_ref())
    }

    /// The process types that are commands (`wasi:cli/run`): what a one-off can run.
    pub fn command_types(&self) -> Vec<&str> {
        let mut types: Vec<&str> = self.commands.keys().map(|t| t.as_ref()).collect();
        types.sort_unstable();
        types
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

/// Why a component cannot be a `web` process, with what it exports instead.
fn web_world_error(
    engine: &Engine,
    process: &Process,
    loaded: &Loaded,
    e: wasmtime::Error,
) -> anyhow::Error {
    let exports: Vec<String> = loaded
        .component
        .component_type()
        .exports(engine.wasmtime_for(loaded.flavor))
        .map(|(name, _)| name.to_string())
        .collect();
    let found = if exports.is_empty() {
        "nothing".to_string()
    } else {
        exports.join(", ")
    };
    anyhow::Error::from(e).context(format!(
        "process type `{}`: component {} exports {found}; a web process exports wasi:http/incoming-handler@0.2.x (WASI 0.2) or wasi:http/handler@0.3.0 (WASI 0.3 as wasmtime 48 implements it)",
        process.name, process.component
    ))
}

fn world_error(process: &Process, export: &str, e: wasmtime::Error) -> anyhow::Error {
    anyhow::Error::from(e).context(format!(
        "process type `{}`: component {} does not export {export}",
        process.name, process.component
    ))
}
