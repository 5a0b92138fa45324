//! Runs, provider and healthcheck state, apps and their admission.

use super::body::*;
use super::error::*;
use super::guard;
use super::state::*;

use crate::access::Principal;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_engine::{ErrorCode, Kind, RunOptions};

/// The body of a run.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RunBody {
    #[serde(default)]
    pub(crate) input: Value,
    #[serde(default)]
    pub(crate) idempotency_key: Option<String>,
    #[serde(default, deserialize_with = "session_object")]
    pub(crate) session: Option<switchyard_engine::Session>,
    #[serde(default)]
    pub(crate) cache: Option<String>,
    #[serde(default)]
    pub(crate) deadline_ms: Option<u64>,
}

/// `session` as the object the API documents. A derived struct would also
/// take its fields as an array, in order.
fn session_object<'de, D>(d: D) -> Result<Option<switchyard_engine::Session>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    use serde::de::Error;
    match Option::<Value>::deserialize(d)? {
        None => Ok(None),
        Some(v) if v.is_object() => serde_json::from_value(v)
            .map(Some)
            .map_err(|e| D::Error::custom(format!("`session`: {e}"))),
        Some(_) => Err(D::Error::custom(
            "`session` must be a JSON object: {\"tag\": ..., \"token\": ...}",
        )),
    }
}

pub(crate) async fn run(
    State(s): State<Arc<ApiState>>,
    Path((product, env, kinds, tag)): Path<(String, String, String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let kind = kind_of(&kinds, RUN_KINDS)?;
    check_product_env(&s, &product, Some(&env))?;
    // The body stays counted in the host's budget until the run ends.
    let (b, _held): (RunBody, _) = read_json(body, &headers, &s).await?;
    if let Some(ms) = b.deadline_ms
        && !(1..=switchyard_engine::bounds::MAX_DEADLINE_MS).contains(&ms)
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid-body",
            format!(
                "deadline_ms is {ms}; it must be between 1 and {}",
                switchyard_engine::bounds::MAX_DEADLINE_MS
            ),
        )
        .field("deadline_ms"));
    }
    let options = RunOptions {
        idempotency_key: b.idempotency_key,
        session: b.session,
        cache: b.cache,
        deadline: b.deadline_ms.map(Duration::from_millis),
    };
    let input = if b.input.is_null() {
        json!({})
    } else {
        b.input
    };
    let started = Instant::now();
    let d = &s.deployment;
    let result = d.yard.run(kind, &product, &env, &tag, input, options).await;
    let code = result.as_ref().map_or_else(|e| e.code.as_str(), |_| "ok");
    // A tag that names no definition is the caller's text: never a label
    // (2,000 made-up tags would be 2,000 series).
    let tag_label = if code == ErrorCode::NotFound.as_str() {
        "(unknown)"
    } else {
        tag.as_str()
    };
    d.metrics.run(
        &product,
        &env,
        kind.as_str(),
        tag_label,
        code,
        started.elapsed(),
    );
    let adaptive = match &result {
        Ok(r) => r.trace.adaptive.as_ref(),
        Err(e) => e.trace.as_ref().and_then(|t| t.adaptive.as_ref()),
    };
    if let Some(a) = adaptive {
        d.metrics.adaptive_choice(&product, &env, &tag, a);
    }
    // The answer is written first, so the result then moves into the kept
    // run without copying its trace.
    let answer = match &result {
        Ok(r) => Ok(axum::Json(r).into_response()),
        Err(e) => Err(ApiError::from(e.clone())),
    };
    if code != ErrorCode::NotFound.as_str() {
        let ms = started.elapsed().as_secs_f64() * 1e3;
        d.hub.record_run(&product, &env, kind, &tag, result, ms);
    }
    answer
}

pub(crate) async fn providers(
    State(s): State<Arc<ApiState>>,
    Path((product, env, kinds, tag)): Path<(String, String, String, String)>,
) -> Result<Response, ApiError> {
    let kind = kind_of(&kinds, &[Kind::Fallback, Kind::Quota])?;
    check_product_env(&s, &product, Some(&env))?;
    let states = s
        .deployment
        .yard
        .provider_states(&product, &env, kind, &tag)
        .map_err(|e| ApiError::not_found(e.to_string()))?;
    let d = s.deployment.clone();
    let body = tokio::task::spawn_blocking(move || {
        let mut v = json!({"providers": states});
        d.annotate_history(&mut v);
        v
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    Ok(axum::Json(body).into_response())
}

pub(crate) async fn health(
    State(s): State<Arc<ApiState>>,
    Path((product, env, tag)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    check_product_env(&s, &product, Some(&env))?;
    let snap = s
        .deployment
        .yard
        .health(&product, &env, &tag)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no healthcheck `{tag}` runs in `{product}`/`{env}`"
            ))
        })?;
    Ok(axum::Json(snap).into_response())
}

pub(crate) async fn apps(
    State(s): State<Arc<ApiState>>,
    Path(product): Path<String>,
) -> Result<Response, ApiError> {
    check_product_env(&s, &product, None)?;
    // Summaries carry the adapter's self-description, never grants or
    // credentials.
    Ok(axum::Json(json!({"apps": s.deployment.yard.apps(&product)})).into_response())
}

/// An app's admission settings and, per env, its live admission state.
pub(crate) async fn admission(
    State(s): State<Arc<ApiState>>,
    Path((product, app)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    check_app(&s, &product, &app)?;
    Ok(axum::Json(admission_body(&s, &product, &app)).into_response())
}

pub(crate) fn admission_body(s: &ApiState, product: &str, app: &str) -> Value {
    let yard = &s.deployment.yard;
    let envs: Vec<Value> = yard
        .admission_states()
        .into_iter()
        .filter(|a| a.product == product && a.app == app)
        .map(|a| json!({"env": a.env, "state": a.state}))
        .collect();
    json!({"config": yard.admission(product, app), "envs": envs})
}

pub(crate) fn check_app(s: &ApiState, product: &str, app: &str) -> Result<(), ApiError> {
    check_product_env(s, product, None)?;
    if !s
        .deployment
        .config()
        .apps
        .iter()
        .any(|a| a.product == product && a.tag == app)
    {
        return Err(ApiError::not_found(format!(
            "no app `{app}` in product `{product}`; apps come from the config file"
        )));
    }
    Ok(())
}

/// Replace an app's admission settings; they apply at once and are kept in
/// the store across restarts.
pub(crate) async fn set_admission(
    State(s): State<Arc<ApiState>>,
    axum::Extension(who): axum::Extension<Principal>,
    Path((product, app)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let actor = guard::actor(&who, &headers)?;
    check_app(&s, &product, &app)?;
    let config: switchyard_engine::AdmissionConfig = read_json(body, &headers, &s).await?.0;
    s.deployment.set_admission(&product, &app, config)?;
    let _ = s.deployment.audit(
        &actor,
        "admission",
        &format!("{product}/apps/{app}"),
        serde_json::to_string(&config).unwrap_or_default(),
    );
    Ok(axum::Json(admission_body(&s, &product, &app)).into_response())
}
