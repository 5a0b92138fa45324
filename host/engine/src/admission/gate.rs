//! The gate itself: in-flight slots, the token bucket, the cooldown and
//! the fair FIFO queue, behind one lock.

use super::config::*;
use crate::clock::Clock;
use crate::locks::Recover;
use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

struct Waiter {
    id: u64,
    notify: Arc<Notify>,
}

struct State {
    config: AdmissionConfig,
    in_flight: u32,
    queue: VecDeque<Waiter>,
    next_id: u64,
    tokens: f64,
    refilled: Instant,
    cooldown_until: Option<Instant>,
    admitted: u64,
    overloaded: u64,
}

/// What keeps the head of the queue from starting.
enum Blocked {
    /// A slot must free up (woken by a release).
    Full,
    /// A token or the end of a cooldown, this far away.
    For(Duration, OverloadReason),
}

impl State {
    fn refill(&mut self, now: Instant) {
        if let Some(rate) = self.config.rate_per_sec {
            let gained = now.saturating_duration_since(self.refilled).as_secs_f64() * rate;
            self.tokens = (self.tokens + gained).min(self.config.capacity());
        }
        self.refilled = now;
    }

    fn blocked(&self, now: Instant) -> Option<Blocked> {
        if let Some(until) = self.cooldown_until
            && until > now
        {
            let remaining = until - now;
            return Some(Blocked::For(
                remaining,
                OverloadReason::Cooldown {
                    remaining_ms: remaining.as_millis() as u64,
                },
            ));
        }
        if self.in_flight >= self.config.max_in_flight {
            return Some(Blocked::Full);
        }
        if let Some(rate) = self.config.rate_per_sec
            && self.tokens < 1.0
        {
            return Some(Blocked::For(
                Duration::from_secs_f64((1.0 - self.tokens) / rate),
                OverloadReason::RateLimit { rate_per_sec: rate },
            ));
        }
        None
    }

    fn start(&mut self) {
        self.in_flight += 1;
        if self.config.rate_per_sec.is_some() {
            self.tokens -= 1.0;
        }
        self.admitted += 1;
    }

    fn wake_head(&self) {
        if let Some(w) = self.queue.front() {
            w.notify.notify_one();
        }
    }

    /// When an attempt queued behind `ahead` others could start at the
    /// earliest, ignoring slots (which free up at unknown times).
    fn earliest_start(&self, now: Instant, ahead: usize) -> Option<(Instant, OverloadReason)> {
        let mut at: Option<(Instant, OverloadReason)> = None;
        if let Some(until) = self.cooldown_until
            && until > now
        {
            at = Some((
                until,
                OverloadReason::Cooldown {
                    remaining_ms: (until - now).as_millis() as u64,
                },
            ));
        }
        if let Some(rate) = self.config.rate_per_sec {
            let needed = (ahead as f64 + 1.0 - self.tokens).max(0.0);
            let t = now + Duration::from_secs_f64(needed / rate);
            if at.as_ref().is_none_or(|(a, _)| t > *a) {
                at = Some((t, OverloadReason::RateLimit { rate_per_sec: rate }));
            }
        }
        at
    }

    fn snapshot(&self, now: Instant) -> AdmissionSnapshot {
        AdmissionSnapshot {
            in_flight: self.in_flight,
            queued: self.queue.len() as u32,
            max_in_flight: self.config.max_in_flight,
            max_queue: self.config.max_queue,
            tokens: self.config.rate_per_sec.map(|_| self.tokens),
            cooldown_remaining_ms: self
                .cooldown_until
                .filter(|u| *u > now)
                .map(|u| (u - now).as_millis() as u64),
            admitted: self.admitted,
            overloaded: self.overloaded,
        }
    }
}

/// The admission gate of one app in one env.
pub struct Gate {
    state: Mutex<State>,
}

impl fmt::Debug for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gate").finish_non_exhaustive()
    }
}

/// How long an attempt may wait, and whether it may wait at all.
#[derive(Debug, Clone, Copy)]
pub enum Wait {
    /// Start now or not at all (spillover: another option can serve).
    Never,
    /// Wait until this instant at the latest.
    Until(Instant),
}

