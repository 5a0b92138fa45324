//! The egress gate: every request a guest makes over `wasi:http` passes
//! here. Deny by default; the app's allowlist of origins; no private,
//! loopback or link-local address (checked on literals and after DNS) unless
//! the grant names it; credentials added by the host; a cap on requests per
//! call; a timeout bounded by the call's deadline; pooled connections; and
//! per-app counters.

mod client;
mod credentials;
mod denial;
mod memory;
mod policy;
mod sigv4;

pub use credentials::{Credential, CredentialError, GrantCredential, Secret};
pub use denial::{Denial, Restricted};
pub use memory::{CallMemory, Held, Refused};
pub use policy::{EgressPolicy, Network, Origin, PolicyError};

use client::{LookupFailed, PooledClient, ResolvedToForbidden};
use http::HeaderName;
use http_body_util::{BodyExt, Full, Limited};
use std::error::Error as StdError;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

/// Size and count limits the gate enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EgressLimits {
    /// Outbound requests one call may make.
    pub max_requests_per_call: u32,
    /// Largest request body a guest may send.
    pub max_request_body: usize,
    /// Largest response body a guest may receive.
    pub max_response_body: usize,
    /// Longest time to establish a connection.
    pub connect_timeout: Duration,
}

impl Default for EgressLimits {
    fn default() -> Self {
        Self {
            max_requests_per_call: 8,
            max_request_body: 4 << 20,
            max_response_body: 8 << 20,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// Per-app egress counters.
#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    denied: AtomicU64,
    failed: AtomicU64,
    micros: AtomicU64,
}

/// A snapshot of an app's egress counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct EgressStats {
    /// Requests sent to a provider (answered or not).
    pub requests: u64,
    /// Requests the gate refused.
    pub denied: u64,
    /// Sent requests that got no HTTP answer (refused, reset, timed out).
    pub failed: u64,
    /// Total time from send to response headers, over all sent requests.
    pub total_latency: Duration,
}

/// An app's egress: its policy, credentials, pooled client and counters.
/// Shared by every call of the app.
pub struct AppEgress {
    app: String,
    policy: Arc<EgressPolicy>,
    /// Each credential with the origins it goes to.
    credentials: Vec<(Vec<Origin>, Credential)>,
    owned_headers: Vec<HeaderName>,
    limits: EgressLimits,
    client: PooledClient,
    counters: Counters,
    /// The host-wide budget answers read whole are held under.
    host_bytes: Option<Arc<crate::held::HostBytes>>,
}

impl std::fmt::Debug for AppEgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppEgress")
            .field("app", &self.app)
            .field("policy", &self.policy)
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

/// Headers no guest may set: the host owns authentication.
const GUEST_FORBIDDEN: [&str; 5] = [
    "authorization",
    "proxy-authorization",
    "x-amz-date",
    "x-amz-security-token",
    "x-amz-content-sha256",
];

impl AppEgress {
    /// The egress of app `app`.
    pub fn new(
        app: impl Into<String>,
        policy: EgressPolicy,
        credentials: Vec<GrantCredential>,
        limits: EgressLimits,
    ) -> Result<Self, CredentialError> {
        let mut scoped = Vec::with_capacity(credentials.len());
        for (index, g) in credentials.into_iter().enumerate() {
            g.credential.validate()?;
            scoped.push((g.scope(index, &policy)?, g.credential));
        }
        let credentials = scoped;
        let mut owned_headers: Vec<HeaderName> = GUEST_FORBIDDEN
            .iter()
            .map(|h| HeaderName::from_static(h))
            .collect();
        owned_headers.extend(credentials.iter().flat_map(|(_, c)| c.owned_headers()));
        let policy = Arc::new(policy);
        Ok(Self {
            app: app.into(),
            client: client::pooled_client(policy.clone(), limits.connect_timeout),
            policy,
            credentials,
            owned_headers,
            limits,
            counters: Counters::default(),
            host_bytes: None,
        })
    }

    /// Counters since the app was loaded.
    pub fn stats(&self) -> EgressStats {
        let c = &self.counters;
        EgressStats {
            requests: c.requests.load(Ordering::Relaxed),
            denied: c.denied.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            total_latency: Duration::from_micros(c.micros.load(Ordering::Relaxed)),
        }
    }

    /// Refuse a request: logged, counted, and recorded in the call's log
    /// (its reason is what the call reports).
    fn deny(&self, log: &Mutex<CallLog>, reason: Denial) {
        tracing::warn!(app = %self.app, %reason, "egress denied");
        self.counters.denied.fetch_add(1, Ordering::Relaxed);
        log.lock().expect("call log").denials.push(reason);
    }

