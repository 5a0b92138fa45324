//! `/v1/whoami` and the token routes (`/v1/admin/tokens`, admin only).

use super::body::read_json;
use super::error::ApiError;
use super::guard::{self, forbidden};
use super::state::ApiState;
use crate::access::{NewToken, Principal, TokenError};
use crate::token_ops::TokenOpError;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::sync::Arc;

impl From<TokenOpError> for ApiError {
    fn from(e: TokenOpError) -> Self {
        let message = e.to_string();
        match e {
            TokenOpError::Token(TokenError::NotFound(_)) => ApiError::not_found(message),
            TokenOpError::Token(TokenError::Exists(_) | TokenError::FromConfig(_)) => {
                ApiError::new(StatusCode::CONFLICT, "exists", message)
            }
            TokenOpError::Token(TokenError::Full) => {
                ApiError::new(StatusCode::CONFLICT, "too-many-tokens", message)
            }
            TokenOpError::Token(TokenError::Invalid(_)) => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid-body", message)
            }
            TokenOpError::Unavailable(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "cluster-unavailable",
                message,
            )
            .retry_after(5),
            TokenOpError::Store(_) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "store", message)
            }
        }
    }
}

/// `GET /v1/whoami`: the calling token's name, role and scope (what the
/// dashboard shows and which of its buttons it offers).
pub(super) async fn whoami(axum::Extension(who): axum::Extension<Principal>) -> Response {
    axum::Json(who).into_response()
}

/// `GET /v1/admin/tokens`: every token, never a secret.
pub(super) async fn list(State(s): State<Arc<ApiState>>) -> Response {
    axum::Json(json!({
        "tokens": s.deployment.token_list(),
        "max_api_tokens": crate::access::MAX_API_TOKENS,
    }))
    .into_response()
}

/// `POST /v1/admin/tokens` `{name, role, products, envs?, expires_in_s?}`:
/// 201 with the token, shown this once.
pub(super) async fn create(
    State(s): State<Arc<ApiState>>,
    axum::Extension(who): axum::Extension<Principal>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let actor = guard::actor(&who, &headers)?;
    if !s.deployment.auth.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(forbidden(
            "this server runs with `server.auth = false`: it honours no token; turn auth on first",
        ));
    }
    let new: NewToken = read_json(body, &headers, &s).await?.0;
    let (secret, stored) = s.deployment.token_create(&actor, &new).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({
            "token": secret,
            "name": stored.name,
            "role": stored.role,
            "products": stored.products,
            "envs": stored.envs,
            "expires_unix_ms": stored.expires_unix_ms,
            "note": "the token is shown this once; keep it in a secret store",
        })),
    )
        .into_response())
}

/// `DELETE /v1/admin/tokens/{name}`: revoke it at once.
pub(super) async fn revoke(
    State(s): State<Arc<ApiState>>,
    axum::Extension(who): axum::Extension<Principal>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let actor = guard::actor(&who, &headers)?;
    s.deployment.token_revoke(&actor, &name).await?;
    Ok(axum::Json(json!({"name": name, "revoked": true})).into_response())
}

/// `POST /v1/admin/tokens/{name}/rotate`: a new secret; the old one stops
/// working at once.
pub(super) async fn rotate(
    State(s): State<Arc<ApiState>>,
    axum::Extension(who): axum::Extension<Principal>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let actor = guard::actor(&who, &headers)?;
    let (secret, stored) = s.deployment.token_rotate(&actor, &name).await?;
    Ok(axum::Json(json!({
        "token": secret,
        "name": stored.name,
        "role": stored.role,
        "expires_unix_ms": stored.expires_unix_ms,
        "note": "the token is shown this once; the old one no longer works",
    }))
    .into_response())
}
