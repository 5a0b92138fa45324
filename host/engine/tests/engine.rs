//! The engine through its public API, with native fake adapters and a
//! manual clock: no test sleeps.

use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use switchyard_engine::FakeAdapter;
use switchyard_engine::{AttemptError, ErrorClass, FailureKind, Idempotency};
use switchyard_engine::{
    BreakerConfig, BreakerState, BudgetConfig, ErrorCode, FieldType, HealthStatus, Kind,
    ManualClock, Outcome, RunOptions, SkipReason, Switchyard,
};

const P: &str = "payments";

struct World {
    yard: Switchyard,
    clock: Arc<ManualClock>,
    stripe: Arc<FakeAdapter>,
    adyen: Arc<FakeAdapter>,
    paypal: Arc<FakeAdapter>,
}

fn world() -> World {
    world_on(Arc::new(ManualClock::new()))
}

/// A world on `clock` (a parked one for tests where runs wait for each
/// other).
fn world_on(clock: Arc<ManualClock>) -> World {
    let yard = Switchyard::builder().clock(clock.clone()).seed(7).build();
    let app = |name: &str| {
        let a = Arc::new(FakeAdapter::declaring(
            name,
            &[
                ("charge", Idempotency::Unsafe),
                ("refund", Idempotency::Keyed),
                ("ping", Idempotency::Safe),
            ],
        ));
        yard.install_app(P, name, "dev", a.clone());
        a
    };
    World {
        stripe: app("stripe"),
        adyen: app("adyen"),
        paypal: app("paypal"),
        yard,
        clock,
    }
}

fn pay_fallback(w: &World, retries: u32) {
    w.yard
        .fallback()
        .define(P, "pay")
        .input("amount", FieldType::Integer)
        .input("currency", FieldType::String)
        .provider("stripe")
        .action("charge")
        .retries(retries)
        .map_input(json!({"amount": "$Input{amount}", "currency": "$Input{currency}"}))
        .map_output(json!({"id": "$Response{app}", "amount": "$Input{amount}"}))
        .provider("adyen")
        .action("charge")
        .retries(retries)
        .map_output(json!({"id": "$Response{app}", "amount": "$Input{amount}"}))
        .create()
        .unwrap();
}

fn input() -> Value {
    json!({"amount": 1099, "currency": "usd"})
}

async fn run_pay(w: &World) -> Result<switchyard_engine::RunResult, switchyard_engine::RunError> {
    run_pay_with(w, RunOptions::default()).await
}

async fn run_pay_with(
    w: &World,
    options: RunOptions,
) -> Result<switchyard_engine::RunResult, switchyard_engine::RunError> {
    w.yard
        .fallback()
        .run(P, "dev", "pay", input(), options)
        .await
}

#[tokio::test]
async fn fallback_retries_the_primary_exactly_n_times_then_the_next_serves() {
    let w = world();
    pay_fallback(&w, 2);
    w.stripe.fail(ErrorClass::Unavailable);
    let r = run_pay(&w).await.unwrap();
    assert_eq!(r.output, json!({"id": "adyen", "amount": 1099}));
    assert_eq!(r.provider.as_deref(), Some("adyen"));
    assert_eq!(w.stripe.call_count(), 3, "first try + 2 retries");
    assert_eq!(w.adyen.call_count(), 1);
    let tries: Vec<(&str, u32, &Outcome)> = r
        .trace
        .attempts
        .iter()
        .map(|a| (a.provider.as_str(), a.try_number, &a.outcome))
        .collect();
    assert_eq!(
        tries,
        [
            ("stripe", 1, &Outcome::Failed(ErrorClass::Unavailable)),
            ("stripe", 2, &Outcome::Failed(ErrorClass::Unavailable)),
            ("stripe", 3, &Outcome::Failed(ErrorClass::Unavailable)),
            ("adyen", 1, &Outcome::Ok),
        ]
    );
    assert_eq!(r.trace.served_by.as_deref(), Some("adyen"));
    // The mapped input reached the provider, and one key reached all.
    let calls = w.stripe.calls();
    assert_eq!(calls[0].input, json!({"amount": 1099, "currency": "usd"}));
    let key = &r.idempotency_key;
    assert!(calls.iter().all(|c| &c.idempotency_key == key));
    assert_eq!(&w.adyen.calls()[0].idempotency_key, key);
    // Retries waited (full jitter, never longer than the ceiling) on the
    // manual clock, which sleeping advances.
    assert!(w.clock.elapsed() <= Duration::from_millis(50 + 100));
}

#[tokio::test]
async fn a_caller_key_and_session_reach_every_attempt() {
    let w = world();
    pay_fallback(&w, 1);
    w.stripe.fail(ErrorClass::Timeout);
    let r = w
        .yard
        .fallback()
        .run(
            P,
            "dev",
            "pay",
            input(),
            RunOptions::default()
                .idempotency_key("order-77")
                .session("user", "tok-1"),
        )
        .await
        .unwrap();
    assert_eq!(r.idempotency_key, "order-77");
    for c in w.stripe.calls().iter().chain(w.adyen.calls().iter()) {
        assert_eq!(c.idempotency_key, "order-77");
        assert_eq!(c.session.as_ref().unwrap().token, "tok-1");
        assert_eq!(c.env, "dev");
        assert!(c.deadline <= Duration::from_secs(30));
    }
}

#[tokio::test]
async fn all_failing_lists_every_attempt() {
    let w = world();
    pay_fallback(&w, 1);
    w.stripe.fail(ErrorClass::Unavailable);
    w.adyen.fail(ErrorClass::RateLimited);
    let e = run_pay(&w).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::AllFailed);
    assert!(e.message.contains("stripe: unavailable"), "{e}");
    assert!(e.message.contains("adyen: rate-limited"), "{e}");
    let t = e.trace.unwrap();
    assert_eq!(t.attempts.len(), 4);
    assert!(t.served_by.is_none());
    assert!(t.render().contains("served by: none"));
}

#[tokio::test]
async fn rejected_is_not_retried_and_does_not_fail_over() {
    let w = world();
    pay_fallback(&w, 3);
    w.stripe.behave(|_| {
        let mut e = AttemptError::provider(ErrorClass::Rejected, "card declined");
        e.code = Some("card_declined".into());
        Err(e)
    });
    let e = run_pay(&w).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::Rejected);
    assert!(e.message.contains("card declined"), "{e}");
    assert_eq!(w.stripe.call_count(), 1);
    assert_eq!(w.adyen.call_count(), 0);
    let t = e.trace.unwrap();
    assert_eq!(t.attempts[0].code.as_deref(), Some("card_declined"));
}

#[tokio::test]
async fn ambiguous_on_a_non_idempotent_action_stops_the_run() {
    let w = world();
    pay_fallback(&w, 2);
    w.stripe.fail(ErrorClass::Ambiguous);
    let e = run_pay(&w).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::Ambiguous);
    assert!(
        e.message.contains("may have executed at app `stripe`"),
        "{e}"
    );
    let at = e.reconcile.clone().expect("names where to reconcile");
    assert_eq!(
        (at.app.as_str(), at.provider.as_str()),
        ("stripe", "stripe")
    );
    assert_eq!(
        at.idempotency_key,
        e.trace.as_ref().unwrap().idempotency_key
    );
    assert_eq!(
        w.stripe.call_count(),
        1,
        "no retry of a non-idempotent action"
    );
    assert_eq!(w.adyen.call_count(), 0, "no second charge elsewhere");
}

fn define_on_both(w: &World, tag: &str, action: &str, retries: u32) {
    w.yard
        .fallback()
        .define(P, tag)
        .provider("stripe")
        .action(action)
        .retries(retries)
        .provider("adyen")
        .action(action)
        .create()
        .unwrap();
}

async fn run_tag(
    w: &World,
    tag: &str,
) -> Result<switchyard_engine::RunResult, switchyard_engine::RunError> {
    w.yard
        .fallback()
        .run(P, "dev", tag, json!({}), RunOptions::default())
        .await
}

#[tokio::test]
async fn ambiguous_on_a_keyed_action_retries_the_same_app_with_the_same_key_and_never_moves() {
    let w = world();
    define_on_both(&w, "refund", "refund", 2);
    w.stripe.fail(ErrorClass::Ambiguous);
    let e = run_tag(&w, "refund").await.unwrap_err();
    assert_eq!(e.code, ErrorCode::Ambiguous, "{e}");
    assert_eq!(
        w.stripe.call_count(),
        3,
        "retried where the key is honoured"
    );
    let keys: Vec<String> = w
        .stripe
        .calls()
        .into_iter()
        .map(|c| c.idempotency_key)
        .collect();
    assert!(keys.iter().all(|k| k == &keys[0]), "one key: {keys:?}");
    assert_eq!(w.adyen.call_count(), 0, "a key is honoured by one app");
    assert_eq!(e.reconcile.unwrap().app, "stripe");

    // The same app answering on a retry resolves it.
    let mut n = 0;
    w.stripe.behave(move |_| {
        n += 1;
        if n == 1 {
            Err(AttemptError::provider(
                ErrorClass::Ambiguous,
                "reset after send",
            ))
        } else {
            Ok(json!({"refunded": true}))
        }
    });
    let r = run_tag(&w, "refund").await.unwrap();
    assert_eq!(r.provider.as_deref(), Some("stripe"));

    // A definition override can only make an action stricter: `charge`
    // declared keyed here retries at stripe, never at adyen.
    w.stripe.clear_calls();
    w.stripe.fail(ErrorClass::Ambiguous);
    w.yard
        .fallback()
        .define(P, "charge-keyed")
        .provider("stripe")
        .action("charge")
        .idempotent(true)
        .retries(1)
        .provider("adyen")
        .action("charge")
        .create()
        .unwrap();
    let e = run_tag(&w, "charge-keyed").await.unwrap_err();
    assert_eq!(e.code, ErrorCode::Ambiguous);
    assert_eq!(w.stripe.call_count(), 2);
    assert_eq!(w.adyen.call_count(), 0);
}

#[tokio::test]
async fn ambiguous_fails_over_when_safe_or_opted_in() {
    let w = world();
    // A safe lookup: retried, then failover.
    define_on_both(&w, "lookup", "ping", 1);
    w.stripe.fail(ErrorClass::Ambiguous);
    let r = run_tag(&w, "lookup").await.unwrap();
    assert_eq!(r.provider.as_deref(), Some("adyen"));
    assert_eq!(w.stripe.call_count(), 2);

    // charge is not, but this definition opts in (and says so).
    w.yard
        .fallback()
        .define(P, "charge-any")
        .failover_after_ambiguous(true)
        .provider("stripe")
        .action("charge")
        .provider("adyen")
        .action("charge")
        .create()
        .unwrap();
    let r = run_tag(&w, "charge-any").await.unwrap();
    assert_eq!(r.provider.as_deref(), Some("adyen"));
}

fn healthcheck(w: &World, app: &str) {
    w.yard
        .healthcheck()
        .define(P, &format!("{app}-health"))
        .app(app)
        .action("ping")
        .input("dev", json!({}))
        .interval(Duration::from_secs(10))
        .jitter(0.0)
        .create()
        .unwrap();
}

#[tokio::test]
async fn unhealthy_options_are_skipped_and_come_back() {
    let w = world();
    healthcheck(&w, "stripe");
    w.yard
        .fallback()
        .define(P, "pay")
        .provider("stripe")
        .action("charge")
        .healthcheck("stripe-health")
        .provider("adyen")
        .action("charge")
        .create()
        .unwrap();
    assert_eq!(w.yard.run_due_healthchecks().await, 1);
    let h = w.yard.health(P, "dev", "stripe-health").unwrap();
    assert_eq!(h.status, HealthStatus::Healthy);
    assert!(h.last_available_unix_ms.is_some());

    w.stripe.behave(|r| {
        if r.action == "ping" {
            Err(AttemptError::provider(ErrorClass::Unavailable, "down"))
        } else {
            Ok(json!({"app": "stripe"}))
        }
    });
    assert_eq!(w.yard.run_due_healthchecks().await, 0, "not due yet");
    w.clock.advance(Duration::from_secs(10));
    assert_eq!(w.yard.run_due_healthchecks().await, 1);
    assert_eq!(
        w.yard.health(P, "dev", "stripe-health").unwrap().status,
        HealthStatus::Unhealthy
    );
    w.stripe.clear_calls();
    let r = w
        .yard
        .fallback()
        .run(P, "dev", "pay", json!({}), RunOptions::default())
        .await
        .unwrap();
    assert_eq!(r.provider.as_deref(), Some("adyen"));
    assert_eq!(w.stripe.call_count(), 0, "skipped, not tried");
    assert_eq!(
        r.trace.skipped[0].reason,
        SkipReason::Unhealthy {
            healthcheck: "stripe-health".into()
        }
    );
    let states = w.yard.fallback().providers(P, "dev", "pay").unwrap();
    assert_eq!(states[0].status, HealthStatus::Unhealthy);
    assert_eq!(states[1].status, HealthStatus::Unknown);

    w.stripe.behave(|_| Ok(json!({"app": "stripe"})));
    w.clock.advance(Duration::from_secs(10));
    w.yard.run_due_healthchecks().await;
    let r = w
        .yard
        .fallback()
        .run(P, "dev", "pay", json!({}), RunOptions::default())
        .await
        .unwrap();
    assert_eq!(r.provider.as_deref(), Some("stripe"));
    let h = w.yard.health(P, "dev", "stripe-health").unwrap();
    assert_eq!(h.history.len(), 3);
    assert_eq!(
        h.history.iter().map(|o| o.ok).collect::<Vec<_>>(),
        [true, false, true]
    );
}

#[tokio::test]
async fn healthcheck_retries_within_a_round() {
    let w = world();
    w.yard
        .healthcheck()
        .define(P, "flaky")
        .app("stripe")
        .action("ping")
        .input("dev", json!({"probe": true}))
        .retries(2)
        .create()
        .unwrap();
    let mut n = 0;
    w.stripe.behave(move |_| {
        n += 1;
        if n < 3 {
            Err(AttemptError::provider(ErrorClass::Unavailable, "blip"))
        } else {
            Ok(json!({}))
        }
    });
    let h = w.yard.check_now(P, "dev", "flaky").await.unwrap();
    assert_eq!(h.status, HealthStatus::Healthy);
    assert_eq!(h.history[0].tries, 3);
    assert_eq!(w.stripe.calls()[0].input, json!({"probe": true}));
}

