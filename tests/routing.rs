//! The engine routing real components: the http plugin (and the
//! misbehaving guest) in wasm sandboxes, against loopback providers that
//! fail on demand. Same scenarios as the engine's native tests, end to end.

use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use switchyard_engine::{
    AdmissionConfig, ErrorClass, ErrorCode, FieldType, HealthStatus, Outcome, RunOptions,
    SkipReason, Switchyard,
};
use switchyard_runtime::{Grant, Runtime};
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
        e.message.contains("may have executed at app `alpha`"),
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

// ---- load: the host's limits are never a provider's failure ----

/// A runtime whose instance pool is `instances` slots.
fn small_pool(instances: u32) -> Runtime {
    Runtime::new(switchyard_runtime::RuntimeConfig {
        cache_dir: Some(switchyard_tests::cache_dir()),
        max_instances: instances,
        ..switchyard_runtime::RuntimeConfig::default()
    })
    .expect("runtime starts")
}

fn pay_fallback(yard: &Switchyard, retries: u32, spillover: bool) {
    yard.fallback()
        .define(P, "notify")
        .spillover(spillover)
        .provider("alpha")
        .action("send")
        .retries(retries)
        .backoff(Duration::from_millis(1), Duration::from_millis(5))
        .idempotent(true)
        .healthcheck("alpha-health")
        .provider("beta")
        .action("send")
        .healthcheck("beta-health")
        .create()
        .unwrap();
}

/// Alpha and beta on `rt`, pointed at `a` and `b`, each limited by
/// `limits`, with healthchecks that passed once.
async fn two_apps(
    rt: &Runtime,
    a: &Simulator,
    b: &Simulator,
    limits: AdmissionConfig,
) -> Switchyard {
    let yard = Switchyard::new();
    install(&yard, rt, "alpha", a).await;
    install(&yard, rt, "beta", b).await;
    yard.set_admission(P, "alpha", limits).unwrap();
    yard.set_admission(P, "beta", limits).unwrap();
    health_checks(&yard).await;
    yard
}

async fn health_checks(yard: &Switchyard) {
    for app in ["alpha", "beta"] {
        yard.healthcheck()
            .define(P, &format!("{app}-health"))
            .app(app)
            .action("ping")
            .input("dev", json!({}))
            .interval(Duration::from_secs(3_600))
            .create()
            .unwrap();
        let h = yard.check_now(P, "dev", &format!("{app}-health")).await;
        assert_eq!(h.unwrap().status, HealthStatus::Healthy);
    }
}

/// Health status and history length, breaker state and counts of every
/// provider: what a burst of load must leave as it was (counts aside).
fn provider_health(yard: &Switchyard) -> Vec<String> {
    yard.provider_states(P, "dev", switchyard_engine::Kind::Fallback, "notify")
        .unwrap()
        .into_iter()
        .map(|s| {
            let history = yard
                .health(P, "dev", &format!("{}-health", s.provider))
                .map_or(0, |h| h.history.len());
            format!(
                "{} {:?} history={history} breaker={:?} failures={} errors={:?}",
                s.provider, s.status, s.breaker.state, s.breaker.failures, s.counts.failures
            )
        })
        .collect()
}

