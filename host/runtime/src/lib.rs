//! Switchyard's WebAssembly runtime: loads provider adapters (components of
//! the `switchyard:adapter` world) and runs each call on a fresh, sandboxed
//! instance. The engine (`switchyard-engine`) sees an [`App`] only as an
//! [`Adapter`](switchyard_engine::Adapter).
//!
//! Where each concern lives (all modules are private; this page is the
//! crate's whole surface). Imports only point down this table, with no
//! loop:
//!
//! | concern | file |
//! |---|---|
//! | the versions this host loads; errors of each phase ([`RuntimeError`], [`LoadError`]); the world a component targets | `version.rs`, `error.rs`, `world.rs` |
//! | the host's byte budget ([`HostBytes`]); the on-disk artifact cache | `held.rs`, `cache.rs` |
//! | the egress gate: policy, credentials, SigV4, pooled client, the call's memory account (below); the gate's state, the wasi-http side, the exchange side, the transport's meanings (above) | `egress/` |
//! | what an app is allowed ([`Grant`]); a call's store state; per-call limits and runtime settings ([`Limits`], [`RuntimeConfig`]) | `grant.rs`, `state.rs`, `limits.rs` |
//! | what a call's end means (trap, limit, deadline, adapter error) | `outcome.rs` |
//! | the wasmtime engine, the instance pool and its slots, compiling | `runtime.rs` |
//! | an app as the runtime holds it, and one `adapter`-world call on a fresh instance | `instance.rs` |
//! | one exchange-world call: steps on fresh instances, the host's HTTP between them | `exchange.rs` |
//! | the public handle ([`App`]); loading an app (link, check the world, describe) | `app.rs`, `load.rs` |

mod app;
mod bindings;
mod cache;
mod egress;
mod error;
mod exchange;
mod grant;
mod held;
mod instance;
mod limits;
mod load;
mod outcome;
mod runtime;
mod state;
mod version;
mod world;

pub use app::{App, InstanceCounts};
pub use cache::{CacheOutcome, ComponentCache};
pub use egress::{
    Answered, Credential, CredentialError, Denial, Described, EgressLimits, EgressPolicy,
    EgressStats, GrantCredential, MAX_TOKEN_ANSWER, MAX_TOKEN_BYTES, MAX_TOKEN_LIFETIME, Network,
    Origin, PolicyError, Restricted, Secret,
};
pub use error::{LoadError, RuntimeError};
pub use exchange::MAX_STATE;
pub use grant::Grant;
pub use held::{Held, HostBytes};
pub use limits::{
    DEFAULT_EXCHANGE_HOLD, DEFAULT_KEEP_RESIDENT, DEFAULT_MAX_INSTANCES, HOST_RESERVE, Limits,
    MAX_EXCHANGE_HOLD, MAX_INSTANCES, MAX_SANDBOX_THREADS, MIN_GUEST_MEMORY, MIN_MEMORY,
    RuntimeConfig,
};
pub use runtime::{ComponentSource, LoadReport, Runtime};
pub use world::{SUPPORTED_RANGE, World};
