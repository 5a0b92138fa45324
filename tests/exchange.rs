//! The exchange world: adapters describe each HTTP exchange and the host
//! performs it. No instance is alive while a provider answers; the host
//! adds credentials and classifies transport failures; state and requests
//! are capped; an exchange adapter has no network of its own.

use serde_json::json;
use std::time::Duration;
use switchyard_engine::{CallRequest, ErrorClass, FailureKind};
use switchyard_runtime::{App, Credential, Grant, Runtime, Secret, World};
use switchyard_tests::scripted::{Answer, Scripted};
use switchyard_tests::{artifacts, http_plugin, runtime};

const ACTIONS: &str = r#"[{"name": "send", "method": "POST", "path": "/v1/messages"}]"#;

fn grant(url: &str) -> Grant {
    Grant::new()
        .allow(url)
        .config("base_url", url)
        .config("actions", ACTIONS)
}

async fn exchange_program(rt: &Runtime, grant: Grant) -> App {
    rt.load("exchange", artifacts::EXCHANGE, grant)
        .await
        .expect("the exchange test program loads")
}

async fn http_wasi(rt: &Runtime, grant: Grant) -> App {
    rt.load("http-wasi", artifacts::HTTP_WASI, grant)
        .await
        .expect("the adapter-world http program loads")
}

/// 40 calls in flight against a provider that takes 400 ms: the exchange
/// adapter holds no instance while they wait; the same logic in the
/// adapter world holds one per call. Both answer the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exchange_call_holds_no_instance_while_the_provider_answers() {
    let provider = Scripted::start().await;
    provider.always("/v1/messages", Answer::json(200, json!({"id": "m-1"})));
    provider.set_delay(Duration::from_millis(400));
    let rt = runtime();
    let exchange = http_plugin(&rt, "http", grant(&provider.url())).await;
    let wasi = http_wasi(&rt, grant(&provider.url())).await;
    assert_eq!(exchange.world(), World::ExchangeAdapter);
    assert_eq!(wasi.world(), World::Adapter);
    for (app, held_while_waiting) in [(&exchange, 0..=2), (&wasi, 40..=40)] {
        let calls = (0..40).map(|i| {
            let app = app.clone();
            tokio::spawn(async move {
                app.call(CallRequest::new("send", json!({"n": i})).deadline(Duration::from_secs(5)))
                    .await
            })
        });
        let handles: Vec<_> = calls.collect();
        // Sample while every call waits on the provider (100 – 300 ms in);
        // a busy CI machine may still be finishing a step at one sample.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut samples = Vec::new();
        for _ in 0..5 {
            samples.push(rt.instances().0);
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        let typical = if app.world() == World::ExchangeAdapter {
            *samples.iter().min().unwrap()
        } else {
            *samples.iter().max().unwrap()
        };
        assert!(
            held_while_waiting.contains(&typical),
            "{:?}: {samples:?} instances held while the provider thinks",
            app.world()
        );
        for h in handles {
            let out = h.await.unwrap().expect("the call succeeds");
            assert_eq!(out.output, json!({"id": "m-1"}));
        }
        assert_eq!(rt.instances().0, 0);
    }
    assert_eq!(provider.received().len(), 80);
    // The WASI side of a store is made on the guest's first WASI call: the
    // shipped plugin's steps make none; the adapter world's wasi:http does.
    assert_eq!(exchange.instance_counts().with_wasi, 0);
    assert_eq!(wasi.instance_counts().with_wasi, 40);
}

