//! A hedge to the next option: a slow option raced against the route's
//! next eligible one, the first to serve winning and the other dropped.

use super::ctx::*;
use super::option::run_option;
use crate::hedge::{HedgeConfig, HedgeRecord};

/// Whether an option's end served.
fn served(end: &OptionEnd) -> bool {
    matches!(end, OptionEnd::Served(_))
}

/// Option `i` (with its hedge to the next option, `h`) raced against
/// option `j`: `i` runs; if it has not ended after the delay, `j` runs
/// beside it and the first to serve wins, the other cancelled (dropped:
/// nothing of it counts against its provider). The ends that decide the
/// run, in the order they came: one that served, or both that did not.
#[allow(clippy::too_many_arguments)]
pub(super) async fn race(
    ctx: &RunCtx<'_>,
    route: &crate::compiled::CompiledRoute,
    i: usize,
    j: usize,
    bkey_i: &str,
    input: &serde_json::Value,
    spill: bool,
    h: HedgeConfig,
    trace: &mut crate::trace::Trace,
) -> Vec<(usize, OptionEnd)> {
    let inner = ctx.inner;
    let (oi, oj) = (&route.options[i], &route.options[j]);
    let now = inner.clock.now();
    let delay = super::hedging::delay(ctx, &ctx.default_key(oi), &h);
    let mut record = crate::hedge::OptionHedge {
        from: oi.provider.clone(),
        to: oj.provider.clone(),
        delay_ms: delay.as_secs_f64() * 1e3,
        won_by: None,
        cancelled: false,
    };
    let mut counted = HedgeRecord {
        delay_ms: record.delay_ms,
        ..HedgeRecord::default()
    };
    let bkey_j = ctx.breaker_key(oj, input);
    let mut trace_j =
        crate::trace::Trace::new(trace.kind, &trace.tag, &trace.env, &trace.idempotency_key);
    let ends = {
        let mut a = std::pin::pin!(run_option(ctx, oi, bkey_i, input, spill, trace));
        if now + delay >= ctx.deadline_at {
            return vec![(i, a.await)];
        }
        let timer = inner.clock.timer(delay);
        tokio::select! {
            biased;
            end = &mut a => return vec![(i, end)],
            () = timer => {}
        }
        // The hedge draws from the next provider's retry budget, like a
        // retry there; without a token, no hedge.
        if inner
            .withdraw_budget(ctx.product, ctx.env, &oj.app)
            .is_none()
        {
            inner.budget_rejected(ctx.product, ctx.env, &oj.app);
            counted.withheld = Some("retry budget".into());
            inner.observe_hedge(ctx.product, ctx.env, &oj.app, &counted);
            let end = a.await;
            drop(trace_j);
            return vec![(i, end)];
        }
        counted.sent = 1;
        let mut b = std::pin::pin!(run_option(ctx, oj, &bkey_j, input, false, &mut trace_j));
        let (mut end_a, mut end_b) = (None, None);
        loop {
            tokio::select! {
                e = &mut a, if end_a.is_none() => {
                    if served(&e) {
                        record.won_by = Some(oi.provider.clone());
                        counted.won_by = Some(0);
                        record.cancelled = end_b.is_none();
                        break vec![(i, e)];
                    }
                    end_a = Some(e);
                }
                e = &mut b, if end_b.is_none() => {
                    if served(&e) {
                        record.won_by = Some(oj.provider.clone());
                        counted.won_by = Some(1);
                        record.cancelled = end_a.is_none();
                        break vec![(j, e)];
                    }
                    end_b = Some(e);
                }
            }
            if let (Some(_), Some(_)) = (&end_a, &end_b) {
                break vec![
                    (i, end_a.take().expect("ended")),
                    (j, end_b.take().expect("ended")),
                ];
            }
        }
    };
    counted.cancelled = u32::from(record.cancelled);
    inner.observe_hedge(ctx.product, ctx.env, &oj.app, &counted);
    trace.considered.push(oj.provider.clone());
    trace.attempts.extend(trace_j.attempts);
    trace.skipped.extend(trace_j.skipped);
    trace.budget_denied += trace_j.budget_denied;
    trace.hedges.push(record);
    ends
}
