//! The plugin runtime: loads adapter components and runs each call on a
//! fresh, sandboxed instance.
//!
//! One async wasmtime [`Engine`] (pooling allocator where the system allows
//! it, epoch interruption driven by one ticker thread), components
//! precompiled and cached on disk, one `InstancePre` per app. Per call: a
//! memory cap, a wall deadline covering guest CPU and host I/O, a cap on
//! output size, and the egress gate on every outbound request. The runtime
//! knows nothing of quotas or fallbacks: the engine sees an [`App`] only as
//! an [`Adapter`].

mod bindings;
mod cache;
mod state;
mod world;

pub use cache::{CacheOutcome, ComponentCache};
pub use world::SUPPORTED_RANGE;

use crate::adapter::{
    ActionInfo, Adapter, AppInfo, AttemptError, BoxFuture, CallRequest, CallResponse, ErrorClass,
    FailureKind,
};
use crate::egress::{
    AppEgress, CallEgress, CallLog, CallMemory, CredentialError, EgressLimits, EgressPolicy,
    EgressStats, PolicyError,
};
use crate::grant::Grant;
use bindings::{AdapterPre, types};
use state::CallState;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use thiserror::Error;
use wasmtime::component::{Component, Linker};
use wasmtime::{
    Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap, UpdateDeadline,
};

/// Interval of the epoch ticker: the granularity of CPU deadlines.
const TICK: Duration = Duration::from_millis(1);

/// Default pool size. See `docs/configuration.md` ("Sizing the instance
/// pool") for the arithmetic: memory per live instance times the pool.
pub const DEFAULT_MAX_INSTANCES: u32 = 1_024;

/// Upper bound of [`RuntimeConfig::max_instances`].
pub const MAX_INSTANCES: u32 = 65_536;

/// Per-component maxima of the pool. The pool's totals are these times
/// the number of instance slots, so a call that holds a slot can always
/// instantiate: no other pool resource runs out first.
const CORE_INSTANCES_PER_COMPONENT: u32 = 32;
const MEMORIES_PER_COMPONENT: u32 = 4;
const TABLES_PER_COMPONENT: u32 = 16;

/// Guard region after each pooled linear memory. The slot reserves only
/// the memory cap plus this (not wasmtime's default 4 GiB), so thousands
/// of slots fit the address space; generated code then checks bounds
/// explicitly.
const MEMORY_GUARD: u64 = 64 << 10;

/// Per-call limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest linear memory a guest may have, in bytes.
    pub memory: usize,
    /// Largest output (JSON text) a call may return, in bytes.
    pub max_output: usize,
    /// Log lines a call may emit; the rest are dropped.
    pub max_log_lines: u32,
    /// Time `describe` may take at load.
    pub describe_deadline: Duration,
    /// Limits of the egress gate.
    pub egress: EgressLimits,
}

/// What one call can make the host hold besides its guest's memory, in
/// resources and header maps (8 MiB), taken out of `Limits::memory` so
/// guest memory plus that stays under the call's cap. Request bodies the
/// egress gate buffers are not reserved (the worst case, 8 × 4 MiB, would
/// leave a JavaScript guest too little to build a large request) but
/// counted: the guest's memory and the bodies held for its call share one
/// account of `memory` less this reserve ([`CallMemory`]).
pub const HOST_RESERVE: usize = state::RESOURCE_RESERVE;

/// Smallest guest memory a call may be left with after [`HOST_RESERVE`]:
/// a Python or JavaScript guest needs tens of MiB.
pub const MIN_GUEST_MEMORY: usize = 32 << 20;

/// Smallest `Limits::memory`.
pub const MIN_MEMORY: usize = HOST_RESERVE + MIN_GUEST_MEMORY;

impl Limits {
    /// The guest's own memory cap: `memory` less [`HOST_RESERVE`].
    pub fn guest_memory(&self) -> usize {
        self.memory.saturating_sub(HOST_RESERVE)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory: 128 << 20,
            max_output: 1 << 20,
            max_log_lines: 200,
            describe_deadline: Duration::from_secs(5),
            egress: EgressLimits::default(),
        }
    }
}