/// A provider that answers within the runtime's `exchange_hold` gets a
/// call's two steps on one instance (one instantiation per call); a slower
/// one, or a hold of zero, gets a fresh instance per step, and no instance
/// is kept once the call is done. (`post` needs its `resume`: the host
/// reads none of its answers.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quick_answer_keeps_the_calls_instance_for_its_next_step() {
    let provider = Scripted::start().await;
    provider.always("/v1/messages", Answer::json(200, json!({"id": "m-1"})));
    let held = runtime();
    let fresh = Runtime::new(switchyard_runtime::RuntimeConfig {
        cache_dir: Some(switchyard_tests::cache_dir()),
        exchange_hold: Duration::ZERO,
        ..switchyard_runtime::RuntimeConfig::default()
    })
    .unwrap();
    let call = |app: App| async move {
        for i in 0..10 {
            let out = app
                .call(CallRequest::new("post", json!({"n": i})).deadline(Duration::from_secs(5)))
                .await
                .expect("the call succeeds");
            assert_eq!(out.output["status"], 200, "{}", out.output);
        }
        app.instance_counts()
    };
    let kept = exchange_program(&held, grant(&provider.url())).await;
    let counts = call(kept).await;
    assert_eq!(counts.instantiations, 10, "one instance per call");
    assert_eq!(counts.read_by_host, 0, "`post` is read by its adapter");
    assert_eq!(held.instances().0, 0);
    let every_step = exchange_program(&fresh, grant(&provider.url())).await;
    assert_eq!(
        call(every_step).await.instantiations,
        20,
        "one instance per step"
    );
    // slower than the hold: the instance goes back while the provider thinks
    provider.set_delay(Duration::from_millis(150));
    let slow = exchange_program(&held, grant(&provider.url())).await;
    let during = {
        let app = slow.clone();
        let h = tokio::spawn(async move {
            app.call(CallRequest::new("post", json!({})).deadline(Duration::from_secs(5)))
                .await
        });
        tokio::time::sleep(Duration::from_millis(90)).await;
        let n = held.instances().0;
        h.await.unwrap().expect("the call succeeds");
        n
    };
    assert_eq!(during, 0, "no instance while a slow provider thinks");
    assert_eq!(slow.instance_counts().instantiations, 2);
}

