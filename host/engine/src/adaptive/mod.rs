//! Adaptive routing: quotas and fallbacks that route by outcomes as well
//! as by what was configured, read from the options' scorecards.
//!
//! Three strategies, each a file here and each explained with its math in
//! docs/engine.md ("Adaptive routing"):
//! - `success-rate` (`success.rs`): the configured weights become priors
//!   and traffic moves toward the providers that have been succeeding;
//! - `latency` (`latency.rs`): the fastest among those within the
//!   success-rate tolerance, least busy first;
//! - `elimination` (`elimination.rs`): a provider whose recent score falls
//!   below a threshold is ejected for a time that doubles with repeated
//!   ejections, never more than a share of the providers, never the last.
//!
//! `choose.rs` turns a strategy's judgement into a pick and a failover
//! order. Eligibility (drained, forced, breakers, health, admission) and
//! the idempotency model are decided before and always win; every run
//! that asks explores (the configured choice) with `explore_percent`.

mod choose;
mod elimination;
mod latency;
mod success;

pub(crate) use choose::{demoted_order, order, pick};
pub(crate) use elimination::Ejector;

use crate::error::DefineError;
use crate::scorecard::View;
use serde::{Deserialize, Serialize};

/// Rate differences at most this big are treated as equal.
pub const TOLERANCE: f64 = 0.02;
/// How fast weight falls with the rate gap beyond the tolerance.
pub const SPREAD: f64 = 0.05;

/// Which algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Traffic toward the providers that succeed (weights as priors).
    SuccessRate,
    /// The fastest among those that succeed about as well as the best;
    /// the least busy among equally fast ones.
    Latency,
    /// A provider whose recent score falls below a threshold is ejected
    /// for a while (demoted to last).
    Elimination,
}

impl Strategy {
    /// Its name in config.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::SuccessRate => "success-rate",
            Strategy::Latency => "latency",
            Strategy::Elimination => "elimination",
        }
    }
}

/// Whether the adaptive choice is used.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Route by it.
    #[default]
    Live,
    /// Compute it and record it in the trace (and whether it agreed with
    /// the configured choice), but route as configured.
    Shadow,
}

fn default_explore() -> u32 {
    5
}
fn default_window() -> u64 {
    60_000
}
fn default_min_samples() -> u64 {
    20
}
fn default_rollout() -> u32 {
    100
}

/// `adaptive = { … }` on a quota or a fallback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdaptiveConfig {
    /// `success-rate`, `latency` or `elimination`.
    pub strategy: Strategy,
    /// `live` (default) or `shadow`.
    #[serde(default)]
    pub mode: Mode,
    /// Share of runs (0 to 50 %) that route as configured, so a provider
    /// the strategy avoids is still tried. Default 5.
    #[serde(default = "default_explore")]
    pub explore_percent: u32,
    /// How far back outcomes count, ms (10 000 to 300 000). Default 60 000.
    #[serde(default = "default_window")]
    pub window_ms: u64,
    /// Outcomes a provider needs in the window before its rate or latency
    /// counts (1 to 10 000; for `elimination` 1 to 128: its score is the
    /// share of its last `min_samples` outcomes that served). Default 20.
    #[serde(default = "default_min_samples")]
    pub min_samples: u64,
    /// Share of runs (0 to 100 %) the adaptive choice applies to; the rest
    /// route as configured. Default 100.
    #[serde(default = "default_rollout")]
    pub rollout_percent: u32,
    /// `latency`: providers whose p95 is within this many percent of the
    /// fastest count as equally fast (0 to 500). Default 20 (the
    /// histogram's resolution is about 19 %).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_tolerance_percent: Option<u32>,
    /// `elimination`: a provider is ejected when fewer than this share of
    /// its last `min_samples` outcomes served (1 to 99 %). Default 80.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold_percent: Option<u32>,
    /// `elimination`: the first ejection's length, ms (1 000 to
    /// 3 600 000); each ejection in a row doubles it. Default 30 000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ejection_ms: Option<u64>,
    /// `elimination`: the longest ejection, ms (`ejection_ms` to
    /// 3 600 000); a provider that stayed in this long after its last
    /// ejection starts over at `ejection_ms`. Default 300 000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ejection_ms: Option<u64>,
    /// `elimination`: at most this share of the eligible providers are
    /// ejected at once (1 to 100 %; never the last one). Default 50.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ejected_percent: Option<u32>,
}

