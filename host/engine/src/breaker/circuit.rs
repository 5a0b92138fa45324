//! Circuit breaker, after the Tinkoff request plugin's model.
//!
//! - **Closed**: requests and counted failures are tallied in a window of
//!   `failure_timeout` (the window restarts once it is older than that).
//!   The breaker opens when failures exceed `minimum_failure_count` *and*
//!   the failure percentage exceeds `failure_threshold` (both strict: exactly
//!   50 % at a 50 % threshold does not trip).
//! - **Open**: every request is rejected with the last real error attached,
//!   until `open_timeout` has passed since it opened.
//! - **Half-open**: the request that finds the open timeout passed becomes
//!   the first probe; `half_open_threshold` % of the window's requests (at
//!   least 1, rounded up) may run as probes. That many successes close the
//!   breaker; any counted failure reopens it with that error.
//!
//! Fix over the reference: a probe that never reports (hung, cancelled)
//! would keep half-open wedged forever. Every probe has a deadline
//! (`probe_timeout`); past it the probe's permit is released and another
//! request may probe. A late report from an expired probe is ignored.
//!
//! Which errors count is the caller's classifier (`Breakers::new`, in
//! `breakers.rs`, which keeps one breaker per key); an
//! error that does not count reports as a success, as in the reference (the
//! provider answered).

use super::config::BreakerConfig;
use super::state::{BreakerSnapshot, BreakerState, Force, SharedBreaker};
use crate::adapter::AttemptError;
use std::time::Instant;

/// A rejection by an open (or saturated half-open) breaker.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("circuit breaker open{}", last_error.as_ref().map(|e| format!("; last error: {e}")).unwrap_or_default())]
pub struct Open {
    /// Always true: the request was blocked by the breaker, not tried.
    pub open: bool,
    /// The last real error that opened the breaker.
    pub last_error: Option<AttemptError>,
}

/// Permission to run one request; hand it back with the outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    probe: Option<u64>,
}

impl Ticket {
    /// Whether this is a half-open probe.
    pub(crate) fn is_probe(self) -> bool {
        self.probe.is_some()
    }
}

#[derive(Debug)]
pub(crate) struct HalfOpen {
    permits: u64,
    successes: u64,
    /// Outstanding probes: id and when it was admitted.
    running: Vec<(u64, Instant)>,
}

/// One breaker.
#[derive(Debug)]
pub struct Breaker {
    pub(crate) config: BreakerConfig,
    pub(crate) state: BreakerState,
    pub(crate) window_start: Instant,
    pub(crate) requests: u64,
    pub(crate) failures: u64,
    pub(crate) last_error: Option<AttemptError>,
    pub(crate) opened_at: Option<Instant>,
    pub(crate) half_open: Option<HalfOpen>,
    /// Probe ids are unique for the breaker's life, so a stale report from
    /// an earlier half-open episode never matches a current probe.
    pub(crate) next_probe: u64,
    /// The key of the `breaker_key` template that made it, if one did.
    pub(crate) origin: Option<std::sync::Arc<str>>,
    /// The open episode (Unix ms of the opening) in cluster mode, so a
    /// close from another replica ends only the opening it saw; 0 alone.
    pub(crate) episode: u64,
    /// An operator's force (open or closed) until released.
    pub(crate) forced: Option<Force>,
}

impl Breaker {
    /// A closed breaker whose window starts at `now`.
    pub fn new(config: BreakerConfig, now: Instant) -> Self {
        Self {
            config,
            state: BreakerState::Closed,
            window_start: now,
            requests: 0,
            failures: 0,
            last_error: None,
            opened_at: None,
            half_open: None,
            next_probe: 0,
            origin: None,
            episode: 0,
            forced: None,
        }
    }

    pub(crate) fn snapshot(&self, key: &str) -> BreakerSnapshot {
        BreakerSnapshot {
            key: key.to_string(),
            state: self.state,
            requests: self.requests,
            failures: self.failures,
            last_error: self.last_error.as_ref().map(ToString::to_string),
            forced: self.forced,
        }
    }

    /// The state, as of `now` (an expired open timeout shows as open until a
    /// request arrives, as in the reference).
    #[cfg(test)]
    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// Requests and failures counted in the current window.
    #[cfg(test)]
    pub fn counts(&self) -> (u64, u64) {
        (self.requests, self.failures)
    }