/// An action the adapter lists in `exchange-reading`: a 2xx JSON answer is
/// the output as is, read by the host with no `resume` step (one instance
/// per call, gone before the request is sent, with or without a hold);
/// every other answer (an error status, a non-JSON or empty body) still
/// goes to the adapter's `resume`, which wraps it as `{"status", "body"}`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_reads_a_json_success_itself_and_leaves_the_rest_to_resume() {
    let provider = Scripted::start().await;
    provider.always(
        "/v1/messages",
        Answer::json(201, json!({"id": "m-1", "n": [1, 2.5, "x"]})),
    );
    for hold in [None, Some(Duration::ZERO)] {
        let rt = match hold {
            None => runtime(),
            Some(hold) => Runtime::new(switchyard_runtime::RuntimeConfig {
                cache_dir: Some(switchyard_tests::cache_dir()),
                exchange_hold: hold,
                ..switchyard_runtime::RuntimeConfig::default()
            })
            .unwrap(),
        };
        let app = exchange_program(&rt, grant(&provider.url())).await;
        assert_eq!(app.read_by_host(), vec!["read-by-host"]);
        provider.set_delay(Duration::from_millis(60));
        let call = tokio::spawn({
            let app = app.clone();
            async move {
                app.call(
                    CallRequest::new("read-by-host", json!({"to": "+1"}))
                        .deadline(Duration::from_secs(5)),
                )
                .await
            }
        });
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(
            rt.instances().0,
            0,
            "no instance while the provider answers"
        );
        let out = call.await.unwrap().expect("the call succeeds");
        provider.set_delay(Duration::ZERO);
        assert_eq!(
            out.output,
            json!({"id": "m-1", "n": [1, 2.5, "x"]}),
            "the body as is"
        );
        let counts = app.instance_counts();
        assert_eq!(
            (counts.instantiations, counts.read_by_host),
            (1, 1),
            "{hold:?}"
        );
        assert_eq!(
            counts.with_wasi, 0,
            "the step made no WASI call, so its store made no WASI context"
        );
        // The same answer to an action the adapter reads itself.
        let out = app
            .call(CallRequest::new("post", json!({})).deadline(Duration::from_secs(5)))
            .await
            .expect("the call succeeds");
        assert_eq!(out.output["status"], 201);
        assert_eq!(app.instance_counts().read_by_host, 1);
    }

    let rt = runtime();
    let app = exchange_program(&rt, grant(&provider.url())).await;
    let cases = [
        (
            Answer::json(503, json!({"error": "busy"})),
            503,
            "{\"error\":\"busy\"}",
        ),
        (
            Answer::json(400, json!({"error": "bad"})),
            400,
            "{\"error\":\"bad\"}",
        ),
        (
            Answer::text(200, "queued, no JSON é"),
            200,
            "queued, no JSON é",
        ),
        (Answer::text(204, ""), 204, ""),
        (Answer::text(200, "  "), 200, "  "),
        (Answer::text(302, "{}"), 302, "{}"),
    ];
    for (i, (answer, status, body)) in cases.into_iter().enumerate() {
        provider.once("/v1/messages", answer);
        let out = app
            .call(
                CallRequest::new("read-by-host", json!({"i": i})).deadline(Duration::from_secs(5)),
            )
            .await
            .expect("the call succeeds");
        assert_eq!(
            out.output,
            json!({"status": status, "body": body}),
            "case {i}: resume read it"
        );
    }
    let counts = app.instance_counts();
    assert_eq!(counts.read_by_host, 0);
    assert_eq!(counts.with_wasi, 0, "start and resume make no WASI call");
    assert_eq!(
        counts.instantiations, 12,
        "a start instance and a resume instance for each answer left to the adapter"
    );
    // A provider that keeps failing fast: once most recent answers needed
    // `resume`, a call keeps its instance through the quick send, so a
    // failed attempt instantiates once, not twice.
    provider.always("/v1/messages", Answer::json(503, json!({"error": "down"})));
    let failing = |n: u64| {
        let app = app.clone();
        async move {
            let before = app.instance_counts().instantiations;
            for i in 0..n {
                let out = app
                    .call(
                        CallRequest::new("read-by-host", json!({"i": i}))
                            .deadline(Duration::from_secs(5)),
                    )
                    .await
                    .expect("the adapter reads the 503");
                assert_eq!(out.output["status"], 503);
            }
            app.instance_counts().instantiations - before
        }
    };
    assert_eq!(failing(4).await, 4, "one instance per failed attempt");
    // Back to JSON successes: read by the host again.
    provider.always("/v1/messages", Answer::json(200, json!({"id": "m-2"})));
    for _ in 0..8 {
        let out = app
            .call(CallRequest::new("read-by-host", json!({})).deadline(Duration::from_secs(5)))
            .await
            .unwrap();
        assert_eq!(out.output, json!({"id": "m-2"}));
    }
    assert_eq!(app.instance_counts().read_by_host, 8);

    // The shipped adapters list their JSON actions; a healthcheck's `ping`
    // (whose output is not the body) is never read by the host.
    let http = http_plugin(&rt, "http", grant(&provider.url())).await;
    assert_eq!(http.read_by_host(), vec!["request", "send"]);
    let stripe = rt
        .load("stripe", artifacts::STRIPE_PLUGIN, grant(&provider.url()))
        .await
        .unwrap();
    assert_eq!(
        stripe.read_by_host(),
        vec![
            "create-charge",
            "create-payment-intent",
            "create-refund",
            "retrieve-payment-intent"
        ]
    );
    let misbehave = switchyard_tests::misbehave(&rt, grant(&provider.url())).await;
    assert!(
        misbehave.read_by_host().is_empty(),
        "adapter world: nothing to read"
    );
    // An `exchange-reading` export of another shape (from a later 0.2.x,
    // so the host finds it) is refused at load, saying why: the host will
    // not quietly read nothing.
    let refused = rt
        .load(
            "mismatched",
            artifacts::READING_MISMATCH,
            grant(&provider.url()),
        )
        .await
        .expect_err("a mismatched exchange-reading export is refused");
    let message = refused.to_string();
    assert!(
        message.contains("mismatched")
            && message.contains("`exchange-reading` export that does not match the contract")
            && message.contains("expected `record` found `string`"),
        "{message}"
    );
}

