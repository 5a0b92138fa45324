//! One budget for the bytes the host holds on behalf of every call and
//! request at once: providers' answers the egress gate reads whole for
//! exchange-world adapters, and request bodies the server reads. Each has
//! its own cap per call or request; this bounds their sum, so many large
//! answers in flight together cannot take the process's memory with them.
//!
//! A call takes what it holds as it reads ([`Held::grow`]); what it holds
//! goes back when its [`Held`] is dropped. A new provider request is sent
//! only while the budget has room for one whole answer
//! ([`HostBytes::room_for`]); an answer already on its way waits for room
//! (within its deadline) rather than fail, because its request may have
//! acted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

/// The budget. Share one per process.
#[derive(Debug)]
pub struct HostBytes {
    cap: usize,
    used: AtomicUsize,
    refused: AtomicU64,
    waited: AtomicU64,
    freed: tokio::sync::Notify,
}

impl HostBytes {
    /// A budget of `cap` bytes.
    pub fn new(cap: usize) -> Arc<Self> {
        Arc::new(Self {
            cap,
            used: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
            waited: AtomicU64::new(0),
            freed: tokio::sync::Notify::new(),
        })
    }

    /// The cap, bytes.
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Bytes held now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Requests refused (bodies too large for what is left, provider
    /// requests not sent) since start.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Answers that had to wait for room since start.
    pub fn waited(&self) -> u64 {
        self.waited.load(Ordering::Relaxed)
    }

    /// Whether `n` more bytes fit now (counted as a refusal when not).
    pub fn room_for(&self, n: usize) -> bool {
        let fits = self.used().saturating_add(n) <= self.cap;
        if !fits {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        fits
    }

    /// Nothing held yet; grows with [`Held::grow`].
    pub fn hold(self: &Arc<Self>) -> Held {
        Held {
            budget: self.clone(),
            n: 0,
        }
    }

    fn take(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                u.checked_add(n).filter(|t| *t <= self.cap)
            })
            .is_ok()
    }

    fn give(&self, n: usize) {
        if n > 0 {
            let _ = self
                .used
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                    Some(u.saturating_sub(n))
                });
            self.freed.notify_waiters();
        }
    }
}

/// Bytes one call or request holds of the budget; given back on drop.
#[derive(Debug)]
pub struct Held {
    budget: Arc<HostBytes>,
    n: usize,
}

impl Held {
    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.n
    }

    /// Hold `n` more bytes now, if they fit (counted as a refusal when not).
    pub fn grow(&mut self, n: usize) -> bool {
        if self.budget.take(n) {
            self.n = self.n.saturating_add(n);
            true
        } else {
            self.budget.refused.fetch_add(1, Ordering::Relaxed);
            false
        }
    }

    /// Hold `n` more bytes, waiting for others to give back room until
    /// `deadline`. False when the deadline came first (or `n` is larger
    /// than the whole budget).
    pub async fn grow_by(&mut self, n: usize, deadline: Instant) -> bool {
        if n > self.budget.cap {
            return false;
        }
        let mut counted = false;
        loop {
            let freed = self.budget.freed.notified();
            if self.budget.take(n) {
                self.n = self.n.saturating_add(n);
                return true;
            }
            if !counted {
                counted = true;
                self.budget.waited.fetch_add(1, Ordering::Relaxed);
            }
            if tokio::time::timeout_at(deadline.into(), freed)
                .await
                .is_err()
            {
                return false;
            }
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.budget.give(self.n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn holding_is_bounded_and_given_back_on_drop() {
        let b = HostBytes::new(100);
        let mut a = b.hold();
        assert!(a.grow(60));
        let mut c = b.hold();
        assert!(!c.grow(50), "60 + 50 > 100");
        assert!(c.grow(40));
        assert_eq!(b.used(), 100);
        assert!(!b.room_for(1));
        drop(a);
        assert_eq!(b.used(), 40);
        assert!(b.room_for(60));
        drop(c);
        assert_eq!(b.used(), 0);
        assert_eq!(b.refused(), 2);
    }

    #[tokio::test]
    async fn a_reader_waits_for_room_within_its_deadline() {
        let b = HostBytes::new(100);
        let mut first = b.hold();
        assert!(first.grow(90));
        let mut second = b.hold();
        let soon = Instant::now() + Duration::from_millis(30);
        assert!(!second.grow_by(20, soon).await, "no room came in time");
        let waiter = {
            let b = b.clone();
            tokio::spawn(async move {
                let mut h = b.hold();
                let ok = h.grow_by(20, Instant::now() + Duration::from_secs(5)).await;
                (ok, h.bytes())
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(first);
        assert_eq!(waiter.await.unwrap(), (true, 20));
        assert!(
            !second.grow_by(101, Instant::now()).await,
            "larger than it all"
        );
        assert_eq!(b.waited(), 2);
        assert_eq!(b.used(), 0);
    }
}