/// How to build a [`Runtime`].
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Where precompiled components are cached; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
    /// Per-call limits.
    pub limits: Limits,
    /// Try the pooling allocator (falls back to on-demand if the system
    /// refuses the reservation).
    pub pooling: bool,
    /// Instances that may be live at once (pool size; 1 to 65 536). A
    /// call waits (FIFO, within its deadline) for a free slot, so the
    /// pool's own limit is never hit; a call that finds none in time
    /// fails as `overloaded`, never as the provider's failure.
    pub max_instances: u32,
    /// Pooling only, Linux 6.7+ only: up to this many bytes an instance
    /// dirtied stay resident in its slot and are copied back from the
    /// image for the next call, instead of being dropped and faulted in
    /// again. Trades resident memory (at most this much per warm slot,
    /// in practice the guest's dirty set: 3-9 MiB for Python/JS guests)
    /// for latency. 0 turns it off. Default 64 MiB.
    pub keep_resident: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            cache_dir: ComponentCache::default_dir(),
            limits: Limits::default(),
            pooling: true,
            max_instances: DEFAULT_MAX_INSTANCES,
            keep_resident: 64 << 20,
        }
    }
}

/// The runtime could not start.
#[derive(Debug, Error)]
#[error("could not create the WebAssembly engine: {0}")]
pub struct RuntimeError(String);

/// A component could not be loaded as an app.
#[derive(Debug, Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read plugin {path}: {source}")]
    Read {
        /// The path given.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not WebAssembly at all.
    #[error(
        "not a WebAssembly file (no `\\0asm` header); build the plugin with `cargo build --target wasm32-wasip2` or a WASI 0.2 component toolchain"
    )]
    NotWasm,
    /// A core module, not a component.
    #[error(
        "this is a core WebAssembly module, not a component; build for `wasm32-wasip2` (or wrap it with `wasm-tools component new`)"
    )]
    CoreModule,
    /// Unknown binary version.
    #[error("unknown WebAssembly encoding version {0:#x}; expected a component (WASI 0.2)")]
    UnknownEncoding(u32),
    /// Compilation failed.
    #[error("the component does not compile: {0}")]
    Compile(String),
    /// No provider export.
    #[error("the component does not export `switchyard:adapter/provider` (it exports: {}); build it against the `switchyard:adapter/adapter` world in wit/", if found.is_empty() { "nothing".to_string() } else { found.join(", ") })]
    MissingExport {
        /// What it does export.
        found: Vec<String>,
    },
    /// A provider export of a version this host does not support.
    #[error(
        "the component targets switchyard:adapter@{found}; this host supports {SUPPORTED_RANGE}"
    )]
    UnsupportedVersion {
        /// Version the component exports.
        found: String,
    },
    /// Imports the host does not provide.
    #[error("the component imports {} which this host does not provide (it provides WASI 0.2 and switchyard:adapter 0.1 config/logging)", .0.join(", "))]
    UnsupportedImports(Vec<String>),
    /// Linking failed for another reason.
    #[error("the component cannot be linked: {0}")]
    Link(String),
    /// The grant is invalid.
    #[error("app `{app}`: {reason}")]
    Grant {
        /// The app.
        app: String,
        /// What is wrong, naming the field.
        reason: String,
    },
    /// `describe` failed or returned nonsense.
    #[error("app `{app}`: describe() {reason}")]
    Describe {
        /// The app.
        app: String,
        /// What went wrong.
        reason: String,
    },
}

/// Where a component comes from.
#[derive(Debug, Clone)]
pub enum ComponentSource {
    /// A `.wasm` file.
    File(PathBuf),
    /// Bytes in memory (e.g. bundled into the binary).
    Bytes(Arc<[u8]>),
}

impl From<&Path> for ComponentSource {
    fn from(p: &Path) -> Self {
        Self::File(p.to_path_buf())
    }
}

impl From<&[u8]> for ComponentSource {
    fn from(b: &[u8]) -> Self {
        Self::Bytes(b.into())
    }
}

