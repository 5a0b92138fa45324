//! Provider adapters against third-party fakes of the providers on
//! loopback (`tests/contracts/`): Prism serving Stripe's and Twilio's own
//! OpenAPI documents with request validation, and moto serving SNS with
//! SigV4 verification. Start them with `tests/contracts/fakes.sh start`
//! (`.ci/run` does).
//!
//! Every happy path also checks the fake's own verdict: Prism logs each
//! request as valid or lists its violations.

use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use switchyard_engine::{Adapter, CallRequest, CallResponse, ErrorClass, FailureKind, Idempotency};
use switchyard_engine::{ErrorCode, RunOptions, Switchyard};
use switchyard_runtime::{App, Grant, Runtime};
use switchyard_runtime::{Credential, Secret};
use switchyard_tests::{Simulator, artifacts, fakes_dir, prism_turn, runtime, sns_keys};

const STRIPE: &str = "http://127.0.0.1:12111";
const TWILIO: &str = "http://127.0.0.1:12112";
const SNS: &str = "http://127.0.0.1:12113";
const ACCOUNT_SID: &str = "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

/// Fail with the fix when a fake is not up.
async fn require(url: &str, name: &str) {
    let addr = url.trim_start_matches("http://");
    if tokio::net::TcpStream::connect(addr).await.is_err() {
        panic!(
            "the {name} fake is not running on {url}; start the fakes with \
             `tests/contracts/fakes.sh start` (see tests/contracts/README.md)"
        );
    }
}

fn prism_log(name: &str) -> String {
    std::fs::read_to_string(fakes_dir().join(format!("run/{name}.log"))).unwrap_or_default()
}

/// Run `f`, then assert Prism logged no violation for what it sent.
async fn prism_valid<T>(name: &str, f: impl AsyncFnOnce() -> T) -> T {
    let before = prism_log(name).len();
    let out = f().await;
    // Prism writes its log line just after answering.
    let mut new = String::new();
    for _ in 0..50 {
        new = prism_log(name)[before..].to_string();
        if new.contains("validation") || new.contains("violation") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        new.contains("The request passed the validation rules"),
        "Prism did not log a valid request:\n{new}"
    );
    // Violations of the request; Prism also checks its own example
    // answers, and a fake run without `--errors` (Square's) logs those.
    assert!(
        !new.to_lowercase().contains("violation: request")
            && !new.contains("Request/Response not valid"),
        "Prism logged violations of the request:\n{new}"
    );
    out
}

/// Call `action` on `app`, expect success, and expect the Prism fake
/// `fake` to have logged the request as valid.
async fn valid_call(fake: &str, app: &App, action: &str, input: Value) -> CallResponse {
    prism_valid(fake, async || app.call(call(action, input)).await.unwrap()).await
}

/// Take this test's turn at the Prism fakes, check `url` is up, and load
/// the plugin. Keep the guard alive for the whole test.
async fn at_fake(
    url: &str,
    name: &str,
    bytes: &[u8],
    grant: Grant,
) -> (tokio::sync::MutexGuard<'static, ()>, Runtime, App) {
    let turn = prism_turn().await;
    require(url, name).await;
    let rt = runtime();
    let app = load(&rt, &name.to_lowercase(), bytes, grant).await;
    (turn, rt, app)
}

async fn load(rt: &Runtime, name: &str, bytes: &[u8], grant: Grant) -> App {
    rt.load(name, bytes, grant).await.expect("plugin loads")
}

fn call(action: &str, input: Value) -> CallRequest {
    CallRequest::new(action, input)
        .deadline(Duration::from_secs(10))
        .idempotency_key(format!("test-{}", std::process::id()))
}

fn id_of(v: &Value, field: &str) -> String {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("no {field} in {v}"))
        .to_string()
}

// ------------------------------------------------------------------ Stripe

