//! The HTTP API (axum): runs, CRUD of definitions, provider and
//! healthcheck state, `/healthz`, `/readyz`, Prometheus `/metrics` and the
//! OpenAPI description at `/openapi.json`.
//!
//! Every error is JSON `{"code", "message", "field"?, "trace"?}` with a
//! stable `code`; bad input is a 4xx, never a 500.

mod guard;
mod live;
mod tokens;

pub use guard::{ClientAddr, RULES, rule};

use crate::access::Principal;
use crate::deployment::{ChangeError, Deployment};
use axum::Router;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use switchyard_engine::{Definition, ErrorCode, Kind, RunError, RunOptions};

/// The OpenAPI 3.1 description of this API.
pub const OPENAPI: &str = include_str!("openapi.json");

/// What the handlers share.
#[derive(Debug)]
pub struct ApiState {
    /// The running config.
    pub deployment: Arc<Deployment>,
    /// Serve HTTPS with this certificate (read again on SIGHUP).
    pub tls: Option<Arc<crate::tls::Tls>>,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Most `/v1/events` streams open at once.
    pub max_event_streams: usize,
    /// False once shutdown began (`/readyz` answers 503).
    pub ready: AtomicBool,
    /// How long a client may take to send a request's headers: a
    /// connection that trickles them (slow-loris) is closed, not held.
    pub header_read_timeout: Duration,
}

/// An error response.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: Value,
    /// Seconds for a `Retry-After` header (overload).
    retry_after: Option<u64>,
}

impl ApiError {
    /// Ask the caller to come back after `secs` seconds (`Retry-After`).
    fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs.max(1));
        self
    }

    fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            body: json!({"code": code, "message": message.into()}),
            retry_after: None,
        }
    }

    fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", message)
    }

    fn field(mut self, field: impl Into<String>) -> Self {
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

/// `POST /v1/admin/reload`: apply the config file's changes now (as
/// SIGHUP does). 200 with what changed, or 422 with every problem and
/// nothing changed.
async fn reload(
    State(s): State<Arc<ApiState>>,
    axum::Extension(who): axum::Extension<Principal>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let actor = guard::actor(&who, &headers)?;
    match s.deployment.reload().await {
        Ok(report) => {
            for line in report.lines() {
                eprintln!("reload: {line}");
            }
            if let Some(tls) = &s.tls {
                match tls.reload() {
                    Ok(()) => eprintln!("reload: the TLS certificate was read again"),
                    Err(e) => eprintln!("reload: the TLS certificate was not changed: {e}"),
                }
            }
            let _ = s.deployment.audit(
                &actor,
                "reload",
                "config",
                format!("{} changes", report.lines().len().saturating_sub(1)),
            );
            Ok(axum::Json(report).into_response())
        }
        Err(problems) => Err(ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            body: json!({
                "code": "invalid-config",
                "message": format!("the config was not applied; nothing changed. {}", problems.to_string().trim_end()),
                "problems": problems.0.iter().map(ToString::to_string).collect::<Vec<_>>(),
            }),
            retry_after: None,
        }),
    }
}