/// How a load went.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct LoadReport {
    /// Component size in bytes.
    pub size: usize,
    /// Whether the precompiled cache served it.
    pub cache: CacheOutcome,
    /// Time to compile or deserialize.
    pub compile: Duration,
    /// Total load time, including link and `describe`.
    pub total: Duration,
}

struct Ticker {
    stop: Arc<AtomicBool>,
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

struct RuntimeInner {
    engine: Engine,
    linker: Linker<CallState>,
    cache: Option<ComponentCache>,
    limits: Limits,
    pooling: bool,
    /// One permit per instance slot; every call holds one while its store
    /// lives.
    slots: Arc<tokio::sync::Semaphore>,
    max_instances: u32,
    _ticker: Ticker,
}

/// The plugin runtime. Cheap to clone; share one per process.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<RuntimeInner>,
}

/// Whether the kernel has the PAGEMAP_SCAN ioctl (Linux 6.7+).
fn pagemap_scan_supported() -> bool {
    #[cfg(target_os = "linux")]
    {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let mut parts = release.trim().split(['.', '-']);
        let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        (major, minor) >= (6, 7)
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

fn engine_config(pool: Option<&PoolingAllocationConfig>, memory: usize) -> wasmtime::Config {
    let mut cfg = wasmtime::Config::new();
    cfg.epoch_interruption(true);
    cfg.wasm_component_model(true);
    cfg.memory_reservation(memory as u64)
        .memory_guard_size(MEMORY_GUARD)
        .memory_reservation_for_growth(0);
    if let Some(pool) = pool {
        cfg.allocation_strategy(InstanceAllocationStrategy::Pooling(pool.clone()));
    }
    cfg
}

impl Runtime {
    /// Start a runtime.
    pub fn new(config: RuntimeConfig) -> Result<Self, RuntimeError> {
        let limits = config.limits;
        if limits.memory < MIN_MEMORY {
            return Err(RuntimeError(format!(
                "the memory cap of {} MiB leaves {} MiB for the guest after the {} MiB a call may make the host hold in resources; raise the memory cap to at least {} MiB",
                limits.memory >> 20,
                limits.guest_memory() >> 20,
                HOST_RESERVE >> 20,
                MIN_MEMORY >> 20
            )));
        }
        if !(1..=MAX_INSTANCES).contains(&config.max_instances) {
            return Err(RuntimeError(format!(
                "max_instances is {}; it must be between 1 and {MAX_INSTANCES}",
                config.max_instances
            )));
        }
        let n = config.max_instances;
        let mut engine = None;
        if config.pooling {
            let mut pool = PoolingAllocationConfig::default();
            pool.total_component_instances(n)
                .total_core_instances(n.saturating_mul(CORE_INSTANCES_PER_COMPONENT))
                .total_memories(n.saturating_mul(MEMORIES_PER_COMPONENT))
                .total_tables(n.saturating_mul(TABLES_PER_COMPONENT))
                .total_stacks(n)
                .max_core_instances_per_component(CORE_INSTANCES_PER_COMPONENT)
                .max_memories_per_component(MEMORIES_PER_COMPONENT)
                .max_tables_per_component(TABLES_PER_COMPONENT)
                .max_memory_size(limits.memory)
                .max_component_instance_size(1 << 20)
                .max_core_instance_size(1 << 20)
                // Between calls, reset what the last instance dirtied by
                // copying it back from the image (dirty pages found with
                // Linux's PAGEMAP_SCAN, kernel >= 6.7) instead of dropping
                // the pages with madvise and faulting them in again on the
                // next call. Python and JavaScript guests dirty 3-9 MiB per
                // call: measured 2.7 -> 1.4 ms per JS call, 4.1 -> 3.0 ms
                // per Python call, 62 -> 45 us per Rust no-op call
                // (docs/performance.md). Without PAGEMAP_SCAN wasmtime would
                // memset the whole kept range, so it is only kept with it.
                .pagemap_scan(wasmtime::Enabled::Auto)
                .linear_memory_keep_resident(if pagemap_scan_supported() {
                    config.keep_resident
                } else {
                    0
                })
                .table_keep_resident(1 << 20)
                .async_stack_keep_resident(128 << 10);
            match Engine::new(&engine_config(Some(&pool), limits.memory)) {
                Ok(e) => engine = Some(e),
                Err(e) => {
                    tracing::warn!(error = %e, "pooling allocator unavailable; using on-demand allocation")
                }
            }
        }
        let pooling = engine.is_some();
        let engine = match engine {
            Some(e) => e,
            None => Engine::new(&engine_config(None, limits.memory))
                .map_err(|e| RuntimeError(e.to_string()))?,
        };

        let mut linker = Linker::<CallState>::new(&engine);
        let link = |l: &mut Linker<CallState>| -> wasmtime::Result<()> {
            wasmtime_wasi::p2::add_to_linker_async(l)?;
            wasmtime_wasi_http::p2::add_only_http_to_linker_async(l)?;
            type Data = wasmtime::component::HasSelf<CallState>;
            bindings::config::add_to_linker::<CallState, Data>(l, |s| s)?;
            bindings::logging::add_to_linker::<CallState, Data>(l, |s| s)?;
            bindings::types::add_to_linker::<CallState, Data>(l, |s| s)?;
            Ok(())
        };
        link(&mut linker).map_err(|e| RuntimeError(format!("linking host interfaces: {e}")))?;

        let stop = Arc::new(AtomicBool::new(false));
        {
            let engine = engine.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("switchyard-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(TICK);
                        engine.increment_epoch();
                    }
                })
                .map_err(|e| RuntimeError(format!("starting the epoch ticker: {e}")))?;
        }

        Ok(Self {
            inner: Arc::new(RuntimeInner {
                engine,
                linker,
                cache: config.cache_dir.map(ComponentCache::new),
                limits,
                pooling,
                slots: Arc::new(tokio::sync::Semaphore::new(n as usize)),
                max_instances: n,
                _ticker: Ticker { stop },
            }),
        })
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// Whether the pooling allocator is in use.
    pub fn uses_pooling(&self) -> bool {
        self.inner.pooling
    }

    /// The limits calls run under.
    pub fn limits(&self) -> Limits {
        self.inner.limits
    }

    /// Instance slots: (in use now, pool size).
    pub fn instances(&self) -> (u32, u32) {
        let free = self.inner.slots.available_permits() as u32;
        let n = self.inner.max_instances;
        (n.saturating_sub(free), n)
    }

    /// Wait (FIFO) until `deadline` for an instance slot.
    async fn slot(&self, deadline: Instant) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let acquire = self.inner.slots.clone().acquire_owned();
        match tokio::time::timeout_at(deadline.into(), acquire).await {
            Ok(Ok(permit)) => Some(permit),
            _ => None,
        }
    }

    /// Compile (or fetch from the cache) a component and check it targets
    /// the adapter world, without linking or running it.
    pub async fn compile(
        &self,
        source: &ComponentSource,
    ) -> Result<(Component, LoadReport), LoadError> {
        let started = Instant::now();
        let bytes: Arc<[u8]> = match source {
            ComponentSource::File(path) => tokio::fs::read(path)
                .await
                .map_err(|source| LoadError::Read {
                    path: path.clone(),
                    source,
                })?
                .into(),
            ComponentSource::Bytes(b) => b.clone(),
        };
        world::check_encoding(&bytes)?;
        let inner = self.inner.clone();
        let size = bytes.len();
        let (component, cache) = tokio::task::spawn_blocking(move || match &inner.cache {
            Some(cache) => cache.load(&inner.engine, &bytes),
            None => Component::new(&inner.engine, &*bytes).map(|c| (c, CacheOutcome::Disabled)),
        })
        .await
        .map_err(|e| LoadError::Compile(e.to_string()))?
        .map_err(|e| LoadError::Compile(format!("{e:#}")))?;
        let compile = started.elapsed();
        world::check_world(&self.inner.engine, &component)?;
        Ok((
            component,
            LoadReport {
                size,
                cache,
                compile,
                total: compile,
            },
        ))
    }

    /// Load `source` as app `name` with `grant`: compile (or reuse the
    /// cached artifact), check the world, link, and call `describe`.
    pub async fn load(
        &self,
        name: &str,
        source: impl Into<ComponentSource>,
        grant: Grant,
    ) -> Result<App, LoadError> {
        let started = Instant::now();
        let (component, mut report) = self.compile(&source.into()).await?;
        let pre = self
            .inner
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Link(format!("{e:#}")))?;
        let pre = AdapterPre::new(pre).map_err(|e| LoadError::Link(format!("{e:#}")))?;

        let grant_error = |reason: String| LoadError::Grant {
            app: name.to_string(),
            reason,
        };
        let policy = EgressPolicy::new(&grant.allow, &grant.private_networks)
            .map_err(|e: PolicyError| grant_error(e.to_string()))?;
        let egress = AppEgress::new(name, policy, grant.credentials, self.inner.limits.egress)
            .map_err(|e: CredentialError| grant_error(format!("credentials: {e}")))?;

        let mut app = AppInner {
            name: name.into(),
            info: AppInfo {
                name: String::new(),
                version: String::new(),
                actions: Vec::new(),
            },
            pre,
            runtime: self.clone(),
            egress: Arc::new(egress),
            config: Arc::new(grant.config),
            report,
            instances: InstanceStats::default(),
        };
        app.info = app.describe().await?;
        report.total = started.elapsed();
        app.report = report;
        Ok(App {
            inner: Arc::new(app),
        })
    }
}

