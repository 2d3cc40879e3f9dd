use super::capabilities::OutboundHttp;
use super::host::HostServices;
use super::limits::TaskLimiter;
use super::quota_fs::DiskState;
use std::time::Instant;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// Everything one task's store holds: its WASI context built from its grants,
/// the outbound HTTP hook, the host interface state and its limiter.
pub struct TaskState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) http: WasiHttpCtx,
    pub(crate) outbound: OutboundHttp,
    pub(crate) host: HostServices,
    pub(crate) limiter: TaskLimiter,
    /// Which descriptors count against a disk quota.
    pub(crate) disk: DiskState,
    pub(crate) deadline: Instant,
}

impl WasiView for TaskState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for TaskState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}
