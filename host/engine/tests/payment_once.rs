//! The double-execution checker: thousands of keyed payment runs through
//! three replicas (engines sharing one record store, as Redis or a SQLite
//! file holds it for all) against providers that count executions per
//! (account, key), under a seeded schedule of faults: answers lost after
//! the provider executed (a reset after send, a timeout past the answer,
//! an adapter trap after send), failures before anything executed,
//! refusals, a replica killed mid-run (its run dropped with nothing
//! settled), the record store pausing (claims that answer "unreachable",
//! some of which land anyway, as queued Redis commands do), and callers
//! retrying the same key on another replica, at once or later.
//!
//! Invariants: a key takes effect at most once across all accounts; a run
//! that says nothing happened (all failed, no provider, rejected) left no
//! effect; a run that served names the account that executed; and a run
//! whose effect is unknown says `ambiguous` naming that account.

use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchyard_engine::{
    ActionInfo, Adapter, AppInfo, AttemptError, BoxFuture, CallRequest, CallResponse, Claim,
    ErrorClass, ErrorCode, FailureKind, Idempotency, Jitter, ManualClock, MemoryRecords, Pin,
    Records, RunOptions, Settlement, Switchyard,
};

const P: &str = "shop";

/// What a provider does with one request.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    /// Executes and answers.
    Ok,
    /// Fails before executing (503, connection refused).
    Down,
    /// Refuses the input (400); nothing executes.
    Refuse,
    /// Executes, then the answer is lost (reset after send, a timeout past
    /// the provider's answer, a trap after send): `ambiguous`.
    LostAnswer,
    /// Fails after sending without executing: also `ambiguous`, since the
    /// adapter cannot tell.
    LostRequest,
    /// Executes, then the replica dies before the answer (its run is
    /// dropped, nothing settled).
    Crash,
}

/// Executions per (account, key): what the checker audits.
#[derive(Default)]
struct Ledger {
    executed: Mutex<HashMap<String, Vec<String>>>,
}

impl Ledger {
    fn apps(&self, key: &str) -> Vec<String> {
        self.executed
            .lock()
            .unwrap()
            .get(key)
            .cloned()
            .unwrap_or_default()
    }
}

/// A payment provider account: `keyed` ones deduplicate by the key (a
/// repeated key answers the first result without executing again), like
/// Stripe's `Idempotency-Key`; unkeyed ones execute every request.
struct Account {
    info: AppInfo,
    name: String,
    keyed: bool,
    ledger: Arc<Ledger>,
    faults: Arc<Mutex<Jitter>>,
    crash: tokio::sync::mpsc::UnboundedSender<()>,
    /// Off while two runs of one key race (the driver kills one run at a
    /// time).
    crashes: Arc<std::sync::atomic::AtomicBool>,
}

impl Account {
    fn fault(&self) -> Fault {
        let r = self.faults.lock().unwrap().next_f64();
        match r {
            r if r < 0.45 => Fault::Ok,
            r if r < 0.62 => Fault::Down,
            r if r < 0.67 => Fault::Refuse,
            r if r < 0.82 => Fault::LostAnswer,
            r if r < 0.92 => Fault::LostRequest,
            _ => Fault::Crash,
        }
    }
}

impl Adapter for Account {
    fn info(&self) -> &AppInfo {
        &self.info
    }

    fn call(&self, request: CallRequest) -> BoxFuture<'_, Result<CallResponse, AttemptError>> {
        Box::pin(async move {
            // Let other runs interleave with this one.
            let yields = self.faults.lock().unwrap().next_u64() % 4;
            for _ in 0..yields {
                tokio::task::yield_now().await;
            }
            let key = request.idempotency_key.clone();
            let seen = self.keyed && self.ledger.apps(&key).contains(&self.name);
            let execute = |ledger: &Ledger| {
                let mut m = ledger.executed.lock().unwrap();
                let apps = m.entry(key.clone()).or_default();
                if self.keyed && apps.contains(&self.name) {
                    return; // deduplicated: the first result answers
                }
                apps.push(self.name.clone());
            };
            let ok = || {
                Ok(CallResponse {
                    output: json!({"account": self.name, "key": request.idempotency_key}),
                })
            };
            let ambiguous =
                || AttemptError::new(ErrorClass::Ambiguous, FailureKind::Trap, "lost after send");
            let fault = match self.fault() {
                // A key the account already executed answers the first
                // result (it never refuses what it did): only the network
                // can still fail.
                Fault::Refuse if seen => Fault::Ok,
                f => f,
            };
            match fault {
                Fault::Ok => {
                    execute(&self.ledger);
                    ok()
                }
                Fault::Down => Err(AttemptError::provider(ErrorClass::Unavailable, "503")),
                Fault::Refuse => Err(AttemptError::provider(ErrorClass::Rejected, "400")),
                Fault::LostAnswer => {
                    execute(&self.ledger);
                    Err(ambiguous())
                }
                Fault::LostRequest => Err(ambiguous()),
                Fault::Crash if !self.crashes.load(Ordering::Relaxed) => {
                    execute(&self.ledger);
                    Err(ambiguous())
                }
                Fault::Crash => {
                    execute(&self.ledger);
                    let _ = self.crash.send(());
                    std::future::pending().await
                }
            }
        })
    }
}

