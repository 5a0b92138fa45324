//! Runtime benchmarks: figures for `docs/performance.md`.
//!
//! Run: `cargo bench -p switchyard-tests --bench runtime` (release build;
//! the figures in docs/performance.md are from it).
//! Options: `--quick` runs fewer iterations.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_engine::CallRequest;
use switchyard_runtime::{ComponentSource, RuntimeConfig};
use switchyard_runtime::{Grant, Runtime};
use switchyard_tests::{Simulator, artifacts};

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[i]
}

fn report(name: &str, samples: &mut [Duration]) -> Duration {
    let p50 = percentile(samples, 0.50);
    let p99 = percentile(samples, 0.99);
    println!(
        "{name:<48} p50 {:>9.1} µs   p99 {:>9.1} µs   (n={})",
        p50.as_secs_f64() * 1e6,
        p99.as_secs_f64() * 1e6,
        samples.len()
    );
    p50
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let n = if quick { 500 } else { 5000 };
    let cache = tempfile::tempdir().unwrap();
    let rt = Runtime::new(RuntimeConfig {
        cache_dir: Some(cache.path().to_path_buf()),
        ..RuntimeConfig::default()
    })
    .unwrap();
    println!(
        "switchyard runtime benchmarks ({} allocator, {} iterations)",
        if rt.uses_pooling() {
            "pooling"
        } else {
            "on-demand"
        },
        n
    );

    let sim = Simulator::start().await.unwrap();
    let app = rt
        .load(
            "bench",
            std::path::Path::new(artifacts::MISBEHAVE_PATH),
            Grant::new().allow(sim.url()),
        )
        .await
        .unwrap();

    // 1. No-op call on a fresh instance.
    for _ in 0..200 {
        app.call(CallRequest::new("noop", json!({}))).await.unwrap();
    }
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        app.call(CallRequest::new("noop", json!({}))).await.unwrap();
        samples.push(t.elapsed());
    }
    report("no-op call, fresh instance", &mut samples);

    // 2. One loopback POST from the guest vs the host's own pooled client.
    let url = format!("{}/echo", sim.url());
    let body = json!({"to": "+15550100", "amount": 1099, "currency": "usd"});
    let post = || CallRequest::new("post", json!({"url": url, "body": body}));
    for _ in 0..200 {
        app.call(post()).await.unwrap();
    }
    let mut guest = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        app.call(post()).await.unwrap();
        guest.push(t.elapsed());
    }
    let guest_p50 = report("adapter call with one loopback POST", &mut guest);

    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let payload = Bytes::from(body.to_string());
    let direct = |client: Client<HttpConnector, Full<Bytes>>| {
        let req = http::Request::post(&url)
            .header("content-type", "application/json")
            .body(Full::new(payload.clone()))
            .unwrap();
        async move {
            let resp = client.request(req).await.unwrap();
            let bytes = resp.into_body().collect().await.unwrap().to_bytes();
            let _: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        }
    };
    for _ in 0..200 {
        direct(client.clone()).await;
    }
    let mut host = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        direct(client.clone()).await;
        host.push(t.elapsed());
    }
    let host_p50 = report("same POST by the host (pooled hyper)", &mut host);
    println!(
        "{:<48} {:.2}x",
        "ratio adapter/host (p50)",
        guest_p50.as_secs_f64() / host_p50.as_secs_f64()
    );

    // 2b. The same POST through the generic http plugin in both worlds:
    // the exchange world (the host sends what the adapter describes) and
    // the adapter world (the adapter sends it over wasi:http). Interleaved
    // in rounds, A B A B, so both see the same machine.
    let grant = http_grant(&sim);
    let exchange = rt
        .load("http", artifacts::HTTP_PLUGIN, grant.clone())
        .await
        .unwrap();
    let wasi = rt
        .load("http-wasi", artifacts::HTTP_WASI, grant.clone())
        .await
        .unwrap();
    // No instance kept across the send (`exchange_hold` zero): the same
    // as with the hold, since the host reads the http plugin's JSON
    // success itself and the call runs one step.
    let per_step_rt = Runtime::new(RuntimeConfig {
        cache_dir: Some(cache.path().to_path_buf()),
        exchange_hold: Duration::ZERO,
        ..RuntimeConfig::default()
    })
    .unwrap();
    let per_step = per_step_rt
        .load("http", artifacts::HTTP_PLUGIN, grant.clone())
        .await
        .unwrap();
    // One guest program with two actions that send the same POST: for
    // `read-by-host` (listed in its `exchange-reading`) the host reads the
    // 2xx JSON answer; for `post` the adapter's `resume` reads it.
    let steps = rt
        .load("exchange", artifacts::EXCHANGE, grant)
        .await
        .unwrap();
    let send = |action: &str| CallRequest::new(action, body.clone());
    let apps = [
        (&exchange, "send"),
        (&wasi, "send"),
        (&per_step, "send"),
        (&steps, "read-by-host"),
        (&steps, "post"),
    ];
    for (app, action) in apps {
        for _ in 0..200 {
            app.call(send(action)).await.unwrap();
        }
    }
    // The host's own POST runs in the same rounds: the ratios below are
    // against it, so both sides see the same machine.
    let mut samples: [Vec<Duration>; 5] = Default::default();
    let mut host = Vec::with_capacity(n);
    let rounds = 10;
    for _round in 0..rounds {
        for _ in 0..n / rounds {
            let t = Instant::now();
            direct(client.clone()).await;
            host.push(t.elapsed());
        }
        for ((app, action), samples) in apps.iter().zip(samples.iter_mut()) {
            for _ in 0..n / rounds {
                let t = Instant::now();
                app.call(send(action)).await.unwrap();
                samples.push(t.elapsed());
            }
        }
    }
    let [mut ex, mut wa, mut ps, mut read, mut resumed] = samples;
    let host_p50 = report("same POST by the host, in the same rounds", &mut host);
    let ex_p50 = report("http plugin POST, exchange world", &mut ex);
    let wa_p50 = report("http plugin POST, adapter world (wasi:http)", &mut wa);
    let ps_p50 = report("http plugin POST, exchange, no hold", &mut ps);
    let read_p50 = report("test program POST, answer read by the host", &mut read);
    let resumed_p50 = report("test program POST, answer read by `resume`", &mut resumed);
    println!(
        "{:<48} {} of {} calls",
        "  answers the host read itself",
        steps.instance_counts().read_by_host,
        2 * (200 + rounds * (n / rounds))
    );
    println!(
        "{:<48} {:.2}x",
        "ratio read-by-host/resume (p50)",
        read_p50.as_secs_f64() / resumed_p50.as_secs_f64()
    );
    println!(
        "{:<48} {:.2}x",
        "ratio exchange/host (p50)",
        ex_p50.as_secs_f64() / host_p50.as_secs_f64()
    );
    println!(
        "{:<48} {:.2}x",
        "ratio exchange no-hold/host (p50)",
        ps_p50.as_secs_f64() / host_p50.as_secs_f64()
    );
    println!(
        "{:<48} {:.2}x",
        "ratio adapter-world/host (p50)",
        wa_p50.as_secs_f64() / host_p50.as_secs_f64()
    );

    // 2c. The sandbox's own part of the http plugin's call: the same call
    // with the provider's answer replayed, no network (a slot, a fresh
    // instance, the `start` step, the host's read of the JSON answer, the
    // slot's reset).
    let answer = json_answer();
    let mut replayed = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        exchange
            .replay(send("send"), &mut |_| Ok(answer.clone()))
            .await
            .unwrap();
        replayed.push(t.elapsed());
    }
    report(
        "http plugin call, answer replayed (no network)",
        &mut replayed,
    );
    // What a call's future holds (bytes moved when it is boxed): large
    // futures of rare paths are boxed apart (docs/performance.md).
    println!(
        "{:<48} {} bytes",
        "a call's future (App::call), exchange world",
        std::mem::size_of_val(&exchange.call(send("send")))
    );

    // 3. Throughput of the POST call at concurrency 64.
    let window = if quick {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(3)
    };
    let app = Arc::new(app);
    let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let stop_at = Instant::now() + window;
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let app = app.clone();
        let done = done.clone();
        let req = post();
        tasks.push(tokio::spawn(async move {
            while Instant::now() < stop_at {
                app.call(req.clone()).await.unwrap();
                done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }));
    }
    let started = Instant::now();
    for t in tasks {
        t.await.unwrap();
    }
    let calls = done.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "{:<48} {:.0} calls/s",
        "POST call throughput, concurrency 64",
        calls as f64 / started.elapsed().as_secs_f64()
    );

    // 4. Cached plugin load (deserialize + world check), and full load.
    let src = ComponentSource::Bytes(artifacts::HTTP_PLUGIN.into());
    rt.compile(&src).await.unwrap();
    let loads = if quick { 50 } else { 200 };
    let mut compile = Vec::new();
    let mut full = Vec::new();
    for _ in 0..loads {
        let t = Instant::now();
        rt.compile(&src).await.unwrap();
        compile.push(t.elapsed());
        let t = Instant::now();
        rt.load("http", src.clone(), Grant::new()).await.unwrap();
        full.push(t.elapsed());
    }
    report("cached plugin load (http plugin)", &mut compile);
    report("cached load + link + describe", &mut full);
    println!(
        "{:<48} {} bytes",
        "http plugin component size",
        artifacts::HTTP_PLUGIN.len()
    );

    // 5. The POST again, on one thread (below).
    let dir = cache.path().to_path_buf();
    tokio::task::spawn_blocking(move || one_thread(n, dir))
        .await
        .unwrap();

    // 6. Every shipped plugin: size, first (uncached) load into an empty
    // cache, then cached load + describe.
    for (name, bytes) in [
        ("http", artifacts::HTTP_PLUGIN),
        ("stripe", artifacts::STRIPE_PLUGIN),
        ("twilio", artifacts::TWILIO_PLUGIN),
        ("sns", artifacts::SNS_PLUGIN),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let fresh = Runtime::new(RuntimeConfig {
            cache_dir: Some(dir.path().to_path_buf()),
            ..RuntimeConfig::default()
        })
        .unwrap();
        let t = Instant::now();
        fresh.load(name, bytes, Grant::new()).await.unwrap();
        let cold = t.elapsed();
        let mut cached = Vec::new();
        for _ in 0..20 {
            let t = Instant::now();
            fresh.load(name, bytes, Grant::new()).await.unwrap();
            cached.push(t.elapsed());
        }
        cached.sort();
        println!(
            "{name:<8} plugin: {:>7} bytes, first load {:>8.1} ms, cached load + describe p50 {:>6.2} ms",
            bytes.len(),
            cold.as_secs_f64() * 1e3,
            cached[cached.len() / 2].as_secs_f64() * 1e3
        );
    }
}

