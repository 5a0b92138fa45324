//! The engine routing real components: the http plugin (and the
//! misbehaving guest) in wasm sandboxes, against loopback providers that
//! fail on demand. Same scenarios as the engine's native tests, end to end.

use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use switchyard::engine::{ErrorCode, FieldType, HealthStatus, RunOptions, SkipReason, Switchyard};
use switchyard::{Grant, Runtime};
use switchyard_tests::{Simulator, http_plugin, misbehave, runtime};

const P: &str = "sms";

fn grant(sim: &Simulator) -> Grant {
    let actions = json!([
        {"name": "send", "method": "POST", "path": "/v1/messages",
         "input": {"to": {"type": "string"}, "body": {"type": "string"}}}
    ]);
    sim.http_plugin_grant(&actions)
}

async fn install(yard: &Switchyard, rt: &Runtime, tag: &str, sim: &Simulator) {
    let app = http_plugin(rt, tag, grant(sim)).await;
    yard.install_app(P, tag, "dev", Arc::new(app));
}

fn message() -> serde_json::Value {
    json!({"phone": "+15550100", "text": "hello"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_retries_a_failing_provider_then_the_next_serves() {
    let (a, b) = (
        Simulator::start().await.unwrap(),
        Simulator::start().await.unwrap(),
    );
    a.set_failure_rate(1.0);
    b.record(true);
    let rt = runtime();
    let yard = Switchyard::new();
    install(&yard, &rt, "alpha", &a).await;
    install(&yard, &rt, "beta", &b).await;
    let to_provider = json!({"to": "$Input{phone}", "body": "$Input{text}"});
    let out = json!({"message_id": "$Response{id}", "status": "$Response{status}"});
    yard.fallback()
        .define(P, "notify")
        .input("phone", FieldType::String)
        .input("text", FieldType::String)
        .provider("alpha")
        .action("send")
        .retries(2)
        .backoff(Duration::from_millis(1), Duration::from_millis(5))
        .idempotent(true) // keyed by Idempotency-Key, so retrying is safe
        .map_input(to_provider.clone())
        .map_output(out.clone())
        .provider("beta")
        .action("send")
        .map_input(to_provider)
        .map_output(out)
        .create()
        .unwrap();

    let r = yard
        .fallback()
        .run(
            P,
            "dev",
            "notify",
            message(),
            RunOptions::default().idempotency_key("run-1"),
        )
        .await
        .unwrap();
    assert_eq!(r.output, json!({"message_id": "msg_1", "status": "queued"}));
    assert_eq!(r.provider.as_deref(), Some("beta"));
    assert_eq!(
        a.counts(),
        (3, 3),
        "alpha: first try + exactly 2 retries, all 503"
    );
    assert_eq!(b.counts(), (1, 0));
    let got = &b.recorded()[0];
    assert_eq!(got.header("idempotency-key"), Some("run-1"));
    let body: serde_json::Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(body, json!({"to": "+15550100", "body": "hello"}));
    let statuses: Vec<Option<u16>> = r.trace.attempts.iter().map(|x| x.status).collect();
    assert_eq!(statuses, [Some(503), Some(503), Some(503), None]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_splits_70_30_and_routes_around_an_unhealthy_provider() {
    let (a, b) = (
        Simulator::start().await.unwrap(),
        Simulator::start().await.unwrap(),
    );
    let rt = runtime();
    let yard = Switchyard::new();
    install(&yard, &rt, "alpha", &a).await;
    install(&yard, &rt, "beta", &b).await;
    yard.healthcheck()
        .define(P, "beta-health")
        .app("beta")
        .action("ping")
        .input("dev", json!({}))
        .create()
        .unwrap();
    yard.quota()
        .define(P, "split")
        .provider("alpha")
        .action("send")
        .weight(70)
        .provider("beta")
        .action("send")
        .weight(30)
        .healthcheck("beta-health")
        .create()
        .unwrap();
    let run = || {
        yard.quota().run(
            P,
            "dev",
            "split",
            json!({"to": "+1"}),
            RunOptions::default(),
        )
    };
    for _ in 0..100 {
        run().await.unwrap();
    }
    assert_eq!((a.counts().0, b.counts().0), (70, 30));

    b.set_failure_rate(1.0);
    let h = yard.check_now(P, "dev", "beta-health").await.unwrap();
    assert_eq!(h.status, HealthStatus::Unhealthy);
    for _ in 0..50 {
        let r = run().await.unwrap();
        assert_eq!(r.provider.as_deref(), Some("alpha"));
        assert!(matches!(
            r.trace.skipped[0].reason,
            SkipReason::Unhealthy { .. }
        ));
    }
    assert_eq!(
        b.counts(),
        (31, 1),
        "only the (failed) healthcheck reached beta"
    );

    b.set_failure_rate(0.0);
    yard.check_now(P, "dev", "beta-health").await.unwrap();
    let before = (a.counts().0, b.counts().0);
    for _ in 0..100 {
        run().await.unwrap();
    }
    assert_eq!((a.counts().0 - before.0, b.counts().0 - before.1), (70, 30));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_non_idempotent_send_stops_instead_of_sending_twice() {
    let (a, b) = (
        Simulator::start().await.unwrap(),
        Simulator::start().await.unwrap(),
    );
    a.set_latency(Duration::from_secs(3));
    let rt = runtime();
    let yard = Switchyard::new();
    install(&yard, &rt, "alpha", &a).await;
    install(&yard, &rt, "beta", &b).await;
    yard.fallback()
        .define(P, "once")
        .provider("alpha")
        .action("send")
        .timeout(Duration::from_millis(300))
        .retries(3)
        .provider("beta")
        .action("send")
        .create()
        .unwrap();
    let e = yard
        .fallback()
        .run(P, "dev", "once", json!({"to": "+1"}), RunOptions::default())
        .await
        .unwrap_err();
    let trace = e.trace.clone().unwrap();
    assert_eq!(e.code, ErrorCode::Ambiguous, "{e}\n{}", trace.render());
    assert!(
        e.message.contains("may have executed on provider `alpha`"),
        "{e}"
    );
    assert_eq!(b.counts(), (0, 0), "beta never called");
    assert_eq!(
        trace.attempts.len(),
        1,
        "no retry either:\n{}",
        trace.render()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapping_plugin_is_contained_and_the_fallback_goes_on() {
    let b = Simulator::start().await.unwrap();
    let rt = runtime();
    let yard = Switchyard::new();
    yard.install_app(
        P,
        "broken",
        "dev",
        Arc::new(misbehave(&rt, Grant::new()).await),
    );
    install(&yard, &rt, "beta", &b).await;
    yard.fallback()
        .define(P, "robust")
        .provider("broken")
        .action("memory-bomb")
        .provider("beta")
        .action("send")
        .create()
        .unwrap();
    for _ in 0..3 {
        let r = yard
            .fallback()
            .run(
                P,
                "dev",
                "robust",
                json!({"to": "+1"}),
                RunOptions::default(),
            )
            .await
            .unwrap();
        assert_eq!(r.provider.as_deref(), Some("beta"));
        let first = &r.trace.attempts[0];
        assert_eq!(first.provider, "broken");
        assert_eq!(format!("{:?}", first.kind.unwrap()), "MemoryLimit");
    }
    assert_eq!(b.counts(), (3, 0));
}
