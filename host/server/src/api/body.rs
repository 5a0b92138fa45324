//! Reading requests: JSON bodies under the size cap and the host's byte
//! budget, kinds in paths, product and env checks.

use super::error::*;
use super::state::*;

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use switchyard_engine::Kind;

/// Read a JSON body of at most `server.max_body_bytes`, held under the
/// host's byte budget (`server.max_buffered_mb`) while the returned
/// [`Held`](switchyard_runtime::Held) lives: 503 `overloaded` when the
/// budget has no room for it.
pub(crate) async fn read_json<T: serde::de::DeserializeOwned>(
    body: Body,
    headers: &HeaderMap,
    s: &ApiState,
) -> Result<(T, switchyard_runtime::Held), ApiError> {
    use http_body_util::BodyExt;
    let limit = s.max_body_bytes;
    if let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        && !ct.starts_with("application/json")
        && !ct.starts_with("application/merge-patch+json")
    {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid-body",
            format!("content-type `{ct}` is not JSON; send `Content-Type: application/json`"),
        ));
    }
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
            format!("the body is larger than {limit} bytes (`server.max_body_bytes`)"),
        )
    };
    let budget = &s.deployment.host_bytes;
    let full = || {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            format!(
                "the server holds {} of its {} MiB for request bodies and answers in flight (`server.max_buffered_mb`); retry shortly",
                budget.used() >> 20,
                budget.cap() >> 20
            ),
        )
        .retry_after(1)
    };
    let mut held = budget.hold();
    let mut bytes = Vec::new();
    let mut body = http_body_util::Limited::new(body, limit);
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(|_| too_large())?.into_data() else {
            continue;
        };
        if !held.grow(data.len()) {
            return Err(full());
        }
        bytes.extend_from_slice(&data);
    }
    // Every body this API takes is one JSON object. A derived struct would
    // also take an array of its fields in order (`[]` as all defaults), so
    // anything else is refused here, before it is read as one.
    if let Some(first) = bytes.iter().find(|b| !b.is_ascii_whitespace())
        && *first != b'{'
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid-body",
            "the body must be one JSON object (`{ ... }`), not an array, string, number, boolean or null",
        ));
    }
    let value = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid-body",
            format!("the body is not the expected JSON: {e}"),
        )
    })?;
    Ok((value, held))
}

pub(crate) fn kind_of(kinds: &str, allowed: &[Kind]) -> Result<Kind, ApiError> {
    allowed
        .iter()
        .copied()
        .find(|k| k.plural() == kinds)
        .ok_or_else(|| {
            let names: Vec<&str> = allowed.iter().map(|k| k.plural()).collect();
            ApiError::not_found(format!("`{kinds}` is not one of: {}", names.join(", ")))
        })
}

pub(crate) const ALL_KINDS: &[Kind] = &[
    Kind::Healthcheck,
    Kind::Quota,
    Kind::Fallback,
    Kind::Feature,
    Kind::Cache,
];

pub(crate) const RUN_KINDS: &[Kind] = &[Kind::Fallback, Kind::Quota, Kind::Feature];

pub(crate) fn check_product_env(
    s: &ApiState,
    product: &str,
    env: Option<&str>,
) -> Result<(), ApiError> {
    Ok(s.deployment.check_scope(product, env)?)
}
