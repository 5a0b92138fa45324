//! One option's attempts: its retries at one app, a pinned key's run at
//! the app it is pinned to, and a feature run as an option.

use super::ctx::*;
use crate::adapter::{AttemptError, CallRequest, ErrorClass, FailureKind, Idempotency};
use crate::admission::{Overload, OverloadReason, Wait};
use crate::clock;
use crate::compiled::CompiledOption;
use crate::mapping::Scope;
use crate::observer::AttemptEvent;
use crate::records::Pin;
use crate::retry::RetryPolicy;
use crate::rules::RuleAction;
use crate::run::{ErrorCode, RunError};
use crate::trace::{SkipReason, Trace};
use serde_json::Value;
use std::time::Duration;

/// One option: map the input, call with retries, map the output. Each
/// try is admitted by its app's gate first; `spill` makes the first try
/// give up at once when the app is saturated.
pub(crate) async fn run_option(
    ctx: &RunCtx<'_>,
    opt: &CompiledOption,
    bkey: &str,
    input: &Value,
    spill: bool,
    trace: &mut Trace,
) -> OptionEnd {
    let inner = ctx.inner;
    let Some(adapter) = inner.adapter(ctx.product, &opt.app, ctx.env) else {
        let e = AttemptError::new(
            ErrorClass::Internal,
            FailureKind::Host,
            format!(
                "app `{}` is not installed for env `{}`; install it for this env",
                opt.app, ctx.env
            ),
        );
        record(trace, opt, 1, Err(&e), Duration::ZERO);
        return OptionEnd::Failed {
            error: e,
            idempotency: Idempotency::Unsafe,
            failover: false,
        };
    };
    let idempotency = declared(opt, adapter.info());
    let mut mapped = match map_input(opt, input, idempotency, trace) {
        Ok(v) => Some(v),
        Err(end) => return end,
    };
    let stats_key = if opt.breaker_key.is_none() {
        bkey.to_string()
    } else {
        ctx.default_key(opt)
    };
    let gate = inner.gate(ctx.product, ctx.env, &opt.app);
    let mut last: Option<AttemptError> = None;
    // A try that may have acted decides how the option ends, whatever the
    // retries after it answered: only a success resolves it.
    let mut acted: Option<AttemptError> = None;
    // A rule said to retry the last error whatever its class.
    let mut force_retry = false;
    for try_no in 0..=opt.policy.retries {
        // A retry's budget token, handed back if the retry is not made.
        let mut token = None;
        if let Some(prev) = &last {
            if !RetryPolicy::retryable(prev, idempotency) && !std::mem::take(&mut force_retry) {
                break;
            }
            match inner.withdraw_budget(ctx.product, ctx.env, &opt.app) {
                Some(t) => token = Some(t),
                None => {
                    trace.budget_denied += 1;
                    inner.budget_rejected(ctx.product, ctx.env, &opt.app);
                    break;
                }
            }
            let wait = inner.backoff(&opt.policy, try_no - 1, prev.retry_after);
            if inner.clock.now() + wait >= ctx.deadline_at {
                inner.refund_budget(ctx.product, ctx.env, &opt.app, token);
                break;
            }
            inner.clock.sleep(wait).await;
        }
        let refused = |o: Overload| {
            inner.observe_overload(ctx.product, ctx.env, &opt.app, &o.reason);
            inner.refund_budget(ctx.product, ctx.env, &opt.app, token);
            o
        };
        let queued_at = inner.clock.now();
        let wait = if try_no == 0 && spill {
            Wait::Never
        } else {
            Wait::Until(ctx.deadline_at)
        };
        let permit = match gate.admit(&*inner.clock, wait).await {
            Ok(p) => p,
            Err(o) => {
                let o = refused(o);
                if last.is_some() {
                    break; // the option ends with the provider's last error
                }
                return if spill {
                    OptionEnd::Spilled(o)
                } else {
                    OptionEnd::Overloaded(o)
                };
            }
        };
        let now = inner.clock.now();
        inner.observe_admitted(ctx.product, ctx.env, &opt.app, now - queued_at);
        let ticket = match inner.admit_breaker(bkey, ctx.spec(opt), now).await {
            Ok(t) => t,
            Err(open) if last.is_none() => {
                return OptionEnd::Skipped(SkipReason::BreakerOpen {
                    open: true,
                    breaker: bkey.to_string(),
                    last_error: open.last_error.map(|e| e.to_string()),
                });
            }
            Err(_) => {
                inner.refund_budget(ctx.product, ctx.env, &opt.app, token);
                break;
            }
        };
        // Before an action with an effect goes to an app, the key's record
        // names that app: a retry after a crash goes there, never elsewhere.
        if idempotency.has_effect()
            && let Some(rec) = ctx.record
            && !rec
                .pin_before_send(
                    &*inner.records,
                    Pin {
                        app: opt.app.clone(),
                        provider: opt.provider.clone(),
                    },
                )
                .await
        {
            inner.breakers.release(bkey, ticket);
            inner.refund_budget(ctx.product, ctx.env, &opt.app, token);
            return OptionEnd::Stop(Box::new(RunError {
                retry_after_ms: Some(1_000),
                ..RunError::new(
                    ErrorCode::IdempotencyUnavailable,
                    format!(
                        "the record of idempotency key `{}` could not name app `{}` before sending, so nothing was sent to it; retry later",
                        ctx.key, opt.app
                    ),
                )
            }));
        }
        if try_no == 0 {
            // Every provider's first try is a first attempt on its app,
            // failovers included: it earns that app its retry allowance.
            inner.deposit_budget(ctx.product, ctx.env, &opt.app);
        }
        let remaining = ctx.deadline_at.saturating_duration_since(now);
        let deadline = opt.timeout.map_or(remaining, |t| t.min(remaining));
        // The last possible try takes the input instead of copying it.
        let input_now = if try_no == opt.policy.retries {
            mapped.take().unwrap_or_default()
        } else {
            mapped.clone().unwrap_or_default()
        };
        let request = CallRequest {
            action: opt.action.clone(),
            input: input_now,
            idempotency_key: ctx.key.to_string(),
            deadline,
            env: ctx.env.to_string(),
            session: ctx.session.cloned(),
        };
        let in_flight = inner.scorecards.start(&stats_key, now);
        let mut hedge = None;
        let result = match opt.hedge {
            // Only a safe action is hedged (checked at define time; an
            // override at run time cannot make it otherwise).
            Some(h) if idempotency == Idempotency::Safe && h.to == crate::hedge::HedgeTo::Same => {
                let (r, rec) = super::hedging::hedged_call(
                    ctx, opt, &adapter, &gate, &stats_key, request, deadline, h,
                )
                .await;
                hedge = Some(rec);
                r
            }
            _ => match clock::timeout(&*inner.clock, deadline + GRACE, adapter.call(request)).await
            {
                Ok(r) => r.map_err(AttemptError::bounded),
                Err(_) => Err(AttemptError::new(
                    ErrorClass::Ambiguous,
                    FailureKind::DeadlineExceeded,
                    format!("no answer within the {} ms deadline", deadline.as_millis()),
                )),
            },
        };
        drop(permit);
        let ended = in_flight.end();
        let end = inner.clock.now();
        if let Err(e) = &result
            && e.class == ErrorClass::Overloaded
        {
            // The runtime had no instance free in time: the provider was
            // never called, so nothing about it is recorded.
            inner.breakers.release(bkey, ticket);
            let o = refused(Overload {
                reason: OverloadReason::NoInstance,
                retry_after: Duration::from_secs(1),
            });
            if last.is_some() {
                break;
            }
            return OptionEnd::Overloaded(o);
        }
        let took = end.saturating_duration_since(now);
        if matches!(&result, Err(e) if e.kind == FailureKind::Overload) {
            // The host's own limit ended an attempt that had already sent
            // a request (an exchange adapter found no instance to read the
            // answer): its class says what the run may do next, but it
            // moves nothing of the provider's.
            inner.breakers.release(bkey, ticket);
        } else {
            inner
                .record_breaker(bkey, ticket, result.as_ref().map(|_| ()), end)
                .await;
            inner.count(&stats_key, result.as_ref().map(|_| ()));
            inner
                .scorecards
                .record_ended(&ended, end, result.as_ref().map(|_| ()), took);
        }
        inner.observe_attempt(&AttemptEvent {
            product: ctx.product,
            env: ctx.env,
            app: &opt.app,
            action: &opt.action,
            provider: &opt.provider,
            try_number: try_no + 1,
            result: result.as_ref().map(|_| ()),
            duration: took,
        });
        match result {
            Ok(response) => {
                record(trace, opt, try_no + 1, Ok(()), took);
                note_hedge(trace, hedge);
                let scope = Scope {
                    input: Some(input),
                    response: Some(&response.output),
                    ..Scope::default()
                };
                return match opt.output.apply(&scope) {
                    Ok(v) => OptionEnd::Served(v),
                    Err(e) => OptionEnd::Stop(Box::new(RunError::new(
                        ErrorCode::Mapping,
                        format!(
                            "provider `{}` served, but its output mapping failed: {e}; not failing over because the action ran",
                            opt.provider
                        ),
                    ))),
                };
            }
            Err(e) => {
                if e.class == ErrorClass::RateLimited
                    && let Some(after) = e.retry_after
                {
                    // The provider asked the host to slow down: pause the
                    // app's admission rather than let every run pay for a
                    // failed attempt.
                    gate.cool_down(end, after);
                }
                record(trace, opt, try_no + 1, Err(&e), took);
                note_hedge(trace, hedge);
                // The definition's rules on provider errors decide before
                // the class does; never over an ambiguous outcome of an
                // action with an effect (a key is honoured by one app).
                if let Some((at, rule)) = crate::rules::find(&opt.rules, &e) {
                    let guarded = (e.class == ErrorClass::Ambiguous || acted.is_some())
                        && idempotency.has_effect();
                    let mut said = format!("{at}: {}", rule.describe());
                    if guarded {
                        said.push_str(
                            "; not applied: the attempt may have acted and the action is not safe",
                        );
                    }
                    if let Some(a) = trace.attempts.last_mut() {
                        a.rule = Some(said);
                    }
                    if !guarded {
                        match rule.then {
                            RuleAction::Stop => {
                                let code = if e.class == ErrorClass::Rejected {
                                    ErrorCode::Rejected
                                } else {
                                    ErrorCode::Stopped
                                };
                                return OptionEnd::Stop(Box::new(RunError::new(
                                    code,
                                    format!(
                                        "rule {at} ({}) stopped the run at provider `{}`: {e}; not retried and no failover",
                                        rule.describe(),
                                        opt.provider
                                    ),
                                )));
                            }
                            RuleAction::Retry => force_retry = true,
                            RuleAction::Failover | RuleAction::Cooldown => {
                                if let Some(ms) = rule.cooldown_ms {
                                    let pause = Duration::from_millis(ms)
                                        .max(e.retry_after.unwrap_or_default());
                                    gate.pause(end, pause);
                                }
                                return OptionEnd::Failed {
                                    error: e,
                                    idempotency,
                                    failover: true,
                                };
                            }
                        }
                    }
                }
                if e.class == ErrorClass::Ambiguous && acted.is_none() {
                    acted = Some(e.clone());
                }
                last = Some(e);
            }
        }
    }
    let last = last.expect("at least one try ran");
    let error = match acted {
        Some(mut first) if last.class != ErrorClass::Ambiguous => {
            first.message = format!(
                "{} (the retries with the same key did not resolve it; the last: {last})",
                first.message
            );
            first
        }
        _ => last,
    };
    OptionEnd::Failed {
        error,
        idempotency,
        failover: false,
    }
}

/// Put what hedging did on the attempt just recorded.
fn note_hedge(trace: &mut Trace, hedge: Option<crate::hedge::HedgeRecord>) {
    if let (Some(h), Some(a)) = (hedge, trace.attempts.last_mut()) {
        a.hedge = Some(h);
    }
}
