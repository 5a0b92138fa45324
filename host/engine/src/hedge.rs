//! Hedged requests: when a call of a **safe** action (a lookup, a status
//! check, a quote) has not answered after a delay, the same request goes
//! to the same app again, up to `max_extra` times, and the first success
//! wins; the others are cancelled (their requests dropped) and nothing of
//! a cancelled call counts against the provider. Each hedge draws a token
//! from the app's retry budget and is admitted by the app's gate without
//! queueing; without either, no hedge is sent. Only safe actions may be
//! hedged: an action that is keyed or unsafe is refused at define time.

use crate::error::DefineError;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Most extra requests one call may send.
pub const MAX_HEDGES: u32 = 3;

/// Where the delay comes from when the scorecard has enough samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum HedgeDelay {
    /// The option's p95 latency over the last minute.
    P95,
    /// The option's p99 latency over the last minute.
    P99,
}

fn one() -> u32 {
    1
}

/// Where a hedge goes.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum HedgeTo {
    /// The same app again (default).
    #[default]
    Same,
    /// The next eligible option of the route (another provider): every
    /// option of the route must be a safe action.
    Next,
}

fn is_same(t: &HedgeTo) -> bool {
    *t == HedgeTo::Same
}

/// `hedge = { delay_ms = 150, max_extra = 1 }` on a definition or option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HedgeConfig {
    /// Send a hedge after this long without an answer, ms (1 to 60 000).
    /// With `delay`, the delay until the scorecard has 20 timed attempts
    /// in the last minute.
    pub delay_ms: u64,
    /// `p95` or `p99`: the delay is the option's latency percentile over
    /// the last minute (never below 1 ms nor above `delay_ms × 10`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<HedgeDelay>,
    /// Extra requests at most (1 to 3), each `delay` after the previous
    /// one. Default 1. With `to = "next"`, one: the next option.
    #[serde(default = "one")]
    pub max_extra: u32,
    /// `same` (default): the same app again; `next`: the route's next
    /// eligible option, raced against this one.
    #[serde(default, skip_serializing_if = "is_same")]
    pub to: HedgeTo,
}

impl HedgeConfig {
    /// Check the numbers; the error names the field.
    pub fn validate(&self, at: &str) -> Result<(), DefineError> {
        if !(1..=60_000).contains(&self.delay_ms) {
            return Err(DefineError::new(
                format!("{at}.delay_ms"),
                format!("is {}; it must be between 1 and 60000", self.delay_ms),
            ));
        }
        if self.to == HedgeTo::Next && self.max_extra != 1 {
            return Err(DefineError::new(
                format!("{at}.max_extra"),
                "is for hedges to the same app; a hedge to the next option sends one (remove it)",
            ));
        }
        if !(1..=MAX_HEDGES).contains(&self.max_extra) {
            return Err(DefineError::new(
                format!("{at}.max_extra"),
                format!(
                    "is {}; it must be between 1 and {MAX_HEDGES}",
                    self.max_extra
                ),
            ));
        }
        Ok(())
    }

    /// The delay before a hedge, given the option's latency percentiles
    /// over the last minute (`(timed, p95, p99)`).
    pub(crate) fn delay_for(&self, seen: (u64, Option<f64>, Option<f64>)) -> Duration {
        let fixed = Duration::from_millis(self.delay_ms);
        let (timed, p95, p99) = seen;
        let learned = match self.delay {
            Some(HedgeDelay::P95) => p95,
            Some(HedgeDelay::P99) => p99,
            None => None,
        };
        match learned {
            Some(ms) if timed >= 20 => {
                Duration::from_secs_f64((ms / 1000.0).clamp(0.001, self.delay_ms as f64 / 100.0))
            }
            _ => fixed,
        }
    }
}

/// What hedging did during one attempt, as the trace shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct HedgeRecord {
    /// The delay used, ms.
    pub delay_ms: f64,
    /// Extra requests sent.
    pub sent: u32,
    /// Which request won: 0 the first, 1 the first hedge, …; absent when
    /// none succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub won_by: Option<u32>,
    /// Requests cancelled when another won.
    pub cancelled: u32,
    /// Why a hedge that was due was not sent (`retry budget`,
    /// `admission`), if so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withheld: Option<String>,
}

/// A hedge from one option to the next, as the trace shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OptionHedge {
    /// The option that was slow.
    pub from: String,
    /// The option raced against it.
    pub to: String,
    /// After how long, ms.
    pub delay_ms: f64,
    /// Which served first (absent when neither did).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub won_by: Option<String>,
    /// Whether the other was cancelled.
    pub cancelled: bool,
}