fn run_status(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::InvalidInput => StatusCode::BAD_REQUEST,
        ErrorCode::Rejected => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::NoProvider | ErrorCode::Overloaded | ErrorCode::IdempotencyUnavailable => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        ErrorCode::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        ErrorCode::InProgress => StatusCode::CONFLICT,
        ErrorCode::Mapping | ErrorCode::AllFailed | ErrorCode::Ambiguous => StatusCode::BAD_GATEWAY,
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

/// Serve `state` on `listener` until `shutdown` resolves; then stop
/// accepting, let in-flight requests finish for up to `grace`, and return.
/// Every connection must send its request headers within
/// `state.header_read_timeout`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<ApiState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()> {
    use hyper_util::rt::TokioIo;
    let app = router(state.clone());
    let header_timeout = state.header_read_timeout;
    // Closed when shutdown begins; every connection task holds a receiver
    // and a clone of `done`, so `done_rx` ends when the last one finishes.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (done, mut done_rx) = tokio::sync::mpsc::channel::<()>(1);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let stop = stop_rx.clone();
        let done = done.clone();
        let acceptor = state.tls.as_ref().map(|t| t.acceptor());
        tokio::spawn(async move {
            match acceptor {
                None => connection(TokioIo::new(stream), peer, app, header_timeout, stop).await,
                Some(acceptor) => {
                    // The handshake has the header timeout too: a client
                    // that never finishes it is dropped, and one that
                    // speaks plain HTTP here fails the handshake.
                    match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            connection(TokioIo::new(tls), peer, app, header_timeout, stop).await;
                        }
                        Ok(Err(e)) => tracing::debug!(error = %e, %peer, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
            drop(done);
        });
    }
    state.ready.store(false, Ordering::SeqCst);
    let _ = stop_tx.send(true);
    drop(done);
    drop(listener);
    if tokio::time::timeout(grace, done_rx.recv()).await.is_err() {
        tracing::warn!("in-flight requests did not finish within {grace:?}; exiting");
    }
    Ok(())
}

/// Serve one connection until it ends or shutdown begins (then finish
/// the request in flight and take no new one). Every request carries the
/// client's address.
async fn connection<I>(
    io: hyper_util::rt::TokioIo<I>,
    peer: std::net::SocketAddr,
    app: Router,
    header_timeout: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let mut app = app.clone();
        let mut req = req.map(Body::new);
        req.extensions_mut().insert(ClientAddr(peer));
        tower_service::Service::call(&mut app, req)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout);
    let conn = builder.serve_connection(io, service);
    let mut conn = std::pin::pin!(conn);
    let ended = tokio::select! {
        r = conn.as_mut() => r,
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            conn.as_mut().await
        }
    };
    if let Err(e) = ended {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// `/readyz`: `ready` or not, nothing more without a token; with a token
/// that may read, also the cluster link's state.
async fn readyz(
    State(s): State<Arc<ApiState>>,
    addr: Option<axum::Extension<ClientAddr>>,
    headers: HeaderMap,
) -> Response {
    // A token sent here is checked like anywhere else (counted, throttled).
    let details = if guard::bearer(&headers).is_some() {
        match guard::authenticate(&s, &headers, addr.map(|a| a.0)) {
            Ok(p) => p
                .role
                .grants(crate::access::Need::Role(crate::access::Role::Read)),
            Err(e) => return e.into_response(),
        }
    } else {
        !s.deployment.auth.load(Ordering::SeqCst)
    };
    let r = readyz_full(&s);
    if details {
        return r;
    }
    let status = r.status();
    let word = if status.is_success() {
        "ready\n"
    } else {
        "not ready\n"
    };
    (status, word).into_response()
}

fn readyz_full(s: &ApiState) -> Response {
    if s.ready.load(Ordering::SeqCst) {
        // Ready while Redis is away too (runs go on with local state); the
        // body says so, for people and probes that read it.
        match &s.deployment.cluster {
            Some(c) if c.refused().is_some() => (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready\n{}", c.readiness()),
            )
                .into_response(),
            Some(c) => format!("ready\n{}", c.readiness()).into_response(),
            None => "ready\n".into_response(),
        }
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response()
    }
}

async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        openapi_document(),
    )
        .into_response()
}