/// A call in two steps: the state carried from the first reaches the
/// second, and the host adds the grant's credential to every request (the
/// adapter never sees it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_carry_state_and_the_host_adds_the_credentials() {
    let provider = Scripted::start().await;
    provider.always("/token", Answer::text(200, "tok-1"));
    provider.always("/v1/messages", Answer::json(201, json!({"id": "m-2"})));
    let rt = runtime();
    let g = grant(&provider.url()).credential(Credential::Bearer {
        token: Secret::new("sk_live_never_in_the_guest"),
    });
    let app = exchange_program(&rt, g).await;
    let out = app
        .call(CallRequest::new("two-steps", json!({"to": "+1"})))
        .await
        .expect("two steps serve");
    assert_eq!(out.output, json!({"token": "tok-1", "sent": {"id": "m-2"}}));
    let seen = provider.received();
    assert_eq!(
        seen.iter().map(|r| r.path.as_str()).collect::<Vec<_>>(),
        ["/token", "/v1/messages"]
    );
    assert_eq!(seen[1].header("x-token"), Some("tok-1"));
    assert_eq!(seen[1].json(), json!({"to": "+1"}));
    for r in &seen {
        assert_eq!(
            r.header("authorization"),
            Some("Bearer sk_live_never_in_the_guest")
        );
    }
    // A request the adapter describes with the credential's header is
    // refused, as over wasi:http.
    let app = http_plugin(
        &rt,
        "http",
        grant(&provider.url()).credential(Credential::Bearer {
            token: Secret::new("sk"),
        }),
    )
    .await;
    let e = app
        .call(CallRequest::new(
            "request",
            json!({"method": "GET", "path": "/token", "headers": {"Authorization": "Bearer mine"}}),
        ))
        .await
        .unwrap_err();
    assert_eq!(
        (e.class, e.kind),
        (ErrorClass::Internal, FailureKind::EgressDenied),
        "{e}"
    );
}

/// Transport failures never reach the adapter: the host classifies them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_classifies_transport_failures() {
    let rt = runtime();
    // Nothing listens: refused before it was sent → unavailable.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let app = http_plugin(&rt, "http", grant(&closed)).await;
    let e = app
        .call(CallRequest::new("send", json!({})))
        .await
        .unwrap_err();
    assert_eq!(e.class, ErrorClass::Unavailable, "{e}");
    assert!(e.message.contains("never reached the provider"), "{e}");
    // Sent, no answer before the deadline → ambiguous.
    let slow = Scripted::start().await;
    slow.always("/v1/messages", Answer::json(200, json!({})));
    slow.set_delay(Duration::from_secs(3));
    let app = http_plugin(&rt, "http", grant(&slow.url())).await;
    let e = app
        .call(CallRequest::new("send", json!({})).deadline(Duration::from_millis(500)))
        .await
        .unwrap_err();
    assert_eq!(
        (e.class, e.kind),
        (ErrorClass::Ambiguous, FailureKind::DeadlineExceeded),
        "{e}"
    );
    // An origin the grant does not allow → internal, the denial named.
    let other = Scripted::start().await;
    let app = http_plugin(
        &rt,
        "http",
        Grant::new()
            .allow(slow.url())
            .config("base_url", other.url())
            .config("actions", ACTIONS),
    )
    .await;
    let e = app
        .call(CallRequest::new("send", json!({})))
        .await
        .unwrap_err();
    assert_eq!(
        (e.class, e.kind),
        (ErrorClass::Internal, FailureKind::EgressDenied),
        "{e}"
    );
    assert!(other.received().is_empty());
    // The provider's own answer goes to the adapter, which classifies it.
    let busy = Scripted::start().await;
    busy.always(
        "/v1/messages",
        Answer::json(429, json!({"error": "slow down"})).header("retry-after", "2"),
    );
    let app = http_plugin(&rt, "http", grant(&busy.url())).await;
    let e = app
        .call(CallRequest::new("send", json!({})))
        .await
        .unwrap_err();
    assert_eq!(e.class, ErrorClass::RateLimited, "{e}");
    assert_eq!(e.retry_after, Some(Duration::from_secs(2)));
}

