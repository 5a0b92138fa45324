//! The seam between the engine and whatever runs an app's actions.
//!
//! The engine calls apps only through [`Adapter`]; the WebAssembly runtime
//! ([`crate::runtime::App`]) is one implementation, and the engine's tests
//! use native ones. Nothing here knows about wasmtime.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// An app's self-description, from the component's `describe`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppInfo {
    /// Name the adapter gives itself.
    pub name: String,
    /// The adapter's version.
    pub version: String,
    /// The actions it implements.
    pub actions: Vec<ActionInfo>,
}

impl AppInfo {
    /// The action called `name`, if the app has it.
    pub fn action(&self, name: &str) -> Option<&ActionInfo> {
        self.actions.iter().find(|a| a.name == name)
    }
}

/// One action of an app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionInfo {
    /// `create-charge`, `send-sms`, `ping`...
    pub name: String,
    /// One line for humans.
    pub description: String,
    /// JSON object describing input fields (`{"amount": {"type": "integer"}}`).
    pub input_schema: serde_json::Value,
    /// What repeating it does, and so where the engine may repeat it.
    pub idempotency: Idempotency,
}

/// What repeating an action does, and so where a run may repeat it after
/// a failure. A key is honoured by one app (one account at one provider):
/// only a [`Idempotency::Safe`] action may ever be repeated on another app
/// after an attempt that may have taken effect.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Idempotency {
    /// A read or lookup with no effect: retried, failed over and hedged
    /// anywhere, even after an `ambiguous` outcome.
    Safe,
    /// Idempotent at the app that received it, with the same key (Stripe's
    /// `Idempotency-Key`, an SNS FIFO deduplication id): retried on that
    /// app with that key after `ambiguous`, never moved to another app.
    Keyed,
    /// Neither: after `ambiguous` it is not repeated at all.
    #[default]
    Unsafe,
}

impl Idempotency {
    /// Kebab-case name, as in the WIT contract.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Safe => "safe",
            Self::Keyed => "keyed",
            Self::Unsafe => "unsafe",
        }
    }

    /// Whether a try that may have taken effect can be repeated on the
    /// same app with the same key.
    pub fn retries_after_ambiguous(self) -> bool {
        !matches!(self, Self::Unsafe)
    }

    /// Whether the action has an effect that one app must own: every
    /// action but a safe one.
    pub fn has_effect(self) -> bool {
        !matches!(self, Self::Safe)
    }

    /// The declaration a definition's `idempotent` override stands for:
    /// `true` keyed, `false` unsafe. An override never makes an action safe.
    pub fn from_override(idempotent: bool) -> Self {
        if idempotent {
            Self::Keyed
        } else {
            Self::Unsafe
        }
    }
}

impl fmt::Display for Idempotency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who a call is made for, passed through to the adapter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The session's tag.
    pub tag: String,
    /// The caller's token for it.
    pub token: String,
}

/// One attempt of one action.
#[derive(Debug, Clone, PartialEq)]
pub struct CallRequest {
    /// The action to run.
    pub action: String,
    /// The mapped input.
    pub input: serde_json::Value,
    /// One key per logical run, the same for every attempt and provider.
    pub idempotency_key: String,
    /// Time the attempt may take, covering guest CPU and host I/O.
    pub deadline: Duration,
    /// The environment (`dev`, `prd`, ...).
    pub env: String,
    /// The caller's session, if any.
    pub session: Option<Session>,
}

impl CallRequest {
    /// A request with a fresh random-free key, env `dev`, deadline 10 s.
    pub fn new(action: impl Into<String>, input: serde_json::Value) -> Self {
        Self {
            action: action.into(),
            input,
            idempotency_key: String::new(),
            deadline: Duration::from_secs(10),
            env: "dev".into(),
            session: None,
        }
    }

    /// Set the deadline.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// Set the idempotency key.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = key.into();
        self
    }
}

/// The class of a failed attempt: what the engine does next depends on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorClass {
    /// The provider refused this input: do not retry, do not fail over.
    Rejected,
    /// The provider could not serve now.
    Unavailable,
    /// The provider asked to slow down.
    RateLimited,
    /// No answer in time, and nothing was sent.
    Timeout,
    /// The request may have been executed.
    Ambiguous,
    /// The adapter or the sandbox failed.
    Internal,
    /// The host could not start the attempt (no instance slot, the app's
    /// concurrency or rate limit, a full admission queue). Never the
    /// provider's fault: not counted by breakers, health, attempt counts
    /// or the retry budget.
    Overloaded,
}

impl ErrorClass {
    /// Every class, in declaration order.
    pub const ALL: [ErrorClass; 7] = [
        Self::Rejected,
        Self::Unavailable,
        Self::RateLimited,
        Self::Timeout,
        Self::Ambiguous,
        Self::Internal,
        Self::Overloaded,
    ];

