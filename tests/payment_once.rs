//! The review's reproductions of a payment made twice, on the real Stripe
//! adapter against two loopback "accounts" that record every request and
//! its `Idempotency-Key`: after an ambiguous attempt the key stays at the
//! account that may have charged; a finished key replays instead of
//! charging the backup; a refusal whose text has a multi-byte character at
//! the adapter's cut stays a refusal.

use serde_json::json;
use std::time::Duration;
use switchyard_engine::{ErrorCode, RunOptions, Switchyard};
use switchyard_runtime::{Credential, Grant, Runtime, Secret};
use switchyard_tests::scripted::{Answer, Scripted};
use switchyard_tests::{artifacts, runtime};

const P: &str = "payments";
const PATH: &str = "/v1/payment_intents";

fn intent(id: &str) -> Answer {
    Answer::json(
        200,
        json!({"id": id, "object": "payment_intent", "status": "succeeded", "amount": 1099}),
    )
}

/// Keys each account received, in order.
fn keys(account: &Scripted) -> Vec<String> {
    account
        .received()
        .iter()
        .filter_map(|r| r.header("idempotency-key").map(str::to_string))
        .collect()
}

async fn accounts(rt: &Runtime, yard: &Switchyard) -> (Scripted, Scripted) {
    let (main, backup) = (Scripted::start().await, Scripted::start().await);
    for (tag, account) in [("stripe-main", &main), ("stripe-backup", &backup)] {
        let grant = Grant::new()
            .allow(account.url())
            .credential(Credential::Bearer {
                token: Secret::new("sk_test_x"),
            })
            .config("api_base", account.url());
        let app = rt
            .load(tag, artifacts::STRIPE_PLUGIN, grant)
            .await
            .expect("loads");
        yard.install_app(P, tag, "dev", std::sync::Arc::new(app));
    }
    yard.fallback()
        .define(P, "card-payment")
        .provider("main")
        .app("stripe-main")
        .action("create-payment-intent")
        .timeout(Duration::from_millis(1_000))
        .retries(1)
        .provider("backup")
        .app("stripe-backup")
        .action("create-payment-intent")
        .create()
        .unwrap();
    (main, backup)
}

async fn pay(
    yard: &Switchyard,
    key: &str,
) -> Result<switchyard_engine::RunResult, switchyard_engine::RunError> {
    yard.fallback()
        .run(
            P,
            "dev",
            "card-payment",
            json!({"amount": 1099, "currency": "usd"}),
            RunOptions::default().idempotency_key(key),
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ambiguous_charge_stays_at_its_account_and_a_retry_resolves_it_there() {
    let rt = runtime();
    let yard = Switchyard::new();
    let (main, backup) = accounts(&rt, &yard).await;
    // Main answers 200 after 1.5 s; the option waits 1 s.
    main.always(PATH, intent("pi_main"));
    backup.always(PATH, intent("pi_backup"));
    main.set_delay(Duration::from_millis(1_500));
    let e = pay(&yard, "order-901").await.unwrap_err();
    assert_eq!(e.code, ErrorCode::Ambiguous, "{e}");
    let at = e.reconcile.clone().unwrap();
    assert_eq!(
        (at.app.as_str(), at.idempotency_key.as_str()),
        ("stripe-main", "order-901")
    );
    assert_eq!(
        keys(&main),
        ["order-901", "order-901"],
        "retried there, same key"
    );
    assert!(
        backup.received().is_empty(),
        "never sent to a second account"
    );

    // The caller retries the key after main recovered: it goes to main,
    // with the same key (Stripe answers with what it did), not to backup.
    main.set_delay(Duration::ZERO);
    let r = pay(&yard, "order-901").await.unwrap();
    assert_eq!(r.provider.as_deref(), Some("main"));
    assert_eq!(r.trace.pinned_to.as_deref(), Some("stripe-main"));
    assert_eq!(keys(&main), ["order-901"; 3]);
    assert!(backup.received().is_empty());
    // And once answered, the key replays.
    let again = pay(&yard, "order-901").await.unwrap();
    assert!(again.trace.replayed);
    assert_eq!(main.received().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_key_replays_instead_of_charging_the_backup() {
    let rt = runtime();
    let yard = Switchyard::new();
    let (main, backup) = accounts(&rt, &yard).await;
    main.always(PATH, intent("pi_main"));
    backup.always(PATH, intent("pi_backup"));
    let first = pay(&yard, "order-900").await.unwrap();
    assert_eq!(first.output["id"], "pi_main");
    // Main begins failing; the caller, who lost the answer, retries.
    main.always(
        PATH,
        Answer::json(503, json!({"error": {"type": "api_error"}})),
    );
    let retry = pay(&yard, "order-900").await.unwrap();
    assert!(retry.trace.replayed, "{}", retry.trace.render());
    assert_eq!(retry.output["id"], "pi_main");
    assert_eq!(keys(&main), ["order-900"]);
    assert!(backup.received().is_empty(), "charged once, at main");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_with_a_wide_character_at_the_cut_is_still_a_refusal() {
    let rt = runtime();
    let yard = Switchyard::new();
    let (main, backup) = accounts(&rt, &yard).await;
    // A 400 whose text (no Stripe envelope) has `—` across byte 300, where
    // the adapter cuts what it quotes.
    let text = format!("{}— card refused", "x".repeat(298));
    main.always(PATH, Answer::text(400, &text));
    backup.always(PATH, intent("pi_backup"));
    let e = pay(&yard, "order-77").await.unwrap_err();
    assert_eq!(e.code, ErrorCode::Rejected, "{e}");
    assert!(backup.received().is_empty(), "a refusal never fails over");

    // A 503 with `é` at byte 512 fails over, as a 503 does.
    let text = format!("{}é", "y".repeat(511));
    main.always(PATH, Answer::text(503, &text));
    let r = pay(&yard, "order-78").await.unwrap();
    assert_eq!(r.provider.as_deref(), Some("backup"));
}