fn stripe_grant(base: &str) -> Grant {
    Grant::new()
        .allow(base)
        .credential(Credential::Bearer {
            token: Secret::new("sk_test_switchyard"),
        })
        .config("api_base", base)
        .config("stripe_version", "2023-08-16")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripe_actions_against_stripes_own_spec() {
    let (_turn, _rt, app) = at_fake(
        STRIPE,
        "Stripe",
        artifacts::STRIPE_PLUGIN,
        stripe_grant(STRIPE),
    )
    .await;
    let info = app.info();
    let idem: Vec<(&str, &str)> = info
        .actions
        .iter()
        .map(|a| (a.name.as_str(), a.idempotency.as_str()))
        .collect();
    assert_eq!(
        idem,
        [
            ("create-payment-intent", "keyed"),
            ("create-charge", "keyed"),
            ("create-refund", "keyed"),
            ("retrieve-payment-intent", "safe"),
            ("ping", "safe")
        ]
    );

    let pi = valid_call(
        "stripe",
        &app,
        "create-payment-intent",
        json!({"amount": 1099, "currency": "usd", "payment_method_types": ["card"],
                   "metadata": {"order_id": "42"}, "description": "switchyard test"}),
    )
    .await;
    assert!(id_of(&pi.output, "id").starts_with("pi_"), "{}", pi.output);

    let ch = valid_call(
        "stripe",
        &app,
        "create-charge",
        json!({"amount": 500, "currency": "usd", "source": "tok_visa"}),
    )
    .await;
    assert!(id_of(&ch.output, "id").starts_with("ch_"), "{}", ch.output);

    let re = valid_call(
        "stripe",
        &app,
        "create-refund",
        json!({"charge": id_of(&ch.output, "id")}),
    )
    .await;
    assert!(id_of(&re.output, "id").starts_with("re_"), "{}", re.output);

    let got = valid_call(
        "stripe",
        &app,
        "retrieve-payment-intent",
        json!({"id": id_of(&pi.output, "id")}),
    )
    .await;
    assert!(id_of(&got.output, "id").starts_with("pi_"));

    valid_call("stripe", &app, "ping", json!({})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripe_bad_input_is_rejected_with_the_providers_reason_and_not_retried() {
    let (_turn, rt, app) = at_fake(
        STRIPE,
        "Stripe",
        artifacts::STRIPE_PLUGIN,
        stripe_grant(STRIPE),
    )
    .await;
    let e = app
        .call(call(
            "create-payment-intent",
            json!({"amount": 1099, "currency": "usd", "capture_method": "sometimes"}),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.class, ErrorClass::Rejected, "{e}");
    assert_eq!(e.status, Some(422));
    assert!(
        e.message.contains("capture_method"),
        "the provider's reason: {e}"
    );

    // Through the engine: a rejected input is tried once, despite retries.
    let yard = Switchyard::new();
    yard.install_app("pay", "stripe", "dev", Arc::new(app));
    yard.fallback()
        .define("pay", "card")
        .provider("stripe")
        .action("create-refund")
        .retries(3)
        .create()
        .unwrap();
    let err = yard
        .fallback()
        .run(
            "pay",
            "dev",
            "card",
            json!({"charge": "ch_1", "amount": "lots"}),
            RunOptions::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Rejected, "{err}");
    assert_eq!(err.trace.unwrap().attempts.len(), 1);

    // Missing the payment to refund: refused before any request.
    let app = load(
        &rt,
        "stripe",
        artifacts::STRIPE_PLUGIN,
        stripe_grant(STRIPE),
    )
    .await;
    let e = app
        .call(call("create-refund", json!({})))
        .await
        .unwrap_err();
    assert_eq!(e.class, ErrorClass::Rejected);
    assert_eq!(app.egress_stats().requests, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripe_wire_format_idempotency_key_brackets_and_error_mapping() {
    // A recording loopback server shows exactly what goes on the wire.
    let sim = Simulator::start().await.unwrap();
    sim.record(true);
    let rt = runtime();
    let app = load(
        &rt,
        "stripe",
        artifacts::STRIPE_PLUGIN,
        stripe_grant(&sim.url()),
    )
    .await;
    let _ = app
        .call(
            CallRequest::new(
                "create-payment-intent",
                json!({"amount": 1099, "currency": "usd", "metadata": {"order_id": "42"},
                       "payment_method_types": ["card"]}),
            )
            .idempotency_key("run-77"),
        )
        .await;
    let r = &sim.recorded()[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.uri, "/v1/payment_intents");
    assert_eq!(r.header("idempotency-key"), Some("run-77"));
    assert_eq!(r.header("stripe-version"), Some("2023-08-16"));
    assert_eq!(r.header("authorization"), Some("Bearer sk_test_switchyard"));
    assert_eq!(
        r.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    let body = String::from_utf8(r.body.to_vec()).unwrap();
    assert_eq!(
        body,
        "amount=1099&currency=usd&metadata%5Border_id%5D=42&payment_method_types%5B0%5D=card"
    );

    // Unknown paths come back as Stripe-style 404s: rejected, code kept;
    // a provider outage (every request 503) is unavailable.
    let e = app.call(call("ping", json!({}))).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Rejected, "{e}");
    assert_eq!(e.code.as_deref(), Some("not_found"));
    sim.set_failure_rate(1.0);
    let e = app.call(call("ping", json!({}))).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Unavailable, "{e}");
    assert_eq!(e.status, Some(503));
}

// ------------------------------------------------------------------ Twilio

fn twilio_grant() -> Grant {
    Grant::new()
        .allow(TWILIO)
        .credential(Credential::Basic {
            username: ACCOUNT_SID.into(),
            password: Secret::new("twilio-auth-token"),
        })
        .config("account_sid", ACCOUNT_SID)
        .config("api_base", TWILIO)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilio_actions_against_twilios_own_spec() {
    let (_turn, _rt, app) =
        at_fake(TWILIO, "Twilio", artifacts::TWILIO_PLUGIN, twilio_grant()).await;
    let info = app.info();
    assert_eq!(
        info.action("send-sms").unwrap().idempotency,
        Idempotency::Unsafe
    );
    assert_eq!(
        info.action("fetch-message").unwrap().idempotency,
        Idempotency::Safe
    );
    assert_eq!(info.action("ping").unwrap().idempotency, Idempotency::Safe);

    let sent = valid_call(
        "twilio",
        &app,
        "send-sms",
        json!({"To": "+15558675310", "From": "+15017122661", "Body": "Your code is 123456",
                   "StatusCallback": "https://example.com/status"}),
    )
    .await;
    let sid = id_of(&sent.output, "sid");
    assert!(sid.starts_with("SM"), "{}", sent.output);

    let service = "MGaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let input = json!({"To": "+15558675310", "MessagingServiceSid": service, "Body": "hi"});
    let via_service = valid_call("twilio", &app, "send-sms", input).await;
    assert!(id_of(&via_service.output, "sid").starts_with("SM"));

    let fetched = valid_call("twilio", &app, "fetch-message", json!({"Sid": sid})).await;
    assert!(id_of(&fetched.output, "sid").starts_with("SM"));
    valid_call("twilio", &app, "ping", json!({})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilio_bad_input_and_bad_config_are_classified() {
    let (_turn, rt, app) =
        at_fake(TWILIO, "Twilio", artifacts::TWILIO_PLUGIN, twilio_grant()).await;
    // Neither From nor MessagingServiceSid: refused before any request.
    let e = app
        .call(call(
            "send-sms",
            json!({"To": "+15558675310", "Body": "hi"}),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.class, ErrorClass::Rejected);
    assert!(e.message.contains("MessagingServiceSid"), "{e}");
    // The fake refuses a Sid that does not match Twilio's pattern.
    let e = app
        .call(call("fetch-message", json!({"Sid": "not-a-sid"})))
        .await
        .unwrap_err();
    assert_eq!(e.class, ErrorClass::Rejected, "{e}");
    assert_eq!(e.status, Some(422));
    // A wrong Account SID in config is the operator's problem, not the input's.
    let bad = twilio_grant().config("account_sid", "AC123");
    let app = load(&rt, "twilio", artifacts::TWILIO_PLUGIN, bad).await;
    let e = app.call(call("ping", json!({}))).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Internal);
    assert!(e.message.contains("account_sid"), "{e}");
}

// --------------------------------------------------------------------- SNS

fn sns_grant(secret: &str) -> Grant {
    let (id, _) = sns_keys();
    Grant::new()
        .allow(SNS)
        .credential(Credential::AwsSigV4 {
            access_key_id: id,
            secret_access_key: Secret::new(secret),
            session_token: None,
            region: "us-east-1".into(),
            service: "sns".into(),
        })
        .config("region", "us-east-1")
        .config("endpoint", SNS)
}

/// Create a topic with the AWS SDK from the fakes' venv (setup only).
fn create_topic(name: &str) -> String {
    let (id, secret) = sns_keys();
    let out = std::process::Command::new(fakes_dir().join("venv/bin/python"))
        .args([
            "-c",
            &format!(
                "import boto3; c = boto3.client('sns', endpoint_url='{SNS}', region_name='us-east-1', \
                 aws_access_key_id='{id}', aws_secret_access_key='{secret}'); \
                 print(c.create_topic(Name='{name}'{})['TopicArn'])",
                if name.ends_with(".fifo") { ", Attributes={'FifoTopic': 'true'}" } else { "" }
            ),
        ])
        .output()
        .expect("the fakes' python venv");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sns_publish_signed_by_the_host_against_moto() {
    require(SNS, "SNS").await;
    let rt = runtime();
    let (_, secret) = sns_keys();
    let app = load(&rt, "sns", artifacts::SNS_PLUGIN, sns_grant(&secret)).await;
    assert_eq!(
        app.info().action("publish").unwrap().idempotency,
        Idempotency::Unsafe
    );
    assert_eq!(
        app.info().action("publish-fifo").unwrap().idempotency,
        Idempotency::Keyed
    );
    assert_eq!(
        app.info().action("ping").unwrap().idempotency,
        Idempotency::Safe
    );

    app.call(call("ping", json!({}))).await.unwrap();
    let sms = app
        .call(call(
            "publish",
            json!({"PhoneNumber": "+15555550100", "Message": "Your code is 123456",
                   "MessageAttributes": {"AWS.SNS.SMS.SMSType": "Transactional"}}),
        ))
        .await
        .unwrap();
    assert!(
        !id_of(&sms.output, "MessageId").is_empty(),
        "{}",
        sms.output
    );

    let topic = create_topic("switchyard-test");
    let to_topic = app
        .call(call(
            "publish",
            json!({"TopicArn": topic, "Message": "hello", "Subject": "test",
                   "MessageAttributes": {"priority": {"DataType": "Number", "StringValue": "1"}}}),
        ))
        .await
        .unwrap();
    assert!(!id_of(&to_topic.output, "MessageId").is_empty());

    let fifo = create_topic("switchyard-test.fifo");
    let first = app
        .call(call(
            "publish-fifo",
            json!({"TopicArn": fifo, "Message": "m", "MessageGroupId": "g1"}),
        ))
        .await
        .unwrap();
    // moto refuses a FIFO publish without a deduplication id: the run's
    // key was sent as one.
    assert!(
        !id_of(&first.output, "MessageId").is_empty(),
        "{}",
        first.output
    );

    // Bad input: the provider's reason comes back as `rejected`.
    let e = app
        .call(call(
            "publish",
            json!({"PhoneNumber": "not-a-number", "Message": "x"}),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.class, ErrorClass::Rejected, "{e}");
    assert_eq!(e.code.as_deref(), Some("InvalidParameter"), "{e}");
    let e = app
        .call(call(
            "publish",
            json!({"TopicArn": "arn:aws:sns:us-east-1:123456789012:nope", "Message": "x"}),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.class, ErrorClass::Rejected, "{e}");
    assert_eq!(e.status, Some(404));
    let e = app
        .call(call(
            "publish",
            json!({"PhoneNumber": "+15555550100", "TopicArn": topic, "Message": "x"}),
        ))
        .await
        .unwrap_err();
    assert!(e.message.contains("exactly one of"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sns_refuses_a_wrong_signature_and_the_guest_never_sees_the_key() {
    require(SNS, "SNS").await;
    let rt = runtime();
    let app = load(
        &rt,
        "sns",
        artifacts::SNS_PLUGIN,
        sns_grant("not-the-secret"),
    )
    .await;
    let e = app
        .call(call(
            "publish",
            json!({"PhoneNumber": "+15555550100", "Message": "x"}),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.status, Some(403), "{e}");
    assert_eq!(e.class, ErrorClass::Internal, "a grant problem: {e}");
    assert_eq!(e.kind, FailureKind::Provider);
    assert!(!e.message.contains("not-the-secret"));
}

// ----------------------------------------------------------------- example

/// `examples/providers.json` stays valid against the real adapters'
/// `describe` (apps, actions, mappings, weights, healthchecks).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_definitions_are_accepted() {
    let rt = runtime();
    let yard = Switchyard::new();
    for (product, tag, bytes) in [
        ("payments", "stripe-main", artifacts::STRIPE_PLUGIN),
        ("payments", "stripe-backup", artifacts::STRIPE_PLUGIN),
        ("notify", "twilio", artifacts::TWILIO_PLUGIN),
        ("notify", "sns", artifacts::SNS_PLUGIN),
    ] {
        yard.install_app(
            product,
            tag,
            "dev",
            Arc::new(load(&rt, tag, bytes, Grant::new()).await),
        );
    }
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/providers.json");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    let defs: Vec<switchyard_engine::Definition> =
        serde_json::from_value(doc["definitions"].clone()).unwrap();
    assert_eq!(defs.len(), 6);
    for d in defs {
        let path = d.path();
        yard.create(d).unwrap_or_else(|e| panic!("{path}: {e}"));
    }
}

// ------------------------------------------------------------------ PayPal

pub(crate) const PAYPAL: &str = "http://127.0.0.1:12114";
pub(crate) const PAYPAL_PAYMENTS: &str = "http://127.0.0.1:12115";

/// PayPal's OAuth2 token endpoint, which its published documents do not
/// describe: a loopback one that checks the client credentials and counts
/// the tokens it hands out.
pub(crate) async fn paypal_token_endpoint() -> (String, Arc<std::sync::atomic::AtomicU64>) {
    use http_body_util::BodyExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let fetched = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let count = fetched.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let count = count.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let count = count.clone();
                        async move {
                            // Basic base64("client-id:client-secret").
                            let ok = req.uri().path() == "/v1/oauth2/token"
                                && req
                                    .headers()
                                    .get("authorization")
                                    .and_then(|v| v.to_str().ok())
                                    == Some("Basic Y2xpZW50LWlkOmNsaWVudC1zZWNyZXQ=");
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let form = String::from_utf8_lossy(&body).to_string();
                            let (status, text) = if ok
                                && form.contains("grant_type=client_credentials")
                            {
                                let n = count.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                                (200, json!({"access_token": format!("A21AA-{n}"), "token_type": "Bearer", "app_id": "APP-1", "expires_in": 32400, "nonce": "n"}).to_string())
                            } else {
                                (401, json!({"error": "invalid_client", "error_description": "Client Authentication failed"}).to_string())
                            };
                            Ok::<_, std::convert::Infallible>(
                                hyper::Response::builder()
                                    .status(status)
                                    .header("content-type", "application/json")
                                    .body(http_body_util::Full::new(bytes::Bytes::from(text)))
                                    .unwrap(),
                            )
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (url, fetched)
}

pub(crate) fn paypal_grant(token_base: &str) -> Grant {
    Grant::new()
        .allow(PAYPAL)
        .allow(PAYPAL_PAYMENTS)
        .allow(token_base)
        .credential_for(
            [PAYPAL, PAYPAL_PAYMENTS],
            Credential::OAuth2ClientCredentials {
                token_url: format!("{token_base}/v1/oauth2/token"),
                client_id: Secret::new("client-id"),
                client_secret: Secret::new("client-secret"),
                scope: None,
            },
        )
        .config("api_base", PAYPAL)
        .config("payments_base", PAYPAL_PAYMENTS)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paypal_actions_against_paypals_own_spec_with_a_host_held_token() {
    let (token_base, fetched) = paypal_token_endpoint().await;
    let (_turn, _rt, app) = at_fake(
        PAYPAL,
        "PayPal",
        artifacts::PAYPAL_PLUGIN,
        paypal_grant(&token_base),
    )
    .await;
    require(PAYPAL_PAYMENTS, "PayPal Payments").await;
    let idem: Vec<(&str, &str)> = app
        .info()
        .actions
        .iter()
        .map(|a| (a.name.as_str(), a.idempotency.as_str()))
        .collect();
    assert_eq!(
        idem,
        [
            ("charge", "keyed"),
            ("create-order", "keyed"),
            ("capture-order", "keyed"),
            ("refund", "keyed"),
            ("get-order", "safe"),
            ("ping", "safe")
        ]
    );
    let order = json!({"amount": "10.00", "currency": "USD", "reference_id": "order-42",
                       "payment_source": {"token": {"id": "8WG0X2", "type": "BILLING_AGREEMENT"}}});
    let created = valid_call("paypal", &app, "create-order", order.clone()).await;
    assert!(created.output["id"].is_string(), "{}", created.output);
    assert_eq!(
        created.output["id"], "5O190127TN364715T",
        "{}",
        created.output
    );
    let captured = valid_call(
        "paypal",
        &app,
        "capture-order",
        json!({"id": id_of(&created.output, "id")}),
    )
    .await;
    assert!(
        captured.output["capture_id"].is_string(),
        "{}",
        captured.output
    );
    // A server-side charge: create, then capture, in one call; both
    // requests pass Prism's validation.
    let charged = prism_valid("paypal", async || {
        app.call(call("charge", order.clone())).await.unwrap()
    })
    .await;
    assert!(charged.output["status"].is_string(), "{}", charged.output);
    let refunded = valid_call(
        "paypal-payments",
        &app,
        "refund",
        json!({"capture_id": "2GG279541U471931P", "amount": "1.00", "currency": "USD"}),
    )
    .await;
    assert!(refunded.output["id"].is_string(), "{}", refunded.output);
    valid_call(
        "paypal",
        &app,
        "get-order",
        json!({"id": "5O190127TN364715T"}),
    )
    .await;
    valid_call("paypal", &app, "ping", json!({})).await;
    // One token served every call.
    assert_eq!(fetched.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paypal_errors_are_typed_and_bad_input_never_leaves() {
    let (token_base, _) = paypal_token_endpoint().await;
    let (_turn, rt, app) = at_fake(
        PAYPAL,
        "PayPal",
        artifacts::PAYPAL_PLUGIN,
        paypal_grant(&token_base),
    )
    .await;
    // An amount PayPal would not take: refused before any request.
    let e = app
        .call(call(
            "create-order",
            json!({"amount": "ten", "currency": "USD"}),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.class, ErrorClass::Rejected, "{e}");
    assert!(e.message.contains("decimal"), "{e}");
    // Without the credential PayPal answers 401 with its error shape: the
    // grant's problem (`internal`), its issue as the code.
    let bare = load(
        &rt,
        "paypal-bare",
        artifacts::PAYPAL_PLUGIN,
        Grant::new().allow(PAYPAL).config("api_base", PAYPAL),
    )
    .await;
    let e = bare
        .call(call("get-order", json!({"id": "5O190127TN364715T"})))
        .await
        .unwrap_err();
    assert_eq!(e.class, ErrorClass::Internal, "{e}");
    assert_eq!(e.status, Some(401));
    assert!(e.code.as_deref().is_some_and(|c| !c.is_empty()), "{e:?}");
    assert!(e.message.starts_with("paypal 401"), "{e}");
    // Client credentials the token endpoint refuses: `internal`, nothing
    // reached PayPal, no secret in the message.
    let wrong = load(
        &rt,
        "paypal-wrong",
        artifacts::PAYPAL_PLUGIN,
        Grant::new()
            .allow(PAYPAL)
            .allow(&token_base)
            .credential_for(
                [PAYPAL],
                Credential::OAuth2ClientCredentials {
                    token_url: format!("{token_base}/v1/oauth2/token"),
                    client_id: Secret::new("client-id"),
                    client_secret: Secret::new("not-the-secret"),
                    scope: None,
                },
            )
            .config("api_base", PAYPAL),
    )
    .await;
    let e = wrong
        .call(call("get-order", json!({"id": "5O190127TN364715T"})))
        .await
        .unwrap_err();
    assert_eq!(e.class, ErrorClass::Internal, "{e}");
    assert!(e.message.contains("invalid_client"), "{e}");
    assert!(!e.message.contains("not-the-secret"), "{e}");
}

// ------------------------------------------------------------------ Square

pub(crate) const SQUARE: &str = "http://127.0.0.1:12116";

pub(crate) fn square_grant() -> Grant {
    Grant::new()
        .allow(SQUARE)
        .credential(Credential::Bearer {
            token: Secret::new("EAAAsquare-sandbox-token"),
        })
        .config("api_base", SQUARE)
        .config("location_id", "L88917AVBK2S5")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn square_actions_against_squares_own_spec() {
    let (_turn, _rt, app) =
        at_fake(SQUARE, "Square", artifacts::SQUARE_PLUGIN, square_grant()).await;
    let idem: Vec<(&str, &str)> = app
        .info()
        .actions
        .iter()
        .map(|a| (a.name.as_str(), a.idempotency.as_str()))
        .collect();
    assert_eq!(
        idem,
        [
            ("create-payment", "keyed"),
            ("refund", "keyed"),
            ("get-payment", "safe"),
            ("ping", "safe")
        ]
    );
    let paid = valid_call(
        "square",
        &app,
        "create-payment",
        json!({"source_id": "cnon:card-nonce-ok", "amount": 1000, "currency": "USD", "reference_id": "order-42"}),
    )
    .await;
    assert!(paid.output["payment"]["id"].is_string(), "{}", paid.output);
    let refunded = valid_call(
        "square",
        &app,
        "refund",
        json!({"payment_id": id_of(&paid.output["payment"], "id"), "amount": 500, "currency": "USD"}),
    )
    .await;
    assert!(
        refunded.output["refund"]["id"].is_string(),
        "{}",
        refunded.output
    );
    valid_call(
        "square",
        &app,
        "get-payment",
        json!({"id": "GQTFp1ZlXdpoW4o6eGiZhbjosiDFf"}),
    )
    .await;
    valid_call("square", &app, "ping", json!({})).await;
    // The run's key is the body's idempotency_key, as Square requires.
    let e = app
        .call(CallRequest::new(
            "create-payment",
            json!({"source_id": "cnon:card-nonce-ok", "amount": 1000, "currency": "USD"}),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.class, ErrorClass::Rejected, "{e}");
    assert!(e.message.contains("idempotency key"), "{e}");
}

// ------------------------------------------------------------------- Adyen

pub(crate) const ADYEN: &str = "http://127.0.0.1:12117";

pub(crate) fn adyen_grant() -> Grant {
    Grant::new()
        .allow(ADYEN)
        .credential(Credential::ApiKeyHeader {
            header: "X-API-Key".into(),
            key: Secret::new("AQEyhmfxadyen-test-key"),
        })
        .config("api_base", ADYEN)
        .config("merchant_account", "AcmeECOM")
        .config("return_url", "https://shop.example.com/return")
}

pub(crate) fn adyen_payment() -> Value {
    json!({"amount": 1000, "currency": "EUR", "reference": "order-42",
           "paymentMethod": {"type": "scheme", "storedPaymentMethodId": "8415718415172204"},
           "shopperReference": "shopper-42", "shopperInteraction": "ContAuth",
           "recurringProcessingModel": "CardOnFile"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adyen_actions_against_adyens_own_spec() {
    let (_turn, rt, app) = at_fake(ADYEN, "Adyen", artifacts::ADYEN_PLUGIN, adyen_grant()).await;
    let idem: Vec<(&str, &str)> = app
        .info()
        .actions
        .iter()
        .map(|a| (a.name.as_str(), a.idempotency.as_str()))
        .collect();
    assert_eq!(
        idem,
        [("payments", "keyed"), ("refund", "keyed"), ("ping", "safe")]
    );
    // Prism answers with the document's first example, a 3-D Secure
    // step for the shopper: it serves, with its `action`.
    let paid = valid_call("adyen", &app, "payments", adyen_payment()).await;
    assert!(paid.output["resultCode"].is_string(), "{}", paid.output);
    let refunded = valid_call(
        "adyen",
        &app,
        "refund",
        json!({"psp_reference": "993617895204576J", "amount": 500, "currency": "EUR"}),
    )
    .await;
    assert_eq!(refunded.output["status"], "received", "{}", refunded.output);
    valid_call("adyen", &app, "ping", json!({})).await;

    // What Adyen refuses comes back typed with its errorCode: a shopper
    // reference shorter than Adyen allows.
    let mut short = adyen_payment();
    short["shopperReference"] = json!("s");
    let e = app.call(call("payments", short)).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Rejected, "{e}");
    assert_eq!(e.status, Some(422));
    assert!(e.code.as_deref().is_some_and(|c| c.contains('_')), "{e:?}");
    // Without the key: Adyen's 401, the grant's problem.
    let bare = load(
        &rt,
        "adyen-bare",
        artifacts::ADYEN_PLUGIN,
        Grant::new()
            .allow(ADYEN)
            .config("api_base", ADYEN)
            .config("merchant_account", "AcmeECOM"),
    )
    .await;
    let e = bare.call(call("ping", json!({}))).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Internal, "{e}");
    assert_eq!(e.status, Some(401));
}