fn sms_quota(w: &World) {
    healthcheck(w, "adyen");
    w.yard
        .quota()
        .define(P, "split")
        .provider("stripe")
        .action("charge")
        .weight(70)
        .provider("adyen")
        .action("charge")
        .weight(30)
        .healthcheck("adyen-health")
        .create()
        .unwrap();
}

async fn quota_shares(w: &World, runs: usize) -> (usize, usize) {
    let mut shares = (0, 0);
    for _ in 0..runs {
        let r = w
            .yard
            .quota()
            .run(P, "dev", "split", json!({}), RunOptions::default())
            .await
            .unwrap();
        match r.provider.as_deref() {
            Some("stripe") => shares.0 += 1,
            Some("adyen") => shares.1 += 1,
            other => panic!("{other:?}"),
        }
    }
    shares
}

#[tokio::test]
async fn quota_is_exact_and_moves_share_while_a_provider_is_unhealthy() {
    let w = world();
    sms_quota(&w);
    assert_eq!(quota_shares(&w, 1_000).await, (700, 300));
    // Exact over every 10 consecutive runs, too.
    for _ in 0..10 {
        assert_eq!(quota_shares(&w, 10).await, (7, 3));
    }

    w.adyen.fail(ErrorClass::Unavailable);
    w.yard.run_due_healthchecks().await;
    w.adyen.clear_calls();
    assert_eq!(quota_shares(&w, 100).await, (100, 0), "unhealthy gets 0 %");
    assert_eq!(w.adyen.call_count(), 0);

    w.adyen.behave(|_| Ok(json!({})));
    w.clock.advance(Duration::from_secs(10));
    w.yard.run_due_healthchecks().await;
    assert_eq!(
        quota_shares(&w, 1_000).await,
        (700, 300),
        "share comes back"
    );
}

#[tokio::test]
async fn quota_fails_over_by_weight_and_panics_when_none_is_eligible() {
    let w = world();
    healthcheck(&w, "stripe");
    healthcheck(&w, "adyen");
    w.yard
        .quota()
        .define(P, "three")
        .provider("stripe")
        .action("charge")
        .weight(50)
        .healthcheck("stripe-health")
        .provider("adyen")
        .action("charge")
        .weight(30)
        .healthcheck("adyen-health")
        .provider("paypal")
        .action("charge")
        .weight(20)
        .create()
        .unwrap();
    w.stripe.fail(ErrorClass::Unavailable);
    let r = w
        .yard
        .quota()
        .run(P, "dev", "three", json!({}), RunOptions::default())
        .await
        .unwrap();
    let order: Vec<&str> = r
        .trace
        .attempts
        .iter()
        .map(|a| a.provider.as_str())
        .collect();
    assert_eq!(order, ["stripe", "adyen"], "failover to the next heaviest");

    // Both checked providers unhealthy, paypal alone is eligible.
    w.yard.run_due_healthchecks().await; // stripe ping fails, adyen ok
    w.adyen.fail(ErrorClass::Unavailable);
    w.clock.advance(Duration::from_secs(10));
    w.yard.run_due_healthchecks().await;
    w.paypal.fail(ErrorClass::Unavailable);
    let e = w
        .yard
        .quota()
        .run(P, "dev", "three", json!({}), RunOptions::default())
        .await
        .unwrap_err();
    let t = e.trace.unwrap();
    assert!(!t.panic_mode);
    assert_eq!(t.skipped.len(), 2);

    // Break paypal's breaker: nothing eligible → panic mode tries all.
    let w2 = world();
    let clock = w2.clock.clone();
    let _ = clock;
    healthcheck(&w2, "stripe");
    w2.yard
        .quota()
        .define(P, "solo")
        .provider("stripe")
        .action("charge")
        .healthcheck("stripe-health")
        .create()
        .unwrap();
    w2.stripe.behave(|r| {
        if r.action == "ping" {
            Err(AttemptError::provider(ErrorClass::Unavailable, "ping down"))
        } else {
            Ok(json!({"served": true}))
        }
    });
    w2.yard.run_due_healthchecks().await;
    let r = w2
        .yard
        .quota()
        .run(P, "dev", "solo", json!({}), RunOptions::default())
        .await
        .unwrap();
    assert!(r.trace.panic_mode);
    assert_eq!(r.output, json!({"served": true}));
    w2.yard
        .quota()
        .define(P, "solo")
        .provider("stripe")
        .action("charge")
        .healthcheck("stripe-health")
        .panic_mode(false)
        .update()
        .unwrap();
    let e = w2
        .yard
        .quota()
        .run(P, "dev", "solo", json!({}), RunOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::NoProvider);
    assert!(e.message.contains("panic mode is off"), "{e}");
}

#[tokio::test]
async fn the_breaker_opens_skips_and_half_opens_on_the_manual_clock() {
    let clock = Arc::new(ManualClock::new());
    let yard = Switchyard::builder()
        .clock(clock.clone())
        .breaker(BreakerConfig {
            minimum_failure_count: 2,
            ..BreakerConfig::default()
        })
        .build();
    let a = Arc::new(FakeAdapter::new("a", &[("go", true)]));
    let b = Arc::new(FakeAdapter::new("b", &[("go", true)]));
    yard.install_app(P, "a", "dev", a.clone());
    yard.install_app(P, "b", "dev", b.clone());
    yard.fallback()
        .define(P, "f")
        .provider("a")
        .action("go")
        .provider("b")
        .action("go")
        .create()
        .unwrap();
    a.fail(ErrorClass::Unavailable);
    let run = || {
        yard.fallback()
            .run(P, "dev", "f", json!({}), RunOptions::default())
    };
    for _ in 0..3 {
        run().await.unwrap();
    }
    assert_eq!(a.call_count(), 3);
    let states = yard.fallback().providers(P, "dev", "f").unwrap();
    assert_eq!(states[0].breaker.state, BreakerState::Open);
    assert_eq!(states[0].status, HealthStatus::Unhealthy, "passive signal");
    assert_eq!(states[0].counts.failures["unavailable"], 3);
    let r = run().await.unwrap();
    assert_eq!(a.call_count(), 3, "open: not called");
    assert!(matches!(
        &r.trace.skipped[0].reason,
        SkipReason::BreakerOpen { open: true, last_error: Some(e), .. } if e.contains("go failed")
    ));
    clock.advance(Duration::from_secs(31));
    a.behave(|_| Ok(json!({})));
    let r = run().await.unwrap();
    assert_eq!(r.provider.as_deref(), Some("a"), "half-open probe served");
    let states = yard.fallback().providers(P, "dev", "f").unwrap();
    assert_eq!(states[0].breaker.state, BreakerState::Closed);
}

#[tokio::test]
async fn the_retry_budget_caps_retries_during_an_outage() {
    let clock = Arc::new(ManualClock::new());
    let yard = Switchyard::builder()
        .clock(clock.clone())
        .budget(BudgetConfig {
            ratio: 0.1,
            min_retries: 5,
            window_ms: 10_000,
        })
        .breaker(BreakerConfig {
            minimum_failure_count: 1_000_000,
            ..BreakerConfig::default()
        })
        .build();
    let a = Arc::new(FakeAdapter::new("a", &[("go", true)]));
    yard.install_app(P, "a", "dev", a.clone());
    yard.fallback()
        .define(P, "f")
        .provider("a")
        .action("go")
        .retries(3)
        .backoff(Duration::ZERO, Duration::ZERO)
        .create()
        .unwrap();
    a.fail(ErrorClass::Unavailable);
    let mut denied = 0;
    for _ in 0..100 {
        let e = yard
            .fallback()
            .run(P, "dev", "f", json!({}), RunOptions::default())
            .await
            .unwrap_err();
        denied += e.trace.unwrap().budget_denied;
    }
    // 100 first attempts; retries ≤ 5 + 10 % of 100, not 300.
    assert_eq!(a.call_count(), 100 + 15);
    assert!(denied > 0);
}

#[tokio::test]
async fn deadlines_bound_attempts_and_stop_backoff() {
    let w = world();
    w.yard
        .fallback()
        .define(P, "slow")
        .provider("stripe")
        .action("refund")
        .retries(5)
        .timeout(Duration::from_millis(300))
        .backoff(Duration::from_secs(2), Duration::from_secs(2))
        .create()
        .unwrap();
    w.stripe.behave(|r| {
        assert!(r.deadline <= Duration::from_millis(300));
        Err(AttemptError::new(
            ErrorClass::Timeout,
            FailureKind::DeadlineExceeded,
            "slow",
        ))
    });
    let e = w
        .yard
        .fallback()
        .run(
            P,
            "dev",
            "slow",
            json!({}),
            RunOptions::default().deadline(Duration::from_millis(1_500)),
        )
        .await
        .unwrap_err();
    // Backoffs are up to 2 s: retries stop once the next wait would pass
    // the run's 1.5 s deadline.
    assert!(w.stripe.call_count() < 6, "{}", w.stripe.call_count());
    assert!(w.clock.elapsed() < Duration::from_millis(1_500));
    assert!(matches!(
        e.code,
        ErrorCode::AllFailed | ErrorCode::DeadlineExceeded
    ));
}

#[tokio::test]
async fn a_result_cache_serves_identical_inputs_within_its_ttl() {
    let w = world();
    pay_fallback(&w, 0);
    w.yard
        .cache()
        .define(P, "short")
        .ttl(Duration::from_secs(60))
        .create()
        .unwrap();
    let opts = || RunOptions::default().cache("short");
    let first = w
        .yard
        .fallback()
        .run(P, "dev", "pay", input(), opts())
        .await
        .unwrap();
    let second = w
        .yard
        .fallback()
        .run(P, "dev", "pay", input(), opts())
        .await
        .unwrap();
    assert_eq!(w.stripe.call_count(), 1);
    assert!(second.trace.cached && !first.trace.cached);
    assert_eq!(second.output, first.output);
    let other = json!({"amount": 5, "currency": "usd"});
    w.yard
        .fallback()
        .run(P, "dev", "pay", other, opts())
        .await
        .unwrap();
    assert_eq!(w.stripe.call_count(), 2, "a different input is not a hit");
    w.clock.advance(Duration::from_secs(60));
    w.yard
        .fallback()
        .run(P, "dev", "pay", input(), opts())
        .await
        .unwrap();
    assert_eq!(w.stripe.call_count(), 3, "expired");
    let e = w
        .yard
        .fallback()
        .run(
            P,
            "dev",
            "pay",
            input(),
            RunOptions::default().cache("nope"),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound);
}

#[tokio::test]
async fn a_feature_chains_steps_through_sequence() {
    let w = world();
    pay_fallback(&w, 0);
    w.yard
        .feature()
        .define(P, "checkout")
        .input("amount", FieldType::Integer)
        .input("currency", FieldType::String)
        .step_fallback("charge", "pay")
        .step_action("receipt", "paypal", "refund")
        .map_input(json!({"charge": "$Sequence{charge}{id}", "note": "paid $Input{amount} $Input{currency}"}))
        .output(json!({"charged_by": "$Sequence{charge}{id}", "receipt": "$Sequence{receipt}{input}"}))
        .create()
        .unwrap();
    let r = w
        .yard
        .feature()
        .run(
            P,
            "dev",
            "checkout",
            input(),
            RunOptions::default().idempotency_key("k1"),
        )
        .await
        .unwrap();
    assert_eq!(
        r.output,
        json!({"charged_by": "stripe", "receipt": {"charge": "stripe", "note": "paid 1099 usd"}})
    );
    assert_eq!(r.trace.steps.len(), 2);
    assert_eq!(r.trace.steps[0].trace.served_by.as_deref(), Some("stripe"));
    assert_eq!(w.stripe.calls()[0].idempotency_key, "k1:charge");
    assert_eq!(w.paypal.calls()[0].idempotency_key, "k1:receipt");
    assert!(r.trace.render().contains("step receipt"));

    w.stripe.fail(ErrorClass::Rejected);
    let e = w
        .yard
        .feature()
        .run(P, "dev", "checkout", input(), RunOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Rejected);
    assert!(
        e.message.starts_with("feature `checkout` step `charge`"),
        "{e}"
    );
    assert_eq!(w.paypal.call_count(), 1, "later steps did not run");
}

/// The reference's feature example: a later step reads which provider
/// served an earlier one (`$Sequence{step}{provider}`) and its idempotency
/// key; a `$Sequence` field the step can never have is refused when the
/// feature is defined, never after a card was charged.
#[tokio::test]
async fn a_step_reads_who_served_an_earlier_step_and_impossible_paths_are_refused() {
    let w = world();
    pay_fallback(&w, 0);
    w.yard
        .feature()
        .define(P, "charge-then-refund")
        .input("amount", FieldType::Integer)
        .input("currency", FieldType::String)
        .step_fallback("payment-fallback", "pay")
        .step_action("undo", "paypal", "refund")
        .map_input(json!({
            "provider": "$Sequence{payment-fallback}{provider}",
            "key": "$Sequence{payment-fallback}{idempotency_key}",
            "charge": "$Sequence{payment-fallback}{id}",
        }))
        .create()
        .unwrap();
    let r = w
        .yard
        .feature()
        .run(
            P,
            "dev",
            "charge-then-refund",
            input(),
            RunOptions::default().idempotency_key("k7"),
        )
        .await
        .unwrap();
    assert_eq!(
        w.paypal.calls()[0].input,
        json!({"provider": "stripe", "key": "k7:payment-fallback", "charge": "stripe"}),
        "{r:?}"
    );

    let e = w
        .yard
        .feature()
        .define(P, "bad")
        .input("amount", FieldType::Integer)
        .input("currency", FieldType::String)
        .step_fallback("payment-fallback", "pay")
        .step_action("undo", "paypal", "refund")
        .map_input(json!({"charge": "$Sequence{payment-fallback}{charge_id}"}))
        .create()
        .unwrap_err();
    assert_eq!(e.path, "features.bad.steps[1].input", "{e}");
    assert!(e.reason.contains("can never resolve"), "{e}");
    assert!(e.reason.contains("`amount`, `id`"), "{e}");
    assert_eq!(
        w.stripe.call_count(),
        1,
        "nothing ran for the refused feature"
    );
}

