//! The live side of the API: the event stream (`/v1/events`), recent runs
//! (`/v1/runs`), operator actions with their audit log, and the dashboard
//! page (`/ui`) that uses them.

use super::{ApiError, ApiState, read_json};
use crate::events::{RunFilter, snapshot};
use crate::ops::{ACTORS, OpError};
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use switchyard_engine::Force;

/// How often the stream sends the providers' state.
pub const STATE_EVERY: Duration = Duration::from_secs(1);

impl From<OpError> for ApiError {
    fn from(e: OpError) -> Self {
        match e {
            OpError::NotFound(m) => ApiError::not_found(m),
            OpError::Invalid(m) => ApiError::new(StatusCode::BAD_REQUEST, "invalid-body", m),
            OpError::Store(e) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "store", e.to_string())
            }
        }
    }
}

/// Who acts: the `x-switchyard-actor` header (`api`, `cli`, `dashboard`),
/// `api` without one.
fn actor(headers: &HeaderMap) -> Result<&'static str, ApiError> {
    match headers.get("x-switchyard-actor").map(|v| v.to_str()) {
        None => Ok("api"),
        Some(Ok(v)) => ACTORS.iter().copied().find(|a| *a == v).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid-header",
                format!("x-switchyard-actor must be one of {ACTORS:?}"),
            )
        }),
        Some(Err(_)) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid-header",
            "x-switchyard-actor is not text",
        )),
    }
}

fn bad_query(e: QueryRejection) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid-query", e.body_text())
}

/// `GET /v1/events`: server-sent events. `state` (every second, and first):
/// every product's providers; `run`: a run ended; `audit`: an operator
/// acted. Ends when the server begins to shut down.
pub(super) async fn events(State(s): State<Arc<ApiState>>) -> Response {
    use futures_util::stream;
    let rx = s.deployment.hub.subscribe();
    let mut tick = tokio::time::interval(STATE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let stream = stream::unfold((s, rx, tick), |(s, mut rx, mut tick)| async move {
        if !s.ready.load(Ordering::SeqCst) {
            return None;
        }
        let event = tokio::select! {
            _ = tick.tick() => {
                let d = s.deployment.clone();
                let snap = tokio::task::spawn_blocking(move || {
                    let scopes: Vec<(String, Vec<String>)> = d
                        .config()
                        .file
                        .products
                        .iter()
                        .map(|(p, c)| (p.clone(), c.envs.clone()))
                        .collect();
                    let cluster = d.cluster.as_ref().map(|c| c.readiness().trim().to_string());
                    snapshot(&d.yard, &scopes, cluster)
                })
                .await
                .ok()?;
                SseEvent::default().event("state").data(snap.to_string())
            }
            e = rx.recv() => match e {
                Ok(e) => SseEvent::default()
                    .event(e.name())
                    .data(serde_json::to_string(&e).unwrap_or_default()),
                // A slow reader missed events: say how many; the next state
                // catches it up.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => SseEvent::default()
                    .event("lagged")
                    .data(json!({"missed": n}).to_string()),
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            },
        };
        Some((Ok::<_, Infallible>(event), (s, rx, tick)))
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// `GET /v1/runs?key=&tag=&provider=&outcome=&product=&limit=`: the runs
/// this replica served, newest first (the newest 500 are kept).
pub(super) async fn runs(
    State(s): State<Arc<ApiState>>,
    q: Result<Query<RunFilter>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(f) = q.map_err(bad_query)?;
    Ok(axum::Json(json!({"runs": s.deployment.hub.runs(&f)})).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditQuery {
    limit: Option<usize>,
}

/// `GET /v1/admin/audit?limit=`: operator actions, newest first.
pub(super) async fn audit(
    State(s): State<Arc<ApiState>>,
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(a) = q.map_err(bad_query)?;
    let log = s.deployment.audit_log(a.limit.unwrap_or(100).min(1_000))?;
    Ok(axum::Json(json!({"audit": log})).into_response())
}

/// `POST /v1/{product}/{env}/healthchecks/{tag}/check`: run it now.
pub(super) async fn check_now(
    State(s): State<Arc<ApiState>>,
    Path((product, env, tag)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let who = actor(&headers)?;
    let snap = s.deployment.op_check_now(who, &product, &env, &tag).await?;
    Ok(axum::Json(snap).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ForceBody {
    breaker: String,
    state: String,
}

/// `POST /v1/admin/breakers/force` `{breaker, state: open|closed|release}`.
pub(super) async fn force(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let who = actor(&headers)?;
    let b: ForceBody = read_json(body, &headers, s.max_body_bytes).await?;
    let Some(f) = Force::parse(&b.state) else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid-body",
            format!("state `{}`: use open, closed or release", b.state),
        )
        .field("state"));
    };
    let state = s.deployment.op_force(who, &b.breaker, f)?;
    Ok(axum::Json(
        json!({"breaker": b.breaker, "state": state, "forced": (f != Force::Release).then_some(f)}),
    )
    .into_response())
}

/// `POST /v1/{product}/providers/{provider}/drain` and `…/restore`.
pub(super) async fn drain(
    State(s): State<Arc<ApiState>>,
    Path((product, provider, action)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let who = actor(&headers)?;
    let drain = match action.as_str() {
        "drain" => true,
        "restore" => false,
        _ => return Err(ApiError::not_found("use …/drain or …/restore")),
    };
    let changed = s.deployment.op_drain(who, &product, &provider, drain)?;
    Ok(axum::Json(
        json!({"product": product, "provider": provider, "drained": drain, "changed": changed}),
    )
    .into_response())
}

const PAGE: &str = include_str!("../../ui/index.html");
const SCRIPT: &str = include_str!("../../ui/app.js");
const STYLE: &str = include_str!("../../ui/app.css");

/// `/ui`: the dashboard, embedded in the binary. It holds no data and no
/// secret: it asks for the token and reads the API with it.
pub(super) async fn page() -> Response {
    asset("text/html; charset=utf-8", PAGE)
}

pub(super) async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

pub(super) async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            // Nothing but this server's own scripts, styles and API.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}
