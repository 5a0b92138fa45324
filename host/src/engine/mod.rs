//! The resilience engine, independent of wasmtime: it sees apps only as
//! [`crate::adapter::Adapter`]s and reads time only through [`Clock`].
//!
//! Built so far: the injectable clock, the circuit breaker (the Tinkoff
//! request plugin's model, with the hung-probe fix), retry backoff with full
//! jitter and Retry-After, and the retry budget. Quotas, fallbacks,
//! healthchecks, features and mapping are not built yet.

pub mod breaker;
pub mod budget;
pub mod clock;
pub mod retry;
pub mod weighted;

pub use breaker::{Breaker, BreakerConfig, BreakerState, Breakers, Open, Ticket};
pub use budget::{BudgetConfig, RetryBudget};
pub use clock::{Clock, ManualClock, SystemClock};
pub use retry::{Jitter, RetryPolicy};
pub use weighted::SmoothWeighted;