    /// Why a request with this method, URI and headers may not leave, if
    /// it may not.
    fn admit(
        &self,
        method: &http::Method,
        uri: &http::Uri,
        headers: &http::HeaderMap,
    ) -> Result<(), Denial> {
        if method == http::Method::TRACE || method == http::Method::CONNECT {
            return Err(Denial::Method(method.to_string()));
        }
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err(Denial::Userinfo);
        }
        let Some(origin) = Origin::of_uri(uri) else {
            return Err(Denial::NoOrigin(uri.to_string()));
        };
        if !self.policy.allows_origin(&origin) {
            return Err(Denial::NotAllowed {
                origin: origin.to_string(),
                app: self.app.clone(),
            });
        }
        if let Some(h) = self.owned_headers.iter().find(|h| headers.contains_key(*h)) {
            return Err(Denial::OwnedHeader(h.to_string()));
        }
        // An IP-literal origin on the allowlist is the grant for its own
        // address (and only that origin); names are checked after DNS.
        Ok(())
    }
}

/// What the gate saw during one call.
#[derive(Debug, Default)]
pub struct CallLog {
    /// Refused requests, in order.
    pub denials: Vec<Denial>,
    /// Requests that may have reached a provider (sent, not refused at
    /// connect). After one, a failure is ambiguous.
    pub reached: u32,
    /// Requests that got an answer (status and headers) back.
    pub answered: u32,
    /// Why outbound requests failed in the host (not denials), in order:
    /// shown with a guest trap, which carries no reason of its own.
    pub failures: Vec<String>,
    /// Why a request body was refused for the call's memory cap: the call
    /// fails with the memory-limit error whatever the adapter does next.
    pub over_memory: Option<String>,
    /// Why a request was not sent because the host's byte budget had no
    /// room for its answer: the host's limit, not the provider's failure.
    pub host_full: Option<String>,
}

impl CallLog {
    /// Whether a request may have reached a provider and never answered:
    /// whatever the adapter says, the provider may have acted on it.
    pub fn unanswered(&self) -> bool {
        self.reached > self.answered
    }

    fn failed(&mut self, reason: String) {
        if self.failures.len() < 8 {
            self.failures.push(reason);
        }
    }
}

/// The gate as seen by one call: the wasi-http hooks of its store.
pub struct CallEgress {
    app: Arc<AppEgress>,
    memory: Arc<CallMemory>,
    deadline: Instant,
    made: u32,
    cap: u32,
    log: Arc<Mutex<CallLog>>,
}

impl CallEgress {
    /// Hooks for one call of `app` that must finish by `deadline`, holding
    /// the bodies it sends on `memory`; `request_cap` lowers the app's
    /// per-call request cap (`describe` runs with 0).
    pub fn new(
        app: Arc<AppEgress>,
        memory: Arc<CallMemory>,
        deadline: Instant,
        log: Arc<Mutex<CallLog>>,
        request_cap: Option<u32>,
    ) -> Self {
        let cap = request_cap.unwrap_or(app.limits.max_requests_per_call);
        Self {
            app,
            memory,
            deadline,
            made: 0,
            cap,
            log,
        }
    }

    fn deny(&self, reason: Denial) {
        self.app.deny(&self.log, reason);
    }
}

type IoFuture = Box<dyn Future<Output = Result<(), HttpError>> + Send>;
type SendFuture =
    Box<dyn Future<Output = Result<(http::Response<WasiBody>, IoFuture), HttpError>> + Send>;

impl WasiHttpHooks for CallEgress {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: IoFuture,
    ) -> SendFuture {
        self.made += 1;
        let cap = self.cap;
        let admitted = if self.made > cap {
            Err(Denial::RequestCap(cap))
        } else {
            self.app
                .admit(request.method(), request.uri(), request.headers())
        };
        if let Err(reason) = admitted {
            self.deny(reason);
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }

        let remaining = self.deadline.saturating_duration_since(Instant::now());
        let timeout = options
            .and_then(|o| o.first_byte_timeout)
            .map_or(remaining, |t| t.min(remaining));
        // Held until the request is done, so a guest cannot stack bodies in
        // the host beyond what its call may use.
        let held = self.memory.hold();
        Box::new(send(
            self.app.clone(),
            self.log.clone(),
            request,
            held,
            timeout,
        ))
    }
}