    fn roll_window(&mut self, now: Instant) {
        if now.duration_since(self.window_start) > self.config.failure_timeout {
            self.window_start = now;
            self.requests = 0;
            self.failures = 0;
        }
    }

    fn rejected(&self) -> Open {
        Open {
            open: true,
            last_error: self.last_error.clone(),
        }
    }

    /// Whether a request at `now` would be admitted, without taking a
    /// permit: what routing uses to skip a provider whose breaker is open.
    pub fn check(&self, now: Instant) -> Result<(), Open> {
        match self.forced {
            Some(Force::Open) => return Err(self.rejected()),
            Some(Force::Closed) => return Ok(()),
            _ => {}
        }
        match self.state {
            BreakerState::Closed => Ok(()),
            BreakerState::Open => {
                let opened = self.opened_at.expect("open breaker has an opening time");
                if now.duration_since(opened) <= self.config.open_timeout {
                    Err(self.rejected())
                } else {
                    Ok(())
                }
            }
            BreakerState::HalfOpen => {
                let h = self.half_open.as_ref().expect("half-open state");
                let live = h
                    .running
                    .iter()
                    .filter(|(_, at)| now.duration_since(*at) < self.config.probe_timeout)
                    .count() as u64;
                if h.successes + live < h.permits {
                    Ok(())
                } else {
                    Err(self.rejected())
                }
            }
        }
    }

    /// Ask to run a request at `now`.
    pub fn admit(&mut self, now: Instant) -> Result<Ticket, Open> {
        match self.forced {
            Some(Force::Open) => return Err(self.rejected()),
            Some(Force::Closed) => return Ok(Ticket { probe: None }),
            _ => {}
        }
        match self.state {
            BreakerState::Open => {
                let opened = self.opened_at.expect("open breaker has an opening time");
                if now.duration_since(opened) <= self.config.open_timeout {
                    return Err(self.rejected());
                }
                let pct = self.config.half_open_threshold.max(0.0);
                let permits = ((self.requests as f64 * pct / 100.0).ceil() as u64).max(1);
                let id = self.next_probe;
                self.next_probe += 1;
                self.state = BreakerState::HalfOpen;
                self.half_open = Some(HalfOpen {
                    permits,
                    successes: 0,
                    running: vec![(id, now)],
                });
                Ok(Ticket { probe: Some(id) })
            }
            BreakerState::HalfOpen => {
                let timeout = self.config.probe_timeout;
                let h = self.half_open.as_mut().expect("half-open state");
                h.running
                    .retain(|(_, at)| now.duration_since(*at) < timeout);
                if h.successes + (h.running.len() as u64) < h.permits {
                    let id = self.next_probe;
                    self.next_probe += 1;
                    h.running.push((id, now));
                    Ok(Ticket { probe: Some(id) })
                } else {
                    Err(self.rejected())
                }
            }
            BreakerState::Closed => {
                self.roll_window(now);
                self.requests += 1;
                Ok(Ticket { probe: None })
            }
        }
    }

    /// Report that the request of `ticket` succeeded (or failed in a way
    /// that does not count).
    pub fn success(&mut self, ticket: Ticket) {
        if let (Some(id), Some(h)) = (ticket.probe, self.half_open.as_mut()) {
            let before = h.running.len();
            h.running.retain(|(p, _)| *p != id);
            if h.running.len() == before {
                return; // expired probe: its permit was already released
            }
            h.successes += 1;
            if h.successes >= h.permits {
                self.close();
            }
        }
    }

    /// Hand back `ticket` for a request that never reached the provider
    /// (the host refused to start it): neither a success nor a failure.
    pub fn release(&mut self, ticket: Ticket) {
        match (ticket.probe, self.half_open.as_mut()) {
            (Some(id), Some(h)) => h.running.retain(|(p, _)| *p != id),
            (None, _) if self.state == BreakerState::Closed => {
                self.requests = self.requests.saturating_sub(1);
            }
            _ => {}
        }
    }

