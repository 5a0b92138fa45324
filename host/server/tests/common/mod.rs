//! What the `serve` and `cluster` tests share: simulated providers, a
//! config routing to them, and a running `switchyard serve` with a plain
//! HTTP client.
#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use switchyard::Simulator;

pub const TOKEN: &str = "test-token-0123456789";

/// Two simulated providers and a config that routes to them.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub primary: Simulator,
    pub backup: Simulator,
}

pub const ACTIONS: &str = r#"[{"name": "send-message", "method": "POST", "path": "/v1/messages", "input": {"to": {"type": "string", "required": true}, "text": {"type": "string"}}}, {"name": "fetch-message", "method": "GET", "path": "/v1/messages/{id}", "idempotent": true, "input": {"id": {"type": "string", "required": true}}}]"#;

pub fn app(name: &str, url: &str) -> String {
    format!(
        r#"
[products.notify.apps.{name}]
plugin = "bundled:http"
[products.notify.apps.{name}.envs.dev]
allow = ["{url}"]
config = {{ base_url = "{url}", ping_path = "/health", idempotency_header = "Idempotency-Key", actions = '{ACTIONS}' }}
"#
    )
}

pub const DEFINITIONS: &str = r#"
[products.notify.healthchecks.primary-health]
app = "primary"
action = "ping"
input = { dev = {} }
interval_ms = 60000

[products.notify.fallbacks.sms]
name = "SMS"
input = { to = { type = "string" }, text = { type = "string" } }
options = [
  { provider = "primary", app = "primary", action = "send-message", retries = 1, backoff_ms = 1, healthcheck = "primary-health",
    input = { to = "$Input{to}", text = "$Input{text}" }, output = { id = "$Response{id}", via = "primary" } },
  { provider = "backup", app = "backup", action = "send-message",
    input = { to = "$Input{to}", text = "$Input{text}" }, output = { id = "$Response{id}", via = "backup" } },
]

[products.notify.quotas.split]
input = { to = { type = "string" } }
providers = [
  { provider = "primary", app = "primary", action = "send-message", weight = 70 },
  { provider = "backup", app = "backup", action = "send-message", weight = 30 },
]

[products.notify.features.send-and-check]
input = { to = { type = "string" } }
steps = [
  { name = "send", type = "fallback", tag = "sms", input = { to = "$Input{to}", text = "feature" } },
  { name = "check", type = "action", app = "backup", action = "fetch-message", input = { id = "$Sequence{send}{id}" } },
]
"#;

impl Setup {
    pub async fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            primary: Simulator::start().await.unwrap(),
            backup: Simulator::start().await.unwrap(),
        }
    }

    pub fn config(&self) -> PathBuf {
        self.config_with("")
    }

    /// Wait until the store holds `n` healthcheck outcomes. Outcomes are
    /// written by a background thread, so one the API already shows may
    /// not be durable yet: a test that kills the server waits for this.
    pub async fn stored_health_outcomes(&self, n: usize) {
        let path = self.dir.path().join("state.db");
        for _ in 0..400 {
            let count = rusqlite::Connection::open_with_flags(
                &path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )
            .and_then(|c| {
                c.query_row("SELECT count(*) FROM health_history", [], |r| {
                    r.get::<_, i64>(0)
                })
            })
            .unwrap_or(0);
            if count >= n as i64 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the store never held {n} healthcheck outcomes");
    }

    /// The config with `extra` TOML appended (e.g. apps' admission tables).
    pub fn config_with(&self, extra: &str) -> PathBuf {
        self.config_with_server("", extra)
    }

    /// The config with `server` lines added to `[server]` and `extra`
    /// TOML appended.
    pub fn config_with_server(&self, server: &str, extra: &str) -> PathBuf {
        let path = self.dir.path().join("switchyard.toml");
        let text = format!(
            "[server]\n{server}listen = \"127.0.0.1:0\"\nstore = \"state.db\"\nshutdown_grace_ms = 10000\nmax_body_bytes = 4096\n\n[products.notify]\nenvs = [\"dev\"]\n{}{}{DEFINITIONS}{extra}",
            app("primary", &self.primary.url()),
            app("backup", &self.backup.url()),
        );
        std::fs::write(&path, text).unwrap();
        path
    }
}

/// A running `switchyard serve`.
pub struct Server {
    pub child: Child,
    pub base: String,
    pub http: Client<HttpConnector, Full<Bytes>>,
}

impl Server {
    pub fn start(config: &Path) -> Self {
        Self::start_with_env(config, &[])
    }

    /// Start with these environment variables too (tokens of
    /// `[[server.tokens]]`).
    pub fn start_with_env(config: &Path, env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .arg("serve")
            .arg(config)
            .env("SWITCHYARD_TOKEN", TOKEN)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let base = line
            .split_whitespace()
            .find(|w| w.starts_with("http://") || w.starts_with("https://"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_string();
        // Keep draining stdout so the server never blocks on it.
        std::thread::spawn(move || for _ in out.lines() {});
        Self {
            child,
            base,
            http: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let (status, _, v) = self.call_with_headers(method, path, token, body).await;
        (status, v)
    }

    pub async fn call_with_headers(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, http::HeaderMap, Value) {
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let body = match body {
            Some(b) => {
                req = req.header("content-type", "application/json");
                Bytes::from(b.to_string())
            }
            None => Bytes::new(),
        };
        let resp = self
            .http
            .request(req.body(Full::new(body)).unwrap())
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let v = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, headers, v)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, Some(TOKEN), None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call("POST", path, Some(TOKEN), Some(body)).await
    }

    /// The scheduler runs `primary-health` at start; wait for its outcome
    /// so failures a test injects afterwards cannot race it.
    pub async fn first_healthcheck(&self) -> Value {
        for _ in 0..200 {
            let (_, v) = self.get("/v1/notify/dev/healthchecks/primary-health").await;
            if v["last_checked_unix_ms"].is_u64() {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the startup healthcheck never finished");
    }

    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub fn terminate(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Await every future (the test crate has no `futures` dependency).
pub async fn futures_join_all<F: std::future::Future>(
    fs: impl Iterator<Item = F>,
) -> Vec<F::Output> {
    let mut pinned: Vec<_> = fs.map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, o) in pinned.iter_mut().zip(out.iter_mut()) {
            if o.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *o = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(Option::unwrap).collect()
}

/// Messages a recording simulator took (`POST /v1/messages`).
pub fn posts(sim: &Simulator) -> usize {
    sim.recorded()
        .iter()
        .filter(|r| r.method == "POST" && r.uri == "/v1/messages")
        .count()
}
