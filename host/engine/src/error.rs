//! The error of a definition that cannot be accepted.

/// A definition that cannot be accepted: the field path and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct DefineError {
    /// `fallbacks.pay.options[1].weight`.
    pub path: String,
    /// What is wrong and what to do.
    pub reason: String,
}

impl DefineError {
    /// An error at `path`.
    pub fn new(path: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
