//! OAuth2 client credentials held by the host, end to end: `switchyard
//! serve` with the bundled `http` plugin calling a loopback provider that
//! wants a bearer token from a loopback token endpoint. One fetch serves
//! 200 concurrent calls; a token is fetched again when it expires and
//! when the provider answers 401; an endpoint that is down fails the
//! provider over; bad credentials are refused at load naming the field;
//! the secret and the token appear nowhere in answers.

mod common;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const SECRET: &str = "s3cr3t-client-secret-value";

/// The token endpoint and the provider in one loopback server.
#[derive(Default)]
struct Fake {
    fetches: AtomicU64,
    /// `expires_in` the next token gets.
    expires_in: AtomicU64,
    /// The token the provider accepts now.
    current: Mutex<String>,
    /// Answer the token request with this body instead (a broken answer).
    token_body: Mutex<Option<String>>,
    calls: AtomicU64,
    unauthorized: AtomicU64,
}

async fn handle(
    f: Arc<Fake>,
    req: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, std::convert::Infallible> {
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let path = req.uri().path().to_string();
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let answer = |status: u16, v: Value| {
        hyper::Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(v.to_string())))
            .unwrap()
    };
    if path == "/oauth2/token" {
        // Basic base64("client-id:secret"), a form body.
        let expected = format!("Basic {}", b64(format!("client-id:{SECRET}").as_bytes()));
        if auth != expected
            || !String::from_utf8_lossy(&body).contains("grant_type=client_credentials")
        {
            return Ok(answer(401, json!({"error": "invalid_client"})));
        }
        if let Some(b) = f.token_body.lock().unwrap().clone() {
            return Ok(hyper::Response::new(Full::new(Bytes::from(b))));
        }
        // Slow enough that concurrent calls pile up behind one fetch.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let n = f.fetches.fetch_add(1, Ordering::SeqCst) + 1;
        let token = format!("tok-{n}");
        *f.current.lock().unwrap() = token.clone();
        return Ok(answer(
            200,
            json!({"access_token": token, "token_type": "Bearer", "expires_in": f.expires_in.load(Ordering::SeqCst)}),
        ));
    }
    f.calls.fetch_add(1, Ordering::SeqCst);
    let want = format!("Bearer {}", f.current.lock().unwrap());
    if auth != want {
        f.unauthorized.fetch_add(1, Ordering::SeqCst);
        return Ok(answer(401, json!({"error": "invalid_token"})));
    }
    Ok(answer(200, json!({"id": "ord-1", "status": "COMPLETED"})))
}

fn b64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            out.push(if i <= chunk.len() {
                T[((n >> (18 - 6 * i)) & 63) as usize] as char
            } else {
                '='
            });
        }
    }
    out
}