/// A started attempt's slot; the slot frees when it drops.
#[must_use = "the slot frees when the permit drops"]
pub struct Permit {
    gate: Arc<Gate>,
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit").finish_non_exhaustive()
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut st = self.gate.lock();
        st.in_flight = st.in_flight.saturating_sub(1);
        st.wake_head();
    }
}

/// Takes a waiter out of the queue if its future is dropped (the run was
/// cancelled) so the queue never holds a ghost.
struct QueueSlot<'a> {
    gate: &'a Gate,
    id: u64,
    done: bool,
}

impl Drop for QueueSlot<'_> {
    fn drop(&mut self) {
        if !self.done {
            let mut st = self.gate.lock();
            let was_head = st.queue.front().is_some_and(|w| w.id == self.id);
            st.queue.retain(|w| w.id != self.id);
            if was_head {
                st.wake_head();
            }
        }
    }
}

impl Gate {
    /// A gate with `config`, a full bucket, at `now`.
    pub fn new(config: AdmissionConfig, now: Instant) -> Self {
        Self {
            state: Mutex::new(State {
                config,
                in_flight: 0,
                queue: VecDeque::new(),
                next_id: 0,
                tokens: config.capacity(),
                refilled: now,
                cooldown_until: None,
                admitted: 0,
                overloaded: 0,
            }),
        }
    }

