//! What each wasmtime `Store` carries: the WASI context of one dyno instance, its app's
//! add-ons and its limits.

use crate::addons::AppAddons;
use crate::quota::Quota;
use std::sync::Arc;
use std::time::Instant;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// Live host resources one instance may hold at once.
pub const MAX_HANDLES: usize = 10_000;

pub struct StoreData {
    pub wasi: WasiCtx,
    pub http: WasiHttpCtx,
    pub table: ResourceTable,
    /// The add-ons of the instance's app (bound when the release was loaded).
    pub addons: Arc<AppAddons>,
    pub quota: Quota,
    /// When the current call must stop; checked on every epoch tick.
    pub deadline: Option<Instant>,
}

impl StoreData {
    pub fn new(wasi: WasiCtx, addons: Arc<AppAddons>, memory_limit_bytes: usize) -> StoreData {
        StoreData {
            wasi,
            http: WasiHttpCtx::new(),
            table: {
                // Host-side handles (fields, streams, pollables) per instance: a guest that
                // leaks them traps instead of growing the host's memory without bound.
                let mut table = ResourceTable::new();
                table.set_max_capacity(MAX_HANDLES);
                table
            },
            addons,
            quota: Quota::new(memory_limit_bytes),
            deadline: None,
        }
    }
}

impl WasiView for StoreData {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for StoreData {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: Default::default(),
        }
    }
}