/// The OpenAPI document `/openapi.json` serves: [`OPENAPI`] with the
/// request bodies of definitions generated from the Rust types the server
/// parses them into (one strict schema per kind; `kind` and `product` may
/// be left out, they come from the path), so the document refuses exactly
/// the shapes the server refuses. What no schema can say (an unknown app,
/// a bound that depends on this server's pool) the server still checks.
pub fn openapi_document() -> &'static str {
    static DOC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc: Value = serde_json::from_str(OPENAPI).expect("the OpenAPI document is JSON");
        let generated = crate::config::json_schema();
        let kinds = [
            ("HealthcheckDef", "healthcheck"),
            ("QuotaDef", "quota"),
            ("FallbackDef", "fallback"),
            ("FeatureDef", "feature"),
            ("CacheDef", "cache"),
        ];
        let schemas = doc["components"]["schemas"]
            .as_object_mut()
            .expect("components.schemas");
        if let Some(defs) = generated["$defs"].as_object() {
            for (name, schema) in defs {
                let mut schema = schema.clone();
                rebase_refs(&mut schema);
                if let Some((_, kind)) = kinds.iter().find(|(n, _)| n == name) {
                    schema["properties"]["kind"] = json!({"type": "string", "enum": [kind]});
                    // The rule `check_name` applies to tags.
                    schema["properties"]["tag"]["pattern"] = json!("^[A-Za-z0-9._-]{1,128}$");
                }
                schemas.entry(name.clone()).or_insert(schema);
            }
        }
        let variants: Vec<Value> = kinds
            .iter()
            .map(|(n, _)| json!({"$ref": format!("#/components/schemas/{n}")}))
            .collect();
        schemas.insert(
            "DefinitionBody".into(),
            json!({
                "description": "A definition as sent to create or replace it: the fields of its kind (docs/configuration.md). `kind` and `product` come from the path and may be left out; `tag` comes from the body (POST) or the path (PUT).",
                "oneOf": variants,
            }),
        );
        let body = json!({"$ref": "#/components/schemas/DefinitionBody"});
        // POST takes the tag from the body; PUT from the path.
        let with_tag = json!({"allOf": [body, {"required": ["tag"]}]});
        for (path, method, schema) in [
            ("/v1/{product}/definitions/{kinds}", "post", with_tag),
            ("/v1/{product}/definitions/{kinds}/{tag}", "put", body),
        ] {
            doc["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"] =
                schema;
        }
        serde_json::to_string_pretty(&doc).expect("serializes")
    })
}

/// Point a generated schema's `#/$defs/X` references at `#/components/schemas/X`.
fn rebase_refs(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get_mut("$ref")
                && let Some(name) = r.strip_prefix("#/$defs/")
            {
                *r = format!("#/components/schemas/{name}");
            }
            m.values_mut().for_each(rebase_refs);
        }
        Value::Array(a) => a.iter_mut().for_each(rebase_refs),
        _ => {}
    }
}

