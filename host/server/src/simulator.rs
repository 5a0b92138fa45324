//! A simulated provider: a real HTTP/1.1 server on loopback with adjustable
//! failure rate and latency, that records what it receives. The demo drives
//! it; tests and benchmarks use it as the far end of real egress.
//!
//! Routes:
//! - `GET /health` → 200 `{"status":"ok"}`
//! - `POST /v1/messages` → 201 `{"id":"msg_N","status":"queued"}`
//! - `GET /v1/messages/{id}` → 200 `{"id":id,"status":"delivered"}`
//! - `POST /echo` → 200 `{"received": <request JSON body>}`
//! - `GET|POST /status/{code}` → that status (429 carries `Retry-After: 2`)
//! - `GET /slow/{ms}` → 200 after `ms` milliseconds
//! - `GET /big/{bytes}` → 200 with a body of that many bytes
//!
//! Failure injection ([`Simulator::set_failure_rate`]) answers 503 to an
//! exact share of requests (deterministically spread), on every route.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One request as the simulator received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Method.
    pub method: String,
    /// Path and query.
    pub uri: String,
    /// Headers, names lower-case, in order.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Bytes,
}

impl Recorded {
    /// First header called `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct State {
    /// Share of requests answered 503, per mille.
    failure_per_mille: AtomicU32,
    /// Share of requests answered 429 (Retry-After: 1), per mille.
    throttle_per_mille: AtomicU32,
    latency_ms: AtomicU64,
    /// Every `slow_every`-th request (0: none) waits `slow_ms` more: a
    /// heavy tail.
    slow_every: AtomicU64,
    slow_ms: AtomicU64,
    served: AtomicU64,
    failed: AtomicU64,
    next_id: AtomicU64,
    record: std::sync::atomic::AtomicBool,
    recorded: Mutex<Vec<Recorded>>,
    in_flight: AtomicU64,
    peak_in_flight: AtomicU64,
}

/// Counts a request out of `in_flight` when its handler ends, however.
struct InFlight(Arc<State>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A running simulated provider. Stops when dropped.
pub struct Simulator {
    addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Simulator {
    /// Start on `127.0.0.1` on a free port.
    pub async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State::default());
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let st = st.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(st.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self { addr, state, task })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answer 503 to `rate` (0.0-1.0) of requests, spread exactly.
    pub fn set_failure_rate(&self, rate: f64) {
        let pm = (rate.clamp(0.0, 1.0) * 1000.0).round() as u32;
        self.state.failure_per_mille.store(pm, Ordering::Relaxed);
    }

    /// Answer 429 with `Retry-After: 1` to `rate` (0.0-1.0) of requests,
    /// spread exactly (a rate-limit storm).
    pub fn set_throttle_rate(&self, rate: f64) {
        let pm = (rate.clamp(0.0, 1.0) * 1000.0).round() as u32;
        self.state.throttle_per_mille.store(pm, Ordering::Relaxed);
    }

    /// Add `latency` before every answer.
    pub fn set_latency(&self, latency: Duration) {
        self.state
            .latency_ms
            .store(latency.as_millis() as u64, Ordering::Relaxed);
    }

    /// Make every `every`-th request (the first, then every `every`) wait
    /// `slow` more than the others: a heavy tail. `every = 0` turns it
    /// off.
    pub fn set_slow_every(&self, every: u64, slow: Duration) {
        self.state
            .slow_ms
            .store(slow.as_millis() as u64, Ordering::Relaxed);
        self.state.slow_every.store(every, Ordering::Relaxed);
    }

    /// Keep a copy of every request from now on.
    pub fn record(&self, on: bool) {
        self.state.record.store(on, Ordering::Relaxed);
    }

    /// Requests recorded so far.
    pub fn recorded(&self) -> Vec<Recorded> {
        self.state.recorded.lock().expect("recorded").clone()
    }

    /// The grant that points the generic `http` plugin at this simulator:
    /// its origin allowed and as `base_url`, `ping` on `/health`, the run's
    /// key sent as `Idempotency-Key`, and `actions` (the plugin's JSON
    /// action list).
    pub fn http_plugin_grant(&self, actions: &serde_json::Value) -> switchyard_runtime::Grant {
        switchyard_runtime::Grant::new()
            .allow(self.url())
            .config("base_url", self.url())
            .config("ping_path", "/health")
            .config("idempotency_header", "Idempotency-Key")
            .config("actions", actions.to_string())
    }

    /// The most requests it was handling at once.
    pub fn peak_in_flight(&self) -> u64 {
        self.state.peak_in_flight.load(Ordering::SeqCst)
    }

    /// Requests answered, and of those, failed by injection.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.state.served.load(Ordering::Relaxed),
            self.state.failed.load(Ordering::Relaxed),
        )
    }
}

