//! Engine locks that outlive a panic. A panic inside one run (a user's
//! classifier, an observer, a bug) must never poison shared state and take
//! every later run down with it. Every engine lock guards state that each
//! critical section leaves whole (no section panics half-way through an
//! invariant it restores later), so a poisoned lock still holds good data:
//! take it and go on.

use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Locking that recovers from poison.
pub trait Recover<T> {
    /// The lock, poisoned or not.
    fn locked(&self) -> MutexGuard<'_, T>;
}

impl<T> Recover<T> for Mutex<T> {
    fn locked(&self) -> MutexGuard<'_, T> {
        self.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Reader/writer locking that recovers from poison.
pub trait RecoverRw<T> {
    /// Shared access, poisoned or not.
    fn reading(&self) -> RwLockReadGuard<'_, T>;
    /// Exclusive access, poisoned or not.
    fn writing(&self) -> RwLockWriteGuard<'_, T>;
}

impl<T> RecoverRw<T> for RwLock<T> {
    fn reading(&self) -> RwLockReadGuard<'_, T> {
        self.read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn writing(&self) -> RwLockWriteGuard<'_, T> {
        self.write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