#[tokio::test]
async fn bad_input_is_refused_before_any_provider_is_called() {
    let w = world();
    pay_fallback(&w, 0);
    let e = w
        .yard
        .fallback()
        .run(
            P,
            "dev",
            "pay",
            json!({"amount": "ten", "currency": "usd"}),
            RunOptions::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidInput);
    assert_eq!(e.message, "input.amount: must be integer, got string");
    assert_eq!(w.stripe.call_count(), 0);
    let e = w
        .yard
        .fallback()
        .run(P, "dev", "nope", json!({}), RunOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound);
    let e = w
        .yard
        .fallback()
        .run(P, "prd", "pay", input(), RunOptions::default())
        .await
        .unwrap_err();
    assert!(e.message.contains("not installed for env `prd`"), "{e}");
}

#[test]
fn definitions_are_checked_with_the_field_path() {
    let w = world();
    let err = |r: Result<(), switchyard_engine::DefineError>| r.unwrap_err().to_string();
    let e = err(w
        .yard
        .fallback()
        .define(P, "x")
        .provider("nope")
        .action("charge")
        .create());
    assert!(
        e.starts_with("fallbacks.x.options[0].app: unknown app `nope`"),
        "{e}"
    );
    assert!(e.contains("installed: adyen, paypal, stripe"), "{e}");
    let e = err(w
        .yard
        .fallback()
        .define(P, "x")
        .provider("stripe")
        .action("chrage")
        .create());
    assert_eq!(
        e,
        "fallbacks.x.options[0].action: app `stripe` has no action `chrage` (it has: charge, refund, ping)"
    );
    let e = err(w
        .yard
        .quota()
        .define(P, "q")
        .provider("stripe")
        .action("charge")
        .weight(0)
        .create());
    assert!(e.starts_with("quotas.q.providers[0].weight: is 0"), "{e}");
    let e = err(w
        .yard
        .fallback()
        .define(P, "x")
        .provider("stripe")
        .action("charge")
        .weight(3)
        .create());
    assert!(e.starts_with("fallbacks.x.options[0].weight"), "{e}");
    let e = err(w
        .yard
        .fallback()
        .define(P, "x")
        .provider("stripe")
        .action("charge")
        .healthcheck("ghost")
        .create());
    assert!(
        e.starts_with("fallbacks.x.options[0].healthcheck: unknown healthcheck `ghost`"),
        "{e}"
    );
    let e = err(w
        .yard
        .fallback()
        .define(P, "x")
        .input("amount", FieldType::Integer)
        .provider("stripe")
        .action("charge")
        .map_input(json!({"a": "$Input{amout}"}))
        .create());
    assert!(
        e.starts_with("fallbacks.x.options[0].input: `$Input{amout}` is not an input field"),
        "{e}"
    );
    let e = err(w
        .yard
        .fallback()
        .define(P, "x")
        .provider("stripe")
        .action("charge")
        .map_input(json!({"a": "$Input{amount"}))
        .create());
    assert!(
        e.starts_with("fallbacks.x.options[0].input.a: unclosed"),
        "{e}"
    );
    let e = err(w
        .yard
        .fallback()
        .define(P, "x")
        .provider("stripe")
        .action("charge")
        .map_input(json!({"a": "$Response{id}"}))
        .create());
    assert!(e.contains("cannot read `$Response`"), "{e}");
    let e = err(w.yard.fallback().define(P, "x").weight(3).create());
    assert!(e.contains("before any `provider(...)`"), "{e}");
    let e = err(w
        .yard
        .fallback()
        .define(P, "bad tag")
        .provider("stripe")
        .action("charge")
        .create());
    assert!(e.starts_with("fallbacks.bad tag.tag"), "{e}");
    let e = err(w
        .yard
        .feature()
        .define(P, "f")
        .step_action("a", "stripe", "charge")
        .map_input(json!({"x": "$Sequence{b}{id}"}))
        .create());
    assert!(
        e.starts_with("features.f.steps[0].input: `$Sequence{b}` names no earlier step"),
        "{e}"
    );
}

#[test]
fn crud_round_trip_and_references_protect_deletes() {
    let w = world();
    healthcheck(&w, "stripe");
    w.yard
        .fallback()
        .define(P, "pay")
        .name("Card payment")
        .provider("stripe")
        .action("charge")
        .healthcheck("stripe-health")
        .create()
        .unwrap();
    let e = w
        .yard
        .fallback()
        .define(P, "pay")
        .provider("stripe")
        .action("charge")
        .create()
        .unwrap_err();
    assert!(e.reason.contains("already exists"), "{e}");
    let d = w.yard.fallback().fetch(P, "pay").unwrap();
    assert_eq!(d.meta().name, "Card payment");
    assert_eq!(w.yard.fetch_all(P, None).len(), 2);
    assert_eq!(w.yard.fallback().fetch_all(P).len(), 1);
    // Definitions are plain data: JSON in, JSON out.
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(json["kind"], "fallback");
    assert_eq!(json["options"][0]["healthcheck"], "stripe-health");

    let e = w.yard.healthcheck().delete(P, "stripe-health").unwrap_err();
    assert!(e.reason.contains("is used by fallbacks.pay"), "{e}");
    let e = w.yard.remove_app(P, "stripe").unwrap_err();
    assert!(e.reason.contains("fallbacks.pay"), "{e}");
    w.yard
        .fallback()
        .define(P, "pay")
        .name("Card payment v2")
        .provider("adyen")
        .action("charge")
        .update()
        .unwrap();
    assert_eq!(
        w.yard.fallback().fetch(P, "pay").unwrap().meta().name,
        "Card payment v2"
    );
    w.yard.healthcheck().delete(P, "stripe-health").unwrap();
    w.yard.fallback().delete(P, "pay").unwrap();
    assert!(w.yard.fetch(P, Kind::Fallback, "pay").is_none());
    let e = w
        .yard
        .fallback()
        .define(P, "pay")
        .provider("adyen")
        .action("charge")
        .update()
        .unwrap_err();
    assert!(e.reason.contains("does not exist"), "{e}");
}

#[test]
fn feature_cycles_are_refused() {
    let w = world();
    w.yard
        .feature()
        .define(P, "a")
        .step_action("s", "stripe", "charge")
        .create()
        .unwrap();
    w.yard
        .feature()
        .define(P, "b")
        .step_feature("call-a", "a")
        .create()
        .unwrap();
    let e = w
        .yard
        .feature()
        .define(P, "a")
        .step_feature("call-b", "b")
        .update()
        .unwrap_err();
    assert!(
        e.reason
            .contains("cycle: features.a → features.b → features.a"),
        "{e}"
    );
}

// ---- admission: host overload is never the provider's fault ----

mod admission {
    use super::*;
    use proptest::prelude::*;
    use switchyard_engine::AdmissionConfig;

    fn limits(in_flight: u32, queue: u32) -> AdmissionConfig {
        AdmissionConfig {
            max_in_flight: in_flight,
            max_queue: queue,
            ..AdmissionConfig::default()
        }
    }

    /// How the first skipped provider of `r` was skipped: `overloaded` or
    /// `saturated`, and the cause.
    fn first_skip(r: &switchyard_engine::RunResult) -> (&'static str, &str) {
        match &r.trace.skipped[0].reason {
            SkipReason::Overloaded { cause, .. } => ("overloaded", cause),
            SkipReason::Saturated { cause, .. } => ("saturated", cause),
            other => panic!("skipped for another reason: {other}"),
        }
    }

    fn host_overload() -> AttemptError {
        AttemptError::new(
            ErrorClass::Overloaded,
            FailureKind::Overload,
            "no plugin instance slot became free",
        )
    }

