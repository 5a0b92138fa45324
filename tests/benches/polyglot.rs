//! Python and JavaScript adapters: figures for `docs/performance.md`.
//!
//! Run: `plugins/build-polyglot.sh && cargo bench -p switchyard-tests --bench polyglot --profile dev`
//! (`--quick` runs fewer iterations and skips the cold compiles).
//!
//! Per adapter (the Rust Twilio adapter alongside, for comparison):
//! component size; cold load (compile + link + describe, no cache); cached
//! load (precompiled artifact from the cache dir); instance-per-call latency
//! without network (the adapter refuses the input: instantiate + call +
//! drop) and with one loopback HTTP request (`ping`); memory per live
//! instance (RSS growth with 32 calls held in flight by a slow server).
//! Then, for the test programs echo-py and echo-js, one request whose JSON
//! success is read by the host (one sandbox step) or by the adapter (two).
//!
//! `POLYGLOT_KEEP_RESIDENT_MB=N`: the runtimes measured keep N MiB of a
//! slot's memory resident between calls (`runtime.keep_resident_mb`;
//! default the runtime's, 2). The bench ends with its peak RSS.

use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_engine::CallRequest;
use switchyard_runtime::{App, Grant, Runtime};
use switchyard_runtime::{ComponentSource, RuntimeConfig};
use switchyard_runtime::{Credential, Secret};
use switchyard_tests::scripted::{Answer, Scripted};
use switchyard_tests::{artifacts, polyglot};