/// What an exchange adapter can get wrong is contained, typed, and the
/// app serves the next call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchange_misbehaviour_is_contained() {
    let provider = Scripted::start().await;
    provider.always("/health", Answer::json(200, json!({"ok": true})));
    let rt = runtime();
    let app = exchange_program(&rt, grant(&provider.url())).await;
    let call = |action: &str| {
        app.call(CallRequest::new(action, json!({})).deadline(Duration::from_secs(1)))
    };
    let e = call("big-state").await.unwrap_err();
    assert_eq!(
        (e.class, e.kind),
        (ErrorClass::Internal, FailureKind::BadOutput),
        "{e}"
    );
    assert!(e.message.contains("state"), "{e}");
    let e = call("bad-url").await.unwrap_err();
    assert_eq!(
        (e.class, e.kind),
        (ErrorClass::Internal, FailureKind::BadOutput),
        "{e}"
    );
    // A step that never ends, after a request was answered: the deadline
    // stops it, and the provider may have acted.
    let e = call("loop-in-resume").await.unwrap_err();
    assert_eq!(
        (e.class, e.kind),
        (ErrorClass::Ambiguous, FailureKind::DeadlineExceeded),
        "{e}"
    );
    // No network of its own: a wasi:http request is refused.
    let before = app.egress_stats().denied;
    let out = call("wasi-http")
        .await
        .expect("the adapter handles the refusal");
    assert_eq!(out.output, json!({"sent": false}));
    assert_eq!(app.egress_stats().denied, before + 1);
    // Requests per call are capped (8 by default).
    provider.clear();
    let e = call("endless").await.unwrap_err();
    assert_eq!(e.kind, FailureKind::EgressDenied, "{e}");
    assert!(e.message.contains('8'), "{e}");
    assert_eq!(provider.received().len(), 8);
    // And it still serves.
    let out = call("echo").await.expect("serves after all that");
    assert!(out.output["remaining_ms"].as_u64().unwrap() <= 1000);
}

/// A runtime whose answers are held under a host-wide budget of `mb` MiB.
fn budgeted(mb: usize) -> (Runtime, std::sync::Arc<switchyard_runtime::HostBytes>) {
    let budget = switchyard_runtime::HostBytes::new(mb << 20);
    let rt = Runtime::new(switchyard_runtime::RuntimeConfig {
        cache_dir: Some(switchyard_tests::cache_dir()),
        host_bytes: Some(budget.clone()),
        ..switchyard_runtime::RuntimeConfig::default()
    })
    .expect("runtime starts");
    (rt, budget)
}