    /// State a burst must leave exactly as it found it.
    fn provider_view(w: &World) -> Vec<String> {
        w.yard
            .provider_states(P, "dev", Kind::Fallback, "pay")
            .unwrap()
            .into_iter()
            .map(|s| {
                format!(
                    "{} {:?} breaker={:?} req={} fail={} counts={:?}",
                    s.provider,
                    s.status,
                    s.breaker.state,
                    s.breaker.requests,
                    s.breaker.failures,
                    s.counts
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn an_instance_refusal_is_skipped_not_counted_and_the_next_provider_serves() {
        let w = world();
        pay_fallback(&w, 2);
        let before = provider_view(&w);
        w.stripe.behave(|_| Err(host_overload()));
        for _ in 0..30 {
            let r = run_pay(&w).await.unwrap();
            assert_eq!(r.provider.as_deref(), Some("adyen"));
            assert_eq!(first_skip(&r), ("overloaded", "no-instance"));
            assert!(r.trace.attempts.iter().all(|a| a.provider == "adyen"));
        }
        assert_eq!(w.stripe.call_count(), 30, "one try each, no retries");
        let after = provider_view(&w);
        assert_eq!(before[0], after[0], "stripe's breaker and counts untouched");
        assert_eq!(
            w.yard.breaker_states(),
            vec![
                (
                    "payments/dev/adyen/charge".to_string(),
                    BreakerState::Closed
                ),
                (
                    "payments/dev/stripe/charge".to_string(),
                    BreakerState::Closed
                ),
            ]
        );
    }

    #[tokio::test]
    async fn only_overload_means_503_overloaded_with_retry_after() {
        let w = world();
        pay_fallback(&w, 0);
        w.stripe.behave(|_| Err(host_overload()));
        w.adyen.behave(|_| Err(host_overload()));
        let e = run_pay(&w).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::Overloaded, "{e}");
        assert_eq!(e.retry_after_ms, Some(1_000));
        assert!(e.message.contains("try again later"), "{e}");
        // One provider really failing makes it all-failed, naming both.
        w.adyen.fail(ErrorClass::Unavailable);
        let e = run_pay(&w).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::AllFailed, "{e}");
        assert!(e.message.contains("stripe (overloaded"), "{e}");
    }

    #[tokio::test]
    async fn a_full_queue_refuses_without_touching_breakers_or_health() {
        let w = world();
        pay_fallback(&w, 0);
        w.yard.set_admission(P, "stripe", limits(2, 0)).unwrap();
        w.yard.set_admission(P, "adyen", limits(1, 0)).unwrap();
        let stripe = w.stripe.hold();
        let adyen = w.adyen.hold();
        let yard = w.yard.clone();
        let run = move || {
            let yard = yard.clone();
            tokio::spawn(async move {
                yard.fallback()
                    .run(P, "dev", "pay", input(), RunOptions::default())
                    .await
            })
        };
        let held: Vec<_> = (0..2).map(|_| run()).collect();
        while w.stripe.in_flight() < 2 {
            tokio::task::yield_now().await;
        }
        // Stripe is full and may not queue: the run moves on to adyen.
        let third = run();
        while w.adyen.in_flight() < 1 {
            tokio::task::yield_now().await;
        }
        let before = provider_view(&w);
        let refused: Vec<_> = (0..5).map(|_| run()).collect();
        for r in refused {
            let e = r.await.unwrap().unwrap_err();
            assert_eq!(e.code, ErrorCode::Overloaded, "{e}");
            let trace = e.trace.unwrap();
            assert!(trace.attempts.is_empty(), "no provider was called");
            assert_eq!(trace.skipped.len(), 2);
        }
        assert_eq!(provider_view(&w), before, "nothing counted while full");
        stripe.add_permits(2);
        adyen.add_permits(1);
        for r in held {
            assert_eq!(
                r.await.unwrap().unwrap().provider.as_deref(),
                Some("stripe")
            );
        }
        assert_eq!(
            third.await.unwrap().unwrap().provider.as_deref(),
            Some("adyen")
        );
        assert!(w.stripe.peak_in_flight() <= 2 && w.adyen.peak_in_flight() <= 1);
        let s = &w
            .yard
            .provider_states(P, "dev", Kind::Fallback, "pay")
            .unwrap()[0];
        assert_eq!(s.admission.as_ref().unwrap().overloaded, 6);
        assert_eq!(s.admission.as_ref().unwrap().in_flight, 0);
    }

    fn spill_fallback(w: &World, spillover: bool) {
        w.yard
            .fallback()
            .define(P, "pay")
            .spillover(spillover)
            .provider("stripe")
            .action("charge")
            .provider("adyen")
            .action("charge")
            .create()
            .unwrap();
    }

    #[tokio::test]
    async fn spillover_sends_the_excess_to_the_backup_and_without_it_runs_wait() {
        for spillover in [true, false] {
            // Parked: a waiting run must wait for the slot, not for time.
            let w = world_on(Arc::new(ManualClock::parked()));
            spill_fallback(&w, spillover);
            w.yard.set_admission(P, "stripe", limits(1, 100)).unwrap();
            let stripe = w.stripe.hold();
            let yard = w.yard.clone();
            let first = tokio::spawn(async move {
                yard.fallback()
                    .run(P, "dev", "pay", json!({}), RunOptions::default())
                    .await
            });
            while w.stripe.in_flight() < 1 {
                tokio::task::yield_now().await;
            }
            let yard = w.yard.clone();
            let second = tokio::spawn(async move {
                yard.fallback()
                    .run(P, "dev", "pay", json!({}), RunOptions::default())
                    .await
            });
            if spillover {
                let r = second.await.unwrap().unwrap();
                assert_eq!(r.provider.as_deref(), Some("adyen"));
                assert_eq!(first_skip(&r), ("saturated", "in-flight"));
                stripe.add_permits(1);
            } else {
                let gate = || {
                    w.yard
                        .provider_states(P, "dev", Kind::Fallback, "pay")
                        .unwrap()[0]
                        .admission
                        .clone()
                };
                while gate().expect("an action option has admission").queued < 1 {
                    tokio::task::yield_now().await;
                }
                assert_eq!(w.adyen.call_count(), 0, "it waits for stripe");
                stripe.add_permits(2);
                let r = second.await.unwrap().unwrap();
                assert_eq!(r.provider.as_deref(), Some("stripe"));
            }
            assert_eq!(
                first.await.unwrap().unwrap().provider.as_deref(),
                Some("stripe")
            );
            assert_eq!(w.stripe.peak_in_flight(), 1);
        }
    }

    #[tokio::test]
    async fn runs_over_a_rate_limit_are_spread_as_the_bucket_says() {
        let w = world();
        pay_fallback(&w, 0);
        w.yard
            .set_admission(
                P,
                "stripe",
                AdmissionConfig {
                    rate_per_sec: Some(10.0),
                    burst: Some(1),
                    ..AdmissionConfig::default()
                },
            )
            .unwrap();
        let clock = w.clock.clone();
        let t0 = clock.elapsed();
        let times = Arc::new(std::sync::Mutex::new(Vec::new()));
        let t = times.clone();
        w.stripe.behave(move |_| {
            t.lock().unwrap().push((clock.elapsed() - t0).as_millis());
            Ok(json!({"app": "stripe"}))
        });
        for _ in 0..10 {
            assert_eq!(
                run_pay(&w).await.unwrap().provider.as_deref(),
                Some("stripe")
            );
        }
        assert_eq!(
            *times.lock().unwrap(),
            vec![0, 100, 200, 300, 400, 500, 600, 700, 800, 900]
        );
    }

    #[tokio::test]
    async fn a_429_with_retry_after_pauses_the_app_until_then() {
        let w = world();
        spill_fallback(&w, true);
        w.stripe.behave(|_| {
            Err(AttemptError {
                retry_after: Some(Duration::from_secs(2)),
                ..AttemptError::provider(ErrorClass::RateLimited, "slow down")
            })
        });
        let run = || {
            w.yard
                .fallback()
                .run(P, "dev", "pay", json!({}), RunOptions::default())
        };
        assert_eq!(run().await.unwrap().provider.as_deref(), Some("adyen"));
        assert_eq!(w.stripe.call_count(), 1);
        // During the pause stripe is not called; the runs spill to adyen.
        for _ in 0..5 {
            let r = run().await.unwrap();
            assert_eq!(r.provider.as_deref(), Some("adyen"));
            assert_eq!(first_skip(&r), ("saturated", "cooldown"));
        }
        assert_eq!(w.stripe.call_count(), 1, "the provider asked for a pause");
        let s = &w
            .yard
            .provider_states(P, "dev", Kind::Fallback, "pay")
            .unwrap()[0];
        assert_eq!(
            s.admission.as_ref().unwrap().cooldown_remaining_ms,
            Some(2_000)
        );
        w.clock.advance(Duration::from_secs(2));
        w.stripe.succeed_with(json!({"app": "stripe"}));
        assert_eq!(run().await.unwrap().provider.as_deref(), Some("stripe"));
    }

    #[tokio::test]
    async fn an_overloaded_probe_leaves_health_as_it_was() {
        let w = world();
        healthcheck(&w, "stripe");
        w.stripe.behave(|_| Err(host_overload()));
        w.yard.run_due_healthchecks().await;
        let h = w.yard.health(P, "dev", "stripe-health").unwrap();
        assert_eq!(h.status, HealthStatus::Unknown, "{h:?}");
        assert!(h.history.is_empty());
        // It is due again soon, and a real answer then counts.
        w.stripe.succeed_with(json!({}));
        w.clock.advance(Duration::from_secs(1));
        w.yard.run_due_healthchecks().await;
        assert_eq!(
            w.yard.health(P, "dev", "stripe-health").unwrap().status,
            HealthStatus::Healthy
        );
    }

    async fn outage_onset(runs: usize, retries: u32, budget: BudgetConfig, breaker: BreakerConfig) {
        let clock = Arc::new(ManualClock::new());
        let yard = Switchyard::builder()
            .clock(clock.clone())
            .seed(11)
            .budget(budget)
            .breaker(breaker)
            .build();
        let primary = Arc::new(FakeAdapter::new("primary", &[("charge", true)]));
        let backup = Arc::new(FakeAdapter::new("backup", &[("charge", true)]));
        yard.install_app(P, "primary", "dev", primary.clone());
        yard.install_app(P, "backup", "dev", backup.clone());
        primary.fail(ErrorClass::Unavailable);
        yard.fallback()
            .define(P, "pay")
            .provider("primary")
            .action("charge")
            .retries(retries)
            .provider("backup")
            .action("charge")
            .create()
            .unwrap();
        let tasks: Vec<_> = (0..runs)
            .map(|_| {
                let yard = yard.clone();
                tokio::spawn(async move {
                    yard.fallback()
                        .run(P, "dev", "pay", json!({}), RunOptions::default())
                        .await
                })
            })
            .collect();
        for t in tasks {
            let r = t.await.unwrap();
            let r = r.unwrap_or_else(|e| panic!("a run failed with a healthy backup: {e}"));
            assert_eq!(r.provider.as_deref(), Some("backup"));
        }
        assert!(
            primary.call_count() <= runs * (retries as usize + 1),
            "{} calls for {runs} runs",
            primary.call_count()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn at_the_onset_of_an_outage_every_run_is_served_by_the_backup() {
        for runs in [64, 500] {
            outage_onset(runs, 2, BudgetConfig::default(), BreakerConfig::default()).await;
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Random budgets, breaker settings, retries and concurrency, runs
        /// interleaving on two threads: with the backup healthy, no run
        /// ends in all-failed for budget (or breaker) reasons.
        #[test]
        fn one_healthy_option_left_means_no_run_fails(
            runs in 1usize..120,
            retries in 0u32..4,
            ratio in 0.0f64..1.0,
            min_retries in 0u32..5,
            min_failures in 0u32..6,
            threshold in 0.0f64..90.0,
        ) {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            let budget = BudgetConfig { ratio, min_retries, window_ms: 10_000 };
            let breaker = BreakerConfig {
                minimum_failure_count: min_failures,
                failure_threshold: threshold,
                ..BreakerConfig::default()
            };
            rt.block_on(outage_onset(runs, retries, budget, breaker));
        }
    }
}

// ---- hardening: what a careless definition or a hostile caller can do ----

mod hardening {
    use super::*;
    use switchyard_engine::MAX_ERROR_MESSAGE;

    #[tokio::test]
    async fn a_cached_result_never_crosses_sessions_nor_hands_out_another_runs_key() {
        let w = world();
        pay_fallback(&w, 0);
        w.yard
            .cache()
            .define(P, "short")
            .ttl(Duration::from_secs(60))
            .create()
            .unwrap();
        // The provider answers with whose account it charged.
        w.stripe.behave(|r| {
            let who = r.session.as_ref().map_or("nobody", |s| s.token.as_str());
            Ok(json!({"app": format!("account-of-{who}")}))
        });
        let run = |session: &str, key: &str| {
            run_pay_with(
                &w,
                RunOptions::default()
                    .cache("short")
                    .session("user", session)
                    .idempotency_key(key),
            )
        };
        let alice = run("alice-token", "alice-1").await.unwrap();
        assert_eq!(alice.output["id"], "account-of-alice-token");
        let bob = run("bob-token", "bob-1").await.unwrap();
        assert_eq!(
            bob.output["id"], "account-of-bob-token",
            "Bob got Alice's result"
        );
        assert!(!bob.trace.cached);
        assert_eq!(bob.idempotency_key, "bob-1");
        // Alice again, under a new key: a hit, answered with her new key.
        let again = run("alice-token", "alice-2").await.unwrap();
        assert!(again.trace.cached);
        assert_eq!(again.output["id"], "account-of-alice-token");
        assert_eq!(again.idempotency_key, "alice-2");
        assert_eq!(again.trace.idempotency_key, "alice-2");
        // Without a key of its own, a hit gets a fresh one, not the stored.
        let fresh = run_pay_with(
            &w,
            RunOptions::default()
                .cache("short")
                .session("user", "alice-token"),
        )
        .await
        .unwrap();
        assert!(fresh.trace.cached);
        assert_ne!(fresh.idempotency_key, "alice-1");
        assert_eq!(w.stripe.call_count(), 2);
    }

    #[tokio::test]
    async fn out_of_bounds_numbers_are_refused_at_define_time() {
        let w = world();
        let e = w
            .yard
            .cache()
            .define(P, "huge")
            .ttl(Duration::from_secs(1))
            .max_entries(usize::MAX)
            .create()
            .unwrap_err();
        assert_eq!(e.path, "caches.huge.max_entries", "{e}");
        let e = w
            .yard
            .fallback()
            .define(P, "pay")
            .provider("stripe")
            .action("charge")
            .retries(u32::MAX)
            .create()
            .unwrap_err();
        assert_eq!(e.path, "fallbacks.pay.options[0].retries", "{e}");
        // A run deadline from the caller is clamped, never an overflow.
        pay_fallback(&w, 0);
        let r = run_pay_with(&w, RunOptions::default().deadline(Duration::MAX)).await;
        assert!(r.is_ok(), "{r:?}");
    }

    #[tokio::test]
    async fn a_panic_inside_one_run_does_not_take_the_engine_down() {
        let clock = Arc::new(ManualClock::new());
        let yard = Switchyard::builder()
            .clock(clock)
            // A user's classifier that panics on one error: it runs under
            // the breakers' lock.
            .classifier(|e| {
                assert!(!e.message.contains("boom"), "classifier panicked");
                e.class == ErrorClass::Unavailable
            })
            .build();
        let app = Arc::new(FakeAdapter::new("stripe", &[("charge", false)]));
        yard.install_app(P, "stripe", "dev", app.clone());
        yard.fallback()
            .define(P, "pay")
            .provider("stripe")
            .action("charge")
            .create()
            .unwrap();
        app.behave(|_| Err(AttemptError::provider(ErrorClass::Unavailable, "boom")));
        let y = yard.clone();
        let crashed = tokio::spawn(async move {
            y.fallback()
                .run(P, "dev", "pay", json!({}), RunOptions::default())
                .await
        })
        .await;
        assert!(crashed.is_err(), "that run panicked");
        app.succeed_with(json!({"ok": true}));
        for _ in 0..3 {
            let r = yard
                .fallback()
                .run(P, "dev", "pay", json!({}), RunOptions::default())
                .await;
            assert!(r.is_ok(), "later runs still work: {r:?}");
        }
        assert!(!yard.breaker_states().is_empty());
    }

    #[tokio::test]
    async fn a_huge_error_is_cut_before_traces_breakers_and_health() {
        let w = world();
        pay_fallback(&w, 0);
        healthcheck(&w, "stripe");
        w.stripe.behave(|_| {
            Err(AttemptError::provider(
                ErrorClass::Unavailable,
                "x".repeat(50 << 20),
            ))
        });
        let r = run_pay(&w).await.unwrap();
        let m = r.trace.attempts[0].message.as_ref().unwrap();
        assert!(m.len() < MAX_ERROR_MESSAGE + 64, "{}", m.len());
        let s = &w
            .yard
            .provider_states(P, "dev", Kind::Fallback, "pay")
            .unwrap()[0];
        assert!(s.breaker.last_error.as_ref().unwrap().len() < MAX_ERROR_MESSAGE + 128);
        w.yard.run_due_healthchecks().await;
        let h = w.yard.health(P, "dev", "stripe-health").unwrap();
        let err = h.history[0].error.as_ref().unwrap();
        assert!(err.len() < MAX_ERROR_MESSAGE + 128, "{}", err.len());
    }

    #[tokio::test]
    async fn breakers_keyed_by_input_are_capped() {
        use switchyard_engine::MAX_BREAKERS;
        let w = world();
        w.yard
            .fallback()
            .define(P, "per-merchant")
            .input("merchant", FieldType::String)
            .provider("stripe")
            .action("charge")
            .breaker_key("stripe/$Input{merchant}")
            .create()
            .unwrap();
        for i in 0..MAX_BREAKERS + 2_000 {
            w.yard
                .fallback()
                .run(
                    P,
                    "dev",
                    "per-merchant",
                    json!({"merchant": format!("m{i}")}),
                    RunOptions::default(),
                )
                .await
                .unwrap();
        }
        let n = w.yard.breaker_states().len();
        assert_eq!(n, MAX_BREAKERS, "{n} breakers kept");
    }

    #[tokio::test]
    async fn healthcheck_tries_back_off_and_retries_are_bounded() {
        let w = world();
        let e = w
            .yard
            .healthcheck()
            .define(P, "hammer")
            .app("stripe")
            .action("ping")
            .input("dev", json!({}))
            .retries(u32::MAX)
            .create()
            .unwrap_err();
        assert_eq!(e.path, "healthchecks.hammer.retries", "{e}");
        w.yard
            .healthcheck()
            .define(P, "stripe-health")
            .app("stripe")
            .action("ping")
            .input("dev", json!({}))
            .retries(10)
            .create()
            .unwrap();
        w.stripe.fail(ErrorClass::Unavailable);
        let before = w.clock.elapsed();
        w.yard.run_due_healthchecks().await;
        assert_eq!(w.stripe.call_count(), 11, "first try + 10 retries, no more");
        // Between tries it waited (full jitter under 100 ms × 2^n, ≤ 5 s).
        let waited = w.clock.elapsed() - before;
        assert!(
            waited > Duration::ZERO && waited <= Duration::from_secs(30),
            "{waited:?}"
        );
    }
}

// ---- fuzz: definitions and adapter output from arbitrary JSON ----

mod fuzz {
    use super::*;
    use proptest::prelude::*;
    use switchyard_engine::Definition;

    fn number() -> impl Strategy<Value = Value> {
        prop_oneof![
            any::<u64>().prop_map(|n| json!(n)),
            any::<i64>().prop_map(|n| json!(n)),
            (0u64..5).prop_map(|n| json!(n)),
            any::<f64>().prop_map(|f| json!(f)),
        ]
    }

    fn text() -> impl Strategy<Value = Value> {
        prop::sample::select(vec![
            "stripe",
            "adyen",
            "charge",
            "ping",
            "pay",
            "$Input{amount}",
            "$Response{app}",
            "$Sequence{a}{x}",
            "{",
            "",
            "dev",
            "c",
        ])
        .prop_map(|s| json!(s))
    }

    fn option() -> impl Strategy<Value = Value> {
        (
            text(),
            text(),
            text(),
            prop::collection::vec(
                (
                    prop::sample::select(vec![
                        "retries",
                        "backoff_ms",
                        "max_backoff_ms",
                        "timeout_ms",
                        "weight",
                        "input",
                        "output",
                        "idempotent",
                        "breaker_key",
                        "healthcheck",
                    ]),
                    prop_oneof![number(), text(), any::<bool>().prop_map(Value::Bool)],
                ),
                0..4,
            ),
        )
            .prop_map(|(provider, app, action, extra)| {
                let mut o = json!({"provider": provider, "app": app, "action": action});
                for (k, v) in extra {
                    o[k] = v;
                }
                o
            })
    }

    fn definition() -> impl Strategy<Value = Value> {
        (
            prop::sample::select(vec!["fallback", "quota", "cache", "healthcheck", "feature"]),
            prop::collection::vec(option(), 0..3),
            prop::collection::vec(
                (
                    prop::sample::select(vec![
                        "ttl_ms",
                        "max_entries",
                        "deadline_ms",
                        "interval_ms",
                        "retries",
                        "timeout_ms",
                        "history",
                        "jitter",
                        "spillover",
                        "app",
                        "action",
                    ]),
                    prop_oneof![number(), text(), any::<bool>().prop_map(Value::Bool)],
                ),
                0..4,
            ),
        )
            .prop_map(|(kind, options, extra)| {
                let mut d = json!({"kind": kind, "product": P, "tag": "t"});
                match kind {
                    "fallback" => d["options"] = json!(options),
                    "quota" => d["providers"] = json!(options),
                    "feature" => {
                        d["steps"] = json!([{"name": "a", "type": "fallback", "tag": "pay"}])
                    }
                    "healthcheck" => d["input"] = json!({"dev": {}}),
                    _ => {}
                }
                for (k, v) in extra {
                    d[k] = v;
                }
                d
            })
    }

    proptest! {
        /// Definition JSON is what API callers send: whatever arrives is
        /// refused with a path or accepted and runnable, never a panic
        /// (an overflow, a poisoned lock) — and a provider answering with
        /// arbitrary JSON never panics the output mapping.
        #[test]
        fn fuzz_definition_json(def in definition(), response in prop_oneof![
            Just(json!(null)), Just(json!({"app": [1, 2]})), Just(json!("x")), Just(json!({"app": {"deep": true}}))
        ]) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let w = world();
                pay_fallback(&w, 0);
                w.stripe.succeed_with(response);
                let Ok(d) = serde_json::from_value::<Definition>(def) else { return };
                match w.yard.create(d.clone()) {
                    Err(e) => assert!(!e.path.is_empty(), "{e}"),
                    Ok(()) => {
                        let kind = d.kind();
                        if matches!(kind, Kind::Fallback | Kind::Quota | Kind::Feature) {
                            let _ = w.yard.run(kind, P, "dev", "t", input(), RunOptions::default()).await;
                        }
                    }
                }
            });
        }
    }
}

// ---- reference parity: breaker settings per definition and option ----

fn two_apps(clock: Arc<ManualClock>) -> (Switchyard, Arc<FakeAdapter>, Arc<FakeAdapter>) {
    let yard = Switchyard::builder().clock(clock).build();
    let a = Arc::new(FakeAdapter::new("a", &[("go", true), ("ping", true)]));
    let b = Arc::new(FakeAdapter::new("b", &[("go", true), ("ping", true)]));
    for env in ["dev", "prod"] {
        yard.install_app(P, "a", env, a.clone());
        yard.install_app(P, "b", env, b.clone());
    }
    (yard, a, b)
}

#[tokio::test]
async fn breaker_settings_per_definition_and_option_decide_what_opens_and_blocked_runs_say_open() {
    let clock = Arc::new(ManualClock::new());
    let (yard, a, b) = two_apps(clock.clone());
    // The reference's example, translated: a definition-wide breaker that
    // counts 401-style `internal` errors too and opens after 2 failures;
    // option `a` keeps it open 5 s instead of 30 s.
    let def: switchyard_engine::Definition = serde_json::from_value(json!({
        "kind": "fallback", "product": P, "tag": "f",
        "breaker": {"minimum_failure_count": 1, "failure_threshold": 10,
                    "system_errors": ["internal", "unavailable"]},
        "options": [
            {"provider": "a", "app": "a", "action": "go", "breaker": {"open_timeout": 5000}},
            {"provider": "b", "app": "b", "action": "go"}
        ]
    }))
    .unwrap();
    yard.create(def).unwrap();
    a.fail(ErrorClass::Internal);
    b.fail(ErrorClass::Internal);
    let run = || {
        yard.run(
            Kind::Fallback,
            P,
            "dev",
            "f",
            json!({}),
            RunOptions::default(),
        )
    };
    for _ in 0..2 {
        run().await.unwrap_err();
    }
    let states = yard.fallback().providers(P, "dev", "f").unwrap();
    assert_eq!(
        states[0].breaker.state,
        BreakerState::Open,
        "internal counted"
    );
    assert_eq!(states[0].breaker.key, "payments/dev/a/go");
    assert_eq!(
        states[0].breaker_settings.open_timeout,
        Duration::from_secs(5)
    );
    assert_eq!(
        states[1].breaker_settings.open_timeout,
        Duration::from_secs(30)
    );
    assert_eq!(states[1].breaker_settings.minimum_failure_count, 1);
    // Both blocked: the run says `open`, with the last real error, and
    // nobody is called.
    let calls = (a.call_count(), b.call_count());
    let e = run().await.unwrap_err();
    assert_eq!(e.code, ErrorCode::NoProvider);
    assert!(e.open, "{e:?}");
    assert!(
        e.last_error.as_deref().unwrap().contains("go failed"),
        "{e:?}"
    );
    let t = e.trace.unwrap();
    assert!(t.skipped.iter().all(|s| matches!(
        &s.reason,
        SkipReason::BreakerOpen { open: true, breaker, last_error: Some(_) } if breaker.starts_with("payments/dev/")
    )));
    assert_eq!((a.call_count(), b.call_count()), calls);
    let states = yard.fallback().providers(P, "dev", "f").unwrap();
    assert_eq!(states[0].counts.blocked, 1);
    assert_eq!(states[1].counts.blocked, 1);
    // `a` half-opens after its own 5 s; `b` is still open.
    clock.advance(Duration::from_secs(6));
    a.behave(|_| Ok(json!({"ok": true})));
    let r = run().await.unwrap();
    assert_eq!(r.provider.as_deref(), Some("a"));
    // The same fallback under the engine's default classifier would never
    // have opened on `internal`: prove it with a definition without one.
    let (yard2, a2, _) = two_apps(Arc::new(ManualClock::new()));
    yard2
        .fallback()
        .define(P, "g")
        .provider("a")
        .action("go")
        .create()
        .unwrap();
    a2.fail(ErrorClass::Internal);
    for _ in 0..20 {
        yard2
            .run(
                Kind::Fallback,
                P,
                "dev",
                "g",
                json!({}),
                RunOptions::default(),
            )
            .await
            .unwrap_err();
    }
    let s = yard2.fallback().providers(P, "dev", "g").unwrap();
    assert_eq!(s[0].breaker.state, BreakerState::Closed);
}

#[tokio::test]
async fn provider_state_reports_the_breakers_a_breaker_key_template_routes_by() {
    let clock = Arc::new(ManualClock::new());
    let (yard, a, _b) = two_apps(clock);
    yard.fallback()
        .define(P, "f")
        .input("merchant", FieldType::String)
        .provider("a")
        .action("go")
        .breaker_key("a/$Input{merchant}")
        .provider_breaker(switchyard_engine::BreakerSettings {
            minimum_failure_count: Some(1),
            failure_threshold: Some(10.0),
            ..Default::default()
        })
        .provider("b")
        .action("go")
        .create()
        .unwrap();
    a.behave(|req| {
        if req.input["merchant"] == "m1" {
            Err(AttemptError::new(
                ErrorClass::Unavailable,
                FailureKind::Provider,
                "m1 down",
            ))
        } else {
            Ok(json!({}))
        }
    });
    for m in ["m1", "m1", "m2"] {
        run_f(&yard, json!({"merchant": m})).await.unwrap();
    }
    let r = run_f(&yard, json!({"merchant": "m1"})).await.unwrap();
    assert_eq!(r.provider.as_deref(), Some("b"), "m1's breaker is open");
    let s = &yard.fallback().providers(P, "dev", "f").unwrap()[0];
    // Not the default key's (never used, closed) breaker: the one runs
    // were skipped by.
    assert_eq!(s.breaker.key, "payments/dev/a/m1");
    assert_eq!(s.breaker.state, BreakerState::Open);
    assert_eq!(s.breaker_key.as_deref(), Some("a/$Input{merchant}"));
    assert_eq!(s.breakers_total, Some(2));
    assert_eq!(s.breakers[1].key, "payments/dev/a/m2");
    assert_eq!(s.breakers[1].state, BreakerState::Closed);
    assert_eq!(s.status, HealthStatus::Unknown, "m2 still routes to a");
    assert_eq!(s.counts.blocked, 1);
}

#[tokio::test]
async fn options_sharing_a_breaker_cannot_disagree_on_its_settings() {
    let (yard, _a, _b) = two_apps(Arc::new(ManualClock::new()));
    let strict = switchyard_engine::BreakerSettings {
        minimum_failure_count: Some(1),
        ..Default::default()
    };
    yard.fallback()
        .define(P, "f")
        .provider("a")
        .action("go")
        .provider_breaker(strict)
        .create()
        .unwrap();
    // Another definition on the same breaker (a/go) with other settings.
    let loose = switchyard_engine::BreakerSettings {
        minimum_failure_count: Some(9),
        ..Default::default()
    };
    let on_a = |tag: &str| yard.quota().define(P, tag).provider("a").action("go");
    let e = on_a("q").provider_breaker(loose).create().unwrap_err();
    assert_eq!(e.path, "quotas.q.providers[0].breaker");
    assert!(e.reason.contains("fallbacks.f.options[0]"), "{e}");
    assert!(e.reason.contains("minimum_failure_count"), "{e}");
    // The same settings, or none, or a key of its own: accepted.
    on_a("q").provider_breaker(strict).create().unwrap();
    on_a("q2").create().unwrap();
    on_a("q3")
        .breaker_key("a-go-strict")
        .provider_breaker(loose)
        .create()
        .unwrap();
    // Updating the definition that set them is not a clash with itself.
    yard.fallback()
        .define(P, "f")
        .provider("a")
        .action("go")
        .provider_breaker(strict)
        .update()
        .unwrap();
    let bad: Result<switchyard_engine::Definition, _> = serde_json::from_value(json!({
        "kind": "fallback", "product": P, "tag": "h",
        "options": [{"provider": "b", "app": "b", "action": "go",
                     "breaker": {"system_errors": ["overloaded"]}}]
    }));
    let e = yard.create(bad.unwrap()).unwrap_err();
    assert_eq!(e.path, "fallbacks.h.options[0].breaker.system_errors");
}

// ---- reference parity: options that run a feature ----

#[tokio::test]
async fn a_fallback_option_may_run_a_feature_and_fails_over_when_it_fails() {
    let clock = Arc::new(ManualClock::new());
    let (yard, a, b) = two_apps(clock);
    // The feature: two steps on `a`.
    yard.feature()
        .define(P, "two-step")
        .step_action("first", "a", "go")
        .step_action("second", "a", "go")
        .output(json!({"via": "feature", "last": "$Sequence{second}{}"}))
        .create()
        .unwrap();
    let def: switchyard_engine::Definition = serde_json::from_value(json!({
        "kind": "fallback", "product": P, "tag": "f",
        "options": [
            {"provider": "flow", "type": "feature", "tag": "two-step",
             "output": {"served": "$Response{via}"}},
            {"provider": "b", "app": "b", "action": "go", "output": {"served": "b"}}
        ]
    }))
    .unwrap();
    yard.create(def.clone()).unwrap();
    assert_eq!(
        yard.fetch(P, Kind::Fallback, "f").unwrap(),
        def,
        "round trip"
    );
    a.succeed_with(json!({"n": 1}));
    b.succeed_with(json!({}));
    let r = yard
        .run(
            Kind::Fallback,
            P,
            "dev",
            "f",
            json!({}),
            RunOptions::default().idempotency_key("k1"),
        )
        .await
        .unwrap();
    assert_eq!(r.output, json!({"served": "feature"}));
    assert_eq!(r.provider.as_deref(), Some("flow"));
    assert_eq!(a.call_count(), 2);
    assert_eq!(
        a.calls()[1].idempotency_key,
        "k1:second",
        "the feature's step keys"
    );
    assert_eq!(
        r.trace.steps[0].name, "flow",
        "the feature's own trace is kept"
    );
    assert_eq!(r.trace.steps[0].trace.steps.len(), 2);
    assert_eq!(b.call_count(), 0);
    // The feature's step fails: the option failed, the run fails over.
    a.fail(ErrorClass::Unavailable);
    let r = run_f(&yard, json!({})).await.unwrap();
    assert_eq!(r.output, json!({"served": "b"}));
    assert_eq!(r.trace.attempts[0].provider, "flow");
    assert_eq!(
        r.trace.attempts[0].outcome,
        Outcome::Failed(ErrorClass::Unavailable)
    );
    let s = yard.fallback().providers(P, "dev", "f").unwrap();
    assert_eq!(s[0].feature.as_deref(), Some("two-step"));
    assert_eq!(s[0].breaker.key, "payments/dev/feature:two-step");
    assert_eq!(s[0].counts.attempts, 2);
    assert!(s[0].admission.is_none());
    // A rejected input inside the feature stops the run, as for an action.
    a.fail(ErrorClass::Rejected);
    let e = run_f(&yard, json!({})).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::Rejected);
}

#[tokio::test]
async fn a_quota_provider_may_run_a_feature_and_feature_options_are_checked() {
    let (yard, a, b) = two_apps(Arc::new(ManualClock::new()));
    yard.feature()
        .define(P, "via-a")
        .step_action("only", "a", "go")
        .create()
        .unwrap();
    yard.quota()
        .define(P, "q")
        .provider("fa")
        .feature("via-a")
        .weight(1)
        .provider("b")
        .action("go")
        .weight(1)
        .create()
        .unwrap();
    a.succeed_with(json!({"who": "a"}));
    b.succeed_with(json!({"who": "b"}));
    let mut served = Vec::new();
    for _ in 0..4 {
        let r = yard
            .run(Kind::Quota, P, "dev", "q", json!({}), RunOptions::default())
            .await
            .unwrap();
        served.push(r.output["who"].as_str().unwrap().to_string());
    }
    assert_eq!(served.iter().filter(|w| *w == "a").count(), 2, "{served:?}");
    // Deleting a feature an option runs is refused.
    let e = yard.delete(P, Kind::Feature, "via-a").unwrap_err();
    assert!(e.reason.contains("quotas.q"), "{e}");
    // Unknown feature, app given, retries: each refused where written.
    let refuse = |v: Value| {
        yard.create(serde_json::from_value::<switchyard_engine::Definition>(v).unwrap())
            .unwrap_err()
    };
    let e = refuse(json!({"kind": "fallback", "product": P, "tag": "x",
        "options": [{"provider": "f", "type": "feature", "tag": "nope"}]}));
    assert_eq!(e.path, "fallbacks.x.options[0].tag");
    let e = refuse(json!({"kind": "fallback", "product": P, "tag": "x",
        "options": [{"provider": "f", "type": "feature", "tag": "via-a", "app": "a"}]}));
    assert_eq!(e.path, "fallbacks.x.options[0].app");
    let e = refuse(json!({"kind": "fallback", "product": P, "tag": "x",
        "options": [{"provider": "f", "type": "feature", "tag": "via-a", "retries": 2}]}));
    assert_eq!(e.path, "fallbacks.x.options[0].retries");
    let e = refuse(json!({"kind": "fallback", "product": P, "tag": "x",
        "options": [{"provider": "f"}]}));
    assert_eq!(e.path, "fallbacks.x.options[0].app");
}

#[tokio::test]
async fn a_feature_option_that_would_run_itself_is_refused() {
    let (yard, _a, _b) = two_apps(Arc::new(ManualClock::new()));
    yard.fallback()
        .define(P, "f")
        .provider("a")
        .action("go")
        .create()
        .unwrap();
    yard.feature()
        .define(P, "uses-f")
        .step_fallback("pay", "f")
        .create()
        .unwrap();
    // f's new option runs uses-f, whose step runs f: a cycle.
    let e = yard
        .fallback()
        .define(P, "f")
        .provider("a")
        .action("go")
        .provider("loop")
        .feature("uses-f")
        .update()
        .unwrap_err();
    assert_eq!(e.path, "fallbacks.f.options");
    assert!(
        e.reason
            .contains("fallbacks.f → features.uses-f → fallbacks.f"),
        "{e}"
    );
}

// ---- reference parity: option state in fetch ----

#[tokio::test]
async fn fetch_shows_each_options_live_state_per_env_and_options_set_their_check_interval() {
    let clock = Arc::new(ManualClock::new());
    let (yard, a, b) = two_apps(clock.clone());
    yard.healthcheck()
        .define(P, "a-up")
        .app("a")
        .action("ping")
        .input("dev", json!({}))
        .input("prod", json!({}))
        .interval(Duration::from_secs(60))
        .create()
        .unwrap();
    yard.fallback()
        .define(P, "f")
        .provider("a")
        .action("go")
        .healthcheck("a-up")
        .check_interval(Duration::from_secs(10))
        .provider("b")
        .action("go")
        .create()
        .unwrap();
    a.behave(|req| {
        if req.env == "prod" {
            Err(AttemptError::new(
                ErrorClass::Unavailable,
                FailureKind::Provider,
                "prod down",
            ))
        } else {
            Ok(json!({}))
        }
    });
    b.succeed_with(json!({}));
    assert_eq!(yard.run_due_healthchecks().await, 2);
    let live = yard.fetch_live(P, Kind::Fallback, "f", &[]).unwrap();
    assert_eq!(live.states.keys().collect::<Vec<_>>(), ["dev", "prod"]);
    let dev = &live.states["dev"][0];
    assert_eq!(dev.last_available, Some(true));
    assert_eq!(dev.status, HealthStatus::Healthy);
    assert!(dev.last_checked_unix_ms.is_some());
    assert_eq!(
        dev.check_interval_ms,
        Some(10_000),
        "the option's shorter interval"
    );
    assert_eq!(live.states["prod"][0].last_available, Some(false));
    assert_eq!(
        live.states["prod"][1].last_available, None,
        "b has no healthcheck"
    );
    // The JSON: the definition, each option with `states` by env.
    let v = live.to_json();
    assert_eq!(v["options"][0]["provider"], "a");
    assert_eq!(v["options"][0]["states"]["prod"]["last_available"], false);
    assert_eq!(
        v["options"][0]["states"]["dev"]["check_interval_ms"],
        10_000
    );
    // One env only.
    let one = yard
        .fetch_live(P, Kind::Fallback, "f", &["dev".into()])
        .unwrap();
    assert_eq!(one.states.len(), 1);
    // The check runs every 10 s now, not 60.
    clock.advance(Duration::from_secs(12));
    assert_eq!(yard.run_due_healthchecks().await, 2);
    // Without the option's interval it is back to 60 s.
    yard.fallback()
        .define(P, "f")
        .provider("a")
        .action("go")
        .healthcheck("a-up")
        .provider("b")
        .action("go")
        .update()
        .unwrap();
    // (the round already scheduled still runs; the next is 60 s later)
    clock.advance(Duration::from_secs(12));
    assert_eq!(yard.run_due_healthchecks().await, 2);
    clock.advance(Duration::from_secs(12));
    assert_eq!(yard.run_due_healthchecks().await, 0);
    let all = yard.fetch_all_live(P, None, &["dev".into()]);
    assert_eq!(all.len(), 2);
    assert!(
        all.iter()
            .any(|d| d.definition.kind() == Kind::Healthcheck && d.states.is_empty())
    );
}

// ---- config reload: a batch of changes, all or none ----

#[tokio::test]
async fn a_batch_applies_in_any_order_or_not_at_all_and_keeps_breaker_state() {
    use switchyard_engine::Change;
    let clock = Arc::new(ManualClock::new());
    let (yard, a, _b) = two_apps(clock);
    yard.fallback()
        .define(P, "f")
        .provider("a")
        .action("go")
        .create()
        .unwrap();
    // Open a/go's breaker.
    a.fail(ErrorClass::Unavailable);
    for _ in 0..6 {
        let _ = run_f(&yard, json!({})).await;
    }
    assert_eq!(
        yard.fallback().providers(P, "dev", "f").unwrap()[0]
            .breaker
            .state,
        BreakerState::Open
    );
    let def = |v: Value| -> switchyard_engine::Definition { serde_json::from_value(v).unwrap() };
    // The fallback names a healthcheck that comes later in the batch.
    let f2 = def(
        json!({"kind": "fallback", "product": P, "tag": "f", "options": [
        {"provider": "a", "app": "a", "action": "go", "healthcheck": "hc"},
        {"provider": "b", "app": "b", "action": "go"}]}),
    );
    let hc = def(
        json!({"kind": "healthcheck", "product": P, "tag": "hc", "app": "a",
        "action": "ping", "input": {"dev": {}}}),
    );
    // A bad batch: one refusal and nothing changes.
    let bad = def(
        json!({"kind": "quota", "product": P, "tag": "q", "providers": [
        {"provider": "x", "app": "nope", "action": "go"}]}),
    );
    let e = yard
        .apply(vec![
            Change::Put(Box::new(f2.clone())),
            Change::Put(Box::new(hc.clone())),
            Change::Put(Box::new(bad)),
        ])
        .unwrap_err();
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].path, "quotas.q.providers[0].app");
    assert!(yard.fetch(P, Kind::Healthcheck, "hc").is_none());
    assert_eq!(yard.fallback().fetch(P, "f").unwrap().meta().tag, "f");
    assert_ne!(yard.fetch(P, Kind::Fallback, "f").unwrap(), f2);
    // The good batch applies; the breaker of a/go is still open.
    yard.apply(vec![
        Change::Put(Box::new(f2.clone())),
        Change::Put(Box::new(hc)),
    ])
    .unwrap();
    assert_eq!(yard.fetch(P, Kind::Fallback, "f").unwrap(), f2);
    let s = yard.fallback().providers(P, "dev", "f").unwrap();
    assert_eq!(s[0].breaker.state, BreakerState::Open, "state kept");
    assert_eq!(
        yard.run_due_healthchecks().await,
        1,
        "the new check is tracked"
    );
    // Deletes too, in any order: the fallback still names hc.
    yard.apply(vec![
        Change::Delete {
            product: P.into(),
            kind: Kind::Healthcheck,
            tag: "hc".into(),
        },
        Change::Delete {
            product: P.into(),
            kind: Kind::Fallback,
            tag: "f".into(),
        },
    ])
    .unwrap();
    assert!(yard.fetch_all(P, None).is_empty());
}

