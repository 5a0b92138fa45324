//! `success-rate`: over the last `window_ms`, a provider with at least
//! `min_samples` outcomes it caused has a success rate `r` with standard
//! error `σ`; the best such rate is `best`. Its weight becomes
//! `weight × exp(−max(0, best − r − max(TOLERANCE, 2·σ_diff)) / SPREAD)`:
//! differences within the tolerance (or within two standard errors of the
//! difference) are noise, so two healthy providers keep their configured
//! split exactly; a provider 10 points below the best keeps about 20 % of
//! its weight, 40 points below almost none. With too few samples in the
//! window a provider keeps its weight, unless its few recent tries did
//! clearly worse than the best, in which case its longer memory (the
//! scorecard's whole window) judges it.

use super::{AdaptiveConfig, Judgement, Measured, SPREAD, Seen, TOLERANCE};

/// The rate and its standard error, when there are enough samples.
pub(super) fn rate(min_samples: u64, (ok, n): (u64, u64)) -> Option<(f64, f64)> {
    (n >= min_samples && n > 0).then(|| {
        let r = ok as f64 / n as f64;
        // Never a zero error: a run of all successes or all failures is
        // still a sample.
        let p = (ok as f64 + 1.0) / (n as f64 + 2.0);
        (r, (p * (1.0 - p) / n as f64).sqrt())
    })
}

/// Each option's rate as the strategy judges it (see the file's doc).
pub(super) fn rates(cfg: &AdaptiveConfig, options: &[Seen]) -> Vec<Option<(f64, f64)>> {
    let judged = |s: &Seen| rate(cfg.min_samples, s.view.outcomes);
    let best_recent = options
        .iter()
        .filter(|s| s.eligible)
        .filter_map(judged)
        .map(|(r, _)| r)
        .fold(None::<f64>, |b, r| Some(b.map_or(r, |b| b.max(r))));
    options
        .iter()
        .map(|s| {
            judged(s).or_else(|| {
                let (ok, n) = s.view.outcomes;
                let fine = n > 0
                    && best_recent.is_none_or(|b| {
                        // Within two standard errors of the best: a failure
                        // or two among a few tries is no evidence.
                        let p = (ok as f64 + 1.0) / (n as f64 + 2.0);
                        let se = (p * (1.0 - p) / n as f64).sqrt();
                        ok as f64 / n as f64 + 2.0 * se >= b - TOLERANCE
                    });
                if fine {
                    None
                } else {
                    rate(cfg.min_samples, s.view.longer)
                }
            })
        })
        .collect()
}

/// The factor (0, 1] each option's weight is multiplied by (1 for one
/// not eligible or not judged), with each option's rate.
pub(super) fn factors(cfg: &AdaptiveConfig, options: &[Seen]) -> (Vec<f64>, Vec<Option<f64>>) {
    let rates = rates(cfg, options);
    let best = options
        .iter()
        .zip(&rates)
        .filter(|(s, _)| s.eligible)
        .filter_map(|(_, r)| *r)
        .fold(None::<(f64, f64)>, |b, r| match b {
            Some(b) if b.0 >= r.0 => Some(b),
            _ => Some(r),
        });
    let factors = rates
        .iter()
        .map(|r| match (r, best) {
            (Some((r, se)), Some((best, best_se))) => {
                // A gap within two standard errors of the difference (or
                // the tolerance) is noise.
                let noise = 2.0 * (se * se + best_se * best_se).sqrt();
                let gap = (best - r - TOLERANCE.max(noise)).max(0.0);
                (-gap / SPREAD).exp()
            }
            _ => 1.0,
        })
        .collect();
    (factors, rates.iter().map(|r| r.map(|(r, _)| r)).collect())
}

/// The `success-rate` judgement: weights by factor; an option below half
/// its weight is demoted (a fallback tries it after the others).
pub(super) fn judge(cfg: &AdaptiveConfig, options: &[Seen]) -> Judgement {
    let (factors, rates) = factors(cfg, options);
    let best = rates
        .iter()
        .zip(options)
        .filter(|(_, s)| s.eligible)
        .filter_map(|(r, _)| *r)
        .fold(None::<f64>, |b, r| Some(b.map_or(r, |b| b.max(r))));
    let mut j = Judgement::with_capacity(options.len());
    for ((s, f), r) in options.iter().zip(&factors).zip(&rates) {
        let eligible = s.eligible;
        j.weights.push(if eligible {
            f64::from(s.weight) * f
        } else {
            0.0
        });
        j.demoted.push(eligible && *f < 0.5);
        j.rank.push(-f);
        let note = match (r, best) {
            _ if !eligible => String::new(),
            (Some(r), Some(b)) if *f < 1.0 => format!(
                "{:.1} % vs the best {:.1} %: keeps {:.1} % of its weight",
                r * 100.0,
                b * 100.0,
                f * 100.0
            ),
            (Some(_), _) => "within noise of the best: its configured weight".into(),
            (None, _) => format!(
                "fewer than {} outcomes: its configured weight",
                cfg.min_samples
            ),
        };
        j.scores.push(Measured {
            success_rate: *r,
            note,
            ..Measured::default()
        });
    }
    j
}
