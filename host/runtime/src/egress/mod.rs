//! The egress gate: every request a guest makes over `wasi:http` passes
//! here. Deny by default; the app's allowlist of origins; no private,
//! loopback or link-local address (checked on literals and after DNS) unless
//! the grant names it; credentials added by the host (OAuth2 client
//! credentials' tokens fetched and kept by it: `oauth2.rs`); a cap on requests per
//! call; a timeout bounded by the call's deadline; pooled connections; and
//! per-app counters.

mod client;
mod credentials;
mod denial;
mod exchange;
mod gate;
mod memory;
mod oauth2;
mod policy;
mod sigv4;
mod transport;
mod wasi;

pub use credentials::{Credential, CredentialError, GrantCredential, Secret};
pub use denial::{Denial, Restricted};
pub use memory::CallMemory;
pub use oauth2::{MAX_TOKEN_ANSWER, MAX_TOKEN_BYTES, MAX_TOKEN_LIFETIME};
pub use policy::{EgressPolicy, Network, Origin, PolicyError};

pub use exchange::{Answered, Described};
pub use gate::{AppEgress, CallEgress, CallLog, EgressLimits, EgressStats};
