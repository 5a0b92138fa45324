//! Authentication and authorisation of every `/v1` route and `/metrics`:
//! the bearer token names a principal (role and scope); each route names
//! the role it needs and where its scope comes from. A route with no rule
//! here is refused to everyone, so a new route cannot slip out unguarded.

use super::error::ApiError;
use super::state::ApiState;
use crate::access::{AuthFailure, Need, Principal, Role};
use crate::ops::{Actor, CHANNELS};
use axum::RequestExt;
use axum::extract::{MatchedPath, RawPathParams, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;
use std::sync::Arc;

/// The client's address, set by `serve` on every request.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// Where a route's scope comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum From {
    /// Nothing scoped (or the handler shows only what the token may see).
    Nothing,
    /// The `{product}` of the path; env-limited tokens may read it.
    Product,
    /// The `{product}` of the path, for a change that applies to every
    /// env: an env-limited token may not make it.
    ProductWide,
    /// The `{product}` and `{env}` of the path.
    ProductEnv,
}

/// Every guarded route: method, path template, the role it needs, where
/// its scope comes from. `docs/security.md` prints this table.
pub const RULES: &[(&str, &str, Need, From)] = &[
    ("GET", "/v1/whoami", Need::Any, From::Nothing),
    (
        "GET",
        "/v1/{product}/apps",
        Need::Role(Role::Read),
        From::Product,
    ),
    (
        "GET",
        "/v1/{product}/apps/{app}/admission",
        Need::Role(Role::Read),
        From::Product,
    ),
    (
        "PUT",
        "/v1/{product}/apps/{app}/admission",
        Need::Role(Role::Define),
        From::ProductWide,
    ),
    (
        "GET",
        "/v1/{product}/definitions/{kinds}",
        Need::Role(Role::Read),
        From::Product,
    ),
    (
        "POST",
        "/v1/{product}/definitions/{kinds}",
        Need::Role(Role::Define),
        From::ProductWide,
    ),
    (
        "GET",
        "/v1/{product}/definitions/{kinds}/{tag}",
        Need::Role(Role::Read),
        From::Product,
    ),
    (
        "PUT",
        "/v1/{product}/definitions/{kinds}/{tag}",
        Need::Role(Role::Define),
        From::ProductWide,
    ),
    (
        "PATCH",
        "/v1/{product}/definitions/{kinds}/{tag}",
        Need::Role(Role::Define),
        From::ProductWide,
    ),
    (
        "DELETE",
        "/v1/{product}/definitions/{kinds}/{tag}",
        Need::Role(Role::Define),
        From::ProductWide,
    ),
    (
        "POST",
        "/v1/{product}/{env}/{kinds}/{tag}/run",
        Need::Role(Role::Run),
        From::ProductEnv,
    ),
    (
        "GET",
        "/v1/{product}/{env}/{kinds}/{tag}/providers",
        Need::Role(Role::Read),
        From::ProductEnv,
    ),
    (
        "GET",
        "/v1/{product}/{env}/{kinds}/{tag}/providers/{provider}/history",
        Need::Role(Role::Read),
        From::ProductEnv,
    ),
    (
        "GET",
        "/v1/{product}/{env}/healthchecks/{tag}",
        Need::Role(Role::Read),
        From::ProductEnv,
    ),
    (
        "POST",
        "/v1/{product}/{env}/healthchecks/{tag}/check",
        Need::Role(Role::Operate),
        From::ProductEnv,
    ),
    (
        "POST",
        "/v1/{product}/providers/{provider}/{action}",
        Need::Role(Role::Operate),
        From::ProductWide,
    ),
    (
        "POST",
        "/v1/admin/breakers/force",
        Need::Role(Role::Operate),
        From::Nothing,
    ),
    (
        "GET",
        "/v1/admin/breakers/forces",
        Need::Role(Role::Read),
        From::Nothing,
    ),
    (
        "GET",
        "/v1/admin/audit",
        Need::Role(Role::Read),
        From::Nothing,
    ),
    ("GET", "/v1/events", Need::Role(Role::Read), From::Nothing),
    ("GET", "/v1/runs", Need::Role(Role::Read), From::Nothing),
    ("GET", "/metrics", Need::Role(Role::Read), From::Nothing),
    (
        "POST",
        "/v1/admin/reload",
        Need::Role(Role::Admin),
        From::Nothing,
    ),
    (
        "GET",
        "/v1/admin/tokens",
        Need::Role(Role::Admin),
        From::Nothing,
    ),
    (
        "POST",
        "/v1/admin/tokens",
        Need::Role(Role::Admin),
        From::Nothing,
    ),
    (
        "DELETE",
        "/v1/admin/tokens/{name}",
        Need::Role(Role::Admin),
        From::Nothing,
    ),
    (
        "POST",
        "/v1/admin/tokens/{name}/rotate",
        Need::Role(Role::Admin),
        From::Nothing,
    ),
];

