//! Quota runs: smooth weighted round-robin among eligible providers
//! (healthy or unknown, breaker not open), failover to the other eligible
//! ones by weight, and panic mode (all of them, by weight) when none is
//! eligible.

use super::attempt::{RunCtx, try_in_order};
use super::run::{ErrorCode, RunError};
use super::trace::{Skip, SkipReason, Trace};
use super::weighted::SmoothWeighted;
use crate::adaptive::{self, AdaptiveConfig, AdaptiveTrace, Mode, Score, Seen};
use crate::compiled::CompiledRoute;
use crate::locks::Recover;
use serde_json::Value;

pub(crate) async fn run(
    ctx: &RunCtx<'_>,
    route: &CompiledRoute,
    input: &Value,
    trace: &mut Trace,
) -> Result<(Value, String), RunError> {
    let reasons: Vec<_> = route
        .options
        .iter()
        .map(|o| ctx.ineligible(o, &ctx.breaker_key(o, input)))
        .collect();
    let eligible = |i: usize| reasons[i].is_none();
    // Adaptive routing, when the quota asks for it: live, it picks unless
    // this run explores or falls outside the rollout; in shadow it only
    // records what it would have picked.
    let mut adaptive = route.adaptive.map(|cfg| decide(ctx, route, &reasons, cfg));
    if let Some((t, Some(order))) = &adaptive
        && t.mode == Mode::Live
        && !t.explored
        && !t.outside_rollout
    {
        let order = order.clone();
        trace.adaptive = adaptive.take().map(|(t, _)| Box::new(t));
        record_skips(route, reasons, trace);
        return try_in_order(ctx, route, &order, false, input, trace).await;
    }
    // In cluster mode the rotation is one across replicas: each run draws
    // a ticket and takes that ticket's pick; without the store (or alone)
    // the replica's own rotation picks.
    let ticket = match &ctx.inner.shared {
        Some(shared) => {
            shared
                .quota_ticket(&format!("{}/{}/{}", ctx.product, ctx.env, route.tag))
                .await
        }
        None => None,
    };
    let picked = ctx
        .inner
        .with_quota_state(ctx.product, ctx.env, &route.tag, route, |sw| {
            let first = match ticket {
                Some(n) => super::weighted::nth(&sw.weights, eligible, n),
                None => sw.pick(eligible),
            };
            first.map(|first| sw.failover_order(first, eligible))
        });
    if let Some((mut t, _)) = adaptive {
        t.configured = picked
            .as_ref()
            .and_then(|o| o.first())
            .map(|&i| route.options[i].provider.clone());
        trace.adaptive = Some(Box::new(t));
    }
    match picked {
        Some(order) => {
            record_skips(route, reasons, trace);
            try_in_order(ctx, route, &order, false, input, trace).await
        }
        // Panic mode tries every provider an operator has not drained.
        None if route.panic_mode
            && reasons
                .iter()
                .any(|r| !matches!(r, Some(SkipReason::Drained))) =>
        {
            trace.panic_mode = true;
            let undrained = |i: usize| !matches!(reasons[i], Some(SkipReason::Drained));
            let all = SmoothWeighted::new(route.options.iter().map(|o| o.weight).collect());
            let heaviest = (0..route.options.len())
                .filter(|&i| undrained(i))
                .max_by_key(|&i| (route.options[i].weight, std::cmp::Reverse(i)))
                .expect("an undrained provider");
            let order = all.failover_order(heaviest, undrained);
            try_in_order(ctx, route, &order, false, input, trace).await
        }
        None => {
            record_skips(route, reasons, trace);
            let why: Vec<String> = trace
                .skipped
                .iter()
                .map(|s| format!("{} ({})", s.provider, s.reason))
                .collect();
            Err(RunError::new(
                ErrorCode::NoProvider,
                format!(
                    "no provider of quota `{}` is eligible and panic mode is off: {}",
                    route.tag,
                    why.join(", ")
                ),
            ))
        }
    }
}

/// The adaptive choice of this run: its trace (scores, what it chose) and
/// the failover order it would route by (`None`: nothing eligible).
fn decide(
    ctx: &RunCtx<'_>,
    route: &CompiledRoute,
    reasons: &[Option<SkipReason>],
    cfg: AdaptiveConfig,
) -> (AdaptiveTrace, Option<Vec<usize>>) {
    let now = ctx.inner.clock.now();
    let seen: Vec<Seen> = route
        .options
        .iter()
        .zip(reasons)
        .map(|(o, r)| {
            let (outcomes, longer) = ctx.inner.scorecards.outcomes(
                &crate::compiled::option_key(ctx.product, ctx.env, o),
                now,
                cfg.window_ms,
            );
            Seen {
                weight: o.weight,
                eligible: r.is_none(),
                outcomes,
                longer,
            }
        })
        .collect();
    let weights = adaptive::weights(&cfg, &seen);
    let (u_rollout, u_explore, u_pick) = {
        let mut j = ctx.inner.jitter.locked();
        (j.next_f64(), j.next_f64(), j.next_f64())
    };
    let order = adaptive::pick(&weights, u_pick).map(|first| adaptive::order(&weights, first));
    let trace = AdaptiveTrace {
        strategy: cfg.strategy,
        mode: cfg.mode,
        explored: u_explore * 100.0 < f64::from(cfg.explore_percent),
        outside_rollout: u_rollout * 100.0 >= f64::from(cfg.rollout_percent),
        chosen: order
            .as_ref()
            .map(|o| route.options[o[0]].provider.clone())
            .unwrap_or_default(),
        configured: None,
        scores: route
            .options
            .iter()
            .zip(&seen)
            .zip(&weights)
            .map(|((o, s), w)| Score {
                provider: o.provider.clone(),
                success_rate: (s.outcomes.1 >= cfg.min_samples)
                    .then(|| s.outcomes.0 as f64 / s.outcomes.1 as f64),
                samples: s.outcomes.1,
                weight: o.weight,
                adaptive_weight: *w,
            })
            .collect(),
    };
    (trace, order)
}

/// Put the providers that were not eligible into the trace, with why.
fn record_skips(route: &CompiledRoute, reasons: Vec<Option<SkipReason>>, trace: &mut Trace) {
    for (option, reason) in route.options.iter().zip(reasons) {
        if let Some(reason) = reason {
            trace.considered.push(option.provider.clone());
            trace.skipped.push(Skip {
                provider: option.provider.clone(),
                reason,
            });
        }
    }
}
