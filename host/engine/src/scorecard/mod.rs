//! Scorecards: how each option has been doing lately, from the outcomes of
//! its attempts. One per option (the same key as its default breaker):
//! successes and provider failures, latency percentiles from a histogram
//! (not an average), attempts in flight, and outcomes by error class, over
//! a sliding window of [`WINDOW_MS`] in [`BUCKET_MS`] slots.
//!
//! Only what the provider caused counts towards the success rate: an
//! attempt the host did not start or could not finish for its own limits
//! (`overloaded`) is not recorded at all, and `rejected` is the caller's
//! (counted by class and in latency, not as a failure).

mod histogram;
mod shared;

pub use shared::{MAX_SHARED_SCORECARDS, SharedScorecard, SharedSlot};

pub use histogram::Histogram as LatencyHistogram;

use crate::adapter::{AttemptError, ErrorClass, FailureKind};
use crate::locks::Recover;
use histogram::Histogram;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How far back a scorecard looks, ms.
pub const WINDOW_MS: u64 = 300_000;
/// The width of one slot of the window, ms.
pub const BUCKET_MS: u64 = 10_000;
const SLOTS: usize = (WINDOW_MS / BUCKET_MS) as usize;
/// Most scorecards kept (options keyed by a `breaker_key` template share
/// their option's scorecard, so this bounds options, not input); past it
/// the least recently used is forgotten.
pub const MAX_SCORECARDS: usize = 10_000;

/// One slot of the window.
#[derive(Debug, Clone, Default)]
struct Slot {
    /// Which slot of time it holds (`ms / BUCKET_MS`); 0: empty.
    index: u64,
    ok: u64,
    failed: u64,
    classes: [u64; ErrorClass::ALL.len() + 1],
    latency: Histogram,
}

/// How an attempt ended, as a scorecard counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mark {
    /// It served.
    Ok,
    /// The provider failed it (its class).
    Failed(ErrorClass),
    /// The caller's (rejected): not a failure of the provider.
    Caller(ErrorClass),
}

impl Mark {
    /// The mark of an attempt's result; `None` for the host's own limits.
    pub(crate) fn of(result: Result<(), &AttemptError>) -> Option<Mark> {
        match result {
            Ok(()) => Some(Mark::Ok),
            Err(e) if e.class == ErrorClass::Overloaded || e.kind == FailureKind::Overload => None,
            Err(e) if e.class == ErrorClass::Rejected => Some(Mark::Caller(e.class)),
            Err(e) => Some(Mark::Failed(e.class)),
        }
    }
}

fn class_slot(c: ErrorClass) -> usize {
    ErrorClass::ALL
        .iter()
        .position(|x| *x == c)
        .unwrap_or(ErrorClass::ALL.len())
}

/// One option's record.
#[derive(Debug)]
pub(crate) struct Scorecard {
    slots: Mutex<Card>,
    in_flight: AtomicU64,
    used_ms: AtomicU64,
}

/// What one lock guards: the window's slots and the elimination record.
#[derive(Debug)]
struct Card {
    slots: Vec<Slot>,
    recent: Recent,
    /// The other replicas' slots of this scorecard, on this replica's
    /// clock (cluster mode; replaced at each sync).
    remote: Vec<Slot>,
    /// Their attempts in flight.
    remote_in_flight: u64,
    /// How many other replicas shared it.
    remote_replicas: u32,
}

impl Card {
    /// This replica's slots and the other replicas'.
    fn all(&self) -> impl Iterator<Item = &Slot> {
        self.slots.iter().chain(self.remote.iter())
    }
}

impl std::ops::Deref for Card {
    type Target = Vec<Slot>;
    fn deref(&self) -> &Vec<Slot> {
        &self.slots
    }
}

impl std::ops::DerefMut for Card {
    fn deref_mut(&mut self) -> &mut Vec<Slot> {
        &mut self.slots
    }
}

/// The last outcomes the provider caused, newest in bit 0, and its
/// ejections (the `elimination` strategy's record).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Recent {
    /// 1: served, 0: failed; newest in bit 0.
    pub bits: u128,
    /// How many of `bits` hold outcomes (at most 128).
    pub len: u32,
    /// When the newest was recorded, ms.
    pub last_ms: u64,
    /// Ejected until then, ms (0: never ejected).
    pub ejected_until_ms: u64,
    /// Ejections in a row (each one longer).
    pub ejections: u32,
}