async fn metrics(
    State(s): State<Arc<ApiState>>,
    axum::Extension(who): axum::Extension<Principal>,
) -> Response {
    let mut text = s.deployment.metrics_text();
    if !who.sees_all() {
        text = scoped_metrics(&text, &who);
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// The series of `text` a scoped token may see: those without a
/// `product` label, and those of its products (and envs, where a series
/// has an `env` label).
fn scoped_metrics(text: &str, who: &Principal) -> String {
    let label = |head: &str, name: &str| -> Option<String> {
        let at = ["{", ","]
            .iter()
            .find_map(|sep| head.find(&format!("{sep}{name}=\"")))?
            + name.len()
            + 3;
        let rest = head.get(at..)?;
        Some(rest[..rest.find('"')?].to_string())
    };
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let keep = line.starts_with('#') || {
            let head = line.split('}').next().unwrap_or_default();
            // A breaker's key starts with its product and env.
            let breaker = label(head, "breaker");
            let mut parts = breaker.as_deref().unwrap_or_default().splitn(3, '/');
            let (bp, be) = (parts.next(), parts.next());
            label(head, "product").is_none_or(|p| who.products.has(&p))
                && label(head, "env").is_none_or(|e| who.envs.has(&e))
                && (breaker.is_none()
                    || (bp.is_some_and(|p| who.products.has(p))
                        && be.is_some_and(|e| who.envs.has(e))))
        };
        if keep {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Read a JSON body of at most `server.max_body_bytes`, held under the
/// host's byte budget (`server.max_buffered_mb`) while the returned
/// [`Held`](switchyard_runtime::Held) lives: 503 `overloaded` when the
/// budget has no room for it.
async fn read_json<T: serde::de::DeserializeOwned>(
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
    let value = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid-body",
            format!("the body is not the expected JSON: {e}"),
        )
    })?;
    Ok((value, held))
}

fn kind_of(kinds: &str, allowed: &[Kind]) -> Result<Kind, ApiError> {
    allowed
        .iter()
        .copied()
        .find(|k| k.plural() == kinds)
        .ok_or_else(|| {
            let names: Vec<&str> = allowed.iter().map(|k| k.plural()).collect();
            ApiError::not_found(format!("`{kinds}` is not one of: {}", names.join(", ")))
        })
}

const ALL_KINDS: &[Kind] = &[
    Kind::Healthcheck,
    Kind::Quota,
    Kind::Fallback,
    Kind::Feature,
    Kind::Cache,
];
const RUN_KINDS: &[Kind] = &[Kind::Fallback, Kind::Quota, Kind::Feature];

fn check_product_env(s: &ApiState, product: &str, env: Option<&str>) -> Result<(), ApiError> {
    Ok(s.deployment.check_scope(product, env)?)
}

/// The body of a run.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunBody {
    #[serde(default)]
    input: Value,
    #[serde(default)]
    idempotency_key: Option<String>,
    #[serde(default)]
    session: Option<switchyard_engine::Session>,
    #[serde(default)]
    cache: Option<String>,
    #[serde(default)]
    deadline_ms: Option<u64>,
}

async fn run(
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
    if code != ErrorCode::NotFound.as_str() {
        d.hub.record_run(
            &product,
            &env,
            kind,
            &tag,
            &result,
            started.elapsed().as_secs_f64() * 1e3,
        );
    }
    Ok(axum::Json(result?).into_response())
}

async fn providers(
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
    Ok(axum::Json(json!({"providers": states})).into_response())
}

async fn health(
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

async fn apps(
    State(s): State<Arc<ApiState>>,
    Path(product): Path<String>,
) -> Result<Response, ApiError> {
    check_product_env(&s, &product, None)?;
    // Summaries carry the adapter's self-description, never grants or
    // credentials.
    Ok(axum::Json(json!({"apps": s.deployment.yard.apps(&product)})).into_response())
}

/// An app's admission settings and, per env, its live admission state.
async fn admission(
    State(s): State<Arc<ApiState>>,
    Path((product, app)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    check_app(&s, &product, &app)?;
    Ok(axum::Json(admission_body(&s, &product, &app)).into_response())
}

fn admission_body(s: &ApiState, product: &str, app: &str) -> Value {
    let yard = &s.deployment.yard;
    let envs: Vec<Value> = yard
        .admission_states()
        .into_iter()
        .filter(|a| a.product == product && a.app == app)
        .map(|a| json!({"env": a.env, "state": a.state}))
        .collect();
    json!({"config": yard.admission(product, app), "envs": envs})
}

fn check_app(s: &ApiState, product: &str, app: &str) -> Result<(), ApiError> {
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
async fn set_admission(
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

/// `?env=prod` (or `?env=*` for every env of the product) on fetch and
/// fetch-all: add each option's live state in that env.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateQuery {
    env: Option<String>,
}

/// The envs a `?env=` asks for, checked against the product's; `None`
/// without one (the stored definition only, fit to PUT back).
fn state_envs(
    s: &ApiState,
    who: &Principal,
    product: &str,
    q: &StateQuery,
) -> Result<Option<Vec<String>>, ApiError> {
    match q.env.as_deref() {
        None => Ok(None),
        // Every env the token may see.
        Some("*") => Ok(Some(
            s.deployment.config().file.products[product]
                .envs
                .iter()
                .filter(|e| who.envs.has(e))
                .cloned()
                .collect(),
        )),
        Some(env) => {
            if let Some(why) = who.refusal(product, Some(env)) {
                return Err(guard::forbidden(why).field("env"));
            }
            check_product_env(s, product, Some(env)).map_err(|e| e.field("env"))?;
            Ok(Some(vec![env.to_string()]))
        }
    }
}

fn state_query(q: Result<Query<StateQuery>, QueryRejection>) -> Result<StateQuery, ApiError> {
    q.map(|Query(q)| q).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid-query",
            format!(
                "{}; the only parameter is `env` (an env of the product, or `*` for every env)",
                e.body_text()
            ),
        )
    })
}

