//! Recorded exchanges: every shipped exchange-world adapter replays its
//! fixtures (`plugins/<name>/fixtures.json`) with no network, and fixtures
//! recorded live from the contract fakes (Stripe and Twilio in Prism, SNS
//! in moto) and scripted providers (Vonage, Slack, the generic http
//! adapter) replay too. `SWITCHYARD_RECORD_FIXTURES=1` writes the fresh
//! recordings over the shipped files.

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use switchyard::fixtures::{Case, Expect, Fixtures};
use switchyard_engine::CallRequest;
use switchyard_runtime::{App, ComponentSource, Credential, Grant, Runtime, Secret};
use switchyard_tests::scripted::{Answer, Scripted};
use switchyard_tests::{artifacts, polyglot, prism_turn, runtime, sns_keys};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Each shipped adapter, its component and its fixture file.
pub(crate) fn shipped() -> Vec<(&'static str, ComponentSource, PathBuf)> {
    let file = |dir: &str| repo().join("plugins").join(dir).join("fixtures.json");
    vec![
        ("http", artifacts::HTTP_PLUGIN.into(), file("http")),
        ("stripe", artifacts::STRIPE_PLUGIN.into(), file("stripe")),
        ("twilio", artifacts::TWILIO_PLUGIN.into(), file("twilio")),
        ("sns", artifacts::SNS_PLUGIN.into(), file("sns")),
        ("paypal", artifacts::PAYPAL_PLUGIN.into(), file("paypal")),
        ("square", artifacts::SQUARE_PLUGIN.into(), file("square")),
        ("adyen", artifacts::ADYEN_PLUGIN.into(), file("adyen")),
        (
            "vonage",
            ComponentSource::File(polyglot("vonage")),
            file("vonage-py"),
        ),
        (
            "slack",
            ComponentSource::File(polyglot("slack")),
            file("slack-js"),
        ),
    ]
}

/// Load `source` as app `name`, granted the fixtures' config.
pub(crate) async fn with_config(
    rt: &Runtime,
    name: &str,
    source: ComponentSource,
    f: &Fixtures,
) -> App {
    rt.load(name, source, granted(f)).await.expect("loads")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_adapters_replay_their_recorded_fixtures() {
    let rt = runtime();
    for (name, source, path) in shipped() {
        let f = Fixtures::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(f.cases.len() >= 3, "{name}: {} cases", f.cases.len());
        assert!(
            f.cases
                .iter()
                .any(|c| matches!(c.expect, Expect::Error { .. })),
            "{name}: record at least one failure"
        );
        let app = with_config(&rt, "fixture", source, &f).await;
        for case in &f.cases {
            case.replay(&app)
                .await
                .unwrap_or_else(|why| panic!("{name} / {}: {why}", case.name));
        }
    }
}

/// A replay notices an adapter that sends something else than recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_names_what_the_adapter_sent_differently() {
    let rt = runtime();
    let path = repo().join("plugins/stripe/fixtures.json");
    let mut f = Fixtures::load(&path).unwrap();
    let app = with_config(&rt, "fixture", artifacts::STRIPE_PLUGIN.into(), &f).await;
    let mut case = f
        .cases
        .iter()
        .find(|c| !c.exchanges.is_empty() && c.action == "create-charge")
        .expect("a create-charge case")
        .clone();
    case.exchanges[0].request.body = case.exchanges[0].request.body.replace("1099", "1100");
    let why = case.replay(&app).await.unwrap_err();
    assert!(why.starts_with("request 1: body"), "{why}");
    case.exchanges.clear();
    let why = case.replay(&app).await.unwrap_err();
    assert!(why.contains("was not recorded"), "{why}");
    // And a different outcome.
    f.cases[0].expect = Expect::Output(json!("something else"));
    let why = f.cases[0].replay(&app).await.unwrap_err();
    assert!(why.starts_with("expected"), "{why}");
}

/// Run each `(name, action, input)` live on `app` and record it.
async fn record(app: &App, f: &mut Fixtures, cases: &[(&str, &str, Value)]) {
    for (name, action, input) in cases {
        let request =
            CallRequest::new(*action, input.clone()).idempotency_key(format!("fixture-{name}"));
        let (result, exchanges) = app.call_recorded(request.clone()).await;
        f.put(Case::recorded(name, &request, exchanges, &result).unwrap());
    }
}