impl Recent {
    /// (successes, outcomes) among the last `n`, when it has `n` that are
    /// newer than `window_ms`.
    pub(crate) fn last(&self, n: u32, now_ms: u64, window_ms: u64) -> Option<(u32, u32)> {
        let n = n.min(128);
        if n == 0 || self.len < n || now_ms.saturating_sub(self.last_ms) > window_ms {
            return None;
        }
        let mask = if n == 128 {
            u128::MAX
        } else {
            (1u128 << n) - 1
        };
        Some(((self.bits & mask).count_ones(), n))
    }
}

impl Scorecard {
    fn new() -> Self {
        Self {
            slots: Mutex::new(Card {
                slots: vec![Slot::default(); SLOTS],
                recent: Recent::default(),
                remote: Vec::new(),
                remote_in_flight: 0,
                remote_replicas: 0,
            }),
            in_flight: AtomicU64::new(0),
            used_ms: AtomicU64::new(0),
        }
    }

    /// Count an attempt that ended at `now_ms` after `took`.
    fn record(&self, now_ms: u64, mark: Mark, took: Duration) {
        let index = now_ms / BUCKET_MS + 1;
        let mut slots = self.slots.locked();
        let slot = &mut slots[(index % SLOTS as u64) as usize];
        if slot.index != index {
            *slot = Slot {
                index,
                ..Slot::default()
            };
        }
        match mark {
            Mark::Ok | Mark::Failed(_) => {
                let r = &mut slots.recent;
                r.bits = (r.bits << 1) | u128::from(mark == Mark::Ok);
                r.len = (r.len + 1).min(128);
                r.last_ms = r.last_ms.max(now_ms);
            }
            Mark::Caller(_) => {}
        }
        let slot = &mut slots[(index % SLOTS as u64) as usize];
        match mark {
            Mark::Ok => slot.ok = slot.ok.saturating_add(1),
            Mark::Failed(c) => {
                slot.failed = slot.failed.saturating_add(1);
                slot.classes[class_slot(c)] = slot.classes[class_slot(c)].saturating_add(1);
            }
            Mark::Caller(c) => {
                slot.classes[class_slot(c)] = slot.classes[class_slot(c)].saturating_add(1);
            }
        }
        slot.latency
            .record(u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
    }

    /// What the adaptive strategies read, in one lock: outcomes over the
    /// last `window_ms` and over the whole window, with the latency of
    /// each when `latency` is asked for.
    fn view(&self, now_ms: u64, window_ms: u64, latency: bool) -> View {
        let newest = now_ms / BUCKET_MS + 1;
        let slots_back = window_ms.div_ceil(BUCKET_MS).clamp(1, SLOTS as u64);
        let oldest = newest.saturating_sub(slots_back - 1);
        let oldest_all = newest.saturating_sub(SLOTS as u64 - 1);
        let card = self.slots.locked();
        let mut v = View {
            recent: card.recent,
            in_flight: self
                .in_flight
                .load(Ordering::Relaxed)
                .saturating_add(card.remote_in_flight),
            ..View::default()
        };
        let (mut recent_h, mut longer_h) = (Histogram::default(), Histogram::default());
        for s in card
            .all()
            .filter(|s| s.index >= oldest_all && s.index <= newest)
        {
            v.longer.0 += s.ok;
            v.longer.1 += s.ok + s.failed;
            if latency {
                longer_h.merge(&s.latency);
            }
            if s.index >= oldest {
                v.outcomes.0 += s.ok;
                v.outcomes.1 += s.ok + s.failed;
                if latency {
                    recent_h.merge(&s.latency);
                }
            }
        }
        drop(card);
        if latency {
            v.p95_ms = (recent_h.total(), recent_h.quantile_ms(0.95));
            v.p99_ms = recent_h.quantile_ms(0.99);
            v.longer_p95_ms = (longer_h.total(), longer_h.quantile_ms(0.95));
        }
        v
    }

    fn snapshot(&self, now_ms: u64) -> ScorecardSnapshot {
        let newest = now_ms / BUCKET_MS + 1;
        let oldest = newest.saturating_sub(SLOTS as u64 - 1);
        let slots = self.slots.locked();
        let (mut ok, mut failed) = (0u64, 0u64);
        let mut classes = [0u64; ErrorClass::ALL.len() + 1];
        let mut latency = Histogram::default();
        let (remote_in_flight, replicas) = (slots.remote_in_flight, slots.remote_replicas + 1);
        for s in slots
            .all()
            .filter(|s| s.index >= oldest && s.index <= newest)
        {
            ok += s.ok;
            failed += s.failed;
            for (a, b) in classes.iter_mut().zip(s.classes.iter()) {
                *a += b;
            }
            latency.merge(&s.latency);
        }
        drop(slots);
        let samples = ok + failed;
        ScorecardSnapshot {
            window_ms: WINDOW_MS,
            samples,
            ok,
            failed,
            success_rate: (samples > 0).then(|| ok as f64 / samples as f64),
            timed: latency.total(),
            p50_ms: latency.quantile_ms(0.50),
            p95_ms: latency.quantile_ms(0.95),
            p99_ms: latency.quantile_ms(0.99),
            in_flight: self
                .in_flight
                .load(Ordering::Relaxed)
                .saturating_add(remote_in_flight),
            replicas,
            classes: ErrorClass::ALL
                .iter()
                .zip(classes.iter())
                .filter(|(_, n)| **n > 0)
                .map(|(c, n)| (c.as_str().to_string(), *n))
                .collect(),
        }
    }
}

/// A scorecard as provider state shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScorecardSnapshot {
    /// How far back it looks, ms.
    pub window_ms: u64,
    /// Outcomes the provider caused: `ok + failed`.
    pub samples: u64,
    /// Attempts that served.
    pub ok: u64,
    /// Attempts the provider failed.
    pub failed: u64,
    /// `ok / samples`; absent with no sample.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub success_rate: Option<f64>,
    /// Attempts whose latency is in the percentiles (`rejected` too).
    pub timed: u64,
    /// Latency percentiles, ms (upper bounds of histogram buckets, within
    /// 19 %).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p50_ms: Option<f64>,
    /// 95th percentile, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p95_ms: Option<f64>,
    /// 99th percentile, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99_ms: Option<f64>,
    /// Attempts running now.
    pub in_flight: u64,
    /// Replicas whose outcomes it combines (1 but in cluster mode).
    pub replicas: u32,
    /// Outcomes other than success in the window, by error class.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub classes: BTreeMap<String, u64>,
}

