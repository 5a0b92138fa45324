//! Time, injected: the engine never calls `Instant::now()` or sleeps by
//! itself, so every policy is tested with a [`ManualClock`] instead of
//! sleeping.

use crate::adapter::BoxFuture;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

/// A monotonic clock that can also wait.
pub trait Clock: Send + Sync {
    /// The current instant.
    fn now(&self) -> Instant;

    /// Wall-clock time, for `last_checked` / `last_available` displays.
    fn wall(&self) -> SystemTime;

    /// Wait `d` (a retry backoff, the healthcheck scheduler's pause).
    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()>;
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn wall(&self) -> SystemTime {
        SystemTime::now()
    }

    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(d))
    }
}

/// A clock that moves only when told to, or when someone sleeps on it
/// (sleeping advances it at once, so a backoff costs no real time).
#[derive(Debug)]
pub struct ManualClock {
    base: Instant,
    wall_base: SystemTime,
    offset: Mutex<Duration>,
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl ManualClock {
    /// A clock at an arbitrary fixed instant.
    pub fn new() -> Self {
        Self {
            base: Instant::now(),
            wall_base: SystemTime::now(),
            offset: Mutex::new(Duration::ZERO),
        }
    }

    /// Move time forward.
    pub fn advance(&self, by: Duration) {
        *self.offset.lock().expect("clock") += by;
    }

    /// Time elapsed since the clock was made.
    pub fn elapsed(&self) -> Duration {
        *self.offset.lock().expect("clock")
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.base + self.elapsed()
    }

    fn wall(&self) -> SystemTime {
        self.wall_base + self.elapsed()
    }

    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()> {
        self.advance(d);
        Box::pin(std::future::ready(()))
    }
}
