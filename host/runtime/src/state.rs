//! What one call's store holds: a locked-down WASI context, the wasi-http
//! context with the egress gate as its hooks, the app's plain config, the
//! memory limiter and a log budget. The WASI and wasi-http contexts are
//! made on the guest's first WASI call: an exchange-world step usually
//! makes none, and then costs none of their setup.

use crate::bindings::{config, logging, types};
use crate::egress::{CallEgress, CallMemory};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// Host resources (wasi:http fields, requests, bodies, streams,
/// pollables...) one call may hold at once. A guest needs a few dozen.
pub const MAX_RESOURCES: usize = 512;

/// Bytes one wasi:http `fields` may hold (wasmtime-wasi-http's accounting
/// of the in-memory header map; a provider request needs a few KiB).
pub const FIELDS_LIMIT: usize = 16 << 10;

/// What a call can make the host hold in resources at most (8 MiB), taken
/// out of the call's memory cap ([`crate::limits::HOST_RESERVE`]).
pub const RESOURCE_RESERVE: usize = MAX_RESOURCES * FIELDS_LIMIT;

/// Bytes of guest stderr kept per call (panic messages land there).
const STDERR_CAPTURE: usize = 4096;

/// Caps memory growth (the guest's memories and the request bodies the
/// gate holds for the call share one account) and remembers that the cap
/// was hit, so a guest that aborts after a refused `memory.grow` is
/// reported as a memory bomb.
pub struct MemoryLimiter {
    pub memory: Arc<CallMemory>,
    pub hit: bool,
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if self.memory.grow_guest(current, desired).is_err() {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1 << 20)
    }
}

/// Store data of one call.
pub struct CallState {
    /// Made on first use ([`CallState::wasi`]).
    wasi: Option<Box<WasiParts>>,
    table: ResourceTable,
    egress: CallEgress,
    config: Arc<BTreeMap<String, String>>,
    app: Arc<str>,
    pub limiter: MemoryLimiter,
    logs_left: u32,
    /// Counts this store when it is dropped having made its WASI side.
    with_wasi: Arc<AtomicU64>,
}

impl Drop for CallState {
    fn drop(&mut self) {
        if self.wasi.is_some() {
            self.with_wasi.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The WASI side of a call's store: the locked-down WASI context, the
/// wasi-http context and the guest's captured stderr.
struct WasiParts {
    ctx: WasiCtx,
    http: WasiHttpCtx,
    stderr: MemoryOutputPipe,
}

impl WasiParts {
    fn new() -> Self {
        let stderr = MemoryOutputPipe::new(STDERR_CAPTURE);
        // No preopened directories, no environment, no arguments, no
        // sockets: the only way out is wasi:http through the egress gate.
        let ctx = WasiCtx::builder()
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let mut http = WasiHttpCtx::new();
        http.set_field_size_limit(FIELDS_LIMIT);
        Self { ctx, http, stderr }
    }
}

impl CallState {
    pub fn new(
        app: Arc<str>,
        config: Arc<BTreeMap<String, String>>,
        egress: CallEgress,
        memory: Arc<CallMemory>,
        max_log_lines: u32,
        with_wasi: Arc<AtomicU64>,
    ) -> Self {
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_RESOURCES);
        Self {
            wasi: None,
            table,
            egress,
            config,
            app,
            limiter: MemoryLimiter { memory, hit: false },
            logs_left: max_log_lines,
            with_wasi,
        }
    }

    /// The call's WASI contexts, made on the guest's first WASI call.
    fn wasi(wasi: &mut Option<Box<WasiParts>>) -> &mut WasiParts {
        wasi.get_or_insert_with(|| Box::new(WasiParts::new()))
    }

    /// What the guest wrote to stderr (a panic message), joined on one line,
    /// without the toolchain's backtrace hint.
    pub fn stderr_tail(&self) -> Option<String> {
        let bytes = self.wasi.as_ref()?.stderr.contents();
        let text = String::from_utf8_lossy(&bytes);
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("note: run with `RUST_BACKTRACE"))
            .collect();
        let joined = lines.join(" | ");
        let start = joined.len().saturating_sub(512);
        let start = (start..joined.len())
            .find(|&i| joined.is_char_boundary(i))
            .unwrap_or(0);
        (!joined.is_empty()).then(|| joined[start..].to_string())
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut Self::wasi(&mut self.wasi).ctx,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for CallState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut Self::wasi(&mut self.wasi).http,
            table: &mut self.table,
            hooks: &mut self.egress,
        }
    }
}

impl config::Host for CallState {
    fn get(&mut self, key: String) -> Option<String> {
        self.config.get(&key).cloned()
    }

    fn keys(&mut self) -> Vec<String> {
        self.config.keys().cloned().collect()
    }
}

impl logging::Host for CallState {
    fn log(&mut self, level: logging::Level, message: String) {
        if self.logs_left == 0 {
            return;
        }
        self.logs_left -= 1;
        let app = &*self.app;
        let message: String = message.chars().take(2048).collect();
        match level {
            logging::Level::Trace => {
                tracing::trace!(target: "switchyard::plugin", app, "{message}")
            }
            logging::Level::Debug => {
                tracing::debug!(target: "switchyard::plugin", app, "{message}")
            }
            logging::Level::Info => tracing::info!(target: "switchyard::plugin", app, "{message}"),
            logging::Level::Warn => tracing::warn!(target: "switchyard::plugin", app, "{message}"),
            logging::Level::Error => {
                tracing::error!(target: "switchyard::plugin", app, "{message}")
            }
        }
    }
}

impl types::Host for CallState {}
