//! One attempt's call, hedged: the first request, then after the delay
//! one more to the same app (up to `max_extra`, each a delay after the
//! last), each with its own retry-budget token and admission permit; the
//! first success wins and the rest are dropped (cancelled). Only an
//! option whose action is safe gets here.

use super::ctx::*;
use crate::adapter::{Adapter, AttemptError, CallRequest, CallResponse, ErrorClass, FailureKind};
use crate::admission::{Gate, Wait};
use crate::clock;
use crate::compiled::CompiledOption;
use crate::hedge::{HedgeConfig, HedgeRecord};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

type Call<'a> = Pin<Box<dyn Future<Output = Result<CallResponse, AttemptError>> + Send + 'a>>;

/// How long a hedge waits: `h`'s fixed delay, or the percentile it names
/// of the option's latency over the last minute (the scorecard is read
/// only then).
pub(super) fn delay(ctx: &RunCtx<'_>, key: &str, h: &HedgeConfig) -> Duration {
    let seen = match h.delay {
        Some(_) => {
            let v = ctx
                .inner
                .scorecards
                .view(key, ctx.inner.clock.now(), 60_000, true);
            (v.p95_ms.0, v.p95_ms.1, v.p99_ms)
        }
        None => (0, None, None),
    };
    h.delay_for(seen)
}

/// Call `adapter` with `request`, hedging by `h`; the result and what
/// hedging did.
#[allow(clippy::too_many_arguments)]
pub(super) async fn hedged_call<'a>(
    ctx: &'a RunCtx<'a>,
    opt: &'a CompiledOption,
    adapter: &'a Arc<dyn Adapter>,
    gate: &'a Arc<Gate>,
    stats_key: &'a str,
    request: CallRequest,
    deadline: Duration,
    h: HedgeConfig,
) -> (Result<CallResponse, AttemptError>, HedgeRecord) {
    let inner = ctx.inner;
    let delay = delay(ctx, stats_key, &h);
    let mut record = HedgeRecord {
        delay_ms: delay.as_secs_f64() * 1e3,
        ..HedgeRecord::default()
    };
    // The first request is in flight in the scorecard already (its
    // attempt counts it); each hedge counts itself while it runs.
    let call = move |r: CallRequest, permit: Option<crate::admission::Permit>| -> Call<'a> {
        Box::pin(async move {
            let _in_flight = permit
                .is_some()
                .then(|| inner.scorecards.start(stats_key, inner.clock.now()));
            let _permit = permit;
            match clock::timeout(&*inner.clock, deadline + GRACE, adapter.call(r)).await {
                Ok(r) => r.map_err(AttemptError::bounded),
                Err(_) => Err(AttemptError::new(
                    ErrorClass::Ambiguous,
                    FailureKind::DeadlineExceeded,
                    format!("no answer within the {} ms deadline", deadline.as_millis()),
                )),
            }
        })
    };
    let mut running: Vec<(u32, Call<'a>)> = vec![(0, call(request.clone(), None))];
    let mut timer = Some(inner.clock.timer(delay));
    let mut first_error: Option<AttemptError> = None;
    enum Ev {
        Done(usize, Result<CallResponse, AttemptError>),
        Due,
    }
    loop {
        let ev = std::future::poll_fn(|cx| {
            for (i, (_, f)) in running.iter_mut().enumerate() {
                if let Poll::Ready(r) = f.as_mut().poll(cx) {
                    return Poll::Ready(Ev::Done(i, r));
                }
            }
            if let Some(t) = timer.as_mut()
                && t.as_mut().poll(cx).is_ready()
            {
                return Poll::Ready(Ev::Due);
            }
            Poll::Pending
        })
        .await;
        match ev {
            Ev::Done(i, Ok(resp)) => {
                let which = running.swap_remove(i).0;
                record.won_by = Some(which);
                record.cancelled = u32::try_from(running.len()).unwrap_or(u32::MAX);
                inner.observe_hedge(ctx.product, ctx.env, &opt.app, &record);
                return (Ok(resp), record);
            }
            Ev::Done(i, Err(e)) => {
                drop(running.swap_remove(i));
                first_error.get_or_insert(e);
                if running.is_empty() {
                    // Every request sent failed: the attempt failed, with
                    // the first request's error (a hedge is not a retry).
                    inner.observe_hedge(ctx.product, ctx.env, &opt.app, &record);
                    return (Err(first_error.expect("an error")), record);
                }
            }
            Ev::Due => {
                timer = None;
                if inner.clock.now() + delay >= ctx.deadline_at {
                    continue;
                }
                let Some(token) = inner.withdraw_budget(ctx.product, ctx.env, &opt.app) else {
                    record.withheld = Some("retry budget".into());
                    inner.budget_rejected(ctx.product, ctx.env, &opt.app);
                    continue;
                };
                match gate.admit(&*inner.clock, Wait::Never).await {
                    Ok(permit) => {
                        record.sent += 1;
                        running.push((record.sent, call(request.clone(), Some(permit))));
                        if record.sent < h.max_extra {
                            timer = Some(inner.clock.timer(delay));
                        }
                    }
                    Err(o) => {
                        inner.refund_budget(ctx.product, ctx.env, &opt.app, Some(token));
                        inner.observe_overload(ctx.product, ctx.env, &opt.app, &o.reason);
                        record.withheld = Some("admission".into());
                    }
                }
            }
        }
    }
}