/// One minute of one scorecard, for history.
#[derive(Debug, Clone, PartialEq)]
pub struct MinuteStats {
    /// The scorecard's key (the option's default breaker key).
    pub key: String,
    /// Which minute of the engine's clock (`ms / 60 000`).
    pub minute: u64,
    /// Attempts that served.
    pub ok: u64,
    /// Attempts the provider failed.
    pub failed: u64,
    /// Attempts the caller's input failed (`rejected`).
    pub rejected: u64,
    /// Their latency.
    pub latency: LatencyHistogram,
}

/// The minutes [`Scorecards::minutes`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct ScorecardMinutes {
    /// The engine's clock when read, ms: minute `m` began
    /// `now_ms − m × 60 000` ms ago.
    pub now_ms: u64,
    /// The newest whole minute (`None` in the first minute).
    pub newest: Option<u64>,
    /// Every non-empty minute after the one asked for, per key (whole
    /// ones, and the one in progress when asked).
    pub minutes: Vec<MinuteStats>,
}

/// One scorecard as the adaptive strategies read it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct View {
    /// (successes, samples) over the strategy's window.
    pub outcomes: (u64, u64),
    /// (successes, samples) over the whole window ([`WINDOW_MS`]).
    pub longer: (u64, u64),
    /// (timed attempts, p95 ms) over the strategy's window (asked only).
    pub p95_ms: (u64, Option<f64>),
    /// p99 ms over the strategy's window (asked only).
    pub p99_ms: Option<f64>,
    /// (timed attempts, p95 ms) over the whole window (asked only).
    pub longer_p95_ms: (u64, Option<f64>),
    /// Attempts running now.
    pub in_flight: u64,
    /// The last outcomes and the ejections.
    pub recent: Recent,
}

/// Every option's scorecard, bounded.
#[derive(Debug)]
pub(crate) struct Scorecards {
    base: Instant,
    cards: Mutex<HashMap<String, Arc<Scorecard>>>,
}

