//! A latency histogram with log-spaced buckets: fixed memory (one `u32` a
//! bucket), mergeable by adding, and percentiles within one bucket's width
//! (about 19 % of the value: four buckets per doubling) from 0.1 ms to
//! about two minutes. Anything longer lands in the last bucket.

/// Buckets per doubling of the latency.
const PER_DOUBLING: usize = 4;
/// Doublings covered, from [`FLOOR_US`].
const DOUBLINGS: usize = 21;
/// The lower bound of the first bucket, µs.
const FLOOR_US: f64 = 100.0;
/// How many buckets.
pub(crate) const BUCKETS: usize = PER_DOUBLING * DOUBLINGS;

/// Counts of latencies per bucket: a scorecard's latency sketch, and a
/// history row's (kept sparse: [`Histogram::to_sparse`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Histogram {
    counts: [u32; BUCKETS],
    total: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: [0; BUCKETS],
            total: 0,
        }
    }
}

/// The bucket of a latency in µs.
fn bucket(us: u64) -> usize {
    if (us as f64) < FLOOR_US {
        return 0;
    }
    let i = ((us as f64 / FLOOR_US).log2() * PER_DOUBLING as f64) as usize;
    i.min(BUCKETS - 1)
}

/// The upper bound of bucket `i`, µs.
fn upper_us(i: usize) -> f64 {
    FLOOR_US * 2f64.powf((i + 1) as f64 / PER_DOUBLING as f64)
}

impl Histogram {
    /// The non-empty buckets as `(bucket, count)`, for storing.
    pub fn to_sparse(&self) -> Vec<(u16, u32)> {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(i, c)| (i as u16, *c))
            .collect()
    }

    /// From [`Histogram::to_sparse`]'s pairs; a bucket out of range is
    /// counted in the last one (a row from a build with more buckets).
    pub fn from_sparse(pairs: &[(u16, u32)]) -> Self {
        let mut h = Histogram::default();
        for &(i, c) in pairs {
            let i = usize::from(i).min(BUCKETS - 1);
            h.counts[i] = h.counts[i].saturating_add(c);
            h.total = h.total.saturating_add(u64::from(c));
        }
        h
    }

    /// Count one latency.
    pub(crate) fn record(&mut self, us: u64) {
        let b = bucket(us);
        self.counts[b] = self.counts[b].saturating_add(1);
        self.total = self.total.saturating_add(1);
    }

    /// Add `other`'s counts to these.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a = a.saturating_add(*b);
        }
        self.total = self.total.saturating_add(other.total);
    }

    /// Latencies counted.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The `q` quantile (0 < q ≤ 1), ms: the upper bound of the bucket it
    /// falls in; `None` with nothing counted.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((self.total as f64) * q.clamp(0.0, 1.0)).ceil().max(1.0) as u64;
        let mut seen = 0u64;
        for (i, c) in self.counts.iter().enumerate() {
            seen += u64::from(*c);
            if seen >= rank {
                return Some(upper_us(i) / 1000.0);
            }
        }
        Some(upper_us(BUCKETS - 1) / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn quantiles_of_a_known_spread() {
        let mut h = Histogram::default();
        for ms in 1..=100u64 {
            h.record(ms * 1000);
        }
        let p50 = h.quantile_ms(0.5).unwrap();
        let p95 = h.quantile_ms(0.95).unwrap();
        let p99 = h.quantile_ms(0.99).unwrap();
        assert!((50.0..=50.0 * 1.2).contains(&p50), "{p50}");
        assert!((95.0..=95.0 * 1.2).contains(&p95), "{p95}");
        assert!((99.0..=99.0 * 1.2).contains(&p99), "{p99}");
        assert_eq!(Histogram::default().quantile_ms(0.5), None);
        assert_eq!(Histogram::from_sparse(&h.to_sparse()), h);
    }

    proptest! {
        /// Every quantile is at or above the true one and within one
        /// bucket (19 %) of it, for latencies in the covered range.
        #[test]
        fn a_quantile_is_within_one_bucket(mut us in proptest::collection::vec(200u64..60_000_000, 1..300), q in 0.01f64..1.0) {
            let mut h = Histogram::default();
            for &u in &us { h.record(u); }
            us.sort_unstable();
            let rank = ((us.len() as f64) * q).ceil().max(1.0) as usize;
            let truth = us[rank - 1] as f64 / 1000.0;
            let got = h.quantile_ms(q).unwrap();
            prop_assert!(got >= truth * 0.999, "{got} < {truth}");
            prop_assert!(got <= truth * 1.19 + 0.001, "{got} > {truth} * 1.19");
        }
    }
}
