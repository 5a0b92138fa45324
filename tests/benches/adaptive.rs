//! Adaptive routing against an oracle, on simulated time: the real engine
//! under a `ManualClock` routes a 70/30 quota over two simulated providers
//! whose success and latency change by the minute (hours of traffic in
//! seconds, no sleeping). Each scenario runs with static weights (today's
//! default breakers on), with success-rate routing, and with an oracle that
//! knows every provider's true rate at every moment and picks the best.
//!
//! Run: `cargo bench -p switchyard-tests --bench adaptive --profile dev`
//!
//! Scenarios: S1 (A's success falls from 98 % to 60 % for 10 minutes, B
//! steady at 96 %), S2 (A fast at 100 ms and 99 %, B slow at 900 ms and
//! 99.5 %), S3 (A flaps 30 s up, 30 s down for 10 minutes), S4 (A's
//! latency creeps from 100 to 1 500 ms over an hour, B steady at 400 ms),
//! S5 (a 429 storm on A). Contenders: static weights, each strategy
//! (`success-rate`, `latency`, `elimination`), the oracle.
//!
//! Printed per scenario and contender: first-try success (what a caller
//! pays for), runs served (after failover), p95/p99 of run latency, calls
//! sent to a provider while it was sick, and the seconds from the end of
//! a sickness until the sick provider's share is back within 5 points of
//! its weight; with both healthy, A's share (its weight is 70 %); from the
//! start of a sickness, the seconds until A's share falls below half its
//! weight (detect).

use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchyard_engine::{
    ActionInfo, Adapter, AdaptiveConfig, AppInfo, AttemptError, BoxFuture, CallRequest,
    CallResponse, Clock, ErrorClass, FailureKind, Idempotency, ManualClock, RunOptions, Strategy,
    Switchyard,
};

/// Runs per simulated second.
const RATE: u64 = 10;

/// A provider's truth at a moment: success probability, latency ms, and
/// whether its failures are 429s.
#[derive(Clone, Copy)]
struct Truth {
    ok: f64,
    latency_ms: u64,
    throttles: bool,
}

type Profile = Arc<dyn Fn(u64) -> Truth + Send + Sync>;

/// A seeded xorshift source.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A simulated provider: answers by its profile at the clock's time.
struct Sim {
    info: AppInfo,
    clock: Arc<ManualClock>,
    start: std::time::Instant,
    profile: Profile,
    rng: Mutex<Rng>,
    calls_while_sick: AtomicU64,
}

impl Sim {
    fn now_ms(&self) -> u64 {
        self.clock.now().duration_since(self.start).as_millis() as u64
    }
}

impl Adapter for Sim {
    fn info(&self) -> &AppInfo {
        &self.info
    }

    fn call(&self, _request: CallRequest) -> BoxFuture<'_, Result<CallResponse, AttemptError>> {
        let t = (self.profile)(self.now_ms());
        if t.ok < 0.9 {
            self.calls_while_sick.fetch_add(1, Ordering::Relaxed);
        }
        self.clock.advance(Duration::from_millis(t.latency_ms));
        let ok = self.rng.lock().unwrap().next() < t.ok;
        Box::pin(std::future::ready(if ok {
            Ok(CallResponse { output: json!({}) })
        } else if t.throttles {
            let mut e = AttemptError::new(ErrorClass::RateLimited, FailureKind::Provider, "429");
            e.retry_after = Some(Duration::from_millis(200));
            Err(e)
        } else {
            Err(AttemptError::new(
                ErrorClass::Unavailable,
                FailureKind::Provider,
                "503",
            ))
        }))
    }
}

struct Scenario {
    name: &'static str,
    minutes: u64,
    a: Profile,
    b: Profile,
    /// When A's sickness starts and ends, ms (for time to detect and to
    /// recover; `None`: a scenario of latency, without a split to keep).
    sick_ms: Option<(u64, u64)>,
}

