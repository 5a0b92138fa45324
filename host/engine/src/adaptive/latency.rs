//! `latency`: among the eligible providers whose success rate is within
//! the `success-rate` strategy's tolerance of the best (its factor is at
//! least one half: at most about 3.5 points beyond the noise), the
//! fastest by p95 latency over the window, counting as equally fast every
//! one within `latency_tolerance_percent` of the fastest; among those the
//! least busy (fewest attempts in flight per unit of weight), and among
//! equally busy ones a draw by weight. A provider with fewer than
//! `min_samples` timed attempts in the window is judged by the
//! scorecard's whole window, and with fewer there too it counts as fast
//! (it is tried until it has its samples). The others are demoted: tried
//! after, fastest first.

use super::{AdaptiveConfig, Judgement, Measured, Seen, success};

/// The p95 the strategy judges an option by, ms.
fn p95(cfg: &AdaptiveConfig, s: &Seen) -> Option<f64> {
    let (n, p) = s.view.p95_ms;
    if n >= cfg.min_samples {
        return p;
    }
    let (n, p) = s.view.longer_p95_ms;
    if n >= cfg.min_samples { p } else { None }
}

pub(super) fn judge(cfg: &AdaptiveConfig, options: &[Seen]) -> Judgement {
    let (factors, rates) = success::factors(cfg, options);
    let latencies: Vec<Option<f64>> = options.iter().map(|s| p95(cfg, s)).collect();
    let within: Vec<bool> = options
        .iter()
        .zip(&factors)
        .map(|(s, f)| s.eligible && *f >= 0.5)
        .collect();
    let fastest = latencies
        .iter()
        .zip(&within)
        .filter(|(_, w)| **w)
        .filter_map(|(l, _)| *l)
        .fold(None::<f64>, |b, l| Some(b.map_or(l, |b| b.min(l))));
    let fast: Vec<bool> = latencies
        .iter()
        .zip(&within)
        .map(|(l, w)| {
            *w && match (l, fastest) {
                (Some(l), Some(f)) => *l <= f * (1.0 + cfg.latency_tolerance()),
                _ => true,
            }
        })
        .collect();
    // Least busy among the fast: in flight per unit of weight.
    let busy = |i: usize| options[i].view.in_flight as f64 / f64::from(options[i].weight.max(1));
    let least = (0..options.len())
        .filter(|&i| fast[i])
        .map(busy)
        .fold(None::<f64>, |b, x| Some(b.map_or(x, |b| b.min(x))));
    let mut j = Judgement::with_capacity(options.len());
    for i in 0..options.len() {
        let s = &options[i];
        let chosen = fast[i] && least.is_some_and(|l| busy(i) <= l);
        j.weights.push(if chosen {
            f64::from(s.weight.max(1))
        } else {
            0.0
        });
        j.demoted.push(s.eligible && !fast[i]);
        // Demoted ones are tried fastest first; unknown latency after.
        j.rank.push(latencies[i].unwrap_or(f64::MAX / 2.0));
        let note = if !s.eligible {
            String::new()
        } else if !within[i] {
            "its success rate is too far below the best's".into()
        } else {
            match (latencies[i], fastest) {
                (Some(l), Some(f)) if !fast[i] => {
                    format!("p95 {l:.0} ms, slower than the fastest's {f:.0} ms")
                }
                (None, _) => format!(
                    "fewer than {} timed attempts: tried as fast",
                    cfg.min_samples
                ),
                _ if !chosen => "as fast, but busier than another".into(),
                _ => "among the fastest and least busy".into(),
            }
        };
        j.scores.push(Measured {
            success_rate: rates[i],
            p95_ms: latencies[i],
            note,
            ..Measured::default()
        });
    }
    j
}
