//! Provider health: what healthchecks found, kept per (product, env,
//! healthcheck) with a bounded history, and when each check is next due.
//!
//! A check round calls the probe action with up to `retries` retries:
//! any success → healthy, all failed → unhealthy. Until the first round
//! ends the status is unknown (and unknown providers stay eligible).
//! The scheduler is a plan over the injected clock: [`HealthBoard::due`]
//! lists the checks whose time has come, and the next time is the interval
//! spread by ± `jitter` so many checks do not fire in lockstep.

use super::retry::Jitter;
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant, SystemTime};

/// Health of a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// The last check succeeded.
    Healthy,
    /// The last check failed (or its breaker is open).
    Unhealthy,
    /// Not checked yet.
    Unknown,
}

/// One probe outcome.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct ProbeOutcome {
    /// When the check ended (Unix ms).
    pub at_unix_ms: u64,
    /// Whether it succeeded.
    pub ok: bool,
    /// How long the check took (all its tries), ms.
    pub latency_ms: f64,
    /// Tries made.
    pub tries: u32,
    /// The error class and message of the last failed try.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What one healthcheck knows, as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthSnapshot {
    /// Healthy, unhealthy or unknown.
    pub status: HealthStatus,
    /// When a check last ended (Unix ms).
    pub last_checked_unix_ms: Option<u64>,
    /// When a check last succeeded (Unix ms).
    pub last_available_unix_ms: Option<u64>,
    /// How often it runs, ms: its `interval_ms`, or an option's shorter
    /// `check_interval_ms`.
    pub interval_ms: u64,
    /// Latest outcomes, oldest first, bounded by the definition's `history`.
    pub history: Vec<ProbeOutcome>,
}

#[derive(Debug)]
struct Record {
    status: HealthStatus,
    last_checked: Option<SystemTime>,
    last_available: Option<SystemTime>,
    history: VecDeque<ProbeOutcome>,
    capacity: usize,
    next_due: Instant,
    interval: Duration,
    jitter: f64,
    running: bool,
}

/// Key of a health record.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HealthKey {
    /// Product.
    pub product: String,
    /// Env.
    pub env: String,
    /// Healthcheck tag.
    pub tag: String,
}

/// Health records and the check schedule.
#[derive(Debug)]
pub struct HealthBoard {
    records: HashMap<HealthKey, Record>,
    jitter: Jitter,
}