/// Run fallback `f` of product `P` in `dev`.
async fn run_f(
    yard: &Switchyard,
    input: Value,
) -> Result<switchyard_engine::RunResult, switchyard_engine::RunError> {
    yard.run(Kind::Fallback, P, "dev", "f", input, RunOptions::default())
        .await
}

#[tokio::test]
async fn operators_drain_and_restore_providers_and_force_breakers() {
    let w = world();
    pay_fallback(&w, 0);
    let r = run_pay(&w).await.unwrap();
    assert_eq!(r.provider.as_deref(), Some("stripe"));
    assert!(w.yard.drain(P, "stripe"));
    assert!(!w.yard.drain(P, "stripe"), "already drained");
    let r = run_pay(&w).await.unwrap();
    assert_eq!(r.provider.as_deref(), Some("adyen"));
    assert_eq!(r.trace.skipped[0].reason, SkipReason::Drained);
    let states = w.yard.fallback().providers(P, "dev", "pay").unwrap();
    assert!(states[0].drained && !states[1].drained);
    assert!(w.yard.restore(P, "stripe"));
    assert_eq!(
        run_pay(&w).await.unwrap().provider.as_deref(),
        Some("stripe")
    );

    // Forced open: skipped however healthy; forced closed: tried however
    // failing, and nothing it does opens it; released: its own again.
    let key = format!("{P}/dev/stripe/charge");
    use switchyard_engine::Force;
    assert_eq!(w.yard.force_breaker(&key, Force::Open), BreakerState::Open);
    let r = run_pay(&w).await.unwrap();
    assert_eq!(r.provider.as_deref(), Some("adyen"));
    assert!(matches!(
        &r.trace.skipped[0].reason,
        SkipReason::BreakerOpen { last_error: Some(e), .. } if e.contains("forced open")
    ));
    w.yard.force_breaker(&key, Force::Closed);
    w.stripe.fail(ErrorClass::Unavailable);
    for _ in 0..20 {
        run_pay(&w).await.unwrap();
    }
    let states = w.yard.fallback().providers(P, "dev", "pay").unwrap();
    assert_eq!(states[0].breaker.state, BreakerState::Closed);
    assert_eq!(states[0].breaker.forced, Some(Force::Closed));
    w.yard.force_breaker(&key, Force::Release);
    for _ in 0..10 {
        run_pay(&w).await.unwrap();
    }
    let states = w.yard.fallback().providers(P, "dev", "pay").unwrap();
    assert_eq!(
        states[0].breaker.state,
        BreakerState::Open,
        "its own judgement again"
    );
    assert_eq!(states[0].breaker.forced, None);

    // Only breakers that exist can be named: an option's default key in an
    // env the product serves, or a key a run made.
    assert!(w.yard.breaker_exists(&key));
    assert!(w.yard.breaker_exists(&format!("{P}/dev/adyen/charge")));
    assert!(!w.yard.breaker_exists(&format!("{P}/dev/stripe/made-up")));
    assert!(!w.yard.breaker_exists(&format!("{P}/nowhere/stripe/charge")));
    assert!(!w.yard.breaker_exists("other/dev/stripe/charge"));
    assert!(!w.yard.breaker_exists("no-slashes"));

    // A force outlives the breaker bound: ten thousand other breakers made
    // after it do not evict it.
    w.yard.force_breaker(&key, Force::Open);
    for i in 0..switchyard_engine::MAX_BREAKERS + 10 {
        w.yard.apply_shared_breaker(
            &format!("{P}/dev/made/{i}"),
            &switchyard_engine::SharedBreaker {
                open: true,
                episode: 1,
                open_timeout_ms: 1,
                requests: 1,
                last_error: None,
            },
        );
    }
    assert_eq!(w.yard.forces(), vec![(key.clone(), Force::Open)]);
    let states = w.yard.fallback().providers(P, "dev", "pay").unwrap();
    assert_eq!(states[0].breaker.forced, Some(Force::Open));
}

