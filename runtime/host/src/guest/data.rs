//! What each wasmtime `Store` carries: the WASI context of one dyno instance, its app's
//! add-ons and its limits.

use crate::addons::AppAddons;
use crate::guest::allow_list::AppEgress;
use crate::guest::disk::DiskQuota;
use crate::guest::egress::Egress;
use crate::guest::preopens::Root;
use crate::guest::quota::Quota;
use crate::guest::share::ShareSlot;
use crate::logs::LogStream;
use std::sync::Arc;
use std::time::Instant;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{
    RequestOptions, WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView,
};

/// Live host resources one instance may hold at once.
pub const MAX_HANDLES: usize = 10_000;

pub struct StoreData {
    pub wasi: WasiCtx,
    pub http: WasiHttpCtx,
    pub http_hooks: HttpHooks,
    pub table: ResourceTable,
    /// The add-ons of the instance's app (bound when the release was loaded).
    pub addons: Arc<AppAddons>,
    pub quota: Quota,
    /// The ephemeral disk quota of the instance's dyno (shared by its instances).
    pub disk: Arc<DiskQuota>,
    /// The dyno's directory, the guest's `/`, made when the guest first asks for it.
    pub root: Root,
    /// When the current call must stop; checked on every epoch tick.
    pub deadline: Option<Instant>,
}

impl StoreData {
    pub fn new(
        wasi: WasiCtx,
        addons: Arc<AppAddons>,
        memory_limit_bytes: usize,
        disk: Arc<DiskQuota>,
        root: Root,
        share: ShareSlot,
        http_hooks: HttpHooks,
    ) -> StoreData {
        StoreData {
            wasi,
            http: WasiHttpCtx::new(),
            http_hooks,
            table: {
                // Host-side handles (fields, streams, pollables) per instance: a guest that
                // leaks them traps instead of growing the host's memory without bound.
                let mut table = ResourceTable::new();
                table.set_max_capacity(MAX_HANDLES);
                table
            },
            addons,
            // The instance's place in its app's share of the pool (and of its app's
            // memory budget), given back with the store.
            quota: Quota::new(memory_limit_bytes, share),
            disk,
            root,
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
            hooks: &mut self.http_hooks,
        }
    }
}

/// Writes to a response body a guest may queue before the router has read them.
///
/// wasmtime-wasi-http's default is one, so a handler that writes its body in a few pieces
/// (as `writeln!` does) waits for the router after the second; with room for a few more,
/// a small response is complete when the handler returns and goes out in one write.
pub const BODY_BUFFER_WRITES: usize = 16;
/// Largest single write to a body; with [`BODY_BUFFER_WRITES`] this bounds what one
/// response can hold in host memory at 1 MiB.
pub const BODY_WRITE_BYTES: usize = 64 << 10;

/// How the host's wasi:http behaves for guests, beyond wasmtime-wasi-http's defaults.
pub struct HttpHooks {
    /// The host's rule (public addresses only, or any).
    pub egress: Egress,
    /// The app's allow-list, if it has one, and its refusal lines.
    pub app: Arc<AppEgress>,
    /// Where a refused call is told: the app's log, as this dyno.
    pub logs: Arc<LogStream>,
    pub dyno: Arc<str>,
}

impl WasiHttpHooks for HttpHooks {
    /// Outgoing requests are sent by [`crate::guest::outgoing`], to the very addresses
    /// [`Egress`] judged, after the app's allow-list. This one hook serves both WASI 0.2's
    /// `outgoing-handler` and WASI 0.3's `client`, so both go through the same checks.
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<WasiBody>,
                        Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                    ),
                    wasmtime_wasi_http::Error,
                >,
            > + Send,
    > {
        drop(fut);
        let egress = self.egress;
        let app = self.app.clone();
        let logs = self.logs.clone();
        let dyno = self.dyno.clone();
        Box::new(async move {
            let target = crate::guest::egress::target(request.uri())
                .map(|(host, port)| format!("{host}:{port}"))
                .unwrap_or_default();
            match crate::guest::outgoing::send(egress, app.allow(), request, options).await {
                Ok((response, io)) => Ok((response, io)),
                Err(wasmtime_wasi_http::Error::HttpRequestDenied) => {
                    app.refused(&logs, &dyno, &target);
                    Err(wasmtime_wasi_http::Error::HttpRequestDenied)
                }
                Err(e) => Err(e),
            }
        })
    }

    fn p2_outgoing_body_buffer_chunks(&mut self) -> usize {
        BODY_BUFFER_WRITES
    }

    fn p2_outgoing_body_chunk_size(&mut self) -> usize {
        BODY_WRITE_BYTES
    }
}