/// The shared record store, pausing now and then: a paused call answers
/// "unreachable" (or `false`), and some paused claims land anyway.
struct Pausing {
    inner: MemoryRecords,
    rng: Mutex<Jitter>,
    pauses: AtomicU64,
}

impl Pausing {
    fn paused(&self) -> bool {
        let p = self.rng.lock().unwrap().next_f64() < 0.04;
        if p {
            self.pauses.fetch_add(1, Ordering::Relaxed);
        }
        p
    }
}

impl Records for Pausing {
    fn claim<'a>(
        &'a self,
        key: &'a str,
        fence: &'a str,
        now_ms: u64,
        until_ms: u64,
        ttl: Duration,
    ) -> BoxFuture<'a, Claim> {
        Box::pin(async move {
            if self.paused() {
                if self.rng.lock().unwrap().next_f64() < 0.5 {
                    // Queued while paused, applied when it resumed.
                    let _ = self.inner.claim(key, fence, now_ms, until_ms, ttl).await;
                }
                return Claim::Unreachable;
            }
            self.inner.claim(key, fence, now_ms, until_ms, ttl).await
        })
    }

    fn pin<'a>(&'a self, key: &'a str, fence: &'a str, pin: &'a Pin) -> BoxFuture<'a, bool> {
        Box::pin(async move { !self.paused() && self.inner.pin(key, fence, pin).await })
    }

    fn settle<'a>(
        &'a self,
        key: &'a str,
        fence: &'a str,
        settlement: Settlement,
        now_ms: u64,
        ttl: Duration,
    ) -> BoxFuture<'a, bool> {
        // A settle that cannot be written now is written later (the
        // cluster link's outbox): model it as landing.
        self.inner.settle(key, fence, settlement, now_ms, ttl)
    }
}

#[derive(Debug, Default)]
struct Report {
    keys: u64,
    runs: u64,
    faults: HashMap<&'static str, u64>,
    answers: HashMap<String, u64>,
    crashes: u64,
    violations: Vec<String>,
}

