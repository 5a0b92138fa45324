//! Retry budget per app: retries on a provider may add at most `ratio` of
//! its first attempts (plus a floor) over a sliding window, so an outage
//! does not multiply the load on a sick provider. A failover is a first
//! attempt on the next provider: it is counted there, never refused (the
//! number of options bounds it), and never charged to the app that failed.

use std::time::{Duration, Instant};

/// Budget settings. Defaults: 50 % of first attempts, at least 10 retries,
/// over 10 s (load during an outage is at most 1.5× plus the floor).
#[derive(
    Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(default, deny_unknown_fields)]
pub struct BudgetConfig {
    /// Retries allowed per first attempt.
    pub ratio: f64,
    /// Retries allowed per window regardless of traffic.
    pub min_retries: u32,
    /// Window length, in milliseconds (split into 10 slots).
    pub window_ms: u64,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        Self {
            ratio: 0.5,
            min_retries: 10,
            window_ms: 10_000,
        }
    }
}

const SLOTS: usize = 10;

impl BudgetConfig {
    /// Every number within its bounds; `at` is the settings' field path.
    pub fn validate(&self, at: &str) -> Result<(), crate::error::DefineError> {
        let bad = |field: &str, why: &str| {
            Err(crate::error::DefineError::new(format!("{at}.{field}"), why))
        };
        if !(0.0..=100.0).contains(&self.ratio) {
            return bad(
                "ratio",
                "must be between 0 and 100 (retries per first attempt)",
            );
        }
        if self.min_retries > 1_000_000 {
            return bad("min_retries", "must be at most 1000000");
        }
        if !(10..=86_400_000).contains(&self.window_ms) {
            return bad("window_ms", "must be between 10 and 86400000");
        }
        Ok(())
    }
}

/// One retry taken from a [`RetryBudget`]; refundable while its slot is
/// still in the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "refund the token if the retry is not made"]
pub struct BudgetToken {
    slot: u64,
}

/// A sliding-window retry budget (one per app).
#[derive(Debug)]
pub struct RetryBudget {
    config: BudgetConfig,
    origin: Instant,
    slot: Duration,
    /// (slot number, first attempts, retries) per ring position.
    ring: [(u64, u64, u64); SLOTS],
}

impl RetryBudget {
    /// Change the settings, keeping the window's counts.
    pub fn set_config(&mut self, config: BudgetConfig) {
        self.config.min_retries = config.min_retries;
        self.config.ratio = config.ratio;
    }

    /// An empty budget starting at `now`.
    pub fn new(config: BudgetConfig, now: Instant) -> Self {
        let slot = Duration::from_millis((config.window_ms / SLOTS as u64).max(1));
        Self {
            config,
            origin: now,
            slot,
            ring: [(u64::MAX, 0, 0); SLOTS],
        }
    }

    fn slot_number(&self, now: Instant) -> u64 {
        (now.saturating_duration_since(self.origin).as_nanos() / self.slot.as_nanos()) as u64
    }

    fn current(&mut self, now: Instant) -> &mut (u64, u64, u64) {
        let n = self.slot_number(now);
        let cell = &mut self.ring[(n % SLOTS as u64) as usize];
        if cell.0 != n {
            *cell = (n, 0, 0);
        }
        cell
    }

    /// First attempts and retries in the window ending at `now`.
    pub fn window(&self, now: Instant) -> (u64, u64) {
        let n = self.slot_number(now);
        self.ring
            .iter()
            .filter(|(slot, _, _)| *slot != u64::MAX && *slot + SLOTS as u64 > n && *slot <= n)
            .fold((0, 0), |(f, r), (_, a, b)| (f + a, r + b))
    }

    /// Count a first attempt.
    pub fn deposit(&mut self, now: Instant) {
        self.current(now).1 += 1;
    }

    /// Take one retry from the budget; `None` if spent. Give the token
    /// back with [`Self::refund`] if the retry is not made after all.
    pub fn try_withdraw(&mut self, now: Instant) -> Option<BudgetToken> {
        let (firsts, retries) = self.window(now);
        let allowance = f64::from(self.config.min_retries) + self.config.ratio * firsts as f64;
        if (retries + 1) as f64 > allowance {
            return None;
        }
        let cell = self.current(now);
        cell.2 += 1;
        Some(BudgetToken { slot: cell.0 })
    }

