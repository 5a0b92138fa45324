//! `switchyard demo`: the bundled http plugin against a simulated provider
//! on loopback, showing calls, error classes and the egress gate.

use super::common::{Exit, outcome_line, runtime, usage};
use crate::bundled::bundled;
use crate::deployment::Deployment;
use crate::simulator::Simulator;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_engine::CallRequest;
use switchyard_runtime::Grant;

/// `switchyard demo [--serve] [--listen ADDR]`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// After the tour, keep serving the demo's engine over HTTP with live
    /// traffic, and print the dashboard's address and a one-off token.
    #[arg(long)]
    serve: bool,
    /// Where `--serve` listens.
    #[arg(long, default_value = "127.0.0.1:7400")]
    listen: String,
}

pub async fn run(args: DemoArgs) -> Result<(), Exit> {
    let Some(plugin) = bundled("http") else {
        return Err(usage(
            "this binary was built without bundled plugins (feature `bundled-plugins`)",
        ));
    };
    let sim = Simulator::start()
        .await
        .map_err(|e| usage(format!("starting the simulated provider: {e}")))?;
    println!("simulated provider on {}", sim.url());

    let rt = runtime()?;
    println!(
        "runtime: wasmtime 48, {} allocator",
        if rt.uses_pooling() {
            "pooling"
        } else {
            "on-demand"
        }
    );
    let actions = serde_json::json!([
        {"name": "send-message", "method": "POST", "path": "/v1/messages",
         "input": {"to": {"type": "string", "required": true}, "text": {"type": "string"}}},
        {"name": "fetch-message", "method": "GET", "path": "/v1/messages/{id}", "idempotent": true,
         "input": {"id": {"type": "string", "required": true}}}
    ]);
    let grant = sim.http_plugin_grant(&actions);
    let started = Instant::now();
    let app = rt.load("sim", plugin.clone(), grant).await.map_err(usage)?;
    let report = app.load_report();
    println!(
        "loaded plugin `http` as app `sim`: {} bytes, {:?} (precompiled cache: {:?})",
        report.size,
        started.elapsed(),
        report.cache
    );
    // Same plugin, but its grant does not list the provider: every request
    // is refused by the egress gate before a connection is opened.
    let closed = rt
        .load("closed", plugin, Grant::new().config("base_url", sim.url()))
        .await
        .map_err(usage)?;

    println!("\ncalls (each on a fresh sandboxed instance):");
    let input = |v: serde_json::Value| v;
    let calls: Vec<(&str, &switchyard_runtime::App, CallRequest)> = vec![
        (
            "ping",
            &app,
            CallRequest::new("ping", input(serde_json::json!({}))),
        ),
        (
            "send-message",
            &app,
            CallRequest::new(
                "send-message",
                serde_json::json!({"to": "+15550100", "text": "hi"}),
            )
            .idempotency_key("demo-1"),
        ),
        (
            "fetch-message",
            &app,
            CallRequest::new("fetch-message", serde_json::json!({"id": "msg_1"})),
        ),
        (
            "request 404 -> rejected",
            &app,
            CallRequest::new(
                "request",
                serde_json::json!({"method": "GET", "path": "/status/404"}),
            ),
        ),
        (
            "request 429 -> rate-limited",
            &app,
            CallRequest::new(
                "request",
                serde_json::json!({"method": "GET", "path": "/status/429"}),
            ),
        ),
        (
            "slow provider -> deadline",
            &app,
            CallRequest::new(
                "request",
                serde_json::json!({"method": "GET", "path": "/slow/2000"}),
            )
            .deadline(Duration::from_millis(300)),
        ),
        (
            "missing input -> rejected",
            &app,
            CallRequest::new("fetch-message", serde_json::json!({})),
        ),
        (
            "not on allowlist -> denied",
            &closed,
            CallRequest::new("ping", serde_json::json!({})),
        ),
    ];
    for (label, app, request) in calls {
        let t = Instant::now();
        let result = app.call(request).await;
        println!("{}", outcome_line(label, app, &result, t.elapsed()));
    }

    routing(args.serve.then_some(args.listen)).await?;

    let t = Instant::now();
    let n = 200;
    sim.set_failure_rate(0.0);
    for _ in 0..n {
        let _ = app
            .call(CallRequest::new("ping", serde_json::json!({})))
            .await;
    }
    println!(
        "{n} sequential pings through the sandbox: {:?} each",
        t.elapsed() / n
    );
    let s = app.egress_stats();
    println!(
        "egress of `sim`: {} requests, {} failed, mean latency {:?}; `closed`: {} denied",
        s.requests,
        s.failed,
        s.total_latency
            .checked_div(s.requests.max(1) as u32)
            .unwrap_or_default(),
        closed.egress_stats().denied
    );
    Ok(())
}

