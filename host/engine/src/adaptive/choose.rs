//! From a judgement to a run's order: a quota picks by weight and fails
//! over to the others by weight, then to the demoted by rank; a fallback
//! keeps its configured order with the demoted moved behind.

use super::Judgement;

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

/// A quota's failover order after `first`: the others with weight, by
/// weight, heaviest first (ties by position), then the `eligible` ones
/// without weight by the judgement's rank.
pub(crate) fn order(j: &Judgement, eligible: &[bool], first: usize) -> Vec<usize> {
    let w = &j.weights;
    let mut rest: Vec<usize> = (0..w.len()).filter(|&i| i != first && w[i] > 0.0).collect();
    rest.sort_by(|&a, &b| w[b].total_cmp(&w[a]).then(a.cmp(&b)));
    let mut last: Vec<usize> = (0..w.len())
        .filter(|&i| i != first && w[i] <= 0.0 && eligible[i])
        .collect();
    last.sort_by(|&a, &b| j.rank[a].total_cmp(&j.rank[b]).then(a.cmp(&b)));
    let mut out = vec![first];
    out.extend(rest);
    out.extend(last);
    out
}

/// A fallback's order: its configured order with the demoted moved
/// behind the others (still in configured order among themselves).
pub(crate) fn demoted_order(j: &Judgement) -> Vec<usize> {
    let n = j.demoted.len();
    let mut out: Vec<usize> = (0..n).filter(|&i| !j.demoted[i]).collect();
    out.extend((0..n).filter(|&i| j.demoted[i]));
    out
}