async fn list(
    State(s): State<Arc<ApiState>>,
    axum::Extension(who): axum::Extension<Principal>,
    Path((product, kinds)): Path<(String, String)>,
    q: Result<Query<StateQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let kind = kind_of(&kinds, ALL_KINDS)?;
    check_product_env(&s, &product, None)?;
    let q = state_query(q)?;
    let body = match state_envs(&s, &who, &product, &q)? {
        None => json!({ kinds: s.deployment.yard.fetch_all(&product, Some(kind)) }),
        Some(envs) => {
            json!({ kinds: s.deployment.yard.fetch_all_live(&product, Some(kind), &envs) })
        }
    };
    Ok(axum::Json(body).into_response())
}

async fn fetch(
    State(s): State<Arc<ApiState>>,
    axum::Extension(who): axum::Extension<Principal>,
    Path((product, kinds, tag)): Path<(String, String, String)>,
    q: Result<Query<StateQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let kind = kind_of(&kinds, ALL_KINDS)?;
    check_product_env(&s, &product, None)?;
    let q = state_query(q)?;
    let def = stored(&s, &product, kind, &tag)?;
    match state_envs(&s, &who, &product, &q)? {
        None => Ok(axum::Json(def).into_response()),
        Some(envs) => {
            let live = s
                .deployment
                .yard
                .fetch_live(&product, kind, &tag, &envs)
                .ok_or_else(|| {
                    ApiError::not_found(format!("no {kind} `{tag}` in product `{product}`"))
                })?;
            Ok(axum::Json(live).into_response())
        }
    }
}

/// The stored definition, or 404.
fn stored(s: &ApiState, product: &str, kind: Kind, tag: &str) -> Result<Definition, ApiError> {
    s.deployment
        .yard
        .fetch(product, kind, tag)
        .ok_or_else(|| ApiError::not_found(format!("no {kind} `{tag}` in product `{product}`")))
}

/// Parse a definition body: `kind` comes from the path, `product` from the
/// path (a different one in the body is refused), `tag` from the body or,
/// for PUT, the path.
async fn definition_body(
    s: &ApiState,
    product: &str,
    kind: Kind,
    tag: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Definition, ApiError> {
    let v: Value = read_json(body, headers, s).await?.0;
    definition_value(product, kind, tag, v)
}

/// A definition from its JSON, with `product`, `kind` and (when given)
/// `tag` taken from the path.
fn definition_value(
    product: &str,
    kind: Kind,
    tag: Option<&str>,
    mut v: Value,
) -> Result<Definition, ApiError> {
    let Some(obj) = v.as_object_mut() else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid-body",
            "the body must be a JSON object (the definition)",
        ));
    };
    let mut set = |field: &str, value: &str| -> Result<(), ApiError> {
        // An empty string is the field left out (as the config allows).
        match obj.get(field).and_then(Value::as_str) {
            Some(given) if !given.is_empty() && given != value => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid-body",
                format!("`{field}` is `{given}` in the body but `{value}` in the path; make them agree or leave it out of the body"),
            )
            .field(field)),
            _ => {
                obj.insert(field.into(), Value::String(value.into()));
                Ok(())
            }
        }
    };
    set("product", product)?;
    set("kind", kind.as_str())?;
    if let Some(tag) = tag {
        set("tag", tag)?;
    } else if !obj.get("tag").is_some_and(Value::is_string) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid-body",
            "give the definition a `tag` (a string)",
        )
        .field("tag"));
    }
    serde_json::from_value(v).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-definition",
            format!("{e}; see docs/configuration.md"),
        )
    })
}

