//! What a host-held OAuth2 token costs per call: the bundled `http`
//! plugin calls a loopback provider 2,000 times one after another with a
//! static bearer token, then with OAuth2 client credentials whose token
//! the host fetched once and keeps (a loopback token endpoint). Both in
//! the same run, alternating in rounds so drift hits both alike.
//!
//! Run: `cargo bench -p switchyard-tests --bench oauth2 --profile dev`
//!
//! Printed: p50 and p99 of a call, and the token fetches the OAuth2 run
//! made.

use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use switchyard_engine::CallRequest;
use switchyard_runtime::{Credential, Grant, Secret};
use switchyard_tests::scripted::{Answer, Scripted};
use switchyard_tests::{http_plugin, runtime};

const CALLS: usize = 2_000;
const ROUNDS: usize = 10;

async fn token_endpoint() -> (String, Arc<AtomicU64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let fetched = Arc::new(AtomicU64::new(0));
    let count = fetched.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let count = count.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_req| {
                    count.fetch_add(1, Ordering::Relaxed);
                    async {
                        Ok::<_, std::convert::Infallible>(
                            hyper::Response::builder()
                                .header("content-type", "application/json")
                                .body(http_body_util::Full::new(bytes::Bytes::from(
                                    r#"{"access_token": "tok", "token_type": "Bearer", "expires_in": 3600}"#,
                                )))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (url, fetched)
}

fn pct(v: &mut [Duration], q: f64) -> f64 {
    v.sort_unstable();
    v[((v.len() as f64 - 1.0) * q).round() as usize].as_secs_f64() * 1e6
}

#[tokio::main]
async fn main() {
    let provider = Scripted::start().await;
    provider.always("/v1/items", Answer::json(200, json!({"ok": true})));
    let url = provider.url();
    let (token, fetched) = token_endpoint().await;
    let actions = r#"[{"name": "get", "method": "GET", "path": "/v1/items"}]"#;
    let rt = runtime();
    let base = |g: Grant| g.config("base_url", &url).config("actions", actions);
    let bearer = http_plugin(
        &rt,
        "bearer",
        base(Grant::new().allow(&url).credential(Credential::Bearer {
            token: Secret::new("static-token"),
        })),
    )
    .await;
    let oauth = http_plugin(
        &rt,
        "oauth2",
        base(Grant::new().allow(&url).allow(&token).credential_for(
            [url.as_str()],
            Credential::OAuth2ClientCredentials {
                token_url: format!("{token}/oauth2/token"),
                client_id: Secret::new("id"),
                client_secret: Secret::new("secret"),
                scope: None,
            },
        )),
    )
    .await;
    let (mut b, mut o) = (Vec::new(), Vec::new());
    for app in [&bearer, &oauth] {
        // Warm: connections, instances, the token.
        for _ in 0..50 {
            app.call(CallRequest::new("get", json!({}))).await.unwrap();
        }
    }
    for _ in 0..ROUNDS {
        for (app, out) in [(&bearer, &mut b), (&oauth, &mut o)] {
            for _ in 0..CALLS / ROUNDS {
                let t = Instant::now();
                app.call(CallRequest::new("get", json!({}))).await.unwrap();
                out.push(t.elapsed());
            }
        }
    }
    println!("a call of the bundled http plugin to a loopback provider, {CALLS} each:");
    let (bp50, bp99) = (pct(&mut b, 0.5), pct(&mut b, 0.99));
    let (op50, op99) = (pct(&mut o, 0.5), pct(&mut o, 0.99));
    println!("  static bearer         p50 {bp50:>7.1} µs   p99 {bp99:>7.1} µs");
    println!(
        "  oauth2, cached token  p50 {op50:>7.1} µs   p99 {op99:>7.1} µs   ({} token fetch)",
        fetched.load(Ordering::Relaxed)
    );
    println!(
        "  added at p50: {:+.1} µs ({:.2}x)",
        op50 - bp50,
        op50 / bp50
    );
}
