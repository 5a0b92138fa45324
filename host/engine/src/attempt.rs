//! Trying providers: one option with its retries ([`run_option`]) and a
//! list of options in order with failover ([`try_in_order`]), shared by
//! fallbacks, quotas and feature action steps.

use super::admission::{Overload, OverloadReason, Wait};
use super::breakers::Spec;
use super::compile::{CompiledOption, CompiledRoute, OptionTarget};
use super::definition::Kind;
use super::observer::AttemptEvent;
use super::records::{Pin, RunRecord};
use super::retry::RetryPolicy;
use super::run::{ErrorCode, Reconcile, RunError, RunOptions, RunResult};
use super::switchyard::Inner;
use super::trace::{AttemptRecord, Outcome, Skip, SkipReason, Trace};
use crate::adapter::{AttemptError, CallRequest, ErrorClass, FailureKind, Idempotency, Session};
use crate::breakers;
use crate::clock;
use crate::health::{HealthKey, HealthStatus};
use crate::mapping::Scope;
use serde_json::Value;
use std::time::{Duration, Instant};

/// Extra time the engine allows an adapter past its deadline before it
/// stops waiting (the wasm runtime enforces the deadline itself).
pub(crate) const GRACE: Duration = Duration::from_millis(100);

/// What one run shares with its attempts.
pub(crate) struct RunCtx<'a> {
    pub inner: &'a Inner,
    pub product: &'a str,
    pub env: &'a str,
    pub key: &'a str,
    pub session: Option<&'a Session>,
    pub deadline_at: Instant,
    /// How deep in nested runs (feature steps and feature options) this
    /// run is.
    pub depth: u32,
    /// The caller key's record, when the run holds one.
    pub record: Option<&'a RunRecord>,
}

enum OptionEnd {
    Served(Value),
    Failed {
        error: AttemptError,
        idempotency: Idempotency,
    },
    Skipped(SkipReason),
    /// The host could not start its first try in time.
    Overloaded(Overload),
    /// Its app was saturated and the run spills over.
    Spilled(Overload),
    Stop(Box<RunError>),
}

fn overload_skip(o: &Overload, spilled: bool) -> SkipReason {
    let (cause, message) = (o.reason.label().into(), o.reason.to_string());
    if spilled {
        SkipReason::Saturated { cause, message }
    } else {
        SkipReason::Overloaded { cause, message }
    }
}

