//! The Python (componentize-py) and JavaScript (componentize-js) adapters,
//! built by `plugins/build-polyglot.sh`, run by the host with the same
//! sandbox and egress gate as Rust adapters, against real loopback HTTP
//! servers: success, error classes (429 / 5xx / 4xx / refused), and as
//! options of a fallback next to a Rust adapter, in both orders.

use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use switchyard_engine::{AttemptError, CallRequest, ErrorClass, FailureKind};
use switchyard_engine::{FieldType, Outcome, RunOptions, SkipReason, Switchyard};
use switchyard_runtime::{App, Grant, Runtime};
use switchyard_runtime::{Credential, Secret};
use switchyard_tests::scripted::{Answer, Scripted};
use switchyard_tests::{artifacts, polyglot, runtime};

const UUID: &str = "aaaaaaaa-bbbb-4ccc-8ddd-0123456789ab";
const SID: &str = "AC0123456789abcdef0123456789abcdef";

fn vonage_grant(server: &Scripted) -> Grant {
    Grant::new()
        .allow(server.url())
        .credential(Credential::Basic {
            username: "vonage-key".into(),
            password: Secret::new("vonage-secret"),
        })
        .config("messages_base", server.url())
        .config("rest_base", server.url())
}

fn slack_grant(server: &Scripted) -> Grant {
    slack_at(&server.url()).credential(Credential::Bearer {
        token: Secret::new("xoxb-test-token"),
    })
}

/// The Slack adapter pointed at `origin`, no token.
fn slack_at(origin: &str) -> Grant {
    Grant::new()
        .allow(origin)
        .config("api_base", format!("{origin}/api"))
}

async fn load(rt: &Runtime, name: &str, grant: Grant) -> App {
    rt.load(name, polyglot(name).as_path(), grant)
        .await
        .unwrap_or_else(|e| panic!("{name} loads: {e}"))
}

async fn call(app: &App, action: &str, input: Value) -> Result<Value, AttemptError> {
    app.call(CallRequest::new(action, input).idempotency_key("run-42"))
        .await
        .map(|r| r.output)
}

fn sms() -> Value {
    json!({"to": "+14155550100", "from": "Acme", "text": "Your code is 1234"})
}

