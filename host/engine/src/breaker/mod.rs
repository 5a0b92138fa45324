//! Circuit breakers, one folder: the settings (`config.rs`), what a
//! breaker is in as others see it — its state, an operator's force, a
//! snapshot, the transition replicas share (`state.rs`) — what one breaker
//! decides (`circuit.rs`), and the keyed set with its bound and time
//! (`set.rs`). The attempt step that asks a breaker lives in the dispatch;
//! the cluster port only carries [`SharedBreaker`] records.

mod circuit;
mod config;
mod set;
mod state;

pub(crate) use circuit::{Open, Ticket};
pub use config::{BreakerConfig, BreakerSettings, Classifier, ErrorClasses, default_classifier};
pub use set::MAX_BREAKERS;
pub(crate) use set::{Breakers, Spec, Transition, default_key, templated_key};
pub(crate) use state::unix_ms;
pub use state::{BreakerSnapshot, BreakerState, Force, SharedBreaker};
