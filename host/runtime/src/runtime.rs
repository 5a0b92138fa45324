//! The plugin runtime: loads adapter components and runs each call on a
//! fresh, sandboxed instance.
//!
//! One async wasmtime [`Engine`] (pooling allocator where the system allows
//! it, epoch interruption driven by one ticker thread), components
//! precompiled and cached on disk, one `InstancePre` per app. Per call: a
//! memory cap, a wall deadline covering guest CPU and host I/O, a cap on
//! output size, and the egress gate on every outbound request. The runtime
//! knows nothing of quotas or fallbacks: the engine sees an [`App`] only as
//! an [`Adapter`](switchyard_engine::Adapter).

use crate::cache::{CacheOutcome, ComponentCache};
use crate::error::{LoadError, RuntimeError};
use crate::limits::{HOST_RESERVE, Limits, MAX_INSTANCES, MIN_MEMORY, RuntimeConfig};
use crate::state::CallState;
use crate::world::World;
use crate::{bindings, world};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// Interval of the epoch ticker: the granularity of CPU deadlines.
const TICK: Duration = Duration::from_millis(1);

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

/// A WebAssembly page, bytes.
const WASM_PAGE: u64 = 64 << 10;

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
    /// The world the component targets.
    pub world: World,
    /// SHA-256 of the component's bytes.
    pub sha256: [u8; 32],
    /// Bytes: the largest linear memory the component starts a call with
    /// (its core modules' initial sizes), where wasmtime can tell. Above
    /// [`Runtime::keep_resident`], a slot drops the rest between calls and
    /// every call faults it in again.
    pub initial_memory: Option<u64>,
}

/// The epoch ticker: a thread that advances the engine's epoch every
/// [`TICK`] while any instance slot is in use (a guest
/// may be running), and sleeps once none has been for [`IDLE_TICKS`], so
/// an idle host spends no CPU on it. Taking a slot wakes it.
pub(crate) struct Ticker {
    stop: Arc<AtomicBool>,
    thread: std::thread::Thread,
}

impl Ticker {
    fn start(
        engine: Engine,
        slots: Arc<tokio::sync::Semaphore>,
        size: usize,
    ) -> Result<Self, RuntimeError> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("switchyard-epoch".into())
            .spawn(move || {
                // Ticks since a slot was last seen in use.
                let mut idle_ticks = 0u32;
                while !flag.load(Ordering::Relaxed) {
                    if slots.available_permits() >= size {
                        idle_ticks = idle_ticks.saturating_add(1);
                    } else {
                        idle_ticks = 0;
                    }
                    if idle_ticks > IDLE_TICKS {
                        // Idle. A slot taken after this check unparks us
                        // (the token makes an unpark before the park
                        // count); the timeout is only a safety net.
                        std::thread::park_timeout(IDLE_RECHECK);
                        idle_ticks = 0;
                        continue;
                    }
                    std::thread::sleep(TICK);
                    engine.increment_epoch();
                }
            })
            .map_err(|e| RuntimeError(format!("starting the epoch ticker: {e}")))?;
        Ok(Self {
            stop,
            thread: handle.thread().clone(),
        })
    }

    /// A slot was taken: make sure the ticker runs.
    pub(crate) fn wake(&self) {
        self.thread.unpark();
    }
}

/// How often an idle epoch ticker looks at the slots without being woken.
const IDLE_RECHECK: Duration = Duration::from_secs(5);

/// Ticks with no slot in use before the ticker parks (~50 ms). Under load
/// the slots are empty for moments between calls: parking then, and being
/// woken by the next call, cost a wake-up and a context switch per call.
const IDLE_TICKS: u32 = 50;

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.unpark();
    }
}

pub(crate) struct RuntimeInner {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<CallState>,
    pub(crate) cache: Option<ComponentCache>,
    pub(crate) limits: Limits,
    pub(crate) pooling: bool,
    /// One permit per instance slot; every call holds one while its store
    /// lives.
    pub(crate) slots: Arc<tokio::sync::Semaphore>,
    pub(crate) max_instances: u32,
    /// [`crate::RuntimeConfig::exchange_hold`].
    pub(crate) exchange_hold: std::time::Duration,
    pub(crate) host_bytes: Option<Arc<crate::held::HostBytes>>,
    pub(crate) ticker: Ticker,
    /// [`crate::RuntimeConfig::keep_resident`], when pooling.
    pub(crate) keep_resident: Option<usize>,
    /// The threads calls run on ([`crate::RuntimeConfig::sandbox_threads`]).
    pub(crate) sandbox: Sandbox,
}

