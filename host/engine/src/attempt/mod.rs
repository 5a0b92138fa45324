//! Trying providers: one option with its retries ([`run_option`]) and a
//! list of options in order with failover ([`try_in_order`]), shared by
//! fallbacks, quotas and feature action steps.
//!
//! `ctx.rs` holds what the attempts of a run share; `option.rs` one
//! option's attempts at its app (`hedging.rs`: a call hedged at the same
//! app; `race.rs`: an option raced against the next); this file the order
//! of options, a pinned key's run, and a feature run as an option (which
//! orders options again).

mod ctx;
mod hedging;
mod option;
mod race;

use crate::adapter::{ErrorClass, FailureKind, Idempotency};
use crate::admission::{Overload, OverloadReason};
use crate::compiled::{CompiledOption, CompiledRoute, OptionTarget};
use crate::definition::Kind;
use crate::mapping::Scope;
use crate::records::Pin;
use crate::run::{ErrorCode, RunError, RunOptions, RunResult};
use crate::trace::{Skip, SkipReason, Trace};
use ctx::*;
pub(crate) use ctx::{GRACE, RunCtx, declared, idempotency_words};
use option::*;
use serde_json::Value;
use std::time::Duration;

/// The option a hedge from `order[pos]` would race: its hedge goes to the
/// next option, and the next in `order` that has not run, is eligible and
/// is an action.
fn race_partner(
    ctx: &RunCtx<'_>,
    route: &CompiledRoute,
    order: &[usize],
    pos: usize,
    raced: &[usize],
    input: &Value,
) -> Option<(usize, crate::hedge::HedgeConfig)> {
    let h = route.options[order[pos]]
        .hedge
        .filter(|h| h.to == crate::hedge::HedgeTo::Next)?;
    order[pos + 1..]
        .iter()
        .copied()
        .find(|&j| {
            let o = &route.options[j];
            !raced.contains(&j)
                && matches!(o.target, OptionTarget::Action)
                && ctx.ineligible(o, &ctx.breaker_key(o, input)).is_none()
        })
        .map(|j| (j, h))
}