/// One admitted request from a guest's `wasi:http`: its body buffered on
/// the call's memory account, then [`dispatch`]ed; the answer's body
/// streams to the guest, capped.
async fn send(
    app: Arc<AppEgress>,
    log: Arc<Mutex<CallLog>>,
    request: http::Request<WasiBody>,
    mut held: Held,
    timeout: Duration,
) -> Result<(http::Response<WasiBody>, IoFuture), HttpError> {
    let (parts, mut stream) = request.into_parts();
    let body = collect_body(&app, &log, &mut stream, &mut held).await?;
    drop(stream);
    let response = dispatch(&app, &log, parts, body, timeout).await?;
    let max = app.limits.max_response_body;
    let response = response.map(|b| {
        Limited::new(b, max)
            .map_err(move |e| response_body_error(e, max))
            .boxed_unsync()
    });
    Ok((response, Box::new(async { Ok(()) }) as IoFuture))
}

/// Send an admitted request with its whole body: credentials applied for
/// its origin, on the app's pooled client, within `timeout`, the outcome
/// counted and recorded in the call's log (reached, answered, why it
/// failed). Both adapter worlds send through here.
async fn dispatch(
    app: &AppEgress,
    log: &Mutex<CallLog>,
    mut parts: http::request::Parts,
    body: bytes::Bytes,
    timeout: Duration,
) -> Result<http::Response<hyper::body::Incoming>, HttpError> {
    let authority = parts
        .uri
        .authority()
        .map_or_else(String::new, |a| a.to_string());
    let now = SystemTime::now();
    let origin = Origin::of_uri(&parts.uri);
    for (scope, c) in &app.credentials {
        if origin.as_ref().is_some_and(|o| scope.contains(o)) {
            c.apply(&mut parts, &body, now);
        }
    }
    let request = http::Request::from_parts(parts, Full::new(body));
    // Counted as possibly reaching the provider from the moment it is
    // sent: if the call's deadline cuts it off mid-flight, the attempt is
    // ambiguous, not a clean timeout. Only a refused connection or a
    // denial takes it back.
    log.lock().expect("call log").reached += 1;
    let started = Instant::now();
    let result = tokio::time::timeout(timeout, app.client.request(request)).await;
    let elapsed = started.elapsed().as_micros() as u64;
    app.counters.micros.fetch_add(elapsed, Ordering::Relaxed);
    match result {
        Ok(Ok(response)) => {
            app.counters.requests.fetch_add(1, Ordering::Relaxed);
            log.lock().expect("call log").answered += 1;
            Ok(response)
        }
        Ok(Err(e)) => Err(transport_failure(app, log, &authority, &e)),
        Err(_elapsed) => {
            app.counters.requests.fetch_add(1, Ordering::Relaxed);
            app.counters.failed.fetch_add(1, Ordering::Relaxed);
            log.lock()
                .expect("call log")
                .failed(format!("{authority} did not answer within {timeout:?}"));
            Err(HttpError::HttpResponseTimeout)
        }
    }
}

/// A request an exchange-world adapter described, as it described it (the
/// host's credentials are not in it): what the host sends, and what a
/// fixture records and checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Described {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The absolute URL.
    pub url: String,
    /// Headers, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// A provider's whole answer to a [`Described`] request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answered {
    /// Status code.
    pub status: u16,
    /// Headers, names lower-case.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// Most header bytes (names and values) one described request may carry.
pub(crate) const MAX_EXCHANGE_HEADERS: usize = 16 << 10;

impl AppEgress {
    /// Hold the answers this app's calls read whole under `budget`.
    pub(crate) fn with_host_bytes(mut self, budget: Option<Arc<crate::held::HostBytes>>) -> Self {
        self.host_bytes = budget;
        self
    }