struct AppInner {
    name: Arc<str>,
    info: AppInfo,
    pre: AdapterPre<CallState>,
    runtime: Runtime,
    egress: Arc<AppEgress>,
    config: Arc<BTreeMap<String, String>>,
    report: LoadReport,
    instances: InstanceStats,
}

/// Instances created for calls, and the time spent creating them.
#[derive(Debug, Default)]
struct InstanceStats {
    count: AtomicU64,
    micros: AtomicU64,
}

/// A snapshot of an app's instance counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct InstanceCounts {
    /// Instances created (one per call).
    pub instantiations: u64,
    /// Total time spent instantiating.
    pub instantiate_total: Duration,
}

/// A loaded app: a component, its grant, and its self-description. Cheap
/// to clone; every call runs on a fresh instance.
#[derive(Clone)]
pub struct App {
    inner: Arc<AppInner>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("name", &self.inner.name)
            .field("info", &self.inner.info)
            .finish_non_exhaustive()
    }
}

impl App {
    /// The app's name (as configured, not as the adapter calls itself).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// How the load went.
    pub fn load_report(&self) -> LoadReport {
        self.inner.report
    }

    /// Egress counters.
    pub fn egress_stats(&self) -> EgressStats {
        self.inner.egress.stats()
    }

    /// Instance counters: how many calls got an instance, and how long
    /// instantiating took in total.
    pub fn instance_counts(&self) -> InstanceCounts {
        let s = &self.inner.instances;
        InstanceCounts {
            instantiations: s.count.load(Ordering::Relaxed),
            instantiate_total: Duration::from_micros(s.micros.load(Ordering::Relaxed)),
        }
    }

