//! Smooth weighted round-robin (nginx's algorithm): each pick adds every
//! eligible provider's weight to its running score, takes the highest, and
//! subtracts the total from the winner. With weights 70/30 every 10
//! consecutive picks give exactly 7 and 3, interleaved, with no randomness.
//! Ineligible providers are skipped for that pick and their share goes to
//! the others; when they come back the shares are restored.

/// Running state of one quota's choice.
#[derive(Debug, Clone)]
pub struct SmoothWeighted {
    weights: Vec<u32>,
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
    fn failover_goes_by_weight() {
        let w = SmoothWeighted::new(vec![10, 50, 30, 0]);
        assert_eq!(w.failover_order(0, |_| true), [0, 1, 2]);
        assert_eq!(w.failover_order(2, |i| i != 1), [2, 0]);
    }

    proptest! {
        /// Over any whole number of cycles (sum of weights), each provider
        /// is picked exactly its weight times; any prefix is within one
        /// pick of its exact share.
        #[test]
        fn shares_match_weights(weights in prop::collection::vec(1u32..20, 1..6), cycles in 1usize..4) {
            let total: u32 = weights.iter().sum();
            let mut w = SmoothWeighted::new(weights.clone());
            let mut counts = vec![0u32; weights.len()];
            for n in 1..=(total as usize * cycles) {
                counts[w.pick(|_| true).unwrap()] += 1;
                for (i, &c) in counts.iter().enumerate() {
                    let exact = f64::from(weights[i]) * n as f64 / f64::from(total);
                    prop_assert!((f64::from(c) - exact).abs() < 1.0 + 1e-9, "provider {} after {} picks: {} vs {}", i, n, c, exact);
                }
            }
            for (i, &c) in counts.iter().enumerate() {
                prop_assert_eq!(c, weights[i] * cycles as u32);
            }
        }
    }
}
