//! Scorecards across replicas: each replica shares the slots of its own
//! scorecards (stamped with wall-clock time, since replicas' engine clocks
//! start apart) and takes in the others', which its strategies and
//! provider state then count with its own. Its elimination record
//! (recent outcomes, ejections) and its history stay its own.

use super::{BUCKET_MS, ErrorClass, Histogram, SLOTS, Scorecards, Slot, class_slot};
use crate::locks::Recover;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Most scorecards a replica shares (the most recently used first).
pub const MAX_SHARED_SCORECARDS: usize = 500;

/// One slot of a shared scorecard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SharedSlot {
    /// Which wall-clock slot: Unix ms / [`BUCKET_MS`].
    pub slot: u64,
    /// Attempts that served.
    pub ok: u64,
    /// Attempts the provider failed.
    pub failed: u64,
    /// Outcomes other than success, by class (`[class, count]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<(String, u64)>,
    /// The latency histogram's non-empty buckets (`[bucket, count]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub latency: Vec<(u16, u32)>,
}

/// One scorecard as a replica shares it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SharedScorecard {
    /// Its key.
    pub key: String,
    /// Attempts in flight at that replica.
    pub in_flight: u64,
    /// Its non-empty slots of the last five minutes.
    pub slots: Vec<SharedSlot>,
}

impl Scorecards {
    /// This replica's scorecards with outcomes in the window, at most
    /// [`MAX_SHARED_SCORECARDS`], the most recently used first; `wall_ms`
    /// is the wall clock at `now`.
    pub(crate) fn to_share(&self, now: Instant, wall_ms: u64) -> Vec<SharedScorecard> {
        let now_ms = self.ms(now);
        let offset = wall_ms.saturating_sub(now_ms);
        let newest = now_ms / BUCKET_MS + 1;
        let oldest = newest.saturating_sub(SLOTS as u64 - 1);
        let mut cards: Vec<(String, std::sync::Arc<super::Scorecard>)> = self
            .cards
            .locked()
            .iter()
            .map(|(k, c)| (k.clone(), c.clone()))
            .collect();
        cards.sort_by_key(|(_, c)| std::cmp::Reverse(c.used_ms.load(Ordering::Relaxed)));
        let mut out = Vec::new();
        for (key, card) in cards {
            if out.len() >= super::shared::MAX_SHARED_SCORECARDS {
                break;
            }
            let c = card.slots.locked();
            let slots: Vec<SharedSlot> = c
                .slots
                .iter()
                .filter(|s| s.index >= oldest && s.index <= newest && s.index > 0)
                .filter(|s| s.ok + s.failed > 0 || s.latency.total() > 0)
                .map(|s| SharedSlot {
                    slot: (offset + (s.index - 1) * BUCKET_MS) / BUCKET_MS,
                    ok: s.ok,
                    failed: s.failed,
                    classes: ErrorClass::ALL
                        .iter()
                        .zip(s.classes.iter())
                        .filter(|(_, n)| **n > 0)
                        .map(|(c, n)| (c.as_str().to_string(), *n))
                        .collect(),
                    latency: s.latency.to_sparse(),
                })
                .collect();
            let in_flight = card.in_flight.load(Ordering::Relaxed);
            if !slots.is_empty() || in_flight > 0 {
                out.push(SharedScorecard {
                    key,
                    in_flight,
                    slots,
                });
            }
        }
        out
    }

