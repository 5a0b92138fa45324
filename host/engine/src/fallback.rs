//! Fallback runs: options in their defined order; unhealthy or open ones
//! are skipped; each option gets its retries; the first success serves.
//! With `adaptive`, the strategy may move options behind the others.

use super::attempt::{RunCtx, try_in_order};
use super::run::RunError;
use super::trace::Trace;
use crate::choice::decide;
use crate::compiled::CompiledRoute;
use serde_json::Value;

pub(crate) async fn run(
    ctx: &RunCtx<'_>,
    route: &CompiledRoute,
    input: &Value,
    trace: &mut Trace,
) -> Result<(Value, String), RunError> {
    let configured: Vec<usize> = (0..route.options.len()).collect();
    // Adaptive routing, when the fallback asks for it: the strategy
    // demotes options behind the others (live, unless this run explores
    // or falls outside the rollout); in shadow it only records.
    if let Some(cfg) = route.adaptive {
        let reasons: Vec<_> = route
            .options
            .iter()
            .map(|o| ctx.ineligible(o, &ctx.breaker_key(o, input)))
            .collect();
        let choice = decide(ctx, route, &reasons, cfg, true);
        let routes = choice.routes();
        let mut t = choice.trace;
        let order = match choice.order {
            Some(o) if routes => o,
            _ => {
                t.configured = configured
                    .iter()
                    .find(|&&i| reasons[i].is_none())
                    .map(|&i| route.options[i].provider.clone());
                configured
            }
        };
        trace.adaptive = Some(Box::new(t));
        return try_in_order(ctx, route, &order, true, input, trace).await;
    }
    try_in_order(ctx, route, &configured, true, input, trace).await
}
