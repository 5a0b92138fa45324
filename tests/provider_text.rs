//! Provider bytes are hostile input: every shipped exchange-world adapter
//! (Rust, Python, JavaScript) answers any status with any body (arbitrary
//! UTF-8 with multi-byte characters at every cut an adapter makes, invalid
//! UTF-8, empty, large) with a typed error that follows the status rules,
//! and never traps. (Transport failures never reach an exchange adapter:
//! the host classes them itself, see `exchange.rs`.) A panic after a request was
//! sent would read as `ambiguous` and change the routing (a refusal failing
//! over to a second account), so "no trap" is the money invariant here.

use serde_json::json;
use switchyard::fixtures::Fixtures;
use switchyard_engine::{ErrorClass, FailureKind, Jitter};
use switchyard_runtime::Answered;
use switchyard_tests::runtime;

/// Bodies that have broken adapters or could: text with a multi-byte
/// character straddling each length an adapter cuts at, invalid UTF-8,
/// provider envelopes whose message does the same, and random bytes.
fn body(rng: &mut Jitter) -> Vec<u8> {
    let cuts = [199usize, 200, 298, 299, 300, 511, 512, 2047, 2048];
    let wide = ["é", "—", "😀", "\u{fffd}", "中"];
    let pick = |rng: &mut Jitter, n: usize| (rng.next_u64() % n as u64) as usize;
    let at = cuts[pick(rng, cuts.len())].saturating_sub(pick(rng, 3));
    let ch = wide[pick(rng, wide.len())];
    let text = format!("{}{ch}{}", "a".repeat(at), "z".repeat(pick(rng, 600)));
    match pick(rng, 8) {
        0 => text.into_bytes(),
        1 => json!({"error": {"message": text, "type": "api_error", "code": ch}})
            .to_string()
            .into_bytes(),
        2 => json!({"message": text, "code": 20003, "detail": ch}).to_string().into_bytes(),
        3 => format!("<ErrorResponse><Error><Code>{ch}</Code><Message>{text}</Message></Error></ErrorResponse>")
            .into_bytes(),
        4 => (0..pick(rng, 3000)).map(|_| (rng.next_u64() & 0xff) as u8).collect(),
        5 => Vec::new(),
        6 => {
            let mut b = text.into_bytes();
            b.insert(b.len() / 2, 0xff);
            b
        }
        _ => json!({"ok": false, "error": text, "title": text}).to_string().into_bytes(),
    }
}

const STATUSES: [u16; 18] = [
    200, 201, 204, 302, 400, 401, 402, 403, 404, 408, 409, 422, 429, 500, 502, 503, 504, 599,
];

/// What each adapter may answer to a status (beyond "no trap"): 4xx is the
/// caller's (`rejected`) unless documented otherwise, 5xx is retryable
/// (`unavailable`), or `ambiguous` where the adapter says the provider may
/// have acted.
fn allowed(adapter: &str, action: &str, status: u16, class: ErrorClass) -> bool {
    use ErrorClass::*;
    match status {
        429 => class == RateLimited,
        401 | 403 => matches!(class, Internal | Rejected),
        // Vonage answers 402 when the account is out of credit: another
        // account can serve (docs/adapters).
        402 if adapter == "vonage" => class == Unavailable,
        // PayPal's 409: a request with this PayPal-Request-Id is still
        // running there (docs/adapters/paypal.md).
        409 if adapter == "paypal" => class == Unavailable,
        408 => class == Unavailable,
        400..=499 => class == Rejected,
        // Stripe calls 500 indeterminate and 504 means the API may still
        // be working: ambiguous for its payment actions.
        500 | 504
            if adapter == "stripe"
                && matches!(
                    action,
                    "create-payment-intent" | "create-charge" | "create-refund"
                ) =>
        {
            class == Ambiguous
        }
        // PayPal, Square and Adyen do not promise a 500 (or a gateway's
        // 502/504) did nothing: ambiguous for their actions with an effect.
        500 | 502 | 504
            if matches!(
                (adapter, action),
                (
                    "paypal",
                    "charge" | "create-order" | "capture-order" | "refund"
                ) | ("square", "create-payment" | "refund")
                    | ("adyen", "payments" | "refund")
            ) =>
        {
            class == Ambiguous
        }
        500..=599 => class == Unavailable,
        _ => true,
    }
}

