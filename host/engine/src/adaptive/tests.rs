use super::*;
use crate::scorecard::{Recent, View};
use proptest::prelude::{any, prop_assert, prop_assert_eq, proptest};

fn cfg(strategy: Strategy) -> AdaptiveConfig {
    AdaptiveConfig::new(strategy)
}

fn seen(weight: u32, ok: u64, n: u64) -> Seen {
    Seen {
        weight,
        eligible: true,
        view: View {
            outcomes: (ok, n),
            longer: (ok, n),
            ..View::default()
        },
    }
}

fn timed(mut s: Seen, n: u64, p95: f64) -> Seen {
    s.view.p95_ms = (n, Some(p95));
    s.view.longer_p95_ms = (n, Some(p95));
    s
}

/// Outcomes newest first: `true` served.
fn recent(mut s: Seen, outcomes: &[bool]) -> Seen {
    let mut r = Recent::default();
    for ok in outcomes.iter().rev() {
        r.bits = (r.bits << 1) | u128::from(*ok);
        r.len += 1;
    }
    r.last_ms = 1_000;
    s.view.recent = r;
    s
}

struct Log(Vec<usize>);
impl Ejector for Log {
    fn eject(&mut self, option: usize) -> u64 {
        self.0.push(option);
        31_000
    }
    fn restore(&mut self, option: usize) {
        self.0.retain(|&i| i != option);
    }
}

fn judge_all(c: &AdaptiveConfig, s: &[Seen]) -> (Judgement, Vec<usize>) {
    let mut log = Log(Vec::new());
    let j = judge(c, s, 1_000, &mut log);
    (j, log.0)
}

#[test]
fn healthy_providers_keep_the_configured_split() {
    let (j, _) = judge_all(
        &cfg(Strategy::SuccessRate),
        &[seen(70, 990, 1000), seen(30, 985, 1000)],
    );
    assert_eq!(j.weights, vec![70.0, 30.0]);
}

#[test]
fn a_degraded_provider_loses_its_share_and_few_samples_keep_the_prior() {
    let c = cfg(Strategy::SuccessRate);
    let (j, _) = judge_all(&c, &[seen(70, 60, 100), seen(30, 96, 100)]);
    let share = j.weights[0] / (j.weights[0] + j.weights[1]);
    assert!(share < 0.03, "{share}");
    assert!(j.demoted[0] && !j.demoted[1]);
    let (j, _) = judge_all(&c, &[seen(70, 5, 10), seen(30, 96, 100)]);
    assert_eq!(j.weights[0], 70.0, "10 samples are not enough to judge");
}

#[test]
fn latency_prefers_the_faster_within_the_success_tolerance() {
    let c = cfg(Strategy::Latency);
    // Equal rates: the fast one alone.
    let (j, _) = judge_all(
        &c,
        &[
            timed(seen(50, 990, 1000), 1000, 100.0),
            timed(seen(50, 995, 1000), 1000, 900.0),
        ],
    );
    assert_eq!(j.weights, vec![50.0, 0.0]);
    assert!(j.demoted[1]);
    // The fast one fails far more: out of tolerance, the slow one serves.
    let (j, _) = judge_all(
        &c,
        &[
            timed(seen(50, 700, 1000), 1000, 100.0),
            timed(seen(50, 995, 1000), 1000, 900.0),
        ],
    );
    assert_eq!(j.weights, vec![0.0, 50.0]);
    // Within the latency tolerance both are fast: the least busy first,
    // equally busy by weight.
    let mut a = timed(seen(70, 990, 1000), 1000, 100.0);
    let b = timed(seen(30, 990, 1000), 1000, 110.0);
    let (j, _) = judge_all(&c, &[a, b]);
    assert_eq!(j.weights, vec![70.0, 30.0]);
    a.view.in_flight = 7;
    let (j, _) = judge_all(&c, &[a, b]);
    assert_eq!(j.weights, vec![0.0, 30.0], "b is less busy per weight");
    // Unknown latency is tried as fast.
    let (j, _) = judge_all(
        &c,
        &[timed(seen(50, 990, 1000), 1000, 100.0), seen(50, 0, 0)],
    );
    assert_eq!(j.weights, vec![50.0, 50.0]);
}

