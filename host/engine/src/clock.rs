//! Time, injected: the engine never calls `Instant::now()` or sleeps by
//! itself, so every policy is tested with a [`ManualClock`] instead of
//! sleeping.

use crate::adapter::BoxFuture;
use std::time::{Duration, Instant, SystemTime};

/// A monotonic clock that can also wait.
pub trait Clock: Send + Sync {
    /// The current instant.
    fn now(&self) -> Instant;

    /// Wall-clock time, for `last_checked` / `last_available` displays.
    fn wall(&self) -> SystemTime;

    /// Wait `d` (a retry backoff, the healthcheck scheduler's pause).
    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()>;

    /// Wait until `d` has passed without moving the clock: the timer of a
    /// timeout, which something else (real time, or a test advancing a
    /// [`ManualClock`]) must bring about.
    fn timer(&self, d: Duration) -> BoxFuture<'static, ()> {
        self.sleep(d)
    }
}

/// Why [`timeout`] gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

/// Run `work` for at most `d` on `clock`: every engine timeout goes through
/// here, so tests drive it with a [`ManualClock`].
pub async fn timeout<T>(
    clock: &dyn Clock,
    d: Duration,
    work: impl Future<Output = T>,
) -> Result<T, Elapsed> {
    let timer = clock.timer(d);
    tokio::select! {
        biased;
        out = work => Ok(out),
        () = timer => Err(Elapsed),
    }
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

/// A clock that moves only when told to. By default sleeping on it
/// advances it at once, so a backoff costs no real time; a
/// [`ManualClock::parked`] clock instead keeps sleepers waiting until
/// [`ManualClock::advance`] moves time past their wake-up, for tests of
/// concurrent waiters (an admission queue) without real sleeps.
#[derive(Debug)]
pub struct ManualClock {
    base: Instant,
    wall_base: SystemTime,
    offset: tokio::sync::watch::Sender<Duration>,
    parked: bool,
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl ManualClock {
    /// A clock at an arbitrary fixed instant; sleeping advances it.
    pub fn new() -> Self {
        Self {
            base: Instant::now(),
            wall_base: SystemTime::now(),
            offset: tokio::sync::watch::Sender::new(Duration::ZERO),
            parked: false,
        }
    }

    /// A clock whose sleepers wait until [`Self::advance`] passes their
    /// wake-up time.
    pub fn parked() -> Self {
        Self {
            parked: true,
            ..Self::new()
        }
    }

    /// Move time forward (and wake the sleepers whose time came).
    pub fn advance(&self, by: Duration) {
        self.offset.send_modify(|o| *o = o.saturating_add(by));
    }

    /// Time elapsed since the clock was made.
    pub fn elapsed(&self) -> Duration {
        *self.offset.borrow()
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
        if !self.parked {
            self.advance(d);
            return Box::pin(std::future::ready(()));
        }
        self.timer(d)
    }

    fn timer(&self, d: Duration) -> BoxFuture<'static, ()> {
        let mut rx = self.offset.subscribe();
        let wake = rx.borrow().saturating_add(d);
        Box::pin(async move {
            while *rx.borrow_and_update() < wake {
                if rx.changed().await.is_err() {
                    return; // the clock is gone
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_parked_sleeper_wakes_only_when_time_passes_its_wake_up() {
        let clock = std::sync::Arc::new(ManualClock::parked());
        let sleeper = tokio::spawn(clock.sleep(Duration::from_millis(100)));
        clock.advance(Duration::from_millis(99));
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(!sleeper.is_finished());
        clock.advance(Duration::from_millis(1));
        sleeper.await.unwrap();
        assert_eq!(clock.elapsed(), Duration::from_millis(100));
    }
}