    /// Send a request an exchange-world adapter described, as the `made`th
    /// of its call, through the same gate as a guest's own requests. An
    /// `Err` means no HTTP answer: the call's log says why (a denial, a
    /// failure before or after the request left).
    pub(crate) async fn exchange(
        &self,
        log: &Mutex<CallLog>,
        request: Described,
        timeout: Option<Duration>,
        made: u32,
        deadline: Instant,
    ) -> Result<(Answered, Option<crate::held::Held>), HttpError> {
        let cap = self.limits.max_requests_per_call;
        if made > cap {
            self.deny(log, Denial::RequestCap(cap));
            return Err(HttpError::HttpRequestDenied);
        }
        let parts = match exchange_parts(&request, self.limits.max_request_body) {
            Ok(p) => p,
            Err(reason) => {
                log.lock().expect("call log").failed(reason);
                return Err(HttpError::HttpRequestUriInvalid);
            }
        };
        if let Err(denial) = self.admit(&parts.method, &parts.uri, &parts.headers) {
            self.deny(log, denial);
            return Err(HttpError::HttpRequestDenied);
        }
        let max = self.limits.max_response_body;
        // Sent only while the host can hold a whole answer: otherwise the
        // host's limit refuses it before anything leaves.
        if let Some(b) = &self.host_bytes
            && !b.room_for(max)
        {
            log.lock().expect("call log").host_full = Some(format!(
                "the host holds {} of its {} MiB for answers and request bodies in flight (server.max_buffered_mb), no room for another answer of up to {} KiB; nothing was sent",
                b.used() >> 20,
                b.cap() >> 20,
                max >> 10
            ));
            return Err(HttpError::HttpRequestDenied);
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        let timeout = timeout.map_or(remaining, |t| t.min(remaining));
        let response = dispatch(self, log, parts, request.body.into(), timeout).await?;
        let (parts, body) = response.into_parts();
        let mut held = self.host_bytes.as_ref().map(|b| b.hold());
        let read = async {
            let mut body = Limited::new(body, max);
            let mut buf = Vec::new();
            while let Some(frame) = body.frame().await {
                let Ok(data) = frame?.into_data() else {
                    continue;
                };
                // An answer on its way waits for room rather than fail:
                // its request may have acted.
                if let Some(h) = held.as_mut()
                    && !h.grow_by(data.len(), deadline).await
                {
                    return Ok(None);
                }
                buf.extend_from_slice(&data);
            }
            Ok(Some(buf))
        };
        let body = match tokio::time::timeout(
            deadline.saturating_duration_since(Instant::now()),
            read,
        )
        .await
        {
            Ok(Ok(Some(b))) => b,
            Ok(Ok(None)) => {
                log.lock().expect("call log").failed(
                    "the provider's answer did not arrive whole before the deadline: the host's byte budget had no room for it (server.max_buffered_mb)".into(),
                );
                return Err(HttpError::HttpResponseTimeout);
            }
            Ok(Err(e)) => {
                let reason = match response_body_error(e, max) {
                    HttpError::HttpResponseBodySize(_) => {
                        format!(
                            "the provider's answer was larger than the egress cap of {max} bytes (limits.egress.max_response_body)"
                        )
                    }
                    other => format!("the provider's answer broke off: {other}"),
                };
                log.lock().expect("call log").failed(reason);
                return Err(HttpError::HttpProtocolError);
            }
            Err(_) => {
                log.lock().expect("call log").failed(
                    "the provider's answer did not arrive whole before the deadline".into(),
                );
                return Err(HttpError::HttpResponseTimeout);
            }
        };
        let headers = parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        Ok((
            Answered {
                status: parts.status.as_u16(),
                headers,
                body,
            },
            held,
        ))
    }
}

/// The parts of a described request, checked: a method, an absolute URL,
/// headers within [`MAX_EXCHANGE_HEADERS`], a body within `max_body`.
fn exchange_parts(r: &Described, max_body: usize) -> Result<http::request::Parts, String> {
    if r.body.len() > max_body {
        return Err(format!(
            "the request body was larger than the egress cap of {max_body} bytes (limits.egress.max_request_body)"
        ));
    }
    let size: usize = r
        .headers
        .iter()
        .map(|(k, v)| k.len().saturating_add(v.len()))
        .fold(0, usize::saturating_add);
    if size > MAX_EXCHANGE_HEADERS {
        return Err(format!(
            "the request's headers take {size} bytes; at most {MAX_EXCHANGE_HEADERS}"
        ));
    }
    let method = http::Method::from_bytes(r.method.as_bytes())
        .map_err(|_| format!("`{}` is not an HTTP method", r.method))?;
    let uri: http::Uri = r
        .url
        .parse()
        .map_err(|e| format!("`{}` is not a URL: {e}", r.url))?;
    if uri.scheme().is_none() || uri.authority().is_none() {
        return Err(format!("`{}` is not an absolute http(s) URL", r.url));
    }
    let mut builder = http::Request::builder().method(method).uri(uri);
    for (k, v) in &r.headers {
        let name = http::HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| format!("`{k}` is not a header name"))?;
        let value = http::HeaderValue::from_str(v)
            .map_err(|_| format!("the value of header `{k}` is not a header value"))?;
        builder = builder.header(name, value);
    }
    let (parts, ()) = builder
        .body(())
        .map_err(|e| format!("the request is not valid HTTP: {e}"))?
        .into_parts();
    Ok(parts)
}