    /// Give back a token whose retry was not made (the breaker opened
    /// during the backoff, the deadline came, admission refused it).
    pub fn refund(&mut self, token: BudgetToken) {
        let cell = &mut self.ring[(token.slot % SLOTS as u64) as usize];
        if cell.0 == token.slot {
            cell.2 = cell.2.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};
    use proptest::prelude::*;

    #[test]
    fn floor_then_ratio() {
        let clock = ManualClock::new();
        let mut b = RetryBudget::new(BudgetConfig::default(), clock.now());
        let granted = (0..50)
            .filter(|_| b.try_withdraw(clock.now()).is_some())
            .count();
        assert_eq!(granted, 10, "the floor alone");
        for _ in 0..100 {
            b.deposit(clock.now());
        }
        let granted = (0..80)
            .filter(|_| b.try_withdraw(clock.now()).is_some())
            .count();
        assert_eq!(
            granted, 50,
            "50 % of 100 first attempts on top of the floor"
        );
    }

    #[test]
    fn the_window_slides() {
        let clock = ManualClock::new();
        let mut b = RetryBudget::new(BudgetConfig::default(), clock.now());
        while b.try_withdraw(clock.now()).is_some() {}
        clock.advance(Duration::from_millis(9_999));
        assert!(
            b.try_withdraw(clock.now()).is_none(),
            "still inside the window"
        );
        clock.advance(Duration::from_millis(1));
        assert!(
            b.try_withdraw(clock.now()).is_some(),
            "the first slot left the window"
        );
    }

    #[test]
    fn a_refunded_token_can_be_taken_again() {
        let clock = ManualClock::new();
        let mut b = RetryBudget::new(BudgetConfig::default(), clock.now());
        let tokens: Vec<_> = std::iter::from_fn(|| b.try_withdraw(clock.now())).collect();
        assert_eq!(tokens.len(), 10);
        b.refund(tokens[3]);
        assert!(b.try_withdraw(clock.now()).is_some(), "refunded");
        assert!(b.try_withdraw(clock.now()).is_none());
        // A token whose slot left the window refunds nothing.
        clock.advance(Duration::from_secs(11));
        let t = b.try_withdraw(clock.now()).unwrap();
        b.refund(tokens[0]);
        let (_, retries) = b.window(clock.now());
        assert_eq!(retries, 1);
        b.refund(t);
        assert_eq!(b.window(clock.now()).1, 0);
    }

    #[derive(Debug, Clone)]
    enum Op {
        First,
        Retry,
        Advance(u64),
    }

    proptest! {
        /// Against a plain model (every event with its time): a retry is
        /// granted only if the retries in its window stay within the floor
        /// plus ratio × first attempts of that window.
        #[test]
        fn budget_is_never_exceeded(ops in prop::collection::vec(prop_oneof![
            3 => Just(Op::First), 3 => Just(Op::Retry), 1 => (0u64..4_000).prop_map(Op::Advance)
        ], 1..600)) {
            let clock = ManualClock::new();
            let config = BudgetConfig { ratio: 0.25, min_retries: 3, window_ms: 10_000 };
            let mut b = RetryBudget::new(config, clock.now());
            let origin = clock.now();
            let mut firsts: Vec<u64> = Vec::new();
            let mut retries: Vec<u64> = Vec::new();
            for op in ops {
                let slot = (clock.now() - origin).as_millis() as u64 / 1_000;
                let in_window = |v: &Vec<u64>| v.iter().filter(|s| **s + 10 > slot).count() as f64;
                match op {
                    Op::Advance(ms) => clock.advance(Duration::from_millis(ms)),
                    Op::First => { b.deposit(clock.now()); firsts.push(slot); }
                    Op::Retry => {
                        if b.try_withdraw(clock.now()).is_some() {
                            retries.push(slot);
                            prop_assert!(in_window(&retries) <= 3.0 + 0.25 * in_window(&firsts));
                        } else {
                            prop_assert!(in_window(&retries) + 1.0 > 3.0 + 0.25 * in_window(&firsts));
                        }
                    }
                }
            }
        }
    }
}