impl RunCtx<'_> {
    /// The breaker key of `opt` for this input: its template, or
    /// `product/env/app/action`.
    pub fn breaker_key(&self, opt: &CompiledOption, input: &Value) -> String {
        match &opt.breaker_key {
            Some(m) => {
                let scope = Scope {
                    input: Some(input),
                    ..Scope::default()
                };
                // A key that cannot be built falls back to the default key
                // rather than failing the run.
                match m.apply_to_string(&scope) {
                    Ok(k) => breakers::templated_key(self.product, self.env, &k),
                    Err(_) => self.default_key(opt),
                }
            }
            None => self.default_key(opt),
        }
    }

    pub fn default_key(&self, opt: &CompiledOption) -> String {
        breakers::option_key(self.product, self.env, opt)
    }

    /// What `opt` brings to its breaker: its settings and, for a template,
    /// the template's key.
    pub fn spec<'o>(&self, opt: &'o CompiledOption) -> Spec<'o> {
        Spec {
            settings: opt.breaker.as_ref(),
            origin: opt
                .breaker_template
                .as_ref()
                .map(|t| breakers::templated_key(self.product, self.env, t)),
        }
    }

    /// Count a request that `opt`'s open breaker blocked.
    fn blocked(&self, opt: &CompiledOption) {
        self.inner.count_blocked(
            &self.default_key(opt),
            self.product,
            self.env,
            &breakers::option_target(opt),
        );
    }

    /// Why `opt` should not be tried now, if it should not.
    pub fn ineligible(&self, opt: &CompiledOption, breaker_key: &str) -> Option<SkipReason> {
        if self.inner.is_drained(self.product, &opt.provider) {
            return Some(SkipReason::Drained);
        }
        if let Some(hc) = &opt.healthcheck {
            let key = HealthKey {
                product: self.product.to_string(),
                env: self.env.to_string(),
                tag: hc.clone(),
            };
            if self.inner.health_status(&key) == HealthStatus::Unhealthy {
                return Some(SkipReason::Unhealthy {
                    healthcheck: hc.clone(),
                });
            }
        }
        let now = self.inner.clock.now();
        self.inner
            .breakers
            .check(breaker_key, now)
            .err()
            .map(|open| SkipReason::BreakerOpen {
                open: true,
                breaker: breaker_key.to_string(),
                last_error: open.last_error.map(|e| e.to_string()),
            })
    }
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
    for (pos, &i) in order.iter().enumerate() {
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
        let end = match &opt.target {
            OptionTarget::Action => run_option(ctx, opt, &bkey, input, spill, trace).await,
            OptionTarget::Feature(tag) => {
                run_feature_option(ctx, opt, tag, &bkey, input, trace).await
            }
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
            OptionEnd::Failed { error, idempotency } => {
                if error.kind == FailureKind::DeadlineExceeded
                    && ctx.inner.clock.now() >= ctx.deadline_at
                {
                    deadline_hit = true;
                }
                match error.class {
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
    Err(RunError::new(code, message))
}

fn record(
    trace: &mut Trace,
    opt: &CompiledOption,
    try_number: u32,
    result: Result<(), &AttemptError>,
    took: Duration,
) {
    let (outcome, kind, message, status, code) = match result {
        Ok(()) => (Outcome::Ok, None, None, None, None),
        Err(e) => (
            Outcome::Failed(e.class),
            Some(e.kind),
            Some(e.message.clone()),
            e.status,
            e.code.clone(),
        ),
    };
    trace.attempts.push(AttemptRecord {
        provider: opt.provider.clone(),
        app: opt.app.clone(),
        action: opt.action.clone(),
        try_number,
        outcome,
        kind,
        message,
        status,
        code,
        duration_ms: took.as_secs_f64() * 1e3,
    });
}

/// The option's input, mapped from the run's; a mapping that fails ends
/// the option (the host's fault, `internal`: it fails over).
fn map_input(
    opt: &CompiledOption,
    input: &Value,
    idempotency: Idempotency,
    trace: &mut Trace,
) -> Result<Value, OptionEnd> {
    let scope = Scope {
        input: Some(input),
        ..Scope::default()
    };
    opt.input.apply(&scope).map_err(|e| {
        if let crate::mapping::MappingError::Oversized { .. } = e {
            // The caller's data makes the mapping too large: the caller's
            // to fix, and nothing was sent anywhere.
            return OptionEnd::Stop(Box::new(RunError::new(ErrorCode::Rejected, e.to_string())));
        }
        let e = AttemptError::new(ErrorClass::Internal, FailureKind::Host, e.to_string());
        record(trace, opt, 1, Err(&e), Duration::ZERO);
        OptionEnd::Failed {
            error: e,
            idempotency,
        }
    })
}

/// One option: map the input, call with retries, map the output. Each
/// try is admitted by its app's gate first; `spill` makes the first try
/// give up at once when the app is saturated.
async fn run_option(
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
    for try_no in 0..=opt.policy.retries {
        // A retry's budget token, handed back if the retry is not made.
        let mut token = None;
        if let Some(prev) = &last {
            if !RetryPolicy::retryable(prev, idempotency) {
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
        let result =
            match clock::timeout(&*inner.clock, deadline + GRACE, adapter.call(request)).await {
                Ok(r) => r.map_err(AttemptError::bounded),
                Err(_) => Err(AttemptError::new(
                    ErrorClass::Ambiguous,
                    FailureKind::DeadlineExceeded,
                    format!("no answer within the {} ms deadline", deadline.as_millis()),
                )),
            };
        drop(permit);
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
    OptionEnd::Failed { error, idempotency }
}

/// What `opt`'s action promises about repeating it: the definition's
/// override (which never makes an action safe), else the adapter's word.
pub(crate) fn declared(opt: &CompiledOption, info: &crate::adapter::AppInfo) -> Idempotency {
    match opt.idempotent {
        Some(o) => Idempotency::from_override(o),
        None => info
            .action(&opt.action)
            .map_or(Idempotency::Unsafe, |a| a.idempotency),
    }
}

fn idempotency_words(i: Idempotency) -> &'static str {
    match i {
        Idempotency::Safe => "safe",
        Idempotency::Keyed => "idempotent only with this key",
        Idempotency::Unsafe => "not idempotent",
    }
}

/// An `ambiguous` run error naming `app` and `provider` to reconcile.
fn ambiguous_at(ctx: &RunCtx<'_>, app: &str, provider: &str, message: String) -> RunError {
    RunError::ambiguous(
        Reconcile {
            app: app.to_string(),
            provider: provider.to_string(),
            idempotency_key: ctx.key.to_string(),
        },
        message,
    )
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

/// How a feature run's failure reads as one option's failure: an input
/// the feature's providers refused stops the run; a possible execution is
/// ambiguous; the host's own limits stay the host's; anything else means
/// the feature could not serve, so the run fails over.
fn feature_failure(e: &RunError) -> AttemptError {
    let (class, kind) = match e.code {
        ErrorCode::Rejected => (ErrorClass::Rejected, FailureKind::Provider),
        ErrorCode::Ambiguous => (ErrorClass::Ambiguous, FailureKind::Provider),
        ErrorCode::Overloaded | ErrorCode::InProgress | ErrorCode::IdempotencyUnavailable => {
            (ErrorClass::Overloaded, FailureKind::Host)
        }
        ErrorCode::DeadlineExceeded => (ErrorClass::Timeout, FailureKind::DeadlineExceeded),
        ErrorCode::InvalidInput | ErrorCode::Mapping | ErrorCode::NotFound => {
            (ErrorClass::Internal, FailureKind::Host)
        }
        ErrorCode::NoProvider | ErrorCode::AllFailed => {
            (ErrorClass::Unavailable, FailureKind::Provider)
        }
    };
    let mut a = AttemptError::new(class, kind, format!("{}: {}", e.code, e.message));
    a.retry_after = e.retry_after_ms.map(Duration::from_millis);
    a
}

/// A feature option: the feature runs as this option under its breaker
/// (no app gate of its own: its steps' apps admit their attempts), its
/// output mapped by the option's `output`, its trace kept as a step of
/// this run's trace named after the option.
async fn run_feature_option(
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
        trace.steps.push(super::trace::StepTrace {
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
    inner.count(&ctx.default_key(opt), result.as_ref().map(|_| ()));
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
            }
        }
    }
}