fn problem(status: u16, kind: &str, title: &str) -> Answer {
    Answer::json(
        status,
        json!({"type": format!("https://developer.vonage.com/api-errors{kind}"), "title": title,
               "detail": format!("{title} (detail)"), "instance": "bf0ca0bf-927b-4b5f-9a8e-4b8a76a3b0c1"}),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_vonage_sends_and_reads_the_balance() {
    let server = Scripted::start().await;
    server.always(
        "/v1/messages",
        Answer::json(202, json!({"message_uuid": UUID})),
    );
    server.always(
        "/account/get-balance",
        Answer::json(200, json!({"value": 10.28, "autoReload": false})),
    );
    let rt = runtime();
    let app = load(&rt, "vonage", vonage_grant(&server)).await;
    let info = switchyard_engine::Adapter::info(&app);
    assert_eq!(info.name, "vonage");
    let names: Vec<&str> = info.actions.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["send-sms", "get-balance", "ping"]);

    let out = call(&app, "send-sms", sms()).await.unwrap();
    assert_eq!(
        out,
        json!({"message_uuid": UUID, "to": "14155550100", "client_ref": "run-42"})
    );
    let sent = &server.received()[0];
    assert_eq!(
        (sent.method.as_str(), sent.path.as_str()),
        ("POST", "/v1/messages")
    );
    // Basic auth added by the host; the secret never entered the guest.
    assert_eq!(
        sent.header("authorization"),
        Some("Basic dm9uYWdlLWtleTp2b25hZ2Utc2VjcmV0")
    );
    assert_eq!(sent.header("content-type"), Some("application/json"));
    assert_eq!(
        sent.json(),
        json!({"message_type": "text", "channel": "sms", "to": "14155550100", "from": "Acme",
               "text": "Your code is 1234", "client_ref": "run-42"})
    );

    assert_eq!(
        call(&app, "get-balance", json!({})).await.unwrap(),
        json!({"value": 10.28, "auto_reload": false})
    );
    assert_eq!(
        call(&app, "ping", json!({})).await.unwrap(),
        json!({"ok": true})
    );

    // Bad input is refused by the adapter before any request, naming the field.
    server.clear();
    let e = call(
        &app,
        "send-sms",
        json!({"to": "+1415", "text": "x", "from": "A"}),
    )
    .await
    .unwrap_err();
    assert_eq!(e.class, ErrorClass::Rejected);
    assert!(e.message.contains("input.to"), "{e}");
    let e = call(&app, "send-sms", json!({"to": "+14155550100", "from": "A"}))
        .await
        .unwrap_err();
    assert_eq!(
        (e.class, e.message.as_str()),
        (ErrorClass::Rejected, "input.text is required")
    );
    assert!(server.received().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_vonage_maps_429_5xx_4xx_and_refused() {
    let server = Scripted::start().await;
    let rt = runtime();
    let app = load(&rt, "vonage", vonage_grant(&server)).await;
    let path = "/v1/messages";

    server.once(
        path,
        problem(429, "#throttled", "Rate Limit Hit").header("Retry-After", "2"),
    );
    let e = call(&app, "send-sms", sms()).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::RateLimited, "{e}");
    assert_eq!(e.retry_after, Some(Duration::from_secs(2)));
    assert_eq!(
        (e.status, e.code.as_deref()),
        (Some(429), Some("throttled"))
    );

    for status in [500, 503] {
        server.once(path, problem(status, "#internal", "Internal Error"));
        let e = call(&app, "send-sms", sms()).await.unwrap_err();
        assert_eq!(
            (e.class, e.status),
            (ErrorClass::Unavailable, Some(status)),
            "{e}"
        );
    }

    server.once(
        path,
        Answer::json(
            422,
            json!({"type": "https://developer.vonage.com/api-errors/messages#1150",
                   "title": "Invalid params",
                   "detail": "The value of one or more parameters is invalid.",
                   "invalid_parameters": [{"name": "to", "reason": "Number is invalid"}]}),
        ),
    );
    let e = call(&app, "send-sms", sms()).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Rejected, "{e}");
    assert_eq!((e.status, e.code.as_deref()), (Some(422), Some("1150")));
    assert!(e.message.contains("to: Number is invalid"), "{e}");

    // A grant problem is not the input's fault, nor a reason to retry.
    server.once(path, problem(401, "#unauthorized", "Invalid credentials"));
    let e = call(&app, "send-sms", sms()).await.unwrap_err();
    assert_eq!(
        (e.class, e.status),
        (ErrorClass::Internal, Some(401)),
        "{e}"
    );
    // Out of credit: another provider can still send.
    server.once(path, problem(402, "#low-balance", "Low balance"));
    let e = call(&app, "send-sms", sms()).await.unwrap_err();
    assert_eq!(
        (e.class, e.status),
        (ErrorClass::Unavailable, Some(402)),
        "{e}"
    );

    // Nothing listening: refused before anything was sent.
    let closed = closed_origin().await;
    let app = load(
        &rt,
        "vonage",
        Grant::new().allow(&closed).config("messages_base", &closed),
    )
    .await;
    let e = call(&app, "send-sms", sms()).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Unavailable, "{e}");
    assert!(e.message.contains("never reached the provider"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_slack_posts_and_checks_the_token() {
    let server = Scripted::start().await;
    server.always(
        "/api/chat.postMessage",
        Answer::json(
            200,
            json!({"ok": true, "channel": "C024BE91L", "ts": "1503435956.000247",
                   "message": {"text": "deploy done"}}),
        ),
    );
    server.always(
        "/api/auth.test",
        Answer::json(
            200,
            json!({"ok": true, "team": "Acme", "user": "switchyard"}),
        ),
    );
    let rt = runtime();
    let app = load(&rt, "slack", slack_grant(&server)).await;
    let names: Vec<String> = switchyard_engine::Adapter::info(&app)
        .actions
        .iter()
        .map(|a| a.name.clone())
        .collect();
    assert_eq!(names, ["post-message", "ping"]);

    let out = call(
        &app,
        "post-message",
        json!({"channel": "C024BE91L", "text": "deploy done", "thread_ts": "1503435900.000100"}),
    )
    .await
    .unwrap();
    assert_eq!(
        out,
        json!({"ok": true, "channel": "C024BE91L", "ts": "1503435956.000247"})
    );
    let sent = &server.received()[0];
    assert_eq!(sent.path, "/api/chat.postMessage");
    assert_eq!(sent.header("authorization"), Some("Bearer xoxb-test-token"));
    assert_eq!(
        sent.json(),
        json!({"channel": "C024BE91L", "text": "deploy done", "thread_ts": "1503435900.000100"})
    );
    assert_eq!(
        call(&app, "ping", json!({})).await.unwrap(),
        json!({"ok": true, "team": "Acme", "user": "switchyard"})
    );

    // The channel may come from the app's config instead.
    let app = load(
        &rt,
        "slack",
        slack_grant(&server).config("default_channel", "#ops"),
    )
    .await;
    call(&app, "post-message", json!({"text": "hi"}))
        .await
        .unwrap();
    assert_eq!(server.received().last().unwrap().json()["channel"], "#ops");
    let e = call(&app, "post-message", json!({"text": 7}))
        .await
        .unwrap_err();
    assert_eq!(e.class, ErrorClass::Rejected);
    assert!(e.message.contains("input.text must be a string"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_slack_maps_429_5xx_4xx_and_slack_error_codes() {
    let server = Scripted::start().await;
    let rt = runtime();
    let app = load(&rt, "slack", slack_grant(&server)).await;
    let path = "/api/chat.postMessage";
    let post = || call(&app, "post-message", json!({"channel": "C1", "text": "hi"}));

    server.once(
        path,
        Answer::text(429, "rate limited").header("Retry-After", "3"),
    );
    let e = post().await.unwrap_err();
    assert_eq!(
        (e.class, e.status, e.retry_after),
        (
            ErrorClass::RateLimited,
            Some(429),
            Some(Duration::from_secs(3))
        ),
        "{e}"
    );
    for status in [500, 502, 503] {
        server.once(path, Answer::text(status, "upstream trouble"));
        let e = post().await.unwrap_err();
        assert_eq!(
            (e.class, e.status),
            (ErrorClass::Unavailable, Some(status)),
            "{e}"
        );
    }
    server.once(path, Answer::text(400, "invalid_payload"));
    let e = post().await.unwrap_err();
    assert_eq!(
        (e.class, e.status),
        (ErrorClass::Rejected, Some(400)),
        "{e}"
    );

    // Slack's own codes in a 200 answer.
    for (code, class) in [
        ("channel_not_found", ErrorClass::Rejected),
        ("msg_too_long", ErrorClass::Rejected),
        ("invalid_auth", ErrorClass::Internal),
        ("missing_scope", ErrorClass::Internal),
        ("ratelimited", ErrorClass::RateLimited),
        ("service_unavailable", ErrorClass::Unavailable),
    ] {
        server.once(path, Answer::json(200, json!({"ok": false, "error": code})));
        let e = post().await.unwrap_err();
        assert_eq!((e.class, e.code.as_deref()), (class, Some(code)), "{e}");
    }

    // Not JSON after a 200: the provider answered, what it did is unknown.
    server.once(path, Answer::text(200, "<html>proxy</html>"));
    let e = post().await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Ambiguous, "{e}");
}

/// An origin on loopback where nothing listens.
async fn closed_origin() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    url
}

/// A 9 MiB message: the host refuses the described request before sending
/// it (over the 4 MiB egress cap), as `internal` naming the cap, and the
/// next call is served. (In the adapter world componentize-js 0.23's
/// `fetch()` trapped on this, every time; the exchange world has no guest
/// fetch to trap.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_oversized_request_is_refused_before_sending_and_the_app_keeps_serving() {
    let server = Scripted::start().await;
    server.always(
        "/api/chat.postMessage",
        Answer::json(200, json!({"ok": true, "channel": "C1", "ts": "1.1"})),
    );
    let rt = runtime();
    let app = load(&rt, "slack", slack_grant(&server)).await;
    let huge = json!({"channel": "C1", "text": "x".repeat(9 << 20)});
    for _ in 0..3 {
        let e = call(&app, "post-message", huge.clone()).await.unwrap_err();
        assert_eq!(
            (e.class, e.kind),
            (ErrorClass::Internal, FailureKind::BadOutput),
            "{e}"
        );
        assert!(
            e.message.contains("request body") && e.message.contains("max_request_body"),
            "names the cap: {e}"
        );
        let ok = call(&app, "post-message", json!({"channel": "C1", "text": "ok"}))
            .await
            .unwrap();
        assert_eq!(ok["ok"], true);
    }
    assert_eq!(
        server.received().len(),
        3,
        "only the good calls reached Slack"
    );
}

/// With nothing listening, the host's own send is refused before anything
/// left: the attempt is `unavailable`, every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_refused_connection_is_unavailable() {
    let closed = closed_origin().await;
    let rt = runtime();
    let down = load(&rt, "slack", slack_at(&closed)).await;
    for i in 0..20 {
        let text = "x".repeat(if i % 2 == 0 { 10 } else { 64 << 10 });
        let input = json!({"channel": "C1", "text": text});
        let (a, b) = tokio::join!(
            call(&down, "post-message", input.clone()),
            call(&down, "post-message", input)
        );
        for e in [a.unwrap_err(), b.unwrap_err()] {
            assert_eq!(
                (e.class, e.kind),
                (ErrorClass::Unavailable, FailureKind::Provider),
                "{e}"
            );
        }
    }
}

/// The provider read the request and hung up without answering. The host
/// sent it and saw it leave: the attempt is `ambiguous`, so the engine will not resend a
/// non-idempotent message elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_request_that_got_no_answer_is_ambiguous() {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let hangup = tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 64 << 10];
            let _ = stream.read(&mut buf).await;
            drop(stream); // read the request, answer nothing
        }
    });
    let rt = runtime();
    let app = load(&rt, "slack", slack_at(&origin)).await;
    let e = call(&app, "post-message", json!({"channel": "C1", "text": "hi"}))
        .await
        .unwrap_err();
    assert_eq!(e.class, ErrorClass::Ambiguous, "{e}");
    assert!(e.message.contains("may have acted on it"), "{e}");
    hangup.abort();
}

