//! Switchyard's WebAssembly runtime: loads provider adapters (components of
//! the `switchyard:adapter` world) and runs each call on a fresh, sandboxed
//! instance. The engine (`switchyard-engine`) sees an [`App`] only as an
//! [`Adapter`](switchyard_engine::Adapter).
//!
//! Where each concern lives (all modules are private; this page is the
//! crate's whole surface):
//!
//! | concern | file |
//! |---|---|
//! | the engine, the instance pool, loading (link, check the world, prepare) | `runtime.rs`, `world.rs`, `cache.rs` |
//! | per-call limits and runtime settings ([`Limits`], [`RuntimeConfig`]) | `limits.rs` |
//! | errors of each phase ([`RuntimeError`], [`LoadError`]) | `error.rs` |
//! | one call on a fresh instance ([`App`]) | `app.rs`, `state.rs` |
//! | one call of an exchange-world adapter: steps on fresh instances, the host's HTTP between them | `exchange.rs` |
//! | what a call's end means (trap, limit, deadline, adapter error) | `outcome.rs` |
//! | the egress gate: policy, credentials, SigV4, pooled client, the call's memory account | `egress/` |
//! | what an app is allowed ([`Grant`]) | `grant.rs` |

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
    EgressStats, GrantCredential, Network, Origin, PolicyError, Restricted, Secret,
};
pub use error::{LoadError, RuntimeError};
pub use exchange::MAX_STATE;
pub use grant::Grant;
pub use held::{Held, HostBytes};
pub use limits::{
    DEFAULT_MAX_INSTANCES, HOST_RESERVE, Limits, MAX_INSTANCES, MIN_GUEST_MEMORY, MIN_MEMORY,
    RuntimeConfig,
};
pub use runtime::{ComponentSource, LoadReport, Runtime};
pub use world::{SUPPORTED_RANGE, World};