    /// Run one attempt on a fresh instance.
    pub async fn call(&self, request: CallRequest) -> Result<CallResponse, AttemptError> {
        self.inner.call(request).await
    }
}

impl Adapter for App {
    fn info(&self) -> &AppInfo {
        &self.inner.info
    }

    fn call(&self, request: CallRequest) -> BoxFuture<'_, Result<CallResponse, AttemptError>> {
        Box::pin(self.inner.call(request))
    }
}

impl AppInner {
    fn store(
        &self,
        deadline: Instant,
        log: Arc<Mutex<CallLog>>,
        request_cap: Option<u32>,
    ) -> Store<CallState> {
        let limits = self.runtime.inner.limits;
        let memory = CallMemory::new(limits.guest_memory());
        let egress = CallEgress::new(
            self.egress.clone(),
            memory.clone(),
            deadline,
            log,
            request_cap,
        );
        let state = CallState::new(
            self.name.clone(),
            self.config.clone(),
            egress,
            memory,
            limits.max_log_lines,
        );
        let mut store = Store::new(&self.runtime.inner.engine, state);
        store.limiter(|s| &mut s.limiter);
        // Past the deadline the guest traps; before it, a CPU-bound guest
        // yields every tick so it never starves the executor.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline {
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        store
    }

    async fn describe(&self) -> Result<AppInfo, LoadError> {
        let budget = self.runtime.inner.limits.describe_deadline;
        let deadline = Instant::now() + budget;
        // Declared before the store, so it is released after the store
        // (and with it the pool slot) is gone.
        let _slot = self.runtime.slot(deadline).await.ok_or_else(|| LoadError::Describe {
            app: self.name.to_string(),
            reason: format!(
                "could not start: no plugin instance slot free within {budget:?} (all {} in use)",
                self.runtime.inner.max_instances
            ),
        })?;
        let log = Arc::new(Mutex::new(CallLog::default()));
        let mut store = self.store(deadline, log.clone(), Some(0));
        let work = async {
            let adapter = self.pre.instantiate_async(&mut store).await?;
            adapter
                .switchyard_adapter_provider()
                .call_describe(&mut store)
                .await
        };
        let outcome = tokio::time::timeout_at(deadline.into(), work).await;
        let describe_error = |reason: String| LoadError::Describe {
            app: self.name.to_string(),
            reason,
        };
        let info = match outcome {
            Err(_) => return Err(describe_error(format!("did not finish within {budget:?}"))),
            Ok(Err(e)) => {
                let log = log.lock().expect("call log");
                return Err(describe_error(sandbox_failure(&store, &log, e).message));
            }
            Ok(Ok(info)) => info,
        };
        let actions = info
            .actions
            .into_iter()
            .map(|a| (a.name, a.description, a.input_schema, a.idempotent))
            .collect();
        Ok(AppInfo {
            name: info.name,
            version: info.version,
            actions: check_actions(actions).map_err(describe_error)?,
        })
    }