/// Try `route`'s options in `order`, failing over after each failure, and
/// return the mapped output and the provider that served.
pub(crate) async fn try_in_order(
    ctx: &RunCtx<'_>,
    route: &CompiledRoute,
    order: &[usize],
    check_eligibility: bool,
    input: &Value,
    trace: &mut Trace,
) -> Result<(Value, String), RunError> {
    let mut failures: Vec<String> = Vec::new();
    let mut overloaded: Option<Overload> = None;
    let mut deadline_hit = false;
    // Every failure asked to come back later (429 + Retry-After): the
    // caller is told when, the longest wait.
    let mut rate_limited: Option<Duration> = None;
    let mut others_failed = false;
    // Options a hedge from the one before already ran.
    let mut raced: Vec<usize> = Vec::new();
    for (pos, &i) in order.iter().enumerate() {
        if raced.contains(&i) {
            continue;
        }
        let opt = &route.options[i];
        trace.considered.push(opt.provider.clone());
        let bkey = ctx.breaker_key(opt, input);
        let skip = |trace: &mut Trace, reason| {
            trace.skipped.push(Skip {
                provider: opt.provider.clone(),
                reason,
            })
        };
        if check_eligibility && let Some(reason) = ctx.ineligible(opt, &bkey) {
            if matches!(reason, SkipReason::BreakerOpen { .. }) {
                ctx.blocked(opt);
            }
            skip(trace, reason);
            continue;
        }
        if ctx.inner.clock.now() >= ctx.deadline_at {
            skip(trace, SkipReason::Deadline);
            deadline_hit = true;
            continue;
        }
        // Spill over only where another provider could take the run.
        let spill = route.spillover
            && order[pos + 1..].iter().any(|&j| {
                let o = &route.options[j];
                ctx.ineligible(o, &ctx.breaker_key(o, input)).is_none()
            });
        let ends = match &opt.target {
            OptionTarget::Action => match race_partner(ctx, route, order, pos, &raced, input) {
                Some((j, h)) => {
                    raced.push(j);
                    // Boxed: only hedged options race, and inline the race's
                    // future would make every run's future as large.
                    Box::pin(race::race(ctx, route, i, j, &bkey, input, spill, h, trace)).await
                }
                None => vec![(i, run_option(ctx, opt, &bkey, input, spill, trace).await)],
            },
            OptionTarget::Feature(tag) => vec![(
                i,
                run_feature_option(ctx, opt, tag, &bkey, input, trace).await,
            )],
        };
        for (k, end) in ends {
            let opt = &route.options[k];
            let skip = |trace: &mut Trace, reason| {
                trace.skipped.push(Skip {
                    provider: opt.provider.clone(),
                    reason,
                })
            };
            if let OptionEnd::Skipped(SkipReason::BreakerOpen { .. }) = &end {
                ctx.blocked(opt);
            }
            match end {
                OptionEnd::Served(v) => {
                    trace.served_by = Some(opt.provider.clone());
                    return Ok((v, opt.provider.clone()));
                }
                OptionEnd::Stop(e) => return Err(*e),
                OptionEnd::Skipped(reason) => skip(trace, reason),
                OptionEnd::Spilled(o) => skip(trace, overload_skip(&o, true)),
                OptionEnd::Overloaded(o) => {
                    skip(trace, overload_skip(&o, false));
                    overloaded = Some(o);
                }
                OptionEnd::Failed {
                    error,
                    idempotency,
                    failover,
                } => {
                    if error.kind == FailureKind::DeadlineExceeded
                        && ctx.inner.clock.now() >= ctx.deadline_at
                    {
                        deadline_hit = true;
                    }
                    if error.class == ErrorClass::RateLimited
                        && let Some(after) = error.retry_after
                    {
                        rate_limited = Some(rate_limited.map_or(after, |a: Duration| a.max(after)));
                    } else {
                        others_failed = true;
                    }
                    match error.class {
                        // A rule said to fail over: the next option is tried.
                        _ if failover => failures.push(format!("{}: {}", opt.provider, error)),
                        ErrorClass::Rejected => {
                            return Err(RunError::new(
                                ErrorCode::Rejected,
                                format!(
                                    "provider `{}` rejected the input: {}; not retried and no failover (fix the input)",
                                    opt.provider, error.message
                                ),
                            ));
                        }
                        // A key is honoured by one app: after an attempt that
                        // may have acted, only a safe action moves on.
                        ErrorClass::Ambiguous
                            if idempotency.has_effect() && !route.failover_after_ambiguous =>
                        {
                            return Err(ambiguous_at(
                                ctx,
                                &opt.app,
                                &opt.provider,
                                format!(
                                    "the request may have executed at app `{}` (provider `{}`: {}); `{}` is {} there, so nothing else was tried. Check with the provider using idempotency key `{}`; a retry with this key goes to app `{}` only",
                                    opt.app,
                                    opt.provider,
                                    error.message,
                                    opt.action,
                                    idempotency_words(idempotency),
                                    ctx.key,
                                    opt.app
                                ),
                            ));
                        }
                        _ => failures.push(format!("{}: {}", opt.provider, error)),
                    }
                }
            }
        }
    }
    let skipped: Vec<String> = trace
        .skipped
        .iter()
        .map(|s| format!("{} ({})", s.provider, s.reason))
        .collect();
    if failures.is_empty() {
        // Only the host's own limits stood in the way: say so, with when
        // to come back, rather than blaming providers.
        if let Some(o) = overloaded {
            let mut e = RunError::new(
                ErrorCode::Overloaded,
                format!(
                    "no attempt of {} `{}` could start in time: {}; try again later",
                    route.kind,
                    route.tag,
                    skipped.join(", ")
                ),
            );
            e.retry_after_ms = Some(o.retry_after.as_millis().max(1) as u64);
            return Err(e);
        }
        let code = if deadline_hit {
            ErrorCode::DeadlineExceeded
        } else {
            ErrorCode::NoProvider
        };
        let mut e = RunError::new(
            code,
            format!(
                "no provider of {} `{}` could be tried: {}",
                route.kind,
                route.tag,
                skipped.join(", ")
            ),
        );
        // Every provider blocked by its breaker: the reference's `open`
        // flag, with the error that opened the first.
        let breakers: Vec<&Option<String>> = trace
            .skipped
            .iter()
            .filter_map(|s| match &s.reason {
                SkipReason::BreakerOpen { last_error, .. } => Some(last_error),
                _ => None,
            })
            .collect();
        if !breakers.is_empty() && breakers.len() == trace.skipped.len() {
            e.open = true;
            e.last_error = breakers.into_iter().flatten().next().cloned();
        }
        return Err(e);
    }
    let mut message = format!(
        "every provider of {} `{}` failed: {}",
        route.kind,
        route.tag,
        failures.join("; ")
    );
    if !skipped.is_empty() {
        message.push_str(&format!("; skipped: {}", skipped.join(", ")));
    }
    let code = if deadline_hit {
        ErrorCode::DeadlineExceeded
    } else {
        ErrorCode::AllFailed
    };
    let mut e = RunError::new(code, message);
    if !others_failed && let Some(after) = rate_limited {
        e.retry_after_ms = Some(u64::try_from(after.as_millis()).unwrap_or(u64::MAX).max(1));
    }
    Err(e)
}

