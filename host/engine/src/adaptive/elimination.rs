//! `elimination`: each provider's score is the share of its last
//! `min_samples` outcomes (the ones it caused, newer than `window_ms`)
//! that served; rewarded by each success, penalised by each failure. When
//! it falls below `threshold_percent` the provider is ejected for
//! `ejection_ms × 2^(k−1)` (its k-th ejection in a row), at most
//! `max_ejection_ms`; it starts over at `ejection_ms` once it stayed in
//! `max_ejection_ms` after its last ejection. An ejected provider is
//! demoted: tried only after every other one failed, and its score is
//! forgotten, so on its return it is judged on fresh outcomes. At most
//! `max_ejected_percent` of the eligible providers are ejected at once
//! (the worst first), and never the last eligible one: past the cap an
//! ejected provider is used as usual. For a fallback this demotes a sick
//! primary before its breaker would open.

use super::{AdaptiveConfig, Judgement, Measured, Seen};

/// Who ejects an option: records its ejection and says until when, ms;
/// and ends one early.
pub(crate) trait Ejector {
    fn eject(&mut self, option: usize) -> u64;
    fn restore(&mut self, option: usize);
}

pub(super) fn judge(
    cfg: &AdaptiveConfig,
    options: &[Seen],
    now_ms: u64,
    ejector: &mut dyn Ejector,
) -> Judgement {
    let n = u32::try_from(cfg.min_samples).unwrap_or(128);
    let scores: Vec<Option<f64>> = options
        .iter()
        .map(|s| {
            s.view
                .recent
                .last(n, now_ms, cfg.window_ms)
                .map(|(ok, n)| f64::from(ok) / f64::from(n))
        })
        .collect();
    let eligible = options.iter().filter(|s| s.eligible).count();
    let pct = usize::try_from(cfg.max_ejected()).unwrap_or(100);
    let allowed = (eligible * pct / 100).min(eligible.saturating_sub(1));
    let mut until: Vec<Option<u64>> = options
        .iter()
        .map(|s| {
            (s.view.recent.ejected_until_ms > now_ms).then_some(s.view.recent.ejected_until_ms)
        })
        .collect();
    // Ejected, but its outcomes since (from runs that explored or failed
    // over to it) are good again: back early.
    for (i, u) in until.iter_mut().enumerate() {
        if u.is_some() && scores[i].is_some_and(|s| s >= cfg.threshold()) {
            ejector.restore(i);
            *u = None;
        }
    }
    // Those already out keep their places first (the worst first), then
    // new ones below the threshold, the worst first, while there is room.
    let mut out: Vec<usize> = (0..options.len())
        .filter(|&i| options[i].eligible && until[i].is_some())
        .collect();
    // The worst first (no score counts as the worst), ties by position.
    let worst_first = |a: &usize, b: &usize| {
        scores[*a]
            .unwrap_or(0.0)
            .total_cmp(&scores[*b].unwrap_or(0.0))
            .then(a.cmp(b))
    };
    out.sort_by(worst_first);
    out.truncate(allowed);
    let mut below: Vec<usize> = (0..options.len())
        .filter(|&i| {
            options[i].eligible
                && until[i].is_none()
                && scores[i].is_some_and(|s| s < cfg.threshold())
        })
        .collect();
    below.sort_by(worst_first);
    let mut capped = Vec::new();
    for i in below {
        if out.len() < allowed {
            until[i] = Some(ejector.eject(i));
            out.push(i);
        } else {
            capped.push(i);
        }
    }
    let mut j = Judgement::with_capacity(options.len());
    for (i, s) in options.iter().enumerate() {
        let ejected = out.contains(&i);
        j.weights.push(if s.eligible && !ejected {
            f64::from(s.weight.max(1))
        } else {
            0.0
        });
        j.demoted.push(ejected);
        j.rank.push(-scores[i].unwrap_or(0.0));
        let note = if !s.eligible {
            String::new()
        } else if ejected {
            format!(
                "ejected for {} ms more (score below {:.0} %)",
                until[i].unwrap_or(now_ms).saturating_sub(now_ms),
                cfg.threshold() * 100.0
            )
        } else if capped.contains(&i) || until[i].is_some() {
            format!(
                "{}, but at most {allowed} of {eligible} eligible providers may be out at once: used as usual",
                if until[i].is_some() {
                    "ejected"
                } else {
                    "below the threshold"
                }
            )
        } else if scores[i].is_none() {
            format!("fewer than {n} recent outcomes: not judged")
        } else {
            "above the threshold".into()
        };
        j.scores.push(Measured {
            score: scores[i],
            ejected_until_ms: ejected.then_some(until[i]).flatten(),
            note,
            ..Measured::default()
        });
    }
    j
}
