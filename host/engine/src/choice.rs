//! The adaptive choice of a run, for quotas and fallbacks: read each
//! option's scorecard, let the strategy judge (`adaptive/`), draw the
//! rollout, exploration and pick from the engine's seeded source, and
//! explain it all in the trace.

use crate::adaptive::{
    self, AdaptiveConfig, AdaptiveTrace, Ejector, Judgement, Score, Seen, Strategy,
};
use crate::attempt::RunCtx;
use crate::compiled::{CompiledRoute, option_key};
use crate::locks::Recover;
use crate::trace::SkipReason;

/// What the strategy chose for one run.
pub(crate) struct Choice {
    /// The trace's account (without `configured`, which the caller adds).
    pub trace: AdaptiveTrace,
    /// The order the strategy routes by (`None`: nothing eligible).
    pub order: Option<Vec<usize>>,
}

impl Choice {
    /// Whether this run routes by the strategy's order.
    pub(crate) fn routes(&self) -> bool {
        self.order.is_some()
            && self.trace.mode == adaptive::Mode::Live
            && !self.trace.explored
            && !self.trace.outside_rollout
    }
}

/// Ejects through the engine's scorecards.
struct Eject<'a> {
    ctx: &'a RunCtx<'a>,
    keys: &'a [String],
    cfg: &'a AdaptiveConfig,
}

impl Ejector for Eject<'_> {
    fn eject(&mut self, option: usize) -> u64 {
        let (base, max) = (self.cfg.ejection(), self.cfg.max_ejection());
        self.ctx
            .inner
            .scorecards
            .eject(&self.keys[option], self.ctx.inner.clock.now(), max, |k| {
                base.saturating_mul(1u64 << k.min(20)).min(max)
            })
    }

    fn restore(&mut self, option: usize) {
        self.ctx
            .inner
            .scorecards
            .restore(&self.keys[option], self.ctx.inner.clock.now());
    }
}

/// The adaptive choice of this run over `route`'s options, `reasons`
/// saying which are not eligible. A quota picks by the judgement's
/// weights; a fallback (`ordered`) keeps its order with the demoted
/// behind.
pub(crate) fn decide(
    ctx: &RunCtx<'_>,
    route: &CompiledRoute,
    reasons: &[Option<SkipReason>],
    cfg: AdaptiveConfig,
    ordered: bool,
) -> Choice {
    let now = ctx.inner.clock.now();
    let latency = cfg.strategy == Strategy::Latency;
    let keys: Vec<String> = route
        .options
        .iter()
        .map(|o| option_key(ctx.product, ctx.env, o))
        .collect();
    let seen: Vec<Seen> = route
        .options
        .iter()
        .zip(reasons)
        .zip(&keys)
        .map(|((o, r), key)| Seen {
            weight: o.weight.max(1),
            eligible: r.is_none(),
            view: ctx.inner.scorecards.view(key, now, cfg.window_ms, latency),
        })
        .collect();
    let now_ms = ctx.inner.scorecards.now_ms(now);
    let j = adaptive::judge(
        &cfg,
        &seen,
        now_ms,
        &mut Eject {
            ctx,
            keys: &keys,
            cfg: &cfg,
        },
    );
    let (u_rollout, u_explore, u_pick) = {
        let mut r = ctx.inner.jitter.locked();
        (r.next_f64(), r.next_f64(), r.next_f64())
    };
    let eligible: Vec<bool> = seen.iter().map(|s| s.eligible).collect();
    let order = if ordered {
        // A fallback: the first eligible one of its order goes first.
        let o = adaptive::demoted_order(&j);
        o.iter().any(|&i| eligible[i]).then_some(o)
    } else {
        adaptive::pick(&j.weights, u_pick).map(|first| adaptive::order(&j, &eligible, first))
    };
    let chosen = order
        .as_ref()
        .and_then(|o| o.iter().find(|&&i| eligible[i]))
        .map(|&i| route.options[i].provider.clone())
        .unwrap_or_default();
    let trace = AdaptiveTrace {
        strategy: cfg.strategy,
        mode: cfg.mode,
        explored: u_explore * 100.0 < f64::from(cfg.explore_percent),
        outside_rollout: u_rollout * 100.0 >= f64::from(cfg.rollout_percent),
        chosen,
        configured: None,
        scores: scores(route, &seen, &j, now_ms, ordered),
    };
    Choice { trace, order }
}

fn scores(
    route: &CompiledRoute,
    seen: &[Seen],
    j: &Judgement,
    now_ms: u64,
    ordered: bool,
) -> Vec<Score> {
    route
        .options
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let m = &j.scores[i];
            Score {
                provider: o.provider.clone(),
                success_rate: m.success_rate,
                samples: seen[i].view.outcomes.1,
                weight: if ordered { 0 } else { o.weight },
                adaptive_weight: j.weights[i],
                p95_ms: m.p95_ms,
                in_flight: seen[i].view.in_flight,
                score: m.score,
                ejected_for_ms: m.ejected_until_ms.map(|u| u.saturating_sub(now_ms)),
                demoted: j.demoted[i],
                note: m.note.clone(),
            }
        })
        .collect()
}
