//! The host's one wasmtime engine: async, pooling allocator, epoch interruption, compile cache.

use crate::guest::cpu::{CpuGovernor, Thresholds};
use crate::guest::data::StoreData;
use crate::guest::egress::Egress;
use crate::guest::lane::LaneOptions;
use crate::guest::lane_spares::LaneSpares;
use crate::guest::share::InstanceShares;
use crate::guest::swap::SlotReset;
use crate::metrics::Metrics;
use anyhow::Context;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::{OnceCell, Semaphore};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, InstanceAllocationStrategy, PoolingAllocationConfig};
use wdeploy_core::wasm::{WasmKind, kind_of_file};
use wdeploy_core::{AppSettings, Digest};

/// A component compiled and kept in memory for as long as a release holds this.
pub struct Loaded {
    pub component: Component,
    /// The engine it was compiled for (and whose stores instantiate it).
    pub flavor: Flavor,
    /// Keeps the engine's shared entry alive (see `Engine::loaded`).
    _shared: Arc<Compiled>,
}

/// A component being compiled, or compiled, for the engine of its flavor.
type Compiled = OnceCell<(Component, Flavor)>;

/// Which of the host's two wasmtime engines runs a component.
///
/// Every WASI 0.2 component uses the synchronous canonical ABI, and a call into it takes
/// wasmtime's plain fiber path. Components of the WASI 0.3 generation use
/// component-model async (`async func` exports, streams, futures): their stores must run
/// wasmtime's concurrent scheduler, which costs every call of a plain component too
/// (BENCHMARKS.md), so each kind gets an engine of its own and a plain component never
/// pays for the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// The synchronous canonical ABI (WASI 0.2).
    Plain,
    /// Component-model async (WASI 0.3).
    Async,
}

impl Flavor {
    const ALL: [Flavor; 2] = [Flavor::Plain, Flavor::Async];
}

/// One wasmtime engine and the linker its components instantiate against.
struct Flavored {
    engine: wasmtime::Engine,
    linker: Linker<StoreData>,
}

/// Compiles that run at once (see `Engine::compiling`).
const COMPILES_AT_ONCE: usize = 2;

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
    /// Most bytes the compile cache keeps; the least recently used files go first.
    pub cache_limit_bytes: u64,
    /// Memory and table bytes per pool slot kept mapped when an instance is freed.
    pub keep_resident_bytes: usize,
    /// Where guests' outgoing HTTP may go.
    pub egress: Egress,
    /// The threads each app's guests run on.
    pub lanes: LaneOptions,
    /// The most ephemeral disk a dyno may ask for (`limits.disk_mb`), in bytes.
    pub max_disk_bytes: u64,
    /// Instances one app may hold at once, over all its dynos; `None`: a quarter of
    /// `max_instances` (so one app can never take the whole pool).
    pub max_app_instances: Option<u32>,
    /// Linear memory one app's instances may hold together, in bytes.
    pub max_app_memory_bytes: usize,
}

/// `wdeploy host --max-app-memory-mb` unless given: what all of one app's instances may
/// hold together (4 GiB: 8 instances at the default 512 MiB quota, and many more small
/// ones), so one app cannot take a host's memory however many instances it runs.
pub const DEFAULT_MAX_APP_MEMORY_MB: usize = 4096;

/// `wdeploy host --max-disk-mb` unless given: apps may ask for up to 2 GiB per dyno.
pub const DEFAULT_MAX_DISK_MB: u64 = 2048;

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            max_instances: 1000,
            max_memory_bytes: 4 << 30,
            cache_dir: None,
            cache_limit_bytes: 2 << 30,
            keep_resident_bytes: 1 << 20,
            egress: Egress::PublicOnly,
            lanes: LaneOptions::default(),
            max_disk_bytes: DEFAULT_MAX_DISK_MB << 20,
            max_app_instances: None,
            max_app_memory_bytes: DEFAULT_MAX_APP_MEMORY_MB << 20,
        }
    }
}

/// The wasmtime engines and the linkers every dyno instantiates against.
pub struct Engine {
    plain: Flavored,
    concurrent: Flavored,
    cache_dir: Option<PathBuf>,
    cache_limit_bytes: u64,
    egress: Egress,
    max_disk_bytes: u64,
    /// Each app's share of the instance pool.
    shares: Arc<InstanceShares>,
    /// Every app's lane takes its runtime here (built ahead, on a thread of its own).
    lanes: Arc<LaneSpares>,
    /// Watches every app's lane and demotes busy ones.
    governor: Arc<CpuGovernor>,
    /// Compiled components by digest, held by the releases that run them ([`Loaded`]).
    /// Releases of the same code (a config change, a rollback, many apps running one
    /// slug) share one copy, and a compile in progress is joined, never repeated. When no
    /// release holds a component any more, it leaves memory (the compile cache on disk
    /// still has it).
    loaded: Mutex<HashMap<Digest, Weak<Compiled>>>,
    /// Compiles running at once. Each one already uses every core (wasmtime compiles
    /// functions in parallel), so more would only add memory and threads: a burst of
    /// uploads queues here instead of starting a compile each.
    compiling: Semaphore,
    /// Stops the epoch ticker thread when the engine is dropped.
    ticker_stop: Arc<AtomicBool>,
    /// The host's metrics (the compile cache counts its hits and misses there).
    metrics: Arc<Metrics>,
    /// How the pool resets a freed slot, decided at start (`guest/swap.rs`).
    slot_reset: SlotReset,
}

