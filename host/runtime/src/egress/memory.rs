//! One call's memory, under one cap: the guest's linear memories (grown
//! through the store's limiter) and the request bodies the egress gate
//! buffers for it (held until their request is done). Either side is
//! refused what would take the sum past the cap, so a guest cannot make
//! the host hold more than its call may use by handing bodies over.

use std::sync::{Arc, Mutex, PoisonError};

/// The memory account of one call, shared by its limiter and its gate.
#[derive(Debug)]
pub struct CallMemory {
    cap: usize,
    used: Mutex<Used>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Used {
    guest: usize,
    held: usize,
}

/// What the account holds at a refusal, for the error message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// The call's cap, bytes.
    pub cap: usize,
    /// The guest's linear memory, bytes.
    pub guest: usize,
    /// Bytes of request bodies the gate held for the call.
    pub held: usize,
    /// What was asked for, bytes.
    pub wanted: usize,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} KiB more would take the call past its memory cap of {} MiB (guest memory {} KiB, request bodies held by the host {} KiB)",
            self.wanted.div_ceil(1024),
            self.cap >> 20,
            self.guest >> 10,
            self.held >> 10
        )
    }
}

impl CallMemory {
    /// An empty account with `cap` bytes.
    pub fn new(cap: usize) -> Arc<Self> {
        Arc::new(Self {
            cap,
            used: Mutex::new(Used::default()),
        })
    }

    /// The cap, bytes.
    pub fn cap(&self) -> usize {
        self.cap
    }

    fn used(&self) -> std::sync::MutexGuard<'_, Used> {
        // Nothing panics while holding it; a poisoned account is still
        // consistent.
        self.used.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Take `wanted` bytes on one side if the sum stays within the cap.
    fn take(&self, wanted: usize, side: impl Fn(&mut Used) -> &mut usize) -> Result<(), Refused> {
        let mut used = self.used();
        // Both sides stay within the cap, so only `wanted` can overflow.
        let total = used.guest.saturating_add(used.held);
        if total.checked_add(wanted).is_none_or(|t| t > self.cap) {
            return Err(Refused {
                cap: self.cap,
                guest: used.guest,
                held: used.held,
                wanted,
            });
        }
        let slot = side(&mut used);
        *slot = slot.saturating_add(wanted);
        Ok(())
    }

    /// The limiter's question: may a guest memory grow from `current` to
    /// `desired` bytes?
    pub fn grow_guest(&self, current: usize, desired: usize) -> Result<(), Refused> {
        self.take(desired.saturating_sub(current), |u| &mut u.guest)
    }

    /// A hold on request-body bytes, released when dropped.
    pub fn hold(self: &Arc<Self>) -> Held {
        Held {
            memory: self.clone(),
            bytes: 0,
        }
    }

    /// Bytes of bodies held now.
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.used().held
    }
}

/// Bytes of one buffered request body, counted against the call until the
/// request is done.
#[derive(Debug)]
pub struct Held {
    memory: Arc<CallMemory>,
    bytes: usize,
}

impl Held {
    /// Hold `n` more bytes, or say why not.
    pub fn grow(&mut self, n: usize) -> Result<(), Refused> {
        self.memory.take(n, |u| &mut u.held)?;
        self.bytes = self.bytes.saturating_add(n);
        Ok(())
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut used = self.memory.used();
        used.held = used.held.saturating_sub(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_and_bodies_share_one_cap() {
        let m = CallMemory::new(100);
        m.grow_guest(0, 60).unwrap();
        let mut body = m.hold();
        body.grow(30).unwrap();
        // 60 + 30 + 20 > 100: the body is refused, then the guest.
        let refused = body.grow(20).unwrap_err();
        assert_eq!((refused.guest, refused.held, refused.wanted), (60, 30, 20));
        assert!(m.grow_guest(60, 80).is_err());
        drop(body);
        assert_eq!(m.held(), 0);
        m.grow_guest(60, 100).unwrap();
        assert!(m.hold().grow(1).is_err());
    }

    #[test]
    fn sizes_saturate() {
        let m = CallMemory::new(usize::MAX);
        m.grow_guest(0, usize::MAX).unwrap();
        assert!(m.hold().grow(usize::MAX).is_err());
        assert!(m.grow_guest(usize::MAX, 0).is_ok());
    }
}