#[tokio::test]
async fn a_mapping_that_would_grow_too_large_rejects_the_run_before_any_call() {
    let w = world();
    w.yard
        .fallback()
        .define(P, "big")
        .input("text", FieldType::String)
        .provider("stripe")
        .action("charge")
        .map_input(json!({"text": "$Input{text}".repeat(500)}))
        .provider("adyen")
        .action("charge")
        .create()
        .unwrap();
    let e = w
        .yard
        .fallback()
        .run(
            P,
            "dev",
            "big",
            json!({"text": "y".repeat(100 * 1024)}),
            RunOptions::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Rejected, "{e:?}");
    assert!(
        e.message.contains("fallbacks.big.options[0].input.text"),
        "{}",
        e.message
    );
    assert_eq!(w.stripe.call_count() + w.adyen.call_count(), 0);

    // A definition that would hold more references than a mapping may is
    // refused when it is defined, naming the field.
    let err = w
        .yard
        .fallback()
        .define(P, "huge")
        .provider("stripe")
        .action("charge")
        .map_input(json!({"to": "$Input{to}".repeat(1_001)}))
        .create()
        .unwrap_err();
    assert!(err.to_string().contains("at most 1000 references"), "{err}");
}

/// Each option's scorecard counts what its provider did over the window:
/// success rate over provider-caused outcomes, latency percentiles from
/// the attempts' own durations, and failures by class.
#[tokio::test]
async fn scorecards_show_each_providers_recent_success_rate_and_latency() {
    let w = world();
    pay_fallback(&w, 0);
    let (clock, mut n) = (w.clock.clone(), 0u32);
    w.stripe.behave(move |_| {
        n += 1;
        if n % 4 == 0 {
            clock.advance(Duration::from_millis(200));
            Err(AttemptError::new(
                ErrorClass::Unavailable,
                FailureKind::Provider,
                "503",
            ))
        } else {
            clock.advance(Duration::from_millis(10));
            Ok(json!({"app": "stripe"}))
        }
    });
    w.adyen.succeed_with(json!({"app": "adyen"}));
    for _ in 0..40 {
        run_pay(&w).await.unwrap();
    }
    let states = w
        .yard
        .provider_states(P, "dev", Kind::Fallback, "pay")
        .unwrap();
    let stripe = states[0].scorecard.clone().expect("stripe was tried");
    assert_eq!((stripe.ok, stripe.failed, stripe.samples), (30, 10, 40));
    assert_eq!(stripe.success_rate, Some(0.75));
    assert_eq!(stripe.classes.get("unavailable"), Some(&10));
    let (p50, p99) = (stripe.p50_ms.unwrap(), stripe.p99_ms.unwrap());
    assert!((10.0..=12.0).contains(&p50), "p50 {p50}");
    assert!((200.0..=240.0).contains(&p99), "p99 {p99}");
    assert_eq!(stripe.in_flight, 0);
    let adyen = states[1]
        .scorecard
        .clone()
        .expect("adyen served the failovers");
    assert_eq!((adyen.ok, adyen.success_rate), (10, Some(1.0)));
    assert!(states[2..].iter().all(|s| s.scorecard.is_none()));

    // Past the window it starts over.
    w.clock
        .advance(Duration::from_millis(switchyard_engine::WINDOW_MS + 10_000));
    let states = w
        .yard
        .provider_states(P, "dev", Kind::Fallback, "pay")
        .unwrap();
    let stripe = states[0].scorecard.clone().unwrap();
    assert_eq!((stripe.samples, stripe.success_rate), (0, None));
}