impl Engine {
    pub fn new(options: &EngineOptions) -> anyhow::Result<Arc<Engine>> {
        let n = options.max_instances.max(1);
        let reset = SlotReset::for_this_host();
        let plain = Flavored::new(options, Flavor::Plain, reset)?;
        let concurrent = Flavored::new(options, Flavor::Async, reset)?;
        let ticker_stop = Arc::new(AtomicBool::new(false));
        {
            let engines = [plain.engine.clone(), concurrent.engine.clone()];
            let stop = ticker_stop.clone();
            std::thread::Builder::new()
                .name("wdeploy-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        for engine in &engines {
                            engine.increment_epoch();
                        }
                    }
                })
                .context("starting the epoch ticker")?;
        }
        if let Some(dir) = &options.cache_dir {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating compile cache {}", dir.display()))?;
        }
        Ok(Arc::new(Engine {
            plain,
            concurrent,
            cache_dir: options.cache_dir.clone(),
            cache_limit_bytes: options.cache_limit_bytes,
            egress: options.egress,
            lanes: Arc::new(LaneSpares::new(options.lanes)),
            governor: CpuGovernor::start(Thresholds::default())
                .context("starting the CPU governor")?,
            max_disk_bytes: options.max_disk_bytes,
            shares: InstanceShares::new(
                n,
                options.max_app_instances.unwrap_or(n / 4),
                // Kept for booting dynos: 1/32 of the pool, at least one.
                (n / 32).max(1),
                options.max_app_memory_bytes,
            ),
            loaded: Mutex::new(HashMap::new()),
            compiling: Semaphore::new(COMPILES_AT_ONCE),
            ticker_stop,
            metrics: Metrics::new(),
            slot_reset: reset,
        }))
    }

    /// How the pool resets a freed slot on this host: `Plain` where memory can be swapped.
    pub fn slot_reset(&self) -> SlotReset {
        self.slot_reset
    }

    /// The host's metrics registry.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The engine of WASI 0.2 components (the synchronous canonical ABI).
    pub fn wasmtime(&self) -> &wasmtime::Engine {
        &self.plain.engine
    }

    /// The engine of components of `flavor`.
    pub fn wasmtime_for(&self, flavor: Flavor) -> &wasmtime::Engine {
        &self.flavored(flavor).engine
    }

    fn flavored(&self, flavor: Flavor) -> &Flavored {
        match flavor {
            Flavor::Plain => &self.plain,
            Flavor::Async => &self.concurrent,
        }
    }

    /// Where guests' outgoing HTTP may go, for every store of this engine.
    pub fn egress(&self) -> Egress {
        self.egress
    }

    /// Where every app's lane of guest threads takes its runtime.
    pub fn lane_spares(&self) -> &Arc<LaneSpares> {
        &self.lanes
    }

    /// The governor every lane registers with.
    pub fn cpu_governor(&self) -> &CpuGovernor {
        &self.governor
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

    /// What components of `flavor` may import.
    pub fn linker(&self, flavor: Flavor) -> &Linker<StoreData> {
        &self.flavored(flavor).linker
    }

    /// The compiled component of a digest: from memory while a release holds it, or the
    /// compile cache when a compatible engine compiled it before, or compiled now.
    /// Compiling is CPU-heavy, so it runs off the async threads, a few at a time; callers
    /// asking for the same digest meanwhile wait for that one compile.
    ///
    /// `name` is the component's own file name (`web.wasm`), for errors: `path` may be a
    /// blob named by its digest.
    pub async fn load_component(
        self: &Arc<Self>,
        name: &str,
        path: &Path,
        digest: &Digest,
    ) -> anyhow::Result<Loaded> {
        let cell = {
            let mut loaded = self.loaded.lock();
            match loaded.get(digest).and_then(Weak::upgrade) {
                Some(cell) => cell,
                None => {
                    loaded.retain(|_, cell| cell.strong_count() > 0);
                    let cell = Arc::new(OnceCell::new());
                    loaded.insert(digest.clone(), Arc::downgrade(&cell));
                    cell
                }
            }
        };
        let component = cell
            .get_or_try_init(|| {
                let this = self.clone();
                let path = path.to_path_buf();
                let digest = digest.clone();
                let name = name.to_string();
                async move {
                    let _turn = this
                        .compiling
                        .acquire()
                        .await
                        .context("the engine is shutting down")?;
                    let compiler = this.clone();
                    tokio::task::spawn_blocking(move || {
                        compiler.load_component_blocking(&name, &path, &digest)
                    })
                    .await
                    .context("compile task panicked")?
                }
            })
            .await?
            .clone();
        Ok(Loaded {
            component: component.0,
            flavor: component.1,
            _shared: cell,
        })
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
            match this.load_component(digest.as_ref(), &path, &digest).await {
                Ok(_) => tracing::debug!(%digest, "precompiled uploaded component"),
                Err(e) => tracing::debug!(%digest, "uploaded component does not compile: {e:#}"),
            }
        });
    }

    /// Compiles a component for the engine its features need (see [`Flavor`]), or loads
    /// it from the compile cache of either engine.
    fn load_component_blocking(
        &self,
        name: &str,
        path: &Path,
        digest: &Digest,
    ) -> anyhow::Result<(Component, Flavor)> {
        for flavor in Flavor::ALL {
            let Some(cached) = self.cache_path(flavor, digest) else {
                break;
            };
            if !cached.exists() {
                continue;
            }
            // SAFETY: the file was written by `Component::serialize` of an engine with the
            // same compatibility hash (it is in the file name), in a directory only the
            // host writes; wasmtime still checks the header before using it.
            match unsafe { Component::deserialize_file(self.wasmtime_for(flavor), &cached) } {
                Ok(component) => {
                    touch(&cached);
                    self.metrics.compile_cache_hit();
                    return Ok((component, flavor));
                }
                Err(e) => {
                    tracing::warn!(path = %cached.display(), "ignoring bad compile cache entry: {e:#}")
                }
            }
        }
        self.metrics.compile_cache_miss();
        let bytes = std::fs::read(path).with_context(|| format!("reading {name}"))?;
        // Nearly every component is plain WASI 0.2: the plain engine refuses an async one
        // in validation, before any compiling, so trying it first costs next to nothing.
        let (component, flavor) = match Component::new(&self.plain.engine, &bytes) {
            Ok(component) => (component, Flavor::Plain),
            Err(plain) => match Component::new(&self.concurrent.engine, &bytes) {
                Ok(component) => (component, Flavor::Async),
                // The async engine accepts more, so its error names the actual fault;
                // the plain one's would only say that async features are off.
                Err(e) => {
                    tracing::debug!(component = name, "plain engine: {plain:#}");
                    return Err(anyhow::Error::from(e))
                        .with_context(|| format!("compiling {name}"));
                }
            },
        };
        if let Some(cached) = self.cache_path(flavor, digest) {
            match write_cache(&component, &cached) {
                Ok(()) => prune_cache(&cached, self.cache_limit_bytes),
                Err(e) => {
                    tracing::warn!(path = %cached.display(), "could not write compile cache: {e:#}")
                }
            }
        }
        Ok((component, flavor))
    }

    /// Where compiled components are cached, if anywhere.
    pub fn compile_cache_dir(&self) -> Option<&std::path::Path> {
        self.cache_dir.as_deref()
    }

    fn cache_path(&self, flavor: Flavor, digest: &Digest) -> Option<PathBuf> {
        let dir = self.cache_dir.as_ref()?;
        let hex = digest.hex();
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.wasmtime_for(flavor)
            .precompile_compatibility_hash()
            .hash(&mut hasher);
        Some(dir.join(format!("{hex}-{:016x}.cwasm", hasher.finish())))
    }
}

