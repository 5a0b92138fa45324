//! The `rust` contender: the same job as the Node peer, written by hand on
//! the HTTP stack Switchyard itself uses (tokio with two workers, hyper's
//! HTTP/1 server, hyper-util's pooled client with `TCP_NODELAY`, serde
//! with typed bodies, and mimalloc when the `switchyard` crate's
//! `mimalloc` feature is on). `POST /run` with `{"input": {"to", "text"}}`
//! goes to the primary (2 retries with exponential backoff from 50 ms, a
//! breaker that opens after 5 consecutive failures for 30 s), then to the
//! backup (its own breaker), each attempt within 10 s, and answers
//! `{"output": {"message_id"}, "provider"}`.
//!
//! No sandbox, no engine, no trace, no metrics: it is the floor of this
//! stack on this machine, the part of a run's CPU that no change inside
//! Switchyard can remove. The bench runs it as a child process of its own
//! binary (`LOAD_PEER_RUST=PRIMARY,BACKUP`), so its CPU is counted alone.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The environment variable that makes the bench binary serve as the peer.
pub const VAR: &str = "LOAD_PEER_RUST";

#[derive(Deserialize)]
struct RunBody {
    input: Input,
}

#[derive(Deserialize, Serialize)]
struct Input {
    to: String,
    text: String,
}

#[derive(Deserialize)]
struct Sent {
    id: String,
}

#[derive(Serialize)]
struct Answer<'a> {
    output: Output<'a>,
    provider: &'a str,
}

#[derive(Serialize)]
struct Output<'a> {
    message_id: &'a str,
}

/// Opens after 5 consecutive failures; lets one call through after 30 s.
#[derive(Default)]
struct Breaker {
    state: Mutex<(u32, Option<Instant>)>,
}

impl Breaker {
    fn allows(&self) -> bool {
        let state = self.state.lock().unwrap();
        state
            .1
            .is_none_or(|since| since.elapsed() >= Duration::from_secs(30))
    }

    fn record(&self, ok: bool) {
        let mut state = self.state.lock().unwrap();
        if ok {
            *state = (0, None);
        } else {
            state.0 = state.0.saturating_add(1);
            if state.0 >= 5 {
                state.1 = Some(Instant::now());
            }
        }
    }
}

struct Provider {
    name: &'static str,
    uri: http::Uri,
    retries: u32,
    breaker: Breaker,
}

struct Peer {
    client: Client<HttpConnector, Full<Bytes>>,
    providers: [Provider; 2],
}

impl Peer {
    async fn post(&self, p: &Provider, body: &Bytes) -> Result<Sent, String> {
        let req = http::Request::post(p.uri.clone())
            .header("content-type", "application/json")
            .body(Full::new(body.clone()))
            .map_err(|e| e.to_string())?;
        let attempt = async {
            let resp = self.client.request(req).await.map_err(|e| e.to_string())?;
            let status = resp.status();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            if status.is_server_error() || status.as_u16() == 429 {
                return Err(format!("status {status}"));
            }
            serde_json::from_slice::<Sent>(&bytes).map_err(|e| e.to_string())
        };
        tokio::time::timeout(Duration::from_secs(10), attempt)
            .await
            .unwrap_or_else(|_| Err("timeout".into()))
    }

    async fn run(&self, input: &Input) -> Result<(Sent, &'static str), String> {
        let body = Bytes::from(serde_json::to_vec(input).map_err(|e| e.to_string())?);
        let mut errors = Vec::new();
        for p in &self.providers {
            let mut attempt = 0u32;
            loop {
                if !p.breaker.allows() {
                    errors.push(format!("{}: breaker open", p.name));
                    break;
                }
                let result = self.post(p, &body).await;
                p.breaker.record(result.is_ok());
                match result {
                    Ok(sent) => return Ok((sent, p.name)),
                    Err(e) if attempt >= p.retries => {
                        errors.push(format!("{}: {e}", p.name));
                        break;
                    }
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(50u64 << attempt.min(6))).await;
                        attempt += 1;
                    }
                }
            }
        }
        Err(errors.join("; "))
    }

    async fn serve(
        &self,
        req: http::Request<hyper::body::Incoming>,
    ) -> http::Response<Full<Bytes>> {
        let respond = |status: u16, body: Vec<u8>| {
            http::Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body)))
                .unwrap()
        };
        if req.method() != http::Method::POST || req.uri().path() != "/run" {
            return respond(404, Vec::new());
        }
        let Ok(body) = req.into_body().collect().await.map(|b| b.to_bytes()) else {
            return respond(400, br#"{"code":"invalid-body"}"#.to_vec());
        };
        let input = match serde_json::from_slice::<RunBody>(&body) {
            Ok(b) => b.input,
            Err(e) => {
                let msg = serde_json::json!({"code": "invalid-body", "message": e.to_string()});
                return respond(400, msg.to_string().into_bytes());
            }
        };
        match self.run(&input).await {
            Ok((sent, provider)) => {
                let answer = Answer {
                    output: Output {
                        message_id: &sent.id,
                    },
                    provider,
                };
                respond(200, serde_json::to_vec(&answer).unwrap())
            }
            Err(message) => {
                let msg = serde_json::json!({"code": "all-failed", "message": message});
                respond(502, msg.to_string().into_bytes())
            }
        }
    }
}

/// Serve as the peer until killed: `spec` is `PRIMARY,BACKUP` (addresses).
pub fn main(spec: &str) -> ! {
    let (primary, backup) = spec.split_once(',').expect("LOAD_PEER_RUST=PRIMARY,BACKUP");
    let addr = |s: &str| -> SocketAddr { s.parse().expect("a socket address") };
    let uri = |a: SocketAddr| -> http::Uri { format!("http://{a}/v1/messages").parse().unwrap() };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(256)
            .build(http);
        let provider = |name, a: &str, retries| Provider {
            name,
            uri: uri(addr(a)),
            retries,
            breaker: Breaker::default(),
        };
        let peer = Arc::new(Peer {
            client,
            providers: [
                provider("primary", primary, 2),
                provider("backup", backup, 0),
            ],
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("listening http://{}", listener.local_addr().unwrap());
        super::serve_http1(listener, move |req| {
            let peer = peer.clone();
            async move { peer.serve(req).await }
        })
        .await
    });
    unreachable!("the peer serves until it is killed")
}