async fn check(action_keyed: bool, keys: u64, seed: u64) -> Report {
    let clock = Arc::new(ManualClock::new());
    let ledger = Arc::new(Ledger::default());
    let faults = Arc::new(Mutex::new(Jitter::seeded(seed)));
    let records = Arc::new(Pausing {
        inner: MemoryRecords::default(),
        rng: Mutex::new(Jitter::seeded(seed ^ 0xabc)),
        pauses: AtomicU64::new(0),
    });
    let (crash_tx, mut crash_rx) = tokio::sync::mpsc::unbounded_channel();
    let crashes = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let idempotency = if action_keyed {
        Idempotency::Keyed
    } else {
        Idempotency::Unsafe
    };
    let replicas: Vec<Switchyard> = (0..3)
        .map(|i| {
            let yard = Switchyard::builder()
                .clock(clock.clone())
                .seed(seed + i)
                .records(records.clone())
                .build();
            for name in ["main", "backup"] {
                yard.install_app(
                    P,
                    name,
                    "prd",
                    Arc::new(Account {
                        info: AppInfo {
                            name: name.into(),
                            version: "1".into(),
                            actions: vec![ActionInfo {
                                name: "charge".into(),
                                description: String::new(),
                                input_schema: json!({}),
                                idempotency,
                            }],
                        },
                        name: name.into(),
                        keyed: action_keyed,
                        ledger: ledger.clone(),
                        faults: faults.clone(),
                        crash: crash_tx.clone(),
                        crashes: crashes.clone(),
                    }),
                );
            }
            yard.fallback()
                .define(P, "pay")
                .deadline(Duration::from_secs(2))
                .provider("main")
                .app("main")
                .action("charge")
                .retries(2)
                .backoff(Duration::from_millis(1), Duration::from_millis(5))
                .provider("backup")
                .app("backup")
                .action("charge")
                .retries(2)
                .backoff(Duration::from_millis(1), Duration::from_millis(5))
                .create()
                .unwrap();
            yard
        })
        .collect();
    let mut rng = Jitter::seeded(seed ^ 0x5eed);
    let mut report = Report {
        keys,
        ..Report::default()
    };
    for k in 0..keys {
        let key = format!("order-{seed}-{k}");
        let tries = 1 + rng.next_u64() % 4;
        let mut history: Vec<String> = Vec::new();
        for t in 0..tries {
            let run = |i: usize| {
                replicas[i].fallback().run(
                    P,
                    "prd",
                    "pay",
                    json!({}),
                    RunOptions::default().idempotency_key(key.clone()),
                )
            };
            let i = (rng.next_u64() % 3) as usize;
            // Sometimes the caller retries on another replica while the
            // first run is still going.
            let at_once = t == 0 && rng.next_f64() < 0.15;
            let mut outcomes = Vec::new();
            if at_once {
                let j = (i + 1) % 3;
                crashes.store(false, Ordering::Relaxed);
                // Each answer is judged against what had executed when it
                // came.
                let seen = |i| {
                    let run = run(i);
                    let ledger = &ledger;
                    let key = &key;
                    async move {
                        let r = run.await;
                        (r, ledger.apps(key))
                    }
                };
                let (a, b) = tokio::join!(seen(i), seen(j));
                crashes.store(true, Ordering::Relaxed);
                outcomes.push(Some(a));
                outcomes.push(Some(b));
            } else {
                let r = tokio::select! {
                    r = run(i) => Some((r, ledger.apps(&key))),
                    _ = crash_rx.recv() => None,
                };
                outcomes.push(r);
            }
            for outcome in outcomes {
                report.runs += 1;
                let Some((result, apps)) = outcome else {
                    // The replica died mid-run: the caller saw nothing. It
                    // comes back after the dead run's hold has lapsed.
                    history.push("killed".into());
                    report.crashes += 1;
                    clock.advance(Duration::from_secs(8));
                    continue;
                };
                let answer = match &result {
                    Ok(r) if r.trace.replayed => "replayed".to_string(),
                    Ok(_) => "served".to_string(),
                    Err(e) => e.code.to_string(),
                };
                *report.answers.entry(answer.clone()).or_default() += 1;
                history.push(match &result {
                    Ok(_) => answer,
                    Err(e) => format!("{answer}: {}", e.message),
                });
                match result {
                    Ok(r) => {
                        let account = r.output["account"].as_str().unwrap_or("").to_string();
                        if !apps.contains(&account) {
                            report
                                .violations
                                .push(format!("{key}: served by {account}, executed at {apps:?}"));
                        }
                    }
                    Err(e) => match e.code {
                        ErrorCode::AllFailed | ErrorCode::NoProvider | ErrorCode::Rejected
                            if !apps.is_empty() =>
                        {
                            report.violations.push(format!(
                                "{key}: answered {} but executed at {apps:?}; runs: {history:#?}",
                                e.code
                            ));
                        }
                        ErrorCode::Ambiguous => {
                            let at = e.reconcile.as_ref().map(|r| r.app.clone());
                            if at.is_none() || apps.iter().any(|a| Some(a) != at.as_ref()) {
                                report.violations.push(format!(
                                    "{key}: ambiguous naming {at:?}, executed at {apps:?}"
                                ));
                            }
                        }
                        _ => {}
                    },
                }
            }
            // Some callers come back much later.
            if rng.next_f64() < 0.3 {
                clock.advance(Duration::from_secs(3));
            }
        }
        let apps = ledger.apps(&key);
        if apps.len() > 1 {
            report
                .violations
                .push(format!("{key}: took effect {} times: {apps:?}", apps.len()));
        }
    }
    report.faults.insert(
        "record store pauses",
        records.pauses.load(Ordering::Relaxed),
    );
    report
}

fn print(name: &str, r: &Report) {
    let mut answers: Vec<_> = r.answers.iter().collect();
    answers.sort();
    println!(
        "{name}: {} keys, {} runs, {} replicas killed mid-run, {} record store pauses, answers {answers:?}, {} violations",
        r.keys,
        r.runs,
        r.crashes,
        r.faults.get("record store pauses").copied().unwrap_or(0),
        r.violations.len()
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_keyed_payment_takes_effect_at_most_once_under_chaos() {
    let keys: u64 = std::env::var("PAYMENT_ONCE_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let r = check(true, keys, 24).await;
    print("keyed (Stripe-like)", &r);
    assert!(
        r.violations.is_empty(),
        "{:#?}",
        &r.violations[..r.violations.len().min(20)]
    );
    assert!(
        r.crashes > 100 && r.answers.get("ambiguous").copied().unwrap_or(0) > 100,
        "{r:?}"
    );
    assert!(
        r.answers.get("replayed").copied().unwrap_or(0) > 100,
        "{r:?}"
    );
    assert!(
        r.answers
            .get("idempotency-unavailable")
            .copied()
            .unwrap_or(0)
            > 10,
        "{r:?}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn an_unsafe_send_is_never_sent_twice_under_chaos() {
    let r = check(false, 5_000, 7).await;
    print("unsafe (Twilio-like)", &r);
    assert!(
        r.violations.is_empty(),
        "{:#?}",
        &r.violations[..r.violations.len().min(20)]
    );
    assert!(r.crashes > 50, "{r:?}");
}