/// A feature option: the feature runs as this option under its breaker
/// (no app gate of its own: its steps' apps admit their attempts), its
/// output mapped by the option's `output`, its trace kept as a step of
/// this run's trace named after the option.
pub(crate) async fn run_feature_option(
    ctx: &RunCtx<'_>,
    opt: &CompiledOption,
    tag: &str,
    bkey: &str,
    input: &Value,
    trace: &mut Trace,
) -> OptionEnd {
    let inner = ctx.inner;
    let idempotency = opt
        .idempotent
        .map_or(Idempotency::Unsafe, Idempotency::from_override);
    let mapped = match map_input(opt, input, idempotency, trace) {
        Ok(v) => v,
        Err(end) => return end,
    };
    let now = inner.clock.now();
    let ticket = match inner.admit_breaker(bkey, ctx.spec(opt), now).await {
        Ok(t) => t,
        Err(open) => {
            return OptionEnd::Skipped(SkipReason::BreakerOpen {
                open: true,
                breaker: bkey.to_string(),
                last_error: open.last_error.map(|e| e.to_string()),
            });
        }
    };
    let remaining = ctx.deadline_at.saturating_duration_since(now);
    let options = RunOptions {
        idempotency_key: Some(ctx.key.to_string()),
        session: ctx.session.cloned(),
        cache: None,
        deadline: Some(opt.timeout.map_or(remaining, |t| t.min(remaining))),
    };
    let result = inner
        .run_boxed(
            Kind::Feature,
            ctx.product,
            ctx.env,
            tag,
            mapped,
            options,
            ctx.depth + 1,
        )
        .await;
    let end = inner.clock.now();
    let took = end.saturating_duration_since(now);
    let (result, nested) = match result {
        Ok(RunResult { output, trace, .. }) => (Ok(output), Some(trace)),
        Err(mut e) => {
            let nested = e.trace.take().map(|t| *t);
            (Err(feature_failure(&e)), nested)
        }
    };
    if let Some(t) = nested {
        trace.steps.push(crate::trace::StepTrace {
            name: opt.provider.clone(),
            trace: t,
        });
    }
    if let Err(e) = &result
        && e.class == ErrorClass::Overloaded
    {
        // Only the host's limits stood in the feature's way: nothing about
        // the option is recorded.
        inner.breakers.release(bkey, ticket);
        record(trace, opt, 1, Err(e), took);
        return OptionEnd::Overloaded(Overload {
            reason: OverloadReason::NoInstance,
            retry_after: e.retry_after.unwrap_or(Duration::from_secs(1)),
        });
    }
    inner
        .record_breaker(bkey, ticket, result.as_ref().map(|_| ()), end)
        .await;
    let key = ctx.default_key(opt);
    inner.count(&key, result.as_ref().map(|_| ()));
    inner
        .scorecards
        .record(&key, end, result.as_ref().map(|_| ()), took);
    match result {
        Ok(output) => {
            record(trace, opt, 1, Ok(()), took);
            let scope = Scope {
                input: Some(input),
                response: Some(&output),
                ..Scope::default()
            };
            match opt.output.apply(&scope) {
                Ok(v) => OptionEnd::Served(v),
                Err(e) => OptionEnd::Stop(Box::new(RunError::new(
                    ErrorCode::Mapping,
                    format!(
                        "feature option `{}` served, but its output mapping failed: {e}; not failing over because the feature ran",
                        opt.provider
                    ),
                ))),
            }
        }
        Err(e) => {
            record(trace, opt, 1, Err(&e), took);
            OptionEnd::Failed {
                error: e,
                idempotency,
                failover: false,
            }
        }
    }
}

/// A run whose key an earlier run may have acted on at `pin`'s app: it
/// goes to that app only (its own option first), with the same key, so the
/// provider answers with what it did. Anything short of an answer leaves
/// the run `ambiguous`, naming the app; nothing else is tried.
pub(crate) async fn run_pinned(
    ctx: &RunCtx<'_>,
    route: &CompiledRoute,
    pin: &Pin,
    input: &Value,
    trace: &mut Trace,
) -> Result<(Value, String), RunError> {
    let mut order: Vec<usize> = (0..route.options.len())
        .filter(|&i| route.options[i].app == pin.app)
        .collect();
    order.sort_by_key(|&i| route.options[i].provider != pin.provider);
    let unresolved = |why: String| {
        ambiguous_at(
            ctx,
            &pin.app,
            &pin.provider,
            format!(
                "an earlier run with idempotency key `{}` may have executed at app `{}` (provider `{}`), so this run may only go there: {why}. Check with the provider, or retry later",
                ctx.key, pin.app, pin.provider
            ),
        )
    };
    if order.is_empty() {
        return Err(unresolved(format!(
            "no option of {} `{}` sends to that app any more",
            route.kind, route.tag
        )));
    }
    // Only an app that deduplicates by the key can be asked again: an
    // unsafe action sent twice would run twice.
    let opt = &route.options[order[0]];
    let keyed = ctx
        .inner
        .adapter(ctx.product, &opt.app, ctx.env)
        .is_some_and(|a| declared(opt, a.info()) == Idempotency::Keyed);
    if !keyed {
        return Err(unresolved(format!(
            "`{}` is not idempotent there, so it is not sent again",
            opt.action
        )));
    }
    match try_in_order(ctx, route, &order, true, input, trace).await {
        Ok(served) => Ok(served),
        Err(e) => match e.code {
            // Final answers and the host's own limits stand as they are.
            ErrorCode::Rejected
            | ErrorCode::Mapping
            | ErrorCode::Ambiguous
            | ErrorCode::Overloaded
            | ErrorCode::IdempotencyUnavailable => Err(e),
            _ => Err(RunError {
                retry_after_ms: e.retry_after_ms,
                ..unresolved(e.message)
            }),
        },
    }
}
