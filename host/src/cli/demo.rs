//! `switchyard demo`: the bundled http plugin against a simulated provider
//! on loopback, showing calls, error classes and the egress gate.

use super::{Exit, bundled, outcome_line, runtime, usage};
use crate::adapter::CallRequest;
use crate::grant::Grant;
use crate::simulator::Simulator;
use std::time::{Duration, Instant};

pub async fn run() -> Result<(), Exit> {
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
    let grant = Grant::new()
        .allow(sim.url())
        .config("base_url", sim.url())
        .config("ping_path", "/health")
        .config("idempotency_header", "Idempotency-Key")
        .config("actions", actions.to_string());
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
    let calls: Vec<(&str, &crate::runtime::App, CallRequest)> = vec![
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

    sim.set_failure_rate(0.5);
    let mut ok = 0;
    let mut failed = 0;
    for i in 0..20 {
        let r = app
            .call(CallRequest::new(
                "send-message",
                serde_json::json!({"to": format!("+1555{i:04}")}),
            ))
            .await;
        if r.is_ok() { ok += 1 } else { failed += 1 }
    }
    println!("\nprovider failing 50% of requests: 20 sends -> {ok} ok, {failed} unavailable");

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
