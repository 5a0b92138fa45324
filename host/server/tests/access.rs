//! Who may do what, against a running `switchyard serve`: every route ×
//! every role (from the OpenAPI document, so a route without a rule fails
//! here), scopes by product and env, tokens made, rotated, revoked and
//! expired, the audit naming the token, the failed-authentication
//! throttle, and HTTPS with a test CA.

mod common;

use common::*;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use std::process::Command;

/// One token per role, all products, all envs.
const ROLES: [(&str, &str); 5] = [
    ("run", "role-run-token-0123456789"),
    ("read", "role-read-token-0123456789"),
    ("operate", "role-operate-token-0123456789"),
    ("define", "role-define-token-0123456789"),
    ("admin", "role-admin-token-0123456789"),
];

/// What each route needs, written here apart from the server's own table:
/// the route is refused to every role below it.
const EXPECTED: &[(&str, &str, &str)] = &[
    ("GET", "/v1/whoami", "any"),
    ("GET", "/v1/{product}/apps", "read"),
    ("GET", "/v1/{product}/apps/{app}/admission", "read"),
    ("PUT", "/v1/{product}/apps/{app}/admission", "define"),
    ("GET", "/v1/{product}/definitions/{kinds}", "read"),
    ("POST", "/v1/{product}/definitions/{kinds}", "define"),
    ("GET", "/v1/{product}/definitions/{kinds}/{tag}", "read"),
    ("PUT", "/v1/{product}/definitions/{kinds}/{tag}", "define"),
    ("PATCH", "/v1/{product}/definitions/{kinds}/{tag}", "define"),
    (
        "DELETE",
        "/v1/{product}/definitions/{kinds}/{tag}",
        "define",
    ),
    ("POST", "/v1/{product}/{env}/{kinds}/{tag}/run", "run"),
    ("GET", "/v1/{product}/{env}/{kinds}/{tag}/providers", "read"),
    (
        "GET",
        "/v1/{product}/{env}/{kinds}/{tag}/providers/{provider}/history",
        "read",
    ),
    ("GET", "/v1/{product}/{env}/healthchecks/{tag}", "read"),
    (
        "POST",
        "/v1/{product}/{env}/healthchecks/{tag}/check",
        "operate",
    ),
    (
        "POST",
        "/v1/{product}/providers/{provider}/{action}",
        "operate",
    ),
    ("POST", "/v1/admin/breakers/force", "operate"),
    ("GET", "/v1/admin/breakers/forces", "read"),
    ("GET", "/v1/admin/audit", "read"),
    ("GET", "/v1/events", "read"),
    ("GET", "/v1/runs", "read"),
    ("GET", "/metrics", "read"),
    ("POST", "/v1/admin/reload", "admin"),
    ("GET", "/v1/admin/tokens", "admin"),
    ("POST", "/v1/admin/tokens", "admin"),
    ("DELETE", "/v1/admin/tokens/{name}", "admin"),
    ("POST", "/v1/admin/tokens/{name}/rotate", "admin"),
];

fn allowed(role: &str, need: &str) -> bool {
    need == "any"
        || role == need
        || role == "admin"
        || (need == "read" && matches!(role, "operate" | "define"))
}

fn tokens_toml(list: &[(&str, &str, &str, &str)]) -> String {
    list.iter()
        .map(|(name, role, products, envs)| {
            let envs = if envs.is_empty() {
                String::new()
            } else {
                format!("envs = {envs}\n")
            };
            format!(
                "\n[[server.tokens]]\nname = \"{name}\"\nrole = \"{role}\"\nproducts = {products}\n{envs}token = {{ env = \"TOKEN_{}\" }}\n",
                name.replace('-', "_").to_uppercase()
            )
        })
        .collect()
}

fn env_of(name: &str) -> String {
    format!("TOKEN_{}", name.replace('-', "_").to_uppercase())
}

