//! `switchyard serve` end to end: the real binary with a config file, the
//! bundled `http` plugin as real wasm components, simulated providers on
//! loopback, and a plain HTTP client.

mod common;

use common::*;
use serde_json::{Value, json};
use std::process::Command;
use std::time::Duration;
use switchyard::Simulator;

#[tokio::test]
async fn runs_each_kind_over_http() {
    let s = Setup::new().await;
    let server = Server::start(&s.config());

    let (st, v) = server
        .post(
            "/v1/notify/dev/fallbacks/sms/run",
            json!({"input": {"to": "+1555", "text": "hi"}, "idempotency_key": "order-1"}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["output"]["via"], "primary");
    assert_eq!(v["provider"], "primary");
    assert_eq!(v["idempotency_key"], "order-1");
    assert_eq!(v["trace"]["attempts"].as_array().unwrap().len(), 1);

    // Primary down: its try and its retry fail, the backup serves.
    assert_eq!(server.first_healthcheck().await["status"], "healthy");
    s.primary.set_failure_rate(1.0);
    let (st, v) = server
        .post(
            "/v1/notify/dev/fallbacks/sms/run",
            json!({"input": {"to": "+1555", "text": "hi"}}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["output"]["via"], "backup");
    let attempts = v["trace"]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 3, "{v}");
    assert_eq!(
        attempts[0]["outcome"],
        json!({"failed": "unavailable"}),
        "{v}"
    );
    s.primary.set_failure_rate(0.0);

    let mut served = std::collections::BTreeMap::<String, u32>::new();
    for _ in 0..10 {
        let (st, v) = server
            .post(
                "/v1/notify/dev/quotas/split/run",
                json!({"input": {"to": "+1555"}}),
            )
            .await;
        assert_eq!(st, 200, "{v}");
        *served
            .entry(v["provider"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert_eq!(
        served,
        [("backup".to_string(), 3), ("primary".to_string(), 7)].into()
    );

    let (st, v) = server
        .post(
            "/v1/notify/dev/features/send-and-check/run",
            json!({"input": {"to": "+1555"}}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["output"]["status"], "delivered", "{v}");

    let (st, v) = server.get("/v1/notify/dev/fallbacks/sms/providers").await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["providers"][0]["provider"], "primary");
    assert_eq!(v["providers"][0]["breaker"]["state"], "closed");
    let (st, v) = server.get("/v1/notify/apps").await;
    assert_eq!(st, 200, "{v}");
    assert!(!v.to_string().contains("base_url"), "apps leak grants: {v}");
}

#[tokio::test]
async fn bad_input_gets_a_code_and_a_field_never_a_500() {
    let s = Setup::new().await;
    let server = Server::start(&s.config());
    let run = "/v1/notify/dev/fallbacks/sms/run";

    let (st, v) = server
        .post(run, json!({"input": {"text": "no recipient"}}))
        .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (400, Some("invalid-input")),
        "{v}"
    );
    assert_eq!(v["field"], "input.to", "{v}");
    let (st, v) = server
        .post(run, json!({"input": {"to": 5, "text": "x"}}))
        .await;
    assert_eq!((st, v["field"].as_str()), (400, Some("input.to")), "{v}");
    let (st, v) = server.post(run, json!({"inptu": {}})).await;
    assert_eq!((st, v["code"].as_str()), (400, Some("invalid-body")), "{v}");
    assert!(v["message"].as_str().unwrap().contains("inptu"), "{v}");
    // A struct's fields as an array are not an object: refused on every
    // body, admission settings included (`[]` once read as all defaults).
    for session in [json!(["tag", "token"]), json!("tag")] {
        let (st, v) = server
            .post(run, json!({"input": {"to": "+1"}, "session": session}))
            .await;
        assert_eq!((st, v["code"].as_str()), (400, Some("invalid-body")), "{v}");
        assert!(v["message"].as_str().unwrap().contains("session"), "{v}");
    }
    let (st, v) = server.post(run, json!({"input": ["+1", "x"]})).await;
    assert_eq!(st, 400, "an array input is refused: {v}");
    for (path, method) in [(run, "POST"), ("/v1/notify/apps/primary/admission", "PUT")] {
        for body in [json!([]), json!([{"to": "+1"}]), json!("x"), json!(null)] {
            let (st, v) = server
                .call(method, path, Some(TOKEN), Some(body.clone()))
                .await;
            assert_eq!(
                (st, v["code"].as_str()),
                (400, Some("invalid-body")),
                "{path} {body}: {v}"
            );
            assert!(
                v["message"].as_str().unwrap().contains("JSON object"),
                "{v}"
            );
        }
    }
    let (st, v) = server
        .call(
            "POST",
            run,
            Some(TOKEN),
            Some(json!({"input": {"to": "x".repeat(5000)}})),
        )
        .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (413, Some("body-too-large")),
        "{v}"
    );
    let (st, v) = server
        .post("/v1/notify/dev/fallbacks/nope/run", json!({}))
        .await;
    assert_eq!((st, v["code"].as_str()), (404, Some("not-found")), "{v}");
    let (st, v) = server
        .post("/v1/notify/prd/fallbacks/sms/run", json!({}))
        .await;
    assert_eq!((st, v["code"].as_str()), (404, Some("not-found")), "{v}");
    let (st, v) = server
        .post("/v1/notify/dev/healthchecks/sms/run", json!({}))
        .await;
    assert_eq!((st, v["code"].as_str()), (404, Some("not-found")), "{v}");

    let bad = json!({"tag": "bad", "options": [{"provider": "x", "app": "nope", "action": "send-message"}]});
    let (st, v) = server.post("/v1/notify/definitions/fallbacks", bad).await;
    assert_eq!(
        (st, v["code"].as_str()),
        (422, Some("invalid-definition")),
        "{v}"
    );
    assert_eq!(v["field"], "fallbacks.bad.options[0].app", "{v}");
    let typo = json!({"tag": "t", "options": [], "optoins": []});
    let (st, v) = server.post("/v1/notify/definitions/fallbacks", typo).await;
    assert_eq!(
        (st, v["code"].as_str()),
        (422, Some("invalid-definition")),
        "{v}"
    );
    let (st, v) = server
        .post(
            "/v1/notify/definitions/fallbacks",
            json!({"tag": "sms", "options": []}),
        )
        .await;
    assert_eq!((st, v["code"].as_str()), (409, Some("exists")), "{v}");
    let (st, v) = server
        .call(
            "DELETE",
            "/v1/notify/definitions/healthchecks/primary-health",
            Some(TOKEN),
            None,
        )
        .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (422, Some("invalid-definition")),
        "{v}"
    );
    assert!(
        v["message"].as_str().unwrap().contains("sms"),
        "names the user: {v}"
    );

    // Still serving after all that.
    let (st, _) = server
        .post(run, json!({"input": {"to": "+1", "text": "x"}}))
        .await;
    assert_eq!(st, 200);
}

#[tokio::test]
async fn the_api_needs_the_token_but_health_does_not() {
    let s = Setup::new().await;
    let server = Server::start(&s.config());
    for (path, token) in [
        ("/v1/notify/definitions/fallbacks", None),
        ("/v1/notify/definitions/fallbacks", Some("wrong")),
        ("/metrics", None),
    ] {
        let (st, v) = server.call("GET", path, token, None).await;
        assert_eq!(
            (st, v["code"].as_str()),
            (401, Some("unauthorized")),
            "{path}: {v}"
        );
    }
    assert_eq!(server.call("GET", "/healthz", None, None).await.0, 200);
    assert_eq!(server.call("GET", "/readyz", None, None).await.0, 200);
    let (st, v) = server.get("/v1/notify/definitions/fallbacks").await;
    assert_eq!(st, 200);
    assert_eq!(v["fallbacks"][0]["tag"], "sms");
}

#[tokio::test]
async fn definitions_survive_kill_9_and_health_history_too() {
    let s = Setup::new().await;
    let config = s.config();
    let server = Server::start(&config);
    let def = json!({"tag": "direct", "name": "Backup only", "input": {"to": {"type": "string"}},
        "options": [{"provider": "backup", "app": "backup", "action": "send-message"}]});
    let (st, v) = server.post("/v1/notify/definitions/fallbacks", def).await;
    assert_eq!(st, 201, "{v}");
    let updated = json!({"name": "Backup only, v2", "input": {"to": {"type": "string"}},
        "options": [{"provider": "backup", "app": "backup", "action": "send-message", "retries": 2}]});
    let (st, v) = server
        .call(
            "PUT",
            "/v1/notify/definitions/fallbacks/direct",
            Some(TOKEN),
            Some(updated),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let (st, _) = server
        .post(
            "/v1/notify/definitions/caches",
            json!({"tag": "gone", "ttl_ms": 1000}),
        )
        .await;
    assert_eq!(st, 201);
    let (st, _) = server
        .call(
            "DELETE",
            "/v1/notify/definitions/caches/gone",
            Some(TOKEN),
            None,
        )
        .await;
    assert_eq!(st, 200);
    let checked = server.first_healthcheck().await;
    assert_eq!(checked["status"], "healthy", "{checked}");
    s.stored_health_outcomes(1).await;
    server.kill9();

    let server = Server::start(&config);
    let (st, v) = server.get("/v1/notify/definitions/fallbacks/direct").await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["name"], "Backup only, v2");
    assert_eq!(v["options"][0]["retries"], 2);
    let (st, _) = server.get("/v1/notify/definitions/caches/gone").await;
    assert_eq!(st, 404);
    let (st, v) = server
        .post(
            "/v1/notify/dev/fallbacks/direct/run",
            json!({"input": {"to": "+1"}}),
        )
        .await;
    assert_eq!((st, v["provider"].as_str()), (200, Some("backup")), "{v}");
    let (_, h) = server
        .get("/v1/notify/dev/healthchecks/primary-health")
        .await;
    let history = h["history"].as_array().unwrap();
    assert!(!history.is_empty(), "{h}");
    assert_eq!(
        history[0], checked["history"][0],
        "the first outcome came back from the store"
    );
    server.kill9();

    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["check", "--diff"])
        .arg(&config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("- products.notify.fallbacks.direct"),
        "{text}"
    );
}