    /// Take in the other replicas' shared scorecards (each replica's
    /// list), replacing what they shared before; `wall_ms` is the wall
    /// clock at `now`. A key this replica has not used yet gets a
    /// scorecard, so it routes on what the others learned.
    pub(crate) fn set_remote(&self, now: Instant, wall_ms: u64, replicas: &[Vec<SharedScorecard>]) {
        let now_ms = self.ms(now);
        let offset = wall_ms.saturating_sub(now_ms);
        let newest = now_ms / BUCKET_MS + 1;
        let mut merged: HashMap<&str, (Vec<Slot>, u64, u32)> = HashMap::new();
        for list in replicas {
            for card in list.iter().take(MAX_SHARED_SCORECARDS) {
                let e = merged.entry(card.key.as_str()).or_default();
                e.1 = e.1.saturating_add(card.in_flight);
                e.2 += 1;
                for s in card.slots.iter().take(SLOTS) {
                    let Some(local_ms) = s.slot.saturating_mul(BUCKET_MS).checked_sub(offset)
                    else {
                        continue;
                    };
                    let index = local_ms / BUCKET_MS + 1;
                    if index > newest || index + (SLOTS as u64) <= newest {
                        continue;
                    }
                    let mut slot = Slot {
                        index,
                        ok: s.ok,
                        failed: s.failed,
                        latency: Histogram::from_sparse(&s.latency),
                        ..Slot::default()
                    };
                    for (name, n) in &s.classes {
                        if let Some(c) = ErrorClass::ALL.iter().find(|c| c.as_str() == name) {
                            slot.classes[class_slot(*c)] =
                                slot.classes[class_slot(*c)].saturating_add(*n);
                        }
                    }
                    e.0.push(slot);
                }
            }
        }
        // Those no replica shares any more are cleared.
        let cards: Vec<(String, std::sync::Arc<super::Scorecard>)> = self
            .cards
            .locked()
            .iter()
            .map(|(k, c)| (k.clone(), c.clone()))
            .collect();
        for (key, card) in &cards {
            if !merged.contains_key(key.as_str()) {
                let mut c = card.slots.locked();
                c.remote.clear();
                c.remote_in_flight = 0;
                c.remote_replicas = 0;
            }
        }
        for (key, (slots, in_flight, n)) in merged {
            let card = match cards.iter().find(|(k, _)| k == key) {
                Some((_, c)) => c.clone(),
                None => self.card(key, now_ms),
            };
            let mut c = card.slots.locked();
            c.remote = slots;
            c.remote_in_flight = in_flight;
            c.remote_replicas = n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapter::{AttemptError, FailureKind};
    use std::time::Duration;

    #[test]
    fn another_replicas_outcomes_count_with_this_ones() {
        // Two replicas whose engine clocks began 37 s apart.
        let base = Instant::now();
        let (a, b) = (Scorecards::new(base), Scorecards::new(base));
        let wall = 1_700_000_000_000u64;
        let at_a = base + Duration::from_secs(100);
        let e = AttemptError::new(ErrorClass::Unavailable, FailureKind::Provider, "503");
        for i in 0..10 {
            let r = if i < 4 { Err(&e) } else { Ok(()) };
            a.record("k", at_a, r, Duration::from_millis(20));
        }
        b.record(
            "k",
            base + Duration::from_secs(63),
            Ok(()),
            Duration::from_millis(5),
        );
        let shared = a.to_share(at_a, wall);
        assert_eq!(shared.len(), 1);
        assert_eq!(
            shared[0].slots.iter().map(|s| s.ok + s.failed).sum::<u64>(),
            10
        );
        // B's clock reads 63 s at the same wall time.
        let at_b = base + Duration::from_secs(63);
        b.set_remote(at_b, wall, std::slice::from_ref(&shared));
        let snap = b.snapshot("k", at_b).unwrap();
        assert_eq!((snap.ok, snap.failed, snap.replicas), (7, 4, 2));
        assert!(snap.p95_ms.unwrap() >= 20.0, "A's latency counts");
        let v = b.view("k", at_b, 60_000, true);
        assert_eq!(v.outcomes, (7, 11));
        // A key B never used gets a scorecard; a replica that stops
        // sharing is forgotten at the next sync.
        let mut other = shared[0].clone();
        other.key = "new".into();
        b.set_remote(at_b, wall, &[vec![other]]);
        assert_eq!(b.snapshot("new", at_b).unwrap().samples, 10);
        assert_eq!(b.snapshot("k", at_b).unwrap().samples, 1);
        // Its own outcomes are all it shares.
        let mine = b.to_share(at_b, wall);
        let k = mine.iter().find(|c| c.key == "k").unwrap();
        assert_eq!(k.slots.iter().map(|s| s.ok + s.failed).sum::<u64>(), 1);
        assert!(mine.iter().all(|c| c.key != "new"));
    }
}