fn json(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("valid response")
}

async fn handle(
    st: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let now = st.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    st.peak_in_flight.fetch_max(now, Ordering::SeqCst);
    let _in_flight = InFlight(st.clone());
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    let n = st.served.fetch_add(1, Ordering::Relaxed);
    if st.record.load(Ordering::Relaxed) {
        st.recorded.lock().expect("recorded").push(Recorded {
            method: parts.method.to_string(),
            uri: parts.uri.to_string(),
            headers: parts
                .headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: body.clone(),
        });
    }
    let every = st.slow_every.load(Ordering::Relaxed);
    let slow = if every > 0 && n.is_multiple_of(every) {
        st.slow_ms.load(Ordering::Relaxed)
    } else {
        0
    };
    let latency = st.latency_ms.load(Ordering::Relaxed) + slow;
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    // Request n fails when the running count of failures due so far grows:
    // exactly `rate` of any window, no randomness.
    let pm = u64::from(st.failure_per_mille.load(Ordering::Relaxed));
    if pm > 0 && ((n + 1) * pm) / 1000 > (n * pm) / 1000 {
        st.failed.fetch_add(1, Ordering::Relaxed);
        return Ok(json(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"error": {"code": "unavailable", "message": "injected failure"}}),
        ));
    }
    let pm = u64::from(st.throttle_per_mille.load(Ordering::Relaxed));
    if pm > 0 && ((n + 1) * pm) / 1000 > (n * pm) / 1000 && parts.uri.path() != "/health" {
        st.failed.fetch_add(1, Ordering::Relaxed);
        let mut r = json(
            StatusCode::TOO_MANY_REQUESTS,
            serde_json::json!({"error": {"code": "rate_limited", "message": "injected 429"}}),
        );
        r.headers_mut()
            .insert("retry-after", http::HeaderValue::from_static("1"));
        return Ok(r);
    }
    let path = parts.uri.path();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let method = parts.method.as_str();
    Ok(match (method, segments.as_slice()) {
        ("GET", ["health"]) => json(StatusCode::OK, serde_json::json!({"status": "ok"})),
        ("POST", ["v1", "messages"]) => {
            let id = st.next_id.fetch_add(1, Ordering::Relaxed) + 1;
            json(
                StatusCode::CREATED,
                serde_json::json!({"id": format!("msg_{id}"), "status": "queued"}),
            )
        }
        ("GET", ["v1", "messages", id]) => json(
            StatusCode::OK,
            serde_json::json!({"id": id, "status": "delivered"}),
        ),
        ("POST", ["echo"]) => {
            let received: serde_json::Value =
                serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
            json(StatusCode::OK, serde_json::json!({"received": received}))
        }
        (_, ["status", code]) => {
            let status = code
                .parse::<u16>()
                .ok()
                .and_then(|c| StatusCode::from_u16(c).ok())
                .unwrap_or(StatusCode::BAD_REQUEST);
            let mut r = json(
                status,
                serde_json::json!({"error": {"code": format!("status_{}", status.as_u16())}}),
            );
            if status == StatusCode::TOO_MANY_REQUESTS {
                r.headers_mut()
                    .insert("retry-after", http::HeaderValue::from_static("2"));
            }
            r
        }
        ("GET", ["slow", ms]) => {
            let ms = ms.parse().unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            json(StatusCode::OK, serde_json::json!({"slept_ms": ms}))
        }
        ("GET", ["big", bytes]) => {
            let n: usize = bytes.parse().unwrap_or(0);
            Response::new(Full::new(Bytes::from(vec![b'x'; n])))
        }
        _ => json(
            StatusCode::NOT_FOUND,
            serde_json::json!({"error": {"code": "not_found"}}),
        ),
    })
}
