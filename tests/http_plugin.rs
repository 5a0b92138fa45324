//! The generic http plugin against a real loopback provider.

use serde_json::json;
use std::time::Duration;
use switchyard_engine::{Adapter, CallRequest, ErrorClass, FailureKind, Idempotency};
use switchyard_runtime::{CacheOutcome, RuntimeConfig};
use switchyard_runtime::{Grant, Runtime};
use switchyard_tests::{Simulator, artifacts, http_plugin, runtime};

fn grant(sim: &Simulator) -> Grant {
    let actions = json!([
        {"name": "send", "method": "POST", "path": "/v1/messages", "description": "send one",
         "input": {"to": {"type": "string", "required": true}}},
        {"name": "fetch", "method": "GET", "path": "/v1/messages/{id}", "idempotent": true},
        {"name": "status", "method": "GET", "path": "/v1/status"},
        {"name": "upsert", "method": "PUT", "path": "/v1/things", "idempotency": "keyed"}
    ]);
    sim.http_plugin_grant(&actions)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_lists_builtin_and_configured_actions() {
    let sim = Simulator::start().await.unwrap();
    let rt = runtime();
    let app = http_plugin(&rt, "sim", grant(&sim)).await;
    let info = app.info();
    assert_eq!(info.name, "http");
    let names: Vec<&str> = info.actions.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(
        names,
        ["request", "ping", "send", "fetch", "status", "upsert"]
    );
    let idem = |a: &str| info.action(a).unwrap().idempotency;
    // `idempotent: true` is the older spelling of keyed; GET is a read
    // unless declared otherwise; POST is unsafe unless declared.
    assert_eq!(idem("fetch"), Idempotency::Keyed);
    assert_eq!(idem("status"), Idempotency::Safe);
    assert_eq!(idem("upsert"), Idempotency::Keyed);
    assert_eq!(idem("send"), Idempotency::Unsafe);
    assert_eq!(idem("ping"), Idempotency::Safe);
    assert_eq!(
        info.action("send").unwrap().input_schema,
        json!({"to": {"type": "string", "required": true}})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn happy_path_reaches_the_provider_with_mapped_request() {
    let sim = Simulator::start().await.unwrap();
    sim.record(true);
    let rt = runtime();
    let app = http_plugin(&rt, "sim", grant(&sim)).await;

    let ping = app.call(CallRequest::new("ping", json!({}))).await.unwrap();
    assert_eq!(ping.output, json!({"status": 200}));

    let sent = app
        .call(
            CallRequest::new("send", json!({"to": "+15550100", "text": "hello"}))
                .idempotency_key("run-42"),
        )
        .await
        .unwrap();
    assert_eq!(sent.output, json!({"id": "msg_1", "status": "queued"}));

    let fetched = app
        .call(CallRequest::new(
            "fetch",
            json!({"id": "msg 1/x", "verbose": true}),
        ))
        .await
        .unwrap();
    assert_eq!(fetched.output["status"], "delivered");

    let seen = sim.recorded();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[1].method, "POST");
    assert_eq!(seen[1].uri, "/v1/messages");
    assert_eq!(seen[1].header("idempotency-key"), Some("run-42"));
    assert_eq!(seen[1].header("content-type"), Some("application/json"));
    let body: serde_json::Value = serde_json::from_slice(&seen[1].body).unwrap();
    assert_eq!(body, json!({"to": "+15550100", "text": "hello"}));
    // Path fields are percent-encoded and removed; the rest go to the query.
    assert_eq!(seen[2].uri, "/v1/messages/msg%201%2Fx?verbose=true");
    assert_eq!(app.egress_stats().requests, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_statuses_map_to_error_classes() {
    let sim = Simulator::start().await.unwrap();
    let rt = runtime();
    let app = http_plugin(&rt, "sim", grant(&sim)).await;
    let status = |code: u16| {
        CallRequest::new(
            "request",
            json!({"method": "GET", "path": format!("/status/{code}")}),
        )
    };

    let e = app.call(status(404)).await.unwrap_err();
    assert_eq!(
        (e.class, e.kind, e.status),
        (ErrorClass::Rejected, FailureKind::Provider, Some(404))
    );
    let e = app.call(status(422)).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Rejected);
    let e = app.call(status(503)).await.unwrap_err();
    assert_eq!((e.class, e.status), (ErrorClass::Unavailable, Some(503)));
    let e = app.call(status(408)).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Unavailable);
    let e = app.call(status(429)).await.unwrap_err();
    assert_eq!(
        (e.class, e.retry_after),
        (ErrorClass::RateLimited, Some(Duration::from_secs(2)))
    );

    // Missing required path field: refused by the adapter, nothing sent.
    let before = app.egress_stats().requests;
    let e = app
        .call(CallRequest::new("fetch", json!({})))
        .await
        .unwrap_err();
    assert_eq!(e.class, ErrorClass::Rejected);
    assert!(e.message.contains("input.id is required"), "{}", e.message);
    assert_eq!(app.egress_stats().requests, before);

    let e = app
        .call(CallRequest::new("nope", json!({})))
        .await
        .unwrap_err();
    assert!(e.message.contains("unknown action `nope`"), "{}", e.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_refused_is_unavailable_not_ambiguous() {
    // A port nothing listens on: bind, note the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let rt = runtime();
    let app = http_plugin(
        &rt,
        "down",
        Grant::new().allow(&url).config("base_url", &url),
    )
    .await;
    let e = app
        .call(CallRequest::new("ping", json!({})))
        .await
        .unwrap_err();
    assert_eq!(e.class, ErrorClass::Unavailable, "{e}");
    assert_eq!(app.egress_stats().failed, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_load_uses_the_precompiled_cache() {
    let dir = tempfile::tempdir().unwrap();
    let rt = Runtime::new(RuntimeConfig {
        cache_dir: Some(dir.path().to_path_buf()),
        ..RuntimeConfig::default()
    })
    .unwrap();
    let first = rt
        .load("a", artifacts::HTTP_PLUGIN, Grant::new())
        .await
        .unwrap();
    assert_eq!(first.load_report().cache, CacheOutcome::Miss);
    let second = rt
        .load("b", artifacts::HTTP_PLUGIN, Grant::new())
        .await
        .unwrap();
    assert_eq!(second.load_report().cache, CacheOutcome::Hit);
    assert!(second.load_report().compile < first.load_report().compile);

    // A corrupt artifact is discarded and rebuilt, not trusted.
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        std::fs::write(entry.unwrap().path(), b"garbage").unwrap();
    }
    let third = rt
        .load("c", artifacts::HTTP_PLUGIN, Grant::new())
        .await
        .unwrap();
    assert_eq!(third.load_report().cache, CacheOutcome::Miss);
    assert_eq!(third.info().name, "http");
}
