//! Admission control per app: a bulkhead (attempts in flight), a token
//! bucket (a provider's rate limit), and a cooldown the provider asked for
//! (429 + `Retry-After`), in front of one bounded FIFO queue.
//!
//! An attempt that cannot start waits in the queue for at most the time
//! its run has left (and the app's `queue_timeout_ms`). One that is still
//! not admitted is **overloaded**: the host's own limit, never the
//! provider's failure. Breakers, health, attempt counts and the retry
//! budget never see it.
//!
//! Waiting is fair: only the head of the queue may start, so a late
//! arrival never overtakes an earlier one, and a waiter that could not be
//! admitted before its deadline (queue full, a cooldown or a token further
//! away than its deadline) is refused at once instead of waiting in vain.
//!
//! `config.rs`: the settings and what an overload reports; `gate.rs`: the
//! gate.

mod config;
mod gate;

pub use config::{AdmissionConfig, AdmissionSnapshot, Overload, OverloadReason};
pub(crate) use gate::{Gate, Permit, Wait};