fn adaptive(mode: switchyard_engine::AdaptiveMode) -> switchyard_engine::AdaptiveConfig {
    switchyard_engine::AdaptiveConfig {
        mode,
        ..switchyard_engine::AdaptiveConfig::new(switchyard_engine::Strategy::SuccessRate)
    }
}

/// A 70/30 quota whose first provider fails 40 % of its calls (below its
/// breaker's 50 % threshold); `adaptive` as given.
fn degrading_quota(w: &World, a: Option<switchyard_engine::AdaptiveConfig>) {
    let mut q = w
        .yard
        .quota()
        .define(P, "split")
        .provider("stripe")
        .action("charge")
        .weight(70)
        .provider("adyen")
        .action("charge")
        .weight(30);
    if let Some(a) = a {
        q = q.adaptive(a);
    }
    q.create().unwrap();
    let mut n = 0u32;
    w.stripe.behave(move |_| {
        n += 1;
        if n % 5 < 2 {
            Err(AttemptError::new(
                ErrorClass::Unavailable,
                FailureKind::Provider,
                "503",
            ))
        } else {
            Ok(json!({"app": "stripe"}))
        }
    });
    w.adyen.succeed_with(json!({"app": "adyen"}));
}

/// Which provider each run tried first, for `runs` runs (with the last
/// run's trace).
async fn first_tries(w: &World, runs: usize) -> (usize, usize, switchyard_engine::Trace) {
    let (mut a, mut b) = (0, 0);
    let mut last = None;
    for _ in 0..runs {
        let r = w
            .yard
            .quota()
            .run(P, "dev", "split", json!({}), RunOptions::default())
            .await
            .unwrap();
        match r.trace.attempts[0].provider.as_str() {
            "stripe" => a += 1,
            _ => b += 1,
        }
        last = Some(r.trace);
    }
    (a, b, last.unwrap())
}

#[tokio::test]
async fn success_rate_routing_moves_traffic_off_a_degraded_provider() {
    // Static weights keep sending it 70 %.
    let w = world();
    degrading_quota(&w, None);
    let (a, b, _) = first_tries(&w, 400).await;
    assert_eq!((a, b), (280, 120));

    // Adaptive: once it has its samples, its share falls under 25 % (the
    // exploration share keeps it tried).
    let w = world();
    degrading_quota(&w, Some(adaptive(switchyard_engine::AdaptiveMode::Live)));
    let _ = first_tries(&w, 100).await;
    let (a, b, trace) = first_tries(&w, 300).await;
    let share = a as f64 / (a + b) as f64;
    assert!(share < 0.25, "stripe still took {share}");
    assert!(a > 0, "exploration keeps stripe tried");
    let t = trace.adaptive.expect("the trace explains the choice");
    let stripe = &t.scores[0];
    assert!(stripe.success_rate.unwrap() < 0.7, "{stripe:?}");
    assert!(stripe.adaptive_weight < 1.0, "{stripe:?}");
    assert_eq!(t.scores[1].adaptive_weight, 30.0);
}

#[tokio::test]
async fn shadow_mode_records_the_choice_and_moves_nothing() {
    let w = world();
    degrading_quota(&w, Some(adaptive(switchyard_engine::AdaptiveMode::Shadow)));
    let (a, b, _) = first_tries(&w, 100).await;
    assert_eq!((a, b), (70, 30));
    let mut disagreed = 0;
    for _ in 0..100 {
        let r = w
            .yard
            .quota()
            .run(P, "dev", "split", json!({}), RunOptions::default())
            .await
            .unwrap();
        let t = r.trace.adaptive.unwrap();
        assert_eq!(
            t.configured.as_deref(),
            Some(r.trace.attempts[0].provider.as_str()),
            "shadow routes as configured"
        );
        disagreed += usize::from(t.configured.as_deref() != Some(t.chosen.as_str()));
    }
    assert!(disagreed > 40, "the adaptive choice differs: {disagreed}");
}

#[tokio::test]
async fn healthy_providers_keep_their_split_and_a_drained_one_is_never_chosen() {
    let w = world();
    w.yard
        .quota()
        .define(P, "split")
        .provider("stripe")
        .action("charge")
        .weight(70)
        .provider("adyen")
        .action("charge")
        .weight(30)
        .adaptive(adaptive(switchyard_engine::AdaptiveMode::Live))
        .create()
        .unwrap();
    w.stripe.succeed_with(json!({"app": "stripe"}));
    w.adyen.succeed_with(json!({"app": "adyen"}));
    let (a, b, _) = first_tries(&w, 2000).await;
    let share = a as f64 / (a + b) as f64;
    assert!((0.69..=0.71).contains(&share), "{share}");
    w.yard.drain(P, "stripe");
    let (a, _, _) = first_tries(&w, 200).await;
    assert_eq!(a, 0, "a drained provider is never chosen");

    // Out of range settings are refused, naming the field.
    let mut bad = adaptive(switchyard_engine::AdaptiveMode::Live);
    bad.explore_percent = 60;
    let e = w
        .yard
        .quota()
        .define(P, "other")
        .provider("stripe")
        .action("charge")
        .adaptive(bad)
        .create()
        .unwrap_err();
    assert!(e.path.ends_with("adaptive.explore_percent"), "{e}");
}

#[tokio::test]
async fn latency_routing_prefers_the_faster_provider_and_explains_it() {
    let w = world();
    w.yard
        .quota()
        .define(P, "split")
        .provider("stripe")
        .action("charge")
        .weight(50)
        .provider("adyen")
        .action("charge")
        .weight(50)
        .adaptive(switchyard_engine::AdaptiveConfig::new(
            switchyard_engine::Strategy::Latency,
        ))
        .create()
        .unwrap();
    let clock = w.clock.clone();
    w.stripe.behave(move |_| {
        clock.advance(Duration::from_millis(900));
        Ok(json!({"app": "stripe"}))
    });
    let clock = w.clock.clone();
    w.adyen.behave(move |_| {
        clock.advance(Duration::from_millis(100));
        Ok(json!({"app": "adyen"}))
    });
    // Until both have their samples, the weights split it.
    let _ = first_tries(&w, 100).await;
    let (a, b, trace) = first_tries(&w, 400).await;
    let share = a as f64 / (a + b) as f64;
    assert!(share < 0.06, "the slow one still took {share}");
    assert!(a > 0, "exploration keeps it tried");
    let t = trace.adaptive.expect("explained");
    assert_eq!(t.strategy, switchyard_engine::Strategy::Latency);
    let (slow, fast) = (&t.scores[0], &t.scores[1]);
    assert!(slow.demoted && slow.p95_ms.unwrap() > 700.0, "{slow:?}");
    assert!(slow.note.contains("slower"), "{}", slow.note);
    assert!(!fast.demoted && fast.p95_ms.unwrap() < 130.0, "{fast:?}");
}

/// A fallback whose primary fails 40 % of its calls (below its breaker's
/// threshold) with `elimination`: the primary is ejected and demoted
/// behind the backup, explained in the trace; it is never ejected when it
/// is the only one left.
#[tokio::test]
async fn elimination_demotes_a_sick_primary_before_its_breaker_would_open() {
    let w = world();
    w.yard
        .fallback()
        .define(P, "pay")
        .provider("stripe")
        .action("charge")
        .provider("adyen")
        .action("charge")
        .adaptive(switchyard_engine::AdaptiveConfig::new(
            switchyard_engine::Strategy::Elimination,
        ))
        .create()
        .unwrap();
    let mut n = 0u32;
    w.stripe.behave(move |_| {
        n += 1;
        if n % 5 < 2 {
            Err(AttemptError::new(
                ErrorClass::Unavailable,
                FailureKind::Provider,
                "503",
            ))
        } else {
            Ok(json!({"app": "stripe"}))
        }
    });
    w.adyen.succeed_with(json!({"app": "adyen"}));
    let run = || async {
        w.yard
            .fallback()
            .run(P, "dev", "pay", json!({}), RunOptions::default())
            .await
            .unwrap()
    };
    let mut first_stripe = 0;
    let mut ejected_trace = None;
    for _ in 0..100 {
        let r = run().await;
        if r.trace.attempts[0].provider == "stripe" {
            first_stripe += 1;
        } else if ejected_trace.is_none() {
            ejected_trace = r.trace.adaptive.clone();
        }
        w.clock.advance(Duration::from_millis(100));
    }
    assert!(
        first_stripe < 40,
        "stripe still went first {first_stripe} times"
    );
    let t = ejected_trace.expect("the primary was demoted");
    assert_eq!(t.chosen, "adyen");
    let stripe = &t.scores[0];
    assert!(stripe.demoted, "{stripe:?}");
    assert!(stripe.score.unwrap() < 0.8 && stripe.ejected_for_ms.unwrap() > 0);
    assert!(stripe.note.contains("ejected"), "{}", stripe.note);
    let states = w
        .yard
        .provider_states(P, "dev", Kind::Fallback, "pay")
        .unwrap();
    assert_eq!(
        states[0].breaker.state,
        switchyard_engine::BreakerState::Closed,
        "the breaker never opened"
    );

    // With the backup drained, the sick primary is the last one left: it
    // is used, not ejected.
    w.yard.drain(P, "adyen");
    for _ in 0..5 {
        let trace = match w
            .yard
            .fallback()
            .run(P, "dev", "pay", json!({}), RunOptions::default())
            .await
        {
            Ok(r) => r.trace,
            Err(e) => *e.trace.unwrap(),
        };
        assert_eq!(trace.attempts[0].provider, "stripe");
    }
}

#[tokio::test]
async fn elimination_never_ejects_the_last_provider_of_a_quota() {
    let w = world();
    w.yard
        .quota()
        .define(P, "split")
        .provider("stripe")
        .action("charge")
        .weight(70)
        .provider("adyen")
        .action("charge")
        .weight(30)
        .adaptive(switchyard_engine::AdaptiveConfig::new(
            switchyard_engine::Strategy::Elimination,
        ))
        .create()
        .unwrap();
    // Both fail half their calls: only one may be out at a time.
    for a in [&w.stripe, &w.adyen] {
        let mut n = 0u32;
        a.behave(move |_| {
            n += 1;
            if n.is_multiple_of(2) {
                Err(AttemptError::new(
                    ErrorClass::Unavailable,
                    FailureKind::Provider,
                    "503",
                ))
            } else {
                Ok(json!({}))
            }
        });
    }
    for _ in 0..200 {
        let r = w
            .yard
            .quota()
            .run(P, "dev", "split", json!({}), RunOptions::default())
            .await;
        let t = match &r {
            Ok(r) => r.trace.adaptive.clone(),
            Err(e) => e.trace.as_ref().and_then(|t| t.adaptive.clone()),
        }
        .expect("explained");
        let out = t.scores.iter().filter(|s| s.demoted).count();
        assert!(out <= 1, "both ejected: {t:?}");
    }
}

/// Rules on provider errors (`on = [...]`) and hedged requests.
mod rules_and_hedging {
    use super::*;
    use switchyard_engine::{
        ActionInfo, Adapter, AppInfo, BoxFuture, CallRequest, CallResponse, Clock, ErrorRule,
        HedgeConfig, RuleAction,
    };

    fn rule(status: &[u16], code: Option<&str>, then: RuleAction) -> ErrorRule {
        ErrorRule {
            status: status.to_vec(),
            code: code.map(str::to_string),
            class: None,
            then,
            cooldown_ms: None,
        }
    }

    fn failing(status: u16, code: &str, class: ErrorClass) -> AttemptError {
        let mut e = AttemptError::new(class, FailureKind::Provider, format!("{status} {code}"));
        e.status = Some(status);
        e.code = Some(code.into());
        e
    }

