//! The explain trace every run returns: which providers were considered,
//! which were skipped and why, every attempt with its outcome and duration,
//! and which provider served.

use crate::adapter::{AttemptError, ErrorClass, FailureKind};
use serde::{Deserialize, Serialize};
use std::fmt::{self, Write as _};

/// Why a provider was not tried.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "kebab-case")]
pub enum SkipReason {
    /// Its healthcheck says unhealthy.
    Unhealthy {
        /// The healthcheck's tag.
        healthcheck: String,
    },
    /// Its breaker is open (or half-open with no probe permit left): the
    /// reference's blocked request, `open: true` with the last real error.
    BreakerOpen {
        /// Always true: blocked by the breaker, not tried.
        open: bool,
        /// The breaker's key.
        breaker: String,
        /// The error that opened it.
        last_error: Option<String>,
    },
    /// The run's deadline had passed.
    Deadline,
    /// An operator drained it: out of routing until restored.
    Drained,
    /// The host could not start an attempt on it in time (its app's
    /// admission queue, rate limit, a provider-requested pause, or no
    /// plugin instance free). Not the provider's fault: nothing counted.
    Overloaded {
        /// `queue-full`, `in-flight`, `rate-limit`, `cooldown` or
        /// `no-instance`.
        cause: std::borrow::Cow<'static, str>,
        /// What happened.
        message: String,
    },
    /// Its app was saturated and the definition spills over: the run
    /// moved on to the next eligible provider without waiting.
    Saturated {
        /// As for `overloaded`.
        cause: std::borrow::Cow<'static, str>,
        /// What happened.
        message: String,
    },
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unhealthy { healthcheck } => write!(f, "unhealthy ({healthcheck})"),
            Self::BreakerOpen {
                last_error: Some(e),
                ..
            } => write!(f, "breaker open: {e}"),
            Self::BreakerOpen {
                last_error: None, ..
            } => write!(f, "breaker open"),
            Self::Deadline => f.write_str("run deadline passed"),
            Self::Drained => f.write_str("drained by an operator"),
            Self::Overloaded { message, .. } => write!(f, "overloaded: {message}"),
            Self::Saturated { message, .. } => write!(f, "saturated, spilled over: {message}"),
        }
    }
}

/// A provider that was not tried.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Skip {
    /// The provider (option) name.
    pub provider: String,
    /// Why.
    #[serde(flatten)]
    pub reason: SkipReason,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The provider served.
    Ok,
    /// It failed with this class.
    Failed(ErrorClass),
}

/// One call of one app action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// Provider (option) name.
    pub provider: String,
    /// App tag.
    pub app: String,
    /// Action.
    pub action: String,
    /// 1 for the first try on this provider, 2 for the first retry...
    pub try_number: u32,
    /// Success or the error class.
    pub outcome: Outcome,
    /// Where a failure came from (provider, deadline, trap...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<FailureKind>,
    /// The error message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Provider HTTP status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Provider error code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Wall time of the attempt, ms.
    pub duration_ms: f64,
    /// The rule on provider errors that matched this attempt's error:
    /// where it is written and what it did (or why it was not applied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// What hedging did during this attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hedge: Option<crate::hedge::HedgeRecord>,
}

impl AttemptRecord {
    /// The error, if the attempt failed.
    pub fn error(&self) -> Option<AttemptError> {
        let Outcome::Failed(class) = self.outcome else {
            return None;
        };
        Some(AttemptError {
            class,
            kind: self.kind.unwrap_or(FailureKind::Provider),
            message: self.message.clone().unwrap_or_default(),
            status: self.status,
            code: self.code.clone(),
            retry_after: None,
        })
    }
}

/// A step of a feature and its own trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepTrace {
    /// Step name.
    pub name: String,
    /// The step's run.
    pub trace: Trace,
}

/// What a run (or a feature step's run) is: the one definition of the
/// run kind, shown in traces and messages as `fallback`, `quota`,
/// `feature` or `action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunKind {
    /// A fallback: providers in order.
    #[default]
    Fallback,
    /// A quota: providers by weight.
    Quota,
    /// A feature: steps.
    Feature,
    /// A feature step that calls one app action.
    Action,
}