/// A grant of the fixtures' config.
fn granted(f: &Fixtures) -> Grant {
    f.config
        .iter()
        .fold(Grant::new(), |g, (k, v)| g.config(k.clone(), v.clone()))
}

fn grant_for(f: &Fixtures, allow: &str) -> Grant {
    granted(f).allow(allow)
}

fn config(pairs: &[(&str, &str)]) -> Fixtures {
    Fixtures {
        config: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        cases: Vec::new(),
    }
}

const STRIPE: &str = "http://127.0.0.1:12111";
const TWILIO: &str = "http://127.0.0.1:12112";
const SNS: &str = "http://127.0.0.1:12113";
const ACCOUNT_SID: &str = "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

/// Record every shipped adapter's cases live, and replay the recordings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixtures_recorded_from_the_fakes_replay() {
    // Some recorded requests are invalid on purpose: keep them out of the
    // contract tests' windows on the Prism logs.
    let _turn = prism_turn().await;
    let rt = runtime();
    let mut recorded: Vec<(&str, Fixtures)> = Vec::new();

    // Stripe, in Prism.
    let mut f = config(&[("api_base", STRIPE), ("stripe_version", "2023-08-16")]);
    let app = rt
        .load(
            "stripe",
            artifacts::STRIPE_PLUGIN,
            grant_for(&f, STRIPE).credential(Credential::Bearer {
                token: Secret::new("sk_test_switchyard"),
            }),
        )
        .await
        .unwrap();
    record(
        &app,
        &mut f,
        &[
            (
                "payment intent",
                "create-payment-intent",
                json!({"amount": 1099, "currency": "usd", "payment_method_types": ["card"], "metadata": {"order": "42"}}),
            ),
            ("charge", "create-charge", json!({"amount": 1099, "currency": "usd", "source": "tok_visa"})),
            ("refund", "create-refund", json!({"charge": "ch_123", "amount": 500})),
            ("retrieve", "retrieve-payment-intent", json!({"id": "pi_123"})),
            ("ping", "ping", json!({})),
            (
                "bad capture method is rejected by Stripe",
                "create-payment-intent",
                json!({"amount": 1099, "currency": "usd", "capture_method": "sometimes"}),
            ),
            ("refund without a payment is rejected before any request", "create-refund", json!({"amount": 1})),
        ],
    )
    .await;
    recorded.push(("stripe", f));

    // Twilio, in Prism.
    let mut f = config(&[("account_sid", ACCOUNT_SID), ("api_base", TWILIO)]);
    let app = rt
        .load(
            "twilio",
            artifacts::TWILIO_PLUGIN,
            grant_for(&f, TWILIO).credential(Credential::Basic {
                username: ACCOUNT_SID.into(),
                password: Secret::new("twilio-auth-token"),
            }),
        )
        .await
        .unwrap();
    record(
        &app,
        &mut f,
        &[
            ("send", "send-sms", json!({"To": "+15558675310", "From": "+15017122661", "Body": "Your code is 123456"})),
            (
                "send via a messaging service",
                "send-sms",
                json!({"To": "+15558675310", "MessagingServiceSid": "MGaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "Body": "hi"}),
            ),
            ("fetch", "fetch-message", json!({"Sid": "SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"})),
            ("ping", "ping", json!({})),
            ("a malformed Sid is rejected by Twilio", "fetch-message", json!({"Sid": "not-a-sid"})),
        ],
    )
    .await;
    recorded.push(("twilio", f));

    // SNS, in moto (the host signs; the recording holds no signature).
    let (id, secret) = sns_keys();
    let mut f = config(&[("region", "us-east-1"), ("endpoint", SNS)]);
    let app = rt
        .load(
            "sns",
            artifacts::SNS_PLUGIN,
            grant_for(&f, SNS).credential(Credential::AwsSigV4 {
                access_key_id: id,
                secret_access_key: Secret::new(secret),
                session_token: None,
                region: "us-east-1".into(),
                service: "sns".into(),
            }),
        )
        .await
        .unwrap();
    record(
        &app,
        &mut f,
        &[
            ("ping", "ping", json!({})),
            (
                "publish an SMS",
                "publish",
                json!({"PhoneNumber": "+15555550100", "Message": "Your code is 123456",
                       "MessageAttributes": {"AWS.SNS.SMS.SMSType": "Transactional"}}),
            ),
            (
                "a bad number is rejected by SNS",
                "publish",
                json!({"PhoneNumber": "not-a-number", "Message": "x"}),
            ),
        ],
    )
    .await;
    recorded.push(("sns", f));

    // PayPal, in Prism (Orders and Payments), with the host's OAuth2 token
    // from a loopback token endpoint: the recordings hold what the adapter
    // described, never the token.
    let (token_base, _) = crate::contracts::paypal_token_endpoint().await;
    let mut f = config(&[
        ("api_base", crate::contracts::PAYPAL),
        ("payments_base", crate::contracts::PAYPAL_PAYMENTS),
    ]);
    let app = rt
        .load(
            "paypal",
            artifacts::PAYPAL_PLUGIN,
            crate::contracts::paypal_grant(&token_base),
        )
        .await
        .unwrap();
    let order = json!({"amount": "10.00", "currency": "USD", "reference_id": "order-42"});
    record(
        &app,
        &mut f,
        &[
            ("create an order", "create-order", order.clone()),
            (
                "capture it",
                "capture-order",
                json!({"id": "5O190127TN364715T"}),
            ),
            ("charge: create and capture", "charge", order),
            (
                "refund part of a capture",
                "refund",
                json!({"capture_id": "2GG279541U471931P", "amount": "1.00", "currency": "USD"}),
            ),
            (
                "get an order",
                "get-order",
                json!({"id": "5O190127TN364715T"}),
            ),
            ("ping", "ping", json!({})),
            (
                "an order id PayPal does not take is rejected",
                "capture-order",
                json!({"id": "not-an-order-id"}),
            ),
            (
                "an amount that is not a decimal is rejected before any request",
                "create-order",
                json!({"amount": "ten", "currency": "USD"}),
            ),
        ],
    )
    .await;
    recorded.push(("paypal", f));

    // Square, in Prism.
    let mut f = config(&[
        ("api_base", crate::contracts::SQUARE),
        ("location_id", "L88917AVBK2S5"),
    ]);
    let app = rt
        .load(
            "square",
            artifacts::SQUARE_PLUGIN,
            crate::contracts::square_grant(),
        )
        .await
        .unwrap();
    record(
        &app,
        &mut f,
        &[
            (
                "create a payment",
                "create-payment",
                json!({"source_id": "cnon:card-nonce-ok", "amount": 1000, "currency": "USD", "reference_id": "order-42"}),
            ),
            (
                "refund part of it",
                "refund",
                json!({"payment_id": "GQTFp1ZlXdpoW4o6eGiZhbjosiDFf", "amount": 500, "currency": "USD"}),
            ),
            ("get a payment", "get-payment", json!({"id": "GQTFp1ZlXdpoW4o6eGiZhbjosiDFf"})),
            ("ping", "ping", json!({})),
            (
                "a negative amount is rejected before any request",
                "create-payment",
                json!({"source_id": "cnon:card-nonce-ok", "amount": -1, "currency": "USD"}),
            ),
        ],
    )
    .await;
    recorded.push(("square", f));

    // Adyen, in Prism.
    let mut f = config(&[
        ("api_base", crate::contracts::ADYEN),
        ("merchant_account", "AcmeECOM"),
        ("return_url", "https://shop.example.com/return"),
    ]);
    let app = rt
        .load(
            "adyen",
            artifacts::ADYEN_PLUGIN,
            crate::contracts::adyen_grant(),
        )
        .await
        .unwrap();
    let mut short = crate::contracts::adyen_payment();
    short["shopperReference"] = json!("s");
    record(
        &app,
        &mut f,
        &[
            ("a payment", "payments", crate::contracts::adyen_payment()),
            (
                "refund part of it",
                "refund",
                json!({"psp_reference": "993617895204576J", "amount": 500, "currency": "EUR"}),
            ),
            ("ping", "ping", json!({})),
            (
                "a shopper reference Adyen refuses is rejected",
                "payments",
                short,
            ),
        ],
    )
    .await;
    recorded.push(("adyen", f));

    // The generic http adapter, Vonage and Slack against scripted providers.
    let server = Scripted::start().await;
    server.always("/v1/messages", Answer::json(201, json!({"id": "m-1"})));
    server.always("/health", Answer::json(200, json!({"ok": true})));
    server.always(
        "/v1/busy",
        Answer::json(429, json!({"error": "slow down"})).header("retry-after", "2"),
    );
    server.always(
        "/v1/down",
        Answer::json(503, json!({"error": "maintenance"})),
    );
    let actions = r#"[{"name": "send", "method": "POST", "path": "/v1/messages"}, {"name": "busy", "method": "POST", "path": "/v1/busy"}, {"name": "down", "method": "GET", "path": "/v1/down", "idempotent": true}]"#;
    let url = server.url();
    let mut f = config(&[
        ("base_url", &url),
        ("ping_path", "/health"),
        ("idempotency_header", "Idempotency-Key"),
        ("actions", actions),
    ]);
    let app = rt
        .load("http", artifacts::HTTP_PLUGIN, grant_for(&f, &url))
        .await
        .unwrap();
    record(
        &app,
        &mut f,
        &[
            ("send", "send", json!({"to": "+1", "text": "hi"})),
            ("ping", "ping", json!({})),
            ("429 is rate-limited", "busy", json!({})),
            ("503 is unavailable", "down", json!({})),
        ],
    )
    .await;
    recorded.push(("http", f));

    let vonage = Scripted::start().await;
    vonage.always(
        "/v1/messages",
        Answer::json(
            202,
            json!({"message_uuid": "aaaaaaaa-bbbb-4ccc-8ddd-0123456789ab"}),
        ),
    );
    vonage.always(
        "/account/get-balance",
        Answer::json(200, json!({"value": 10.28, "autoReload": false})),
    );
    let vurl = vonage.url();
    let mut f = config(&[("messages_base", &vurl), ("rest_base", &vurl)]);
    let app = rt
        .load("vonage", polyglot("vonage").as_path(), grant_for(&f, &vurl))
        .await
        .unwrap();
    record(
        &app,
        &mut f,
        &[
            (
                "send",
                "send-sms",
                json!({"to": "+14155550100", "from": "Acme", "text": "Your code is 1234"}),
            ),
            ("balance", "get-balance", json!({})),
            ("ping", "ping", json!({})),
            (
                "a bad number is rejected before any request",
                "send-sms",
                json!({"to": "12", "from": "Acme", "text": "x"}),
            ),
        ],
    )
    .await;
    vonage.always(
        "/v1/messages",
        Answer::json(402, json!({"type": "https://developer.vonage.com/api-errors#low-balance", "title": "Low balance"})),
    );
    record(
        &app,
        &mut f,
        &[(
            "out of credit is unavailable",
            "send-sms",
            json!({"to": "+14155550100", "from": "Acme", "text": "x"}),
        )],
    )
    .await;
    recorded.push(("vonage-py", f));

    let slack = Scripted::start().await;
    slack.always(
        "/api/chat.postMessage",
        Answer::json(200, json!({"ok": true, "channel": "C1", "ts": "1.1"})),
    );
    slack.always(
        "/api/auth.test",
        Answer::json(200, json!({"ok": true, "team": "Acme", "user": "bot"})),
    );
    let surl = slack.url();
    let api = format!("{surl}/api");
    let mut f = config(&[("api_base", &api)]);
    let app = rt
        .load("slack", polyglot("slack").as_path(), grant_for(&f, &surl))
        .await
        .unwrap();
    record(
        &app,
        &mut f,
        &[
            (
                "post",
                "post-message",
                json!({"channel": "C1", "text": "disk full"}),
            ),
            ("ping", "ping", json!({})),
        ],
    )
    .await;
    slack.always(
        "/api/chat.postMessage",
        Answer::json(200, json!({"ok": false, "error": "channel_not_found"})),
    );
    record(
        &app,
        &mut f,
        &[(
            "an unknown channel is rejected",
            "post-message",
            json!({"channel": "C9", "text": "x"}),
        )],
    )
    .await;
    recorded.push(("slack-js", f));

    // Every recording replays, with no network.
    let write = std::env::var_os("SWITCHYARD_RECORD_FIXTURES").is_some();
    let all = shipped();
    assert_eq!(
        recorded.len(),
        all.len(),
        "every shipped adapter is recorded"
    );
    for (dir, f) in &recorded {
        let (name, source, path) = all
            .iter()
            .find(|(_, _, p)| p.ends_with(format!("{dir}/fixtures.json")))
            .cloned()
            .unwrap_or_else(|| panic!("no shipped adapter in plugins/{dir}"));
        let app = with_config(&rt, "fixture", source, f).await;
        for case in &f.cases {
            case.replay(&app)
                .await
                .unwrap_or_else(|why| panic!("{name} / {}: {why}", case.name));
        }
        if write {
            f.save(&path).unwrap();
        }
    }
}
