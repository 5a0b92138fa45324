//! The cluster seam: what the engine shares with other replicas when one is
//! installed ([`SwitchyardBuilder::shared`](crate::switchyard::SwitchyardBuilder::shared)),
//! and how it takes in what they share. The engine never blocks on it: every
//! call that waits is bounded by the implementation (the server's Redis link
//! answers `None` / [`Claim::Unreachable`] when the store is down or slow),
//! and every `None` means "decide locally", which is what the engine does
//! without a seam at all.
//!
//! Decisions stay local: a replica's breakers open on its own traffic, and
//! its quota rotation, caches and health go on when the store is gone. What
//! the seam adds is that a trip, a check result, a rotation ticket and a
//! cached result made on one replica reach the others (idempotency records
//! have their own seam, [`Records`](crate::records::Records)).

use crate::adapter::BoxFuture;
use crate::breaker::SharedBreaker;
use crate::health::{HealthKey, ProbeOutcome};
use std::time::Duration;

/// What the engine shares through a cluster store. Calls returning a future
/// must finish within the implementation's own bound (a few ms); those that
/// return nothing must not block at all (queue and send later).
pub trait Shared: Send + Sync + 'static {
    /// A breaker under `key` opened or closed here.
    fn breaker_changed(&self, key: &str, change: &SharedBreaker);

    /// An operator forced `key` open or closed, or released it, here. A
    /// force is not a transition: it is durable state of its own, which a
    /// store keeps until it is released (a breaker's episode ends, a force
    /// does not).
    fn force_changed(&self, key: &str, force: crate::breaker::Force);

    /// Take one of the `permits` half-open probes of `key`'s open
    /// `episode`, cluster-wide. `Some(false)`: every permit is taken.
    fn probe_permit<'a>(
        &'a self,
        key: &'a str,
        episode: u64,
        permits: u64,
        probe_timeout: Duration,
    ) -> BoxFuture<'a, Option<bool>>;

    /// A probe of `key`'s `episode` succeeded: the count of successful
    /// probes cluster-wide, this one included.
    fn probe_passed<'a>(&'a self, key: &'a str, episode: u64) -> BoxFuture<'a, Option<u64>>;

    /// The next ticket of the quota rotation `key` (`product/env/tag`),
    /// counting from 0 across the cluster.
    fn quota_ticket<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Option<u64>>;

    /// Whether this replica runs the healthcheck `key` for the next `ttl`
    /// (a lease: once per interval in the cluster; a dead holder's lease
    /// lapses). `None`: run it (local decision).
    fn health_lease<'a>(&'a self, key: &'a HealthKey, ttl: Duration)
    -> BoxFuture<'a, Option<bool>>;

    /// A healthcheck this replica ran ended with `outcome`.
    fn health_result(&self, key: &HealthKey, outcome: &ProbeOutcome);

    /// A result cache entry (`key` already names product, cache and entry).
    fn cache_get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Option<String>>;

    /// Store a result cache entry for `ttl`.
    fn cache_put(&self, key: &str, value: String, ttl: Duration);
}