    // A panic while the lock is held cannot leave the counters torn (every
    // update is a single step), so a poisoned lock is still good state.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.locked()
    }

    /// Change the settings; waiters are re-examined at once.
    pub fn reconfigure(&self, config: AdmissionConfig) {
        let mut st = self.lock();
        st.config = config;
        st.tokens = st.tokens.min(config.capacity());
        st.wake_head();
    }

    /// A provider asked to pause until `now + after` (capped by
    /// `max_cooldown_ms`). A longer pause already running is kept.
    pub fn cool_down(&self, now: Instant, after: Duration) {
        let mut st = self.lock();
        let cap = Duration::from_millis(st.config.max_cooldown_ms);
        if cap.is_zero() || after.is_zero() {
            return;
        }
        let until = now + after.min(cap);
        if st.cooldown_until.is_none_or(|u| u < until) {
            st.cooldown_until = Some(until);
        }
    }

    /// An operator's rule pauses the app until `now + pause` (not capped:
    /// the rule's `cooldown_ms` is the operator's own bound). A longer
    /// pause already running is kept.
    pub fn pause(&self, now: Instant, pause: Duration) {
        let mut st = self.lock();
        let until = now + pause;
        if st.cooldown_until.is_none_or(|u| u < until) {
            st.cooldown_until = Some(until);
        }
    }

    /// State now.
    pub fn snapshot(&self, now: Instant) -> AdmissionSnapshot {
        let mut st = self.lock();
        st.refill(now);
        st.snapshot(now)
    }

    fn refuse(st: &mut State, reason: OverloadReason, retry_after: Duration) -> Overload {
        st.overloaded += 1;
        Overload {
            reason,
            retry_after,
        }
    }

    /// Admit one attempt: start now, or wait in the queue per `wait`.
    pub async fn admit(
        self: &Arc<Self>,
        clock: &dyn Clock,
        wait: Wait,
    ) -> Result<Permit, Overload> {
        let started = clock.now();
        let notify = Arc::new(Notify::new());
        let (id, until) = {
            let mut st = self.lock();
            st.refill(started);
            let blocked = if st.queue.is_empty() {
                match st.blocked(started) {
                    None => {
                        st.start();
                        return Ok(Permit { gate: self.clone() });
                    }
                    Some(b) => Some(b),
                }
            } else {
                None
            };
            let until = match wait {
                Wait::Until(t) if st.config.max_queue > 0 => st
                    .config
                    .queue_timeout_ms
                    .map_or(t, |ms| t.min(started + Duration::from_millis(ms))),
                _ => {
                    // Not waiting (spillover, or no queue): say why it
                    // could not start.
                    let (reason, after) = match blocked {
                        Some(Blocked::For(d, r)) => (r, d),
                        _ => (
                            OverloadReason::InFlight {
                                limit: st.config.max_in_flight,
                                waited_ms: 0,
                            },
                            Duration::from_secs(1),
                        ),
                    };
                    return Err(Self::refuse(&mut st, reason, after));
                }
            };
            if st.queue.len() >= st.config.max_queue as usize {
                let queued = st.queue.len() as u32;
                return Err(Self::refuse(
                    &mut st,
                    OverloadReason::QueueFull { queued },
                    Duration::from_secs(1),
                ));
            }
            if let Some((at, reason)) = st.earliest_start(started, st.queue.len())
                && at > until
            {
                let after = at - started;
                return Err(Self::refuse(&mut st, reason, after));
            }
            let id = st.next_id;
            st.next_id += 1;
            st.queue.push_back(Waiter {
                id,
                notify: notify.clone(),
            });
            (id, until)
        };
        let mut slot = QueueSlot {
            gate: self,
            id,
            done: false,
        };
        let mut hint: Option<Duration> = None;
        loop {
            let now = clock.now();
            {
                let mut st = self.lock();
                st.refill(now);
                let head = st.queue.front().is_some_and(|w| w.id == id);
                if head {
                    match st.blocked(now) {
                        None => {
                            st.queue.pop_front();
                            st.start();
                            st.wake_head();
                            slot.done = true;
                            return Ok(Permit { gate: self.clone() });
                        }
                        Some(Blocked::Full) => hint = None,
                        Some(Blocked::For(d, _)) => hint = Some(d),
                    }
                }
                if now >= until {
                    let was_head = head;
                    st.queue.retain(|w| w.id != id);
                    if was_head {
                        st.wake_head();
                    }
                    slot.done = true;
                    let reason = match st.blocked(now) {
                        Some(Blocked::For(_, r)) if head => r,
                        _ => OverloadReason::InFlight {
                            limit: st.config.max_in_flight,
                            waited_ms: now.saturating_duration_since(started).as_millis() as u64,
                        },
                    };
                    let after = hint.unwrap_or(Duration::from_secs(1));
                    return Err(Self::refuse(&mut st, reason, after));
                }
            }
            let left = until.saturating_duration_since(now);
            let nap = hint.map_or(left, |h| h.min(left));
            tokio::select! {
                _ = notify.notified() => {}
                _ = clock.sleep(nap) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use proptest::prelude::*;

    fn config(in_flight: u32, queue: u32) -> AdmissionConfig {
        AdmissionConfig {
            max_in_flight: in_flight,
            max_queue: queue,
            ..AdmissionConfig::default()
        }
    }

    #[test]
    fn bounds_are_checked_with_the_field_path() {
        let at = "products.p.apps.a.admission";
        let cases = [
            (
                AdmissionConfig {
                    max_in_flight: 0,
                    ..Default::default()
                },
                "max_in_flight",
            ),
            (
                AdmissionConfig {
                    max_queue: u32::MAX,
                    ..Default::default()
                },
                "max_queue",
            ),
            (
                AdmissionConfig {
                    queue_timeout_ms: Some(u64::MAX),
                    ..Default::default()
                },
                "queue_timeout_ms",
            ),
            (
                AdmissionConfig {
                    rate_per_sec: Some(f64::NAN),
                    ..Default::default()
                },
                "rate_per_sec",
            ),
            (
                AdmissionConfig {
                    burst: Some(5),
                    ..Default::default()
                },
                "burst",
            ),
            (
                AdmissionConfig {
                    max_cooldown_ms: u64::MAX,
                    ..Default::default()
                },
                "max_cooldown_ms",
            ),
        ];
        for (c, field) in cases {
            let e = c.validate(at).unwrap_err();
            assert_eq!(e.path, format!("{at}.{field}"), "{e}");
        }
        AdmissionConfig::default().validate(at).unwrap();
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once_and_says_so() {
        let clock = ManualClock::parked();
        let gate = Arc::new(Gate::new(config(1, 1), clock.now()));
        let held = gate.admit(&clock, Wait::Never).await.unwrap();
        let until = clock.now() + Duration::from_secs(5);
        let g = gate.clone();
        let clock2 = Arc::new(clock);
        let c = clock2.clone();
        let waiting = tokio::spawn(async move { g.admit(&*c, Wait::Until(until)).await });
        while gate.snapshot(clock2.now()).queued == 0 {
            tokio::task::yield_now().await;
        }
        let e = gate.admit(&*clock2, Wait::Until(until)).await.unwrap_err();
        assert_eq!(e.reason, OverloadReason::QueueFull { queued: 1 });
        drop(held);
        let second = waiting
            .await
            .unwrap()
            .expect("the waiter gets the freed slot");
        let snap = gate.snapshot(clock2.now());
        assert_eq!((snap.in_flight, snap.queued, snap.overloaded), (1, 0, 1));
        drop(second);
    }

    #[tokio::test]
    async fn a_waiter_gives_up_at_its_deadline_and_leaves_the_queue() {
        let clock = Arc::new(ManualClock::parked());
        let gate = Arc::new(Gate::new(config(1, 10), clock.now()));
        let _held = gate.admit(&*clock, Wait::Never).await.unwrap();
        let until = clock.now() + Duration::from_millis(300);
        let (g, c) = (gate.clone(), clock.clone());
        let waiting = tokio::spawn(async move { g.admit(&*c, Wait::Until(until)).await });
        while gate.snapshot(clock.now()).queued == 0 {
            tokio::task::yield_now().await;
        }
        clock.advance(Duration::from_millis(299));
        tokio::task::yield_now().await;
        assert_eq!(gate.snapshot(clock.now()).queued, 1, "still waiting");
        clock.advance(Duration::from_millis(1));
        let e = waiting.await.unwrap().unwrap_err();
        assert!(
            matches!(
                e.reason,
                OverloadReason::InFlight {
                    limit: 1,
                    waited_ms: 300
                }
            ),
            "{e}"
        );
        assert_eq!(gate.snapshot(clock.now()).queued, 0);
    }

    #[tokio::test]
    async fn waiters_start_in_arrival_order() {
        let clock = Arc::new(ManualClock::parked());
        let gate = Arc::new(Gate::new(config(1, 100), clock.now()));
        let held = gate.admit(&*clock, Wait::Never).await.unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let until = clock.now() + Duration::from_secs(60);
        let mut tasks = Vec::new();
        for i in 0..20 {
            let (g, c, o) = (gate.clone(), clock.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let p = g.admit(&*c, Wait::Until(until)).await.unwrap();
                o.lock().unwrap().push(i);
                tokio::task::yield_now().await;
                drop(p);
            }));
            while gate.snapshot(clock.now()).queued as usize != i + 1 {
                tokio::task::yield_now().await;
            }
        }
        drop(held);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), (0..20).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn the_rate_limit_spreads_starts_as_the_bucket_says() {
        // 10/s with a burst of 2: two start at once, then one every 100 ms.
        let clock = ManualClock::new(); // sleeping advances it: no real time
        let gate = Arc::new(Gate::new(
            AdmissionConfig {
                rate_per_sec: Some(10.0),
                burst: Some(2),
                ..AdmissionConfig::default()
            },
            clock.now(),
        ));
        let t0 = clock.now();
        let mut starts = Vec::new();
        for _ in 0..12 {
            let p = gate
                .admit(&clock, Wait::Until(clock.now() + Duration::from_secs(10)))
                .await
                .unwrap();
            starts.push((clock.now() - t0).as_millis());
            drop(p);
        }
        assert_eq!(
            starts,
            vec![0, 0, 100, 200, 300, 400, 500, 600, 700, 800, 900, 1000]
        );
    }

    #[tokio::test]
    async fn a_token_further_than_the_deadline_is_refused_without_waiting() {
        let clock = ManualClock::new();
        let gate = Arc::new(Gate::new(
            AdmissionConfig {
                rate_per_sec: Some(1.0),
                ..AdmissionConfig::default()
            },
            clock.now(),
        ));
        let _p = gate.admit(&clock, Wait::Never).await.unwrap();
        let before = clock.now();
        let e = gate
            .admit(&clock, Wait::Until(before + Duration::from_millis(500)))
            .await
            .unwrap_err();
        assert_eq!(clock.now(), before, "it did not wait");
        assert!(matches!(e.reason, OverloadReason::RateLimit { .. }), "{e}");
        assert_eq!(e.retry_after, Duration::from_secs(1));
    }

    #[tokio::test]
    async fn a_cooldown_pauses_admission_until_it_ends() {
        let clock = ManualClock::new();
        let gate = Arc::new(Gate::new(AdmissionConfig::default(), clock.now()));
        gate.cool_down(clock.now(), Duration::from_secs(2));
        let before = clock.now();
        // Not enough time left: refused at once, with the pause's end.
        let e = gate
            .admit(&clock, Wait::Until(before + Duration::from_secs(1)))
            .await
            .unwrap_err();
        assert_eq!(
            e.reason,
            OverloadReason::Cooldown {
                remaining_ms: 2_000
            }
        );
        assert_eq!(e.retry_after, Duration::from_secs(2));
        // Enough time: it waits out the pause, then starts.
        let _p = gate
            .admit(&clock, Wait::Until(before + Duration::from_secs(5)))
            .await
            .unwrap();
        assert_eq!(clock.now() - before, Duration::from_secs(2));
        // A cooldown never exceeds max_cooldown_ms.
        gate.cool_down(clock.now(), Duration::from_secs(3_600));
        assert_eq!(
            gate.snapshot(clock.now()).cooldown_remaining_ms,
            Some(60_000)
        );
    }

    #[tokio::test]
    async fn a_cancelled_waiter_leaves_no_ghost_in_the_queue() {
        let clock = Arc::new(ManualClock::parked());
        let gate = Arc::new(Gate::new(config(1, 10), clock.now()));
        let held = gate.admit(&*clock, Wait::Never).await.unwrap();
        let until = clock.now() + Duration::from_secs(60);
        let (g, c) = (gate.clone(), clock.clone());
        let waiting = tokio::spawn(async move { g.admit(&*c, Wait::Until(until)).await });
        while gate.snapshot(clock.now()).queued == 0 {
            tokio::task::yield_now().await;
        }
        waiting.abort();
        let _ = waiting.await;
        assert_eq!(gate.snapshot(clock.now()).queued, 0);
        drop(held);
        let _p = gate
            .admit(&*clock, Wait::Never)
            .await
            .expect("slot is free");
    }

    #[derive(Debug, Clone)]
    enum Op {
        Arrive { wait_ms: u64 },
        Finish(usize),
        Advance(u64),
    }

    proptest! {
        /// Under random arrivals, completions and time, attempts in flight
        /// never exceed the limit, the queue never exceeds its bound, and
        /// every arrival either starts, waits, or is refused with a reason.
        #[test]
        fn in_flight_never_exceeds_the_limit(
            limit in 1u32..6,
            queue in 0u32..6,
            ops in prop::collection::vec(prop_oneof![
                4 => (0u64..400).prop_map(|wait_ms| Op::Arrive { wait_ms }),
                3 => (0usize..16).prop_map(Op::Finish),
                1 => (1u64..200).prop_map(Op::Advance),
            ], 1..120),
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let clock = Arc::new(ManualClock::parked());
                let gate = Arc::new(Gate::new(config(limit, queue), clock.now()));
                let running = Arc::new(Mutex::new(Vec::<Permit>::new()));
                let peak = Arc::new(Mutex::new(0usize));
                let mut waiters = Vec::new();
                for op in ops {
                    match op {
                        Op::Arrive { wait_ms } => {
                            let (g, c, r, pk) = (gate.clone(), clock.clone(), running.clone(), peak.clone());
                            let until = clock.now() + Duration::from_millis(wait_ms);
                            waiters.push(tokio::spawn(async move {
                                if let Ok(p) = g.admit(&*c, Wait::Until(until)).await {
                                    let mut r = r.lock().unwrap();
                                    r.push(p);
                                    let mut pk = pk.lock().unwrap();
                                    *pk = (*pk).max(r.len());
                                }
                            }));
                        }
                        Op::Finish(i) => {
                            let mut r = running.lock().unwrap();
                            if !r.is_empty() {
                                let i = i % r.len();
                                drop(r.remove(i));
                            }
                        }
                        Op::Advance(ms) => clock.advance(Duration::from_millis(ms)),
                    }
                    for _ in 0..4 {
                        tokio::task::yield_now().await;
                    }
                    let snap = gate.snapshot(clock.now());
                    assert!(snap.in_flight <= limit, "{snap:?}");
                    assert!(snap.queued <= queue, "{snap:?}");
                    assert_eq!(snap.in_flight as usize, running.lock().unwrap().len());
                }
                assert!(*peak.lock().unwrap() <= limit as usize);
                running.lock().unwrap().clear();
                clock.advance(Duration::from_secs(10));
                for w in waiters {
                    w.await.unwrap();
                }
            });
        }
    }
}