impl AdaptiveConfig {
    /// `strategy` in live mode with every other setting at its default.
    pub fn new(strategy: Strategy) -> Self {
        Self {
            strategy,
            mode: Mode::Live,
            explore_percent: default_explore(),
            window_ms: default_window(),
            min_samples: default_min_samples(),
            rollout_percent: default_rollout(),
            latency_tolerance_percent: None,
            threshold_percent: None,
            ejection_ms: None,
            max_ejection_ms: None,
            max_ejected_percent: None,
        }
    }

    /// `latency_tolerance_percent` or its default.
    pub fn latency_tolerance(&self) -> f64 {
        f64::from(self.latency_tolerance_percent.unwrap_or(20)) / 100.0
    }
    /// `threshold_percent` or its default, as a share.
    pub fn threshold(&self) -> f64 {
        f64::from(self.threshold_percent.unwrap_or(80)) / 100.0
    }
    /// `ejection_ms` or its default.
    pub fn ejection(&self) -> u64 {
        self.ejection_ms.unwrap_or(30_000)
    }
    /// `max_ejection_ms` or its default (never below `ejection_ms`).
    pub fn max_ejection(&self) -> u64 {
        self.max_ejection_ms.unwrap_or(300_000).max(self.ejection())
    }
    /// `max_ejected_percent` or its default.
    pub fn max_ejected(&self) -> u32 {
        self.max_ejected_percent.unwrap_or(50)
    }

    /// Check the numbers; the error names the field and its range.
    pub fn validate(&self, at: &str) -> Result<(), DefineError> {
        let bad = |field: &str, v: String, range: &str| {
            Err(DefineError::new(
                format!("{at}.{field}"),
                format!("is {v}; it must be between {range}"),
            ))
        };
        let only = |field: &str, set: bool, strategy: Strategy| {
            if set && self.strategy != strategy {
                Err(DefineError::new(
                    format!("{at}.{field}"),
                    format!(
                        "applies only to strategy = \"{}\" (this one is \"{}\"); remove it",
                        strategy.as_str(),
                        self.strategy.as_str()
                    ),
                ))
            } else {
                Ok(())
            }
        };
        only(
            "latency_tolerance_percent",
            self.latency_tolerance_percent.is_some(),
            Strategy::Latency,
        )?;
        for (field, set) in [
            ("threshold_percent", self.threshold_percent.is_some()),
            ("ejection_ms", self.ejection_ms.is_some()),
            ("max_ejection_ms", self.max_ejection_ms.is_some()),
            ("max_ejected_percent", self.max_ejected_percent.is_some()),
        ] {
            only(field, set, Strategy::Elimination)?;
        }
        if self.explore_percent > 50 {
            return bad(
                "explore_percent",
                self.explore_percent.to_string(),
                "0 and 50",
            );
        }
        if !(10_000..=crate::scorecard::WINDOW_MS).contains(&self.window_ms) {
            return bad("window_ms", self.window_ms.to_string(), "10000 and 300000");
        }
        let most = if self.strategy == Strategy::Elimination {
            128
        } else {
            10_000
        };
        if !(1..=most).contains(&self.min_samples) {
            return bad(
                "min_samples",
                self.min_samples.to_string(),
                &format!("1 and {most} for strategy \"{}\"", self.strategy.as_str()),
            );
        }
        if self.rollout_percent > 100 {
            return bad(
                "rollout_percent",
                self.rollout_percent.to_string(),
                "0 and 100",
            );
        }
        if let Some(v) = self.latency_tolerance_percent
            && v > 500
        {
            return bad("latency_tolerance_percent", v.to_string(), "0 and 500");
        }
        if let Some(v) = self.threshold_percent
            && !(1..=99).contains(&v)
        {
            return bad("threshold_percent", v.to_string(), "1 and 99");
        }
        if let Some(v) = self.ejection_ms
            && !(1_000..=3_600_000).contains(&v)
        {
            return bad("ejection_ms", v.to_string(), "1000 and 3600000");
        }
        if let Some(v) = self.max_ejection_ms
            && !(self.ejection()..=3_600_000).contains(&v)
        {
            return bad(
                "max_ejection_ms",
                v.to_string(),
                &format!("ejection_ms ({}) and 3600000", self.ejection()),
            );
        }
        if let Some(v) = self.max_ejected_percent
            && !(1..=100).contains(&v)
        {
            return bad("max_ejected_percent", v.to_string(), "1 and 100");
        }
        Ok(())
    }
}