struct Subject {
    name: &'static str,
    source: ComponentSource,
    /// A call the adapter refuses before any request.
    refused: (&'static str, Value),
    /// `ping` path on the server.
    ping_path: &'static str,
    ping_answer: Answer,
}

fn subjects() -> Vec<Subject> {
    vec![
        Subject {
            name: "vonage (Python)",
            source: ComponentSource::File(polyglot("vonage")),
            refused: ("send-sms", json!({"to": "+14155550100", "from": "Acme"})),
            ping_path: "/account/get-balance",
            ping_answer: Answer::json(200, json!({"value": 10.28, "autoReload": false})),
        },
        Subject {
            name: "slack (JavaScript)",
            source: ComponentSource::File(polyglot("slack")),
            refused: ("post-message", json!({"channel": "C1"})),
            ping_path: "/api/auth.test",
            ping_answer: Answer::json(200, json!({"ok": true, "team": "T", "user": "U"})),
        },
        Subject {
            name: "twilio (Rust)",
            source: ComponentSource::Bytes(artifacts::TWILIO_PLUGIN.into()),
            refused: ("send-sms", json!({"To": "+14155550100"})),
            ping_path: "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef.json",
            ping_answer: Answer::json(200, json!({"status": "active"})),
        },
    ]
}

fn grant(server: &Scripted) -> Grant {
    Grant::new()
        .allow(server.url())
        .credential(Credential::Basic {
            username: "user".into(),
            password: Secret::new("secret"),
        })
        .config("messages_base", server.url())
        .config("rest_base", server.url())
        .config("api_base", server.url())
        .config("account_sid", "AC0123456789abcdef0123456789abcdef")
}

fn slack_fixup(name: &str, server: &Scripted, grant: Grant) -> Grant {
    if name.starts_with("slack") {
        grant.config("api_base", format!("{}/api", server.url()))
    } else {
        grant
    }
}

fn size(source: &ComponentSource) -> usize {
    match source {
        ComponentSource::File(p) => std::fs::metadata(p).unwrap().len() as usize,
        ComponentSource::Bytes(b) => b.len(),
    }
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

async fn timed_calls(app: &App, n: usize, req: impl Fn() -> CallRequest, ok: bool) -> (f64, f64) {
    for _ in 0..n / 10 + 5 {
        let _ = app.call(req()).await;
    }
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let r = app.call(req()).await;
        samples.push(t.elapsed());
        assert_eq!(r.is_ok(), ok, "{r:?}");
    }
    (
        ms(percentile(&mut samples, 0.5)),
        ms(percentile(&mut samples, 0.99)),
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let n = if quick { 100 } else { 1000 };
    let cache = switchyard_tests::cache_dir();
    let keep_resident = std::env::var("POLYGLOT_KEEP_RESIDENT_MB")
        .ok()
        .map(|v| {
            v.parse::<usize>()
                .expect("POLYGLOT_KEEP_RESIDENT_MB: a whole number of MiB")
                << 20
        })
        .unwrap_or(switchyard_runtime::DEFAULT_KEEP_RESIDENT);
    let cached_rt = Runtime::new(RuntimeConfig {
        cache_dir: Some(cache.clone()),
        keep_resident,
        ..RuntimeConfig::default()
    })
    .unwrap();
    let plain_rt = Runtime::new(RuntimeConfig {
        cache_dir: Some(cache.clone()),
        keep_resident: 0,
        ..RuntimeConfig::default()
    })
    .unwrap();
    let uncached_rt = Runtime::new(RuntimeConfig {
        cache_dir: None,
        ..RuntimeConfig::default()
    })
    .unwrap();
    println!(
        "switchyard polyglot benchmarks ({} allocator, {n} calls per figure, keep_resident {} MiB)\n",
        if cached_rt.uses_pooling() {
            "pooling"
        } else {
            "on-demand"
        },
        keep_resident >> 20
    );
    println!(
        "{:<20} {:>9} {:>10} {:>10} {:>15} {:>15} {:>10}",
        "adapter", "size MB", "cold load", "cached", "call p50/p99", "ping p50/p99", "KiB/inst"
    );
    // `--profile-calls NAME`: only loop the no-network call, for `perf`.
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--profile-calls") {
        let s = subjects()
            .into_iter()
            .find(|s| s.name.starts_with(&args[i + 1]))
            .unwrap();
        let server = Scripted::start().await;
        let app = cached_rt
            .load(
                "p",
                s.source.clone(),
                slack_fixup(s.name, &server, grant(&server)),
            )
            .await
            .unwrap();
        server.always(s.ping_path, s.ping_answer.clone());
        let ping = args.iter().any(|a| a == "--ping");
        let (action, input) = if ping {
            ("ping", json!({}))
        } else {
            s.refused.clone()
        };
        let t = Instant::now();
        let mut calls = 0;
        while t.elapsed() < Duration::from_secs(5) {
            let r = app.call(CallRequest::new(action, input.clone())).await;
            assert_eq!(r.is_ok(), ping, "{r:?}");
            calls += 1;
        }
        println!("{calls} calls in 5 s");
        return;
    }
    for s in subjects() {
        let server = Scripted::start().await;
        server.always(s.ping_path, s.ping_answer.clone());
        let g = || slack_fixup(s.name, &server, grant(&server));

        // `--quick` skips the cold compile: shown as "skipped".
        let cold = if quick {
            "skipped".to_string()
        } else {
            let t = Instant::now();
            uncached_rt
                .load("cold", s.source.clone(), g())
                .await
                .unwrap();
            format!("{:.0}ms", ms(t.elapsed()))
        };
        cached_rt.load("warm", s.source.clone(), g()).await.unwrap(); // fills the cache
        let mut loads = Vec::new();
        let mut app = None;
        for _ in 0..5 {
            let t = Instant::now();
            let a = cached_rt
                .load("bench", s.source.clone(), g())
                .await
                .unwrap();
            loads.push(t.elapsed());
            app = Some(a);
        }
        let cached = ms(percentile(&mut loads, 0.5));
        let app = app.unwrap();

        // A/B of writing the first `keep_resident` bytes back between
        // calls (the measured runtimes' setting) against dropping every
        // page, interleaved in time so machine noise hits both alike.
        let plain = plain_rt.load("plain", s.source.clone(), g()).await.unwrap();
        let (action, input) = s.refused.clone();
        let mut ab = [Vec::new(), Vec::new()];
        for _ in 0..5 {
            for (i, a) in [&plain, &app].into_iter().enumerate() {
                let (p50, _) =
                    timed_calls(a, n / 5, || CallRequest::new(action, input.clone()), false).await;
                ab[i].push(p50);
            }
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        eprintln!(
            "{}: no-network call p50 with keep_resident 0 / {} MiB: {:.2} / {:.2} ms",
            s.name,
            keep_resident >> 20,
            median(&mut ab[0]),
            median(&mut ab[1])
        );
        let (call50, call99) =
            timed_calls(&app, n, || CallRequest::new(action, input.clone()), false).await;
        let before_counts = app.instance_counts();
        let (ping50, ping99) =
            timed_calls(&app, n, || CallRequest::new("ping", json!({})), true).await;

        let counts = app.instance_counts();
        let inst_avg = (counts.instantiate_total - before_counts.instantiate_total).as_secs_f64()
            * 1e3
            / (counts.instantiations - before_counts.instantiations) as f64;
        eprintln!("{}: instantiate avg {inst_avg:.3} ms", s.name);
        // Memory: 32 calls in flight, each holding its instance while the
        // server waits 1.5 s before answering.
        let live = 32;
        server.set_delay(Duration::from_millis(1500));
        server.clear();
        let before = rss_kib();
        let app = Arc::new(app);
        let tasks: Vec<_> = (0..live)
            .map(|_| {
                let app = app.clone();
                tokio::spawn(async move { app.call(CallRequest::new("ping", json!({}))).await })
            })
            .collect();
        let wait = Instant::now();
        while server.received().len() < live && wait.elapsed() < Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let during = rss_kib();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let per_instance = during.saturating_sub(before) / live as u64;

        println!(
            "{:<20} {:>9.1} {:>10} {:>8.1}ms {:>6.2}/{:<6.2}ms {:>6.2}/{:<6.2}ms {:>10}",
            s.name,
            size(&s.source) as f64 / 1e6,
            cold,
            cached,
            call50,
            call99,
            ping50,
            ping99,
            per_instance
        );
    }

    // One request, its 2xx JSON answer read by the host (`read-by-host`,
    // listed in the component's `exchange-reading`: one sandbox step) or
    // by the adapter (`post`: a second step), interleaved in rounds.
    println!(
        "\n{:<20} {:>24} {:>24}",
        "one request", "read by host p50/p99", "read by adapter p50/p99"
    );
    for (name, lang) in [("echo-py", "Python"), ("echo-js", "JavaScript")] {
        let server = Scripted::start().await;
        server.always("/v1/messages", Answer::json(200, json!({"id": "m-1"})));
        let grant = Grant::new()
            .allow(server.url())
            .config("base_url", server.url());
        // A runtime of its own: a pool whose slots no other adapter's
        // instances dirtied (as for one app in production).
        let rt = Runtime::new(RuntimeConfig {
            cache_dir: Some(cache.clone()),
            keep_resident,
            ..RuntimeConfig::default()
        })
        .unwrap();
        let app = rt
            .load(name, ComponentSource::File(polyglot(name)), grant)
            .await
            .unwrap();
        let mut samples = [Vec::new(), Vec::new()];
        for _round in 0..5 {
            for (i, action) in ["read-by-host", "post"].into_iter().enumerate() {
                for _ in 0..n / 5 {
                    let t = Instant::now();
                    let r = app
                        .call(CallRequest::new(action, json!({"to": "+1"})))
                        .await;
                    samples[i].push(t.elapsed());
                    assert!(r.is_ok(), "{r:?}");
                }
            }
        }
        let [mut host, mut adapter] = samples;
        println!(
            "{:<20} {:>15.2}/{:<8.2} {:>15.2}/{:<8.2}",
            format!("{name} ({lang})"),
            ms(percentile(&mut host, 0.5)),
            ms(percentile(&mut host, 0.99)),
            ms(percentile(&mut adapter, 0.5)),
            ms(percentile(&mut adapter, 0.99)),
        );
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if let Some(hwm) = status.lines().find_map(|l| l.strip_prefix("VmHWM:")) {
        println!(
            "\nRSS of the bench: peak {}, at the end {} kB",
            hwm.trim(),
            rss_kib()
        );
    }
}
