//! What the engine reports as it works: every attempt, every retry-budget
//! refusal, every healthcheck outcome, every admission and overload. Metrics and the store listen here;
//! the engine itself does not know either exists.

use super::admission::OverloadReason;
use super::health::{HealthKey, ProbeOutcome};
use crate::adapter::AttemptError;
use std::time::Duration;

/// One call of an app action made by a run.
#[derive(Debug)]
pub struct AttemptEvent<'a> {
    /// Product.
    pub product: &'a str,
    /// Env.
    pub env: &'a str,
    /// App tag.
    pub app: &'a str,
    /// Action.
    pub action: &'a str,
    /// Provider (option) name.
    pub provider: &'a str,
    /// 1 for the first try, 2 for the first retry, ...
    pub try_number: u32,
    /// How it ended.
    pub result: Result<(), &'a AttemptError>,
    /// Time from call to answer.
    pub duration: Duration,
}

/// Listens to the engine. Every method has an empty default; calls are
/// made inline on the run's task, so implementations must be quick and
/// must not block (hand slow work to a channel).
pub trait Observer: Send + Sync {
    /// An attempt ended.
    fn attempt(&self, _event: &AttemptEvent<'_>) {}

    /// The retry budget of `app` refused a retry or a failover.
    fn budget_rejected(&self, _product: &str, _env: &str, _app: &str) {}

    /// A healthcheck round ended.
    fn healthcheck(&self, _key: &HealthKey, _outcome: &ProbeOutcome) {}

    /// An attempt of `app` was admitted after waiting `waited` (zero when
    /// it started at once).
    fn admitted(&self, _product: &str, _env: &str, _app: &str, _waited: Duration) {}

    /// An attempt of `app` was not admitted: the host's limit, not the
    /// provider's failure.
    fn overloaded(&self, _product: &str, _env: &str, _app: &str, _reason: &OverloadReason) {}

    /// A run skipped a provider because its breaker is open: `target` is
    /// the provider's `app/action` (or `feature:tag` for a feature option).
    fn blocked(&self, _product: &str, _env: &str, _target: &str) {}

    /// An attempt of `app` was hedged: what it sent, which request won
    /// and how many were cancelled.
    fn hedged(&self, _product: &str, _env: &str, _app: &str, _record: &crate::hedge::HedgeRecord) {}
}
