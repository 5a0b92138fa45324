//! The cluster seam: what the engine shares with other replicas when one is
//! installed ([`SwitchyardBuilder::shared`](crate::SwitchyardBuilder::shared)),
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
//! have their own seam, [`Records`](crate::Records)).

use crate::adapter::{AttemptError, BoxFuture};
use crate::health::{HealthKey, ProbeOutcome};
use std::time::Duration;

/// A breaker transition one replica made, as the others apply it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SharedBreaker {
    /// Open (`true`) or closed again (`false`).
    pub open: bool,
    /// The open episode: when (Unix ms) the breaker opened. A close names
    /// the episode it ends, so a late close never ends a newer opening.
    pub episode: u64,
    /// How long the breaker stays open before probing, ms.
    pub open_timeout_ms: u64,
    /// Requests in the window that opened it: the half-open allowance is a
    /// share of them, the same on every replica.
    pub requests: u64,
    /// The error that opened it.
    pub last_error: Option<AttemptError>,
}

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
    fn force_changed(&self, key: &str, force: crate::operator::Force);

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

use crate::breaker::{Open, Ticket};
use crate::breakers::{Spec, Transition};
use crate::switchyard::{Inner, Switchyard};
use std::time::{Instant, UNIX_EPOCH};

/// Unix ms of a wall time (0 before the epoch).
pub(crate) fn unix_ms(t: std::time::SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Inner {
    fn wall_ms(&self) -> u64 {
        unix_ms(self.clock.wall())
    }

    /// Ask `key`'s breaker for a ticket; a half-open probe also needs one
    /// of the episode's permits cluster-wide.
    pub(crate) async fn admit_breaker(
        &self,
        key: &str,
        spec: Spec<'_>,
        now: Instant,
    ) -> Result<Ticket, Open> {
        let ticket = self.breakers.admit(key, spec, now)?;
        if let (true, Some(shared)) = (ticket.is_probe(), &self.shared)
            && let Some((episode, permits, timeout)) = self.breakers.allowance(key)
            && shared.probe_permit(key, episode, permits, timeout).await == Some(false)
        {
            self.breakers.release(key, ticket);
            return Err(self.breakers.rejection(key));
        }
        Ok(ticket)
    }

    /// Report an attempt's outcome to `key`'s breaker and share what it
    /// changed; a passed probe counts toward closing it cluster-wide.
    pub(crate) async fn record_breaker(
        &self,
        key: &str,
        ticket: Ticket,
        outcome: Result<(), &AttemptError>,
        end: Instant,
    ) {
        let transition = self.breakers.record(key, ticket, outcome, end);
        let Some(shared) = &self.shared else { return };
        match transition {
            Some(Transition::Opened) => {
                if let Some(s) = self.breakers.share_opening(key, self.wall_ms()) {
                    shared.breaker_changed(key, &s);
                }
            }
            Some(Transition::Closed) => {
                if let Some(s) = self.breakers.share_close(key) {
                    shared.breaker_changed(key, &s);
                }
            }
            None if ticket.is_probe() && outcome.is_ok() => {
                if let Some((episode, permits, _)) = self.breakers.allowance(key)
                    && let Some(passed) = shared.probe_passed(key, episode).await
                    && passed >= permits
                    && self.breakers.close_episode(key, episode)
                    && let Some(s) = self.breakers.share_close(key)
                {
                    shared.breaker_changed(key, &s);
                }
            }
            None => {}
        }
    }
}

impl Switchyard {
    /// Take in a breaker transition another replica shared; returns whether
    /// it changed this replica's breaker.
    pub fn apply_shared_breaker(&self, key: &str, change: &SharedBreaker) -> bool {
        let now = self.inner.clock.now();
        self.inner
            .breakers
            .apply_shared(key, change, now, self.inner.wall_ms())
    }

    /// Take in a healthcheck result another replica's check produced: this
    /// replica's status, history and observers see it as if it had run the
    /// check, and its own next check of `key` waits a full interval.
    pub fn apply_shared_health(&self, key: &HealthKey, outcome: ProbeOutcome) -> bool {
        let now = self.inner.clock.now();
        let wall = UNIX_EPOCH + Duration::from_millis(outcome.at_unix_ms);
        let mut board = self.inner.health.locked();
        if !board.tracks(key) {
            return false;
        }
        for o in &self.inner.observers {
            o.healthcheck(key, &outcome);
        }
        board.finish(key, outcome, now, wall);
        true
    }

    /// Whether a cluster seam is installed.
    pub fn is_shared(&self) -> bool {
        self.inner.shared.is_some()
    }
}

use crate::locks::Recover;

impl Switchyard {
    /// Every breaker open or half-open here, as the transition other
    /// replicas apply: what a replica pushes when it finds the store again,
    /// so trips made while it was away converge.
    pub fn shared_openings(&self) -> Vec<(String, SharedBreaker)> {
        self.inner.breakers.open_shares()
    }

    /// Take in an operator's force another replica made (or one a store
    /// kept), without sharing it again: returns the breaker's state now.
    pub fn apply_shared_force(
        &self,
        key: &str,
        force: crate::operator::Force,
    ) -> crate::breaker::BreakerState {
        let now = self.inner.clock.now();
        self.inner.breakers.force(key, force, now)
    }
}
