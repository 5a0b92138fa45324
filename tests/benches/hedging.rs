//! Hedged requests against a heavy tail, in real time: the real engine
//! calls an in-process provider whose answers take 80–120 ms, but 5 % of
//! them 2 s (seeded), for a safe lookup; 2,000 runs, 200 at a time. Each
//! contender runs the same sequence of latencies: no hedging, then
//! hedging after a fixed 250 ms, then after 150 ms.
//!
//! Run: `cargo bench -p switchyard-tests --bench hedging --profile dev`
//!
//! Printed per contender: p50, p95, p99 and max of run latency, and the
//! extra requests hedging sent (share of runs).

use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use switchyard_engine::{
    ActionInfo, Adapter, AppInfo, AttemptError, BoxFuture, BudgetConfig, CallRequest, CallResponse,
    HedgeConfig, Idempotency, RunOptions, Switchyard,
};

const RUNS: u64 = 2_000;
const AT_ONCE: usize = 200;

/// The provider: request n's latency is fixed by a seeded hash of n.
struct Tail {
    info: AppInfo,
    calls: AtomicU64,
}

fn latency(n: u64) -> Duration {
    // splitmix64
    let mut z = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    let u = (z >> 11) as f64 / (1u64 << 53) as f64;
    if u < 0.05 {
        Duration::from_millis(2_000)
    } else {
        Duration::from_millis(80 + ((u - 0.05) / 0.95 * 40.0) as u64)
    }
}

impl Adapter for Tail {
    fn info(&self) -> &AppInfo {
        &self.info
    }
    fn call(&self, _r: CallRequest) -> BoxFuture<'_, Result<CallResponse, AttemptError>> {
        let n = self.calls.fetch_add(1, Ordering::Relaxed);
        Box::pin(async move {
            tokio::time::sleep(latency(n)).await;
            Ok(CallResponse {
                output: json!({"n": n}),
            })
        })
    }
}

async fn contender(name: &str, hedge: Option<HedgeConfig>) {
    // The default retry budget: a hedge draws from it like a retry.
    let yard = Switchyard::builder()
        .seed(5)
        .budget(BudgetConfig::default())
        .build();
    let app = Arc::new(Tail {
        info: AppInfo {
            name: "lookup".into(),
            version: "1".into(),
            actions: vec![ActionInfo {
                name: "get".into(),
                description: String::new(),
                input_schema: json!({}),
                idempotency: Idempotency::Safe,
            }],
        },
        calls: AtomicU64::new(0),
    });
    yard.install_app("bench", "lookup", "dev", app.clone());
    let mut f = yard
        .fallback()
        .define("bench", "get")
        .provider("lookup")
        .action("get");
    if let Some(h) = hedge {
        f = f.hedge(h);
    }
    f.create().unwrap();
    let started = Instant::now();
    let mut took = Vec::with_capacity(RUNS as usize);
    let mut next = 0u64;
    let mut running = tokio::task::JoinSet::new();
    while next < RUNS || !running.is_empty() {
        while next < RUNS && running.len() < AT_ONCE {
            let y = yard.clone();
            running.spawn(async move {
                let t = Instant::now();
                let r = y
                    .fallback()
                    .run("bench", "dev", "get", json!({}), RunOptions::default())
                    .await;
                assert!(r.is_ok(), "{r:?}");
                t.elapsed()
            });
            next += 1;
        }
        if let Some(t) = running.join_next().await {
            took.push(t.unwrap());
        }
    }
    took.sort_unstable();
    let at = |q: f64| took[((took.len() as f64 - 1.0) * q).round() as usize].as_millis();
    let calls = app.calls.load(Ordering::Relaxed);
    println!(
        "  {name:<22} p50 {:>5} ms   p95 {:>5} ms   p99 {:>5} ms   max {:>5} ms   extra requests {:>5.1} %   ({:.1} s)",
        at(0.50),
        at(0.95),
        at(0.99),
        took.last().unwrap().as_millis(),
        100.0 * (calls - RUNS) as f64 / RUNS as f64,
        started.elapsed().as_secs_f64()
    );
}

#[tokio::main]
async fn main() {
    println!(
        "hedging a safe lookup: {RUNS} runs, {AT_ONCE} at a time; answers take 80-120 ms, 5 % take 2 s"
    );
    contender("no hedging", None).await;
    for delay_ms in [250, 150] {
        contender(
            &format!("hedge after {delay_ms} ms"),
            Some(HedgeConfig {
                delay_ms,
                delay: None,
                max_extra: 1,
                to: switchyard_engine::HedgeTo::Same,
            }),
        )
        .await;
    }
}