/// The example config `examples/demo.toml`, with the simulators'
/// addresses filled in.
pub const DEMO_CONFIG: &str = include_str!("../../../../examples/demo.toml");

/// Four simulated providers behind the engine, configured by
/// `examples/demo.toml`: an SMS quota 70/30 with healthchecks and
/// breakers, one provider knocked out and brought back, and a card-payment
/// fallback that fails over.
async fn routing(serve: Option<String>) -> Result<(), Exit> {
    use crate::config::Config;
    use crate::deployment::StartOptions;
    use switchyard_engine::{HealthStatus, Kind, RunOptions};

    let start = || async {
        Simulator::start()
            .await
            .map_err(|e| usage(format!("starting a simulated provider: {e}")))
    };
    let (alpha, beta) = (start().await?, start().await?);
    let (pay_main, pay_backup) = (start().await?, start().await?);
    let text = DEMO_CONFIG
        .replace("{alpha}", &alpha.url())
        .replace("{beta}", &beta.url())
        .replace("{pay_main}", &pay_main.url())
        .replace("{pay_backup}", &pay_backup.url());
    let config =
        Config::from_source("examples/demo.toml".into(), text).map_err(|e| usage(e.to_string()))?;
    let d = Deployment::start(config, StartOptions::default())
        .await
        .map_err(|e| usage(e.to_string()))?;
    let yard = d.yard.clone();
    println!(
        "\nrouting through the engine, configured by examples/demo.toml ({} apps loaded):",
        d.apps().len()
    );
    println!("  quota `sms` = alpha 70 / beta 30 with healthchecks every 500 ms and breakers");
    let _checks = yard.spawn_healthchecks();
    let input = serde_json::json!({"phone": "+15550100", "text": "your code is 123456"});

    let traffic = |label: &'static str| {
        let yard = yard.clone();
        let input = input.clone();
        async move {
            let mut split = std::collections::BTreeMap::<String, u32>::new();
            let (mut failovers, mut failed) = (0, 0);
            for _ in 0..100 {
                match yard
                    .run(
                        Kind::Quota,
                        "demo",
                        "dev",
                        "sms",
                        input.clone(),
                        RunOptions::default(),
                    )
                    .await
                {
                    Ok(r) => {
                        *split.entry(r.provider.unwrap_or_default()).or_default() += 1;
                        failovers += u32::from(r.trace.attempts.len() > 1);
                    }
                    Err(_) => failed += 1,
                }
            }
            let states = yard
                .provider_states("demo", "dev", Kind::Quota, "sms")
                .unwrap_or_default();
            let state: Vec<String> = states
                .iter()
                .map(|s| {
                    format!(
                        "{} {:?}/breaker {:?}",
                        s.provider, s.status, s.breaker.state
                    )
                    .to_lowercase()
                })
                .collect();
            println!(
                "  {label:<34} served {split:?}, {failovers} failovers, {failed} failed | {}",
                state.join(", ")
            );
        }
    };
    traffic("all healthy:").await;
    beta.set_failure_rate(1.0);
    println!("  -- beta starts failing every request --");
    traffic("beta failing:").await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    traffic("after beta's healthcheck ran:").await;
    beta.set_failure_rate(0.0);
    println!("  -- beta recovers --");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let healthy =
        yard.health("demo", "dev", "beta-health").map(|h| h.status) == Some(HealthStatus::Healthy);
    traffic(if healthy {
        "beta healthy again:"
    } else {
        "beta recovering:"
    })
    .await;

    pay_main.set_failure_rate(1.0);
    let r = yard
        .run(
            Kind::Fallback,
            "demo",
            "dev",
            "card-payment",
            serde_json::json!({"amount": 1999, "currency": "eur"}),
            RunOptions::default().idempotency_key("order-1001"),
        )
        .await;
    println!(
        "\none `card-payment` fallback run explained (main account down, one retry, then backup):"
    );
    match r {
        Ok(r) => {
            println!("  output {}", r.output);
            print!("{}", r.trace.render());
        }
        Err(e) => {
            println!("  {e}");
            if let Some(t) = e.trace {
                print!("{}", t.render());
            }
        }
    }
    let m = d.metrics_text();
    let lines = m
        .lines()
        .filter(|l| l.starts_with("switchyard_attempts_total{"))
        .count();
    let Some(listen) = serve else {
        println!(
            "\n`switchyard serve` exposes the same engine over HTTP; its /metrics would now show {lines} attempt series. See it live: `switchyard demo --serve`. Next: README.md → \"Serve a config\"."
        );
        return Ok(());
    };
    pay_main.set_failure_rate(0.0);
    keep_serving(Arc::new(d), beta, &listen).await
}

