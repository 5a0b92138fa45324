//! What a run's attempts share: the run's context ([`RunCtx`]), how an
//! option ended, and the small steps every attempt takes (recording it,
//! mapping its input, the idempotency an option declares, the error of an
//! ambiguous end).

use crate::adapter::{AttemptError, ErrorClass, FailureKind, Idempotency, Session};
use crate::admission::Overload;
use crate::breaker;
use crate::breaker::Spec;
use crate::compiled::CompiledOption;
use crate::health::{HealthKey, HealthStatus};
use crate::mapping::Scope;
use crate::records::RunRecord;
use crate::run::{ErrorCode, Reconcile, RunError};
use crate::switchyard::Inner;
use crate::trace::{AttemptRecord, Outcome, SkipReason, Trace};
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

pub(crate) enum OptionEnd {
    Served(Value),
    Failed {
        error: AttemptError,
        idempotency: Idempotency,
        /// A rule said to fail over, whatever the class.
        failover: bool,
    },
    Skipped(SkipReason),
    /// The host could not start its first try in time.
    Overloaded(Overload),
    /// Its app was saturated and the run spills over.
    Spilled(Overload),
    Stop(Box<RunError>),
}

pub(crate) fn overload_skip(o: &Overload, spilled: bool) -> SkipReason {
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
                    Ok(k) => breaker::templated_key(self.product, self.env, &k),
                    Err(_) => self.default_key(opt),
                }
            }
            None => self.default_key(opt),
        }
    }

    pub fn default_key(&self, opt: &CompiledOption) -> String {
        crate::compiled::option_key(self.product, self.env, opt)
    }

    /// What `opt` brings to its breaker: its settings and, for a template,
    /// the template's key.
    pub fn spec<'o>(&self, opt: &'o CompiledOption) -> Spec<'o> {
        Spec {
            settings: opt.breaker.as_ref(),
            origin: opt
                .breaker_template
                .as_ref()
                .map(|t| breaker::templated_key(self.product, self.env, t)),
        }
    }

    /// Count a request that `opt`'s open breaker blocked.
    pub(crate) fn blocked(&self, opt: &CompiledOption) {
        self.inner.count_blocked(
            &self.default_key(opt),
            self.product,
            self.env,
            &crate::compiled::option_target(opt),
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

pub(crate) fn record(
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
        rule: None,
        hedge: None,
    });
}

/// The option's input, mapped from the run's; a mapping that fails ends
/// the option (the host's fault, `internal`: it fails over).
pub(crate) fn map_input(
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
            failover: false,
        }
    })
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

pub(crate) fn idempotency_words(i: Idempotency) -> &'static str {
    match i {
        Idempotency::Safe => "safe",
        Idempotency::Keyed => "idempotent only with this key",
        Idempotency::Unsafe => "not idempotent",
    }
}

/// An `ambiguous` run error naming `app` and `provider` to reconcile.
pub(crate) fn ambiguous_at(
    ctx: &RunCtx<'_>,
    app: &str,
    provider: &str,
    message: String,
) -> RunError {
    RunError::ambiguous(
        Reconcile {
            app: app.to_string(),
            provider: provider.to_string(),
            idempotency_key: ctx.key.to_string(),
        },
        message,
    )
}

/// How a feature run's failure reads as one option's failure: an input
/// the feature's providers refused stops the run; a possible execution is
/// ambiguous; the host's own limits stay the host's; anything else means
/// the feature could not serve, so the run fails over.
pub(crate) fn feature_failure(e: &RunError) -> AttemptError {
    let (class, kind) = match e.code {
        // A rule's stop inside the feature stops the run that runs it.
        ErrorCode::Rejected | ErrorCode::Stopped => (ErrorClass::Rejected, FailureKind::Provider),
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