    async fn call(&self, request: CallRequest) -> Result<CallResponse, AttemptError> {
        let deadline = Instant::now() + request.deadline;
        // The slot outlives the store (declared first, dropped last), so the
        // pool never sees more instances than permits.
        let Some(_slot) = self.runtime.slot(deadline).await else {
            let n = self.runtime.inner.max_instances;
            return Err(AttemptError::new(
                ErrorClass::Overloaded,
                FailureKind::Overload,
                format!(
                    "no plugin instance slot became free within the attempt's {:?} (all {n} in use); raise the runtime's max_instances or lower the apps' max_in_flight",
                    request.deadline
                ),
            ));
        };
        let log = Arc::new(Mutex::new(CallLog::default()));
        let mut store = self.store(deadline, log.clone(), None);
        let wit_request = types::CallRequest {
            action: request.action,
            input: request.input.to_string(),
            idempotency_key: request.idempotency_key,
            deadline_ms: request.deadline.as_millis() as u64,
            env: request.env,
            session: request.session.map(|s| types::Session {
                tag: s.tag,
                token: s.token,
            }),
        };
        let work = async {
            let started = Instant::now();
            let adapter = self.pre.instantiate_async(&mut store).await?;
            self.instances.count.fetch_add(1, Ordering::Relaxed);
            self.instances
                .micros
                .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
            adapter
                .switchyard_adapter_provider()
                .call_call(&mut store, &wit_request)
                .await
        };
        let outcome = tokio::time::timeout_at(deadline.into(), work).await;
        let log = log.lock().expect("call log");
        let max_output = self.runtime.inner.limits.max_output;
        let result = match outcome {
            Err(_) => Err(deadline_exceeded(&log, request.deadline)),
            Ok(Err(e)) => Err(sandbox_failure(&store, &log, e)),
            Ok(Ok(Err(e))) => Err(match (log.denials.first(), over_memory(&log)) {
                (Some(reason), _) => AttemptError::new(
                    ErrorClass::Internal,
                    FailureKind::EgressDenied,
                    reason.clone(),
                ),
                (None, Some(refused)) => refused,
                (None, None) => unanswered_is_ambiguous(adapter_error(e), &log),
            }),
            Ok(Ok(Ok(response))) if response.output.len() > max_output => Err(AttemptError::new(
                after_send(&log, ErrorClass::Internal),
                FailureKind::OutputTooLarge,
                format!(
                    "the adapter returned {} bytes; the cap is {max_output}",
                    response.output.len()
                ),
            )),
            Ok(Ok(Ok(response))) => match serde_json::from_str(&response.output) {
                Ok(output) => Ok(CallResponse { output }),
                Err(e) => Err(AttemptError::new(
                    after_send(&log, ErrorClass::Internal),
                    FailureKind::BadOutput,
                    format!("the adapter's output is not JSON: {e}"),
                )),
            },
        };
        let result = result.map_err(AttemptError::bounded);
        if let Err(e) = &result {
            tracing::debug!(app = %self.name, class = %e.class, kind = ?e.kind, message = %e.message, "attempt failed");
        }
        result
    }
}

