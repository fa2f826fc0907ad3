//! The host's one wasmtime engine: async, pooling allocator, epoch interruption, compile cache.

use crate::guest::data::StoreData;
use crate::guest::egress::Egress;
use crate::guest::share::InstanceShares;
use anyhow::Context;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::OnceCell;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, InstanceAllocationStrategy, PoolingAllocationConfig};
use wdeploy_core::wasm::{WasmKind, kind_of_file};
use wdeploy_core::{AppSettings, Digest};

/// How often the epoch advances; the granularity of guest yielding and deadlines.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Sizing of the engine, fixed at host start.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Component instances the pool holds at once (all dynos' instances together).
    pub max_instances: u32,
    /// Largest linear memory any instance may grow to; per-app quotas sit below it.
    pub max_memory_bytes: usize,
    /// Where compiled components are cached, keyed by content digest and engine.
    pub cache_dir: Option<PathBuf>,
    /// Memory and table bytes per pool slot kept mapped when an instance is freed.
    pub keep_resident_bytes: usize,
    /// Where guests' outgoing HTTP may go.
    pub egress: Egress,
    /// The most ephemeral disk a dyno may ask for (`limits.disk_mb`), in bytes.
    pub max_disk_bytes: u64,
    /// Instances one app may hold at once, over all its dynos; `None`: a quarter of
    /// `max_instances` (so one app can never take the whole pool).
    pub max_app_instances: Option<u32>,
}

/// `wdeploy host --max-disk-mb` unless given: apps may ask for up to 2 GiB per dyno.
pub const DEFAULT_MAX_DISK_MB: u64 = 2048;

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            max_instances: 1000,
            max_memory_bytes: 4 << 30,
            cache_dir: None,
            keep_resident_bytes: 1 << 20,
            egress: Egress::PublicOnly,
            max_disk_bytes: DEFAULT_MAX_DISK_MB << 20,
            max_app_instances: None,
        }
    }
}

/// The wasmtime engine and the linker every dyno instantiates against.
pub struct Engine {
    engine: wasmtime::Engine,
    linker: Linker<StoreData>,
    cache_dir: Option<PathBuf>,
    egress: Egress,
    max_disk_bytes: u64,
    /// Each app's share of the instance pool.
    shares: Arc<InstanceShares>,
    /// Compiled components by digest. Releases of the same code (a config change, a
    /// rollback, many apps running one slug) share one copy, and a compile started when
    /// the blob was uploaded is joined by the release that needs it, never repeated.
    /// Entries live as long as the host: it loads only what its apps' releases name.
    loaded: Mutex<HashMap<Digest, Arc<OnceCell<Component>>>>,
    /// Stops the epoch ticker thread when the engine is dropped.
    ticker_stop: Arc<AtomicBool>,
}

