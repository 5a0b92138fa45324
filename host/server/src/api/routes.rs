//! The router: every route, the guard on `/v1` and `/metrics`, the JSON
//! fallbacks.

use super::definitions::*;
use super::docs::*;
use super::error::ApiError;
use super::runs::*;
use super::state::*;
use super::{guard, live, tokens};

use axum::Router;
use axum::http::StatusCode;
use axum::middleware;
use axum::routing::{get, post};
use std::sync::Arc;

/// The router over `state`.
pub fn router(state: Arc<ApiState>) -> Router {
    let v1 = Router::new()
        .route("/v1/{product}/apps", get(apps))
        .route(
            "/v1/{product}/apps/{app}/admission",
            get(admission).put(set_admission),
        )
        .route("/v1/{product}/definitions/{kinds}", get(list).post(create))
        .route(
            "/v1/{product}/definitions/{kinds}/{tag}",
            get(fetch).put(update).patch(patch).delete(delete),
        )
        .route("/v1/{product}/{env}/{kinds}/{tag}/run", post(run))
        .route(
            "/v1/{product}/{env}/{kinds}/{tag}/providers",
            get(providers),
        )
        .route(
            "/v1/{product}/{env}/{kinds}/{tag}/providers/{provider}/history",
            get(super::history::history),
        )
        .route("/v1/{product}/{env}/healthchecks/{tag}", get(health))
        .route("/v1/admin/reload", post(reload))
        .route("/v1/events", get(live::events))
        .route("/v1/runs", get(live::runs))
        .route("/v1/admin/audit", get(live::audit))
        .route("/v1/admin/breakers/force", post(live::force))
        .route("/v1/admin/breakers/forces", get(live::forces))
        .route(
            "/v1/{product}/{env}/healthchecks/{tag}/check",
            post(live::check_now),
        )
        .route(
            "/v1/{product}/providers/{provider}/{action}",
            post(live::drain),
        )
        .route("/v1/whoami", get(tokens::whoami))
        .route("/v1/admin/tokens", get(tokens::list).post(tokens::create))
        .route(
            "/v1/admin/tokens/{name}",
            axum::routing::delete(tokens::revoke),
        )
        .route("/v1/admin/tokens/{name}/rotate", post(tokens::rotate))
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(state.clone(), guard::guard));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/openapi.json", get(openapi))
        .route("/ui", get(live::page))
        .route("/ui/app.js", get(live::script))
        .route("/ui/app.css", get(live::style))
        .merge(v1)
        .fallback(|| async { ApiError::not_found("no such endpoint; see /openapi.json") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "this endpoint does not take that method; see /openapi.json",
            )
        })
        .with_state(state)
}