fn steady(ok: f64, latency_ms: u64) -> Profile {
    Arc::new(move |_| Truth {
        ok,
        latency_ms,
        throttles: false,
    })
}

fn scenarios() -> Vec<Scenario> {
    let min = 60_000;
    vec![
        Scenario {
            name: "S1 A falls 98 -> 60 % for 10 min",
            minutes: 25,
            a: Arc::new(move |t| Truth {
                ok: if (5 * min..15 * min).contains(&t) {
                    0.60
                } else {
                    0.98
                },
                latency_ms: 100,
                throttles: false,
            }),
            b: steady(0.96, 100),
            sick_ms: Some((5 * min, 15 * min)),
        },
        Scenario {
            name: "S2 A fast (100 ms, 99 %), B slow (900 ms, 99.5 %)",
            minutes: 15,
            a: steady(0.99, 100),
            b: steady(0.995, 900),
            sick_ms: None,
        },
        Scenario {
            name: "S3 A flaps 30 s up / 30 s down",
            minutes: 20,
            a: Arc::new(move |t| Truth {
                ok: if (t / 30_000) % 2 == 1 && t >= 5 * min && t < 15 * min {
                    0.0
                } else {
                    0.98
                },
                latency_ms: 100,
                throttles: false,
            }),
            b: steady(0.96, 100),
            sick_ms: Some((5 * min, 15 * min)),
        },
        Scenario {
            name: "S4 A's latency creeps 100 -> 1500 ms over an hour, B 400 ms",
            minutes: 70,
            a: Arc::new(move |t| Truth {
                ok: 0.99,
                latency_ms: 100 + 1400 * t.min(60 * min) / (60 * min),
                throttles: false,
            }),
            b: steady(0.99, 400),
            sick_ms: None,
        },
        Scenario {
            name: "S5 a 429 storm on A (80 % for 5 min)",
            minutes: 15,
            a: Arc::new(move |t| {
                let storm = (5 * min..10 * min).contains(&t);
                Truth {
                    ok: if storm { 0.2 } else { 0.99 },
                    latency_ms: 100,
                    throttles: storm,
                }
            }),
            b: steady(0.97, 100),
            sick_ms: Some((5 * min, 10 * min)),
        },
    ]
}

#[derive(Default)]
struct Tally {
    runs: u64,
    first_ok: u64,
    served: u64,
    latencies: Vec<u64>,
    sick_calls: u64,
    /// Per simulated second: (runs, runs whose first try went to A).
    per_second: Vec<(u64, u64)>,
}

impl Tally {
    /// A's share of first tries over `secs` seconds from `from`.
    fn share(&self, from: usize, secs: usize) -> f64 {
        let end = (from + secs).min(self.per_second.len());
        let (r, a) = self.per_second[from.min(end)..end]
            .iter()
            .fold((0, 0), |(r, a), (x, y)| (r + x, a + y));
        a as f64 / r.max(1) as f64
    }

    fn line(&self, name: &str, sick_ms: Option<(u64, u64)>) -> String {
        let mut l = self.latencies.clone();
        l.sort_unstable();
        let at = |q: f64| l[((l.len() as f64 - 1.0) * q).round() as usize];
        let secs = |r: Option<usize>| r.map_or("never".to_string(), |s| format!("{s} s"));
        let (healthy, detect, recover) = match sick_ms {
            None => ("-".to_string(), "-".to_string(), "-".to_string()),
            Some((sick, well)) => {
                let (sick, well) = ((sick / 1000) as usize, (well / 1000) as usize);
                let last = self.per_second.len().saturating_sub(60);
                // Both healthy: A's share from the first minute's end to
                // the sickness.
                let healthy = format!("{:.1} %", 100.0 * self.share(60, sick - 60));
                // Detected: from the first second its share over the next
                // 10 s is below half its weight (35 %).
                let detect = (sick..well)
                    .find(|&s| self.share(s, 10) < 0.35)
                    .map(|s| s - sick);
                // Recovered: from the first second its share over the next
                // minute is within 5 points of 70 %.
                let recover = (well..last)
                    .find(|&s| (self.share(s, 60) - 0.70).abs() <= 0.05)
                    .map(|s| s - well);
                (healthy, secs(detect), secs(recover))
            }
        };
        format!(
            "  {name:<16} first-try ok {:>6.2} %   served {:>6.2} %   p95 {:>5} ms   p99 {:>5} ms   calls to sick A {:>6}   A's share healthy {healthy:>6}   detect {detect:>6}   back to 70/30 {recover}",
            100.0 * self.first_ok as f64 / self.runs as f64,
            100.0 * self.served as f64 / self.runs as f64,
            at(0.95),
            at(0.99),
            self.sick_calls,
        )
    }
}

