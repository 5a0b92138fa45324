//! The engine's side of the cluster port: asking [`Shared`](crate::cluster::Shared)
//! for half-open permits, quota tickets and cached results, telling it
//! what this replica did, and taking in what other replicas shared
//! (breaker transitions, forces, health results).

use crate::adapter::AttemptError;
use crate::breaker::{Open, SharedBreaker, Spec, Ticket, Transition, unix_ms};
use crate::health::{HealthKey, ProbeOutcome};
use crate::switchyard::{Inner, Switchyard};
use std::time::{Duration, Instant, UNIX_EPOCH};

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
        force: crate::breaker::Force,
    ) -> crate::breaker::BreakerState {
        let now = self.inner.clock.now();
        self.inner.breakers.force(key, force, now)
    }
}
