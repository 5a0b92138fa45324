//! Fallback runs: options in their defined order; unhealthy or open ones
//! are skipped; each option gets its retries; the first success serves.

use super::attempt::{RunCtx, try_in_order};
use super::run::RunError;
use super::trace::Trace;
use crate::compiled::CompiledRoute;
use serde_json::Value;

pub(crate) async fn run(
    ctx: &RunCtx<'_>,
    route: &CompiledRoute,
    input: &Value,
    trace: &mut Trace,
) -> Result<(Value, String), RunError> {
    let order: Vec<usize> = (0..route.options.len()).collect();
    try_in_order(ctx, route, &order, true, input, trace).await
}
