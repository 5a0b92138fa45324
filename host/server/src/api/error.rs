//! The API's errors: one JSON shape with a stable `code`, and the status
//! of every run error.

use crate::deployment::ChangeError;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use switchyard_engine::{ErrorCode, RunError};

/// An error response.
#[derive(Debug)]
pub struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) body: Value,
    /// Seconds for a `Retry-After` header (overload).
    pub(crate) retry_after: Option<u64>,
}

impl ApiError {
    /// Ask the caller to come back after `secs` seconds (`Retry-After`).
    pub(crate) fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs.max(1));
        self
    }

    pub(crate) fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            body: json!({"code": code, "message": message.into()}),
            retry_after: None,
        }
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", message)
    }

    pub(crate) fn field(mut self, field: impl Into<String>) -> Self {
        self.body["field"] = Value::String(field.into());
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, axum::Json(self.body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        if let Some(secs) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
        }
        r
    }
}

impl From<ChangeError> for ApiError {
    fn from(e: ChangeError) -> Self {
        match e {
            ChangeError::NotFound { .. } => Self::not_found(e.to_string()),
            ChangeError::Exists { .. } => Self::new(StatusCode::CONFLICT, "exists", e.to_string()),
            ChangeError::Invalid(d) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-definition",
                d.to_string(),
            )
            .field(d.path),
            ChangeError::Store(s) => {
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "store", s.to_string())
            }
        }
    }
}

pub(crate) fn run_status(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::InvalidInput => StatusCode::BAD_REQUEST,
        ErrorCode::Rejected => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::NoProvider | ErrorCode::Overloaded | ErrorCode::IdempotencyUnavailable => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        ErrorCode::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        ErrorCode::InProgress => StatusCode::CONFLICT,
        ErrorCode::Mapping | ErrorCode::AllFailed | ErrorCode::Ambiguous | ErrorCode::Stopped => {
            StatusCode::BAD_GATEWAY
        }
    }
}

impl From<RunError> for ApiError {
    fn from(e: RunError) -> Self {
        Self {
            status: run_status(e.code),
            // Whole seconds, rounded up: never tell a client to come back
            // before the host can take it.
            retry_after: e.retry_after_ms.map(|ms| ms.div_ceil(1000).max(1)),
            body: serde_json::to_value(&e).expect("run errors serialize"),
        }
    }
}