/// The rule of a route.
pub fn rule(method: &Method, template: &str) -> Option<(Need, From)> {
    RULES
        .iter()
        .find(|(m, t, _, _)| *m == method.as_str() && *t == template)
        .map(|(_, _, n, f)| (*n, *f))
}

/// 403 `forbidden`.
pub fn forbidden(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
}

fn unauthorized(why: &AuthFailure) -> ApiError {
    let message = match why {
        AuthFailure::Missing => {
            "send `Authorization: Bearer <token>`: a token of `[[server.tokens]]`, of `server.token_env`, or one made with `switchyard token create`".to_string()
        }
        AuthFailure::Unknown => "the token is not one this server knows (revoked, rotated or mistyped); ask an admin for a token".to_string(),
        AuthFailure::Expired(name) => format!("token `{name}` has expired; ask an admin to rotate it or make a new one"),
    };
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
}

/// The bearer token of a request, if it sent one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// Who a request is, or why not (counted and throttled per address).
pub fn authenticate(
    s: &ApiState,
    req_headers: &HeaderMap,
    addr: Option<ClientAddr>,
) -> Result<Principal, ApiError> {
    let d = &s.deployment;
    if !d.auth.load(std::sync::atomic::Ordering::SeqCst) {
        return Ok(Principal::open());
    }
    let ip = addr.map(|a| a.0.ip());
    if let Some(secs) = d.throttle.blocked(ip) {
        d.metrics.auth_failure("throttled");
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too-many-failures",
            format!("too many failed authentications from this address; retry in {secs} s"),
        )
        .retry_after(secs));
    }
    d.tokens.authenticate(bearer(req_headers)).map_err(|why| {
        // Only a token that was tried counts towards the throttle: a
        // request without one guesses nothing.
        if why != AuthFailure::Missing {
            d.throttle.failed(ip);
        }
        d.metrics.auth_failure(why.label());
        unauthorized(&why)
    })
}

/// The middleware: authenticate, find the route's rule, check role and
/// scope, and hand the principal to the handler.
pub async fn guard(State(s): State<Arc<ApiState>>, mut req: Request, next: Next) -> Response {
    let addr = req.extensions().get::<ClientAddr>().copied();
    let principal = match authenticate(&s, req.headers(), addr) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let template = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_default();
    let Some((need, from)) = rule(req.method(), &template) else {
        return forbidden(format!(
            "{} {template} has no access rule; no token may call it",
            req.method()
        ))
        .into_response();
    };
    if !principal.role.grants(need) {
        let Need::Role(role) = need else {
            unreachable!("every role grants Any")
        };
        s.deployment.metrics.auth_failure("forbidden");
        return forbidden(format!(
            "needs role `{role}`{}; token `{}` has role `{}`",
            if role == Role::Read {
                " (or operate, define, admin)"
            } else if role == Role::Admin {
                ""
            } else {
                " (or admin)"
            },
            principal.name,
            principal.role
        ))
        .into_response();
    }
    if from != From::Nothing {
        let params = req.extract_parts::<RawPathParams>().await.ok();
        let param = |name: &str| {
            params
                .as_ref()
                .and_then(|p| {
                    p.iter()
                        .find(|(k, _)| *k == name)
                        .map(|(_, v)| v.to_string())
                })
                .unwrap_or_default()
        };
        let product = param("product");
        let env = (from == From::ProductEnv).then(|| param("env"));
        if let Some(why) = principal.refusal(&product, env.as_deref()) {
            s.deployment.metrics.auth_failure("forbidden");
            return forbidden(why).into_response();
        }
        if from == From::ProductWide && !principal.envs.is_all() {
            s.deployment.metrics.auth_failure("forbidden");
            return forbidden(format!(
                "this change applies to every env of `{product}`; token `{}` is limited to some envs",
                principal.name
            ))
            .into_response();
        }
    }
    req.extensions_mut().insert(principal);
    next.run(req).await
}

/// The actor of a request: its token's name, and the channel the caller
/// names in `x-switchyard-actor` (`api` without one).
pub fn actor(p: &Principal, headers: &HeaderMap) -> Result<Actor, ApiError> {
    let channel = match headers.get("x-switchyard-actor").map(|v| v.to_str()) {
        None => "api",
        Some(Ok(v)) => CHANNELS.iter().copied().find(|a| *a == v).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid-header",
                format!("x-switchyard-actor must be one of {CHANNELS:?}"),
            )
        })?,
        Some(Err(_)) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid-header",
                "x-switchyard-actor is not text",
            ));
        }
    };
    Ok(Actor {
        name: p.name.clone(),
        channel,
    })
}
