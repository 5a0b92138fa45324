//! Adaptive routing for quotas: the configured weights become priors and
//! traffic moves toward the providers that have been succeeding, read from
//! their scorecards, with a bounded exploration share so a provider that
//! recovers is found again.
//!
//! The `success-rate` strategy: over the last `window_ms`, a provider with
//! at least `min_samples` outcomes it caused has a success rate `r`; the
//! best such rate is `best`. Its weight becomes
//! `weight × exp(−max(0, best − r − tolerance) / spread)` with a tolerance
//! of [`TOLERANCE`] (differences smaller than that are noise: two healthy
//! providers keep their configured split exactly) and a spread of
//! [`SPREAD`] (a provider 10 points below the best keeps about e^−1.6 ≈ 20 %
//! of its weight, 40 points below almost none). A provider with fewer
//! samples keeps its weight. `explore_percent` of runs pick by the
//! configured weights instead, so every eligible provider keeps being
//! tried. Eligibility (drained, forced, breakers, health, admission) and
//! the idempotency model are decided before and always win.

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

/// `adaptive = { … }` on a quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdaptiveConfig {
    /// `success-rate`.
    pub strategy: Strategy,
    /// `live` (default) or `shadow`.
    #[serde(default)]
    pub mode: Mode,
    /// Share of runs (0 to 50 %) that pick by the configured weights, so
    /// a provider the strategy avoids is still tried. Default 5.
    #[serde(default = "default_explore")]
    pub explore_percent: u32,
    /// How far back outcomes count, ms (10 000 to 300 000). Default 60 000.
    #[serde(default = "default_window")]
    pub window_ms: u64,
    /// Outcomes a provider needs in the window before its rate counts (1
    /// to 10 000). Default 20.
    #[serde(default = "default_min_samples")]
    pub min_samples: u64,
    /// Share of runs (0 to 100 %) the adaptive choice applies to; the rest
    /// route as configured. Default 100.
    #[serde(default = "default_rollout")]
    pub rollout_percent: u32,
}

impl AdaptiveConfig {
    /// Check the numbers; the error names the field and its range.
    pub fn validate(&self, at: &str) -> Result<(), crate::error::DefineError> {
        let bad = |field: &str, v: String, range: &str| {
            Err(crate::error::DefineError::new(
                format!("{at}.{field}"),
                format!("is {v}; it must be between {range}"),
            ))
        };
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
        if !(1..=10_000).contains(&self.min_samples) {
            return bad("min_samples", self.min_samples.to_string(), "1 and 10000");
        }
        if self.rollout_percent > 100 {
            return bad(
                "rollout_percent",
                self.rollout_percent.to_string(),
                "0 and 100",
            );
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
    /// Its configured weight.
    pub weight: u32,
    /// The weight the strategy gave it (0 when not eligible).
    pub adaptive_weight: f64,
}

/// The adaptive choice of one run, as the trace shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdaptiveTrace {
    /// The strategy.
    pub strategy: Strategy,
    /// `live` or `shadow`.
    pub mode: Mode,
    /// Whether this run picked by the configured weights to explore.
    pub explored: bool,
    /// Whether this run fell outside `rollout_percent` (configured choice).
    pub outside_rollout: bool,
    /// The provider the strategy chose.
    pub chosen: String,
    /// The provider the configured weights chose, when both were made
    /// (shadow mode, or a live run that explored is the same).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub configured: Option<String>,
    /// Every option's score.
    pub scores: Vec<Score>,
}

/// One option as the strategy sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Seen {
    pub weight: u32,
    pub eligible: bool,
    /// (successes, samples) in the window.
    pub outcomes: (u64, u64),
    /// (successes, samples) in the scorecard's whole window (5 min): the
    /// memory of a provider the strategy avoids, whose window holds only
    /// a few exploring tries.
    pub longer: (u64, u64),
}

/// The rate and its standard error, when there are enough samples.
fn rate(min_samples: u64, (ok, n): (u64, u64)) -> Option<(f64, f64)> {
    (n >= min_samples && n > 0).then(|| {
        let r = ok as f64 / n as f64;
        // Never a zero error: a run of all successes or all failures is
        // still a sample.
        let p = (ok as f64 + 1.0) / (n as f64 + 2.0);
        (r, (p * (1.0 - p) / n as f64).sqrt())
    })
}