impl Flavored {
    /// An engine of `flavor` sized by `options`, and its linker: WASI 0.2 (with the
    /// quota-checked filesystem), wasi:http and the add-ons for both; WASI 0.3's cli,
    /// clocks, random and wasi:http for async components.
    ///
    /// WASI 0.3's filesystem and sockets are left out: the dyno's disk quota and the
    /// egress rules are enforced on the 0.2 interfaces, so a component importing them is
    /// refused by name at push instead of running unchecked.
    fn new(options: &EngineOptions, flavor: Flavor, reset: SlotReset) -> anyhow::Result<Flavored> {
        let mut config = Config::new();
        config
            // Plain components take the plain fiber path instead of the concurrent
            // scheduler's per-call tasks; async ones need the scheduler.
            .concurrency_support(flavor == Flavor::Async)
            .wasm_component_model_async(flavor == Flavor::Async)
            .epoch_interruption(true)
            .memory_init_cow(true)
            .allocation_strategy(match flavor {
                Flavor::Plain => InstanceAllocationStrategy::Pooling(pool(options, reset)),
                // A pool reserves its address space up front (tens of TiB at the default
                // sizes), and two would not fit in a process; async components are few
                // so far, so they allocate on demand. How many instances an app holds
                // and how much memory is still bounded by its share (`InstanceShares`)
                // and quota, whichever engine runs it.
                Flavor::Async => InstanceAllocationStrategy::OnDemand,
            });
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
        crate::guest::preopens::add_to_linker(&mut linker)
            .map_err(anyhow::Error::from)
            .context("linking the dyno filesystem's preopen")?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(anyhow::Error::from)
            .context("linking wasi:http")?;
        crate::addons::add_to_linker(&mut linker, |data: &mut StoreData| {
            crate::addons::AddonView::new(&data.addons, &mut data.table)
        })
        .map_err(anyhow::Error::from)
        .context("linking the add-ons")?;
        if flavor == Flavor::Async {
            wasmtime_wasi::p3::cli::add_to_linker(&mut linker)
                .and_then(|()| wasmtime_wasi::p3::clocks::add_to_linker(&mut linker))
                .and_then(|()| wasmtime_wasi::p3::random::add_to_linker(&mut linker))
                .and_then(|()| wasmtime_wasi_http::p3::add_to_linker(&mut linker))
                .map_err(anyhow::Error::from)
                .context("linking WASI 0.3")?;
        }
        Ok(Flavored { engine, linker })
    }
}

