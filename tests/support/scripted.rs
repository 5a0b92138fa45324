//! A loopback HTTP server whose answers a test scripts: per path, a queue
//! of answers (status, headers, body), then a default. Every request is
//! recorded. Real TCP, real HTTP/1.1 (hyper): the adapter under test cannot
//! tell it from the provider.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One scripted answer.
#[derive(Debug, Clone)]
pub struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    /// `status` with a JSON body.
    pub fn json(status: u16, body: serde_json::Value) -> Self {
        Self {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string(),
        }
    }

    /// `status` with a plain-text body.
    pub fn text(status: u16, body: &str) -> Self {
        Self {
            status,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: body.into(),
        }
    }

    /// Add a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// A request the server received.
#[derive(Debug, Clone)]
pub struct Received {
    /// Method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Headers, names lower-case.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Bytes,
}

impl Received {
    /// The first header named `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("request body is JSON")
    }
}

#[derive(Default)]
struct Script {
    delay: std::time::Duration,
    queued: HashMap<String, VecDeque<Answer>>,
    defaults: HashMap<String, Answer>,
    received: Vec<Received>,
}

/// The running server. Stops when dropped.
pub struct Scripted {
    addr: SocketAddr,
    script: Arc<Mutex<Script>>,
    task: JoinHandle<()>,
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Scripted {
    /// Start on a free loopback port. Unscripted paths answer 404.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let script = Arc::new(Mutex::new(Script::default()));
        let s = script.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let s = s.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| answer(s.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, script, task }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answer `path` (without query) with `answer` from now on.
    pub fn always(&self, path: &str, answer: Answer) {
        let mut s = self.script.lock().unwrap();
        s.queued.remove(path);
        s.defaults.insert(path.into(), answer);
    }

    /// Answer the next request to `path` with `answer` (then the default).
    pub fn once(&self, path: &str, answer: Answer) {
        let mut s = self.script.lock().unwrap();
        s.queued.entry(path.into()).or_default().push_back(answer);
    }

    /// Wait `delay` before every answer (after recording the request).
    pub fn set_delay(&self, delay: std::time::Duration) {
        self.script.lock().unwrap().delay = delay;
    }

    /// Requests received so far.
    pub fn received(&self) -> Vec<Received> {
        self.script.lock().unwrap().received.clone()
    }

    /// Forget the requests received so far.
    pub fn clear(&self) {
        self.script.lock().unwrap().received.clear();
    }
}

async fn answer(
    script: Arc<Mutex<Script>>,
    req: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let path = parts.uri.path().to_string();
    let (answer, delay) = {
        let mut s = script.lock().unwrap();
        s.received.push(Received {
            method: parts.method.to_string(),
            path: parts
                .uri
                .path_and_query()
                .map_or(path.clone(), |p| p.to_string()),
            headers: parts
                .headers
                .iter()
                .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
                .collect(),
            body,
        });
        let queued = s.queued.get_mut(&path).and_then(VecDeque::pop_front);
        let answer = queued
            .or_else(|| s.defaults.get(&path).cloned())
            .unwrap_or_else(|| Answer::text(404, "no such path"));
        (answer, s.delay)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut response = hyper::Response::builder().status(answer.status);
    for (k, v) in &answer.headers {
        response = response.header(k, v);
    }
    Ok(response
        .body(Full::new(Bytes::from(answer.body)))
        .expect("valid scripted answer"))
}