async fn create(
    State(s): State<Arc<ApiState>>,
    axum::Extension(who): axum::Extension<Principal>,
    Path((product, kinds)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let kind = kind_of(&kinds, ALL_KINDS)?;
    check_product_env(&s, &product, None)?;
    let actor = guard::actor(&who, &headers)?;
    let def = definition_body(&s, &product, kind, None, &headers, body).await?;
    s.deployment.create(def.clone())?;
    defined(&s, &actor, "create", &product, kind, &def.meta().tag);
    Ok((StatusCode::CREATED, axum::Json(def)).into_response())
}

async fn update(
    State(s): State<Arc<ApiState>>,
    axum::Extension(who): axum::Extension<Principal>,
    Path((product, kinds, tag)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let kind = kind_of(&kinds, ALL_KINDS)?;
    check_product_env(&s, &product, None)?;
    let actor = guard::actor(&who, &headers)?;
    let def = definition_body(&s, &product, kind, Some(&tag), &headers, body).await?;
    s.deployment.update(def.clone())?;
    defined(&s, &actor, "update", &product, kind, &tag);
    Ok(axum::Json(def).into_response())
}

/// A partial update with JSON merge-patch semantics (RFC 7386): the fields
/// given replace the stored ones, objects merge field by field, `null`
/// removes a field, and everything not given stays. The merged definition
/// is validated as a whole, as a PUT would be.
async fn patch(
    State(s): State<Arc<ApiState>>,
    axum::Extension(who): axum::Extension<Principal>,
    Path((product, kinds, tag)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let kind = kind_of(&kinds, ALL_KINDS)?;
    check_product_env(&s, &product, None)?;
    let changes: Value = read_json(body, &headers, &s).await?.0;
    if !changes.is_object() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid-body",
            "the body must be a JSON object: the fields to change (`null` removes one)",
        ));
    }
    let current = stored(&s, &product, kind, &tag)?;
    let mut merged = serde_json::to_value(&current)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    merge_patch(&mut merged, changes);
    let def = definition_value(&product, kind, Some(&tag), merged)?;
    let actor = guard::actor(&who, &headers)?;
    s.deployment.update(def.clone())?;
    defined(&s, &actor, "patch", &product, kind, &tag);
    Ok(axum::Json(def).into_response())
}

/// Audit a definition change by `actor`.
fn defined(
    s: &ApiState,
    actor: &crate::ops::Actor,
    action: &str,
    product: &str,
    kind: Kind,
    tag: &str,
) {
    let _ = s.deployment.audit(
        actor,
        action,
        &format!("{product}/{}/{tag}", kind.plural()),
        String::new(),
    );
}

/// Apply a JSON merge patch (RFC 7386) to `target`.
fn merge_patch(target: &mut Value, patch: Value) {
    let Value::Object(changes) = patch else {
        *target = patch;
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    if let Value::Object(fields) = target {
        for (key, value) in changes {
            if value.is_null() {
                fields.remove(&key);
            } else {
                merge_patch(fields.entry(key).or_insert(Value::Null), value);
            }
        }
    }
}

async fn delete(
    State(s): State<Arc<ApiState>>,
    axum::Extension(who): axum::Extension<Principal>,
    headers: HeaderMap,
    Path((product, kinds, tag)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let kind = kind_of(&kinds, ALL_KINDS)?;
    let actor = guard::actor(&who, &headers)?;
    check_product_env(&s, &product, None)?;
    let old = s.deployment.delete(&product, kind, &tag)?;
    defined(&s, &actor, "delete", &product, kind, &tag);
    Ok(axum::Json(old).into_response())
}
