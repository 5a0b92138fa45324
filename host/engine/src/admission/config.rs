//! An app's admission settings ([`AdmissionConfig`], checked against their
//! bounds), why an attempt was not admitted ([`OverloadReason`],
//! [`Overload`]) and the gate's state as the API shows it
//! ([`AdmissionSnapshot`]).

use crate::error::DefineError;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// Upper bound of `max_in_flight`.
pub const MAX_IN_FLIGHT: u32 = 100_000;
/// Upper bound of `max_queue`.
pub const MAX_QUEUE: u32 = 1_000_000;
/// Upper bound of `queue_timeout_ms` and `max_cooldown_ms` (one hour).
pub const MAX_WAIT_MS: u64 = 3_600_000;
/// Upper bound of `rate_per_sec` and `burst`.
pub const MAX_RATE: f64 = 1_000_000.0;

fn default_in_flight() -> u32 {
    256
}
fn default_queue() -> u32 {
    4_096
}
fn default_cooldown() -> u64 {
    60_000
}

/// Admission settings of one app (in every env it serves; each env has its
/// own bulkhead, bucket and cooldown).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdmissionConfig {
    /// Attempts of this app in flight at once (1 to 100 000). Default 256.
    #[serde(default = "default_in_flight")]
    pub max_in_flight: u32,
    /// Attempts that may wait for a slot, a token or the end of a cooldown
    /// (0 to 1 000 000; 0 = never wait). Default 4 096.
    #[serde(default = "default_queue")]
    pub max_queue: u32,
    /// Longest wait in the queue, ms (at most 3 600 000). Default: as long
    /// as the run has left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_timeout_ms: Option<u64>,
    /// Attempts started per second at most (a token bucket), e.g. the
    /// provider's published rate limit. Default: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_per_sec: Option<f64>,
    /// Tokens the bucket holds (a burst above the rate). Default: the rate
    /// rounded up, at least 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// Longest pause a provider's 429 `Retry-After` may impose on the app,
    /// ms (at most 3 600 000; 0 turns cooldowns off). Default 60 000.
    #[serde(default = "default_cooldown")]
    pub max_cooldown_ms: u64,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        Self {
            max_in_flight: default_in_flight(),
            max_queue: default_queue(),
            queue_timeout_ms: None,
            rate_per_sec: None,
            burst: None,
            max_cooldown_ms: default_cooldown(),
        }
    }
}

impl AdmissionConfig {
    /// Check every number against its bound; `at` is the field path of
    /// the settings (`products.sms.apps.twilio.admission`).
    pub fn validate(&self, at: &str) -> Result<(), DefineError> {
        let bad = |field: &str, why: String| Err(DefineError::new(format!("{at}.{field}"), why));
        if !(1..=MAX_IN_FLIGHT).contains(&self.max_in_flight) {
            return bad(
                "max_in_flight",
                format!("must be between 1 and {MAX_IN_FLIGHT}"),
            );
        }
        if self.max_queue > MAX_QUEUE {
            return bad("max_queue", format!("must be at most {MAX_QUEUE}"));
        }
        if self.queue_timeout_ms.is_some_and(|t| t > MAX_WAIT_MS) {
            return bad(
                "queue_timeout_ms",
                format!("must be at most {MAX_WAIT_MS} (one hour)"),
            );
        }
        if let Some(r) = self.rate_per_sec
            && !(r.is_finite() && r > 0.0 && r <= MAX_RATE)
        {
            return bad(
                "rate_per_sec",
                format!(
                    "must be a number above 0 and at most {MAX_RATE}; leave it out for no limit"
                ),
            );
        }
        if let Some(b) = self.burst {
            if self.rate_per_sec.is_none() {
                return bad("burst", "needs `rate_per_sec`".into());
            }
            if b == 0 || f64::from(b) > MAX_RATE {
                return bad("burst", format!("must be between 1 and {MAX_RATE}"));
            }
        }
        if self.max_cooldown_ms > MAX_WAIT_MS {
            return bad(
                "max_cooldown_ms",
                format!("must be at most {MAX_WAIT_MS} (one hour)"),
            );
        }
        Ok(())
    }

