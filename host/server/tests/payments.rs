//! The reference docs' payment chain, `examples/payments.toml` as shipped:
//! Stripe → PayPal → Square on the bundled adapters, against each
//! provider's own published API document served by Prism on loopback
//! (`tests/contracts/fakes.sh start`; PayPal's OAuth2 token from a
//! loopback token endpoint). Each provider serves in turn as the ones
//! before it fail (their origins made unreachable), the output mapping
//! gives `transactionId` and `status` from each provider's own answer, and
//! the update that adds Adyen (`examples/payments-update.json`, a PATCH)
//! keeps everything it does not name.

mod common;

use common::*;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

const STRIPE: &str = "http://127.0.0.1:12111";
const PAYPAL: &str = "http://127.0.0.1:12114";
const SQUARE: &str = "http://127.0.0.1:12116";
const ADYEN: &str = "http://127.0.0.1:12117";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A loopback OAuth2 token endpoint (PayPal's documents do not describe
/// one): any client, a fresh token.
async fn token_endpoint() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(
                        hyper::Response::builder()
                            .header("content-type", "application/json")
                            .body(http_body_util::Full::new(bytes::Bytes::from(
                                r#"{"access_token": "A21AA-chain", "token_type": "Bearer", "expires_in": 32400}"#,
                            )))
                            .unwrap(),
                    )
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    url
}

/// The shipped example with each app pointed at its fake, or at a port
/// nobody listens on when it is in `down`.
fn config(dir: &Path, token: &str, down: &[&str]) -> PathBuf {
    use toml::Value as T;
    let text = std::fs::read_to_string(repo().join("examples/payments.toml")).unwrap();
    let mut doc: toml::Table = toml::from_str(&text).unwrap();
    doc["server"]["listen"] = T::String("127.0.0.1:0".into());
    let dead = "http://127.0.0.1:9";
    for (app, fake) in [
        ("stripe", STRIPE),
        ("paypal", PAYPAL),
        ("square", SQUARE),
        ("adyen", ADYEN),
    ] {
        let origin = if down.contains(&app) { dead } else { fake };
        let env = &mut doc["products"]["pay"]["apps"][app]["envs"]["prod"];
        let mut allow = vec![T::String(origin.into())];
        if app == "paypal" {
            allow.push(T::String(token.into()));
        }
        env["allow"] = T::Array(allow);
        env["config"]["api_base"] = T::String(origin.into());
        if app == "paypal" {
            let c = &mut env["credentials"][0];
            c["token_url"] = T::String(format!("{token}/v1/oauth2/token"));
            c.as_table_mut()
                .unwrap()
                .insert("origins".into(), T::Array(vec![T::String(origin.into())]));
        }
    }
    let path = dir.join("payments.toml");
    std::fs::write(&path, toml::to_string(&doc).unwrap()).unwrap();
    path
}

fn start(config: &Path) -> Server {
    Server::start_with_env(
        config,
        &[
            ("STRIPE_SECRET_KEY", "sk_test_chain"),
            ("PAYPAL_CLIENT_ID", "client-id"),
            ("PAYPAL_SECRET", "client-secret"),
            ("SQUARE_ACCESS_TOKEN", "EAAAchain"),
            ("ADYEN_API_KEY", "AQEchain"),
        ],
    )
}

fn order(n: u32) -> Value {
    json!({"input": {
        "amount": 1099, "currency": "USD", "order_id": format!("order-{n}"),
        "stripe_payment_method": "pm_card_visa", "paypal_vault_id": "8WG0X2", "square_card_id": "ccof:customer-card-1",
        "adyen_stored_method": "8415718415172204", "shopper": "shopper-42"
    }})
}

async fn pay(server: &Server, n: u32) -> Value {
    let (st, v) = server
        .post("/v1/pay/prod/fallbacks/payment-fallback/run", order(n))
        .await;
    assert_eq!(st, 200, "{v}");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payments_chain() {
    for (url, name) in [
        (STRIPE, "Stripe"),
        (PAYPAL, "PayPal"),
        (SQUARE, "Square"),
        (ADYEN, "Adyen"),
    ] {
        let addr = url.trim_start_matches("http://");
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_ok(),
            "the {name} fake is not running on {url}; start the fakes with `tests/contracts/fakes.sh start`"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let token = token_endpoint().await;

    // All up: Stripe serves, its PaymentIntent's id and status.
    let server = start(&config(dir.path(), &token, &[]));
    let v = pay(&server, 1).await;
    assert_eq!(v["provider"], "stripe", "{v}");
    assert!(
        v["output"]["transactionId"]
            .as_str()
            .unwrap()
            .starts_with("pi_"),
        "{v}"
    );
    assert!(v["output"]["status"].is_string(), "{v}");
    drop(server);

    // Stripe unreachable: PayPal serves (create, then capture), the
    // capture's id.
    let server = start(&config(dir.path(), &token, &["stripe"]));
    let v = pay(&server, 2).await;
    assert_eq!(v["provider"], "paypal", "{v}");
    assert_eq!(v["output"]["provider"], "paypal");
    assert!(v["output"]["transactionId"].is_string(), "{v}");
    assert!(v["output"]["status"].is_string(), "{v}");
    let tried: Vec<&str> = v["trace"]["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["provider"].as_str().unwrap())
        .collect();
    assert_eq!(
        tried,
        ["stripe", "stripe", "stripe", "paypal"],
        "Stripe's retries, then PayPal: {v}"
    );
    drop(server);

    // Stripe and PayPal unreachable: Square serves, its payment's id.
    let server = start(&config(dir.path(), &token, &["stripe", "paypal"]));
    let v = pay(&server, 3).await;
    assert_eq!(v["provider"], "square", "{v}");
    assert!(v["output"]["transactionId"].is_string(), "{v}");
    assert!(v["output"]["status"].is_string(), "{v}");

    // The update adds Adyen: everything it does not name stays.
    let update: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("examples/payments-update.json")).unwrap(),
    )
    .unwrap();
    let (_, before) = server
        .get("/v1/pay/definitions/fallbacks/payment-fallback")
        .await;
    let (st, v) = server
        .call(
            "PATCH",
            "/v1/pay/definitions/fallbacks/payment-fallback",
            Some(TOKEN),
            Some(update),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let (_, after) = server
        .get("/v1/pay/definitions/fallbacks/payment-fallback")
        .await;
    for kept in ["input", "on", "deadline_ms", "name"] {
        assert_eq!(after[kept], before[kept], "{kept} kept: {after}");
    }
    assert_eq!(after["options"].as_array().unwrap().len(), 4);
    assert_eq!(after["options"][3]["provider"], "adyen");
    drop(server);

    // All three unreachable: Adyen serves, its resultCode as the status.
    let server = start(&config(dir.path(), &token, &["stripe", "paypal", "square"]));
    let v = pay(&server, 4).await;
    assert_eq!(v["provider"], "adyen", "{v}");
    assert!(v["output"]["status"].is_string(), "{v}");
    assert!(v["output"].get("transactionId").is_some(), "{v}");
}
