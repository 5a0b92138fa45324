//! The dashboard (`/ui`) end to end in a real browser: `switchyard serve`
//! against two simulated providers with quota traffic flowing, and
//! `tests/ui/dashboard.mjs` driving Debian's Chromium through Playwright.
//! The script asks this test to break and heal a provider and to count
//! what each provider took, so routing is checked at the providers.

mod common;

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A `read` token: the page shows it everything but offers no action.
const WATCHER: &str = "watcher-token-0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_dashboard_shows_a_failover_live_and_its_actions_change_routing() {
    let ui = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/ui");
    if !ui.join("node_modules/playwright-core").exists() {
        let ok = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&ui)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "npm ci in tests/ui failed (.ci/run installs it)");
    }
    let setup = Setup::new().await;
    setup.primary.record(true);
    setup.backup.record(true);
    let config = setup.config_with(
        "\n[engine.breaker]\nminimum_failure_count = 3\nfailure_timeout = 2000\nopen_timeout = 60000\n\n[[server.tokens]]\nname = \"watcher\"\nrole = \"read\"\nproducts = [\"notify\"]\ntoken = { env = \"WATCHER_TOKEN\" }\n",
    );
    seed_history(&setup.dir.path().join("state.db"));
    let server = Server::start_with_env(&config, &[("WATCHER_TOKEN", WATCHER)]);
    let (st, v) = server
        .post(
            "/v1/notify/dev/fallbacks/sms/run",
            json!({"input": {"to": "+1", "text": "find me"}, "idempotency_key": "order-e2e-42"}),
        )
        .await;
    assert_eq!(st, 200, "{v}");

    // Quota traffic, 40 runs a second, until the script is done.
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let stop = stop.clone();
        let url = format!("{}/v1/notify/dev/quotas/split/run", server.base);
        tokio::spawn(async move {
            let http: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
            while !stop.load(Ordering::Relaxed) {
                let req = http::Request::post(&url)
                    .header("authorization", format!("Bearer {TOKEN}"))
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(r#"{"input":{"to":"+1"}}"#)))
                    .unwrap();
                let _ = http.request(req).await;
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        })
    };

    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-artifacts");
    std::fs::create_dir_all(&shots).unwrap();
    let shot = shots.join("dashboard-failover.png");
    let mut node = Command::new("node")
        .arg(ui.join("dashboard.mjs"))
        .arg(&server.base)
        .arg(TOKEN)
        .arg(&shot)
        .arg(WATCHER)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node is installed");
    let mut to_script = node.stdin.take().unwrap();
    let from_script = BufReader::new(node.stdout.take().unwrap());
    let mut transcript = Vec::new();
    let mut done = false;
    for line in from_script.lines() {
        let line = line.unwrap();
        eprintln!("dashboard.mjs: {line}");
        transcript.push(line.clone());
        let answer = match line.split_whitespace().collect::<Vec<_>>()[..] {
            ["@fail", p] | ["@heal", p] => {
                let sim = if p == "primary" {
                    &setup.primary
                } else {
                    &setup.backup
                };
                sim.set_failure_rate(if line.starts_with("@fail") { 1.0 } else { 0.0 });
                "ok".to_string()
            }
            ["@count", p] => posts(if p == "primary" {
                &setup.primary
            } else {
                &setup.backup
            })
            .to_string(),
            ["@done"] => {
                done = true;
                continue;
            }
            _ => continue,
        };
        writeln!(to_script, "{answer}").unwrap();
    }
    let status = node.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    traffic.await.unwrap();
    assert!(
        status.success() && done,
        "the browser test failed:\n{}",
        transcript.join("\n")
    );
    assert!(shot.exists(), "no screenshot at {}", shot.display());
}

/// An hour of kept history for the quota's two providers, as a server
/// that ran before would have left in its store: the charts draw it with
/// the live minutes after it (the primary slowed and failed more in the
/// last quarter hour).
fn seed_history(store: &Path) {
    let store = switchyard::Store::open(store).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let mut rows = Vec::new();
    for m in 1..=60u64 {
        let at = now - m * 60_000;
        let late = m <= 15;
        for (key, ok, failed, ms) in [
            (
                "notify/dev/primary/send-message",
                if late { 330 - 2 * m } else { 420 },
                if late { 60 - 3 * m } else { 3 + m % 4 },
                if late {
                    40.0 + 4.0 * (15 - m) as f64
                } else {
                    18.0 + (m % 5) as f64
                },
            ),
            (
                "notify/dev/backup/send-message",
                180 + m % 7,
                1 + m % 3,
                30.0 + (m % 3) as f64,
            ),
        ] {
            // A bucket per latency: four per doubling from 0.1 ms.
            let bucket = ((ms * 10.0).log2() * 4.0) as u16;
            rows.push(switchyard::HistoryMinute {
                key: key.into(),
                product: "notify".into(),
                env: "dev".into(),
                at_unix_ms: at,
                ok,
                failed,
                rejected: 0,
                latency: switchyard_engine::LatencyHistogram::from_sparse(&[
                    (bucket.saturating_sub(2), (ok + failed) as u32 * 3 / 4),
                    (bucket, (ok + failed) as u32 / 4),
                ]),
            });
        }
    }
    store.put_history(&rows).unwrap();
}