/// Buffer the guest's request body, recording why it was refused. The
/// guest's stream stays open until the refusal is logged: a guest that
/// traps on the closed stream (componentize-js does) is then reported with
/// the reason.
async fn collect_body(
    app: &AppEgress,
    log: &Mutex<CallLog>,
    stream: &mut WasiBody,
    held: &mut Held,
) -> Result<bytes::Bytes, HttpError> {
    let max = app.limits.max_request_body;
    match buffer_body(stream, max, held).await {
        Ok(b) => Ok(b),
        Err(BodyRefused::TooLarge) => {
            log.lock().expect("call log").failed(format!(
                "the request body was larger than the egress cap of {max} bytes (limits.egress.max_request_body)"
            ));
            Err(HttpError::HttpRequestBodySize(None))
        }
        Err(BodyRefused::OverMemory(refused)) => {
            let reason = format!("buffering the adapter's request body: {refused}");
            let mut log = log.lock().expect("call log");
            log.failed(reason.clone());
            log.over_memory.get_or_insert(reason);
            Err(HttpError::HttpRequestBodySize(None))
        }
        Err(BodyRefused::Broken(e)) => {
            log.lock()
                .expect("call log")
                .failed(format!("the adapter's request body broke off: {e}"));
            Err(e)
        }
    }
}

/// A request that got no HTTP answer: a denial after DNS, a name that did
/// not resolve, a refused or timed-out connection (none of which reached
/// the provider), or a connection that broke after sending (which may have).
fn transport_failure(
    app: &AppEgress,
    log: &Mutex<CallLog>,
    authority: &str,
    e: &hyper_util::client::legacy::Error,
) -> HttpError {
    let mut log = log.lock().expect("call log");
    if let Some(ResolvedToForbidden(denial)) = find_source::<ResolvedToForbidden>(e) {
        app.counters.denied.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(app = %app.app, reason = %denial, "egress denied after DNS");
        log.reached = log.reached.saturating_sub(1);
        log.denials.push(denial.clone());
        return HttpError::DestinationIpProhibited;
    }
    app.counters.requests.fetch_add(1, Ordering::Relaxed);
    app.counters.failed.fetch_add(1, Ordering::Relaxed);
    if let Some(lookup) = find_source::<LookupFailed>(e) {
        log.reached = log.reached.saturating_sub(1);
        log.failed(lookup.to_string());
        return HttpError::DnsError {
            rcode: Some("NXDOMAIN or no answer".into()),
            info_code: None,
        };
    }
    if e.is_connect() {
        let timed_out = find_source::<std::io::Error>(e)
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut);
        log.reached = log.reached.saturating_sub(1);
        let what = if timed_out {
            "timed out"
        } else {
            "was refused"
        };
        log.failed(format!("connecting to {authority} {what}"));
        return if timed_out {
            HttpError::ConnectionTimeout
        } else {
            HttpError::ConnectionRefused
        };
    }
    log.failed(format!("the connection to {authority} broke: {e}"));
    HttpError::ConnectionTerminated
}

/// Why a request body was not buffered.
enum BodyRefused {
    /// Over `limits.egress.max_request_body`.
    TooLarge,
    /// Over what the call's memory cap leaves.
    OverMemory(Refused),
    /// The guest's body stream failed.
    Broken(HttpError),
}

/// Collect a request body of at most `max` bytes, holding each chunk on
/// the call's memory account before keeping it.
async fn buffer_body(
    body: &mut WasiBody,
    max: usize,
    held: &mut Held,
) -> Result<bytes::Bytes, BodyRefused> {
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(BodyRefused::Broken)?.into_data() else {
            continue;
        };
        if buf.len().saturating_add(data.len()) > max {
            return Err(BodyRefused::TooLarge);
        }
        held.grow(data.len()).map_err(BodyRefused::OverMemory)?;
        buf.extend_from_slice(&data);
    }
    Ok(buf.freeze())
}

fn response_body_error(e: Box<dyn StdError + Send + Sync>, max: usize) -> HttpError {
    match e.downcast::<hyper::Error>() {
        Ok(h) => HttpError::Hyper(*h),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            HttpError::HttpResponseBodySize(Some(max as u64))
        }
        Err(e) => HttpError::InternalError(Some(e.to_string())),
    }
}

/// The first error of type `E` in `e`'s source chain.
fn find_source<'a, E: StdError + 'static>(e: &'a (dyn StdError + 'static)) -> Option<&'a E> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(found) = err.downcast_ref::<E>() {
            return Some(found);
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && let Some(found) = inner.downcast_ref::<E>()
        {
            return Some(found);
        }
        cur = err.source();
    }
    None
}
