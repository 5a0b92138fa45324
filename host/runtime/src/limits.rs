//! Per-call limits and how to build a runtime: the numbers an operator
//! sets, with their bounds.

use crate::cache::ComponentCache;
use crate::egress::EgressLimits;
use crate::state;
use std::path::PathBuf;
use std::time::Duration;

/// Default pool size. See `docs/configuration.md` ("Sizing the instance
/// pool") for the arithmetic: memory per live instance times the pool.
pub const DEFAULT_MAX_INSTANCES: u32 = 1_024;

/// Upper bound of [`RuntimeConfig::max_instances`].
pub const MAX_INSTANCES: u32 = 65_536;

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
    /// Pooling only: between calls, up to this many bytes at the start of
    /// a slot's linear memory are reset in place (zeroed, or copied back
    /// from the image), every byte of them whether the last call touched
    /// it or not; the rest is dropped and faulted in again by the next
    /// call, which costs page faults and a TLB shootdown on every core.
    /// A guest whose whole memory fits (a Rust adapter: about 1.1 MiB
    /// with Rust's 1 MiB stack; the shipped ones, linked with a 64 KiB
    /// stack, start at 128 KiB) resets with neither. The price is resident memory:
    /// this much per warm slot. 0: every page is dropped. Default
    /// [`DEFAULT_KEEP_RESIDENT`].
    pub keep_resident: usize,
    /// The host-wide budget provider answers read whole (exchange world)
    /// are held under, shared with whatever else the embedder holds under
    /// it (the server's request bodies). `None`: only the per-call caps.
    pub host_bytes: Option<std::sync::Arc<crate::held::HostBytes>>,
    /// Exchange world: how long a call keeps its instance for its next
    /// step while the provider answers (while a quarter of the pool is
    /// free), so a quick single-request call instantiates once, not
    /// twice. Past it the instance and its slot go back to the pool while
    /// the provider thinks. Zero: every step on a fresh instance. Default
    /// [`DEFAULT_EXCHANGE_HOLD`]; at most [`MAX_EXCHANGE_HOLD`].
    pub exchange_hold: Duration,
    /// Threads of the runtime's own that run every call (the guest's
    /// steps and the host's requests between them), apart from the
    /// embedder's threads; under load that made a run cheaper in CPU
    /// (docs/performance.md). 0: calls run on the caller's tokio runtime.
    /// At most [`MAX_SANDBOX_THREADS`]. Default 0.
    pub sandbox_threads: usize,
}

/// Largest [`RuntimeConfig::sandbox_threads`].
pub const MAX_SANDBOX_THREADS: usize = 64;

/// Default [`RuntimeConfig::keep_resident`]: 2 MiB, the whole memory of
/// a Rust adapter.
pub const DEFAULT_KEEP_RESIDENT: usize = 2 << 20;
/// Default [`RuntimeConfig::exchange_hold`].
pub const DEFAULT_EXCHANGE_HOLD: Duration = Duration::from_millis(25);
/// Largest [`RuntimeConfig::exchange_hold`].
pub const MAX_EXCHANGE_HOLD: Duration = Duration::from_millis(1_000);

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            cache_dir: ComponentCache::default_dir(),
            limits: Limits::default(),
            pooling: true,
            max_instances: DEFAULT_MAX_INSTANCES,
            keep_resident: DEFAULT_KEEP_RESIDENT,
            host_bytes: None,
            exchange_hold: DEFAULT_EXCHANGE_HOLD,
            sandbox_threads: 0,
        }
    }
}
