//! What a run takes and returns.

use super::trace::Trace;
use crate::adapter::Session;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;
use std::time::Duration;

/// Options of one run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The run's idempotency key; generated when absent. Every attempt of
    /// every provider receives it.
    pub idempotency_key: Option<String>,
    /// Caller context passed to adapters.
    pub session: Option<Session>,
    /// Tag of a result cache (a `cache` definition of the product).
    pub cache: Option<String>,
    /// Deadline of the whole run (default: the definition's, else 30 s).
    pub deadline: Option<Duration>,
}

impl RunOptions {
    /// Use this idempotency key.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Pass this session to adapters.
    pub fn session(mut self, tag: impl Into<String>, token: impl Into<String>) -> Self {
        self.session = Some(Session {
            tag: tag.into(),
            token: token.into(),
        });
        self
    }

    /// Serve identical inputs from this result cache.
    pub fn cache(mut self, tag: impl Into<String>) -> Self {
        self.cache = Some(tag.into());
        self
    }

    /// Bound the whole run.
    pub fn deadline(mut self, d: Duration) -> Self {
        self.deadline = Some(d);
        self
    }
}

/// A successful run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// The mapped output.
    pub output: Value,
    /// The provider (option name) that served; for features, the last
    /// step's.
    pub provider: Option<String>,
    /// The key every attempt received.
    pub idempotency_key: String,
    /// What happened.
    pub trace: Trace,
}

/// Stable error codes, for callers and the HTTP API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorCode {
    /// No such definition, app, env or cache.
    NotFound,
    /// The input does not fit the definition's schema.
    InvalidInput,
    /// A mapping referenced data that is not there.
    Mapping,
    /// No provider could be tried (all skipped).
    NoProvider,
    /// Every provider tried failed.
    AllFailed,
    /// A provider refused the input; not retried, no failover.
    Rejected,
    /// A rule on provider errors (`then = "stop"`) ended the run at a
    /// provider's error that is not the caller's; not retried, no
    /// failover.
    Stopped,
    /// An action with an effect may have executed at one app and the run
    /// could not confirm it; nothing else was tried. `reconcile` names the
    /// app, provider and key to check; a retry of the key goes to that app
    /// only.
    Ambiguous,
    /// The run's deadline passed.
    DeadlineExceeded,
    /// The host could not start an attempt in time (admission queue,
    /// rate limit, a provider-requested pause, no plugin instance) and no
    /// provider failed: try again after `retry_after_ms`.
    Overloaded,
    /// A run under the same idempotency key has not finished yet (on this
    /// or another replica): retry after it does.
    InProgress,
    /// The idempotency record of a keyed run could not be read or written,
    /// so nothing was sent (a retry could otherwise execute twice): retry
    /// after `retry_after_ms`.
    IdempotencyUnavailable,
}

impl ErrorCode {
    /// Kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotFound => "not-found",
            Self::InvalidInput => "invalid-input",
            Self::Mapping => "mapping",
            Self::NoProvider => "no-provider",
            Self::AllFailed => "all-failed",
            Self::Rejected => "rejected",
            Self::Stopped => "stopped",
            Self::Ambiguous => "ambiguous",
            Self::DeadlineExceeded => "deadline-exceeded",
            Self::Overloaded => "overloaded",
            Self::InProgress => "in-progress",
            Self::IdempotencyUnavailable => "idempotency-unavailable",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed run: a stable code, a message that says what happened and what
/// to do, and the trace (every attempt) when providers were involved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct RunError {
    /// What kind of failure.
    pub code: ErrorCode,
    /// Human-readable detail.
    pub message: String,
    /// The input field at fault (`input.amount`), for invalid input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// For `overloaded`: when trying again makes sense, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    /// True when every provider was blocked by its open breaker (the
    /// reference's `open` flag); `last_error` then says why it opened.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub open: bool,
    /// The last real error of the first blocking breaker, when `open`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// For `ambiguous`: where the action may have executed, to check with
    /// the provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconcile: Option<Reconcile>,
    /// The trace up to the failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<Box<Trace>>,
}

/// Where an `ambiguous` run's action may have executed: the one app a
/// retry of the key goes to, and the key the provider knows it by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reconcile {
    /// The app (one account at one provider).
    pub app: String,
    /// The definition's option that sent to it.
    pub provider: String,
    /// The idempotency key the app received.
    pub idempotency_key: String,
}

impl RunError {
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            field: None,
            retry_after_ms: None,
            open: false,
            last_error: None,
            reconcile: None,
            trace: None,
        }
    }

    pub(crate) fn invalid_input(e: super::schema::InputError) -> Self {
        Self {
            field: Some(e.path.clone()),
            ..Self::new(ErrorCode::InvalidInput, e.to_string())
        }
    }

    /// An `ambiguous` error naming where the action may have executed.
    pub(crate) fn ambiguous(reconcile: Reconcile, message: impl Into<String>) -> Self {
        Self {
            reconcile: Some(reconcile),
            ..Self::new(ErrorCode::Ambiguous, message)
        }
    }

    pub(crate) fn with_trace(mut self, trace: Trace) -> Self {
        self.trace = Some(Box::new(trace));
        self
    }
}
