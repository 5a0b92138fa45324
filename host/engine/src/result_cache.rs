//! Result caches: a run that names a cache gets the stored successful
//! result of an identical earlier run (same kind, tag, env and input) while
//! it is younger than the cache's TTL, without calling any provider.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// One cache: entries with an expiry, evicted oldest-first past capacity.
#[derive(Debug)]
pub struct ResultCache<V> {
    ttl: Duration,
    capacity: usize,
    entries: HashMap<String, (Instant, V)>,
    order: VecDeque<(String, Instant)>,
}

impl<V: Clone> ResultCache<V> {
    /// A cache keeping `capacity` entries for `ttl` each.
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl,
            capacity: capacity.max(1),
            entries: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// The fresh entry under `key`, if any.
    pub fn get(&mut self, key: &str, now: Instant) -> Option<V> {
        match self.entries.get(key) {
            Some((expires, v)) if now < *expires => Some(v.clone()),
            Some(_) => {
                self.entries.remove(key);
                None
            }
            None => None,
        }
    }

    /// Store `value` under `key` from `now`.
    pub fn put(&mut self, key: String, value: V, now: Instant) {
        let expires = now + self.ttl;
        self.entries.insert(key.clone(), (expires, value));
        self.order.push_back((key, expires));
        while self.entries.len() > self.capacity
            || self.order.len() > self.capacity.saturating_mul(2)
        {
            let Some((k, at)) = self.order.pop_front() else {
                break;
            };
            // Only evict if this queue slot is the entry's latest write.
            if self.entries.get(&k).is_some_and(|(e, _)| *e == at) {
                self.entries.remove(&k);
            }
        }
    }

    /// Entries held (fresh or not yet swept).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};

    #[test]
    fn entries_expire_after_the_ttl() {
        let clock = ManualClock::new();
        let mut c = ResultCache::new(Duration::from_secs(10), 100);
        c.put("a".into(), 1, clock.now());
        clock.advance(Duration::from_millis(9_999));
        assert_eq!(c.get("a", clock.now()), Some(1));
        clock.advance(Duration::from_millis(1));
        assert_eq!(c.get("a", clock.now()), None);
    }

    #[test]
    fn capacity_evicts_the_oldest() {
        let clock = ManualClock::new();
        let mut c = ResultCache::new(Duration::from_secs(10), 2);
        c.put("a".into(), 1, clock.now());
        clock.advance(Duration::from_millis(1));
        c.put("b".into(), 2, clock.now());
        clock.advance(Duration::from_millis(1));
        c.put("a".into(), 3, clock.now()); // rewrite keeps a young
        clock.advance(Duration::from_millis(1));
        c.put("c".into(), 4, clock.now());
        assert_eq!(c.get("b", clock.now()), None);
        assert_eq!(c.get("a", clock.now()), Some(3));
        assert_eq!(c.get("c", clock.now()), Some(4));
        assert!(c.len() <= 2);
    }
}
