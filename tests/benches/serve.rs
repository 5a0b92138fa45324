//! Load on the HTTP API: `POST /v1/{product}/{env}/fallbacks/{tag}/run`
//! at concurrency 64, served by `switchyard::api` (the same router and
//! server `switchyard serve` runs) with a real wasm app (the bundled
//! `http` plugin) calling a simulated provider on loopback. Every request
//! goes client → API → engine → fresh sandboxed instance → egress gate →
//! provider and back. Then the same run one at a time on one thread: its
//! time there is the whole round trip's CPU.
//!
//! Run: `cargo bench -p switchyard-tests --bench serve --profile dev`
//! (`-- --quick` for a shorter run).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};
use switchyard::ApiState;
use switchyard::Config;
use switchyard::Simulator;
use switchyard::{Deployment, StartOptions};

// The allocator the `switchyard` binary uses, so the figures are the
// shipped server's.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CONCURRENCY: usize = 64;
const TOKEN: &str = "bench-token";

fn config(url: &str) -> String {
    format!(
        r#"
[products.bench]
envs = ["dev"]
[products.bench.apps.sim]
plugin = "bundled:http"
[products.bench.apps.sim.envs.dev]
allow = ["{url}"]
config = {{ base_url = "{url}", idempotency_header = "Idempotency-Key", actions = '[{{"name": "send", "method": "POST", "path": "/v1/messages"}}]' }}
[products.bench.fallbacks.sms]
input = {{ to = {{ type = "string" }} }}
options = [ {{ provider = "sim", app = "sim", action = "send", input = {{ to = "$Input{{to}}" }}, output = {{ id = "$Response{{id}}" }} }} ]
"#
    )
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(under_load(quick));
    // The same run one at a time on one thread: the client, the server and
    // the provider share it, so a run's time is the CPU it costs, with no
    // wake-up of another thread in it.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(one_thread(quick));
}

/// A server over the bench's config (and `extra` TOML) against `sim`: the
/// URL of its run endpoint.
async fn start(sim: &Simulator, extra: &str) -> String {
    let cfg = Config::from_source("bench.toml".into(), config(&sim.url()) + extra).expect("config");
    let deployment = Deployment::start(cfg, StartOptions::default())
        .await
        .expect("deployment");
    deployment
        .enable_auth(&[switchyard::access::ConfigToken::admin("default", TOKEN)])
        .expect("tokens");
    let state = Arc::new(ApiState {
        deployment: Arc::new(deployment),
        tls: None,
        max_body_bytes: 64 * 1024,
        max_event_streams: 64,
        ready: AtomicBool::new(true),
        header_read_timeout: Duration::from_secs(10),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/v1/bench/dev/fallbacks/sms/run",
        listener.local_addr().unwrap()
    );
    tokio::spawn(switchyard::serve(
        listener,
        state,
        std::future::pending(),
        Duration::from_secs(1),
    ));
    url
}

/// One run through the API: whether it answered 200, and its time.
async fn once(
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    url: String,
    body: Bytes,
) -> (bool, Duration) {
    let req = http::Request::post(url)
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json")
        .body(Full::new(body))
        .unwrap();
    let started = Instant::now();
    let resp = client.request(req).await.expect("request");
    let ok = resp.status() == 200;
    resp.into_body().collect().await.expect("body");
    (ok, started.elapsed())
}

fn client() -> Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(CONCURRENCY)
        .build_http::<Full<Bytes>>()
}

const BODY: &[u8] = br#"{"input": {"to": "+15550100"}}"#;

async fn under_load(quick: bool) {
    let total: usize = if quick { 4_000 } else { 20_000 };
    let sim = Simulator::start().await.expect("simulator");
    let url = start(&sim, "").await;
    let client = client();
    let body = Bytes::from_static(BODY);

    // Warm up: connections, instance pool, caches.
    for _ in 0..200 {
        once(client.clone(), url.clone(), body.clone()).await;
    }

    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let (client, url, body) = (client.clone(), url.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::with_capacity(total / CONCURRENCY);
            let mut failed = 0usize;
            for _ in 0..total / CONCURRENCY {
                let (ok, took) = once(client.clone(), url.clone(), body.clone()).await;
                failed += usize::from(!ok);
                samples.push(took);
            }
            (samples, failed)
        }));
    }
    let mut samples = Vec::with_capacity(total);
    let mut failed = 0;
    for t in tasks {
        let (s, f) = t.await.unwrap();
        samples.extend(s);
        failed += f;
    }
    let elapsed = started.elapsed();
    samples.sort();
    let at = |p: f64| samples[((samples.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "fallback run endpoint, concurrency {CONCURRENCY}, {} requests ({failed} failed): {:.0} req/s   p50 {:.2} ms   p99 {:.2} ms   max {:.2} ms",
        samples.len(),
        samples.len() as f64 / elapsed.as_secs_f64(),
        at(0.5).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        samples.last().unwrap().as_secs_f64() * 1e3,
    );
    assert_eq!(failed, 0, "requests failed under load");
}

async fn one_thread(quick: bool) {
    let total: usize = if quick { 5_000 } else { 20_000 };
    let sim = Simulator::start().await.expect("simulator");
    // Calls on the server's own thread too (no sandbox threads).
    let url = start(&sim, "[runtime]\nsandbox_threads = 0\n").await;
    let client = client();
    let body = Bytes::from_static(BODY);
    for _ in 0..500 {
        once(client.clone(), url.clone(), body.clone()).await;
    }
    let mut samples = Vec::with_capacity(total);
    let started = Instant::now();
    for _ in 0..total {
        let (ok, took) = once(client.clone(), url.clone(), body.clone()).await;
        assert!(ok, "a run failed");
        samples.push(took);
    }
    let elapsed = started.elapsed();
    samples.sort();
    let at = |p: f64| samples[((samples.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "fallback run endpoint, one thread, one run at a time, {total} runs: p50 {:.1} µs   p99 {:.1} µs   mean {:.1} µs (CPU per run: client, API, engine, sandbox, provider)",
        at(0.5).as_secs_f64() * 1e6,
        at(0.99).as_secs_f64() * 1e6,
        elapsed.as_secs_f64() * 1e6 / total as f64,
    );
}