/// The plain engine's instance pool, sized for the whole host (`max_instances`).
pub(crate) fn pool(options: &EngineOptions, reset: SlotReset) -> PoolingAllocationConfig {
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
        // instance per request cheap. Not on a host that can swap guest pages out
        // (`SlotReset::Plain`).
        .linear_memory_keep_resident(options.keep_resident_bytes)
        .table_keep_resident(options.keep_resident_bytes)
        .pagemap_scan(match reset {
            SlotReset::Scan => wasmtime::Enabled::Auto,
            SlotReset::Plain => wasmtime::Enabled::No,
        })
        // What a freed slot touched beyond that goes back to the kernel at once, not
        // in batches: a batch waits for 64 freed slots per queue shard, so a few
        // instances that grew to their memory quota and crashed kept gigabytes
        // resident on an idle host. Small instances are not slowed: with
        // PAGEMAP_SCAN, a slot whose dirty pages fit in `keep_resident` queues no
        // decommit at all and is reused at once (wasmtime skips the queue for it).
        .decommit_batch_size(1);
    pool
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

/// Marks a cache file as just used, for [`prune_cache`]'s least-recently-used order.
fn touch(path: &Path) {
    let now = std::time::SystemTime::now();
    if let Ok(file) = std::fs::File::options().write(true).open(path) {
        let _ = file.set_modified(now);
    }
}

/// Deletes the least recently used files of the compile cache holding `written` until it
/// holds at most `limit` bytes (never `written` itself). A cache file that goes is only a
/// compile to redo: the blob store keeps every component.
fn prune_cache(written: &Path, limit: u64) {
    let Some(dir) = written.parent() else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut files: Vec<(std::time::SystemTime, u64, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
        .filter_map(|e| {
            let meta = e.metadata().ok()?;
            Some((meta.modified().ok()?, meta.len(), e.path()))
        })
        .collect();
    let mut total: u64 = files.iter().map(|(_, len, _)| len).sum();
    if total <= limit {
        return;
    }
    files.sort();
    for (_, len, path) in files {
        if total <= limit {
            break;
        }
        if path == written {
            continue;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => {
                total = total.saturating_sub(len);
                tracing::debug!(path = %path.display(), "pruned compile cache entry");
            }
            Err(e) => tracing::warn!(path = %path.display(), "could not prune compile cache: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    #[test]
    fn the_compile_cache_drops_its_least_recently_used_files_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let old = SystemTime::now() - Duration::from_secs(3600);
        let file = |name: &str, age: u64| {
            let path = dir.path().join(name);
            std::fs::write(&path, [0u8; 100]).expect("write");
            let f = std::fs::File::options()
                .write(true)
                .open(&path)
                .expect("open");
            f.set_modified(old + Duration::from_secs(age))
                .expect("mtime");
            path
        };
        let oldest = file("a.cwasm", 1);
        let used = file("b.cwasm", 2);
        let written = file("c.cwasm", 0);
        let other = dir.path().join("notes.txt");
        std::fs::write(&other, [0u8; 500]).expect("write");
        touch(&used);

        prune_cache(&written, 250);
        assert!(!oldest.exists(), "the least recently used entry stays");
        assert!(used.exists() && written.exists(), "a recent entry went");
        assert!(other.exists(), "only cache entries are pruned");
    }
}