// ---------------------------------------------------------------- fallbacks

/// Twilio's answer to a created message.
fn twilio_created() -> Answer {
    Answer::json(
        201,
        json!({"sid": "SM0123456789abcdef0123456789abcdef", "status": "queued",
               "to": "+14155550100", "body": "Your code is 1234"}),
    )
}

const TWILIO_PATH: &str = "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages.json";

async fn sms_fallback(
    first: &str,
    second: &str,
    twilio: &Scripted,
    vonage: &Scripted,
) -> Switchyard {
    let rt = runtime();
    let yard = Switchyard::new();
    let twilio_app = rt
        .load(
            "twilio",
            artifacts::TWILIO_PLUGIN,
            Grant::new()
                .allow(twilio.url())
                .credential(Credential::Basic {
                    username: SID.into(),
                    password: Secret::new("twilio-token"),
                })
                .config("account_sid", SID)
                .config("api_base", twilio.url()),
        )
        .await
        .unwrap();
    let vonage_app = load(&rt, "vonage", vonage_grant(vonage)).await;
    yard.install_app("notify", "twilio", "dev", Arc::new(twilio_app));
    yard.install_app("notify", "vonage", "dev", Arc::new(vonage_app));
    let mut builder = yard
        .fallback()
        .define("notify", "sms")
        .input("phone", FieldType::String)
        .input("text", FieldType::String);
    for tag in [first, second] {
        builder = match tag {
            "twilio" => builder
                .provider("twilio")
                .action("send-sms")
                .map_input(
                    json!({"To": "$Input{phone}", "From": "+15005550006", "Body": "$Input{text}"}),
                )
                .map_output(json!({"id": "$Response{sid}"})),
            _ => builder
                .provider("vonage")
                .action("send-sms")
                .map_input(json!({"to": "$Input{phone}", "from": "Acme", "text": "$Input{text}"}))
                .map_output(json!({"id": "$Response{message_uuid}"})),
        };
    }
    builder.create().unwrap();
    yard
}