/// The `http` plugin's grant: `sim`, and one action `send` that POSTs to
/// its `/echo`.
fn http_grant(sim: &Simulator) -> Grant {
    Grant::new()
        .allow(sim.url())
        .config("base_url", sim.url())
        .config(
            "actions",
            r#"[{"name": "send", "method": "POST", "path": "/echo"}]"#,
        )
}

/// A provider's 2xx JSON answer, for replayed calls.
fn json_answer() -> switchyard_runtime::Answered {
    switchyard_runtime::Answered {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        body: br#"{"id":"msg_1","status":"queued"}"#.to_vec(),
    }
}

/// The exchange POST's parts on one thread (a tokio current-thread
/// runtime, the provider in the same thread): every figure is CPU time, no
/// wake-up of another thread in it, so the parts add up. Interleaved in
/// rounds, as above.
fn one_thread(n: usize, cache_dir: std::path::PathBuf) {
    let local = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    local.block_on(async move {
        let rt = Runtime::new(RuntimeConfig {
            cache_dir: Some(cache_dir),
            ..RuntimeConfig::default()
        })
        .unwrap();
        let sim = Simulator::start().await.unwrap();
        let http = rt
            .load("http", artifacts::HTTP_PLUGIN, http_grant(&sim))
            .await
            .unwrap();
        let noop = rt
            .load(
                "bench",
                std::path::Path::new(artifacts::MISBEHAVE_PATH),
                Grant::new(),
            )
            .await
            .unwrap();
        let body = json!({"to": "+15550100", "amount": 1099, "currency": "usd"});
        let payload = Bytes::from(body.to_string());
        let url = format!("{}/echo", sim.url());
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
        let answer = json_answer();
        let post = || async {
            let req = http::Request::post(&url)
                .header("content-type", "application/json")
                .body(Full::new(payload.clone()))
                .unwrap();
            let resp = client.request(req).await.unwrap();
            let bytes = resp.into_body().collect().await.unwrap().to_bytes();
            let _: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        };
        let replayed = || async {
            http.replay(CallRequest::new("send", body.clone()), &mut |_| {
                Ok(answer.clone())
            })
            .await
            .unwrap();
        };
        let noop_call = || async {
            noop.call(CallRequest::new("noop", json!({})))
                .await
                .unwrap();
        };
        let kinds = 6;
        let mut samples: Vec<Vec<Duration>> = (0..kinds).map(|_| Vec::with_capacity(n)).collect();
        let rounds = 10;
        for round in 0..rounds + 1 {
            for (k, samples) in samples.iter_mut().enumerate() {
                for _ in 0..n / rounds {
                    let t = Instant::now();
                    match k {
                        0 => post().await,
                        1 => replayed().await,
                        2 => {
                            replayed().await;
                            post().await;
                        }
                        3 => noop_call().await,
                        4 => {
                            noop_call().await;
                            post().await;
                        }
                        _ => {
                            http.call(CallRequest::new("send", body.clone()))
                                .await
                                .unwrap();
                        }
                    }
                    // The first round warms up.
                    if round > 0 {
                        samples.push(t.elapsed());
                    }
                }
            }
        }
        let mut p50 = [0.0f64; 6];
        let names = [
            "one thread: POST by the host",
            "one thread: http plugin step, answer replayed",
            "one thread: that step, then the host's POST",
            "one thread: no-op call, fresh instance",
            "one thread: that call, then the host's POST",
            "one thread: http plugin POST, exchange world",
        ];
        for ((name, samples), p) in names.iter().zip(samples.iter_mut()).zip(p50.iter_mut()) {
            *p = report(name, samples).as_secs_f64() * 1e6;
        }
        let [post, step, both, noop, noop_both, exchange] = p50;
        println!(
            "{:<48} {:.1} µs",
            "  the POST's extra after the http plugin's step",
            both - step - post
        );
        println!(
            "{:<48} {:.1} µs",
            "  the POST's extra after the no-op call",
            noop_both - noop - post
        );
        println!(
            "{:<48} {:.1} µs",
            "  the exchange call beyond step then POST",
            exchange - both
        );
        println!(
            "{:<48} {:.2}x",
            "ratio exchange/host, one thread (p50)",
            exchange / post
        );
    });
}