impl Default for HealthBoard {
    fn default() -> Self {
        Self::new(Jitter::from_entropy())
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl HealthBoard {
    /// An empty board drawing schedule jitter from `jitter`.
    pub fn new(jitter: Jitter) -> Self {
        Self {
            records: HashMap::new(),
            jitter,
        }
    }

    /// Start tracking `key`, first due at `now`. Keeps the history of an
    /// existing record (a redefinition changes the schedule, not the past).
    pub fn track(
        &mut self,
        key: HealthKey,
        interval: Duration,
        jitter: f64,
        capacity: usize,
        now: Instant,
    ) {
        let r = self.records.entry(key).or_insert_with(|| Record {
            status: HealthStatus::Unknown,
            last_checked: None,
            last_available: None,
            history: VecDeque::new(),
            capacity,
            next_due: now,
            interval,
            jitter,
            running: false,
        });
        r.interval = interval;
        r.jitter = jitter;
        r.capacity = capacity.max(1);
        r.next_due = r.next_due.min(now + interval);
        while r.history.len() > r.capacity {
            r.history.pop_front();
        }
    }

    /// Stop tracking the envs of a healthcheck not in `keep` (all of them
    /// for an empty `keep`).
    pub fn untrack(&mut self, product: &str, tag: &str, keep: &[&str]) {
        self.records.retain(|k, _| {
            !(k.product == product && k.tag == tag) || keep.contains(&k.env.as_str())
        });
    }

    /// Checks due at `now` that are not already running; marks them running.
    pub fn due(&mut self, now: Instant) -> Vec<HealthKey> {
        let mut out = Vec::new();
        for (k, r) in &mut self.records {
            if !r.running && r.next_due <= now {
                r.running = true;
                out.push(k.clone());
            }
        }
        out
    }

    /// Mark `key` running if it is tracked and idle (a manual check).
    pub fn claim(&mut self, key: &HealthKey) -> bool {
        match self.records.get_mut(key) {
            Some(r) if !r.running => {
                r.running = true;
                true
            }
            _ => false,
        }
    }

    /// When the earliest check is due, if any is tracked.
    pub fn next_due(&self) -> Option<Instant> {
        self.records
            .values()
            .filter(|r| !r.running)
            .map(|r| r.next_due)
            .min()
    }

    /// Whether `key` is tracked here.
    pub fn tracks(&self, key: &HealthKey) -> bool {
        self.records.contains_key(key)
    }

    /// Record the end of a check of `key` and schedule the next one.
    pub fn finish(
        &mut self,
        key: &HealthKey,
        outcome: ProbeOutcome,
        now: Instant,
        wall: SystemTime,
    ) {
        let spread = self.jitter.next_f64() * 2.0 - 1.0;
        let Some(r) = self.records.get_mut(key) else {
            return; // untracked while running
        };
        r.running = false;
        r.status = if outcome.ok {
            HealthStatus::Healthy
        } else {
            HealthStatus::Unhealthy
        };
        r.last_checked = Some(wall);
        if outcome.ok {
            r.last_available = Some(wall);
        }
        r.history.push_back(outcome);
        while r.history.len() > r.capacity {
            r.history.pop_front();
        }
        let factor = (1.0 + r.jitter.clamp(0.0, 1.0) * spread).max(0.0);
        r.next_due = now + r.interval.mul_f64(factor);
    }

    /// How often `key` is checked.
    pub fn interval(&self, key: &HealthKey) -> Option<Duration> {
        self.records.get(key).map(|r| r.interval)
    }

    /// End a check of `key` that could not run (the host had no plugin
    /// instance free): nothing is recorded, and it is due again after
    /// `retry` (or its interval, if shorter).
    pub fn postpone(&mut self, key: &HealthKey, now: Instant, retry: Duration) {
        if let Some(r) = self.records.get_mut(key) {
            r.running = false;
            r.next_due = now + retry.min(r.interval);
        }
    }

    /// Replace the history of a tracked `key` with `history` (oldest
    /// first; only the newest `capacity` kept) and derive status,
    /// `last_checked` and `last_available` from it. False if untracked.
    pub fn restore(&mut self, key: &HealthKey, history: Vec<ProbeOutcome>) -> bool {
        let Some(r) = self.records.get_mut(key) else {
            return false;
        };
        let at = |o: &ProbeOutcome| SystemTime::UNIX_EPOCH + Duration::from_millis(o.at_unix_ms);
        let skip = history.len().saturating_sub(r.capacity);
        r.history = history.into_iter().skip(skip).collect();
        if let Some(last) = r.history.back() {
            r.status = if last.ok {
                HealthStatus::Healthy
            } else {
                HealthStatus::Unhealthy
            };
            r.last_checked = Some(at(last));
        }
        if let Some(ok) = r.history.iter().rev().find(|o| o.ok) {
            r.last_available = Some(at(ok));
        }
        true
    }

    /// The status of `key` (unknown if untracked).
    pub fn status(&self, key: &HealthKey) -> HealthStatus {
        self.records
            .get(key)
            .map_or(HealthStatus::Unknown, |r| r.status)
    }

    /// Everything known about `key`.
    pub fn snapshot(&self, key: &HealthKey) -> Option<HealthSnapshot> {
        self.records.get(key).map(|r| HealthSnapshot {
            status: r.status,
            last_checked_unix_ms: r.last_checked.map(unix_ms),
            last_available_unix_ms: r.last_available.map(unix_ms),
            interval_ms: r.interval.as_millis() as u64,
            history: r.history.iter().cloned().collect(),
        })
    }
}

/// A probe outcome ending at `wall`.
pub fn outcome(
    wall: SystemTime,
    ok: bool,
    took: Duration,
    tries: u32,
    error: Option<String>,
) -> ProbeOutcome {
    ProbeOutcome {
        at_unix_ms: unix_ms(wall),
        ok,
        latency_ms: took.as_secs_f64() * 1e3,
        tries,
        error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};

    fn key() -> HealthKey {
        HealthKey {
            product: "p".into(),
            env: "dev".into(),
            tag: "h".into(),
        }
    }

    #[test]
    fn schedule_follows_the_interval_with_bounded_jitter() {
        let clock = ManualClock::new();
        let mut b = HealthBoard::new(Jitter::seeded(3));
        b.track(key(), Duration::from_secs(10), 0.1, 5, clock.now());
        assert_eq!(b.due(clock.now()), [key()], "first check is due at once");
        assert!(
            b.due(clock.now()).is_empty(),
            "a running check is not due again"
        );
        for round in 0..20 {
            let ok = round % 3 != 0;
            b.finish(
                &key(),
                outcome(clock.wall(), ok, Duration::ZERO, 1, None),
                clock.now(),
                clock.wall(),
            );
            let next = b.next_due().unwrap() - clock.now();
            assert!(
                (Duration::from_secs(9)..=Duration::from_secs(11)).contains(&next),
                "{next:?}"
            );
            clock.advance(Duration::from_secs(8));
            assert!(b.due(clock.now()).is_empty());
            clock.advance(Duration::from_secs(3));
            assert_eq!(b.due(clock.now()), [key()]);
        }
        let s = b.snapshot(&key()).unwrap();
        assert_eq!(s.history.len(), 5, "history is bounded");
    }

    #[test]
    fn status_and_times_follow_outcomes() {
        let clock = ManualClock::new();
        let mut b = HealthBoard::new(Jitter::seeded(1));
        b.track(key(), Duration::from_secs(1), 0.0, 10, clock.now());
        assert_eq!(b.status(&key()), HealthStatus::Unknown);
        b.due(clock.now());
        b.finish(
            &key(),
            outcome(clock.wall(), true, Duration::ZERO, 1, None),
            clock.now(),
            clock.wall(),
        );
        let ok_at = b.snapshot(&key()).unwrap().last_available_unix_ms;
        clock.advance(Duration::from_secs(5));
        b.due(clock.now());
        b.finish(
            &key(),
            outcome(clock.wall(), false, Duration::ZERO, 2, Some("x".into())),
            clock.now(),
            clock.wall(),
        );
        let s = b.snapshot(&key()).unwrap();
        assert_eq!(s.status, HealthStatus::Unhealthy);
        assert_eq!(s.last_available_unix_ms, ok_at);
        assert_eq!(s.last_checked_unix_ms, Some(ok_at.unwrap() + 5_000));
    }
}