/// Maximum actions an adapter may describe.
const MAX_ACTIONS: usize = 256;

/// Check what `describe` returned, action by action (name, description,
/// input schema as JSON text, idempotent): unique names, schemas that are
/// JSON objects. A guest's output: it must never panic the host.
fn check_actions(raw: Vec<(String, String, String, bool)>) -> Result<Vec<ActionInfo>, String> {
    if raw.len() > MAX_ACTIONS {
        return Err(format!(
            "lists {} actions; at most {MAX_ACTIONS}",
            raw.len()
        ));
    }
    let mut actions: Vec<ActionInfo> = Vec::with_capacity(raw.len());
    for (name, description, schema, idempotent) in raw {
        if actions.iter().any(|b| b.name == name) {
            return Err(format!("lists action `{name}` twice"));
        }
        let input_schema: serde_json::Value = serde_json::from_str(&schema)
            .map_err(|e| format!("action `{name}`: input-schema is not JSON: {e}"))?;
        if !input_schema.is_object() {
            return Err(format!(
                "action `{name}`: input-schema must be a JSON object"
            ));
        }
        actions.push(ActionInfo {
            name,
            description,
            input_schema,
            idempotent,
        });
    }
    Ok(actions)
}

/// A failure after a request may have reached the provider is ambiguous.
fn after_send(log: &CallLog, otherwise: ErrorClass) -> ErrorClass {
    if log.reached > 0 {
        ErrorClass::Ambiguous
    } else {
        otherwise
    }
}

fn deadline_exceeded(log: &CallLog, budget: Duration) -> AttemptError {
    AttemptError::new(
        after_send(log, ErrorClass::Timeout),
        FailureKind::DeadlineExceeded,
        format!("the call did not finish within its deadline of {budget:?}"),
    )
}

/// The memory-limit error of a call whose request body the gate refused
/// for the call's memory cap, however the adapter went on.
fn over_memory(log: &CallLog) -> Option<AttemptError> {
    log.over_memory.as_ref().map(|reason| {
        AttemptError::new(
            after_send(log, ErrorClass::Unavailable),
            FailureKind::MemoryLimit,
            reason.clone(),
        )
    })
}