    /// [`Self::validate`], and `max_in_flight` within an instance pool of
    /// `pool` slots (the config, the API and stored settings all ask this).
    pub fn validate_within(&self, at: &str, pool: u32) -> Result<(), DefineError> {
        self.validate(at)?;
        if self.max_in_flight > pool {
            return Err(DefineError::new(
                format!("{at}.max_in_flight"),
                format!(
                    "is {} but the instance pool holds {pool}; lower it or raise `runtime.max_instances`",
                    self.max_in_flight
                ),
            ));
        }
        Ok(())
    }

    pub(crate) fn capacity(&self) -> f64 {
        match (self.burst, self.rate_per_sec) {
            (Some(b), _) => f64::from(b),
            (None, Some(r)) => r.ceil().max(1.0),
            (None, None) => 0.0,
        }
    }
}

/// Why an attempt was not admitted.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "reason", rename_all = "kebab-case")]
pub enum OverloadReason {
    /// The queue was full.
    QueueFull {
        /// Attempts waiting.
        queued: u32,
    },
    /// The app's attempts in flight were at the limit for as long as the
    /// attempt could wait.
    InFlight {
        /// The limit.
        limit: u32,
        /// How long it waited, ms.
        waited_ms: u64,
    },
    /// The app's rate limit had no token in time.
    RateLimit {
        /// The rate, per second.
        rate_per_sec: f64,
    },
    /// The provider asked for a pause (429 + `Retry-After`) that outlasts
    /// the attempt's time.
    Cooldown {
        /// Time left of the pause, ms.
        remaining_ms: u64,
    },
    /// The host had no plugin instance free in time.
    NoInstance,
}

impl OverloadReason {
    /// Short stable label, for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::QueueFull { .. } => "queue-full",
            Self::InFlight { .. } => "in-flight",
            Self::RateLimit { .. } => "rate-limit",
            Self::Cooldown { .. } => "cooldown",
            Self::NoInstance => "no-instance",
        }
    }
}

impl fmt::Display for OverloadReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::QueueFull { queued } => write!(f, "admission queue full ({queued} waiting)"),
            Self::InFlight { limit, waited_ms } => write!(
                f,
                "{limit} attempts in flight (the app's max_in_flight) for the {waited_ms} ms it could wait"
            ),
            Self::RateLimit { rate_per_sec } => {
                write!(f, "rate limit of {rate_per_sec}/s had no token in time")
            }
            Self::Cooldown { remaining_ms } => write!(
                f,
                "the provider asked to pause (429 Retry-After); {remaining_ms} ms left"
            ),
            Self::NoInstance => f.write_str("no plugin instance slot free in time"),
        }
    }
}

/// An attempt not admitted: why, and when trying again makes sense.
#[derive(Debug, Clone, PartialEq, Serialize, thiserror::Error)]
#[error("overloaded: {reason}")]
pub struct Overload {
    /// Why.
    #[serde(flatten)]
    pub reason: OverloadReason,
    /// When a new attempt could start, as far as the host knows.
    #[serde(skip)]
    pub retry_after: Duration,
}

/// The admission state of one app in one env, as provider state and
/// metrics show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AdmissionSnapshot {
    /// Attempts in flight.
    pub in_flight: u32,
    /// Attempts waiting.
    pub queued: u32,
    /// The limit on attempts in flight.
    pub max_in_flight: u32,
    /// The queue's bound.
    pub max_queue: u32,
    /// Tokens in the bucket, when the app has a rate limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens: Option<f64>,
    /// Time left of a provider-requested pause, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cooldown_remaining_ms: Option<u64>,
    /// Attempts admitted so far.
    pub admitted: u64,
    /// Attempts refused as overloaded so far.
    pub overloaded: u64,
}