impl RunKind {
    /// The name shown in traces and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fallback => "fallback",
            Self::Quota => "quota",
            Self::Feature => "feature",
            Self::Action => "action",
        }
    }
}

impl std::fmt::Display for RunKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The explain trace of one run.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Trace {
    /// What ran.
    pub kind: RunKind,
    /// The definition's tag (or `app/action`).
    pub tag: String,
    /// The env.
    pub env: String,
    /// The run's idempotency key, passed to every attempt.
    pub idempotency_key: String,
    /// Providers in the order they were considered.
    pub considered: Vec<String>,
    /// Providers not tried, and why.
    pub skipped: Vec<Skip>,
    /// Every attempt, in order.
    pub attempts: Vec<AttemptRecord>,
    /// The provider that served, if one did.
    pub served_by: Option<String>,
    /// The result came from a result cache.
    pub cached: bool,
    /// A quota had no eligible provider and tried all of them.
    pub panic_mode: bool,
    /// Retries the budget refused.
    pub budget_denied: u32,
    /// The outcome was a finished run's, kept under this idempotency key
    /// (its idempotency record): no provider was asked again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replayed: bool,
    /// An earlier run under this key may have acted at this app, so this
    /// run went there only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned_to: Option<String>,
    /// Feature steps, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepTrace>,
    /// A quota's adaptive choice: the scores, what it chose and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adaptive: Option<Box<crate::adaptive::AdaptiveTrace>>,
    /// Hedges from a slow option to the next one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hedges: Vec<crate::hedge::OptionHedge>,
}

impl Trace {
    pub(crate) fn new(kind: RunKind, tag: &str, env: &str, key: &str) -> Self {
        Self {
            kind,
            tag: tag.into(),
            env: env.into(),
            idempotency_key: key.into(),
            ..Self::default()
        }
    }

    /// A readable table, for the CLI and logs.
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.render_into(&mut out, "");
        out
    }

    fn render_into(&self, out: &mut String, indent: &str) {
        let _ = writeln!(
            out,
            "{indent}{} {} (env {}, key {}){}{}",
            self.kind,
            self.tag,
            self.env,
            self.idempotency_key,
            if self.cached { " [cached]" } else { "" },
            if self.panic_mode { " [panic mode]" } else { "" },
        );
        if let Some(app) = &self.pinned_to {
            let _ = writeln!(
                out,
                "{indent}  pinned to app {app}: an earlier run under this key may have acted there"
            );
        }
        if !self.considered.is_empty() {
            let _ = writeln!(out, "{indent}  considered: {}", self.considered.join(", "));
        }
        for s in &self.skipped {
            let _ = writeln!(out, "{indent}  skipped {}: {}", s.provider, s.reason);
        }
        for a in &self.attempts {
            let outcome = match &a.outcome {
                Outcome::Ok => "ok".to_string(),
                Outcome::Failed(c) => c.to_string(),
            };
            let _ = writeln!(
                out,
                "{indent}  {:<16} {:<24} try {:<2} {:<13} {:>9.2} ms  {}",
                a.provider,
                format!("{}/{}", a.app, a.action),
                a.try_number,
                outcome,
                a.duration_ms,
                a.message.as_deref().unwrap_or(""),
            );
        }
        if self.budget_denied > 0 {
            let _ = writeln!(
                out,
                "{indent}  retries refused by the budget: {}",
                self.budget_denied
            );
        }
        for s in &self.steps {
            let _ = writeln!(out, "{indent}  step {}:", s.name);
            s.trace.render_into(out, &format!("{indent}    "));
        }
        match &self.served_by {
            Some(p) => {
                let _ = writeln!(out, "{indent}  served by: {p}");
            }
            None if self.steps.is_empty() => {
                let _ = writeln!(out, "{indent}  served by: none");
            }
            None => {}
        }
    }
}