/// Answers the host reads whole are held under one budget for all calls:
/// they come back whole while it has room, and every byte is given back
/// when the calls end. With no room for one answer of the egress cap
/// (8 MiB), a request is not sent at all: the attempt is `overloaded`,
/// the host's limit, never the provider's failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_are_held_under_the_hosts_byte_budget() {
    let provider = Scripted::start().await;
    let big = "x".repeat(600 << 10);
    provider.always(
        "/v1/messages",
        Answer::json(200, json!({"id": "m", "pad": big})),
    );
    provider.set_delay(Duration::from_millis(100));

    let (rt, budget) = budgeted(64);
    let app = http_plugin(&rt, "http", grant(&provider.url())).await;
    let calls: Vec<_> = (0..8)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(async move {
                app.call(
                    CallRequest::new("send", json!({"n": i})).deadline(Duration::from_secs(20)),
                )
                .await
            })
        })
        .collect();
    for c in calls {
        let out = c.await.unwrap().expect("answers fit the budget");
        assert_eq!(out.output["id"], "m");
    }
    assert_eq!(budget.used(), 0, "every byte is given back");
    assert_eq!(budget.refused(), 0);
    assert_eq!(provider.received().len(), 8);

    let (rt, budget) = budgeted(4);
    let app = http_plugin(&rt, "http", grant(&provider.url())).await;
    let before = provider.received().len();
    let e = app
        .call(CallRequest::new("send", json!({"n": 1})))
        .await
        .expect_err("no room for an answer");
    assert_eq!(e.class, ErrorClass::Overloaded, "{e}");
    assert_eq!(e.kind, FailureKind::Overload, "{e}");
    assert!(e.message.contains("server.max_buffered_mb"), "{e}");
    assert_eq!(provider.received().len(), before, "nothing was sent");
    assert!(budget.refused() >= 1);
}

/// With threads of its own (`sandbox_threads`), the runtime runs every
/// call there, its steps and its requests: the calls answer as in place,
/// a call's future that is never polled sends nothing, and a caller that
/// stops waiting stops the call (its only slot is free again at once, not
/// at the call's deadline). The runtime and its apps
/// may be dropped inside async code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_run_on_the_sandbox_threads_and_stop_with_their_caller() {
    let provider = Scripted::start().await;
    provider.always("/v1/messages", Answer::json(200, json!({"id": "m-1"})));
    let rt = Runtime::new(switchyard_runtime::RuntimeConfig {
        cache_dir: Some(switchyard_tests::cache_dir()),
        sandbox_threads: 1,
        max_instances: 1,
        ..switchyard_runtime::RuntimeConfig::default()
    })
    .unwrap();
    assert_eq!(rt.sandbox_threads(), 1);
    let http = http_plugin(&rt, "http", grant(&provider.url())).await;
    let calls = (0..20).map(|i| {
        let http = http.clone();
        tokio::spawn(async move {
            http.call(CallRequest::new("send", json!({"n": i})).deadline(Duration::from_secs(10)))
                .await
        })
    });
    for h in calls.collect::<Vec<_>>() {
        let out = h.await.unwrap().expect("the call succeeds");
        assert_eq!(out.output, json!({"id": "m-1"}));
    }
    assert_eq!(provider.received().len(), 20);
    // As in place, a call the engine made but never polled sends nothing.
    let unpolled = switchyard_engine::Adapter::call(&http, CallRequest::new("send", json!({})));
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(unpolled);
    assert_eq!(provider.received().len(), 20);

    let spin = rt
        .load(
            "misbehave",
            std::path::Path::new(artifacts::MISBEHAVE_PATH),
            Grant::new(),
        )
        .await
        .unwrap();
    let looping = spin.call(CallRequest::new("loop", json!({})).deadline(Duration::from_secs(30)));
    assert!(
        tokio::time::timeout(Duration::from_millis(300), looping)
            .await
            .is_err(),
        "the loop runs until its caller stops waiting"
    );
    let started = std::time::Instant::now();
    spin.call(CallRequest::new("noop", json!({})).deadline(Duration::from_secs(10)))
        .await
        .expect("the only slot is free again");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the abandoned loop held the slot for {:?}",
        started.elapsed()
    );
    assert_eq!(rt.instances().0, 0);
    drop((spin, http, rt));
}

/// The runtime refuses more sandbox threads than its bound, naming it.
#[test]
fn sandbox_threads_have_a_bound() {
    let e = Runtime::new(switchyard_runtime::RuntimeConfig {
        cache_dir: None,
        sandbox_threads: switchyard_runtime::MAX_SANDBOX_THREADS + 1,
        ..switchyard_runtime::RuntimeConfig::default()
    })
    .err()
    .expect("refused");
    assert!(e.to_string().contains("sandbox_threads is 65"), "{e}");
}