/// Classify a wasmtime error (a trap, a limit) into an attempt error.
fn sandbox_failure(store: &Store<CallState>, log: &CallLog, e: wasmtime::Error) -> AttemptError {
    let state = store.data();
    // Traps before any request reached a provider: the attempt failed
    // cleanly and another provider may serve (the JS toolchain traps on a
    // refused connection).
    let class = after_send(log, ErrorClass::Unavailable);
    if let Some(refused) = over_memory(log) {
        return refused;
    }
    if state.limiter.hit {
        return AttemptError::new(
            class,
            FailureKind::MemoryLimit,
            format!(
                "the guest tried to grow its memory past its cap of {} MiB (the call's cap less what the guest may make the host hold; request bodies the host holds for the call count too)",
                state.limiter.memory.cap() >> 20
            ),
        );
    }
    if matches!(
        e.downcast_ref::<wasmtime::component::ResourceTableError>(),
        Some(wasmtime::component::ResourceTableError::Full)
    ) {
        return AttemptError::new(
            class,
            FailureKind::MemoryLimit,
            format!(
                "the guest made the host hold more than {} resources at once (wasi:http fields, requests, streams...); each call may hold {} ({} MiB of its memory cap is reserved for them)",
                state::MAX_RESOURCES,
                state::MAX_RESOURCES,
                HOST_RESERVE >> 20
            ),
        );
    }
    if matches!(
        e.downcast_ref::<wasmtime_wasi_http::FieldMapError>(),
        Some(wasmtime_wasi_http::FieldMapError::TotalSizeTooBig)
    ) {
        return AttemptError::new(
            class,
            FailureKind::MemoryLimit,
            format!(
                "the guest built a header map over {} KiB, the most one may hold",
                state::FIELDS_LIMIT >> 10
            ),
        );
    }
    if let Some(exit) = e.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return AttemptError::new(
            class,
            FailureKind::Trap,
            format!("the guest exited with code {}", exit.0),
        );
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => AttemptError::new(
            after_send(log, ErrorClass::Timeout),
            FailureKind::DeadlineExceeded,
            "the call ran past its deadline".to_string(),
        ),
        Some(Trap::StackOverflow) => AttemptError::new(
            class,
            FailureKind::StackOverflow,
            "the guest overflowed its stack".to_string(),
        ),
        Some(trap) => {
            let mut message = format!("the guest trapped: {trap}");
            // A trap carries no reason; an outbound request that failed just
            // before it usually is the reason (componentize-js traps when a
            // fetch() with a body fails).
            if let Some(failure) = log.failures.last() {
                message.push_str(&format!(" after its outbound request failed: {failure}"));
            }
            if let Some(tail) = state.stderr_tail() {
                message.push_str(&format!(" (stderr: {tail})"));
            }
            AttemptError::new(class, FailureKind::Trap, message)
        }
        None => AttemptError::new(class, FailureKind::Host, format!("{e:#}")),
    }
}

/// An adapter may not be able to tell a refused connection from one that
/// broke after sending (JavaScript's `fetch()` says `NetworkError` for both).
/// The host can: when a request may have reached the provider and no answer
/// came back, a clean failure the adapter reports is really ambiguous.
fn unanswered_is_ambiguous(mut e: AttemptError, log: &CallLog) -> AttemptError {
    if matches!(e.class, ErrorClass::Unavailable | ErrorClass::Timeout) && log.unanswered() {
        e.class = ErrorClass::Ambiguous;
        e.message.push_str(
            " (the host saw the request leave without an answer: the provider may have acted on it)",
        );
    }
    e
}

fn adapter_error(e: types::AdapterError) -> AttemptError {
    let (class, d, retry_after) = match e {
        types::AdapterError::Rejected(d) => (ErrorClass::Rejected, d, None),
        types::AdapterError::Unavailable(d) => (ErrorClass::Unavailable, d, None),
        types::AdapterError::Timeout(d) => (ErrorClass::Timeout, d, None),
        types::AdapterError::Ambiguous(d) => (ErrorClass::Ambiguous, d, None),
        types::AdapterError::Internal(d) => (ErrorClass::Internal, d, None),
        types::AdapterError::RateLimited(r) => (
            ErrorClass::RateLimited,
            r.detail,
            r.retry_after_ms.map(Duration::from_millis),
        ),
    };
    AttemptError {
        class,
        kind: FailureKind::Provider,
        message: d.message,
        status: d.status,
        code: d.code,
        retry_after,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever a guest's `describe` returns, the host answers with a
        /// result, never a panic; what it accepts is well-formed.
        #[test]
        fn fuzz_describe_output(
            raw in prop::collection::vec(
                ("[a-c-]{0,3}", ".{0,8}", prop_oneof![
                    Just("{}".to_string()),
                    Just("[]".to_string()),
                    "[{}\\[\\]\":,a-z0-9 ]{0,24}",
                    ".{0,12}",
                ], any::<bool>()),
                0..12,
            )
        ) {
            if let Ok(actions) = check_actions(raw.clone()) {
                prop_assert_eq!(actions.len(), raw.len());
                prop_assert!(actions.iter().all(|a| a.input_schema.is_object()));
            }
        }
    }
}