async fn start_fake() -> (Arc<Fake>, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let f = Arc::new(Fake::default());
    f.expires_in.store(3600, Ordering::SeqCst);
    let fake = f.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let fake = fake.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| handle(fake.clone(), req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (f, url)
}

/// A config with app `pp` calling the fake with OAuth2 (`token_url` as
/// given) in a fallback before the simulated backup.
fn config(s: &Setup, url: &str, token_url: &str) -> std::path::PathBuf {
    s.config_with(&format!(
        r#"
[products.notify.apps.pp]
plugin = "bundled:http"
[products.notify.apps.pp.envs.dev]
allow = ["{url}"]
credentials = [{{ scheme = "oauth2-client-credentials", token_url = "{token_url}", client_id = "client-id", client_secret = {{ env = "PP_SECRET" }} }}]
config = {{ base_url = "{url}", actions = '[{{"name": "capture", "method": "POST", "path": "/v2/checkout/orders", "idempotency": "unsafe", "input": {{"to": {{"type": "string"}}}}}}]' }}

[products.notify.fallbacks.pay]
input = {{ to = {{ type = "string" }} }}
options = [
  {{ provider = "paypal", app = "pp", action = "capture" }},
  {{ provider = "backup", app = "backup", action = "send-message" }},
]
"#
    ))
}

async fn pay(server: &Server, i: usize) -> (u16, Value) {
    server
        .post(
            "/v1/notify/dev/fallbacks/pay/run",
            json!({"input": {"to": format!("+{i}")}}),
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_token_serves_concurrent_calls_and_is_fetched_again_on_expiry_and_401() {
    let s = Setup::new().await;
    let (fake, url) = start_fake().await;
    let config = config(&s, &url, &format!("{url}/oauth2/token"));
    let server = Arc::new(Server::start_with_env(&config, &[("PP_SECRET", SECRET)]));
    // 200 calls at once: one token fetch.
    let mut all = tokio::task::JoinSet::new();
    for i in 0..200 {
        let server = server.clone();
        all.spawn(async move { pay(&server, i).await });
    }
    while let Some(r) = all.join_next().await {
        let (st, v) = r.unwrap();
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["provider"], "paypal", "{v}");
        let text = v.to_string();
        assert!(!text.contains(SECRET) && !text.contains("tok-1"), "{text}");
    }
    assert_eq!(
        fake.fetches.load(Ordering::SeqCst),
        1,
        "one fetch for 200 calls"
    );

    // The provider rotates the token (401 to the old one): one new fetch,
    // the call sent again, served.
    *fake.current.lock().unwrap() = "rotated".into();
    let (st, v) = pay(&server, 1).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["provider"], "paypal");
    assert_eq!(fake.fetches.load(Ordering::SeqCst), 2);
    assert_eq!(fake.unauthorized.load(Ordering::SeqCst), 1);

    // A token that lives 2 s is fetched again once it is due.
    fake.expires_in.store(2, Ordering::SeqCst);
    *fake.current.lock().unwrap() = "rotated-again".into();
    let (st, _) = pay(&server, 2).await; // 401, fetch #3 (2 s)
    assert_eq!(st, 200);
    let (st, _) = pay(&server, 3).await; // cached
    assert_eq!(st, 200);
    assert_eq!(fake.fetches.load(Ordering::SeqCst), 3);
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let (st, _) = pay(&server, 4).await; // expired: fetch #4
    assert_eq!(st, 200);
    assert_eq!(fake.fetches.load(Ordering::SeqCst), 4);

    let (_, text) = server.get("/metrics").await;
    let text = text.as_str().unwrap();
    assert!(
        text.contains(
            "switchyard_oauth2_token_fetches_total{product=\"notify\",env=\"dev\",app=\"pp\"} 4"
        ),
        "{}",
        text.lines()
            .filter(|l| l.contains("oauth2"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(!text.contains(SECRET));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_endpoint_down_or_answering_nonsense_fails_over_without_the_secret() {
    let s = Setup::new().await;
    let (fake, url) = start_fake().await;
    // The token endpoint is a port nobody listens on, on the same host:
    // allowed, but down.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        format!("http://127.0.0.1:{port}")
    };
    let cfg = config(&s, &url, &format!("{dead}/oauth2/token"));
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace(
            &format!("allow = [\"{url}\"]"),
            &format!("allow = [\"{url}\", \"{dead}\"]"),
        )
        .replace(
            "credentials = [{ scheme",
            &format!("credentials = [{{ origins = [\"{url}\"], scheme"),
        ),
    )
    .unwrap();
    let server = Server::start_with_env(&cfg, &[("PP_SECRET", SECRET)]);
    let (st, v) = pay(&server, 1).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["provider"], "backup", "failed over: {v}");
    let first = &v["trace"]["attempts"][0];
    assert_eq!(first["outcome"], json!({"failed": "unavailable"}), "{v}");
    assert!(!v.to_string().contains(SECRET));
    assert_eq!(
        fake.calls.load(Ordering::SeqCst),
        0,
        "nothing reached the provider"
    );
    drop(server);

    // An answer without `access_token`: the provider's `internal`, named.
    *fake.token_body.lock().unwrap() = Some(r#"{"token_type": "Bearer", "expires_in": 60}"#.into());
    let server = Server::start_with_env(
        &config(&s, &url, &format!("{url}/oauth2/token")),
        &[("PP_SECRET", SECRET)],
    );
    let (st, v) = pay(&server, 2).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["provider"], "backup");
    let msg = v["trace"]["attempts"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(msg.contains("access_token"), "{v}");
    assert!(!v.to_string().contains(SECRET));
    // A non-positive `expires_in`.
    *fake.token_body.lock().unwrap() = Some(r#"{"access_token": "t", "expires_in": 0}"#.into());
    let (_, v) = pay(&server, 3).await;
    let msg = v["trace"]["attempts"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(msg.contains("expires_in"), "{v}");
}

#[tokio::test]
async fn bad_oauth2_credentials_are_refused_at_load_naming_the_field() {
    let s = Setup::new().await;
    let (_fake, url) = start_fake().await;
    let check = |cfg: std::path::PathBuf, env: &[(&str, &str)]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .arg("check")
            .arg(&cfg)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "{text}");
        assert!(!text.contains(SECRET), "{text}");
        text
    };
    // A token URL outside `allow`.
    let text = check(
        config(&s, &url, "https://auth.example.com/oauth2/token"),
        &[("PP_SECRET", SECRET)],
    );
    assert!(
        text.contains("credentials[0].token_url") && text.contains("allow"),
        "{text}"
    );
    // Plain http to a public host.
    let cfg = config(&s, &url, "http://auth.example.com/oauth2/token");
    let t = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        t.replace(
            &format!("allow = [\"{url}\"]"),
            &format!("allow = [\"{url}\", \"http://auth.example.com\"]"),
        )
        .replace(
            "credentials = [{ scheme",
            &format!("credentials = [{{ origins = [\"{url}\"], scheme"),
        ),
    )
    .unwrap();
    let text = check(cfg, &[("PP_SECRET", SECRET)]);
    assert!(
        text.contains("token_url") && text.contains("https"),
        "{text}"
    );
    // The secret's variable unset.
    let text = check(config(&s, &url, &format!("{url}/oauth2/token")), &[]);
    assert!(
        text.contains("client_secret") && text.contains("PP_SECRET"),
        "{text}"
    );
    // A secret written inline.
    let cfg = config(&s, &url, &format!("{url}/oauth2/token"));
    let t = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        t.replace(
            "client_secret = { env = \"PP_SECRET\" }",
            &format!("client_secret = \"{SECRET}\""),
        ),
    )
    .unwrap();
    let text = check(cfg, &[]);
    assert!(
        text.contains("client_secret") && text.contains("inline"),
        "{text}"
    );
}