#[tokio::test]
async fn past_the_admission_queue_runs_get_503_overloaded_and_nothing_is_counted() {
    let s = Setup::new().await;
    s.primary.set_latency(Duration::from_millis(400));
    s.backup.set_latency(Duration::from_millis(400));
    let limits = "\n[products.notify.apps.primary.admission]\nmax_in_flight = 2\nmax_queue = 0\n\n[products.notify.apps.backup.admission]\nmax_in_flight = 1\nmax_queue = 0\n";
    let config = s.config_with(limits);
    let server = Server::start(&config);
    assert_eq!(server.first_healthcheck().await["status"], "healthy");
    let providers = "/v1/notify/dev/fallbacks/sms/providers";
    let state = |v: &Value| -> Vec<String> {
        v["providers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                format!(
                    "{} {} {} {}",
                    p["provider"], p["status"], p["breaker"], p["counts"]
                )
            })
            .collect()
    };
    let before = state(&server.get(providers).await.1);
    let run = || {
        server.call_with_headers(
            "POST",
            "/v1/notify/dev/fallbacks/sms/run",
            Some(TOKEN),
            Some(json!({"input": {"to": "+1", "text": "x"}})),
        )
    };
    let results = futures_join_all((0..20).map(|_| run())).await;
    let served: Vec<_> = results.iter().filter(|r| r.0 == 200).collect();
    let refused: Vec<_> = results.iter().filter(|r| r.0 == 503).collect();
    assert_eq!(served.len() + refused.len(), 20, "{results:?}");
    assert_eq!(served.len(), 3, "2 in flight on primary, 1 on backup");
    for (_, headers, body) in &refused {
        assert_eq!(body["code"], "overloaded", "{body}");
        let after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!(after >= 1, "{headers:?}");
        assert!(body["retry_after_ms"].as_u64().unwrap() >= 1);
        assert_eq!(body["trace"]["attempts"], json!([]), "no provider called");
    }
    // Nothing about the providers moved but the served runs' counts.
    let (_, v) = server.get(providers).await;
    let after = state(&v);
    assert_eq!(before.len(), after.len());
    let statuses: Vec<&Value> = v["providers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["status"])
        .collect();
    assert_eq!(
        statuses,
        [&json!("healthy"), &json!("unknown")],
        "backup has no healthcheck"
    );
    for p in v["providers"].as_array().unwrap() {
        assert_eq!(p["breaker"]["state"], "closed", "{p}");
        assert_eq!(p["breaker"]["failures"], 0, "{p}");
        assert_eq!(p["counts"]["failures"], json!({}), "{p}");
        assert_eq!(p["admission"]["in_flight"], 0, "{p}");
    }
    // 18 runs found primary full; one of them found backup free.
    assert_eq!(v["providers"][0]["admission"]["overloaded"], 18);
    assert_eq!(v["providers"][1]["admission"]["overloaded"], 17);
    let text = server.get("/metrics").await.1.as_str().unwrap().to_string();
    assert_eq!(
        metric(
            &text,
            r#"switchyard_overloaded_total{product="notify",env="dev",app="primary",reason="in-flight"}"#
        ),
        18.0,
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            r#"switchyard_runs_total{product="notify",env="dev",kind="fallback",tag="sms",code="overloaded"}"#
        ),
        17.0
    );
    assert!(text.contains("switchyard_admission_wait_seconds_bucket{"));
    assert!(
        text.contains(r#"switchyard_admission_limit{product="notify",env="dev",app="primary"} 2"#),
        "{text}"
    );
    assert!(
        text.contains("switchyard_plugin_instances_max 1024"),
        "{text}"
    );

    // Limits through the API: checked, named, applied, kept.
    let path = "/v1/notify/apps/primary/admission";
    let (st, v) = server.get(path).await;
    assert_eq!((st, &v["config"]["max_in_flight"]), (200, &json!(2)), "{v}");
    let put = |body: Value| server.call("PUT", path, Some(TOKEN), Some(body));
    let (st, v) = put(json!({"max_in_flight": 0})).await;
    assert_eq!(
        (st, v["field"].as_str()),
        (422, Some("admission.max_in_flight")),
        "{v}"
    );
    let (st, v) = put(json!({"max_in_flight": 5000})).await;
    assert_eq!(st, 422, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("instance pool holds 1024"),
        "{v}"
    );
    let (st, v) = put(json!({"max_in_fligt": 3})).await;
    assert_eq!(st, 400, "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("max_in_fligt"),
        "{v}"
    );
    let (st, v) = put(json!({"max_in_flight": 8, "max_queue": 50, "rate_per_sec": 20.0})).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["config"]["max_in_flight"], 8);
    let (st, _) = server
        .call("GET", "/v1/notify/apps/nope/admission", Some(TOKEN), None)
        .await;
    assert_eq!(st, 404);
    server.kill9();
    let server = Server::start(&config);
    let (_, v) = server.get(path).await;
    assert_eq!(v["config"]["max_in_flight"], 8, "kept across restarts: {v}");
    assert_eq!(v["config"]["rate_per_sec"], 20.0);
}

#[tokio::test]
async fn wrong_methods_and_out_of_range_deadlines_get_json_errors() {
    let s = Setup::new().await;
    let server = Server::start(&s.config());
    let (st, v) = server
        .call(
            "DELETE",
            "/v1/notify/dev/fallbacks/sms/run",
            Some(TOKEN),
            None,
        )
        .await;
    assert_eq!(st, 405);
    assert_eq!(v["code"], "method-not-allowed", "{v}");
    for deadline in [
        json!(0),
        json!(86_400_001u64),
        json!(18446744073709551615u64),
    ] {
        let (st, v) = server
            .post(
                "/v1/notify/dev/fallbacks/sms/run",
                json!({"input": {"to": "+1", "text": "x"}, "deadline_ms": deadline}),
            )
            .await;
        assert_eq!((st, v["field"].as_str()), (400, Some("deadline_ms")), "{v}");
    }
}

#[tokio::test]
async fn a_client_trickling_headers_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = Setup::new().await;
    let config = s.config_with_server("header_read_timeout_ms = 300\n", "");
    let server = Server::start(&config);
    let addr = server.base.trim_start_matches("http://").to_string();
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"POST /v1/notify/dev/fallbacks/sms/run HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // Never finishes its headers: the server closes it (EOF, maybe after
    // a 408), well before a generous bound.
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the slow connection was held open");
    // Meanwhile and after, normal requests are served.
    assert_eq!(server.get("/v1/notify/apps").await.0, 200);
}

#[tokio::test]
async fn made_up_tags_do_not_grow_the_metrics() {
    let s = Setup::new().await;
    let server = Server::start(&s.config());
    let size = || async { server.get("/metrics").await.1.as_str().unwrap().len() };
    let before = size().await;
    for i in 0..2_000 {
        let (st, _) = server
            .post(
                &format!("/v1/notify/dev/fallbacks/nope-{i}/run"),
                json!({"input": {}}),
            )
            .await;
        assert_eq!(st, 404);
    }
    let text = server.get("/metrics").await.1.as_str().unwrap().to_string();
    assert!(!text.contains("nope-"), "a made-up tag became a label");
    assert!(
        text.len() < before + 4_096,
        "{} -> {} bytes",
        before,
        text.len()
    );
    assert_eq!(
        metric(
            &text,
            r#"switchyard_runs_total{product="notify",env="dev",kind="fallback",tag="(unknown)",code="not-found"}"#
        ),
        2_000.0
    );
}

fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn metrics_are_exposed_and_move() {
    let s = Setup::new().await;
    let server = Server::start(&s.config());
    let scrape = || async { server.get("/metrics").await.1.as_str().unwrap().to_string() };
    assert_eq!(server.first_healthcheck().await["status"], "healthy");
    let before = scrape().await;
    s.primary.set_failure_rate(1.0);
    for _ in 0..3 {
        let (st, _) = server
            .post(
                "/v1/notify/dev/fallbacks/sms/run",
                json!({"input": {"to": "+1", "text": "x"}}),
            )
            .await;
        assert_eq!(st, 200);
    }
    let after = scrape().await;
    let attempts = r#"switchyard_attempts_total{product="notify",env="dev",app="primary",action="send-message",provider="primary"}"#;
    assert_eq!(
        metric(&after, attempts) - metric(&before, attempts),
        6.0,
        "{after}"
    );
    let errors = r#"switchyard_attempt_errors_total{product="notify",env="dev",app="primary",action="send-message",provider="primary",class="unavailable"}"#;
    assert_eq!(metric(&after, errors), 6.0, "{after}");
    assert_eq!(metric(&after, "switchyard_retries_total{"), 3.0, "{after}");
    assert_eq!(
        metric(
            &after,
            r#"switchyard_runs_total{product="notify",env="dev",kind="fallback",tag="sms",code="ok"}"#
        ),
        3.0
    );
    // Six failures in a row open the primary's breaker (more than 5, over 50 %).
    assert!(
        after.contains(
            r#"switchyard_breaker_state{breaker="notify/dev/primary/send-message",state="open"} 1"#
        ),
        "{after}"
    );
    assert!(
        metric(&after, "switchyard_plugin_instantiations_total{") >= 9.0,
        "{after}"
    );
    // The http plugin lists `send-message` in `exchange-reading`: the
    // backup's three 2xx JSON answers were read by the host; the
    // primary's failures went to the adapter's `resume`.
    let read = |app: &str| {
        let name = format!(
            r#"switchyard_plugin_answers_read_by_host_total{{product="notify",env="dev",app="{app}"}}"#
        );
        metric(&after, &name) - metric(&before, &name)
    };
    assert_eq!((read("primary"), read("backup")), (0.0, 3.0), "{after}");
    assert!(
        after.contains("switchyard_attempt_duration_seconds_bucket{"),
        "{after}"
    );
    assert!(after.contains("switchyard_egress_denied_total{"), "{after}");
    assert!(after.contains("# TYPE switchyard_healthchecks_total counter"));
}

#[tokio::test]
async fn the_server_starts_the_threads_its_config_names() {
    let s = Setup::new().await;
    let path = s.config_with_server("api_threads = 3\n", "\n[runtime]\nsandbox_threads = 2\n");
    let server = Server::start(&path);
    let (st, body) = server
        .post(
            "/v1/notify/dev/fallbacks/sms/run",
            json!({"input": {"to": "+1", "text": "x"}}),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    let text = server.get("/metrics").await.1.as_str().unwrap().to_string();
    assert_eq!(metric(&text, "switchyard_api_threads "), 3.0, "{text}");
    assert_eq!(metric(&text, "switchyard_sandbox_threads "), 2.0, "{text}");
    // Left out: half the cores for the API, one per core for calls.
    drop(server);
    let server = Server::start(&s.config());
    let text = server.get("/metrics").await.1.as_str().unwrap().to_string();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    assert_eq!(
        metric(&text, "switchyard_api_threads "),
        (cores / 2.0).floor().clamp(1.0, 64.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "switchyard_sandbox_threads "),
        cores.min(64.0),
        "{text}"
    );
}

#[tokio::test]
async fn sigterm_finishes_in_flight_runs() {
    let s = Setup::new().await;
    let server = std::sync::Arc::new(Server::start(&s.config()));
    s.backup.set_latency(Duration::from_millis(1500));
    let before = s.backup.counts().0;
    let in_flight = {
        let server = server.clone();
        tokio::spawn(async move {
            server
                .post("/v1/notify/dev/fallbacks/direct-slow/run", json!({}))
                .await
        })
    };
    // Not defined: a 404 proves routing, then the real in-flight run.
    assert_eq!(in_flight.await.unwrap().0, 404);
    // The quota tries primary first (70/30); it fails, so the backup (slow)
    // gets the call. Wait until the backup has it.
    s.primary.set_failure_rate(1.0);
    let in_flight = {
        let server = server.clone();
        tokio::spawn(async move {
            server
                .post(
                    "/v1/notify/dev/quotas/split/run",
                    json!({"input": {"to": "+1"}}),
                )
                .await
        })
    };
    for _ in 0..200 {
        if s.backup.counts().0 > before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        s.backup.counts().0 > before,
        "the run never reached the backup"
    );
    server.terminate();
    let (st, v) = in_flight.await.unwrap();
    assert_eq!(st, 200, "the in-flight run was cut: {v}");
    assert_eq!(v["provider"], "backup");
    let mut server = std::sync::Arc::into_inner(server).unwrap();
    let status = server.child.wait().unwrap();
    assert!(status.success(), "exit {status:?}");
}

#[test]
fn check_reports_every_problem_with_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        r#"[products.notify]
envs = ["dev"]

[products.notify.apps.primary]
plugin = "bundled:http"
[products.notify.apps.primary.envs.dev]
allow = ["http://127.0.0.1:9"]

[products.notify.fallbacks.sms]
options = [
  { provider = "a", app = "primary", action = "send-mesage" },
  { provider = "b", app = "ghost", action = "send" },
]

[products.notify.quotas.split]
providers = [ { provider = "a", app = "primary", action = "ping", weight = 0 } ]
"#,
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("check")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let file = path.display().to_string();
    assert!(
        err.contains(&format!(
            "{file}:11: products.notify.fallbacks.sms.options[0].action"
        )),
        "{err}"
    );
    assert!(
        err.contains("it has: request, ping"),
        "lists the app's actions: {err}"
    );
    assert!(
        err.contains(&format!(
            "{file}:16: products.notify.quotas.split.providers[0].weight"
        )),
        "{err}"
    );
}

/// Every operation of `/openapi.json`, called with the document's own
/// examples, answers with a status the document lists for it, and a
/// documented success body has the fields its schema requires.
/// The status and first event of a server-sent event stream.
async fn first_event(server: &Server, path: &str) -> (u16, String) {
    use http_body_util::BodyExt;
    let req = http::Request::get(format!("{}{path}", server.base))
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let resp = server.http.request(req).await.unwrap();
    let status = resp.status().as_u16();
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let mut body = resp.into_body();
    let mut text = String::new();
    while !text.contains("\n\n") {
        let Some(frame) = body.frame().await else {
            break;
        };
        if let Ok(data) = frame.unwrap().into_data() {
            text.push_str(&String::from_utf8_lossy(&data));
        }
    }
    (status, text)
}

#[tokio::test]
async fn the_openapi_document_matches_the_server() {
    let s = Setup::new().await;
    let server = Server::start(&s.config());
    let (st, spec) = server.call("GET", "/openapi.json", None, None).await;
    assert_eq!(st, 200);
    assert_eq!(spec["openapi"], "3.1.0");
    let mut ops = Vec::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        let mut concrete = path.clone();
        for p in item["parameters"].as_array().into_iter().flatten() {
            let name = p["name"].as_str().unwrap();
            concrete = concrete.replace(&format!("{{{name}}}"), p["example"].as_str().unwrap());
        }
        assert!(
            !concrete.contains('{'),
            "{path}: a path parameter has no example"
        );
        for (method, op) in item.as_object().unwrap() {
            if method == "parameters" {
                continue;
            }
            let order = ["post", "get", "put", "patch", "delete"]
                .iter()
                .position(|m| m == method)
                .unwrap();
            ops.push((order, method.to_uppercase(), concrete.clone(), op.clone()));
        }
    }
    ops.sort_by_key(|o| o.0);
    assert_eq!(ops.len(), 30, "every route is documented");
    for (_, method, path, op) in ops {
        if op["responses"]["200"]["content"]["text/event-stream"].is_object() {
            // A stream never ends: read its first event only.
            let (st, first) = first_event(&server, &path).await;
            assert_eq!(st, 200);
            assert!(first.starts_with("event: state"), "{first}");
            continue;
        }
        let body = op["requestBody"]["content"]["application/json"]["example"].clone();
        let token = op.get("security").map(|_| TOKEN);
        let (st, v) = server
            .call(&method, &path, token, (!body.is_null()).then_some(body))
            .await;
        let documented = &op["responses"][st.to_string()];
        assert!(
            documented.is_object(),
            "{method} {path} answered {st}, not documented: {v}"
        );
        assert!(
            st < 300,
            "{method} {path} with the document's example failed: {st} {v}"
        );
        let schema = &documented["content"]["application/json"]["schema"];
        if let Some(r) = schema["$ref"].as_str() {
            let name = r.rsplit('/').next().unwrap();
            for field in spec["components"]["schemas"][name]["required"]
                .as_array()
                .into_iter()
                .flatten()
            {
                assert!(
                    v.get(field.as_str().unwrap()).is_some(),
                    "{method} {path}: `{field}` missing in {v}"
                );
            }
        }
        // Without the token, secured operations are refused as documented.
        if token.is_some() {
            let (st, _) = server.call(&method, &path, None, None).await;
            assert_eq!(st, 401);
            assert!(op["responses"]["401"].is_object());
        }
    }
}