    async fn run(w: &World) -> Result<switchyard_engine::RunResult, switchyard_engine::RunError> {
        w.yard
            .fallback()
            .run(P, "dev", "pay", json!({}), RunOptions::default())
            .await
    }

    #[tokio::test]
    async fn a_stop_rule_ends_the_run_and_names_itself() {
        let w = world();
        w.yard
            .fallback()
            .define(P, "pay")
            .provider("stripe")
            .action("refund")
            .provider("adyen")
            .action("refund")
            .on(rule(&[], Some("card_declined"), RuleAction::Stop))
            .on(rule(&[402], None, RuleAction::Stop))
            .create()
            .unwrap();
        w.stripe
            .behave(|_| Err(failing(402, "card_declined", ErrorClass::Rejected)));
        w.adyen.succeed_with(json!({"app": "adyen"}));
        let e = run(&w).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::Rejected, "{e:?}");
        assert!(e.message.contains("on[0]"), "{}", e.message);
        let t = e.trace.unwrap();
        assert_eq!(t.attempts.len(), 1);
        assert!(
            t.attempts[0]
                .rule
                .as_deref()
                .unwrap()
                .contains("code card_declined → stop")
        );
        // Not the caller's fault: the run says `stopped`.
        w.stripe
            .behave(|_| Err(failing(402, "out_of_credit", ErrorClass::Unavailable)));
        let e = run(&w).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::Stopped, "{e:?}");
        assert_eq!(w.adyen.call_count(), 0);
    }

    #[tokio::test]
    async fn failover_and_cooldown_rules_move_on_and_pause_the_app() {
        let w = world();
        let mut cool = rule(&[402], None, RuleAction::Cooldown);
        // Longer than the app's `max_cooldown_ms` (60 s, the cap on what
        // a provider may ask): an operator's rule is not capped.
        cool.cooldown_ms = Some(600_000);
        w.yard
            .fallback()
            .define(P, "pay")
            .provider("stripe")
            .action("refund")
            .provider("adyen")
            .action("refund")
            .on(cool)
            .create()
            .unwrap();
        // A 402 the adapter calls `rejected` would stop the run; the rule
        // fails over and pauses stripe.
        w.stripe
            .behave(|_| Err(failing(402, "insufficient_funds", ErrorClass::Rejected)));
        w.adyen.succeed_with(json!({"app": "adyen"}));
        let r = run(&w).await.unwrap();
        assert_eq!(r.provider.as_deref(), Some("adyen"));
        assert!(
            r.trace.attempts[0]
                .rule
                .as_deref()
                .unwrap()
                .contains("cool down 600000 ms")
        );
        let calls = w.stripe.call_count();
        let r = run(&w).await.unwrap();
        assert_eq!(r.provider.as_deref(), Some("adyen"));
        assert_eq!(w.stripe.call_count(), calls, "stripe is paused");
        // After the pause it is tried again.
        w.stripe.succeed_with(json!({"app": "stripe"}));
        w.clock.advance(Duration::from_millis(300_000));
        let r = run(&w).await.unwrap();
        assert_eq!(
            r.provider.as_deref(),
            Some("adyen"),
            "still paused at 5 min"
        );
        w.clock.advance(Duration::from_millis(300_001));
        let r = run(&w).await.unwrap();
        assert_eq!(r.provider.as_deref(), Some("stripe"));
    }

    #[tokio::test]
    async fn a_retry_rule_retries_what_the_class_would_not_and_the_option_rule_wins() {
        let w = world();
        w.yard
            .fallback()
            .define(P, "pay")
            .provider("stripe")
            .action("refund")
            .retries(1)
            .provider_on(rule(&[400], Some("lock_timeout"), RuleAction::Retry))
            .provider("adyen")
            .action("refund")
            .on(rule(&[400], None, RuleAction::Stop))
            .create()
            .unwrap();
        let mut n = 0;
        w.stripe.behave(move |_| {
            n += 1;
            if n == 1 {
                Err(failing(400, "lock_timeout", ErrorClass::Rejected))
            } else {
                Ok(json!({"app": "stripe"}))
            }
        });
        let r = run(&w).await.unwrap();
        assert_eq!(r.provider.as_deref(), Some("stripe"));
        assert_eq!(r.trace.attempts.len(), 2);
        let said = r.trace.attempts[0].rule.clone().unwrap();
        assert!(said.starts_with("fallbacks.pay.options[0].on[0]"), "{said}");
        // Another 400: the definition's rule stops it.
        w.stripe
            .behave(|_| Err(failing(400, "parameter_invalid", ErrorClass::Rejected)));
        let e = run(&w).await.unwrap_err();
        assert!(e.message.contains("fallbacks.pay.on[0]"), "{}", e.message);
    }

    #[tokio::test]
    async fn no_rule_moves_an_ambiguous_charge_to_another_app() {
        let w = world();
        let mut any = rule(&[], None, RuleAction::Failover);
        any.class = Some(ErrorClass::Ambiguous);
        w.yard
            .fallback()
            .define(P, "pay")
            .provider("stripe")
            .action("charge")
            .provider("adyen")
            .action("charge")
            .on(any)
            .create()
            .unwrap();
        w.stripe.behave(|_| {
            Err(AttemptError::new(
                ErrorClass::Ambiguous,
                FailureKind::Provider,
                "connection reset after the request was sent",
            ))
        });
        w.adyen.succeed_with(json!({"app": "adyen"}));
        let e = run(&w).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::Ambiguous);
        assert_eq!(w.adyen.call_count(), 0, "never a second app");
        let said = e.trace.unwrap().attempts[0].rule.clone().unwrap();
        assert!(said.contains("not applied"), "{said}");
    }

    #[tokio::test]
    async fn bad_rules_and_hedging_an_unsafe_action_are_refused() {
        let w = world();
        let e = w
            .yard
            .fallback()
            .define(P, "pay")
            .provider("stripe")
            .action("refund")
            .on(rule(&[], None, RuleAction::Stop))
            .create()
            .unwrap_err();
        assert_eq!(e.path, "fallbacks.pay.on[0]");
        let e = w
            .yard
            .fallback()
            .define(P, "pay")
            .provider("stripe")
            .action("charge")
            .provider_hedge(HedgeConfig {
                delay_ms: 100,
                delay: None,
                max_extra: 1,
                to: switchyard_engine::HedgeTo::Same,
            })
            .create()
            .unwrap_err();
        assert_eq!(e.path, "fallbacks.pay.options[0].hedge");
        assert!(e.reason.contains("not idempotent"), "{e}");
    }

    /// An app whose calls take the times in `script`, in order, on a
    /// parked clock (the last repeats).
    struct Timed {
        info: AppInfo,
        clock: Arc<ManualClock>,
        script: std::sync::Mutex<Vec<u64>>,
        started: std::sync::atomic::AtomicUsize,
        finished: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl Adapter for Timed {
        fn info(&self) -> &AppInfo {
            &self.info
        }
        fn call(&self, _r: CallRequest) -> BoxFuture<'_, Result<CallResponse, AttemptError>> {
            let n = self
                .started
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let ms = {
                let s = self.script.lock().unwrap();
                s.get(n).or(s.last()).copied().unwrap_or(10)
            };
            let timer = self.clock.timer(Duration::from_millis(ms));
            let finished = self.finished.clone();
            Box::pin(async move {
                timer.await;
                finished.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Ok(CallResponse {
                    output: json!({"took": ms}),
                })
            })
        }
    }

    fn timed_world(
        script: &[u64],
        budget: Option<BudgetConfig>,
    ) -> (Switchyard, Arc<ManualClock>, Arc<Timed>) {
        let clock = Arc::new(ManualClock::parked());
        let mut b = Switchyard::builder().clock(clock.clone()).seed(3);
        if let Some(budget) = budget {
            b = b.budget(budget);
        }
        let yard = b.build();
        let app = Arc::new(Timed {
            info: AppInfo {
                name: "lookup".into(),
                version: "1".into(),
                actions: vec![ActionInfo {
                    name: "get".into(),
                    description: String::new(),
                    input_schema: json!({}),
                    idempotency: Idempotency::Safe,
                }],
            },
            clock: clock.clone(),
            script: std::sync::Mutex::new(script.to_vec()),
            started: Default::default(),
            finished: Default::default(),
        });
        yard.install_app(P, "lookup", "dev", app.clone());
        yard.fallback()
            .define(P, "get")
            .provider("lookup")
            .action("get")
            .hedge(HedgeConfig {
                delay_ms: 100,
                delay: None,
                max_extra: 1,
                to: switchyard_engine::HedgeTo::Same,
            })
            .create()
            .unwrap();
        (yard, clock, app)
    }

    /// Run `get` while moving the parked clock 5 ms at a time; the result
    /// and the simulated time it took.
    async fn hedged_run(
        yard: &Switchyard,
        clock: &Arc<ManualClock>,
    ) -> (switchyard_engine::RunResult, Duration) {
        let began = clock.now();
        let y = yard.clone();
        let mut run = tokio::spawn(async move {
            y.fallback()
                .run(P, "dev", "get", json!({}), RunOptions::default())
                .await
        });
        loop {
            tokio::select! {
                r = &mut run => return (r.unwrap().unwrap(), clock.now() - began),
                () = tokio::task::yield_now() => {}
            }
            for _ in 0..20 {
                tokio::task::yield_now().await;
            }
            clock.advance(Duration::from_millis(5));
        }
    }

    #[tokio::test]
    async fn a_slow_safe_call_is_hedged_and_the_first_answer_wins() {
        // The first call takes 2 s, the hedge 10 ms.
        let (yard, clock, app) = timed_world(&[2_000, 10], None);
        let (r, took) = hedged_run(&yard, &clock).await;
        assert!(took < Duration::from_millis(200), "{took:?}");
        assert_eq!(r.output["took"], 10);
        let h = r.trace.attempts[0].hedge.clone().expect("hedged");
        assert_eq!((h.sent, h.won_by, h.cancelled), (1, Some(1), 1));
        assert_eq!(h.delay_ms, 100.0);
        // The slow call was dropped, not answered; nothing failed.
        assert_eq!(app.finished.load(std::sync::atomic::Ordering::SeqCst), 1);
        let s = yard
            .provider_states(P, "dev", Kind::Fallback, "get")
            .unwrap();
        let card = s[0].scorecard.clone().unwrap();
        assert_eq!((card.ok, card.failed, card.in_flight), (1, 0, 0));

        // A fast call sends no hedge.
        let (r, _) = hedged_run(&yard, &clock).await;
        let h = r.trace.attempts[0].hedge.clone().unwrap();
        assert_eq!((h.sent, h.won_by, h.cancelled), (0, Some(0), 0));
    }

    fn timed_app(clock: &Arc<ManualClock>, name: &str, script: &[u64]) -> Arc<Timed> {
        Arc::new(Timed {
            info: AppInfo {
                name: name.into(),
                version: "1".into(),
                actions: vec![ActionInfo {
                    name: "get".into(),
                    description: String::new(),
                    input_schema: json!({}),
                    idempotency: Idempotency::Safe,
                }],
            },
            clock: clock.clone(),
            script: std::sync::Mutex::new(script.to_vec()),
            started: Default::default(),
            finished: Default::default(),
        })
    }

    #[tokio::test]
    async fn a_hedge_to_the_next_option_races_it_and_the_first_to_serve_wins() {
        let clock = Arc::new(ManualClock::parked());
        let yard = Switchyard::builder().clock(clock.clone()).seed(3).build();
        let slow = timed_app(&clock, "slow", &[2_000]);
        let fast = timed_app(&clock, "fast", &[10]);
        yard.install_app(P, "slow", "dev", slow.clone());
        yard.install_app(P, "fast", "dev", fast.clone());
        yard.fallback()
            .define(P, "get")
            .provider("primary")
            .app("slow")
            .action("get")
            .provider("secondary")
            .app("fast")
            .action("get")
            .hedge(HedgeConfig {
                delay_ms: 100,
                delay: None,
                max_extra: 1,
                to: switchyard_engine::HedgeTo::Next,
            })
            .create()
            .unwrap();
        let (r, took) = hedged_run(&yard, &clock).await;
        assert!(took < Duration::from_millis(200), "{took:?}");
        assert_eq!(r.provider.as_deref(), Some("secondary"));
        let h = &r.trace.hedges[0];
        assert_eq!((h.from.as_str(), h.to.as_str()), ("primary", "secondary"));
        assert_eq!(h.won_by.as_deref(), Some("secondary"));
        assert!(h.cancelled, "the slow one was dropped");
        assert_eq!(slow.finished.load(std::sync::atomic::Ordering::SeqCst), 0);
        // The cancelled call counts nowhere; the winner once.
        let s = yard
            .provider_states(P, "dev", Kind::Fallback, "get")
            .unwrap();
        let primary = s[0].scorecard.clone().unwrap_or_else(|| panic!("{s:?}"));
        assert_eq!((primary.ok, primary.failed, primary.in_flight), (0, 0, 0));
        assert_eq!(s[1].scorecard.clone().unwrap().ok, 1);

        // A route whose other option is not safe may not hedge to it.
        let e = yard
            .fallback()
            .define(P, "mixed")
            .provider("primary")
            .app("slow")
            .action("get")
            .hedge(HedgeConfig {
                delay_ms: 100,
                delay: None,
                max_extra: 1,
                to: switchyard_engine::HedgeTo::Next,
            })
            .provider("unsafe")
            .app("slow")
            .action("get")
            .idempotent(false)
            .create()
            .unwrap_err();
        assert!(e.reason.contains("may not be hedged"), "{e}");
    }

    #[tokio::test]
    async fn an_empty_retry_budget_withholds_the_hedge() {
        let budget = BudgetConfig {
            ratio: 0.0,
            min_retries: 0,
            window_ms: 10_000,
        };
        let (yard, clock, app) = timed_world(&[300], Some(budget));
        let (r, took) = hedged_run(&yard, &clock).await;
        assert!(took >= Duration::from_millis(300), "{took:?}");
        let h = r.trace.attempts[0].hedge.clone().unwrap();
        assert_eq!(h.sent, 0);
        assert_eq!(h.withheld.as_deref(), Some("retry budget"));
        assert_eq!(app.started.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
