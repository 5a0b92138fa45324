//! The live side of the API: the event stream (`/v1/events`), recent runs
//! (`/v1/runs`), operator actions with their audit log, and the dashboard
//! page (`/ui`) that uses them.

use super::body::read_json;
use super::error::ApiError;
use super::guard::{self, forbidden};
use super::state::ApiState;
use crate::access::Principal;
use crate::events::audit_visible;
use crate::events::{RunFilter, snapshot};
use crate::ops::OpError;
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

fn bad_query(e: QueryRejection) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid-query", e.body_text())
}

/// The task that makes the providers' state once per [`STATE_EVERY`] for
/// every stream (started by the first stream; idle, holding nothing,
/// while none watches; gone with the deployment).
fn ensure_ticker(d: &Arc<crate::deployment::Deployment>) {
    if d.hub.ticking.swap(true, Ordering::SeqCst) {
        return;
    }
    let weak = Arc::downgrade(d);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(STATE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tick.tick().await;
            let Some(d) = weak.upgrade() else { return };
            if !d.hub.watched() {
                d.hub.idle();
                continue;
            }
            let made = d.clone();
            let _ = tokio::task::spawn_blocking(move || {
                let scopes: Vec<(String, Vec<String>)> = made
                    .config()
                    .file
                    .products
                    .iter()
                    .map(|(p, c)| (p.clone(), c.envs.clone()))
                    .collect();
                let cluster = made
                    .cluster
                    .as_ref()
                    .map(|c| c.readiness().trim().to_string());
                made.hub.tick(&snapshot(&made.yard, &scopes, cluster));
            })
            .await;
        }
    });
}

/// `GET /v1/events`: server-sent events. `state` (first, and after a gap):
/// every product's providers; `state-diff` (every second): the
/// definitions whose state changed since the last one; `run`: a run ended;
/// `audit`: an operator acted; `lagged`: this reader fell behind and
/// missed events (the next state is whole). The state is made once per
/// second for every stream; at most `server.max_event_streams` streams
/// are open (past it: 503 `overloaded`). Ends when the server begins to
/// shut down.
pub(super) async fn events(
    State(s): State<Arc<ApiState>>,
    axum::Extension(who): axum::Extension<Principal>,
) -> Result<Response, ApiError> {
    use futures_util::stream;
    let max = s.max_event_streams;
    if !s.deployment.hub.open_stream(max) {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            format!(
                "{max} event streams are open, the most this server allows (`server.max_event_streams`); close one or retry later"
            ),
        )
        .retry_after(5));
    }
    let guard = StreamGuard(s.deployment.clone());
    ensure_ticker(&s.deployment);
    let rx = s.deployment.hub.subscribe();
    let state = s.deployment.hub.state();
    // The seq of the last state this stream sent (0: none yet).
    let stream = stream::unfold(
        (s, rx, state, 0u64, guard, who),
        |(s, mut rx, mut state, mut sent, guard, who)| async move {
            if !s.ready.load(Ordering::SeqCst) {
                return None;
            }
            let first = sent == 0 && state.borrow().is_some();
            let event = tokio::select! {
                changed = state.changed(), if !first => {
                    changed.ok()?;
                    let tick = state.borrow_and_update().clone()?;
                    let whole = sent == 0 || tick.seq != sent.saturating_add(1);
                    sent = tick.seq;
                    if whole {
                        SseEvent::default().event("state").data(tick.full_for(&who))
                    } else {
                        SseEvent::default().event("state-diff").data(tick.diff_for(&who))
                    }
                }
                // A stream that opens sends the last state at once.
                _ = std::future::ready(()), if first => {
                    let tick = state.borrow_and_update().clone()?;
                    sent = tick.seq;
                    SseEvent::default().event("state").data(tick.full_for(&who))
                }
                e = rx.recv() => match e {
                    // What this token may not see is skipped: a comment
                    // line, so the stream moves on.
                    Ok(e) if !e.visible_to(&who) => SseEvent::default().comment(""),
                    Ok(e) => SseEvent::default()
                        .event(e.name())
                        .data(serde_json::to_string(&e).unwrap_or_default()),
                    // A slow reader missed events: they are dropped, not
                    // buffered for it; it is told how many, and the next
                    // state it gets is whole.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        sent = u64::MAX;
                        SseEvent::default()
                            .event("lagged")
                            .data(json!({"missed": n}).to_string())
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                },
            };
            Some((Ok::<_, Infallible>(event), (s, rx, state, sent, guard, who)))
        },
    );
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// Gives back a stream's place when the stream is dropped.
struct StreamGuard(Arc<crate::deployment::Deployment>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.hub.close_stream();
    }
}

