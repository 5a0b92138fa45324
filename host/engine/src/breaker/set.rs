//! The breakers' state and time: one [`Breaker`] per key, created on first
//! use and bounded in number, behind one lock; the key scheme. What one
//! breaker decides lives in `circuit.rs`; the attempt step that asks lives
//! in the dispatch.

use super::circuit::{Breaker, Open, Ticket};
use super::config::{BreakerConfig, BreakerSettings, Classifier};
use super::state::{BreakerSnapshot, BreakerState, Force, SharedBreaker};
use crate::adapter::AttemptError;
use crate::locks::Recover;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// What the option asking for a breaker brings to it: its settings (when
/// its definition or it sets any) and, for a `breaker_key` template, the
/// template's own key, so provider state can find every breaker the
/// template made.
#[derive(Debug, Clone, Default)]
pub(crate) struct Spec<'a> {
    pub settings: Option<&'a BreakerSettings>,
    pub origin: Option<String>,
}

/// The breaker key of an app action in a product and env when its option
/// sets no `breaker_key` template: `product/env/app/action`. The one place
/// this key is spelled (runs, provider state and stats all read it here).
pub(crate) fn default_key(product: &str, env: &str, app: &str, action: &str) -> String {
    format!("{product}/{env}/{app}/{action}")
}

/// The breaker key of an option whose `breaker_key` template rendered to
/// `rendered`: scoped to the product and env like the default.
pub(crate) fn templated_key(product: &str, env: &str, rendered: &str) -> String {
    format!("{product}/{env}/{rendered}")
}

/// A change of state that [`Breakers::record`] made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The breaker opened (from closed, or again from half-open).
    Opened,
    /// Enough probes passed: it closed.
    Closed,
}

/// Most breakers kept at once. Keys derived from input (`breaker_key`
/// templates) could otherwise grow without bound; past it, the quietest
/// closed breaker is forgotten (it holds nothing a fresh one would not).
pub const MAX_BREAKERS: usize = 10_000;

/// Forget one breaker to make room: a closed one with the fewest failures
/// and the oldest window, else (every one open or probing) the oldest. A
/// forced breaker is never forgotten: an operator's force stays until it
/// is released (forces are bounded by the server, far below this bound).
fn evict_quietest(map: &mut HashMap<String, Breaker>) {
    let victim = map
        .iter()
        .filter(|(_, b)| b.forced.is_none())
        .min_by_key(|(_, b)| (b.state != BreakerState::Closed, b.failures, b.window_start))
        .map(|(k, _)| k.clone());
    if let Some(k) = victim {
        map.remove(&k);
    }
}

/// Breakers by key (`app/action` by default, or any key the caller
/// derives), created on first use, at most [`MAX_BREAKERS`].
pub struct Breakers {
    config: BreakerConfig,
    classifier: Classifier,
    map: Mutex<HashMap<String, Breaker>>,
}