/// The weights the strategy gives `options` (0 for one not eligible).
pub(crate) fn weights(cfg: &AdaptiveConfig, options: &[Seen]) -> Vec<f64> {
    let judged = |s: &Seen| rate(cfg.min_samples, s.outcomes);
    let best_recent = options
        .iter()
        .filter(|s| s.eligible)
        .filter_map(judged)
        .map(|(r, _)| r)
        .fold(None::<f64>, |b, r| Some(b.map_or(r, |b| b.max(r))));
    // With too few samples in the window: if every recent try served (or
    // the few tries do as well as the best), the provider is judged afresh
    // (its prior weight); otherwise its longer memory judges it.
    let rate = |s: &Seen| {
        judged(s).or_else(|| {
            let (ok, n) = s.outcomes;
            let fine = n > 0
                && best_recent.is_none_or(|b| {
                    // Within two standard errors of the best: a failure or
                    // two among a few tries is no evidence of sickness.
                    let p = (ok as f64 + 1.0) / (n as f64 + 2.0);
                    let se = (p * (1.0 - p) / n as f64).sqrt();
                    ok as f64 / n as f64 + 2.0 * se >= b - TOLERANCE
                });
            if fine {
                None
            } else {
                rate(cfg.min_samples, s.longer)
            }
        })
    };
    let best =
        options
            .iter()
            .filter(|s| s.eligible)
            .filter_map(rate)
            .fold(None::<(f64, f64)>, |b, r| match b {
                Some(b) if b.0 >= r.0 => Some(b),
                _ => Some(r),
            });
    options
        .iter()
        .map(|s| {
            if !s.eligible {
                return 0.0;
            }
            let w = f64::from(s.weight);
            match (rate(s), best) {
                (Some((r, se)), Some((best, best_se))) => {
                    // A gap within two standard errors of the difference
                    // (or the tolerance) is noise.
                    let noise = 2.0 * (se * se + best_se * best_se).sqrt();
                    let gap = (best - r - TOLERANCE.max(noise)).max(0.0);
                    w * (-gap / SPREAD).exp()
                }
                _ => w,
            }
        })
        .collect()
}

/// Pick by `weights` with a uniform draw `u` in [0, 1); `None` when every
/// weight is 0.
pub(crate) fn pick(weights: &[f64], u: f64) -> Option<usize> {
    let total: f64 = weights.iter().sum();
    if total <= 0.0 {
        return None;
    }
    let mut at = u.clamp(0.0, 1.0) * total;
    for (i, w) in weights.iter().enumerate() {
        if *w > 0.0 {
            if at < *w {
                return Some(i);
            }
            at -= w;
        }
    }
    weights.iter().rposition(|w| *w > 0.0)
}

/// The failover order after `first`: the other options with weight, by
/// weight, heaviest first (ties by position).
pub(crate) fn order(weights: &[f64], first: usize) -> Vec<usize> {
    let mut rest: Vec<usize> = (0..weights.len())
        .filter(|&i| i != first && weights[i] > 0.0)
        .collect();
    rest.sort_by(|&a, &b| weights[b].total_cmp(&weights[a]).then(a.cmp(&b)));
    let mut out = vec![first];
    out.extend(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::{any, prop_assert, prop_assert_eq, proptest};

    fn cfg() -> AdaptiveConfig {
        AdaptiveConfig {
            strategy: Strategy::SuccessRate,
            mode: Mode::Live,
            explore_percent: 5,
            window_ms: 60_000,
            min_samples: 20,
            rollout_percent: 100,
        }
    }

    fn seen(weight: u32, ok: u64, n: u64) -> Seen {
        Seen {
            weight,
            eligible: true,
            outcomes: (ok, n),
            longer: (ok, n),
        }
    }

    #[test]
    fn healthy_providers_keep_the_configured_split() {
        let w = weights(&cfg(), &[seen(70, 990, 1000), seen(30, 985, 1000)]);
        assert_eq!(w, vec![70.0, 30.0]);
    }

    #[test]
    fn a_degraded_provider_loses_its_share_and_few_samples_keep_the_prior() {
        let w = weights(&cfg(), &[seen(70, 60, 100), seen(30, 96, 100)]);
        let share = w[0] / (w[0] + w[1]);
        assert!(share < 0.03, "{share}");
        let w = weights(&cfg(), &[seen(70, 5, 10), seen(30, 96, 100)]);
        assert_eq!(w[0], 70.0, "10 samples are not enough to judge");
    }

    proptest! {
        /// Never a provider that is not eligible; never nothing while one
        /// is eligible; the order holds every eligible option once.
        #[test]
        fn never_an_ineligible_provider(
            opts in proptest::collection::vec((1u32..100, 0u64..200, 0u64..200, any::<bool>()), 1..6),
            u in 0.0f64..1.0,
        ) {
            let seen: Vec<Seen> = opts.iter().map(|&(w, ok, extra, e)| Seen { weight: w, eligible: e, outcomes: (ok, ok + extra), longer: (ok, ok + extra) }).collect();
            let ws = weights(&cfg(), &seen);
            match pick(&ws, u) {
                None => prop_assert!(seen.iter().all(|s| !s.eligible)),
                Some(i) => {
                    prop_assert!(seen[i].eligible);
                    let o = order(&ws, i);
                    let eligible = seen.iter().filter(|s| s.eligible).count();
                    prop_assert_eq!(o.len(), eligible);
                    prop_assert!(o.iter().all(|&j| seen[j].eligible));
                }
            }
        }
    }
}