impl Engine {
    pub fn new(options: &EngineOptions) -> anyhow::Result<Arc<Engine>> {
        let mut pool = PoolingAllocationConfig::default();
        let n = options.max_instances.max(1);
        pool.total_component_instances(n)
            // A Rust component is one core module plus a few small adapter instances.
            .total_core_instances(n.saturating_mul(4))
            // Each memory slot reserves 4 GiB of address space (so guest loads need no
            // bounds checks): most components have one memory, and the pool is shared.
            .total_memories(n.saturating_add(n / 8))
            // A running guest call (a worker's whole life, a request) holds a fiber stack.
            .total_stacks(n)
            .total_tables(n.saturating_mul(4))
            .max_memory_size(options.max_memory_bytes)
            .max_memories_per_component(4)
            .max_tables_per_component(8)
            .max_core_instances_per_component(16)
            // Reset a freed slot with memset over the pages the guest actually touched
            // (found with PAGEMAP_SCAN where the kernel has it) instead of madvise: the
            // pages stay mapped, so the next instance in the slot takes no page faults and
            // the host no TLB shootdowns across cores. This is what makes a fresh
            // instance per request cheap.
            .linear_memory_keep_resident(options.keep_resident_bytes)
            .table_keep_resident(options.keep_resident_bytes)
            .pagemap_scan(wasmtime::Enabled::Auto)
            // What a freed slot touched beyond that goes back to the kernel at once, not
            // in batches: a batch waits for 64 freed slots per queue shard, so a few
            // instances that grew to their memory quota and crashed kept gigabytes
            // resident on an idle host. Small instances are not slowed: with
            // PAGEMAP_SCAN, a slot whose dirty pages fit in `keep_resident` queues no
            // decommit at all and is reused at once (wasmtime skips the queue for it).
            .decommit_batch_size(1);
        let mut config = Config::new();
        config
            // Dynos are WASI 0.2 components: no component-model-async, so calls take the
            // plain fiber path instead of the concurrent scheduler's per-call tasks.
            .concurrency_support(false)
            .epoch_interruption(true)
            .memory_init_cow(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = wasmtime::Engine::new(&config)
            .map_err(anyhow::Error::from)
            .context("configuring wasmtime")?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(anyhow::Error::from)
            .context("linking WASI")?;
        // Files go through the dyno's disk quota (over wasmtime-wasi's filesystem types).
        crate::guest::quota_fs::add_to_linker(&mut linker)
            .map_err(anyhow::Error::from)
            .context("linking the quota-checked filesystem")?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(anyhow::Error::from)
            .context("linking wasi:http")?;
        crate::addons::add_to_linker(&mut linker, |data: &mut StoreData| {
            crate::addons::AddonView::new(&data.addons, &mut data.table)
        })
        .map_err(anyhow::Error::from)
        .context("linking the add-ons")?;

        let ticker_stop = Arc::new(AtomicBool::new(false));
        {
            let engine = engine.clone();
            let stop = ticker_stop.clone();
            std::thread::Builder::new()
                .name("wdeploy-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        engine.increment_epoch();
                    }
                })
                .context("starting the epoch ticker")?;
        }
        if let Some(dir) = &options.cache_dir {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating compile cache {}", dir.display()))?;
        }
        Ok(Arc::new(Engine {
            engine,
            linker,
            cache_dir: options.cache_dir.clone(),
            egress: options.egress,
            max_disk_bytes: options.max_disk_bytes,
            shares: InstanceShares::new(
                n,
                options.max_app_instances.unwrap_or(n / 4),
                // Kept for booting dynos: 1/32 of the pool, at least one.
                (n / 32).max(1),
            ),
            loaded: Mutex::new(HashMap::new()),
            ticker_stop,
        }))
    }

    pub fn wasmtime(&self) -> &wasmtime::Engine {
        &self.engine
    }

    /// Where guests' outgoing HTTP may go, for every store of this engine.
    pub fn egress(&self) -> Egress {
        self.egress
    }

    /// Whether this host can give an app what its settings ask for: a release asking for
    /// more disk than the host's ceiling is refused with what to change.
    pub fn check_settings(&self, settings: &AppSettings) -> Result<(), String> {
        if settings.disk_limit_bytes() > self.max_disk_bytes {
            return Err(format!(
                "wdeploy.toml: limits.disk_mb = {} is more than this host allows per dyno ({} MiB; `wdeploy host --max-disk-mb`)",
                settings.limits.disk_mb,
                self.max_disk_bytes >> 20
            ));
        }
        Ok(())
    }

    /// The ephemeral disk quota of a dyno of an app with `settings`: what it asks for,
    /// within the host's ceiling (which may have been lowered since the release was made).
    pub fn disk_limit_bytes(&self, settings: &AppSettings) -> u64 {
        settings.disk_limit_bytes().min(self.max_disk_bytes)
    }

    /// Each app's share of the instance pool; every store takes a slot of its app's.
    pub fn shares(&self) -> &Arc<InstanceShares> {
        &self.shares
    }

    pub fn linker(&self) -> &Linker<StoreData> {
        &self.linker
    }

    /// The compiled component of a digest: from memory, or the compile cache when a
    /// compatible engine compiled it before, or compiled now. Compiling is CPU-heavy, so it
    /// runs off the async threads; callers asking for the same digest meanwhile wait for
    /// that one compile.
    pub async fn load_component(
        self: &Arc<Self>,
        path: &Path,
        digest: &Digest,
    ) -> anyhow::Result<Component> {
        let cell = self
            .loaded
            .lock()
            .entry(digest.clone())
            .or_default()
            .clone();
        let component = cell
            .get_or_try_init(|| {
                let this = self.clone();
                let path = path.to_path_buf();
                let digest = digest.clone();
                async move {
                    tokio::task::spawn_blocking(move || {
                        this.load_component_blocking(&path, &digest)
                    })
                    .await
                    .context("compile task panicked")?
                }
            })
            .await?;
        Ok(component.clone())
    }

    /// Starts compiling a freshly uploaded blob if it is a component, so the release that
    /// follows finds it ready. Anything else (a slug manifest, a core module) is left for
    /// the release to judge.
    pub fn precompile(self: &Arc<Self>, path: PathBuf, digest: Digest) {
        let this = self.clone();
        tokio::spawn(async move {
            let header = path.clone();
            let is_component = tokio::task::spawn_blocking(move || {
                matches!(kind_of_file(&header), Ok(WasmKind::Component))
            })
            .await
            .unwrap_or(false);
            if !is_component {
                return;
            }
            match this.load_component(&path, &digest).await {
                Ok(_) => tracing::debug!(%digest, "precompiled uploaded component"),
                Err(e) => tracing::debug!(%digest, "uploaded component does not compile: {e:#}"),
            }
        });
    }

    fn load_component_blocking(&self, path: &Path, digest: &Digest) -> anyhow::Result<Component> {
        let cached = self.cache_path(digest);
        if let Some(cached) = &cached
            && cached.exists()
        {
            // SAFETY: the file was written by `Component::serialize` of an engine with the
            // same compatibility hash (it is in the file name), in a directory only the
            // host writes; wasmtime still checks the header before using it.
            match unsafe { Component::deserialize_file(&self.engine, cached) } {
                Ok(component) => return Ok(component),
                Err(e) => {
                    tracing::warn!(path = %cached.display(), "ignoring bad compile cache entry: {e:#}")
                }
            }
        }
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let component = Component::new(&self.engine, &bytes)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("compiling {}", file_name(path)))?;
        if let Some(cached) = cached
            && let Err(e) = write_cache(&component, &cached)
        {
            tracing::warn!(path = %cached.display(), "could not write compile cache: {e:#}");
        }
        Ok(component)
    }

    fn cache_path(&self, digest: &Digest) -> Option<PathBuf> {
        let dir = self.cache_dir.as_ref()?;
        let hex = digest.hex();
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut hasher);
        Some(dir.join(format!("{hex}-{:016x}.cwasm", hasher.finish())))
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

fn write_cache(component: &Component, path: &Path) -> anyhow::Result<()> {
    let bytes = component.serialize().map_err(anyhow::Error::from)?;
    let dir = path.parent().context("cache path has no parent")?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut tmp, &bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)?;
    Ok(())
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}
