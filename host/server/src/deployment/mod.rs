//! A running configuration: the plugin runtime with every app loaded, the
//! engine with every definition, the store they persist in, and metrics.
//! `switchyard serve`, `run` and `check` and the HTTP API all stand on it.
//!
//! `state.rs`: what it is; `start.rs`: starting it; `reload.rs`: a
//! reload; `changes.rs`: changes through the API; `local.rs`: what the
//! cluster link asks of it; `history.rs`: providers' history in the store.

mod changes;
mod history;
mod local;
mod reload;
mod start;
mod state;

pub(crate) use start::resident_hint;
pub use state::{ChangeError, Deployment, Drift, MAX_FORCES, ReloadReport, StartOptions, drift};
