//! Retries: how long to wait before the next try.
//!
//! Exponential backoff with full jitter (a uniformly random wait between 0
//! and `base × 2^retry`, capped at `max_backoff`), never shorter than the
//! provider's Retry-After. Whether to retry at all is decided by the error
//! class: `rejected` never retries.

use crate::adapter::{AttemptError, ErrorClass, Idempotency};
use std::time::Duration;

/// Per-option retry settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryPolicy {
    /// Retries after the first try.
    pub retries: u32,
    /// Backoff base, in milliseconds.
    pub base_ms: u64,
    /// Longest backoff, in milliseconds.
    pub max_backoff_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            retries: 0,
            base_ms: 50,
            max_backoff_ms: 5_000,
        }
    }
}

/// A source of uniform randomness in `[0, 1)`, injectable so tests are
/// deterministic. SplitMix64 underneath.
#[derive(Debug, Clone)]
pub struct Jitter {
    state: u64,
}

impl Jitter {
    /// A generator from `seed`.
    pub fn seeded(seed: u64) -> Self {
        Self { state: seed }
    }

    /// A generator seeded from the time and address space.
    pub fn from_entropy() -> Self {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let local = 0u8;
        Self::seeded(t ^ (&local as *const u8 as u64).rotate_left(32))
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Next value in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl RetryPolicy {
    /// Whether an attempt that failed with `error` may be retried on the
    /// same provider: never for `rejected` (the input is wrong) or
    /// `internal` (the adapter is); `ambiguous` only for safe actions and
    /// those the app deduplicates by key (the retry goes to the same app
    /// with the same key).
    pub fn retryable(error: &AttemptError, idempotency: Idempotency) -> bool {
        match error.class {
            // An overloaded attempt never reached the provider; admission
            // already waited as long as the run could.
            ErrorClass::Rejected | ErrorClass::Internal | ErrorClass::Overloaded => false,
            ErrorClass::Ambiguous => idempotency.retries_after_ambiguous(),
            ErrorClass::Unavailable | ErrorClass::Timeout | ErrorClass::RateLimited => true,
        }
    }

    /// The wait before retry number `retry` (0 for the first retry).
    pub fn backoff(
        &self,
        retry: u32,
        retry_after: Option<Duration>,
        jitter: &mut Jitter,
    ) -> Duration {
        let ceiling = self
            .base_ms
            .saturating_mul(1u64.checked_shl(retry.min(32)).unwrap_or(u64::MAX))
            .min(self.max_backoff_ms);
        let wait = Duration::from_millis((ceiling as f64 * jitter.next_f64()) as u64);
        match retry_after {
            Some(ra) => wait.max(ra),
            None => wait,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapter::FailureKind;

    #[test]
    fn backoff_is_bounded_by_the_exponential_ceiling() {
        let p = RetryPolicy {
            retries: 5,
            base_ms: 100,
            max_backoff_ms: 1_000,
        };
        let mut j = Jitter::seeded(7);
        for retry in 0..10 {
            let ceiling = (100u64 << retry.min(10)).min(1_000);
            for _ in 0..200 {
                let w = p.backoff(retry, None, &mut j);
                assert!(w <= Duration::from_millis(ceiling), "retry {retry}: {w:?}");
            }
        }
    }

    #[test]
    fn jitter_spreads_over_the_whole_range() {
        let mut j = Jitter::seeded(42);
        let samples: Vec<f64> = (0..10_000).map(|_| j.next_f64()).collect();
        assert!(samples.iter().all(|x| (0.0..1.0).contains(x)));
        let low = samples.iter().filter(|x| **x < 0.5).count();
        assert!((4_700..5_300).contains(&low), "{low}");
    }

    #[test]
    fn retry_after_is_honoured() {
        let p = RetryPolicy::default();
        let mut j = Jitter::seeded(1);
        assert!(p.backoff(0, Some(Duration::from_secs(2)), &mut j) >= Duration::from_secs(2));
    }

    #[test]
    fn rejected_never_retries_and_ambiguous_only_when_idempotent() {
        use Idempotency::{Keyed, Safe, Unsafe};
        let e = |class| AttemptError::new(class, FailureKind::Provider, "x");
        assert!(!RetryPolicy::retryable(&e(ErrorClass::Rejected), Safe));
        assert!(!RetryPolicy::retryable(&e(ErrorClass::Ambiguous), Unsafe));
        assert!(RetryPolicy::retryable(&e(ErrorClass::Ambiguous), Keyed));
        assert!(RetryPolicy::retryable(&e(ErrorClass::Ambiguous), Safe));
        assert!(RetryPolicy::retryable(&e(ErrorClass::Unavailable), Unsafe));
        assert!(RetryPolicy::retryable(&e(ErrorClass::RateLimited), Unsafe));
    }
}