/// `examples/switchyard.toml` checks clean and its `dev` env really runs
/// against the provider fakes (Prism with Stripe's and Twilio's OpenAPI
/// specs, moto for SNS; started by `tests/contracts/fakes.sh start`).
#[test]
fn the_shipped_config_checks_and_runs_against_the_provider_fakes() {
    // Where tests/contracts/fakes.sh keeps its files.
    let fakes =
        std::env::var("SWITCHYARD_FAKES_DIR").unwrap_or_else(|_| "/tmp/switchyard-fakes".into());
    let iam = std::fs::read_to_string(format!("{fakes}/run/sns-iam.env")).unwrap_or_else(|_| {
        panic!("the provider fakes are not running: tests/contracts/fakes.sh start")
    });
    let get = |k: &str| {
        iam.lines()
            .find_map(|l| {
                l.trim_start_matches("export ")
                    .strip_prefix(&format!("{k}="))
            })
            .unwrap_or_else(|| panic!("{k} missing from sns-iam.env"))
            .trim_matches('"')
            .to_string()
    };
    let config = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/switchyard.toml"
    );
    let cmd = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(args)
            .env("STRIPE_SECRET_KEY", "sk_test_main")
            .env("STRIPE_BACKUP_SECRET_KEY", "sk_test_backup")
            .env("TWILIO_AUTH_TOKEN", "twilio-token")
            .env("AWS_ACCESS_KEY_ID", get("AWS_ACCESS_KEY_ID"))
            .env("AWS_SECRET_ACCESS_KEY", get("AWS_SECRET_ACCESS_KEY"))
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{args:?}: {text}");
        out.stdout
    };
    let checked = String::from_utf8(cmd(&["check", config])).unwrap();
    assert!(
        checked.contains("ok (2 products, 8 apps loaded, 6 definitions)"),
        "{checked}"
    );

    let paid: Value = serde_json::from_slice(&cmd(&[
        "run",
        "fallback",
        "card-payment",
        "--config",
        config,
        "--product",
        "payments",
        "--env",
        "dev",
        "--input",
        r#"{"amount": 1099, "currency": "usd", "order_id": "42"}"#,
        "--json",
    ]))
    .unwrap();
    assert!(
        paid["output"]["payment_id"]
            .as_str()
            .unwrap()
            .starts_with("pi_"),
        "{paid}"
    );
    assert_eq!(paid["provider"], "stripe-main");
    for _ in 0..2 {
        let sms: Value = serde_json::from_slice(&cmd(&[
            "run",
            "quota",
            "sms",
            "--config",
            config,
            "--product",
            "notify",
            "--env",
            "dev",
            "--input",
            r#"{"phone": "+15558675310", "text": "Your code is 123456"}"#,
            "--json",
        ]))
        .unwrap();
        assert!(sms["output"]["message_id"].is_string(), "{sms}");
    }
}