/// An attempt in flight; counted down when dropped or ended.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<Scorecard>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An attempt that ended: where its outcome goes, without looking the
/// scorecard up again.
#[derive(Debug)]
pub(crate) struct Ended(Arc<Scorecard>);

impl InFlight {
    /// The attempt is no longer in flight.
    pub(crate) fn end(self) -> Ended {
        Ended(self.0.clone())
    }
}

impl Scorecards {
    /// Scorecards whose windows count from `base`.
    pub(crate) fn new(base: Instant) -> Self {
        Self {
            base,
            cards: Mutex::new(HashMap::new()),
        }
    }

    /// The scorecards' clock, ms: from [`WINDOW_MS`] before they began, so
    /// another replica's outcomes from before this one started (in
    /// cluster mode) still have their slots.
    fn ms(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.base).as_millis())
            .unwrap_or(u64::MAX)
            .saturating_add(WINDOW_MS)
    }

    fn card(&self, key: &str, now_ms: u64) -> Arc<Scorecard> {
        let mut cards = self.cards.locked();
        if let Some(c) = cards.get(key) {
            c.used_ms.store(now_ms, Ordering::Relaxed);
            return c.clone();
        }
        if cards.len() >= MAX_SCORECARDS
            && let Some(oldest) = cards
                .iter()
                .filter(|(_, c)| c.in_flight.load(Ordering::Relaxed) == 0)
                .min_by_key(|(_, c)| c.used_ms.load(Ordering::Relaxed))
                .map(|(k, _)| k.clone())
        {
            cards.remove(&oldest);
        }
        let c = Arc::new(Scorecard::new());
        c.used_ms.store(now_ms, Ordering::Relaxed);
        cards.insert(key.to_string(), c.clone());
        c
    }

    /// An attempt under `key` starts now.
    pub(crate) fn start(&self, key: &str, now: Instant) -> InFlight {
        let c = self.card(key, self.ms(now));
        c.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(c)
    }

    /// The attempt `ended` (started with [`Scorecards::start`]) ended at
    /// `now` after `took`.
    pub(crate) fn record_ended(
        &self,
        ended: &Ended,
        now: Instant,
        result: Result<(), &AttemptError>,
        took: Duration,
    ) {
        if let Some(mark) = Mark::of(result) {
            ended.0.record(self.ms(now), mark, took);
        }
    }

    /// An attempt under `key` ended at `now` after `took`.
    pub(crate) fn record(
        &self,
        key: &str,
        now: Instant,
        result: Result<(), &AttemptError>,
        took: Duration,
    ) {
        if let Some(mark) = Mark::of(result) {
            let ms = self.ms(now);
            self.card(key, ms).record(ms, mark, took);
        }
    }

    /// `key`'s scorecard now, if it has one.
    pub(crate) fn snapshot(&self, key: &str, now: Instant) -> Option<ScorecardSnapshot> {
        let card = self.cards.locked().get(key).cloned()?;
        Some(card.snapshot(self.ms(now)))
    }

    /// Every scorecard's whole minutes after minute `after` (all the
    /// window still holds when `None`), at `now`; with `current`, the
    /// minute in progress too; with `only`, that key's alone.
    pub(crate) fn minutes(
        &self,
        after: Option<u64>,
        current: bool,
        only: Option<&str>,
        now: Instant,
    ) -> ScorecardMinutes {
        const PER_MINUTE: u64 = 60_000 / BUCKET_MS;
        let now_ms = self.ms(now);
        let newest = (now_ms / 60_000).checked_sub(1);
        let last = if current {
            Some(now_ms / 60_000)
        } else {
            newest
        };
        let cards: Vec<(String, Arc<Scorecard>)> = {
            let cards = self.cards.locked();
            match only {
                Some(key) => cards
                    .get(key)
                    .map(|c| (key.to_string(), c.clone()))
                    .into_iter()
                    .collect(),
                None => cards.iter().map(|(k, c)| (k.clone(), c.clone())).collect(),
            }
        };
        let mut minutes = Vec::new();
        let Some(last) = last else {
            return ScorecardMinutes {
                now_ms,
                newest,
                minutes,
            };
        };
        let rejected = class_slot(ErrorClass::Rejected);
        for (key, card) in cards {
            let c = card.slots.locked();
            let mut by_minute: BTreeMap<u64, MinuteStats> = BTreeMap::new();
            for s in c.iter().filter(|s| s.index > 0) {
                let minute = (s.index - 1) / PER_MINUTE;
                if minute > last || after.is_some_and(|a| minute <= a) {
                    continue;
                }
                let m = by_minute.entry(minute).or_insert_with(|| MinuteStats {
                    key: key.clone(),
                    minute,
                    ok: 0,
                    failed: 0,
                    rejected: 0,
                    latency: LatencyHistogram::default(),
                });
                m.ok += s.ok;
                m.failed += s.failed;
                m.rejected += s.classes[rejected];
                m.latency.merge(&s.latency);
            }
            minutes.extend(
                by_minute
                    .into_values()
                    .filter(|m| m.ok + m.failed + m.rejected > 0),
            );
        }
        ScorecardMinutes {
            now_ms,
            newest,
            minutes,
        }
    }

    /// End `key`'s ejection now (its outcomes while ejected were good); its
    /// ejections in a row are kept, so a relapse is ejected for longer.
    pub(crate) fn restore(&self, key: &str, now: Instant) {
        let ms = self.ms(now);
        if let Some(card) = self.cards.locked().get(key).cloned() {
            let mut c = card.slots.locked();
            c.recent.ejected_until_ms = c.recent.ejected_until_ms.min(ms);
        }
    }

    /// `key`'s scorecard as the strategies read it (all zero without one),
    /// with the time it was read at, ms.
    pub(crate) fn view(&self, key: &str, now: Instant, window_ms: u64, latency: bool) -> View {
        let Some(card) = self.cards.locked().get(key).cloned() else {
            return View::default();
        };
        card.view(self.ms(now), window_ms, latency)
    }

    /// The scorecards' clock: ms since they began.
    pub(crate) fn now_ms(&self, now: Instant) -> u64 {
        self.ms(now)
    }

    /// Eject `key` from now for `for_ms(ejections so far)`, and forget
    /// its last outcomes (it is judged afresh when it returns). Returns
    /// when it returns, ms. `reset_after_ms`: ejections in a row start
    /// over when the last one ended that long ago.
    pub(crate) fn eject(
        &self,
        key: &str,
        now: Instant,
        reset_after_ms: u64,
        for_ms: impl Fn(u32) -> u64,
    ) -> u64 {
        let ms = self.ms(now);
        let card = self.card(key, ms);
        let mut c = card.slots.locked();
        let r = &mut c.recent;
        if r.ejected_until_ms > 0 && ms.saturating_sub(r.ejected_until_ms) > reset_after_ms {
            r.ejections = 0;
        }
        r.ejected_until_ms = ms.saturating_add(for_ms(r.ejections));
        r.ejections = r.ejections.saturating_add(1);
        r.bits = 0;
        r.len = 0;
        r.ejected_until_ms
    }

    /// How many are kept.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.cards.locked().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(class: ErrorClass, kind: FailureKind) -> AttemptError {
        AttemptError::new(class, kind, "x")
    }

    #[test]
    fn only_what_the_provider_caused_counts() {
        let base = Instant::now();
        let s = Scorecards::new(base);
        let t = |ms| base + Duration::from_millis(ms);
        let took = Duration::from_millis(20);
        s.record("k", t(1_000), Ok(()), took);
        s.record("k", t(1_000), Ok(()), took);
        s.record("k", t(1_000), Ok(()), took);
        s.record(
            "k",
            t(1_000),
            Err(&err(ErrorClass::Unavailable, FailureKind::Provider)),
            took,
        );
        s.record(
            "k",
            t(1_000),
            Err(&err(ErrorClass::Rejected, FailureKind::Provider)),
            took,
        );
        s.record(
            "k",
            t(1_000),
            Err(&err(ErrorClass::Overloaded, FailureKind::Overload)),
            took,
        );
        s.record(
            "k",
            t(1_000),
            Err(&err(ErrorClass::Unavailable, FailureKind::Overload)),
            took,
        );
        let snap = s.snapshot("k", t(1_500)).unwrap();
        assert_eq!((snap.ok, snap.failed, snap.samples), (3, 1, 4));
        assert_eq!(snap.success_rate, Some(0.75));
        assert_eq!(snap.timed, 5, "rejected is timed, overloaded is not");
        assert_eq!(snap.classes.get("unavailable"), Some(&1));
        assert_eq!(snap.classes.get("rejected"), Some(&1));
        assert!(!snap.classes.contains_key("overloaded"));
        let p50 = snap.p50_ms.unwrap();
        assert!((20.0..=24.0).contains(&p50), "{p50}");
    }

    #[test]
    fn the_window_slides() {
        let base = Instant::now();
        let s = Scorecards::new(base);
        let t = |ms| base + Duration::from_millis(ms);
        let e = err(ErrorClass::Timeout, FailureKind::Provider);
        s.record("k", t(0), Err(&e), Duration::from_secs(5));
        s.record("k", t(WINDOW_MS / 2), Ok(()), Duration::from_millis(10));
        let both = s.snapshot("k", t(WINDOW_MS / 2)).unwrap();
        assert_eq!((both.ok, both.failed), (1, 1));
        // Past the window the old failure is gone, the newer success stays.
        let later = s.snapshot("k", t(WINDOW_MS + BUCKET_MS)).unwrap();
        assert_eq!((later.ok, later.failed), (1, 0));
        assert!(later.p99_ms.unwrap() < 20.0);
        // A slot reused for a newer time starts empty.
        s.record("k", t(2 * WINDOW_MS), Ok(()), Duration::from_millis(10));
        let much_later = s.snapshot("k", t(2 * WINDOW_MS)).unwrap();
        assert_eq!((much_later.ok, much_later.failed), (1, 0));
    }

    #[test]
    fn whole_minutes_for_history() {
        let base = Instant::now();
        let s = Scorecards::new(base);
        let t = |ms| base + Duration::from_millis(ms);
        let e = err(ErrorClass::Unavailable, FailureKind::Provider);
        let r = err(ErrorClass::Rejected, FailureKind::Provider);
        s.record("k", t(5_000), Ok(()), Duration::from_millis(10));
        s.record("k", t(59_000), Err(&e), Duration::from_millis(30));
        s.record("k", t(61_000), Ok(()), Duration::from_millis(10));
        s.record("k", t(62_000), Err(&r), Duration::from_millis(10));
        // Minutes count from five before the scorecards began.
        const M0: u64 = WINDOW_MS / 60_000;
        // In the first minute nothing is whole.
        assert!(s.minutes(None, false, None, t(30_000)).minutes.is_empty());
        assert_eq!(s.minutes(None, true, None, t(30_000)).minutes.len(), 1);
        let m = s.minutes(None, false, None, t(125_000));
        assert_eq!(m.newest, Some(M0 + 1));
        assert_eq!(m.now_ms, WINDOW_MS + 125_000);
        let got: Vec<(u64, u64, u64, u64, u64)> = m
            .minutes
            .iter()
            .map(|m| (m.minute, m.ok, m.failed, m.rejected, m.latency.total()))
            .collect();
        assert_eq!(got, vec![(M0, 1, 1, 0, 2), (M0 + 1, 1, 0, 1, 2)]);
        // After the first: only the second; the current minute never.
        s.record("k", t(125_000), Ok(()), Duration::from_millis(10));
        let m = s.minutes(Some(M0), false, None, t(126_000));
        assert_eq!(m.minutes.len(), 1);
        assert_eq!(m.minutes[0].minute, M0 + 1);
        let m = s.minutes(Some(M0), true, None, t(126_000));
        assert_eq!(m.minutes.len(), 2, "and the minute in progress");
    }

    #[test]
    fn in_flight_and_the_bound() {
        let base = Instant::now();
        let s = Scorecards::new(base);
        let a = s.start("busy", base);
        let b = s.start("busy", base);
        assert_eq!(s.snapshot("busy", base).unwrap().in_flight, 2);
        drop(a);
        assert_eq!(s.snapshot("busy", base).unwrap().in_flight, 1);
        for i in 0..MAX_SCORECARDS + 10 {
            s.record(
                &format!("k{i}"),
                base + Duration::from_millis(i as u64),
                Ok(()),
                Duration::ZERO,
            );
        }
        assert!(s.len() <= MAX_SCORECARDS);
        assert!(
            s.snapshot("busy", base).is_some(),
            "one in flight is never forgotten"
        );
        drop(b);
    }
}
