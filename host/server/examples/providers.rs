//! The shipped Stripe, Twilio and SNS adapters behind the engine, with the
//! definitions in `examples/providers.json`: a card-payment fallback over
//! two Stripe accounts and an SMS quota Twilio 70 / SNS 30.
//!
//! Against the loopback fakes (`tests/contracts/`):
//!
//! ```sh
//! tests/contracts/fakes.sh start
//! set -a; . /tmp/switchyard-fakes/run/sns-iam.env; set +a
//! STRIPE_API_BASE=http://127.0.0.1:12111 STRIPE_SECRET_KEY=sk_test_main \
//! STRIPE_BACKUP_SECRET_KEY=sk_test_backup \
//! TWILIO_API_BASE=http://127.0.0.1:12112 TWILIO_ACCOUNT_SID=ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa \
//! TWILIO_AUTH_TOKEN=token SNS_ENDPOINT=http://127.0.0.1:12113 AWS_REGION=us-east-1 \
//! cargo run -p switchyard --example providers
//! ```
//!
//! Without the `*_API_BASE` / `SNS_ENDPOINT` variables it talks to the real
//! providers with whatever keys the variables hold.

use serde_json::json;
use std::sync::Arc;
use switchyard_engine::{Definition, Kind, RunOptions, Switchyard};
use switchyard_runtime::{Credential, Secret};
use switchyard_runtime::{Grant, Runtime, RuntimeConfig};

fn var(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let runtime = Runtime::new(RuntimeConfig::default())?;
    let yard = Switchyard::new();
    let env = "dev";
    let bundled = |name: &str| switchyard::bundled(name).expect("built with bundled plugins");

    let stripe_base = var("STRIPE_API_BASE", "https://api.stripe.com");
    for (tag, key_var) in [
        ("stripe-main", "STRIPE_SECRET_KEY"),
        ("stripe-backup", "STRIPE_BACKUP_SECRET_KEY"),
    ] {
        let grant = Grant::new()
            .allow(&stripe_base)
            .credential(Credential::Bearer {
                token: Secret::from_env(key_var)?,
            })
            .config("api_base", &stripe_base)
            .config("stripe_version", "2023-08-16");
        let app = runtime.load(tag, bundled("stripe"), grant).await?;
        yard.install_app("payments", tag, env, Arc::new(app));
    }

    let twilio_base = var("TWILIO_API_BASE", "https://api.twilio.com");
    let sid = std::env::var("TWILIO_ACCOUNT_SID")?;
    let grant = Grant::new()
        .allow(&twilio_base)
        .credential(Credential::Basic {
            username: sid.clone(),
            password: Secret::from_env("TWILIO_AUTH_TOKEN")?,
        })
        .config("api_base", &twilio_base)
        .config("account_sid", &sid);
    yard.install_app(
        "notify",
        "twilio",
        env,
        Arc::new(runtime.load("twilio", bundled("twilio"), grant).await?),
    );

    let region = var("AWS_REGION", "us-east-1");
    let sns_endpoint = var(
        "SNS_ENDPOINT",
        &format!("https://sns.{region}.amazonaws.com"),
    );
    let grant = Grant::new()
        .allow(&sns_endpoint)
        .credential(Credential::AwsSigV4 {
            access_key_id: std::env::var("AWS_ACCESS_KEY_ID")?,
            secret_access_key: Secret::from_env("AWS_SECRET_ACCESS_KEY")?,
            session_token: std::env::var("AWS_SESSION_TOKEN").ok().map(Secret::new),
            region: region.clone(),
            service: "sns".into(),
        })
        .config("region", &region)
        .config("endpoint", &sns_endpoint);
    yard.install_app(
        "notify",
        "sns",
        env,
        Arc::new(runtime.load("sns", bundled("sns"), grant).await?),
    );

    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/providers.json");
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(file)?)?;
    let defs: Vec<Definition> = serde_json::from_value(doc["definitions"].clone())?;
    for d in defs {
        yard.create(d)?;
    }
    yard.run_due_healthchecks().await;

    let paid = yard
        .fallback()
        .run(
            "payments",
            env,
            "card-payment",
            json!({"amount": 1099, "currency": "usd", "order_id": "42"}),
            RunOptions::default(),
        )
        .await;
    match &paid {
        Ok(r) => println!("payment: {} via {:?}", r.output, r.provider),
        Err(e) => println!("payment failed: {e}"),
    }
    for i in 0..10 {
        let input = json!({"phone": "+15558675310", "text": format!("Your code is {i:06}")});
        match yard
            .run(
                Kind::Quota,
                "notify",
                env,
                "sms",
                input,
                RunOptions::default(),
            )
            .await
        {
            Ok(r) => println!("sms {i}: {} via {:?}", r.output, r.provider),
            Err(e) => println!("sms {i} failed: {e}"),
        }
    }
    for s in yard.quota().providers("notify", env, "sms")? {
        println!(
            "{:<7} {:?}, breaker {:?}, {} attempts",
            s.provider, s.status, s.breaker.state, s.counts.attempts
        );
    }
    Ok(())
}