fn app(
    name: &str,
    clock: &Arc<ManualClock>,
    start: std::time::Instant,
    profile: Profile,
    seed: u64,
) -> Arc<Sim> {
    Arc::new(Sim {
        info: AppInfo {
            name: name.into(),
            version: "1".into(),
            actions: vec![ActionInfo {
                name: "send".into(),
                description: String::new(),
                input_schema: json!({}),
                idempotency: Idempotency::Unsafe,
            }],
        },
        clock: clock.clone(),
        start,
        profile,
        rng: Mutex::new(Rng(seed)),
        calls_while_sick: AtomicU64::new(0),
    })
}

async fn engine_run(s: &Scenario, adaptive: Option<AdaptiveConfig>) -> Tally {
    let clock = Arc::new(ManualClock::new());
    let start = clock.now();
    let yard = Switchyard::builder().clock(clock.clone()).seed(11).build();
    let a = app("a", &clock, start, s.a.clone(), 0x9E37_79B9);
    let b = app("b", &clock, start, s.b.clone(), 0x7F4A_7C15);
    yard.install_app("sim", "a", "dev", a.clone());
    yard.install_app("sim", "b", "dev", b.clone());
    let mut q = yard
        .quota()
        .define("sim", "q")
        .provider("a")
        .action("send")
        .weight(70)
        .provider("b")
        .action("send")
        .weight(30);
    if let Some(cfg) = adaptive {
        q = q.adaptive(cfg);
    }
    q.create().unwrap();
    let mut t = Tally::default();
    let total = s.minutes * 60 * RATE;
    let step = Duration::from_millis(1000 / RATE);
    for i in 0..total {
        let began = clock.now();
        let due = start + step * i as u32;
        if due > began {
            clock.advance(due - began);
        }
        let began = clock.now();
        let r = yard
            .quota()
            .run("sim", "dev", "q", json!({}), RunOptions::default())
            .await;
        let trace = match &r {
            Ok(r) => Some(&r.trace),
            Err(e) => e.trace.as_deref(),
        };
        let first = trace.and_then(|t| t.attempts.first());
        let second = (began.duration_since(start).as_millis() / 1000) as usize;
        if t.per_second.len() <= second {
            t.per_second.resize(second + 1, (0, 0));
        }
        t.per_second[second].0 += 1;
        if first.is_some_and(|f| f.provider == "a") {
            t.per_second[second].1 += 1;
        }
        t.runs += 1;
        t.first_ok += u64::from(first.is_some_and(|f| f.outcome == switchyard_engine::Outcome::Ok));
        t.served += u64::from(r.is_ok());
        t.latencies
            .push(clock.now().duration_since(began).as_millis() as u64);
    }
    t.sick_calls = a.calls_while_sick.load(Ordering::Relaxed);
    if std::env::var_os("ADAPTIVE_DEBUG").is_some() {
        let per_min: Vec<String> = t
            .per_second
            .chunks(60)
            .map(|c| {
                let (r, a) = c.iter().fold((0, 0), |(r, a), (x, y)| (r + x, a + y));
                format!("{:.0}", 100.0 * a as f64 / r.max(1) as f64)
            })
            .collect();
        eprintln!("A's share per minute: {}", per_min.join(" "));
    }
    t
}

