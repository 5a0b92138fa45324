//! Smooth weighted round-robin (nginx's algorithm): each pick adds every
//! eligible provider's weight to its running score, takes the highest, and
//! subtracts the total from the winner. With weights 70/30 every 10
//! consecutive picks give exactly 7 and 3, interleaved, with no randomness.
//! Ineligible providers are skipped for that pick and their share goes to
//! the others; when they come back the shares are restored.

/// Running state of one quota's choice.
#[derive(Debug, Clone)]
pub struct SmoothWeighted {
    pub(crate) weights: Vec<u32>,
    current: Vec<i64>,
}

impl SmoothWeighted {
    /// A chooser over providers with these weights (index = provider).
    pub fn new(weights: Vec<u32>) -> Self {
        let n = weights.len();
        Self {
            weights,
            current: vec![0; n],
        }
    }

    /// Pick among providers for which `eligible(i)` holds; `None` if none is.
    pub fn pick(&mut self, eligible: impl Fn(usize) -> bool) -> Option<usize> {
        let mut total: i64 = 0;
        let mut best: Option<usize> = None;
        for i in 0..self.weights.len() {
            if !eligible(i) || self.weights[i] == 0 {
                continue;
            }
            let w = i64::from(self.weights[i]);
            self.current[i] += w;
            total += w;
            if best.is_none_or(|b| self.current[i] > self.current[b]) {
                best = Some(i);
            }
        }
        let b = best?;
        self.current[b] -= total;
        Some(b)
    }

    /// Eligible providers ordered by weight, heaviest first, `first` leading:
    /// the failover order after `first` failed.
    pub fn failover_order(&self, first: usize, eligible: impl Fn(usize) -> bool) -> Vec<usize> {
        let mut rest: Vec<usize> = (0..self.weights.len())
            .filter(|&i| i != first && eligible(i) && self.weights[i] > 0)
            .collect();
        rest.sort_by(|a, b| self.weights[*b].cmp(&self.weights[*a]).then(a.cmp(b)));
        let mut order = vec![first];
        order.extend(rest);
        order
    }
}