#[test]
fn elimination_ejects_below_the_threshold_but_never_the_last_one() {
    let c = cfg(Strategy::Elimination);
    let bad: Vec<bool> = (0..20).map(|i| i % 2 == 0).collect();
    let good = vec![true; 20];
    let (j, ejected) = judge_all(
        &c,
        &[recent(seen(1, 0, 0), &bad), recent(seen(1, 0, 0), &good)],
    );
    assert_eq!(ejected, vec![0]);
    assert_eq!(j.weights, vec![0.0, 1.0]);
    assert!(j.demoted[0]);
    assert_eq!(j.scores[0].score, Some(0.5));
    // Both bad: at most half of them (one) out, never both.
    let (j, ejected) = judge_all(
        &c,
        &[recent(seen(1, 0, 0), &bad), recent(seen(1, 0, 0), &bad)],
    );
    assert_eq!(ejected.len(), 1);
    assert_eq!(j.weights.iter().filter(|w| **w > 0.0).count(), 1);
    // The only eligible one is never ejected.
    let mut other = recent(seen(1, 0, 0), &good);
    other.eligible = false;
    let (j, ejected) = judge_all(&c, &[recent(seen(1, 0, 0), &bad), other]);
    assert!(ejected.is_empty());
    assert_eq!(j.weights, vec![1.0, 0.0]);
    // Ejected, and good again since: back early.
    let mut back = recent(seen(1, 0, 0), &good);
    back.view.recent.ejected_until_ms = 20_000;
    let (j, _) = judge_all(&c, &[back, recent(seen(1, 0, 0), &good)]);
    assert_eq!(j.weights, vec![1.0, 1.0]);
    let mut still = recent(seen(1, 0, 0), &[true; 5]);
    still.view.recent.ejected_until_ms = 20_000;
    let (j, _) = judge_all(&c, &[still, recent(seen(1, 0, 0), &good)]);
    assert_eq!(
        j.weights,
        vec![0.0, 1.0],
        "five good outcomes are not enough"
    );
    // Too few recent outcomes: not judged.
    let (_, ejected) = judge_all(
        &c,
        &[
            recent(seen(1, 0, 0), &[false; 5]),
            recent(seen(1, 0, 0), &good),
        ],
    );
    assert!(ejected.is_empty());
}

#[test]
fn settings_of_another_strategy_and_out_of_range_are_refused() {
    let mut c = cfg(Strategy::SuccessRate);
    c.threshold_percent = Some(50);
    let e = c.validate("quota.q.adaptive").unwrap_err();
    assert_eq!(e.path, "quota.q.adaptive.threshold_percent");
    assert!(e.to_string().contains("elimination"), "{e}");
    let mut c = cfg(Strategy::Elimination);
    c.min_samples = 200;
    let e = c.validate("a").unwrap_err();
    assert_eq!(e.path, "a.min_samples");
    c.min_samples = 20;
    c.ejection_ms = Some(60_000);
    c.max_ejection_ms = Some(30_000);
    assert_eq!(c.validate("a").unwrap_err().path, "a.max_ejection_ms");
}

proptest! {
    /// Never a provider that is not eligible; never nothing while one is
    /// eligible; a quota's order holds every eligible option once; a
    /// fallback's order holds every option once; elimination never
    /// ejects past its share or the last one.
    #[test]
    fn never_an_ineligible_provider(
        opts in proptest::collection::vec(
            (1u32..100, 0u64..200, 0u64..200, any::<bool>(), any::<u128>(), 0u32..=128, 0.0f64..2000.0, 0u64..5),
            1..6,
        ),
        strategy in 0usize..3,
        u in 0.0f64..1.0,
    ) {
        let c = cfg([Strategy::SuccessRate, Strategy::Latency, Strategy::Elimination][strategy]);
        let seen: Vec<Seen> = opts
            .iter()
            .map(|&(w, ok, extra, e, bits, len, p95, busy)| Seen {
                weight: w,
                eligible: e,
                view: View {
                    outcomes: (ok, ok + extra),
                    longer: (ok, ok + extra),
                    p95_ms: (ok + extra, Some(p95)),
                    p99_ms: Some(p95),
                    longer_p95_ms: (ok + extra, Some(p95)),
                    in_flight: busy,
                    recent: Recent { bits, len, last_ms: 1_000, ..Recent::default() },
                },
            })
            .collect();
        let (j, ejected) = judge_all(&c, &seen);
        let eligible: Vec<bool> = seen.iter().map(|s| s.eligible).collect();
        let n_eligible = eligible.iter().filter(|e| **e).count();
        prop_assert!(ejected.iter().all(|&i| eligible[i]));
        prop_assert!(ejected.len() <= n_eligible / 2);
        prop_assert!(n_eligible == 0 || ejected.len() < n_eligible);
        match pick(&j.weights, u) {
            None => prop_assert!(seen.iter().all(|s| !s.eligible)),
            Some(i) => {
                prop_assert!(seen[i].eligible);
                let o = order(&j, &eligible, i);
                prop_assert_eq!(o.len(), n_eligible);
                prop_assert!(o.iter().all(|&k| seen[k].eligible));
            }
        }
        let mut f = demoted_order(&j);
        f.sort_unstable();
        prop_assert_eq!(f, (0..seen.len()).collect::<Vec<_>>());
    }
}
