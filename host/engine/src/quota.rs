//! Quota runs: smooth weighted round-robin among eligible providers
//! (healthy or unknown, breaker not open), failover to the other eligible
//! ones by weight, and panic mode (all of them, by weight) when none is
//! eligible.

use super::attempt::{RunCtx, try_in_order};
use super::run::{ErrorCode, RunError};
use super::trace::{Skip, SkipReason, Trace};
use super::weighted::SmoothWeighted;
use crate::choice::decide;
use crate::compiled::CompiledRoute;
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
    let mut adaptive = route
        .adaptive
        .map(|cfg| decide(ctx, route, &reasons, cfg, false));
    if let Some(choice) = adaptive.take_if(|c| c.routes()) {
        let order = choice.order.unwrap_or_default();
        trace.adaptive = Some(Box::new(choice.trace));
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
    if let Some(mut t) = adaptive.map(|c| c.trace) {
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