/// Longest cycle (sum of weights over their common divisor) replayed
/// exactly; longer ones use a low-discrepancy sequence.
const MAX_REPLAYED_CYCLE: u64 = 4096;

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// The `n`th pick (from 0) of a fresh smooth rotation over the eligible
/// providers: what a rotation shared by several replicas picks for the
/// ticket `n` each run draws, so the split holds across them as it does
/// within one (the same picks, prefix by prefix). A cycle longer
/// than [`MAX_REPLAYED_CYCLE`] after dividing the weights by their common
/// divisor picks by the golden-ratio sequence instead (shares within a few
/// picks).
pub fn nth(weights: &[u32], eligible: impl Fn(usize) -> bool, n: u64) -> Option<usize> {
    let live: Vec<usize> = (0..weights.len())
        .filter(|&i| eligible(i) && weights[i] > 0)
        .collect();
    let divisor = live
        .iter()
        .fold(0, |g, &i| gcd(g, u64::from(weights[i])))
        .max(1);
    let total: u64 = live.iter().map(|&i| u64::from(weights[i]) / divisor).sum();
    if total == 0 {
        return None;
    }
    if total <= MAX_REPLAYED_CYCLE {
        let reduced = (0..weights.len())
            .map(|i| {
                if live.contains(&i) {
                    u32::try_from(u64::from(weights[i]) / divisor).unwrap_or(u32::MAX)
                } else {
                    0
                }
            })
            .collect();
        let mut sw = SmoothWeighted::new(reduced);
        let mut pick = None;
        for _ in 0..=(n % total) {
            pick = sw.pick(|_| true);
        }
        return pick;
    }
    // Golden-ratio (Weyl) sequence: evenly spread points in [0, 1).
    let x = (n as f64 * 0.618_033_988_749_894_9).fract();
    let target = (x * total as f64) as u64;
    let mut acc = 0;
    for &i in &live {
        acc += u64::from(weights[i]) / divisor;
        if target < acc {
            return Some(i);
        }
    }
    live.last().copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn seventy_thirty_is_exact_over_every_ten_runs() {
        let mut w = SmoothWeighted::new(vec![70, 30]);
        let picks: Vec<usize> = (0..1000).map(|_| w.pick(|_| true).unwrap()).collect();
        for window in picks.chunks(10) {
            assert_eq!(window.iter().filter(|&&p| p == 0).count(), 7);
        }
    }

    #[test]
    fn an_ineligible_provider_gets_nothing_and_its_share_comes_back() {
        let mut w = SmoothWeighted::new(vec![70, 30]);
        let picks: Vec<usize> = (0..100).map(|_| w.pick(|i| i != 1).unwrap()).collect();
        assert!(picks.iter().all(|&p| p == 0));
        let picks: Vec<usize> = (0..1000).map(|_| w.pick(|_| true).unwrap()).collect();
        let ones = picks.iter().filter(|&&p| p == 1).count();
        assert!((299..=301).contains(&ones), "{ones}");
        assert_eq!(w.pick(|_| false), None);
    }

    #[test]
    fn tickets_drawn_by_three_replicas_keep_the_split_of_one() {
        // Tickets 0..1000 dealt round-robin to three replicas: the union of
        // their picks is the one rotation's, so every prefix is within one.
        let mut ones = 0;
        for n in 0..1000u64 {
            if nth(&[70, 30], |_| true, n) == Some(1) {
                ones += 1;
            }
            let exact = 0.3 * (n + 1) as f64;
            assert!((f64::from(ones) - exact).abs() < 1.0 + 1e-9, "{n}: {ones}");
        }
        assert_eq!(ones, 300);
        assert_eq!(nth(&[70, 30], |i| i == 1, 5), Some(1));
        assert_eq!(nth(&[70, 30], |_| false, 5), None);
        // A cycle too long to replay still splits close to the weights.
        let w = [700_001, 299_999];
        let big = (0..10_000)
            .filter(|&n| nth(&w, |_| true, n) == Some(1))
            .count();
        assert!((2_990..=3_010).contains(&big), "{big}");
    }

    #[test]
    fn with_more_than_two_providers_a_prefix_can_fall_behind_by_more_than_one_pick() {
        // The examples docs/engine.md and the property test name.
        for (weights, picks, share) in [
            (vec![4, 18, 18, 1, 18], 23, 7.017),
            (vec![5, 1, 1, 18, 18], 24, 10.047),
        ] {
            let mut w = SmoothWeighted::new(weights);
            let last = (0..picks).filter(|_| w.pick(|_| true) == Some(4)).count();
            assert_eq!(last + 1, share as usize, "{share}");
            assert!(share - last as f64 > 1.0);
        }
    }

    #[test]
    fn failover_goes_by_weight() {
        let w = SmoothWeighted::new(vec![10, 50, 30, 0]);
        assert_eq!(w.failover_order(0, |_| true), [0, 1, 2]);
        assert_eq!(w.failover_order(2, |i| i != 1), [2, 0]);
    }

    proptest! {
        /// Over any whole number of cycles (sum of weights), each provider
        /// is picked exactly its weight times. In any prefix no provider is
        /// a whole pick ahead of its exact share (the winner's score is at
        /// least the average, which is positive), and so none is k - 1
        /// picks behind (the shortfalls sum to zero): with two providers,
        /// within one pick either way. (With more, the shortfall can pass
        /// one pick: weights 4, 18, 18, 1, 18 leave the last 1.02 picks
        /// behind after 23.)
        #[test]
        fn shares_match_weights(weights in prop::collection::vec(1u32..20, 1..6), cycles in 1usize..4) {
            let total: u32 = weights.iter().sum();
            let mut w = SmoothWeighted::new(weights.clone());
            let mut counts = vec![0u32; weights.len()];
            for n in 1..=(total as usize * cycles) {
                counts[w.pick(|_| true).unwrap()] += 1;
                let behind = (weights.len() - 1).max(1) as f64;
                for (i, &c) in counts.iter().enumerate() {
                    let exact = f64::from(weights[i]) * n as f64 / f64::from(total);
                    prop_assert!(f64::from(c) - exact < 1.0 + 1e-9, "provider {} after {} picks: {} vs {}", i, n, c, exact);
                    prop_assert!(exact - f64::from(c) < behind + 1e-9, "provider {} after {} picks: {} vs {}", i, n, c, exact);
                }
            }
            for (i, &c) in counts.iter().enumerate() {
                prop_assert_eq!(c, weights[i] * cycles as u32);
            }
        }
    }
}
