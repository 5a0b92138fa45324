//! The throttle on failed authentication: a client address that failed
//! `server.auth_failures_per_minute` times (default
//! [`FAILURES_PER_WINDOW`]) within [`WINDOW`] is answered 429 (without its
//! token being looked at) until the window ends. At most
//! [`MAX_CLIENTS`] addresses are tracked; past it, the untracked share one
//! bucket, so a flood from many addresses cannot grow memory.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Failures an address may have within [`WINDOW`].
pub const FAILURES_PER_WINDOW: u32 = 20;
/// The window.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Addresses tracked at once.
pub const MAX_CLIENTS: usize = 10_000;

/// Failed authentications per client address.
#[derive(Debug)]
pub struct Throttle {
    clients: Mutex<HashMap<Option<IpAddr>, (Instant, u32)>>,
    limit: AtomicU32,
    /// Requests answered 429 because of it.
    pub throttled: AtomicU64,
}

impl Default for Throttle {
    fn default() -> Self {
        Self {
            clients: Mutex::default(),
            limit: AtomicU32::new(FAILURES_PER_WINDOW),
            throttled: AtomicU64::new(0),
        }
    }
}

impl Throttle {
    /// Failures an address may have within the window.
    pub fn set_limit(&self, n: u32) {
        self.limit.store(n.max(1), Ordering::Relaxed);
    }

    fn key(
        &self,
        map: &HashMap<Option<IpAddr>, (Instant, u32)>,
        ip: Option<IpAddr>,
    ) -> Option<IpAddr> {
        if map.contains_key(&ip) || map.len() < MAX_CLIENTS {
            ip
        } else {
            None
        }
    }

    /// Seconds until `ip` may try again, if it is throttled now.
    pub fn blocked(&self, ip: Option<IpAddr>) -> Option<u64> {
        let map = self
            .clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = self.key(&map, ip);
        let (since, n) = map.get(&key)?;
        let left = WINDOW.checked_sub(since.elapsed())?;
        if *n >= self.limit.load(Ordering::Relaxed) {
            self.throttled.fetch_add(1, Ordering::Relaxed);
            Some(left.as_secs().max(1))
        } else {
            None
        }
    }

    /// Count a failure of `ip`.
    pub fn failed(&self, ip: Option<IpAddr>) {
        let mut map = self
            .clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() >= MAX_CLIENTS && !map.contains_key(&ip) {
            map.retain(|_, (since, _)| since.elapsed() < WINDOW);
        }
        let key = self.key(&map, ip);
        let e = map.entry(key).or_insert((Instant::now(), 0));
        if e.0.elapsed() >= WINDOW {
            *e = (Instant::now(), 0);
        }
        e.1 = e.1.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_blocked_after_its_failures_and_others_are_not() {
        let t = Throttle::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..FAILURES_PER_WINDOW {
            assert_eq!(t.blocked(Some(a)), None);
            t.failed(Some(a));
        }
        assert!(t.blocked(Some(a)).is_some_and(|s| (1..=60).contains(&s)));
        assert_eq!(t.blocked(Some(b)), None);
    }

    #[test]
    fn past_the_bound_new_addresses_share_one_bucket() {
        let t = Throttle::default();
        for i in 0..MAX_CLIENTS as u32 + 50 {
            t.failed(Some(IpAddr::from(i.to_be_bytes())));
        }
        assert!(t.clients.lock().unwrap().len() <= MAX_CLIENTS + 1);
    }
}