/// The runtime's own threads for calls, if it has any: a tokio runtime of
/// their own, stopped without waiting when the runtime is dropped (which
/// may happen inside an async context).
pub(crate) struct Sandbox {
    threads: Option<tokio::runtime::Runtime>,
    count: usize,
}

impl Sandbox {
    fn start(count: usize) -> Result<Self, RuntimeError> {
        if count > crate::limits::MAX_SANDBOX_THREADS {
            return Err(RuntimeError(format!(
                "sandbox_threads is {count}; it must be between 0 and {}",
                crate::limits::MAX_SANDBOX_THREADS
            )));
        }
        let threads = match count {
            0 => None,
            n => Some(
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(n)
                    .thread_name("switchyard-sandbox")
                    .enable_all()
                    .build()
                    .map_err(|e| RuntimeError(format!("starting the sandbox threads: {e}")))?,
            ),
        };
        Ok(Self { threads, count })
    }

    /// Where calls run, if not in the caller's task.
    pub(crate) fn handle(&self) -> Option<&tokio::runtime::Handle> {
        self.threads.as_ref().map(tokio::runtime::Runtime::handle)
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(threads) = self.threads.take() {
            threads.shutdown_background();
        }
    }
}

/// The plugin runtime. Cheap to clone; share one per process.
#[derive(Clone)]
pub struct Runtime {
    pub(crate) inner: Arc<RuntimeInner>,
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
                // Between calls, the first `keep_resident` bytes of a slot's
                // memory are reset in place (zeroed, or copied back from the
                // image), every byte of them, and the rest is dropped
                // (`madvise`) and faulted in afresh by the next call. Not
                // Linux's PAGEMAP_SCAN to find and reset only the dirtied
                // pages: wasmtime 48's scan skips a dirtied page that is not
                // in memory at that moment (swapped out, or being migrated
                // by the kernel), and the next call in the slot read the
                // last call's data (tests/sandbox.rs,
                // `no_state_survives_a_page_swapped_out_during_a_call`).
                .pagemap_scan(wasmtime::Enabled::No)
                .linear_memory_keep_resident(config.keep_resident)
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

        let sandbox = Sandbox::start(config.sandbox_threads)?;
        let slots = Arc::new(tokio::sync::Semaphore::new(n as usize));
        let ticker = Ticker::start(engine.clone(), slots.clone(), n as usize)?;

        Ok(Self {
            inner: Arc::new(RuntimeInner {
                engine,
                linker,
                cache: config.cache_dir.map(ComponentCache::new),
                limits,
                pooling,
                slots,
                max_instances: n,
                exchange_hold: config.exchange_hold.min(crate::limits::MAX_EXCHANGE_HOLD),
                host_bytes: config.host_bytes,
                ticker,
                keep_resident: pooling.then_some(config.keep_resident),
                sandbox,
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

    /// Threads of its own that run calls (0: the caller's runtime runs
    /// them).
    pub fn sandbox_threads(&self) -> usize {
        self.inner.sandbox.count
    }

    /// Pooling only: how many bytes at the start of a slot's memory are
    /// written back in place between calls ([`crate::RuntimeConfig::keep_resident`]).
    /// `None`: on-demand allocation, where every call maps fresh memory.
    pub fn keep_resident(&self) -> Option<usize> {
        self.inner.keep_resident
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
    pub(crate) async fn slot(
        &self,
        deadline: Instant,
    ) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let acquire = self.inner.slots.clone().acquire_owned();
        match tokio::time::timeout_at(deadline.into(), acquire).await {
            Ok(Ok(permit)) => {
                self.inner.ticker.wake();
                Some(permit)
            }
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
        let (component, cache, sha256) = tokio::task::spawn_blocking(move || {
            use sha2::Digest;
            let sha256: [u8; 32] = sha2::Sha256::digest(&*bytes).into();
            match &inner.cache {
                Some(cache) => cache.load(&inner.engine, &bytes, &sha256),
                None => Component::new(&inner.engine, &*bytes).map(|c| (c, CacheOutcome::Disabled)),
            }
            .map(|(c, outcome)| (c, outcome, sha256))
        })
        .await
        .map_err(|e| LoadError::Compile(e.to_string()))?
        .map_err(|e| LoadError::Compile(format!("{e:#}")))?;
        let compile = started.elapsed();
        let world = world::check_world(&self.inner.engine, &component)?;
        let initial_memory = component
            .resources_required()
            .and_then(|r| r.max_initial_memory_size)
            .map(|pages| pages.saturating_mul(WASM_PAGE));
        Ok((
            component,
            LoadReport {
                size,
                cache,
                compile,
                total: compile,
                world,
                sha256,
                initial_memory,
            },
        ))
    }
}
