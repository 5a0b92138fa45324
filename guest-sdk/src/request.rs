//! The request an adapter receives for one attempt.

use crate::Error;
use crate::bindings::switchyard::adapter::adapter_types as wit;
use serde_json::Value;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Who the call is made for, when the caller passed a session.
#[derive(Debug, Clone)]
pub struct Session {
    /// The session's tag.
    pub tag: String,
    /// The caller's token for that session.
    pub token: String,
}

/// One attempt of one action.
#[derive(Debug, Clone)]
pub struct Request {
    /// The action to run.
    pub action: String,
    /// The mapped input.
    pub input: Value,
    /// One key per logical run; send it to providers that support one.
    pub idempotency_key: String,
    /// The environment (`dev`, `prd`, ...).
    pub env: String,
    /// The caller's session, if any.
    pub session: Option<Session>,
    /// The attempt's budget, counted from when [`Request::remaining`] is
    /// first asked: reading the clock is a WASI call, and a step that never
    /// asks makes none (the host then sets up no WASI context for it).
    budget: Duration,
    deadline: OnceLock<Instant>,
}

impl Request {
    pub(crate) fn from_wit(r: wit::CallRequest) -> Result<Self, Error> {
        let input = serde_json::from_str(&r.input)
            .map_err(|e| Error::rejected(format!("input is not valid JSON: {e}")))?;
        Ok(Self {
            action: r.action,
            input,
            idempotency_key: r.idempotency_key,
            env: r.env,
            session: r.session.map(|s| Session {
                tag: s.tag,
                token: s.token,
            }),
            budget: Duration::from_millis(r.deadline_ms),
            deadline: OnceLock::new(),
        })
    }

    /// Time left before the host abandons this attempt, counted from the
    /// first time it is asked (the host enforces the deadline itself; ask
    /// before the work you bound with it).
    pub fn remaining(&self) -> Duration {
        let now = Instant::now();
        self.deadline
            .get_or_init(|| now + self.budget)
            .saturating_duration_since(now)
    }

    /// The input field `name`, if present and not null.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.input.get(name).filter(|v| !v.is_null())
    }

    /// The string field `name`, or `rejected` naming the field.
    pub fn str(&self, name: &str) -> Result<&str, Error> {
        match self.get(name) {
            Some(Value::String(s)) => Ok(s),
            Some(other) => Err(Error::rejected(format!(
                "input.{name} must be a string, got {other}"
            ))),
            None => Err(Error::rejected(format!("input.{name} is required"))),
        }
    }

    /// The string field `name` if present; `rejected` if it is not a string.
    pub fn opt_str(&self, name: &str) -> Result<Option<&str>, Error> {
        match self.get(name) {
            None => Ok(None),
            Some(_) => self.str(name).map(Some),
        }
    }

    /// The integer field `name`, or `rejected` naming the field.
    pub fn i64(&self, name: &str) -> Result<i64, Error> {
        match self.get(name) {
            Some(v) => v.as_i64().ok_or_else(|| {
                Error::rejected(format!("input.{name} must be an integer, got {v}"))
            }),
            None => Err(Error::rejected(format!("input.{name} is required"))),
        }
    }

    /// The unknown action error, for the `_` arm of an action match.
    pub fn unknown_action(&self) -> Error {
        Error::rejected(format!("unknown action `{}`", self.action))
    }
}