    /// Report a counted failure of the request of `ticket` at `now`.
    pub fn failure(&mut self, ticket: Ticket, error: AttemptError, now: Instant) {
        match (self.state, ticket.probe) {
            (BreakerState::HalfOpen, Some(id)) => {
                let h = self.half_open.as_ref().expect("half-open state");
                if h.running.iter().any(|(p, _)| *p == id) {
                    self.open(error, now);
                }
            }
            (BreakerState::Closed, None) => {
                self.roll_window(now);
                self.failures += 1;
                let pct = self.failures as f64 * 100.0 / self.requests.max(1) as f64;
                if self.failures > u64::from(self.config.minimum_failure_count)
                    && pct > self.config.failure_threshold
                {
                    self.open(error, now);
                } else {
                    self.last_error = Some(error);
                }
            }
            // A report for a state the breaker has left (e.g. a closed-state
            // request finishing after the breaker opened) changes nothing.
            _ => {}
        }
    }

    /// The episode and probe allowance while half-open.
    pub(crate) fn allowance(&self) -> Option<(u64, u64)> {
        self.half_open.as_ref().map(|h| (self.episode, h.permits))
    }

    /// Take in a transition another replica made. An opening newer than
    /// what this breaker knows opens it (its open timeout counted from when
    /// the other replica opened); a close ends only the episode it names or
    /// an older one. Returns whether anything changed.
    pub(crate) fn apply_shared(&mut self, s: &SharedBreaker, now: Instant, wall_ms: u64) -> bool {
        if self.forced.is_some() {
            return false; // an operator decides until the force is released
        }
        if s.open {
            if self.state != BreakerState::Closed && self.episode >= s.episode {
                return false;
            }
            let ago = std::time::Duration::from_millis(wall_ms.saturating_sub(s.episode));
            self.state = BreakerState::Open;
            self.opened_at = Some(now.checked_sub(ago).unwrap_or(now));
            self.episode = s.episode;
            self.requests = s.requests;
            self.last_error.clone_from(&s.last_error);
            self.half_open = None;
            true
        } else if self.state != BreakerState::Closed && self.episode <= s.episode {
            self.close();
            true
        } else {
            false
        }
    }

    /// Apply an operator's force: open (rejects everything), closed
    /// (admits everything, counts nothing) or release (closed, a fresh
    /// window, its own judgement again).
    pub(crate) fn apply_force(&mut self, force: Force, now: Instant) {
        use Force;
        match force {
            Force::Open => {
                self.state = BreakerState::Open;
                self.opened_at = Some(now);
                self.half_open = None;
                self.last_error = Some(AttemptError::new(
                    crate::adapter::ErrorClass::Unavailable,
                    crate::adapter::FailureKind::Host,
                    "forced open by an operator",
                ));
                self.forced = Some(Force::Open);
            }
            Force::Closed => {
                self.close();
                self.forced = Some(Force::Closed);
            }
            Force::Release => {
                self.close();
                self.window_start = now;
                self.forced = None;
            }
        }
    }

    /// Close the half-open `episode` because enough probes passed across
    /// the cluster.
    pub(crate) fn close_episode(&mut self, episode: u64) -> bool {
        if self.state == BreakerState::HalfOpen && self.episode == episode {
            self.close();
            true
        } else {
            false
        }
    }

    fn open(&mut self, error: AttemptError, now: Instant) {
        self.state = BreakerState::Open;
        self.last_error = Some(error);
        self.opened_at = Some(now);
        self.half_open = None;
    }

