//! Credentials are added by the egress gate and verified by the server;
//! the guest never holds them.

use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::{Digest, Sha256};
use switchyard::Recorded;
use switchyard_engine::CallRequest;
use switchyard_runtime::{App, Grant};
use switchyard_runtime::{Credential, Secret};
use switchyard_tests::{Simulator, misbehave, runtime};

async fn post_echo(app: &App, sim: &Simulator, body: serde_json::Value) -> Recorded {
    let out = app
        .call(CallRequest::new(
            "post",
            json!({"url": format!("{}/echo", sim.url()), "body": body}),
        ))
        .await
        .expect("post succeeds");
    assert_eq!(out.output["received"], body);
    sim.recorded().pop().expect("server saw the request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_basic_and_api_key_are_injected() {
    let sim = Simulator::start().await.unwrap();
    sim.record(true);
    let rt = runtime();

    let bearer = Grant::new()
        .allow(sim.url())
        .credential(Credential::Bearer {
            token: Secret::new("sk_test_abc"),
        });
    let app = misbehave(&rt, bearer).await;
    let seen = post_echo(&app, &sim, json!({"a": 1})).await;
    assert_eq!(seen.header("authorization"), Some("Bearer sk_test_abc"));

    let basic = Grant::new().allow(sim.url()).credential(Credential::Basic {
        username: "AC0123".into(),
        password: Secret::new("auth-token"),
    });
    let app = misbehave(&rt, basic).await;
    let seen = post_echo(&app, &sim, json!({"b": 2})).await;
    // base64("AC0123:auth-token")
    assert_eq!(
        seen.header("authorization"),
        Some("Basic QUMwMTIzOmF1dGgtdG9rZW4=")
    );

    let key = Grant::new()
        .allow(sim.url())
        .credential(Credential::ApiKeyHeader {
            header: "X-Api-Key".into(),
            key: Secret::new("key-123"),
        });
    let app = misbehave(&rt, key).await;
    let seen = post_echo(&app, &sim, json!({"c": 3})).await;
    assert_eq!(seen.header("x-api-key"), Some("key-123"));
    assert_eq!(seen.header("authorization"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_appear_in_errors() {
    let sim = Simulator::start().await.unwrap();
    let rt = runtime();
    let grant = Grant::new()
        .allow(sim.url())
        .credential(Credential::Bearer {
            token: Secret::new("sk_live_SECRET"),
        });
    let app = misbehave(&rt, grant).await;
    for (action, url) in [
        ("fetch", "http://example.invalid/x".to_string()),
        ("set-auth", format!("{}/health", sim.url())),
        ("fetch", format!("{}/status/500", sim.url())),
    ] {
        let r = app
            .call(CallRequest::new(action, json!({"url": url})))
            .await;
        let text = format!("{r:?}");
        assert!(!text.contains("sk_live_SECRET"), "secret leaked: {text}");
    }
    assert!(!format!("{app:?}").contains("sk_live_SECRET"));
}

/// SigV4 recomputed from the request as the server received it, written
/// independently of the host's signer.
fn verify_sigv4(req: &Recorded, secret: &str, region: &str, service: &str) -> bool {
    let auth = req.header("authorization").expect("signed");
    let rest = auth
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .expect("sigv4 scheme");
    let field = |name: &str| {
        rest.split(", ")
            .find_map(|p| p.strip_prefix(&format!("{name}=")))
            .expect("field present")
            .to_string()
    };
    let credential = field("Credential");
    let signed = field("SignedHeaders");
    let signature = field("Signature");
    let scope: Vec<&str> = credential.splitn(2, '/').collect();
    let scope = scope[1];
    let date = &scope[..8];
    assert_eq!(scope, format!("{date}/{region}/{service}/aws4_request"));
    let amz_date = req.header("x-amz-date").expect("x-amz-date");
    let canonical_headers: String = signed
        .split(';')
        .map(|h| format!("{h}:{}\n", req.header(h).unwrap_or("").trim()))
        .collect();
    let (path, query) = req.uri.split_once('?').unwrap_or((&req.uri, ""));
    let payload = hex::encode(Sha256::digest(&req.body));
    assert_eq!(req.header("x-amz-content-sha256"), Some(payload.as_str()));
    let canonical = format!(
        "{}\n{path}\n{query}\n{canonical_headers}\n{signed}\n{payload}",
        req.method
    );
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let mac = |k: &[u8], d: &str| {
        let mut m = Hmac::<Sha256>::new_from_slice(k).unwrap();
        m.update(d.as_bytes());
        m.finalize().into_bytes().to_vec()
    };
    let k = mac(format!("AWS4{secret}").as_bytes(), date);
    let k = mac(&k, region);
    let k = mac(&k, service);
    let k = mac(&k, "aws4_request");
    hex::encode(mac(&k, &to_sign)) == signature
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigv4_signature_verifies_on_the_server() {
    let sim = Simulator::start().await.unwrap();
    sim.record(true);
    let rt = runtime();
    let grant = Grant::new()
        .allow(sim.url())
        .credential(Credential::AwsSigV4 {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
            session_token: None,
            region: "us-east-1".into(),
            service: "sns".into(),
        });
    let app = misbehave(&rt, grant).await;
    let mut seen = post_echo(&app, &sim, json!({"Message": "hello", "n": 1})).await;
    assert!(
        seen.header("authorization")
            .unwrap()
            .contains("Credential=AKIDEXAMPLE/")
    );
    let signed = seen.header("authorization").unwrap().to_string();
    assert!(
        signed.contains("SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date"),
        "{signed}"
    );
    assert!(verify_sigv4(
        &seen,
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        "us-east-1",
        "sns"
    ));
    // The verifier is not vacuous: a wrong key or a changed body fails.
    assert!(!verify_sigv4(&seen, "wrong-key", "us-east-1", "sns"));
    seen.body = bytes::Bytes::from_static(b"{\"Message\":\"tampered\"}");
    seen.headers.retain(|(k, _)| k != "x-amz-content-sha256");
    seen.headers.push((
        "x-amz-content-sha256".into(),
        hex::encode(Sha256::digest(&seen.body)),
    ));
    assert!(!verify_sigv4(
        &seen,
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        "us-east-1",
        "sns"
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credential_goes_only_to_the_origins_it_is_granted_for() {
    let (stripe, other) = (
        Simulator::start().await.unwrap(),
        Simulator::start().await.unwrap(),
    );
    stripe.record(true);
    other.record(true);
    let rt = runtime();
    let token = || Credential::Bearer {
        token: Secret::new("sk_live_for_stripe_only"),
    };
    // Two origins and a credential that names none: refused at load,
    // naming the credential and the fix.
    let unscoped = Grant::new()
        .allow(stripe.url())
        .allow(other.url())
        .credential(token());
    let e = rt
        .load(
            "two",
            std::path::Path::new(switchyard_tests::artifacts::MISBEHAVE_PATH),
            unscoped,
        )
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("credentials[0] names no `origins`"),
        "{e}"
    );
    // Scoped to stripe: stripe gets it, the other allowed origin does not.
    let scoped = Grant::new()
        .allow(stripe.url())
        .allow(other.url())
        .credential_for([stripe.url()], token());
    let app = misbehave(&rt, scoped).await;
    post_echo(&app, &stripe, json!({"a": 1})).await;
    let seen = post_echo(&app, &other, json!({"b": 2})).await;
    assert_eq!(seen.header("authorization"), None, "the key leaked");
    assert_eq!(
        stripe.recorded()[0].header("authorization"),
        Some("Bearer sk_live_for_stripe_only")
    );
    // An origin the app may not reach cannot be named.
    let bad = Grant::new()
        .allow(stripe.url())
        .credential_for(["https://evil.example"], token());
    let e = rt
        .load(
            "bad",
            std::path::Path::new(switchyard_tests::artifacts::MISBEHAVE_PATH),
            bad,
        )
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("not on the app's `allow` list"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_connect_and_userinfo_are_refused() {
    let sim = Simulator::start().await.unwrap();
    sim.record(true);
    let rt = runtime();
    let grant = Grant::new()
        .allow(sim.url())
        .credential(Credential::Bearer {
            token: Secret::new("sk_test_echo_me"),
        });
    let app = misbehave(&rt, grant).await;
    for (method, url) in [
        ("TRACE", format!("{}/health", sim.url())),
        ("CONNECT", format!("{}/health", sim.url())),
        (
            "GET",
            format!("{}/health", sim.url()).replace("http://", "http://user:pw@"),
        ),
    ] {
        let e = app
            .call(CallRequest::new(
                "fetch",
                json!({"method": method, "url": url}),
            ))
            .await
            .expect_err("refused");
        assert_eq!(
            e.kind,
            switchyard_engine::FailureKind::EgressDenied,
            "{method} {url}: {e}"
        );
    }
    assert!(sim.recorded().is_empty(), "nothing reached the provider");
}