async fn burst(
    yard: &Switchyard,
    runs: usize,
) -> Vec<Result<switchyard_engine::RunResult, switchyard_engine::RunError>> {
    let tasks: Vec<_> = (0..runs)
        .map(|i| {
            let yard = yard.clone();
            tokio::spawn(async move {
                yard.fallback()
                    .run(
                        P,
                        "dev",
                        "notify",
                        json!({"to": format!("+1555{i:07}")}),
                        RunOptions::default(),
                    )
                    .await
            })
        })
        .collect();
    let mut out = Vec::with_capacity(runs);
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_pool_holds_hundreds_of_runs_against_a_slow_healthy_provider() {
    let (a, b) = (
        Simulator::start().await.unwrap(),
        Simulator::start().await.unwrap(),
    );
    a.set_latency(Duration::from_millis(100));
    // A pool of 32 instances; each app may have 24 attempts in flight, so
    // together they can ask for more slots than the pool has.
    let rt = small_pool(32);
    let limits = AdmissionConfig {
        max_in_flight: 24,
        ..AdmissionConfig::default()
    };
    let yard = two_apps(&rt, &a, &b, limits).await;
    pay_fallback(&yard, 2, false);
    let before = provider_health(&yard);

    let results = burst(&yard, 400).await;
    let failed: Vec<String> = results
        .iter()
        .filter_map(|r| r.as_ref().err().map(ToString::to_string))
        .collect();
    assert!(
        failed.is_empty(),
        "{} failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(3)]
    );
    assert!(
        results
            .iter()
            .all(|r| r.as_ref().unwrap().provider.as_deref() == Some("alpha"))
    );
    assert!(
        a.peak_in_flight() <= 24,
        "provider saw {} at once",
        a.peak_in_flight()
    );
    assert!(
        a.peak_in_flight() >= 12,
        "the bulkhead was used: {}",
        a.peak_in_flight()
    );
    assert_eq!(
        provider_health(&yard),
        before,
        "breakers and health untouched"
    );
    assert_eq!(rt.instances().0, 0, "every slot came back");

    // Spillover: the excess goes to beta instead of waiting, and both
    // apps together ask for more slots than the pool holds, so runs also
    // wait for instance slots. Still nothing fails or counts.
    b.set_latency(Duration::from_millis(100));
    yard.fallback().delete(P, "notify").unwrap();
    pay_fallback(&yard, 2, true);
    let results = burst(&yard, 300).await;
    assert!(results.iter().all(Result::is_ok));
    let served_by = |p: &str| {
        results
            .iter()
            .filter(|r| r.as_ref().unwrap().provider.as_deref() == Some(p))
            .count()
    };
    assert!(served_by("beta") > 0, "spilled over");
    assert!(served_by("alpha") > 0);
    assert!(a.peak_in_flight() <= 24 && b.peak_in_flight() <= 24);
    assert_eq!(provider_health(&yard), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_a_short_queue_runs_are_overloaded_and_provider_state_is_as_before() {
    let (a, b) = (
        Simulator::start().await.unwrap(),
        Simulator::start().await.unwrap(),
    );
    a.set_latency(Duration::from_millis(200));
    b.set_latency(Duration::from_millis(200));
    let rt = runtime();
    let limits = AdmissionConfig {
        max_in_flight: 4,
        max_queue: 4,
        ..AdmissionConfig::default()
    };
    let yard = two_apps(&rt, &a, &b, limits).await;
    pay_fallback(&yard, 0, false);
    let before = provider_health(&yard);
    let results = burst(&yard, 100).await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let overloaded: Vec<_> = results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .inspect(|e| assert_eq!(e.code, ErrorCode::Overloaded, "{e}"))
        .collect();
    // Alpha and beta each take 4 in flight and 4 queued (a few more if
    // early runs finish while the burst is still arriving).
    assert!((16..=32).contains(&ok), "{ok} served");
    assert_eq!(ok + overloaded.len(), 100);
    for e in &overloaded {
        assert!(e.retry_after_ms.is_some_and(|ms| ms >= 1), "{e:?}");
        let t = e.trace.as_ref().unwrap();
        assert!(t.attempts.is_empty(), "no provider was called: {t:?}");
        assert!(
            t.skipped
                .iter()
                .all(|s| matches!(s.reason, SkipReason::Overloaded { .. }))
        );
    }
    assert_eq!(
        provider_health(&yard),
        before,
        "breakers and health untouched"
    );
    assert!(a.peak_in_flight() <= 4 && b.peak_in_flight() <= 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_onset_of_an_outage_every_run_is_served_by_the_backup() {
    for runs in [64usize, 500] {
        let (a, b) = (
            Simulator::start().await.unwrap(),
            Simulator::start().await.unwrap(),
        );
        a.set_failure_rate(1.0);
        let rt = runtime();
        let yard = Switchyard::new(); // fresh: empty budgets, closed breakers
        install(&yard, &rt, "alpha", &a).await;
        install(&yard, &rt, "beta", &b).await;
        yard.fallback()
            .define(P, "notify")
            .provider("alpha")
            .action("send")
            .retries(2)
            .backoff(Duration::from_millis(1), Duration::from_millis(5))
            .idempotent(true)
            .provider("beta")
            .action("send")
            .create()
            .unwrap();
        let results = burst(&yard, runs).await;
        let failed: Vec<String> = results
            .iter()
            .filter_map(|r| r.as_ref().err().map(ToString::to_string))
            .collect();
        assert!(
            failed.is_empty(),
            "{runs} runs: {} failed, e.g. {:?}",
            failed.len(),
            failed.first()
        );
        assert!(
            results
                .iter()
                .all(|r| r.as_ref().unwrap().provider.as_deref() == Some("beta"))
        );
        assert_eq!(
            yard.breaker_states()
                .into_iter()
                .find(|(k, _)| k.ends_with("/alpha/send"))
                .map(|(_, s)| s),
            Some(switchyard_engine::BreakerState::Open),
        );
        let (to_alpha, _) = a.counts();
        assert!(
            to_alpha as usize <= runs * 3,
            "{to_alpha} requests for {runs} runs"
        );
        assert_eq!(b.counts(), (runs as u64, 0));
    }
}

/// A provider answering 401 (a revoked key, a missing scope) has a problem
/// with this app's grant, not with the input: the http plugin calls it
/// `internal`, and the fallback goes on to the next provider instead of
/// stopping as it does for a `rejected` input.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_refusing_the_apps_credentials_is_failed_over() {
    let revoked = switchyard_tests::scripted::Scripted::start().await;
    revoked.always(
        "/v1/messages",
        switchyard_tests::scripted::Answer::json(401, json!({"error": "invalid api key"})),
    );
    let b = Simulator::start().await.unwrap();
    let rt = runtime();
    let yard = Switchyard::new();
    let actions = json!([{"name": "send", "method": "POST", "path": "/v1/messages"}]);
    let alpha = http_plugin(
        &rt,
        "alpha",
        Grant::new()
            .allow(revoked.url())
            .config("base_url", revoked.url())
            .config("actions", actions.to_string()),
    )
    .await;
    yard.install_app(P, "alpha", "dev", Arc::new(alpha));
    install(&yard, &rt, "beta", &b).await;
    let to_provider = json!({"to": "$Input{phone}", "body": "$Input{text}"});
    yard.fallback()
        .define(P, "notify")
        .provider("alpha")
        .action("send")
        .map_input(to_provider.clone())
        .provider("beta")
        .action("send")
        .map_input(to_provider)
        .create()
        .unwrap();
    let r = yard
        .fallback()
        .run(P, "dev", "notify", message(), RunOptions::default())
        .await
        .expect("the second provider serves");
    assert_eq!(r.provider.as_deref(), Some("beta"));
    let first = &r.trace.attempts[0];
    assert_eq!(first.provider, "alpha");
    assert_eq!(
        (first.outcome.clone(), first.status),
        (Outcome::Failed(ErrorClass::Internal), Some(401)),
        "{first:?}"
    );
}