    fn close(&mut self) {
        self.state = BreakerState::Closed;
        self.last_error = None;
        self.opened_at = None;
        self.half_open = None;
        self.requests = 0;
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapter::{ErrorClass, FailureKind};
    use crate::breaker::{BreakerConfig, BreakerSettings, ErrorClasses};
    use crate::breaker::{Breakers, Spec};
    use crate::clock::{Clock, ManualClock};
    use proptest::prelude::*;
    use std::time::Duration;

    fn err(msg: &str) -> AttemptError {
        AttemptError::new(ErrorClass::Unavailable, FailureKind::Provider, msg)
    }

    /// Run `total` requests of which the first `failing` fail.
    fn run(b: &mut Breaker, now: Instant, total: u32, failing: u32) {
        for i in 0..total {
            let t = b.admit(now).expect("closed breaker admits");
            if i < failing {
                b.failure(t, err(&format!("fail {i}")), now);
            } else {
                b.success(t);
            }
        }
    }

    /// Successes first, then failures, so the percentage is judged on the
    /// whole window.
    fn run_successes_first(b: &mut Breaker, now: Instant, total: u32, failing: u32) {
        for i in 0..total {
            let t = b.admit(now).expect("closed breaker admits");
            if i >= total - failing {
                b.failure(t, err(&format!("fail {i}")), now);
            } else {
                b.success(t);
            }
        }
    }

    #[test]
    fn exactly_fifty_percent_does_not_trip_but_eight_of_fifteen_does() {
        let clock = ManualClock::new();
        let mut b = Breaker::new(BreakerConfig::default(), clock.now());
        run_successes_first(&mut b, clock.now(), 20, 10);
        assert_eq!(b.state(), BreakerState::Closed);

        let mut b = Breaker::new(BreakerConfig::default(), clock.now());
        run_successes_first(&mut b, clock.now(), 15, 8);
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn failures_must_exceed_the_minimum_count() {
        let clock = ManualClock::new();
        let mut b = Breaker::new(BreakerConfig::default(), clock.now());
        run(&mut b, clock.now(), 5, 5); // 100 % but only 5 failures
        assert_eq!(b.state(), BreakerState::Closed);
        run(&mut b, clock.now(), 1, 1);
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn the_window_resets_after_failure_timeout() {
        let clock = ManualClock::new();
        let mut b = Breaker::new(BreakerConfig::default(), clock.now());
        run(&mut b, clock.now(), 5, 5);
        clock.advance(Duration::from_secs(61));
        run(&mut b, clock.now(), 5, 5);
        assert_eq!(
            b.state(),
            BreakerState::Closed,
            "old failures must not count"
        );
        assert_eq!(b.counts(), (5, 5));
    }

    #[test]
    fn open_rejects_with_the_last_error_then_half_opens_after_the_timeout() {
        let clock = ManualClock::new();
        let mut b = Breaker::new(BreakerConfig::default(), clock.now());
        run(&mut b, clock.now(), 6, 6);
        let rejected = b.admit(clock.now()).unwrap_err();
        assert!(rejected.open);
        assert_eq!(rejected.last_error.unwrap().message, "fail 5");
        clock.advance(Duration::from_secs(30));
        assert!(
            b.admit(clock.now()).is_err(),
            "still open at exactly the timeout"
        );
        clock.advance(Duration::from_millis(1));
        assert!(b.admit(clock.now()).is_ok());
        assert_eq!(b.state(), BreakerState::HalfOpen);
    }

    fn half_open_after_41_requests(clock: &ManualClock) -> (Breaker, Ticket) {
        let config = BreakerConfig {
            half_open_threshold: 10.0,
            ..BreakerConfig::default()
        };
        let mut b = Breaker::new(config, clock.now());
        run_successes_first(&mut b, clock.now(), 41, 21);
        assert_eq!(b.state(), BreakerState::Open);
        clock.advance(Duration::from_secs(31));
        let first = b.admit(clock.now()).unwrap();
        (b, first)
    }

    #[test]
    fn forty_one_requests_at_ten_percent_admit_five_probes_and_block_the_sixth() {
        let clock = ManualClock::new();
        let (mut b, first) = half_open_after_41_requests(&clock);
        let mut probes = vec![first];
        for _ in 0..4 {
            probes.push(b.admit(clock.now()).expect("probes 2..5 pass"));
        }
        assert!(b.admit(clock.now()).is_err(), "the 6th is blocked");
        // All five succeed: closed.
        for t in probes {
            b.success(t);
        }
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.admit(clock.now()).is_ok());
    }

    #[test]
    fn a_half_open_failure_reopens_with_that_error() {
        let clock = ManualClock::new();
        let (mut b, first) = half_open_after_41_requests(&clock);
        let second = b.admit(clock.now()).unwrap();
        b.success(first);
        b.failure(second, err("probe failed"), clock.now());
        assert_eq!(b.state(), BreakerState::Open);
        let rejected = b.admit(clock.now()).unwrap_err();
        assert_eq!(rejected.last_error.unwrap().message, "probe failed");
    }

    #[test]
    fn a_hung_probe_releases_its_permit_after_its_deadline() {
        let clock = ManualClock::new();
        let config = BreakerConfig::default(); // 5 % of a small window: 1 probe
        let mut b = Breaker::new(config, clock.now());
        run(&mut b, clock.now(), 6, 6);
        clock.advance(Duration::from_secs(31));
        let hung = b.admit(clock.now()).unwrap();
        assert!(b.admit(clock.now()).is_err(), "only one probe allowed");
        clock.advance(Duration::from_secs(10));
        let probe = b
            .admit(clock.now())
            .expect("the hung probe's permit was released");
        // The hung probe reporting late changes nothing.
        b.failure(hung, err("late"), clock.now());
        assert_eq!(b.state(), BreakerState::HalfOpen);
        b.success(probe);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn a_shared_opening_counts_from_when_it_opened_and_a_stale_close_ends_nothing() {
        use crate::breaker::SharedBreaker;
        let clock = ManualClock::new();
        let mut b = Breaker::new(BreakerConfig::default(), clock.now());
        let open = |episode| SharedBreaker {
            open: true,
            episode,
            open_timeout_ms: 30_000,
            requests: 40,
            last_error: Some(err("down")),
        };
        let close = |episode| SharedBreaker {
            open: false,
            ..open(episode)
        };
        // Opened elsewhere 20 s ago: 10 s of its 30 s left here.
        assert!(b.apply_shared(&open(1_000), clock.now(), 21_000));
        assert!(b.check(clock.now()).is_err());
        clock.advance(Duration::from_secs(11));
        assert!(
            b.check(clock.now()).is_ok(),
            "its open timeout ran from the opening"
        );
        let t = b.admit(clock.now()).unwrap();
        assert!(t.is_probe());
        assert_eq!(
            b.allowance(),
            Some((1_000, 2)),
            "5 % of the opener's 40 requests"
        );
        // A newer opening replaces it; a close of the older one is stale.
        assert!(b.apply_shared(&open(2_000), clock.now(), 22_000));
        assert!(!b.apply_shared(&close(1_000), clock.now(), 22_000));
        assert_eq!(b.state(), BreakerState::Open);
        assert!(
            !b.apply_shared(&open(1_500), clock.now(), 22_000),
            "older opening"
        );
        assert!(b.apply_shared(&close(2_000), clock.now(), 22_000));
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn keys_are_isolated_and_the_classifier_decides() {
        let clock = ManualClock::new();
        let breakers = Breakers::with_config(BreakerConfig::default());
        for _ in 0..6 {
            let t = breakers
                .admit("stripe/charge", Spec::default(), clock.now())
                .unwrap();
            breakers.record("stripe/charge", t, Err(&err("down")), clock.now());
        }
        assert_eq!(breakers.state("stripe/charge"), BreakerState::Open);
        assert_eq!(breakers.state("stripe/refund"), BreakerState::Closed);
        assert!(
            breakers
                .admit("stripe/refund", Spec::default(), clock.now())
                .is_ok()
        );

        // Rejected inputs do not count with the default classifier.
        let rejected =
            AttemptError::new(ErrorClass::Rejected, FailureKind::Provider, "card declined");
        for _ in 0..20 {
            let t = breakers
                .admit("twilio/sms", Spec::default(), clock.now())
                .unwrap();
            breakers.record("twilio/sms", t, Err(&rejected), clock.now());
        }
        assert_eq!(breakers.state("twilio/sms"), BreakerState::Closed);

        // A classifier that never counts never opens.
        let never = Breakers::new(BreakerConfig::default(), Box::new(|_| false));
        for _ in 0..100 {
            let t = never.admit("k", Spec::default(), clock.now()).unwrap();
            never.record("k", t, Err(&err("down")), clock.now());
        }
        assert_eq!(never.state("k"), BreakerState::Closed);
    }

    #[test]
    fn an_options_settings_and_system_errors_apply_to_its_breaker() {
        let clock = ManualClock::new();
        let breakers = Breakers::with_config(BreakerConfig::default());
        let internal = AttemptError::new(ErrorClass::Internal, FailureKind::Provider, "401");
        // Internal does not count by default ...
        for _ in 0..10 {
            let t = breakers.admit("a", Spec::default(), clock.now()).unwrap();
            breakers.record("a", t, Err(&internal), clock.now());
        }
        assert_eq!(breakers.state("a"), BreakerState::Closed);
        // ... but does for an option listing it, which also opens sooner.
        let strict = BreakerSettings {
            minimum_failure_count: Some(1),
            failure_threshold: Some(20.0),
            system_errors: Some(ErrorClasses::of(&[ErrorClass::Internal])),
            ..BreakerSettings::default()
        };
        let spec = Spec {
            settings: Some(&strict),
            origin: None,
        };
        for _ in 0..2 {
            let t = breakers.admit("b", spec.clone(), clock.now()).unwrap();
            breakers.record("b", t, Err(&internal), clock.now());
        }
        assert_eq!(breakers.state("b"), BreakerState::Open);
        // Unavailable no longer counts under that list.
        let loose = BreakerSettings {
            system_errors: Some(ErrorClasses::of(&[ErrorClass::Timeout])),
            ..BreakerSettings::default()
        };
        for _ in 0..20 {
            let spec = Spec {
                settings: Some(&loose),
                origin: None,
            };
            let t = breakers.admit("c", spec, clock.now()).unwrap();
            breakers.record("c", t, Err(&err("down")), clock.now());
        }
        assert_eq!(breakers.state("c"), BreakerState::Closed);
        // New settings apply in place: the window's counts are kept (2
        // counted failures of 12 requests is under 20 %; a fresh window
        // would have opened at 2 of 2).
        for _ in 0..2 {
            let t = breakers.admit("a", spec.clone(), clock.now()).unwrap();
            breakers.record("a", t, Err(&internal), clock.now());
        }
        let snap = breakers.snapshot("a");
        assert_eq!(
            (snap.state, snap.requests, snap.failures),
            (BreakerState::Closed, 12, 2)
        );
    }

    #[test]
    fn settings_are_bounded_and_overloaded_is_never_a_system_error() {
        let over = BreakerSettings {
            open_timeout: Some(0),
            ..BreakerSettings::default()
        };
        let e = over.validate("fallbacks.pay.breaker").unwrap_err();
        assert_eq!(e.path, "fallbacks.pay.breaker.open_timeout");
        let host = BreakerSettings {
            system_errors: Some(ErrorClasses::of(&[ErrorClass::Overloaded])),
            ..BreakerSettings::default()
        };
        let e = host.validate("x.breaker").unwrap_err();
        assert_eq!(e.path, "x.breaker.system_errors");
        let json = serde_json::to_value(BreakerSettings {
            system_errors: Some(ErrorClasses::of(&[
                ErrorClass::Timeout,
                ErrorClass::Rejected,
            ])),
            ..BreakerSettings::default()
        })
        .unwrap();
        assert_eq!(
            json,
            serde_json::json!({"system_errors": ["rejected", "timeout"]})
        );
    }

    #[derive(Debug, Clone)]
    enum Op {
        Request { fail: bool, report: bool },
        Advance(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (any::<bool>(), prop::bool::weighted(0.9)).prop_map(|(fail, report)| Op::Request { fail, report }),
            1 => (0u64..40_000).prop_map(Op::Advance),
        ]
    }

    proptest! {
        /// In half-open, probes outstanding plus successes never exceed the
        /// allowance, whatever the sequence of requests, reports and time.
        #[test]
        fn half_open_never_admits_more_than_its_allowance(ops in prop::collection::vec(op(), 1..400)) {
            let clock = ManualClock::new();
            let config = BreakerConfig { half_open_threshold: 10.0, ..BreakerConfig::default() };
            let mut b = Breaker::new(config, clock.now());
            let mut live: Vec<(Ticket, bool)> = Vec::new();
            for op in ops {
                match op {
                    Op::Advance(ms) => clock.advance(Duration::from_millis(ms)),
                    Op::Request { fail, report } => {
                        if let Ok(t) = b.admit(clock.now())
                            && report
                        {
                            live.push((t, fail));
                        }
                        // Report the oldest pending outcome.
                        if live.len() > 3 {
                            let (t, fail) = live.remove(0);
                            if fail { b.failure(t, err("x"), clock.now()) } else { b.success(t) }
                        }
                    }
                }
                if let Some(h) = &b.half_open {
                    prop_assert!(h.successes + h.running.len() as u64 <= h.permits);
                    prop_assert!(h.permits >= 1);
                }
            }
        }
    }
}