/// The oracle: each run tries first the provider with the better true
/// rate at that moment (the faster on a tie within 0.5 point), then the
/// other, with the same simulated providers. `weights`: an oracle that
/// keeps the 70/30 split while the true rates are within 2 points (what
/// the strategies are asked to do between healthy providers), so the gap
/// to it is the cost of learning alone.
async fn oracle_run(s: &Scenario, weights: bool) -> Tally {
    let clock = Arc::new(ManualClock::new());
    let start = clock.now();
    let a = app("a", &clock, start, s.a.clone(), 0x9E37_79B9);
    let b = app("b", &clock, start, s.b.clone(), 0x7F4A_7C15);
    let mut t = Tally::default();
    let total = s.minutes * 60 * RATE;
    let step = Duration::from_millis(1000 / RATE);
    let request = || CallRequest::new("send", json!({}));
    let mut weighted = 0u64;
    for i in 0..total {
        let began = clock.now();
        let due = start + step * i as u32;
        if due > began {
            clock.advance(due - began);
        }
        let began = clock.now();
        let now_ms = began.duration_since(start).as_millis() as u64;
        let (ta, tb) = ((s.a)(now_ms), (s.b)(now_ms));
        // Between equals, keep the 70/30 split (as the weights ask).
        let tie = if weights { 0.0201 } else { 0.0051 };
        let a_first = if (ta.ok - tb.ok).abs() <= tie && ta.latency_ms == tb.latency_ms {
            weighted += 1;
            weighted % 10 < 7
        } else if (ta.ok - tb.ok).abs() <= tie {
            ta.latency_ms < tb.latency_ms
        } else {
            ta.ok > tb.ok
        };
        let (first, second) = if a_first { (&a, &b) } else { (&b, &a) };
        let r1 = first.call(request()).await;
        let served = match r1 {
            Ok(_) => true,
            Err(_) => second.call(request()).await.is_ok(),
        };
        let sec = (now_ms / 1000) as usize;
        if t.per_second.len() <= sec {
            t.per_second.resize(sec + 1, (0, 0));
        }
        t.per_second[sec].0 += 1;
        t.per_second[sec].1 += u64::from(a_first);
        t.runs += 1;
        t.first_ok += u64::from(r1.is_ok());
        t.served += u64::from(served);
        t.latencies
            .push(clock.now().duration_since(began).as_millis() as u64);
    }
    t.sick_calls = a.calls_while_sick.load(Ordering::Relaxed);
    t
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let contenders = [
        (
            "success-rate",
            AdaptiveConfig {
                window_ms: 30_000,
                ..AdaptiveConfig::new(Strategy::SuccessRate)
            },
        ),
        (
            "latency",
            AdaptiveConfig {
                window_ms: 30_000,
                ..AdaptiveConfig::new(Strategy::Latency)
            },
        ),
        (
            "elimination",
            AdaptiveConfig {
                window_ms: 30_000,
                ..AdaptiveConfig::new(Strategy::Elimination)
            },
        ),
    ];
    println!("adaptive routing on simulated time: a 70/30 quota, {RATE} runs/s, seeded outcomes");
    for s in scenarios() {
        println!("{} ({} simulated min)", s.name, s.minutes);
        let started = std::time::Instant::now();
        println!(
            "{}",
            engine_run(&s, None).await.line("static weights", s.sick_ms)
        );
        for (name, cfg) in contenders {
            println!("{}", engine_run(&s, Some(cfg)).await.line(name, s.sick_ms));
        }
        // The oracle sends everything to the better provider: no split to
        // return to.
        println!("{}", oracle_run(&s, false).await.line("oracle", None));
        println!(
            "{}",
            oracle_run(&s, true).await.line("oracle, weights", None)
        );
        println!("  ({:.1} s of wall time)", started.elapsed().as_secs_f64());
    }
}