async fn run_sms(yard: &Switchyard) -> switchyard_engine::RunResult {
    yard.fallback()
        .run(
            "notify",
            "dev",
            "sms",
            json!({"phone": "+14155550100", "text": "Your code is 1234"}),
            RunOptions::default().idempotency_key("order-7"),
        )
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_adapter_serves_a_fallback_after_rust_and_the_reverse() {
    let (twilio, vonage) = (Scripted::start().await, Scripted::start().await);
    vonage.always(
        "/v1/messages",
        Answer::json(202, json!({"message_uuid": UUID})),
    );
    twilio.always(TWILIO_PATH, twilio_created());

    // Rust (Twilio) first: Twilio is down (503), Python (Vonage) serves.
    twilio.once(
        TWILIO_PATH,
        Answer::json(
            503,
            json!({"code": 20500, "message": "Service unavailable", "status": 503}),
        ),
    );
    let yard = sms_fallback("twilio", "vonage", &twilio, &vonage).await;
    let r = run_sms(&yard).await;
    assert_eq!(r.provider.as_deref(), Some("vonage"));
    assert_eq!(r.output, json!({"id": UUID}));
    let classes: Vec<_> = r
        .trace
        .attempts
        .iter()
        .map(|a| (a.provider.clone(), a.status))
        .collect();
    assert_eq!(
        classes,
        [
            ("twilio".to_string(), Some(503)),
            ("vonage".to_string(), None)
        ]
    );
    assert_eq!(vonage.received()[0].json()["client_ref"], "order-7");

    // Python (Vonage) first: Vonage is rate-limited (429), Rust (Twilio) serves.
    vonage.once(
        "/v1/messages",
        problem(429, "#throttled", "Rate Limit Hit").header("Retry-After", "30"),
    );
    let yard = sms_fallback("vonage", "twilio", &twilio, &vonage).await;
    let r = run_sms(&yard).await;
    assert_eq!(r.provider.as_deref(), Some("twilio"));
    assert_eq!(
        r.output,
        json!({"id": "SM0123456789abcdef0123456789abcdef"})
    );
    assert_eq!(r.trace.attempts[0].provider, "vonage");
    assert_eq!(r.trace.attempts[0].status, Some(429));
}

/// The generic Rust `http` plugin posting to an incoming-webhook URL.
async fn webhook_app(rt: &Runtime, hook: &Scripted) -> App {
    let actions = json!([{"name": "post", "method": "POST", "path": "/hooks/ops",
                          "input": {"text": {"type": "string", "required": true}}}]);
    rt.load(
        "webhook",
        artifacts::HTTP_PLUGIN,
        Grant::new()
            .allow(hook.url())
            .config("base_url", hook.url())
            .config("actions", actions.to_string()),
    )
    .await
    .unwrap()
}

async fn chat_fallback(first: &str, second: &str, slack: &Scripted, hook: &Scripted) -> Switchyard {
    let rt = runtime();
    let yard = Switchyard::new();
    let slack_app = load(&rt, "slack", slack_grant(slack)).await;
    let hook_app = webhook_app(&rt, hook).await;
    yard.install_app("ops", "slack", "dev", Arc::new(slack_app));
    yard.install_app("ops", "webhook", "dev", Arc::new(hook_app));
    let mut builder = yard
        .fallback()
        .define("ops", "alert")
        .input("text", FieldType::String);
    for tag in [first, second] {
        builder = match tag {
            "slack" => builder
                .provider("slack")
                .action("post-message")
                .map_input(json!({"channel": "C1", "text": "$Input{text}"}))
                .map_output(json!({"ts": "$Response{ts}"})),
            _ => builder
                .provider("webhook")
                .action("post")
                .map_input(json!({"text": "$Input{text}"}))
                .map_output(json!({"ts": "webhook"})),
        };
    }
    builder.create().unwrap();
    yard
}

async fn run_alert(yard: &Switchyard) -> switchyard_engine::RunResult {
    yard.fallback()
        .run(
            "ops",
            "dev",
            "alert",
            json!({"text": "disk full"}),
            RunOptions::default(),
        )
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_adapter_serves_a_fallback_after_rust_and_the_reverse() {
    let (slack, hook) = (Scripted::start().await, Scripted::start().await);
    slack.always(
        "/api/chat.postMessage",
        Answer::json(
            200,
            json!({"ok": true, "channel": "C1", "ts": "1700000000.000100"}),
        ),
    );
    hook.always("/hooks/ops", Answer::text(200, "ok"));

    // Rust (webhook) first: it answers 503, JS (Slack) serves.
    hook.once("/hooks/ops", Answer::text(503, "maintenance"));
    let yard = chat_fallback("webhook", "slack", &slack, &hook).await;
    let r = run_alert(&yard).await;
    assert_eq!(r.provider.as_deref(), Some("slack"));
    assert_eq!(r.output, json!({"ts": "1700000000.000100"}));
    assert_eq!(r.trace.attempts[0].status, Some(503));

    // JS (Slack) first: Slack says service_unavailable, Rust serves.
    slack.once(
        "/api/chat.postMessage",
        Answer::json(200, json!({"ok": false, "error": "service_unavailable"})),
    );
    let yard = chat_fallback("slack", "webhook", &slack, &hook).await;
    let r = run_alert(&yard).await;
    assert_eq!(r.provider.as_deref(), Some("webhook"));
    assert_eq!(r.trace.attempts[0].provider, "slack");
    assert_eq!(
        r.trace.attempts[0].code.as_deref(),
        Some("service_unavailable")
    );
}

/// JS first, and its request is refused (a 9 MiB message over the gate's
/// body cap) or meets a refused connection: the fallback goes on to the
/// Rust adapter every time, and once Slack's breaker opens (refused
/// connections count; the adapter's own oversized request does not) it is
/// skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_trap_or_refused_connection_never_stops_a_fallback() {
    for (case, slack_origin) in [
        ("oversized", None),
        ("refused", Some(closed_origin().await)),
    ] {
        let slack = Scripted::start().await;
        slack.always(
            "/api/chat.postMessage",
            Answer::json(200, json!({"ok": true, "channel": "C1", "ts": "1.1"})),
        );
        let base = slack_origin.unwrap_or_else(|| slack.url());
        // 3 MiB of newlines: inside the host's 4 MiB mapping bound, but
        // 6 MiB once the adapter writes them as JSON (`\n`), over the
        // 4 MiB egress cap: it is the adapter's request that is refused.
        let text = if case == "oversized" {
            "\n".repeat(3 << 20)
        } else {
            "disk full".into()
        };
        fallback_survives(case, &base, &text).await;
        assert!(slack.received().is_empty());
    }
}

async fn fallback_survives(case: &str, slack_base: &str, text: &str) {
    let hook = Scripted::start().await;
    hook.always("/hooks/ops", Answer::text(200, "ok"));
    let rt = runtime();
    let yard = Switchyard::new();
    let slack = load(&rt, "slack", slack_at(slack_base)).await;
    yard.install_app("ops", "slack", "dev", Arc::new(slack));
    let hook_app = webhook_app(&rt, &hook).await;
    yard.install_app("ops", "webhook", "dev", Arc::new(hook_app));
    yard.fallback()
        .define("ops", "alert")
        .input("text", FieldType::String)
        .input("summary", FieldType::String)
        .provider("slack")
        .action("post-message")
        .map_input(json!({"channel": "C1", "text": "$Input{text}"}))
        .map_output(json!({"via": "slack"}))
        .provider("webhook")
        .action("post")
        .map_input(json!({"text": "$Input{summary}"}))
        .map_output(json!({"via": "webhook"}))
        .create()
        .unwrap();
    let mut tried = 0;
    for _ in 0..12 {
        let r = yard
            .fallback()
            .run(
                "ops",
                "dev",
                "alert",
                json!({"text": text, "summary": "disk full"}),
                RunOptions::default(),
            )
            .await
            .unwrap();
        assert_eq!(r.output, json!({"via": "webhook"}));
        match r.trace.attempts.as_slice() {
            // Slack tried and failed cleanly, then the webhook served.
            [first, second] => {
                assert_eq!(first.provider, "slack");
                let expected = if case == "oversized" {
                    (ErrorClass::Internal, FailureKind::BadOutput)
                } else {
                    (ErrorClass::Unavailable, FailureKind::Provider)
                };
                assert_eq!(
                    (first.outcome.clone(), first.kind),
                    (Outcome::Failed(expected.0), Some(expected.1)),
                    "{case}: {first:?}"
                );
                assert_eq!(second.provider, "webhook");
                tried += 1;
            }
            // Once Slack's breaker opened, it is skipped without a call.
            [only] => {
                assert_eq!(only.provider, "webhook");
                assert!(
                    matches!(r.trace.skipped[0].reason, SkipReason::BreakerOpen { .. }),
                    "{:?}",
                    r.trace.skipped
                );
            }
            other => panic!("unexpected attempts {other:?}"),
        }
    }
    assert!(
        tried >= 5,
        "{case}: slack was tried {tried} times before its breaker opened"
    );
    assert_eq!(hook.received().len(), 12);
}

/// The Python and JavaScript SDKs export `exchange-reading` for the actions
/// declared read by the host (`read_by_host=True`, `readByHost: true`): a
/// 2xx JSON answer to such an action is the output as is, with no
/// `response` step (one instantiation per call, no instance while the
/// provider answers); every other answer, and every answer to an action not
/// declared, is read by the adapter's `response` (which says so).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_and_js_adapters_let_the_host_read_a_json_success() {
    let server = Scripted::start().await;
    let rt = runtime();
    for (name, lang) in [("echo-py", "python"), ("echo-js", "javascript")] {
        let grant = Grant::new()
            .allow(server.url())
            .config("base_url", server.url());
        let app = load(&rt, name, grant).await;
        assert_eq!(app.read_by_host(), vec!["read-by-host"], "{name}");
        let body = json!({"id": "m-1", "n": [1, 2.5, "é"]});
        server.always("/v1/messages", Answer::json(201, body.clone()));
        server.set_delay(Duration::from_millis(60));
        let during = {
            let app = app.clone();
            let h =
                tokio::spawn(async move { call(&app, "read-by-host", json!({"to": "+1"})).await });
            tokio::time::sleep(Duration::from_millis(30)).await;
            let n = rt.instances().0;
            assert_eq!(
                h.await.unwrap().expect("the call succeeds"),
                body,
                "{name}: the body as is"
            );
            n
        };
        server.set_delay(Duration::ZERO);
        assert_eq!(during, 0, "{name}: no instance while the provider answers");
        let counts = app.instance_counts();
        assert_eq!(
            (counts.instantiations, counts.read_by_host),
            (1, 1),
            "{name}"
        );
        assert_eq!(
            server.received().last().unwrap().json(),
            json!({"to": "+1"})
        );

        // Not declared: the adapter reads the same answer.
        let out = call(&app, "post", json!({}))
            .await
            .expect("the call succeeds");
        assert_eq!(
            (out["status"].clone(), out["read_by"].clone()),
            (json!(201), json!(lang)),
            "{name}: {out}"
        );
        // Declared, but not a JSON success: the adapter reads it.
        for (answer, status) in [
            (Answer::json(503, json!({"error": "busy"})), 503),
            (Answer::text(200, "queued"), 200),
        ] {
            server.once("/v1/messages", answer);
            let out = call(&app, "read-by-host", json!({}))
                .await
                .expect("the call succeeds");
            assert_eq!(
                (out["status"].clone(), out["read_by"].clone()),
                (json!(status), json!(lang)),
                "{name}: {out}"
            );
        }
        assert_eq!(app.instance_counts().read_by_host, 1, "{name}");
    }
    // The shipped polyglot adapters read every answer themselves.
    let vonage = load(&rt, "vonage", vonage_grant(&server)).await;
    assert!(vonage.read_by_host().is_empty());
}
