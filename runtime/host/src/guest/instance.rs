//! Building the `Store` of one component instance: WASI context, limits, deadlines.

use crate::guest::data::{HttpHooks, StoreData};
use crate::guest::engine::Engine;
use crate::guest::preopens::{LazyRoot, Root};
use crate::logs::LogStream;
use crate::logs::writer::LogWriter;
use std::sync::Arc;
use std::time::Instant;
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi::{I32Exit, WasiCtx};

/// What every instance of a dyno shares: its name, env, args, filesystem and log stream.
pub struct InstanceEnv<'a> {
    /// The app whose share of the pool the instance takes.
    pub app: &'a wdeploy_core::AppName,
    /// Whether the instance boots a dyno (and may take the pool's boot reserve).
    pub purpose: crate::guest::share::Purpose,
    pub dyno: &'a Arc<str>,
    pub env: &'a [(String, String)],
    /// argv: the component name then the Procfile arguments.
    pub args: &'a [String],
    /// The dyno's directory, made when the guest first asks for its preopens, and its
    /// quota, shared by the dyno's instances.
    pub dir: Arc<dyn LazyRoot>,
    pub logs: &'a Arc<LogStream>,
    pub memory_limit_bytes: usize,
    /// The app's add-ons, bound to the app of the dyno's release.
    pub addons: Arc<crate::addons::AppAddons>,
    /// The guest's stdin; `None` gives an empty, closed one.
    pub stdin: Option<wasmtime_wasi::cli::AsyncStdinStream>,
    /// The engine the component was compiled for.
    pub flavor: crate::guest::engine::Flavor,
    /// The app's `[egress] allow` list (of the dyno's release), shared by its instances.
    pub egress: Arc<crate::guest::allow_list::AppEgress>,
}

/// A fresh store for one instance. Guests yield to the async runtime on every epoch tick
/// (so a busy loop never stalls other dynos) and trap once `deadline` has passed.
///
/// An app already holding its share of the pool gets [`ShareExhausted`] (before anything
/// is allocated).
///
/// [`ShareExhausted`]: crate::guest::share::ShareExhausted
pub fn new_store(engine: &Engine, env: InstanceEnv<'_>) -> anyhow::Result<Store<StoreData>> {
    let share = engine.shares().take(env.app, env.purpose)?;
    let mut builder = WasiCtx::builder();
    builder
        .envs(env.env)
        .args(env.args)
        // Host-call limits: a guest cannot make the host hand out unbounded buffers.
        // (wasi:http fields are capped at 128 KiB by wasmtime-wasi-http's default.)
        .max_random_size(1 << 20)
        .stdout(LogWriter::new(env.logs.clone(), env.dyno.clone()))
        .stderr(LogWriter::new(env.logs.clone(), env.dyno.clone()));
    if let Some(stdin) = env.stdin {
        builder.stdin(stdin);
    }
    // No preopen here: `guest/preopens.rs` hands out the dyno's directory, made then.
    // wasi:sockets is linked for WASI 0.2 guests, but no address is ever given to them:
    // wasmtime-wasi's default socket check refuses every bind and connect, and name
    // lookups are off. Guests reach the network only through wasi:http, where the host's
    // rule and the app's allow-list apply (`guest/egress.rs`).
    let http_hooks = HttpHooks {
        egress: engine.egress(),
        app: env.egress,
        logs: env.logs.clone(),
        dyno: env.dyno.clone(),
    };
    let state = StoreData::new(
        builder.build(),
        env.addons,
        env.memory_limit_bytes,
        env.dir.quota().clone(),
        Root::new(env.dir),
        share,
        http_hooks,
    );
    let mut store = Store::new(engine.wasmtime_for(env.flavor), state);
    store.limiter(|s| &mut s.quota);
    store.epoch_deadline_callback(|ctx| match ctx.data().deadline {
        Some(deadline) if Instant::now() >= deadline => Err(wasmtime::Error::new(DeadlineExceeded)),
        _ => Ok(UpdateDeadline::Yield(1)),
    });
    store.set_epoch_deadline(1);
    Ok(store)
}

/// The trap raised in a guest that ran past its deadline.
#[derive(Debug, thiserror::Error)]
#[error("deadline exceeded")]
pub struct DeadlineExceeded;

/// How a guest call ended badly, in words for the log stream.
pub fn describe_failure(e: &wasmtime::Error) -> String {
    if let Some(exit) = e.downcast_ref::<I32Exit>() {
        return format!("exit status {}", exit.0);
    }
    if e.downcast_ref::<DeadlineExceeded>().is_some() {
        return "deadline exceeded".into();
    }
    if let Some(quota) = e.downcast_ref::<crate::guest::quota::MemoryQuotaExceeded>() {
        return format!(
            "Error R14 (Memory quota exceeded): tried to grow to {} MiB, quota {} MiB",
            quota.desired >> 20,
            quota.quota >> 20
        );
    }
    if let Some(over) = e.downcast_ref::<crate::guest::share::AppMemoryExceeded>() {
        return format!(
            "Error R15 (Memory quota vastly exceeded): the app's instances would hold {} MiB together, its budget is {} MiB",
            over.wanted >> 20,
            over.budget >> 20
        );
    }
    if let Some(trap) = e.downcast_ref::<wasmtime::Trap>() {
        return trap.to_string();
    }
    // The chain of messages without wasmtime's backtrace wrapper: for a leak of host
    // handles, "[new_fields] pushing fields: resource table has no free keys".
    let messages: Vec<String> = e
        .chain()
        .map(|cause| cause.to_string())
        .filter(|m| !m.starts_with("error while executing at wasm backtrace"))
        .filter_map(|m| m.lines().next().map(str::to_string))
        .collect();
    if messages.is_empty() {
        "unknown failure".into()
    } else {
        messages.join(": ")
    }
}

/// The exit status a guest call result stands for, if it exited rather than trapped.
pub fn exit_status(e: &wasmtime::Error) -> Option<i32> {
    e.downcast_ref::<I32Exit>().map(|exit| exit.0)
}
