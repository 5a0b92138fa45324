//! Engine overhead: a routed run against a native no-op adapter, so the
//! figure is the engine alone (choice, breaker, budget and retry
//! bookkeeping, schema check, input and output mapping, trace).
//!
//! Run: `cargo bench -p switchyard-tests --bench engine --profile dev`
//! (`--quick` for fewer iterations).

use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_engine::{
    ActionInfo, Adapter, AppInfo, AttemptError, BoxFuture, CallRequest, CallResponse,
};
use switchyard_engine::{FieldType, Kind, RouteBuilder, RunOptions, Switchyard};

/// Answers every call with its input, allocation-free beyond the move.
struct Noop(AppInfo);

impl Adapter for Noop {
    fn info(&self) -> &AppInfo {
        &self.0
    }

    fn call(&self, request: CallRequest) -> BoxFuture<'_, Result<CallResponse, AttemptError>> {
        Box::pin(std::future::ready(Ok(CallResponse {
            output: request.input,
        })))
    }
}

fn noop(name: &str) -> Arc<Noop> {
    Arc::new(Noop(AppInfo {
        name: name.into(),
        version: "1".into(),
        actions: vec![ActionInfo {
            name: "send".into(),
            description: String::new(),
            input_schema: json!({}),
            idempotency: switchyard_engine::Idempotency::Unsafe,
        }],
    }))
}

fn report(name: &str, samples: &mut [Duration]) {
    samples.sort();
    let at = |p: f64| samples[((samples.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "{name:<56} p50 {:>7.2} µs   p99 {:>7.2} µs   (n={})",
        at(0.5).as_secs_f64() * 1e6,
        at(0.99).as_secs_f64() * 1e6,
        samples.len()
    );
}

async fn measure(name: &str, n: usize, mut run: impl AsyncFnMut() -> Value) {
    for _ in 0..n / 10 {
        run().await;
    }
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        std::hint::black_box(run().await);
        samples.push(t.elapsed());
    }
    report(name, &mut samples);
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let n = if quick { 20_000 } else { 200_000 };
    let yard = Switchyard::new();
    for app in ["a", "b"] {
        yard.install_app("bench", app, "prd", noop(app));
    }
    fn five(b: RouteBuilder<'_>) -> RouteBuilder<'_> {
        b.input("to", FieldType::String)
            .input("from", FieldType::String)
            .input("body", FieldType::String)
            .input("priority", FieldType::Integer)
            .input("tags", FieldType::Array)
    }
    let mapping = json!({
        "To": "$Input{to}", "From": "$Input{from}", "Body": "$Input{body}",
        "Priority": "$Input{priority}", "Tags": "$Input{tags}"
    });
    let output = json!({"id": "$Response{To}", "via": "$Response{From}"});
    five(yard.fallback().define("bench", "fb"))
        .provider("a")
        .action("send")
        .retries(2)
        .map_input(mapping.clone())
        .map_output(output.clone())
        .provider("b")
        .action("send")
        .map_input(mapping.clone())
        .map_output(output.clone())
        .create()
        .unwrap();
    five(yard.quota().define("bench", "q"))
        .provider("a")
        .action("send")
        .weight(70)
        .map_input(mapping.clone())
        .map_output(output.clone())
        .provider("b")
        .action("send")
        .weight(30)
        .map_input(mapping)
        .map_output(output)
        .create()
        .unwrap();
    let input = json!({
        "to": "+15550100", "from": "+15550199", "body": "your code is 123456",
        "priority": 1, "tags": ["otp"]
    });
    println!("switchyard engine overhead ({n} runs each, native no-op adapter, one thread)");
    measure(
        "fallback run, 5-field input mapping, first option serves",
        n,
        async || {
            let r = yard
                .run(
                    Kind::Fallback,
                    "bench",
                    "prd",
                    "fb",
                    input.clone(),
                    RunOptions::default(),
                )
                .await
                .unwrap();
            r.output
        },
    )
    .await;
    measure("quota run 70/30, 5-field input mapping", n, async || {
        let r = yard
            .run(
                Kind::Quota,
                "bench",
                "prd",
                "q",
                input.clone(),
                RunOptions::default(),
            )
            .await
            .unwrap();
        r.output
    })
    .await;
    // A keyed run claims its record, pins the app before the (unsafe)
    // attempt and settles: in memory (the embedder's default) and in the
    // server's SQLite file (`serve` in one process). Each run a new key.
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Switchyard::builder()
        .records(Arc::new(
            switchyard::SqliteRecords::open(&dir.path().join("records.db"), 10_000_000).unwrap(),
        ))
        .build();
    for app in ["a", "b"] {
        sqlite.install_app("bench", app, "prd", noop(app));
    }
    sqlite
        .create(yard.fallback().fetch("bench", "fb").unwrap())
        .unwrap();
    for (name, engine) in [
        (
            "fallback run, new caller key each run, records in memory",
            &yard,
        ),
        (
            "fallback run, new caller key each run, records in SQLite",
            &sqlite,
        ),
    ] {
        let mut k = 0u64;
        measure(name, n / 4, async || {
            k += 1;
            let r = engine
                .run(
                    Kind::Fallback,
                    "bench",
                    "prd",
                    "fb",
                    input.clone(),
                    RunOptions::default().idempotency_key(format!("order-{k}")),
                )
                .await
                .unwrap();
            r.output
        })
        .await;
    }
    measure(
        "clone of the 5-field input alone (baseline)",
        n,
        async || input.clone(),
    )
    .await;
}
