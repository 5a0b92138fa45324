//! A provider's history by step (`…/providers/{provider}/history`).

use super::body::*;
use super::error::*;
use super::state::*;
use crate::history::{MAX_POINTS, MIN_STEP_MS, now_unix_ms};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use switchyard_engine::Kind;

/// `from`, `to` (Unix ms) and `step` (ms).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HistoryQuery {
    from: Option<u64>,
    to: Option<u64>,
    step: Option<u64>,
}

fn bad(field: &str, message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid-query", message).field(field)
}

pub(crate) async fn history(
    State(s): State<Arc<ApiState>>,
    Path((product, env, kinds, tag, provider)): Path<(String, String, String, String, String)>,
    q: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid-query",
            format!(
                "{}; the parameters are `from` and `to` (Unix ms) and `step` (ms, at least 60000)",
                e.body_text()
            ),
        )
    })?;
    let kind = kind_of(&kinds, &[Kind::Fallback, Kind::Quota])?;
    check_product_env(&s, &product, Some(&env))?;
    let states = s
        .deployment
        .yard
        .provider_states(&product, &env, kind, &tag)
        .map_err(|e| ApiError::not_found(e.to_string()))?;
    let state = states
        .iter()
        .find(|p| p.provider == provider)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no provider `{provider}` in {kind} `{tag}`; its providers: {}",
                states
                    .iter()
                    .map(|p| p.provider.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
    let to = q.to.unwrap_or_else(now_unix_ms);
    let from = q.from.unwrap_or_else(|| to.saturating_sub(3_600_000));
    let step = q.step.unwrap_or(MIN_STEP_MS);
    if from >= to {
        return Err(bad(
            "from",
            format!("`from` ({from}) must be before `to` ({to}), both Unix ms"),
        ));
    }
    if step < MIN_STEP_MS {
        return Err(bad(
            "step",
            format!(
                "`step` is {step}; it must be at least {MIN_STEP_MS} (a minute, the history's grain)"
            ),
        ));
    }
    let points = (to - from).div_ceil(step);
    if points > MAX_POINTS {
        return Err(bad(
            "step",
            format!(
                "{points} points from `from` to `to` by `step`; at most {MAX_POINTS}: raise `step` or narrow `from`..`to`"
            ),
        ));
    }
    let key = state.scorecard_key.clone();
    let d = s.deployment.clone();
    let k = key.clone();
    let points = tokio::task::spawn_blocking(move || d.history(&k, from, to, step))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "store", e))?;
    let days = s.deployment.config().file.server.history_days;
    Ok(axum::Json(json!({
        "provider": provider,
        "scorecard_key": key,
        "from": from,
        "to": to,
        "step": step,
        "kept_days": if s.deployment.store.is_some() { days } else { 0 },
        "points": points,
    }))
    .into_response())
}
