//! The error classes an adapter returns, and how HTTP answers map to them.

use crate::bindings::switchyard::adapter::adapter_types as wit;
use std::fmt;
use std::time::Duration;

/// What went wrong, as the provider said it where it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detail {
    /// Human-readable reason.
    pub message: String,
    /// The provider's HTTP status, if it answered.
    pub status: Option<u16>,
    /// The provider's own error code (`card_declined`, `21211`, ...).
    pub code: Option<String>,
}

/// Why an attempt failed. The class decides what the engine does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The provider refused this input: the engine neither retries nor fails over.
    Rejected(Detail),
    /// The provider could not serve now (5xx, 408, refused connection).
    Unavailable(Detail),
    /// The provider asked us to slow down, maybe saying for how long.
    RateLimited {
        /// Reason and status.
        detail: Detail,
        /// The provider's `Retry-After`, if given.
        retry_after: Option<Duration>,
    },
    /// No answer in time, and the request was not sent.
    Timeout(Detail),
    /// The request may have been executed (failure after it was sent).
    Ambiguous(Detail),
    /// The adapter itself failed: bad config, unparseable answer, a bug.
    Internal(Detail),
}

fn detail(message: impl Into<String>) -> Detail {
    Detail {
        message: message.into(),
        status: None,
        code: None,
    }
}

impl Error {
    /// `rejected` with a message.
    pub fn rejected(message: impl Into<String>) -> Self {
        Self::Rejected(detail(message))
    }
    /// `unavailable` with a message.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::Unavailable(detail(message))
    }
    /// `timeout` with a message.
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::Timeout(detail(message))
    }
    /// `ambiguous` with a message.
    pub fn ambiguous(message: impl Into<String>) -> Self {
        Self::Ambiguous(detail(message))
    }
    /// `internal` with a message.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::Internal(detail(message))
    }

    /// The class an HTTP answer with `status` belongs to: 429 → rate-limited;
    /// 408 and 5xx → unavailable; 401 and 403 → internal (a revoked key or
    /// a missing scope is this app's grant, not the input: the run fails
    /// over, as with every shipped adapter); other 4xx → rejected; anything
    /// else → internal (a status the adapter did not expect).
    pub fn from_status(
        status: u16,
        message: impl Into<String>,
        retry_after: Option<Duration>,
    ) -> Self {
        let d = Detail {
            message: message.into(),
            status: Some(status),
            code: None,
        };
        match status {
            429 => Self::RateLimited {
                detail: d,
                retry_after,
            },
            408 | 500..=599 => Self::Unavailable(d),
            401 | 403 => Self::Internal(d),
            400..=499 => Self::Rejected(d),
            _ => Self::Internal(d),
        }
    }

    /// Attach the provider's error code.
    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.detail_mut().code = Some(code.into());
        self
    }

    /// Attach the provider's HTTP status.
    pub fn with_status(mut self, status: u16) -> Self {
        self.detail_mut().status = Some(status);
        self
    }

    /// The detail, whatever the class.
    pub fn detail(&self) -> &Detail {
        match self {
            Self::Rejected(d)
            | Self::Unavailable(d)
            | Self::Timeout(d)
            | Self::Ambiguous(d)
            | Self::Internal(d)
            | Self::RateLimited { detail: d, .. } => d,
        }
    }

    fn detail_mut(&mut self) -> &mut Detail {
        match self {
            Self::Rejected(d)
            | Self::Unavailable(d)
            | Self::Timeout(d)
            | Self::Ambiguous(d)
            | Self::Internal(d)
            | Self::RateLimited { detail: d, .. } => d,
        }
    }

    pub(crate) fn into_wit(self) -> wit::AdapterError {
        let conv = |d: Detail| wit::ErrorDetail {
            message: d.message,
            status: d.status,
            code: d.code,
        };
        match self {
            Self::Rejected(d) => wit::AdapterError::Rejected(conv(d)),
            Self::Unavailable(d) => wit::AdapterError::Unavailable(conv(d)),
            Self::Timeout(d) => wit::AdapterError::Timeout(conv(d)),
            Self::Ambiguous(d) => wit::AdapterError::Ambiguous(conv(d)),
            Self::Internal(d) => wit::AdapterError::Internal(conv(d)),
            Self::RateLimited {
                detail,
                retry_after,
            } => wit::AdapterError::RateLimited(wit::RateLimit {
                detail: conv(detail),
                retry_after_ms: retry_after.map(|d| d.as_millis() as u64),
            }),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let class = match self {
            Self::Rejected(_) => "rejected",
            Self::Unavailable(_) => "unavailable",
            Self::RateLimited { .. } => "rate-limited",
            Self::Timeout(_) => "timeout",
            Self::Ambiguous(_) => "ambiguous",
            Self::Internal(_) => "internal",
        };
        let d = self.detail();
        write!(f, "{class}: {}", d.message)?;
        if let Some(s) = d.status {
            write!(f, " (status {s})")?;
        }
        if let Some(c) = &d.code {
            write!(f, " (code {c})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_classes() {
        assert!(matches!(
            Error::from_status(400, "", None),
            Error::Rejected(_)
        ));
        assert!(matches!(
            Error::from_status(404, "", None),
            Error::Rejected(_)
        ));
        // A grant problem of this app, not the input's: the run fails over.
        for status in [401, 403] {
            assert!(matches!(
                Error::from_status(status, "", None),
                Error::Internal(_)
            ));
        }
        assert!(matches!(
            Error::from_status(408, "", None),
            Error::Unavailable(_)
        ));
        assert!(matches!(
            Error::from_status(503, "", None),
            Error::Unavailable(_)
        ));
        let e = Error::from_status(429, "", Some(Duration::from_secs(3)));
        assert_eq!(
            e,
            Error::RateLimited {
                detail: Detail {
                    message: String::new(),
                    status: Some(429),
                    code: None
                },
                retry_after: Some(Duration::from_secs(3))
            }
        );
        assert!(matches!(
            Error::from_status(302, "", None),
            Error::Internal(_)
        ));
    }
}
