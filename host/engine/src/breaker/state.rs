//! What a breaker is in, as the rest of the engine, the API and other
//! replicas see it: its state, an operator's force (a state of its own,
//! kept until released), a snapshot, and the record of a transition that
//! replicas share.

use crate::adapter::AttemptError;
use std::time::UNIX_EPOCH;

/// The state of a breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BreakerState {
    /// Requests pass.
    Closed,
    /// Requests are rejected.
    Open,
    /// A limited number of probes pass.
    HalfOpen,
}

/// What an operator makes a breaker do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Force {
    /// Reject every request, whatever the provider does.
    Open,
    /// Admit every request and count nothing against it.
    Closed,
    /// Back to its own judgement, from a fresh closed window.
    Release,
}

impl Force {
    /// `open`, `closed` or `release`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Closed => "closed",
            Self::Release => "release",
        }
    }

    /// The force a word names (`open`, `closed`, `release`).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "open" => Some(Self::Open),
            "closed" => Some(Self::Closed),
            "release" => Some(Self::Release),
            _ => None,
        }
    }
}

/// A breaker's state as the provider-state API shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BreakerSnapshot {
    /// The breaker's key (`product/env/app/action`, or
    /// `product/env/<rendered breaker_key>`).
    pub key: String,
    /// Closed, open or half-open.
    pub state: BreakerState,
    /// Requests in the current window.
    pub requests: u64,
    /// Counted failures in the current window.
    pub failures: u64,
    /// The last counted error, as text.
    pub last_error: Option<String>,
    /// An operator's force in effect (`open` or `closed`), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forced: Option<Force>,
}

/// A breaker transition one replica made, as the others apply it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SharedBreaker {
    /// Open (`true`) or closed again (`false`).
    pub open: bool,
    /// The open episode: when (Unix ms) the breaker opened. A close names
    /// the episode it ends, so a late close never ends a newer opening.
    pub episode: u64,
    /// How long the breaker stays open before probing, ms.
    pub open_timeout_ms: u64,
    /// Requests in the window that opened it: the half-open allowance is a
    /// share of them, the same on every replica.
    pub requests: u64,
    /// The error that opened it.
    pub last_error: Option<AttemptError>,
}

/// Unix ms of a wall time (0 before the epoch).
pub(crate) fn unix_ms(t: std::time::SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