/// `GET /v1/runs?key=&tag=&provider=&outcome=&product=&limit=`: the runs
/// this replica served, newest first (the newest 500 are kept).
pub(super) async fn runs(
    State(s): State<Arc<ApiState>>,
    axum::Extension(who): axum::Extension<Principal>,
    q: Result<Query<RunFilter>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(f) = q.map_err(bad_query)?;
    Ok(axum::Json(json!({"runs": s.deployment.hub.runs(&f, &who)})).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditQuery {
    limit: Option<usize>,
}

/// `GET /v1/admin/audit?limit=`: operator actions, newest first.
pub(super) async fn audit(
    State(s): State<Arc<ApiState>>,
    axum::Extension(who): axum::Extension<Principal>,
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(a) = q.map_err(bad_query)?;
    let limit = a.limit.unwrap_or(100).min(1_000);
    // A scoped token reads from the newest 10,000 and keeps its own.
    let log: Vec<_> = if who.sees_all() {
        s.deployment.audit_log(limit)?
    } else {
        s.deployment
            .audit_log(crate::store::AUDIT_KEPT as usize)?
            .into_iter()
            .filter(|e| audit_visible(e, &who))
            .take(limit)
            .collect()
    };
    Ok(axum::Json(json!({"audit": log})).into_response())
}

/// `POST /v1/{product}/{env}/healthchecks/{tag}/check`: run it now.
pub(super) async fn check_now(
    State(s): State<Arc<ApiState>>,
    axum::Extension(who): axum::Extension<Principal>,
    Path((product, env, tag)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let actor = guard::actor(&who, &headers)?;
    let snap = s
        .deployment
        .op_check_now(&actor, &product, &env, &tag)
        .await?;
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
    axum::Extension(who): axum::Extension<Principal>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let actor = guard::actor(&who, &headers)?;
    let b: ForceBody = read_json(body, &headers, &s).await?.0;
    let (product, env) = crate::access::breaker_scope(&b.breaker).unwrap_or(("", ""));
    if let Some(why) = who.refusal(product, Some(env)) {
        return Err(forbidden(why).field("breaker"));
    }
    let Some(f) = Force::parse(&b.state) else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid-body",
            format!("state `{}`: use open, closed or release", b.state),
        )
        .field("state"));
    };
    let state = s.deployment.op_force(&actor, &b.breaker, f)?;
    Ok(axum::Json(
        json!({"breaker": b.breaker, "state": state, "forced": (f != Force::Release).then_some(f)}),
    )
    .into_response())
}

/// `GET /v1/admin/breakers/forces`: every forced breaker.
pub(super) async fn forces(
    State(s): State<Arc<ApiState>>,
    axum::Extension(who): axum::Extension<Principal>,
) -> Response {
    let forces: Vec<_> = s
        .deployment
        .op_forces()
        .into_iter()
        .filter(|(breaker, _)| who.may_breaker(breaker))
        .map(|(breaker, force)| json!({"breaker": breaker, "forced": force}))
        .collect();
    axum::Json(json!({
        "forces": forces,
        "max_forces": crate::ops::MAX_FORCES,
    }))
    .into_response()
}

/// `POST /v1/{product}/providers/{provider}/drain` and `…/restore`.
pub(super) async fn drain(
    State(s): State<Arc<ApiState>>,
    axum::Extension(who): axum::Extension<Principal>,
    Path((product, provider, action)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let actor = guard::actor(&who, &headers)?;
    let drain = match action.as_str() {
        "drain" => true,
        "restore" => false,
        _ => return Err(ApiError::not_found("use …/drain or …/restore")),
    };
    let changed = s.deployment.op_drain(&actor, &product, &provider, drain)?;
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