    /// Kebab-case name, as in the WIT contract.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rejected => "rejected",
            Self::Unavailable => "unavailable",
            Self::RateLimited => "rate-limited",
            Self::Timeout => "timeout",
            Self::Ambiguous => "ambiguous",
            Self::Internal => "internal",
            Self::Overloaded => "overloaded",
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a failure came from: the provider (as the adapter reported it) or
/// the sandbox containing a misbehaving adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureKind {
    /// The adapter returned an `adapter-error`.
    Provider,
    /// The attempt ran past its deadline (guest CPU or host I/O).
    DeadlineExceeded,
    /// The guest tried to grow its memory past the cap.
    MemoryLimit,
    /// The guest overflowed its stack.
    StackOverflow,
    /// The guest trapped (panic, `unreachable`, exit, bad memory access).
    Trap,
    /// The egress gate refused a request the guest made.
    EgressDenied,
    /// The adapter's output was larger than the cap.
    OutputTooLarge,
    /// The adapter's output was not valid JSON, or similar contract breach.
    BadOutput,
    /// The host could not run the call (instantiation failed, ...).
    Host,
    /// The host's own limits refused to start the attempt (admission).
    Overload,
}

/// A failed attempt, typed: class, origin, and the provider's details.
#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize, Deserialize)]
#[error("{class} ({kind:?}): {message}{}", status.map(|s| format!(" [status {s}]")).unwrap_or_default())]
pub struct AttemptError {
    /// What the engine should make of it.
    pub class: ErrorClass,
    /// Where it came from.
    pub kind: FailureKind,
    /// Human-readable reason; never contains secrets.
    pub message: String,
    /// Provider's HTTP status, if any.
    pub status: Option<u16>,
    /// Provider's error code, if any.
    pub code: Option<String>,
    /// Provider's Retry-After, for `rate-limited`.
    pub retry_after: Option<Duration>,
}

impl AttemptError {
    /// An error of `class` and `kind` with a message.
    pub fn new(class: ErrorClass, kind: FailureKind, message: impl Into<String>) -> Self {
        Self {
            class,
            kind,
            message: message.into(),
            status: None,
            code: None,
            retry_after: None,
        }
    }

    /// An error the provider reported, of `class`.
    pub fn provider(class: ErrorClass, message: impl Into<String>) -> Self {
        Self::new(class, FailureKind::Provider, message)
    }

    /// The same error with its message cut to [`MAX_ERROR_MESSAGE`] bytes
    /// and its code to [`MAX_ERROR_CODE`] (at a character boundary, with a
    /// marker saying how much was cut). The host applies it where an error
    /// enters (every adapter call), so a guest's 50 MB message never
    /// reaches a trace, a breaker, health history, a log or a response.
    pub fn bounded(mut self) -> Self {
        truncate(&mut self.message, MAX_ERROR_MESSAGE);
        if let Some(code) = &mut self.code {
            truncate(code, MAX_ERROR_CODE);
        }
        self
    }
}

/// Longest error message the host keeps, bytes.
pub const MAX_ERROR_MESSAGE: usize = 4_096;
/// Longest provider error code the host keeps, bytes.
pub const MAX_ERROR_CODE: usize = 128;

/// Cut `s` to at most `max` bytes plus a marker naming what was cut.
pub fn truncate(s: &mut String, max: usize) {
    if s.len() <= max {
        return;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let cut = s.len() - end;
    s.truncate(end);
    s.push_str(&format!("… [{cut} more bytes cut]"));
}

/// A successful attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct CallResponse {
    /// The provider's answer as the adapter shaped it.
    pub output: serde_json::Value,
}

/// A boxed, sendable future, as [`Adapter::call`] returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Something that runs an app's actions. The engine holds these as
/// `Arc<dyn Adapter>`; every call must be independent of the others.
pub trait Adapter: Send + Sync {
    /// The app's self-description.
    fn info(&self) -> &AppInfo;

    /// Run one attempt. Must finish by `request.deadline`.
    fn call(&self, request: CallRequest) -> BoxFuture<'_, Result<CallResponse, AttemptError>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_cut_at_a_char_boundary_with_a_marker() {
        let e = AttemptError {
            code: Some("c".repeat(1_000)),
            ..AttemptError::provider(ErrorClass::Unavailable, "é".repeat(10_000))
        }
        .bounded();
        assert!(
            e.message.len() < MAX_ERROR_MESSAGE + 40,
            "{}",
            e.message.len()
        );
        assert!(
            e.message.ends_with("… [15904 more bytes cut]"),
            "{}",
            &e.message[4_000..]
        );
        assert!(e.code.unwrap().len() < MAX_ERROR_CODE + 40);
        let short = AttemptError::provider(ErrorClass::Unavailable, "fine").bounded();
        assert_eq!(short.message, "fine");
    }
}