/// `demo --serve`: the demo's engine over HTTP on `listen`, with quota
/// runs flowing and `beta` failing every other 15 s, until Ctrl-C.
async fn keep_serving(d: Arc<Deployment>, beta: Simulator, listen: &str) -> Result<(), Exit> {
    use crate::api::{ApiState, serve};
    use std::sync::atomic::{AtomicBool, Ordering};
    use switchyard_engine::{Kind, RunOptions};
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
        usage(format!(
            "cannot listen on {listen}: {e}; pass --listen 127.0.0.1:0"
        ))
    })?;
    let addr = listener.local_addr().map_err(|e| usage(e.to_string()))?;
    // A one-off token for this run: the API and the page need one.
    let token = {
        use sha2::{Digest, Sha256};
        let seed = format!(
            "{:?}{}{addr}",
            std::time::SystemTime::now(),
            std::process::id()
        );
        hex::encode(&Sha256::digest(seed.as_bytes())[..12])
    };
    println!("\nserving the demo's engine: dashboard http://{addr}/ui  (token: {token})");
    println!("traffic flows through quota `sms`; beta fails for 15 s every 30 s. Ctrl-C stops.");
    let traffic = {
        let d = d.clone();
        tokio::spawn(async move {
            let input = serde_json::json!({"phone": "+15550100", "text": "your code is 123456"});
            loop {
                let started = Instant::now();
                let r = d
                    .yard
                    .run(
                        Kind::Quota,
                        "demo",
                        "dev",
                        "sms",
                        input.clone(),
                        RunOptions::default(),
                    )
                    .await;
                d.hub.record_run(
                    "demo",
                    "dev",
                    Kind::Quota,
                    "sms",
                    r,
                    started.elapsed().as_secs_f64() * 1e3,
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let outages = {
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(15)).await;
                beta.set_failure_rate(1.0);
                tokio::time::sleep(Duration::from_secs(15)).await;
                beta.set_failure_rate(0.0);
            }
        })
    };
    d.enable_auth(&[crate::access::ConfigToken::admin("default", token)])
        .map_err(|e| usage(e.to_string()))?;
    let state = Arc::new(ApiState {
        deployment: d,
        tls: None,
        max_body_bytes: 256 * 1024,
        max_event_streams: 64,
        ready: AtomicBool::new(true),
        header_read_timeout: Duration::from_secs(10),
    });
    let result = serve(
        listener,
        state.clone(),
        async {
            let _ = tokio::signal::ctrl_c().await;
        },
        Duration::from_secs(2),
    )
    .await;
    state.ready.store(false, Ordering::SeqCst);
    traffic.abort();
    outages.abort();
    result.map_err(|e| usage(format!("the demo server stopped: {e}")))
}