/// What the strategy knew of one option.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// The option's provider.
    pub provider: String,
    /// Its success rate in the window, when it had enough samples.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub success_rate: Option<f64>,
    /// Its outcomes in the window.
    pub samples: u64,
    /// Its configured weight (quotas; 0 in a fallback).
    pub weight: u32,
    /// The weight the strategy gave it (0 when not eligible or not
    /// chosen by the strategy).
    pub adaptive_weight: f64,
    /// `latency`: its p95 latency, ms, when it had enough samples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p95_ms: Option<f64>,
    /// Its attempts in flight when the choice was made.
    #[serde(default)]
    pub in_flight: u64,
    /// `elimination`: the share of its last `min_samples` outcomes that
    /// served, when it has that many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    /// `elimination`: how much longer it is ejected, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ejected_for_ms: Option<u64>,
    /// Moved behind the others by the strategy (tried only after them).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub demoted: bool,
    /// Why the strategy treated it so, in words.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
}

/// The adaptive choice of one run, as the trace shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdaptiveTrace {
    /// The strategy.
    pub strategy: Strategy,
    /// `live` or `shadow`.
    pub mode: Mode,
    /// Whether this run routed as configured to explore.
    pub explored: bool,
    /// Whether this run fell outside `rollout_percent` (configured choice).
    pub outside_rollout: bool,
    /// The provider the strategy chose.
    pub chosen: String,
    /// The provider the configured weights (or order) chose, when both
    /// were made (shadow mode, exploring, outside the rollout).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub configured: Option<String>,
    /// Every option's score.
    pub scores: Vec<Score>,
}

/// One option as the strategies see it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Seen {
    /// Configured weight (1 for a fallback's options).
    pub weight: u32,
    /// Not drained, forced, open, unhealthy or refused by admission.
    pub eligible: bool,
    /// Its scorecard.
    pub view: View,
}

/// What a strategy made of the options.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Judgement {
    /// The weight each option is picked by (0: not eligible, or not one
    /// the strategy chooses first).
    pub weights: Vec<f64>,
    /// Options moved behind the others.
    pub demoted: Vec<bool>,
    /// Among options with no weight, the order to try them in (lower
    /// first).
    pub rank: Vec<f64>,
    /// Per option: what the strategy read.
    pub scores: Vec<Measured>,
}

impl Judgement {
    /// An empty judgement for `n` options.
    pub(crate) fn with_capacity(n: usize) -> Self {
        Self {
            weights: Vec::with_capacity(n),
            demoted: Vec::with_capacity(n),
            rank: Vec::with_capacity(n),
            scores: Vec::with_capacity(n),
        }
    }
}

/// What a strategy read of one option, for the trace.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Measured {
    pub success_rate: Option<f64>,
    pub p95_ms: Option<f64>,
    pub score: Option<f64>,
    pub ejected_until_ms: Option<u64>,
    pub note: String,
}

/// Judge `options` by `cfg`'s strategy at `now_ms`; `eject` ejects an
/// option (elimination) and says until when.
pub(crate) fn judge(
    cfg: &AdaptiveConfig,
    options: &[Seen],
    now_ms: u64,
    eject: &mut dyn Ejector,
) -> Judgement {
    match cfg.strategy {
        Strategy::SuccessRate => success::judge(cfg, options),
        Strategy::Latency => latency::judge(cfg, options),
        Strategy::Elimination => elimination::judge(cfg, options, now_ms, eject),
    }
}

#[cfg(test)]
mod tests;