/// The status of a request, without reading the body (a stream's never
/// ends).
async fn status(
    server: &Server,
    method: &str,
    path: &str,
    token: &str,
    body: &Value,
) -> (u16, Value) {
    let mut req = http::Request::builder()
        .method(method)
        .uri(format!("{}{path}", server.base))
        .header("authorization", format!("Bearer {token}"));
    let bytes = if body.is_null() {
        bytes::Bytes::new()
    } else {
        req = req.header("content-type", "application/json");
        bytes::Bytes::from(body.to_string())
    };
    let resp = server
        .http
        .request(req.body(Full::new(bytes)).unwrap())
        .await
        .unwrap();
    let st = resp.status().as_u16();
    if resp
        .headers()
        .get("content-type")
        .is_some_and(|v| v == "text/event-stream")
    {
        return (st, Value::Null);
    }
    let b = resp.into_body().collect().await.unwrap().to_bytes();
    (st, serde_json::from_slice(&b).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_every_role_as_its_rule_says() {
    let s = Setup::new().await;
    let list: Vec<(&str, &str, &str, &str)> = ROLES
        .iter()
        .map(|(role, _)| (*role, *role, "[\"*\"]", ""))
        .collect();
    let config = s.config_with(&tokens_toml(&list));
    let env: Vec<(String, &str)> = ROLES.iter().map(|(r, t)| (env_of(r), *t)).collect();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let server = Server::start_with_env(&config, &env);
    let (_, spec) = server.call("GET", "/openapi.json", None, None).await;
    let mut checked = 0;
    // Admin last: its changes (a deleted definition, a revoked token)
    // come after every other role tried the route.
    for (method, template) in spec["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(p, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|m| *m != "parameters")
                .map(|m| (m.to_uppercase(), p.clone()))
                .collect::<Vec<_>>()
        })
    {
        let item = &spec["paths"][&template];
        let op = &item[method.to_lowercase()];
        if op.get("security").is_none() {
            continue;
        }
        let need = EXPECTED
            .iter()
            .find(|(m, t, _)| *m == method && *t == template)
            .unwrap_or_else(|| panic!("{method} {template}: no expectation here; add one"))
            .2;
        assert_eq!(
            op["x-switchyard-role"].as_str(),
            Some(need),
            "{method} {template}: the document's role"
        );
        let mut path = template.clone();
        for p in item["parameters"].as_array().into_iter().flatten() {
            let name = p["name"].as_str().unwrap();
            path = path.replace(&format!("{{{name}}}"), p["example"].as_str().unwrap());
        }
        let body = op["requestBody"]["content"]["application/json"]["example"].clone();
        for (role, token) in ROLES {
            let (st, v) = status(&server, &method, &path, token, &body).await;
            if allowed(role, need) {
                assert!(
                    st != 403 && st != 401,
                    "{method} {path} as {role}: {st} {v}"
                );
            } else {
                assert_eq!(st, 403, "{method} {path} as {role}: {v}");
                assert_eq!(v["code"], "forbidden");
                assert!(
                    v["message"]
                        .as_str()
                        .unwrap()
                        .contains(&format!("`{need}`")),
                    "names the role it needs: {v}"
                );
            }
            checked += 1;
        }
    }
    assert_eq!(
        checked,
        EXPECTED.len() * ROLES.len(),
        "every route, every role"
    );
    // A guessed route without a rule is refused to everyone, even admin.
    assert!(switchyard::rule(&http::Method::GET, "/v1/nothing").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scopes_limit_tokens_to_their_products_and_envs() {
    let s = Setup::new().await;
    let tokens = tokens_toml(&[
        ("checkout", "run", "[\"notify\"]", "[\"dev\"]"),
        ("prd-reader", "read", "[\"notify\"]", "[\"prd\"]"),
        ("dev-definer", "define", "[\"notify\"]", "[\"dev\"]"),
        ("other-reader", "read", "[\"other\"]", ""),
    ]);
    let config = s.config_with(&format!("\n[products.other]\nenvs = [\"dev\"]\n{tokens}"));
    let text = std::fs::read_to_string(&config).unwrap().replacen(
        "envs = [\"dev\"]",
        "envs = [\"dev\", \"prd\"]",
        1,
    );
    std::fs::write(&config, text).unwrap();
    let secrets = [
        ("checkout", "checkout-token-0123456789"),
        ("prd-reader", "prd-reader-token-0123456789"),
        ("dev-definer", "dev-definer-token-0123456789"),
        ("other-reader", "other-reader-token-0123456789"),
    ];
    let env: Vec<(String, &str)> = secrets.iter().map(|(n, t)| (env_of(n), *t)).collect();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let server = Server::start_with_env(&config, &env);
    let tok = |n: &str| secrets.iter().find(|(x, _)| *x == n).unwrap().1;
    let run = json!({"input": {"to": "+1", "text": "hi"}});

    // The run token: its product and env only, nothing to read.
    let (st, v) = server
        .call(
            "POST",
            "/v1/notify/dev/fallbacks/sms/run",
            Some(tok("checkout")),
            Some(run.clone()),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = server
        .call(
            "POST",
            "/v1/notify/prd/fallbacks/sms/run",
            Some(tok("checkout")),
            Some(run.clone()),
        )
        .await;
    assert_eq!((st, v["code"].as_str()), (403, Some("forbidden")));
    assert!(v["message"].as_str().unwrap().contains("envs"), "{v}");
    let (st, _) = server
        .call(
            "GET",
            "/v1/notify/definitions/fallbacks",
            Some(tok("checkout")),
            None,
        )
        .await;
    assert_eq!(st, 403);

    // A prd reader reads the product's definitions, but no dev state,
    // runs or series.
    let (st, _) = server
        .call(
            "GET",
            "/v1/notify/definitions/fallbacks",
            Some(tok("prd-reader")),
            None,
        )
        .await;
    assert_eq!(st, 200);
    let (st, v) = server
        .call(
            "GET",
            "/v1/notify/definitions/fallbacks?env=dev",
            Some(tok("prd-reader")),
            None,
        )
        .await;
    assert_eq!((st, v["field"].as_str()), (403, Some("env")), "{v}");
    let (st, v) = server
        .call(
            "GET",
            "/v1/notify/definitions/fallbacks/sms?env=*",
            Some(tok("prd-reader")),
            None,
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let text = v.to_string();
    assert!(
        text.contains("\"prd\"") && !text.contains("\"dev\""),
        "only prd state: {text}"
    );
    let (_, v) = server
        .call("GET", "/v1/runs", Some(tok("prd-reader")), None)
        .await;
    assert_eq!(
        v["runs"].as_array().unwrap().len(),
        0,
        "the dev run is not shown: {v}"
    );
    let (_, v) = server.call("GET", "/v1/runs", Some(TOKEN), None).await;
    assert_eq!(v["runs"].as_array().unwrap().len(), 1);
    let (st, v) = server
        .call(
            "GET",
            "/v1/notify/dev/fallbacks/sms/providers",
            Some(tok("prd-reader")),
            None,
        )
        .await;
    assert_eq!(st, 403, "{v}");

    // Another product's reader sees none of `notify`.
    let (st, v) = server
        .call(
            "GET",
            "/v1/notify/definitions/fallbacks",
            Some(tok("other-reader")),
            None,
        )
        .await;
    assert_eq!(st, 403);
    assert!(v["message"].as_str().unwrap().contains("products"), "{v}");
    let (_, metrics) = server
        .call("GET", "/metrics", Some(tok("other-reader")), None)
        .await;
    let metrics = metrics.as_str().unwrap().to_string();
    assert!(!metrics.contains("product=\"notify\""), "{metrics}");
    assert!(!metrics.contains("breaker=\"notify/"), "{metrics}");
    let (_, all) = server.call("GET", "/metrics", Some(TOKEN), None).await;
    assert!(all.as_str().unwrap().contains("product=\"notify\""));
    let (st, first) = first_event_as(&server, tok("other-reader")).await;
    assert_eq!(st, 200);
    assert!(
        first.contains("event: state") && !first.contains("\"notify\""),
        "{first}"
    );
    let (_, first) = first_event_as(&server, tok("prd-reader")).await;
    assert!(
        first.contains("\"prd\"") && !first.contains("\"dev\""),
        "{first}"
    );

    // An env-limited definer may not change what every env shares.
    let (st, v) = server
        .call(
            "PATCH",
            "/v1/notify/definitions/fallbacks/sms",
            Some(tok("dev-definer")),
            Some(json!({"name": "x"})),
        )
        .await;
    assert_eq!(st, 403);
    assert!(v["message"].as_str().unwrap().contains("every env"), "{v}");
    let (st, _) = server
        .call(
            "POST",
            "/v1/notify/providers/primary/drain",
            Some(tok("prd-reader")),
            None,
        )
        .await;
    assert_eq!(st, 403);

    // The unauthenticated surface says ready, and nothing else.
    let (st, v) = server.call("GET", "/readyz", None, None).await;
    assert_eq!((st, v.as_str()), (200, Some("ready\n")));
    let (st, _) = server
        .call("GET", "/readyz", Some("not-a-token"), None)
        .await;
    assert_eq!(st, 401);
}

async fn first_event_as(server: &Server, token: &str) -> (u16, String) {
    let req = http::Request::get(format!("{}/v1/events", server.base))
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(bytes::Bytes::new()))
        .unwrap();
    let resp = server.http.request(req).await.unwrap();
    let st = resp.status().as_u16();
    let mut body = resp.into_body();
    let mut text = String::new();
    while !text.contains("\n\n") {
        let Some(Ok(frame)) = tokio::time::timeout(std::time::Duration::from_secs(5), body.frame())
            .await
            .unwrap()
        else {
            break;
        };
        if let Ok(d) = frame.into_data() {
            text.push_str(&String::from_utf8_lossy(&d));
        }
    }
    (st, text)
}

fn cli(args: &[&str], token: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .env("SWITCHYARD_TOKEN", token)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_made_shown_once_rotated_revoked_and_the_audit_names_them() {
    let s = Setup::new().await;
    let config = s.config();
    // A token made earlier that has expired, as the store keeps it.
    {
        let store = switchyard::Store::open(s.dir.path().join("state.db")).unwrap();
        store
            .put_token(&switchyard::access::StoredToken {
                name: "old".into(),
                role: switchyard::access::Role::Read,
                products: switchyard::access::Scope::All,
                envs: switchyard::access::Scope::All,
                sha256: hex::encode(switchyard::access::digest("syt_expired_long_ago")),
                created_unix_ms: 1,
                expires_unix_ms: Some(2),
                created_by: "default".into(),
            })
            .unwrap();
    }
    let server = Server::start(&config);
    let (st, v) = server
        .call("GET", "/v1/whoami", Some("syt_expired_long_ago"), None)
        .await;
    assert_eq!(st, 401);
    assert!(
        v["message"].as_str().unwrap().contains("`old` has expired"),
        "{v}"
    );

    // Made through the CLI: the token alone on stdout, once.
    let out = cli(
        &[
            "token",
            "create",
            "checkout",
            "--role",
            "run",
            "--product",
            "notify",
            "--env",
            "dev",
            "--expires-in",
            "30d",
            "--server",
            &server.base,
        ],
        TOKEN,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let checkout = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(
        checkout.starts_with("syt_") && checkout.len() == 68,
        "{checkout}"
    );
    let run = json!({"input": {"to": "+1", "text": "hi"}});
    let (st, v) = server
        .call(
            "POST",
            "/v1/notify/dev/fallbacks/sms/run",
            Some(&checkout),
            Some(run.clone()),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let (st, who) = server
        .call("GET", "/v1/whoami", Some(&checkout), None)
        .await;
    assert_eq!(
        (st, who["name"].as_str(), who["role"].as_str()),
        (200, Some("checkout"), Some("run"))
    );
    assert!(who["expires_unix_ms"].as_u64().is_some());

    // Listed without its secret, with when it was last used.
    let (_, list) = server.get("/v1/admin/tokens").await;
    assert!(
        !list.to_string().contains(&checkout[4..]),
        "no secret in the list"
    );
    let row = list["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "checkout")
        .unwrap()
        .clone();
    assert_eq!(
        (row["source"].as_str(), row["created_by"].as_str()),
        (Some("api"), Some("default"))
    );
    assert!(row["last_used_unix_ms"].as_u64().is_some(), "{row}");
    let default = list["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "default")
        .unwrap()
        .clone();
    assert_eq!(
        (default["source"].as_str(), default["role"].as_str()),
        (Some("config"), Some("admin"))
    );
    let (st, _) = server
        .call("DELETE", "/v1/admin/tokens/default", Some(TOKEN), None)
        .await;
    assert_eq!(st, 409, "a config token is changed in the config");

    // A run token may not make tokens; nor may a name be taken twice.
    let (st, _) = server
        .call(
            "POST",
            "/v1/admin/tokens",
            Some(&checkout),
            Some(json!({"name": "x", "role": "admin", "products": ["*"]})),
        )
        .await;
    assert_eq!(st, 403);
    let (st, v) = server
        .post(
            "/v1/admin/tokens",
            json!({"name": "checkout", "role": "run", "products": ["notify"]}),
        )
        .await;
    assert_eq!((st, v["code"].as_str()), (409, Some("exists")));
    let (st, v) = server
        .post(
            "/v1/admin/tokens",
            json!({"name": "x", "role": "run", "products": ["nope"]}),
        )
        .await;
    assert_eq!(st, 400, "{v}");
    assert!(v["message"].as_str().unwrap().contains("nope"));

    // Rotated: the old secret stops at once, the new one works.
    let (st, v) = server
        .post("/v1/admin/tokens/checkout/rotate", json!(null))
        .await;
    assert_eq!(st, 200, "{v}");
    let rotated = v["token"].as_str().unwrap().to_string();
    let (st, _) = server
        .call("GET", "/v1/whoami", Some(&checkout), None)
        .await;
    assert_eq!(st, 401);
    let (st, _) = server.call("GET", "/v1/whoami", Some(&rotated), None).await;
    assert_eq!(st, 200);

    // Kept across a restart (hashed in the store), then revoked at once.
    server.kill9();
    let server = Server::start(&config);
    let (st, _) = server.call("GET", "/v1/whoami", Some(&rotated), None).await;
    assert_eq!(st, 200, "the token survives a restart");
    let db = std::fs::read(s.dir.path().join("state.db")).unwrap();
    assert!(
        !String::from_utf8_lossy(&db).contains(&rotated[4..]),
        "the store holds no token"
    );
    let out = cli(
        &["token", "revoke", "checkout", "--server", &server.base],
        TOKEN,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (st, _) = server.call("GET", "/v1/whoami", Some(&rotated), None).await;
    assert_eq!(st, 401);

    // The audit names the token that acted, for definitions, operator
    // actions, reloads and tokens; the channel is the caller's claim.
    let (st, _, _) = server
        .call_with_headers(
            "PATCH",
            "/v1/notify/definitions/fallbacks/sms",
            Some(TOKEN),
            Some(json!({"name": "SMS!"})),
        )
        .await;
    assert_eq!(st, 200);
    let (st, _) = server
        .post("/v1/notify/providers/backup/drain", json!(null))
        .await;
    assert_eq!(st, 200);
    let (st, _) = server.post("/v1/admin/reload", json!(null)).await;
    assert_eq!(st, 200);
    let (_, log) = server.get("/v1/admin/audit").await;
    let rows: Vec<(String, String, String)> = log["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["action"].as_str().unwrap().to_string(),
                a["actor"].as_str().unwrap().to_string(),
                a["channel"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for action in [
        "reload",
        "drain",
        "patch",
        "token-revoke",
        "token-rotate",
        "token-create",
    ] {
        let (_, actor, _) = rows
            .iter()
            .find(|(a, _, _)| a == action)
            .unwrap_or_else(|| panic!("no {action} in {rows:?}"));
        assert_eq!(actor, "default", "{action}");
    }
    assert!(
        rows.iter()
            .any(|(a, _, c)| a == "token-revoke" && c == "cli"),
        "{rows:?}"
    );
}

#[tokio::test]
async fn failed_tokens_from_one_address_are_throttled() {
    let s = Setup::new().await;
    let server = Server::start(&s.config());
    for _ in 0..20 {
        let (st, _) = server
            .call("GET", "/v1/whoami", Some("guess-0123456789"), None)
            .await;
        assert_eq!(st, 401);
    }
    let (st, headers, v) = server
        .call_with_headers("GET", "/v1/whoami", Some("guess-0123456789"), None)
        .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (429, Some("too-many-failures")),
        "{v}"
    );
    assert!(headers.get("retry-after").is_some());
    // The address waits, whatever it sends; requests without a token are
    // no guess and were never counted.
    let (st, _) = server.call("GET", "/v1/whoami", Some(TOKEN), None).await;
    assert_eq!(st, 429);
    server.kill9();
    let server = Server::start(&s.config());
    for _ in 0..30 {
        assert_eq!(server.call("GET", "/v1/whoami", None, None).await.0, 401);
    }
    let (_, text) = server.get("/metrics").await;
    let text = text.as_str().unwrap();
    assert!(
        text.contains("switchyard_auth_failures_total{reason=\"missing\"} 30"),
        "{text}"
    );
}

/// HTTPS with a CA made for the test: the handshake verifies against it,
/// plain HTTP on the port fails without harm, a key others can read is
/// refused, and SIGHUP serves a new certificate to new connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_with_the_test_ca_and_reloads_its_certificate() {
    let s = Setup::new().await;
    let dir = s.dir.path();
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl is installed");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=switchyard test CA",
    ]);
    let leaf = |name: &str| {
        openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={name}"),
        ]);
        std::fs::write(
            dir.join("san.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ]);
    };
    leaf("one");
    leaf("two");
    use std::os::unix::fs::PermissionsExt;
    let chmod = |f: &str, mode: u32| {
        std::fs::set_permissions(dir.join(f), std::fs::Permissions::from_mode(mode)).unwrap()
    };
    std::fs::copy(dir.join("one.pem"), dir.join("server.pem")).unwrap();
    std::fs::copy(dir.join("one.key"), dir.join("server.key")).unwrap();
    let config = s.config_with("\n[server.tls]\ncert = \"server.pem\"\nkey = \"server.key\"\n");

    // A key others may read: serve refuses to start, naming the fix.
    chmod("server.key", 0o644);
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["serve"])
        .arg(&config)
        .env("SWITCHYARD_TOKEN", TOKEN)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("chmod 600"), "{err}");
    chmod("server.key", 0o600);

    let server = Server::start(&config);
    assert!(server.base.starts_with("https://"), "{}", server.base);
    let addr = server.base.trim_start_matches("https://").to_string();
    let ca = std::fs::read(dir.join("ca.pem")).unwrap();
    let (status, cert) = https_get(&addr, &ca, "/healthz").await;
    assert_eq!(status, 200);
    assert_eq!(cert, der(&dir.join("one.pem")));

    // Plain HTTP to the TLS port: the client gets no answer, the server
    // goes on.
    let plain = server.http.request(
        http::Request::get(format!("http://{addr}/healthz"))
            .body(Full::new(bytes::Bytes::new()))
            .unwrap(),
    );
    let plain = tokio::time::timeout(std::time::Duration::from_secs(5), plain)
        .await
        .unwrap();
    assert!(plain.is_err() || plain.unwrap().status() != 200);
    assert_eq!(https_get(&addr, &ca, "/healthz").await.0, 200);

    // The CLI speaks HTTPS with the CA.
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["token", "list", "--server", &server.base, "--ca"])
        .arg(dir.join("ca.pem"))
        .env("SWITCHYARD_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"default\""));

    // A new certificate on SIGHUP, for new connections.
    std::fs::copy(dir.join("two.pem"), dir.join("server.pem")).unwrap();
    std::fs::copy(dir.join("two.key"), dir.join("server.key")).unwrap();
    chmod("server.key", 0o600);
    let pid = server.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    let want = der(&dir.join("two.pem"));
    let mut served = Vec::new();
    for _ in 0..50 {
        served = https_get(&addr, &ca, "/healthz").await.1;
        if served == want {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(served, want, "the new certificate is served after SIGHUP");
}

fn der(pem: &std::path::Path) -> Vec<u8> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::from_pem_file(pem)
        .unwrap()
        .to_vec()
}

/// GET `path` over TLS verified against `ca`: the status and the
/// certificate the server showed.
async fn https_get(addr: &str, ca: &[u8], path: &str) -> (u16, Vec<u8>) {
    use rustls_pki_types::pem::PemObject;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls_pki_types::CertificateDer::from_pem_slice(ca).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = connector
        .connect(name, tcp)
        .await
        .expect("the handshake verifies against the test CA");
    let cert = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out).await;
    let text = String::from_utf8_lossy(&out);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, cert)
}