/// Answers an adapter serves although their status is not 2xx: PayPal's
/// ping takes a 404 for an order that does not exist as the proof that
/// PayPal answered and the token worked.
fn serves(adapter: &str, action: &str, status: u16) -> bool {
    (200..400).contains(&status) || (adapter == "paypal" && action == "ping" && status == 404)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_provider_answer_traps_a_shipped_adapter_and_every_class_follows_the_status() {
    let shipped = crate::fixtures::shipped();
    let rt = runtime();
    let rounds: u64 = std::env::var("PROVIDER_TEXT_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(48);
    let mut tried = 0;
    for (name, source, path) in shipped {
        let f = Fixtures::load(&path).unwrap();
        let app = crate::fixtures::with_config(&rt, name, source, &f).await;
        // Every case that sends a request, once per answer.
        let cases: Vec<_> = f.cases.iter().filter(|c| !c.exchanges.is_empty()).collect();
        assert!(!cases.is_empty(), "{name}: no case sends a request");
        let mut rng = Jitter::seeded(0x7e47 ^ name.len() as u64);
        for round in 0..rounds {
            let case = cases[(round % cases.len() as u64) as usize];
            let status = STATUSES[(rng.next_u64() % STATUSES.len() as u64) as usize];
            let bytes = body(&mut rng);
            let answer = Answered {
                status,
                headers: vec![("content-type".into(), "text/plain; charset=utf-8".into())],
                body: bytes.clone(),
            };
            let result = app
                .replay(case.request(), &mut |_| Ok(answer.clone()))
                .await;
            tried += 1;
            let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(80)]).into_owned();
            if let Err(e) = &result {
                assert!(
                    e.kind != FailureKind::Trap && !e.message.contains("panicked"),
                    "{name}/{}: status {status}, body {shown:?}: the adapter trapped: {e}",
                    case.action
                );
                assert!(
                    allowed(name, &case.action, status, e.class),
                    "{name}/{}: status {status} answered {}: {e} (body {shown:?})",
                    case.action,
                    e.class
                );
            } else {
                assert!(
                    serves(name, &case.action, status),
                    "{name}/{}: status {status} served",
                    case.action
                );
            }
        }
    }
    println!("{tried} provider answers replayed through 9 adapters, no trap");
}

/// `[[…[1]…]]`, `depth` arrays deep.
fn nested(depth: usize) -> String {
    format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
}

/// JSON as deep as the host lets into a run (serde_json's limit of 128
/// levels, the run's envelope included) in any input field, and provider
/// answers nested far deeper, never trap a shipped adapter: its stack
/// (64 KiB for the Rust ones, `-zstack-size` in plugins/artifacts/build.rs)
/// holds the deepest parse its JSON library allows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_nested_as_deep_as_allowed_never_traps_a_shipped_adapter() {
    let rt = runtime();
    // {"input": {"field": [[…]]}}: the envelope and the input take 2 levels.
    let deep_input: serde_json::Value = serde_json::from_str(&nested(126)).unwrap();
    let deep_answer = nested(5_000);
    let answers = [
        (200, format!(r#"{{"id": "x", "deep": {deep_answer}}}"#)),
        (200, deep_answer.clone()),
        (
            402,
            format!(
                r#"{{"error": {{"message": "no", "type": "card_error", "deep": {deep_answer}}}}}"#
            ),
        ),
        (500, format!(r#"{{"message": {deep_answer}}}"#)),
    ];
    let mut tried = 0;
    for (name, source, path) in crate::fixtures::shipped() {
        let f = Fixtures::load(&path).unwrap();
        let app = crate::fixtures::with_config(&rt, name, source, &f).await;
        for case in f.cases.iter().filter(|c| !c.exchanges.is_empty()) {
            // The deep value beside the case's fields, and in place of each.
            let mut inputs = Vec::new();
            if let Some(fields) = case.input.as_object() {
                let mut beside = fields.clone();
                beside.insert("deep".into(), deep_input.clone());
                inputs.push(serde_json::Value::Object(beside));
                for key in fields.keys() {
                    let mut replaced = fields.clone();
                    replaced.insert(key.clone(), deep_input.clone());
                    inputs.push(serde_json::Value::Object(replaced));
                }
            }
            let first = &case.exchanges[0].response;
            let recorded = Answered {
                status: first.status,
                headers: first.headers.clone(),
                body: first.body.clone().into_bytes(),
            };
            let mut runs: Vec<(serde_json::Value, Answered)> = inputs
                .into_iter()
                .map(|input| (input, recorded.clone()))
                .collect();
            for (status, body) in &answers {
                let answer = Answered {
                    status: *status,
                    headers: vec![("content-type".into(), "application/json".into())],
                    body: body.clone().into_bytes(),
                };
                runs.push((case.input.clone(), answer));
            }
            for (input, answer) in runs {
                let mut request = case.request();
                request.input = input;
                let result = app.replay(request, &mut |_| Ok(answer.clone())).await;
                tried += 1;
                if let Err(e) = &result {
                    assert!(
                        e.kind != FailureKind::Trap && !e.message.contains("panicked"),
                        "{name}/{}: status {}: the adapter trapped on deep JSON: {e}",
                        case.action,
                        answer.status
                    );
                }
            }
        }
    }
    println!("{tried} deep inputs and answers replayed through 9 adapters, no trap");
}