impl std::fmt::Debug for Breakers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Breakers")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Breakers {
    /// Breakers with `config`, counting the errors `classifier` accepts.
    pub fn new(config: BreakerConfig, classifier: Classifier) -> Self {
        Self {
            config,
            classifier,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// Breakers with the default classifier.
    #[cfg(test)]
    pub fn with_config(config: BreakerConfig) -> Self {
        Self::new(config, Box::new(super::config::default_classifier))
    }

    /// The engine-wide settings (`[engine.breaker]`).
    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    /// Ask to run a request under `key`. Settings that `spec` brings apply
    /// from now on to the breaker, keeping its state (a definition updated
    /// with new settings changes its breakers in place); a spec without
    /// settings leaves the breaker's as they are.
    pub fn admit(&self, key: &str, spec: Spec<'_>, now: Instant) -> Result<Ticket, Open> {
        let wanted = spec.settings.map(|s| s.over(&self.config));
        let mut map = self.map.locked();
        if let Some(b) = map.get_mut(key) {
            if let Some(c) = wanted
                && c != b.config
            {
                b.config = c;
            }
            return b.admit(now);
        }
        if map.len() >= MAX_BREAKERS {
            evict_quietest(&mut map);
        }
        let mut b = Breaker::new(wanted.unwrap_or(self.config), now);
        b.origin = spec.origin.map(Arc::from);
        map.entry(key.to_string()).or_insert(b).admit(now)
    }

    /// Report the outcome of the request of `ticket` under `key`; says
    /// whether it opened or closed the breaker.
    pub fn record(
        &self,
        key: &str,
        ticket: Ticket,
        outcome: Result<(), &AttemptError>,
        now: Instant,
    ) -> Option<Transition> {
        let mut map = self.map.locked();
        let b = map.get_mut(key)?;
        if b.forced.is_some() {
            return None; // an operator decides for now
        }
        let before = b.state;
        let counts = |e: &AttemptError| match b.config.system_errors {
            Some(set) => set.contains(e.class),
            None => (self.classifier)(e),
        };
        match outcome {
            Err(e) if counts(e) => b.failure(ticket, e.clone(), now),
            _ => b.success(ticket),
        }
        match (before, b.state) {
            (b, BreakerState::Open) if b != BreakerState::Open => Some(Transition::Opened),
            (BreakerState::HalfOpen, BreakerState::Closed) => Some(Transition::Closed),
            _ => None,
        }
    }

    /// Stamp the opening of `key` with its cluster episode (`wall_ms`) and
    /// say what other replicas must apply.
    pub(crate) fn share_opening(&self, key: &str, wall_ms: u64) -> Option<SharedBreaker> {
        let mut map = self.map.locked();
        let b = map.get_mut(key)?;
        b.episode = wall_ms.max(b.episode.saturating_add(1));
        Some(SharedBreaker {
            open: true,
            episode: b.episode,
            open_timeout_ms: u64::try_from(b.config.open_timeout.as_millis()).unwrap_or(u64::MAX),
            requests: b.requests,
            last_error: b.last_error.clone(),
        })
    }

    /// Every breaker open or half-open on its own judgement (not forced),
    /// as its opening.
    pub(crate) fn open_shares(&self) -> Vec<(String, SharedBreaker)> {
        let map = self.map.locked();
        map.iter()
            .filter(|(_, b)| b.state != BreakerState::Closed && b.episode > 0 && b.forced.is_none())
            .map(|(k, b)| {
                (
                    k.clone(),
                    SharedBreaker {
                        open: true,
                        episode: b.episode,
                        open_timeout_ms: u64::try_from(b.config.open_timeout.as_millis())
                            .unwrap_or(u64::MAX),
                        requests: b.requests,
                        last_error: b.last_error.clone(),
                    },
                )
            })
            .collect()
    }

    /// The close of `key`'s current episode, as other replicas apply it.
    pub(crate) fn share_close(&self, key: &str) -> Option<SharedBreaker> {
        let map = self.map.locked();
        let b = map.get(key)?;
        Some(SharedBreaker {
            open: false,
            episode: b.episode,
            open_timeout_ms: 0,
            requests: 0,
            last_error: None,
        })
    }

    /// Every forced breaker and its force.
    pub(crate) fn forces(&self) -> Vec<(String, Force)> {
        let map = self.map.locked();
        let mut v: Vec<_> = map
            .iter()
            .filter_map(|(k, b)| b.forced.map(|f| (k.clone(), f)))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Whether a breaker under `key` is held now.
    pub(crate) fn holds(&self, key: &str) -> bool {
        self.map.locked().contains_key(key)
    }

    /// Episode, probe allowance and probe timeout of `key` while half-open.
    pub(crate) fn allowance(&self, key: &str) -> Option<(u64, u64, std::time::Duration)> {
        let map = self.map.locked();
        let b = map.get(key)?;
        b.allowance().map(|(e, p)| (e, p, b.config.probe_timeout))
    }

    /// Close `key`'s half-open `episode` (enough probes passed cluster-wide).
    pub(crate) fn close_episode(&self, key: &str, episode: u64) -> bool {
        self.map
            .locked()
            .get_mut(key)
            .is_some_and(|b| b.close_episode(episode))
    }

    /// The rejection an open `key` answers with.
    pub(crate) fn rejection(&self, key: &str) -> Open {
        Open {
            open: true,
            last_error: self
                .map
                .locked()
                .get(key)
                .and_then(|b| b.last_error.clone()),
        }
    }

    /// Force `key` (created if unused) and say its state now.
    pub(crate) fn force(&self, key: &str, force: Force, now: Instant) -> BreakerState {
        let mut map = self.map.locked();
        if !map.contains_key(key) {
            if map.len() >= MAX_BREAKERS {
                evict_quietest(&mut map);
            }
            map.insert(key.to_string(), Breaker::new(self.config, now));
        }
        let b = map.get_mut(key).expect("inserted above");
        b.apply_force(force, now);
        b.state
    }

    /// Take in a transition another replica made on `key` (creating the
    /// breaker if this replica has not used it yet).
    pub fn apply_shared(&self, key: &str, s: &SharedBreaker, now: Instant, wall_ms: u64) -> bool {
        let mut map = self.map.locked();
        if !map.contains_key(key) {
            if !s.open {
                return false;
            }
            if map.len() >= MAX_BREAKERS {
                evict_quietest(&mut map);
            }
            map.insert(key.to_string(), Breaker::new(self.config, now));
        }
        map.get_mut(key)
            .is_some_and(|b| b.apply_shared(s, now, wall_ms))
    }

    /// Hand back the ticket of a request under `key` that never ran.
    pub fn release(&self, key: &str, ticket: Ticket) {
        if let Some(b) = self.map.locked().get_mut(key) {
            b.release(ticket);
        }
    }

    /// Whether a request under `key` would be admitted now (no permit taken).
    pub fn check(&self, key: &str, now: Instant) -> Result<(), Open> {
        self.map.locked().get(key).map_or(Ok(()), |b| b.check(now))
    }

    /// State, window counts and last error of `key`.
    pub fn snapshot(&self, key: &str) -> BreakerSnapshot {
        let map = self.map.locked();
        match map.get(key) {
            None => BreakerSnapshot {
                key: key.to_string(),
                state: BreakerState::Closed,
                requests: 0,
                failures: 0,
                last_error: None,
                forced: None,
            },
            Some(b) => b.snapshot(key),
        }
    }

    /// Every breaker a `breaker_key` template with key `origin` made, open
    /// ones first, then by key; at most `limit`, and how many there are.
    pub fn made_by(&self, origin: &str, limit: usize) -> (Vec<BreakerSnapshot>, usize) {
        let map = self.map.locked();
        let mut v: Vec<BreakerSnapshot> = map
            .iter()
            .filter(|(_, b)| b.origin.as_deref() == Some(origin))
            .map(|(k, b)| b.snapshot(k))
            .collect();
        let total = v.len();
        v.sort_by(|a, b| {
            (a.state == BreakerState::Closed, &a.key)
                .cmp(&(b.state == BreakerState::Closed, &b.key))
        });
        v.truncate(limit);
        (v, total)
    }

    /// Every breaker's key and state, sorted by key.
    pub fn states(&self) -> Vec<(String, BreakerState)> {
        let mut v: Vec<_> = self
            .map
            .locked()
            .iter()
            .map(|(k, b)| (k.clone(), b.state))
            .collect();
        v.sort();
        v
    }

    /// The state of `key` (closed if never used).
    #[cfg(test)]
    pub fn state(&self, key: &str) -> BreakerState {
        self.map
            .locked()
            .get(key)
            .map_or(BreakerState::Closed, Breaker::state)
    }
}