/// `switchyard run` does what the API does: it runs definitions created
/// through the API (the store is read when it exists), takes the config
/// path like `serve` and `check`, and takes a session and a result cache.
/// (Multi-threaded: the simulated providers answer while the test waits on
/// the CLI.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_run_reads_the_store_and_takes_a_session_and_a_cache() {
    let s = Setup::new().await;
    let config = s.config();
    let server = Server::start(&config);
    let (st, v) = server
        .post(
            "/v1/notify/definitions/fallbacks",
            json!({"tag": "direct", "input": {"to": {"type": "string"}},
                   "options": [{"provider": "backup", "app": "backup", "action": "send-message",
                                "input": {"to": "$Input{to}"}}]}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let (st, v) = server
        .post(
            "/v1/notify/definitions/caches",
            json!({"tag": "recent", "ttl_ms": 60000}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    server.kill9();

    let run = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["run", "fallback", "direct"])
            .arg(&config)
            .args(["--input", r#"{"to": "+15550100"}"#, "--json"])
            .args(extra)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.code(), stdout, stderr)
    };
    // Created through the API, found in the store by default.
    let (code, out, err) = run(&["--session", "alice:tok_123", "--cache", "recent"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["provider"], "backup", "{v}");
    // A cache that does not exist is refused: the option reached the run.
    let (code, out, _) = run(&["--cache", "nope"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("no cache `nope`"), "{out}");
    // The config alone does not have it.
    let (code, out, _) = run(&["--no-store"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("no fallback `direct`"), "{out}");
    // A session must be TAG:TOKEN.
    let (code, _, err) = run(&["--session", "alice"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("TAG:TOKEN"), "{err}");
}

/// A partial update changes only what it names (JSON merge patch): the
/// reference's `update(tag, {description, options})` keeps the name and the
/// input schema, which a PUT would drop.
#[tokio::test]
async fn patch_changes_only_the_fields_it_names() {
    let s = Setup::new().await;
    let server = Server::start(&s.config());
    let path = "/v1/notify/definitions/fallbacks/sms";
    let (_, before) = server.get(path).await;
    assert_eq!(before["name"], "SMS");
    let backup_only = json!([{"provider": "backup", "app": "backup", "action": "send-message",
        "input": {"to": "$Input{to}", "text": "$Input{text}"}}]);
    let (st, v) = server
        .call(
            "PATCH",
            path,
            Some(TOKEN),
            Some(json!({"description": "backup only for now", "options": backup_only})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let (_, after) = server.get(path).await;
    assert_eq!(after["name"], "SMS", "{after}");
    assert_eq!(after["description"], "backup only for now");
    assert_eq!(after["input"], before["input"], "the input schema stays");
    assert_eq!(after["options"].as_array().unwrap().len(), 1);
    // `null` removes a field.
    let (st, v) = server
        .call("PATCH", path, Some(TOKEN), Some(json!({"name": null})))
        .await;
    assert_eq!(st, 200, "{v}");
    let (_, after) = server.get(path).await;
    assert!(after.get("name").is_none(), "{after}");
    // The merged result is checked as a whole; a bad one changes nothing.
    let (st, v) = server
        .call(
            "PATCH",
            path,
            Some(TOKEN),
            Some(json!({"options": [{"provider": "x", "app": "nope", "action": "send-message"}]})),
        )
        .await;
    assert_eq!(st, 422, "{v}");
    let (_, unchanged) = server.get(path).await;
    assert_eq!(unchanged["options"], after["options"]);
    let (st, v) = server
        .call(
            "PATCH",
            "/v1/notify/definitions/fallbacks/nope",
            Some(TOKEN),
            Some(json!({})),
        )
        .await;
    assert_eq!(st, 404, "{v}");
    let (st, v) = server
        .call(
            "PATCH",
            path,
            Some(TOKEN),
            Some(json!(["not", "an", "object"])),
        )
        .await;
    assert_eq!(st, 400, "{v}");
    assert_eq!(v["code"], "invalid-body");
}

/// Issue 17 items 2 and 5 over HTTP: breaker settings written in TOML per
/// definition and per option, the `open` flag and last error of a run
/// every breaker blocked, blocked requests in metrics, and each option's
/// live state in fetch and fetch-all with `?env=`.
#[tokio::test]
async fn breaker_settings_from_toml_and_live_option_state_in_fetch() {
    let s = Setup::new().await;
    let extra = r#"
[products.notify.fallbacks.strict]
input = { to = { type = "string" } }
breaker = { minimum_failure_count = 1, failure_threshold = 10, open_timeout = 600000 }
options = [
  { provider = "primary", app = "primary", action = "fetch-message", input = { id = "$Input{to}" }, healthcheck = "primary-health", check_interval_ms = 20000,
    breaker = { system_errors = ["unavailable", "internal"] } },
]
"#;
    let server = Server::start(&s.config_with(extra));
    server.first_healthcheck().await;
    // Live state: the stored definition stays a PUT-able body without
    // `?env=`; with it, every option carries `states` by env.
    let path = "/v1/notify/definitions/fallbacks/strict";
    let (_, plain) = server.get(path).await;
    assert!(plain["options"][0].get("states").is_none(), "{plain}");
    assert_eq!(plain["breaker"]["minimum_failure_count"], 1);
    let (st, live) = server.get(&format!("{path}?env=dev")).await;
    assert_eq!(st, 200, "{live}");
    let state = &live["options"][0]["states"]["dev"];
    assert_eq!(state["last_available"], true, "{live}");
    assert_eq!(state["status"], "healthy");
    assert!(state["last_checked_unix_ms"].is_u64());
    assert_eq!(state["check_interval_ms"], 20_000);
    assert_eq!(state["breaker_settings"]["open_timeout"], 600_000);
    assert_eq!(
        state["breaker_settings"]["system_errors"],
        json!(["unavailable", "internal"])
    );
    let (_, all) = server.get("/v1/notify/definitions/fallbacks?env=*").await;
    let strict = all["fallbacks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["tag"] == "strict")
        .unwrap();
    assert!(strict["options"][0]["states"]["dev"].is_object(), "{all}");
    let (st, v) = server.get(&format!("{path}?env=nope")).await;
    assert_eq!(st, 404, "{v}");
    let (st, v) = server.get(&format!("{path}?envs=dev")).await;
    assert_eq!(
        (st, v["code"].as_str()),
        (400, Some("invalid-query")),
        "{v}"
    );
    // The provider fails: two failures open the strict breaker (one is
    // not enough: failures must exceed minimum_failure_count).
    s.primary.set_failure_rate(1.0);
    let run = "/v1/notify/dev/fallbacks/strict/run";
    for _ in 0..2 {
        let (st, v) = server.post(run, json!({"input": {"to": "m-1"}})).await;
        assert_eq!(v["code"], "all-failed", "{v}");
        assert!(st >= 500, "{st}");
    }
    let (st, v) = server.post(run, json!({"input": {"to": "m-1"}})).await;
    assert_eq!(v["code"], "no-provider", "{v}");
    assert_eq!(v["open"], true, "{v}");
    assert!(!v["last_error"].as_str().unwrap().is_empty(), "{v}");
    assert_eq!(v["trace"]["skipped"][0]["reason"], "breaker-open");
    assert_eq!(v["trace"]["skipped"][0]["open"], true);
    assert_eq!(
        v["trace"]["skipped"][0]["breaker"],
        "notify/dev/primary/fetch-message"
    );
    assert!(st >= 500, "{st}");
    let (_, live) = server.get(&format!("{path}?env=dev")).await;
    let state = &live["options"][0]["states"]["dev"];
    assert_eq!(state["breaker"]["state"], "open", "{live}");
    assert_eq!(state["status"], "unhealthy");
    assert_eq!(state["counts"]["blocked"], 1);
    let (_, text) = server.get("/metrics").await;
    let text = text.as_str().unwrap().to_string();
    assert_eq!(
        metric(
            &text,
            "switchyard_breaker_blocked_total{product=\"notify\",env=\"dev\",target=\"primary/fetch-message\"}"
        ),
        1.0,
        "{text}"
    );
    // The CLI fetches the same: from the running server (live breakers) ...
    let cli = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .arg("get")
            .args(args)
            .env("SWITCHYARD_TOKEN", TOKEN)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let config = s.dir.path().join("switchyard.toml");
    let config = config.to_str().unwrap();
    let v = cli(&[
        "fallback",
        "strict",
        config,
        "--env",
        "dev",
        "--server",
        &server.base,
    ]);
    assert_eq!(
        v["options"][0]["states"]["dev"]["breaker"]["state"], "open",
        "{v}"
    );
    // ... or loaded here, health from the store's history.
    let v = cli(&["fallbacks", "strict", config, "--env", "*"]);
    assert_eq!(
        v["options"][0]["states"]["dev"]["last_available"], true,
        "{v}"
    );
    let v = cli(&["fallback", "strict", config]);
    assert!(v["options"][0].get("states").is_none(), "{v}");
}

/// Issue 17 item 7: a config edit is never silently ignored. A restart
/// says which definitions differ from the store and which side serves; a
/// reload (POST /v1/admin/reload, or SIGHUP) applies the edit without a
/// restart, keeps the breaker state of unchanged providers and the API's
/// own edits, and refuses a broken config whole.
#[tokio::test]
async fn config_edits_are_reported_at_start_and_applied_by_reload() {
    let s = Setup::new().await;
    let path = s.config();
    let server = Server::start(&path);
    server.first_healthcheck().await;
    // Open primary's breaker through the `split` quota (no retries).
    s.primary.set_failure_rate(1.0);
    for _ in 0..12 {
        server
            .post(
                "/v1/notify/dev/quotas/split/run",
                json!({"input": {"to": "+1"}}),
            )
            .await;
    }
    let breaker = || async {
        let (_, v) = server.get("/v1/notify/dev/quotas/split/providers").await;
        v["providers"][0]["breaker"]["state"]
            .as_str()
            .unwrap_or("?")
            .to_string()
    };
    assert_eq!(breaker().await, "open");
    // An edit through the API that the config does not touch.
    let (st, v) = server
        .call(
            "PATCH",
            "/v1/notify/definitions/features/send-and-check",
            Some(TOKEN),
            Some(json!({"name": "named through the API"})),
        )
        .await;
    assert_eq!(st, 200, "{v}");

    // Edit the file: change `sms`, add a check and a fallback using it,
    // and a server setting that needs a restart.
    let text = std::fs::read_to_string(&path).unwrap();
    let edited = text
        .replace("name = \"SMS\"", "name = \"SMS, edited\"")
        .replace("max_body_bytes = 4096", "max_body_bytes = 8192")
        + r#"
[products.notify.fallbacks.sms2]
options = [ { provider = "backup", app = "backup", action = "send-message", healthcheck = "backup-health" } ]

[products.notify.healthchecks.backup-health]
app = "backup"
action = "ping"
input = { dev = {} }
"#;
    std::fs::write(&path, &edited).unwrap();
    let (st, report) = server.post("/v1/admin/reload", json!({})).await;
    assert_eq!(st, 200, "{report}");
    let lines: Vec<&str> = report["definitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert!(
        lines.contains(&"~ products.notify.fallbacks.sms updated"),
        "{report}"
    );
    assert!(
        lines.contains(&"~ products.notify.fallbacks.sms2 created"),
        "{report}"
    );
    assert!(
        lines.contains(&"~ products.notify.healthchecks.backup-health created"),
        "{report}"
    );
    assert_eq!(report["needs_restart"], json!(["server"]));
    assert_eq!(report["apps"], json!([]), "no plugin or grant changed");
    let (_, sms) = server.get("/v1/notify/definitions/fallbacks/sms").await;
    assert_eq!(sms["name"], "SMS, edited");
    let (st, _) = server.get("/v1/notify/definitions/fallbacks/sms2").await;
    assert_eq!(st, 200);
    let (_, f) = server
        .get("/v1/notify/definitions/features/send-and-check")
        .await;
    assert_eq!(
        f["name"], "named through the API",
        "API edits survive a reload"
    );
    assert_eq!(breaker().await, "open", "breaker state carries over");

    // A broken edit: refused whole, with the line; nothing changes.
    std::fs::write(
        &path,
        edited.replace(
            "app = \"backup\"\naction = \"ping\"",
            "app = \"nope\"\naction = \"ping\"",
        ),
    )
    .unwrap();
    let (st, v) = server.post("/v1/admin/reload", json!({})).await;
    assert_eq!(st, 422, "{v}");
    assert_eq!(v["code"], "invalid-config");
    assert!(
        v["problems"][0]
            .as_str()
            .unwrap()
            .contains("healthchecks.backup-health.app"),
        "{v}"
    );
    let (st, _) = server
        .get("/v1/notify/definitions/healthchecks/backup-health")
        .await;
    assert_eq!(st, 200, "still there");

    // SIGHUP does the same: drop sms2 and its check from the file.
    std::fs::write(&path, &text).unwrap();
    let hup = Command::new("kill")
        .arg("-HUP")
        .arg(server.child.id().to_string())
        .status()
        .unwrap();
    assert!(hup.success());
    let mut gone = false;
    for _ in 0..400 {
        if server.get("/v1/notify/definitions/fallbacks/sms2").await.0 == 404 {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(gone, "SIGHUP applied the edit");
    let (_, sms) = server.get("/v1/notify/definitions/fallbacks/sms").await;
    assert_eq!(sms["name"], "SMS");
    server.kill9();

    // Edited while stopped: the next start says which side serves.
    std::fs::write(&path, text.replace("name = \"SMS\"", "name = \"SMS v3\"")).unwrap();
    let config = switchyard::Config::load(&path).unwrap();
    let d = switchyard::Deployment::start(
        config,
        switchyard::StartOptions {
            store: true,
            progress: false,
        },
    )
    .await
    .unwrap();
    // The file's edit, and the API's edit of a definition the file has.
    assert_eq!(d.drift.len(), 2, "{:?}", d.drift);
    assert!(
        d.drift[0].starts_with("products.notify.fallbacks.sms: differs"),
        "{:?}",
        d.drift
    );
    assert!(
        d.drift[0].contains("the store's copy serves"),
        "{:?}",
        d.drift
    );
    assert!(
        d.drift[1].starts_with("products.notify.features.send-and-check: differs"),
        "{:?}",
        d.drift
    );
    let served = d
        .yard
        .fetch("notify", switchyard_engine::Kind::Fallback, "sms")
        .unwrap();
    assert_eq!(served.meta().name, "SMS");
    // ... and a reload applies it.
    let report = d.reload().await.unwrap();
    assert!(
        report
            .definitions
            .contains(&"~ products.notify.fallbacks.sms updated".to_string()),
        "{report:?}"
    );
    assert_eq!(
        d.yard
            .fetch("notify", switchyard_engine::Kind::Fallback, "sms")
            .unwrap()
            .meta()
            .name,
        "SMS v3"
    );
}

/// A reload loads an app again when its plugin file's bytes or its grant
/// changed, and only then; runs go on through the new instance.
#[tokio::test]
async fn reload_loads_again_an_app_whose_plugin_file_or_grant_changed() {
    let s = Setup::new().await;
    let path = s.config();
    let Some(switchyard_runtime::ComponentSource::Bytes(http)) = switchyard::bundled("http") else {
        panic!("the http plugin is bundled");
    };
    let plugin = s.dir.path().join("http-copy.wasm");
    std::fs::write(&plugin, &*http).unwrap();
    let text = std::fs::read_to_string(&path).unwrap().replacen(
        "plugin = \"bundled:http\"",
        "plugin = \"http-copy.wasm\"",
        1,
    );
    std::fs::write(&path, &text).unwrap();
    let server = Server::start(&path);
    let reload = || async {
        let (st, r) = server.post("/v1/admin/reload", json!({})).await;
        assert_eq!(st, 200, "{r}");
        r["apps"].clone()
    };
    assert_eq!(reload().await, json!([]), "nothing changed");
    // Same component, new bytes: a custom section appended (id 0, size,
    // name) is still a valid component.
    let mut bytes = http.to_vec();
    bytes.extend_from_slice(&[0, 5, 4, b'n', b'o', b't', b'e']);
    std::fs::write(&plugin, &bytes).unwrap();
    assert_eq!(
        reload().await,
        json!(["~ app notify/primary@dev reloaded (plugin changed)"])
    );
    let (st, v) = server
        .post(
            "/v1/notify/dev/fallbacks/sms/run",
            json!({"input": {"to": "+1", "text": "hi"}}),
        )
        .await;
    assert_eq!(
        (st, v["output"]["via"].as_str()),
        (200, Some("primary")),
        "{v}"
    );
    // A grant change (one more config key) reloads that app only.
    std::fs::write(
        &path,
        text.replacen(
            "ping_path = \"/health\"",
            "ping_path = \"/health\", extra = \"1\"",
            1,
        ),
    )
    .unwrap();
    assert_eq!(
        reload().await,
        json!(["~ app notify/primary@dev reloaded (grant changed)"])
    );
    // A plugin that does not load: refused, the running app stays.
    std::fs::write(&plugin, b"not wasm").unwrap();
    let (st, v) = server.post("/v1/admin/reload", json!({})).await;
    assert_eq!(st, 422, "{v}");
    assert!(
        v["problems"][0]
            .as_str()
            .unwrap()
            .contains("apps.primary.plugin"),
        "{v}"
    );
    let (st, _) = server
        .post(
            "/v1/notify/dev/fallbacks/sms/run",
            json!({"input": {"to": "+1", "text": "hi"}}),
        )
        .await;
    assert_eq!(st, 200);
}

/// `switchyard plugin record` writes a fixture case from a live call (no
/// secret in it), `switchyard plugin test` replays it with no network,
/// and a tampered recording fails with the difference named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_record_then_test_replays_without_the_network() {
    let sim = Simulator::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let fixtures = dir.path().join("fixtures.json");
    let url = sim.url();
    let cli = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(args)
            .env("BENCH_TOKEN", "sk_never_recorded")
            .output()
            .unwrap()
    };
    let fx = fixtures.to_str().unwrap();
    let out = cli(&[
        "plugin",
        "record",
        "bundled:http",
        "--fixtures",
        fx,
        "--name",
        "send",
        "--action",
        "send-message",
        "--input",
        r#"{"to": "+1", "text": "hi"}"#,
        "--allow",
        &url,
        "--bearer-env",
        "BENCH_TOKEN",
        "--config",
        &format!("base_url={url}"),
        "--config",
        &format!("actions={ACTIONS}"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&fixtures).unwrap();
    assert!(!text.contains("sk_never_recorded"), "{text}");
    let f: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(f["cases"][0]["exchanges"][0]["request"]["method"], "POST");
    drop(sim); // no provider any more: the replay needs none
    let out = cli(&["plugin", "test", "bundled:http", fx]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("ok    send"), "{stdout}");
    // The recorded request says `ho`; the adapter still sends `hi`.
    let mut tampered = f.clone();
    let body = tampered["cases"][0]["exchanges"][0]["request"]["body"]
        .as_str()
        .unwrap()
        .replace("hi", "ho");
    tampered["cases"][0]["exchanges"][0]["request"]["body"] = json!(body);
    std::fs::write(&fixtures, tampered.to_string()).unwrap();
    let out = cli(&["plugin", "test", "bundled:http", fx]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("FAIL  send: request 1: body"), "{stdout}");
}

#[tokio::test]
async fn operator_actions_are_audited_kept_across_a_restart_and_done_by_the_cli() {
    let s = Setup::new().await;
    s.primary.record(true);
    s.backup.record(true);
    let config = s.config();
    let server = Server::start(&config);
    async fn run(server: &Server) -> Value {
        let (_, v) = server
            .post(
                "/v1/notify/dev/fallbacks/sms/run",
                json!({"input": {"to": "+1", "text": "x"}}),
            )
            .await;
        v["provider"].clone()
    }
    assert_eq!(run(&server).await, "primary");

    // Drain through the CLI: the fallback skips the primary.
    let op = |args: &[&str], base: &str| {
        Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .arg("op")
            .args(args)
            .args(["--server", base])
            .env("SWITCHYARD_TOKEN", TOKEN)
            .output()
            .unwrap()
    };
    let out = op(&["drain", "notify", "primary"], &server.base);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(run(&server).await, "backup");
    let (_, v) = server
        .post(
            "/v1/notify/dev/fallbacks/sms/run",
            json!({"input": {"to": "+1", "text": "x"}}),
        )
        .await;
    assert_eq!(v["trace"]["skipped"][0]["reason"], "drained", "{v}");

    // Force the backup's breaker open through the API: nothing is left.
    let (st, v) = server
        .post(
            "/v1/admin/breakers/force",
            json!({"breaker": "notify/dev/backup/send-message", "state": "open"}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = server
        .post(
            "/v1/notify/dev/fallbacks/sms/run",
            json!({"input": {"to": "+1", "text": "x"}}),
        )
        .await;
    assert_eq!((st, v["code"].as_str()), (503, Some("no-provider")), "{v}");

    // Bad requests name the fix.
    let (st, v) = server
        .post(
            "/v1/admin/breakers/force",
            json!({"breaker": "nope", "state": "open"}),
        )
        .await;
    assert_eq!(st, 400, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("product/env/app/action")
    );
    let (st, _) = server
        .post(
            "/v1/admin/breakers/force",
            json!({"breaker": "notify/dev/backup/send-message", "state": "ajar"}),
        )
        .await;
    assert_eq!(st, 400);
    let (st, _) = server
        .post("/v1/notify/providers/ghost/drain", json!({}))
        .await;
    assert_eq!(st, 404);

    // Both survive a restart (kept in the store), and so does the log.
    server.kill9();
    let server = Server::start(&config);
    let (st, _) = server
        .post(
            "/v1/notify/dev/fallbacks/sms/run",
            json!({"input": {"to": "+1", "text": "x"}}),
        )
        .await;
    assert_eq!(st, 503, "the drain and the force were kept");
    let out = op(
        &["force", "notify/dev/backup/send-message", "release"],
        &server.base,
    );
    assert!(out.status.success());
    let out = op(&["restore", "notify", "primary"], &server.base);
    assert!(out.status.success());
    assert_eq!(run(&server).await, "primary");
    let (_, log) = server.get("/v1/admin/audit").await;
    // The actor is the token (`default`: the one of `token_env`); the
    // channel is what the caller said it was.
    let actions: Vec<(&str, &str, &str)> = log["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["action"].as_str().unwrap(),
                a["actor"].as_str().unwrap(),
                a["channel"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("restore", "default", "cli"),
            ("release", "default", "cli"),
            ("force-open", "default", "api"),
            ("drain", "default", "cli")
        ]
    );
    let out = op(&["audit", "--limit", "1"], &server.base);
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"restore\""));

    // Runs are findable by key, tag, provider and outcome.
    server
        .post(
            "/v1/notify/dev/fallbacks/sms/run",
            json!({"input": {"to": "+1", "text": "x"}, "idempotency_key": "find-me-7"}),
        )
        .await;
    let (_, r) = server.get("/v1/runs?key=find-me-7").await;
    assert_eq!(r["runs"].as_array().unwrap().len(), 1, "{r}");
    assert_eq!(r["runs"][0]["trace"]["idempotency_key"], "find-me-7");
    let (_, r) = server
        .get("/v1/runs?outcome=ok&provider=primary&tag=sms")
        .await;
    assert!(!r["runs"].as_array().unwrap().is_empty());
    let (st, _) = server.get("/v1/runs?color=red").await;
    assert_eq!(st, 400, "unknown query parameters are refused");
}

/// Open `/v1/events`: its status, its `Retry-After`, and its body to read.
async fn open_events(server: &Server) -> (u16, Option<String>, hyper::body::Incoming) {
    let req = http::Request::get(format!("{}/v1/events", server.base))
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let resp = server.http.request(req).await.unwrap();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (resp.status().as_u16(), retry, resp.into_body())
}

/// The next `n` events' names of a stream (keep-alive comments skipped).
async fn next_events(body: &mut hyper::body::Incoming, n: usize) -> Vec<(String, String)> {
    use http_body_util::BodyExt;
    let mut text = String::new();
    let mut out = Vec::new();
    while out.len() < n {
        let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .expect("an event within 10 s")
            .expect("the stream goes on")
            .unwrap();
        if let Ok(data) = frame.into_data() {
            text.push_str(&String::from_utf8_lossy(&data));
        }
        while let Some(i) = text.find("\n\n") {
            let chunk: String = text.drain(..i + 2).collect();
            let name = chunk
                .lines()
                .find_map(|l| l.strip_prefix("event:"))
                .map(|n| n.trim().to_string());
            let data: String = chunk
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(str::trim)
                .collect();
            if let Some(name) = name {
                out.push((name, data));
            }
        }
    }
    out
}

#[tokio::test]
async fn event_streams_share_one_state_send_diffs_and_are_capped() {
    let s = Setup::new().await;
    let config = s.config_with_server("max_event_streams = 2\n", "");
    let server = Server::start(&config);

    // The first event is the whole state; then each second only what
    // changed since the one before.
    let (st, _, mut a) = open_events(&server).await;
    assert_eq!(st, 200);
    let first = next_events(&mut a, 1).await;
    assert_eq!(first[0].0, "state");
    let whole: Value = serde_json::from_str(&first[0].1).unwrap();
    assert!(
        whole["products"][0]["definitions"]
            .as_array()
            .unwrap()
            .len()
            >= 2
    );
    let (st, v) = server
        .post(
            "/v1/notify/dev/fallbacks/sms/run",
            json!({"input": {"to": "+1", "text": "hi"}}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let later = next_events(&mut a, 3).await;
    let diff = later
        .iter()
        .find(|(n, _)| n == "state-diff")
        .expect("a state-diff follows the state");
    let diff: Value = serde_json::from_str(&diff.1).unwrap();
    let changed = diff["changed"].as_array().unwrap();
    assert!(
        changed
            .iter()
            .all(|c| c["product"] == "notify" && c["definition"]["tag"].is_string()),
        "{diff}"
    );
    assert!(
        changed.len()
            < whole["products"][0]["definitions"]
                .as_array()
                .unwrap()
                .len(),
        "only what changed: {diff}"
    );

    // Two streams at most: the third is told to come back later.
    let (st, _, b) = open_events(&server).await;
    assert_eq!(st, 200);
    let (st, retry, _) = open_events(&server).await;
    assert_eq!(st, 503);
    assert!(retry.is_some(), "Retry-After is set");
    // A stream that closes gives its place back.
    drop(b);
    let mut reopened = false;
    for _ in 0..50 {
        let (st, _, _c) = open_events(&server).await;
        if st == 200 {
            reopened = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(reopened, "a closed stream's place is given back");
    drop(a);
}

/// A store holding thousands of force rows for breakers that do not exist
/// (written before forces were bounded): the restart restores the real
/// force first, at most 1,000 in all, and removes the rest from the store.
#[tokio::test]
async fn made_up_stored_forces_cannot_crowd_out_real_ones_at_restart() {
    let s = Setup::new().await;
    let config = s.config();
    let server = Server::start(&config);
    let real = "notify/dev/backup/send-message";
    let (st, v) = server
        .post(
            "/v1/admin/breakers/force",
            json!({"breaker": real, "state": "open"}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    server.terminate();
    drop(server);
    {
        let store = switchyard::Store::open(s.dir.path().join("state.db")).unwrap();
        for i in 0..5_000 {
            store
                .put_operator_state(
                    "force",
                    "notify",
                    &format!("notify/dev/aaa/{i}"),
                    Some("open"),
                )
                .unwrap();
        }
    }
    let started = std::time::Instant::now();
    let server = Server::start(&config);
    let took = started.elapsed();
    let (st, v) = server.get("/v1/admin/breakers/forces").await;
    assert_eq!(st, 200, "{v}");
    let forces = v["forces"].as_array().unwrap();
    assert_eq!(forces.len(), 1_000, "at most the bound is restored");
    assert!(
        forces
            .iter()
            .any(|f| f["breaker"] == real && f["forced"] == "open"),
        "the real force is restored first"
    );
    // The rows past the bound are gone from the store: the next restart
    // holds no more than the bound either.
    server.terminate();
    drop(server);
    let store = switchyard::Store::open(s.dir.path().join("state.db")).unwrap();
    let kept = store.operator_states().unwrap().len();
    assert_eq!(kept, 1_000);
    eprintln!("restart with 5,001 stored force rows took {took:?}");
}

/// A provider that degrades (40 % 503, below its breaker's threshold)
/// loses its share under success-rate routing within a bounded number of
/// runs, while a static quota keeps sending it 70 %; provider state shows
/// each option's scorecard, and the choices are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn success_rate_routing_moves_a_degraded_providers_share_and_a_static_quota_does_not() {
    let s = Setup::new().await;
    let config = s.config_with(
        r#"
[engine.breaker]
failure_threshold = 95.0

[products.notify.quotas.smart]
input = { to = { type = "string" } }
adaptive = { strategy = "success-rate", explore_percent = 5, window_ms = 60000, min_samples = 20 }
providers = [
  { provider = "primary", app = "primary", action = "send-message", weight = 70 },
  { provider = "backup", app = "backup", action = "send-message", weight = 30 },
]
"#,
    );
    let server = Server::start(&config);
    s.primary.set_failure_rate(0.4);
    async fn firsts(server: &Server, tag: &str, runs: usize) -> f64 {
        let mut primary = 0;
        for i in 0..runs {
            let (st, v) = server
                .post(
                    &format!("/v1/notify/dev/quotas/{tag}/run"),
                    json!({"input": {"to": format!("+{i}")}}),
                )
                .await;
            assert_eq!(st, 200, "{v}");
            primary += usize::from(v["trace"]["attempts"][0]["provider"] == "primary");
        }
        primary as f64 / runs as f64
    }
    let fixed = firsts(&server, "split", 300).await;
    assert!((0.66..=0.74).contains(&fixed), "static keeps 70 %: {fixed}");
    let _ = firsts(&server, "smart", 100).await;
    let smart = firsts(&server, "smart", 300).await;
    assert!(
        smart < 0.25,
        "adaptive moves off the degraded provider: {smart}"
    );

    let (_, v) = server.get("/v1/notify/dev/quotas/smart/providers").await;
    let card = &v["providers"][0]["scorecard"];
    let rate = card["success_rate"].as_f64().unwrap();
    assert!((0.5..=0.7).contains(&rate), "{card}");
    assert!(card["p95_ms"].as_f64().is_some(), "{card}");
    let (_, text) = server.get("/metrics").await;
    let adaptive = metric(
        text.as_str().unwrap(),
        "switchyard_adaptive_choices_total{product=\"notify\",env=\"dev\",tag=\"smart\",mode=\"live\",choice=\"adaptive\"}",
    );
    assert!(adaptive > 300.0, "{adaptive}");
}

/// A provider's history: the route answers by step with the newest
/// minutes live, provider state carries its last hour, bad parameters are
/// refused naming them, and the minutes survive a restart (a graceful
/// stop keeps the minute in progress).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_history_is_served_by_step_and_survives_a_restart() {
    let s = Setup::new().await;
    let config = s.config();
    let server = Server::start(&config);
    s.primary.set_failure_rate(0.25);
    for i in 0..40 {
        let (st, v) = server
            .post(
                "/v1/notify/dev/quotas/split/run",
                json!({"input": {"to": format!("+{i}")}}),
            )
            .await;
        assert_eq!(st, 200, "{v}");
    }
    let history = "/v1/notify/dev/quotas/split/providers/primary/history";
    let (st, v) = server.get(history).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["scorecard_key"], "notify/dev/primary/send-message");
    assert_eq!(v["kept_days"], 7);
    let points = v["points"].as_array().unwrap();
    assert_eq!(points.len(), 60, "an hour by minute");
    let total = |points: &[Value]| -> (u64, u64) {
        points.iter().fold((0, 0), |(ok, n), p| {
            (
                ok + p["ok"].as_u64().unwrap(),
                n + p["samples"].as_u64().unwrap(),
            )
        })
    };
    let (ok, n) = total(points);
    assert!(n >= 20, "the primary's attempts are there, live: {v}");
    assert!(ok < n, "some failed");
    let last = points
        .iter()
        .rev()
        .find(|p| p["samples"].as_u64() > Some(0))
        .unwrap();
    assert!(last["p95_ms"].as_f64().is_some(), "{last}");

    // Provider state and the fetch carry the last hour.
    let (_, v) = server.get("/v1/notify/dev/quotas/split/providers").await;
    assert_eq!(v["providers"][0]["last_hour"]["samples"].as_u64(), Some(n));
    let (_, v) = server
        .get("/v1/notify/definitions/quotas/split?env=dev")
        .await;
    assert!(
        v.to_string().contains("\"last_hour\""),
        "fetch's provider state: {v}"
    );

    // Bad parameters, named.
    for (q, field) in [
        ("?step=1000", "step"),
        ("?from=10&to=5", "from"),
        ("?from=0&to=100000000000&step=60000", "step"),
    ] {
        let (st, v) = server.get(&format!("{history}{q}")).await;
        assert_eq!(st, 400, "{q}: {v}");
        assert_eq!(v["field"], field, "{q}: {v}");
    }
    let (st, v) = server
        .get("/v1/notify/dev/quotas/split/providers/nobody/history")
        .await;
    assert_eq!(st, 404, "{v}");
    assert!(v["message"].as_str().unwrap().contains("primary"), "{v}");

    // A graceful stop keeps the minute in progress; after the restart the
    // same points come from the store.
    server.terminate();
    let mut server = server;
    server.child.wait().unwrap();
    let server = Server::start(&config);
    let (st, v) = server.get(history).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(total(v["points"].as_array().unwrap()), (ok, n), "{v}");
}

/// A fallback with `elimination` demotes its sick primary (30 % 503,
/// below its breaker's threshold) behind the backup, explained in the
/// trace, and says so in a shadow twin without moving its traffic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fallback_with_elimination_demotes_a_sick_primary() {
    let s = Setup::new().await;
    let config = s.config_with(
        r#"
[engine.breaker]
failure_threshold = 95.0

[products.notify.fallbacks.pay]
input = { to = { type = "string" } }
adaptive = { strategy = "elimination", explore_percent = 0, min_samples = 10, threshold_percent = 90 }
options = [
  { provider = "primary", app = "primary", action = "send-message" },
  { provider = "backup", app = "backup", action = "send-message" },
]

[products.notify.fallbacks.watch]
input = { to = { type = "string" } }
adaptive = { strategy = "elimination", mode = "shadow", min_samples = 10, threshold_percent = 90 }
options = [
  { provider = "primary", app = "primary", action = "send-message" },
  { provider = "backup", app = "backup", action = "send-message" },
]
"#,
    );
    let server = Server::start(&config);
    s.primary.set_failure_rate(0.3);
    let mut firsts = Vec::new();
    let mut demoted = None;
    for i in 0..60 {
        let (st, v) = server
            .post(
                "/v1/notify/dev/fallbacks/pay/run",
                json!({"input": {"to": format!("+{i}")}}),
            )
            .await;
        assert_eq!(st, 200, "{v}");
        let first = v["trace"]["attempts"][0]["provider"]
            .as_str()
            .unwrap()
            .to_string();
        if first == "backup" && demoted.is_none() {
            demoted = Some(v["trace"]["adaptive"].clone());
        }
        firsts.push(first);
    }
    let late = firsts[30..].iter().filter(|p| *p == "primary").count();
    assert_eq!(
        late, 0,
        "the ejected primary is behind the backup: {firsts:?}"
    );
    let t = demoted.expect("the primary was demoted");
    assert_eq!(t["strategy"], "elimination");
    assert_eq!(t["scores"][0]["demoted"], true, "{t}");
    assert!(
        t["scores"][0]["note"].as_str().unwrap().contains("ejected"),
        "{t}"
    );
    // The shadow twin routes as configured and records the disagreement.
    let (st, v) = server
        .post(
            "/v1/notify/dev/fallbacks/watch/run",
            json!({"input": {"to": "+1"}}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["trace"]["attempts"][0]["provider"], "primary");
    assert_eq!(v["trace"]["adaptive"]["mode"], "shadow");
    assert_eq!(v["trace"]["adaptive"]["configured"], "primary");
}

/// Hedging a safe lookup against a provider whose every other answer is
/// 2 s late: each run answers from the hedge well under a second, the
/// trace says so, the metrics count it; hedging a send is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hedged_lookups_beat_a_heavy_tail_and_unsafe_actions_cannot_be_hedged() {
    let s = Setup::new().await;
    // A provider of its own: no healthcheck's ping comes between a run's
    // request and its hedge, so every other request is the slow one.
    let lookup = switchyard::Simulator::start().await.unwrap();
    let url = lookup.url();
    let config = s.config_with(&format!(
        r#"
[products.notify.apps.lookup]
plugin = "bundled:http"
[products.notify.apps.lookup.envs.dev]
allow = ["{url}"]
config = {{ base_url = "{url}", ping_path = "/health", actions = '[{{"name": "get", "method": "GET", "path": "/v1/messages/{{id}}", "idempotency": "safe", "input": {{"id": {{"type": "string", "required": true}}}}}}]' }}

[products.notify.fallbacks.lookup]
input = {{ id = {{ type = "string" }} }}
hedge = {{ delay_ms = 100, max_extra = 1 }}
options = [
  {{ provider = "primary", app = "lookup", action = "get" }},
]
"#
    ));
    let server = Server::start(&config);
    lookup.set_slow_every(2, Duration::from_secs(2));
    let mut hedged = 0;
    for i in 0..8 {
        let started = std::time::Instant::now();
        let (st, v) = server
            .post(
                "/v1/notify/dev/fallbacks/lookup/run",
                json!({"input": {"id": format!("m{i}")}}),
            )
            .await;
        assert_eq!(st, 200, "{v}");
        assert!(
            started.elapsed() < Duration::from_millis(1_000),
            "run {i} took {:?}",
            started.elapsed()
        );
        // A run whose first request was a slow one was hedged, and the
        // hedge (a fast one) won; the others answered at once.
        let h = &v["trace"]["attempts"][0]["hedge"];
        if h["sent"] == 1 {
            hedged += 1;
            assert_eq!(h["won_by"], 1, "{v}");
            assert_eq!(h["cancelled"], 1, "{v}");
        } else {
            assert_eq!(h["won_by"], 0, "{v}");
        }
    }
    assert_eq!(hedged, 8, "every run's first request was a slow one");
    let (_, text) = server.get("/metrics").await;
    let text = text.as_str().unwrap();
    for what in ["sent", "won", "cancelled"] {
        let at_least = f64::from(hedged);
        let n = metric(
            text,
            &format!(
                "switchyard_hedges_total{{product=\"notify\",env=\"dev\",app=\"lookup\",what=\"{what}\"}}"
            ),
        );
        assert!(n >= at_least, "{what}: {n}");
    }
    // A send may not be hedged: refused, naming the field.
    let (st, v) = server
        .post(
            "/v1/notify/definitions/fallbacks",
            json!({"tag": "hedged-send", "hedge": {"delay_ms": 100},
                   "options": [{"provider": "primary", "app": "primary", "action": "send-message"}]}),
        )
        .await;
    assert_eq!(st, 422, "{v}");
    assert_eq!(v["field"], "fallbacks.hedged-send.hedge", "{v}");
    assert!(v["message"].as_str().unwrap().contains("safe"), "{v}");
}

/// A rule on provider errors from the config: the primary's 503s fail
/// over and pause it, so the next run does not call it at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cooldown_rule_from_the_config_pauses_a_failing_provider() {
    let s = Setup::new().await;
    let config = s.config_with(
        r#"
[products.notify.fallbacks.paused]
input = { to = { type = "string" }, text = { type = "string" } }
on = [{ status = [503], then = "cooldown", cooldown_ms = 60000 }]
options = [
  { provider = "primary", app = "primary", action = "send-message" },
  { provider = "backup", app = "backup", action = "send-message" },
]
"#,
    );
    let server = Server::start(&config);
    s.primary.set_failure_rate(1.0);
    let run = || {
        server.post(
            "/v1/notify/dev/fallbacks/paused/run",
            json!({"input": {"to": "+1", "text": "hi"}}),
        )
    };
    let (st, v) = run().await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["provider"], "backup");
    let rule = v["trace"]["attempts"][0]["rule"].as_str().unwrap();
    assert!(
        rule.contains("fallbacks.paused.on[0]: status 503 → cooldown"),
        "{rule}"
    );
    let before = posts(&s.primary);
    let (st, v) = run().await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["provider"], "backup");
    assert_eq!(
        posts(&s.primary),
        before,
        "the paused primary was not called"
    );
    let (_, v) = server.get("/v1/notify/apps/primary/admission").await;
    assert!(v.to_string().contains("cooldown_remaining_ms"), "{v}");
}

/// The recommended rule sets on the adapters' pages are valid rules.
#[test]
fn the_adapters_recommended_rules_check_out() {
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/adapters");
    for name in ["stripe", "twilio", "sns", "paypal", "square", "adyen"] {
        let text = std::fs::read_to_string(docs.join(format!("{name}.md"))).unwrap();
        let section = text
            .split("## Codes and recommended rules")
            .nth(1)
            .unwrap_or_else(|| panic!("{name}.md has no recommended rules"));
        let block = section
            .split("```toml\n")
            .nth(1)
            .and_then(|b| b.split("```").next())
            .unwrap();
        #[derive(serde::Deserialize)]
        struct On {
            on: Vec<switchyard_engine::ErrorRule>,
        }
        let on: On = toml::from_str(block).unwrap_or_else(|e| panic!("{name}.md: {e}"));
        assert!(on.on.len() >= 4, "{name}.md");
        switchyard_engine::validate_rules(&on.on, &format!("{name}.on"))
            .unwrap_or_else(|e| panic!("{name}.md: {e}"));
    }
}
