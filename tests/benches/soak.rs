//! A chaos soak of cluster mode: three `switchyard serve` replicas (this
//! binary re-run as each), a real `redis-server` with an append-only file,
//! two simulated providers on loopback, a steady load of quota and
//! fallback runs, and a schedule of faults repeated every cycle: a
//! provider flapping, a 429 storm, Redis paused (2 s, and 8 s every other
//! cycle), Redis killed and
//! restarted, a replica killed with SIGKILL and restarted.
//!
//! It prints, per minute and per replica, resident memory, CPU, resyncs
//! and events written, and at the end the outcomes by code, and it checks:
//! - no leak: the replicas that live through the whole soak grow by less
//!   than 25 % (and 64 MiB) between the end of the first cycle and the end;
//! - the quota split: 70/30 within 1 % over the calm periods;
//! - no stuck breaker: after the last fault, every replica's breakers of
//!   both providers close again;
//! - no lost force or definition: an operator's force and an API-made
//!   definition are on every replica at the end;
//! - the cluster goes quiet: resyncs stop growing once faults end.
//!
//! Not in the default test run. Run:
//! `cargo bench -p switchyard-tests --bench soak -- --minutes 30`
//! (`--minutes 3` for a short pass; `--rate 150` runs per second).

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchyard::Simulator;

const TOKEN: &str = "soak-token-0123456789";
const REPLICAS: usize = 3;
/// The replica killed and restarted each cycle; the others live through
/// the whole soak (their memory is the leak check).
const VICTIM: usize = 2;

type Http = Client<HttpConnector, Full<Bytes>>;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `redis-server` of the soak's own, persisting to an append-only file.
struct Redis {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl Redis {
    fn start(dir: &Path) -> Self {
        let mut r = Self {
            child: None,
            port: free_port(),
            dir: dir.to_path_buf(),
        };
        r.up();
        r
    }

    fn up(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "yes"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server must be installed");
        self.child = Some(child);
        let started = Instant::now();
        while self.cmd(&["PING"]).as_deref() != Some("PONG") {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([sig, &self.pid().to_string()])
            .status();
    }

    /// One command over RESP; the first line of a simple, integer or bulk
    /// answer as text.
    fn cmd(&self, args: &[&str]) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes()).ok()?;
        let mut buf = vec![0u8; 256 * 1024];
        let n = s.read(&mut buf).ok()?;
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        let mut lines = text.split("\r\n");
        let first = lines.next()?;
        match first.as_bytes().first()? {
            b'+' | b':' => Some(first[1..].to_string()),
            b'$' if first == "$-1" => None,
            b'$' => Some(lines.collect::<Vec<_>>().join("\n")),
            _ => None,
        }
    }

    /// `total_commands_processed` from `INFO stats`.
    fn commands(&self) -> u64 {
        self.cmd(&["INFO", "stats"])
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("total_commands_processed:"))
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or(0)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.signal("-CONT");
        self.kill();
    }
}

fn app(name: &str, url: &str) -> String {
    format!(
        r#"
[products.soak.apps.{name}]
plugin = "bundled:http"
[products.soak.apps.{name}.envs.dev]
allow = ["{url}"]
config = {{ base_url = "{url}", ping_path = "/health", idempotency_header = "Idempotency-Key", actions = '[{{"name": "send", "method": "POST", "path": "/v1/messages", "idempotency": "keyed"}}, {{"name": "fetch", "method": "GET", "path": "/v1/messages/{{id}}"}}]' }}
"#
    )
}

fn replica_config(dir: &Path, i: usize, redis_port: u16, primary: &str, backup: &str) -> PathBuf {
    let text = format!(
        r#"[server]
listen = "127.0.0.1:0"
store = "state.db"
shutdown_grace_ms = 2000

[products.soak]
envs = ["dev"]
{}{}
[products.soak.healthchecks.primary-health]
app = "primary"
action = "ping"
input = {{ dev = {{}} }}
interval_ms = 2000

[products.soak.quotas.split]
input = {{ to = {{ type = "string" }} }}
providers = [
  {{ provider = "primary", app = "primary", action = "send", weight = 70, input = {{ to = "$Input{{to}}" }}, output = {{ id = "$Response{{id}}" }} }},
  {{ provider = "backup", app = "backup", action = "send", weight = 30, input = {{ to = "$Input{{to}}" }}, output = {{ id = "$Response{{id}}" }} }},
]

[products.soak.fallbacks.sms]
input = {{ to = {{ type = "string" }} }}
options = [
  {{ provider = "primary", app = "primary", action = "send", retries = 1, backoff_ms = 5, healthcheck = "primary-health", input = {{ to = "$Input{{to}}" }}, output = {{ id = "$Response{{id}}" }} }},
  {{ provider = "backup", app = "backup", action = "send", input = {{ to = "$Input{{to}}" }}, output = {{ id = "$Response{{id}}" }} }},
]

[products.soak.fallbacks.lookup]
input = {{ id = {{ type = "string" }} }}
options = [
  {{ provider = "backup", app = "backup", action = "fetch", input = {{ id = "$Input{{id}}" }}, output = {{ status = "$Response{{status}}" }} }},
]

[engine.breaker]
minimum_failure_count = 10
failure_timeout = 5000
open_timeout = 3000

[cluster]
redis_url = "redis://127.0.0.1:{redis_port}/0"
replica = "r{i}"
sync_interval_ms = 200
"#,
        app("primary", primary),
        app("backup", backup),
    );
    let d = dir.join(format!("r{i}"));
    std::fs::create_dir_all(&d).unwrap();
    let path = d.join("switchyard.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A replica: this binary run as `switchyard serve`.
struct Replica {
    config: PathBuf,
    child: Option<Child>,
    base: String,
    /// CPU ticks at the last sample, and when.
    last_cpu: Option<(u64, Instant)>,
}

impl Replica {
    fn start(config: &Path) -> Self {
        let mut r = Self {
            config: config.to_path_buf(),
            child: None,
            base: String::new(),
            last_cpu: None,
        };
        r.up();
        r
    }

    fn up(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.config.with_file_name("serve.log"))
            .unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .arg("--serve")
            .arg(&self.config)
            .env("SWITCHYARD_TOKEN", TOKEN)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        self.base = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_string();
        std::thread::spawn(move || for _ in out.lines() {});
        self.child = Some(child);
        self.last_cpu = None;
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Resident memory, MiB.
    fn rss_mb(&self) -> f64 {
        let Some(pid) = self.pid() else { return 0.0 };
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            })
            .map_or(0.0, |kb| kb / 1024.0)
    }

    /// CPU used since the last sample, % of one core.
    fn cpu_percent(&mut self) -> f64 {
        let Some(pid) = self.pid() else { return 0.0 };
        let ticks = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                let after = s.rsplit_once(')')?.1;
                let f: Vec<&str> = after.split_whitespace().collect();
                Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
            })
            .unwrap_or(0);
        let now = Instant::now();
        let pct = match self.last_cpu {
            Some((t0, at)) => {
                // 100 ticks per second (USER_HZ).
                ticks.saturating_sub(t0) as f64 / now.duration_since(at).as_secs_f64()
            }
            None => 0.0,
        };
        self.last_cpu = Some((ticks, now));
        pct
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill9();
    }
}

async fn call(http: &Http, method: &str, url: &str, body: Option<Value>) -> Option<(u16, Value)> {
    let mut req = http::Request::builder()
        .method(method)
        .uri(url)
        .header("authorization", format!("Bearer {TOKEN}"));
    let body = match body {
        Some(b) => {
            req = req.header("content-type", "application/json");
            Bytes::from(b.to_string())
        }
        None => Bytes::new(),
    };
    let resp = tokio::time::timeout(
        Duration::from_secs(10),
        http.request(req.body(Full::new(body)).unwrap()),
    )
    .await
    .ok()?
    .ok()?;
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.ok()?.to_bytes();
    let v = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Some((status, v))
}

async fn metric(http: &Http, base: &str, name: &str) -> u64 {
    let Some((_, text)) = call(http, "GET", &format!("{base}/metrics"), None).await else {
        return 0;
    };
    text.as_str()
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// What the load saw.
#[derive(Default)]
struct Tally {
    /// Outcomes by `ok` or error code.
    outcomes: BTreeMap<String, u64>,
    /// Quota runs served by each provider while no fault was on.
    calm_split: BTreeMap<String, u64>,
}

#[derive(Parser)]
struct Args {
    /// Run as a replica (`switchyard serve <config>`).
    #[arg(long)]
    serve: Option<PathBuf>,
    /// How long to soak, minutes.
    #[arg(long, default_value_t = 30.0)]
    minutes: f64,
    /// Runs per second over the whole cluster.
    #[arg(long, default_value_t = 150)]
    rate: u64,
    /// Cargo passes `--bench`.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    if let Some(config) = args.serve {
        let cli = <switchyard::Cli as Parser>::parse_from([
            "switchyard".into(),
            "serve".into(),
            config.into_os_string(),
        ]);
        std::process::exit(rt.block_on(switchyard::run_cli(cli)));
    }
    std::process::exit(rt.block_on(soak(args.minutes, args.rate)));
}

async fn soak(minutes: f64, rate: u64) -> i32 {
    let total = Duration::from_secs_f64(minutes * 60.0);
    let dir = tempfile::tempdir().unwrap();
    println!(
        "soak: replicas' logs in {}/r*/serve.log",
        dir.path().display()
    );
    let mut redis = Redis::start(dir.path());
    let primary = Simulator::start().await.unwrap();
    let backup = Simulator::start().await.unwrap();
    let mut replicas: Vec<Replica> = (1..=REPLICAS)
        .map(|i| {
            Replica::start(&replica_config(
                dir.path(),
                i,
                redis.port,
                &primary.url(),
                &backup.url(),
            ))
        })
        .collect();
    let http: Http = Client::builder(TokioExecutor::new()).build_http();
    let bases = Arc::new(Mutex::new(
        replicas.iter().map(|r| r.base.clone()).collect::<Vec<_>>(),
    ));

    // What must survive: an operator's force and an API-made definition.
    let forced = "soak/dev/backup/fetch";
    let r0 = bases.lock().unwrap()[0].clone();
    let (st, v) = call(
        &http,
        "POST",
        &format!("{r0}/v1/admin/breakers/force"),
        Some(json!({"breaker": forced, "state": "open"})),
    )
    .await
    .expect("force");
    assert_eq!(st, 200, "{v}");
    let extra = json!({"tag": "extra", "input": {"to": {"type": "string"}}, "options": [
        {"provider": "backup", "app": "backup", "action": "send", "input": {"to": "$Input{to}"}, "output": {"id": "$Response{id}"}}
    ]});
    let (st, v) = call(
        &http,
        "POST",
        &format!("{r0}/v1/soak/definitions/fallbacks"),
        Some(extra),
    )
    .await
    .expect("define");
    assert!(st == 200 || st == 201, "{st} {v}");

    println!(
        "soak: {minutes} min, {rate} runs/s over {REPLICAS} replicas, faults every cycle of {:.0} s",
        (total / 6).as_secs_f64()
    );
    let started = Instant::now();
    let calm = Arc::new(AtomicBool::new(true));
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let sent = Arc::new(AtomicU64::new(0));

    // The load: `rate` runs a second, round robin over the replicas, at
    // most 256 in flight (a run that finds them all busy is skipped and
    // counted).
    let load = {
        let (http, bases, calm, stop, tally, sent) = (
            http.clone(),
            bases.clone(),
            calm.clone(),
            stop.clone(),
            tally.clone(),
            sent.clone(),
        );
        tokio::spawn(async move {
            let slots = Arc::new(tokio::sync::Semaphore::new(256));
            let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate.max(1)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut n: u64 = 0;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                n += 1;
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    *tally
                        .lock()
                        .unwrap()
                        .outcomes
                        .entry("client-busy".into())
                        .or_default() += 1;
                    continue;
                };
                let base = {
                    let b = bases.lock().unwrap();
                    b[(n as usize) % b.len()].clone()
                };
                let (http, calm, tally) = (http.clone(), calm.clone(), tally.clone());
                sent.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    let _permit = permit;
                    let quota = !n.is_multiple_of(5);
                    let was_calm = calm.load(Ordering::Relaxed);
                    let (path, body) = if quota {
                        ("quotas/split", json!({"input": {"to": format!("+{n}")}}))
                    } else {
                        (
                            "fallbacks/sms",
                            json!({"input": {"to": format!("+{n}")}, "idempotency_key": format!("soak-{n}")}),
                        )
                    };
                    let outcome = call(
                        &http,
                        "POST",
                        &format!("{base}/v1/soak/dev/{path}/run"),
                        Some(body),
                    )
                    .await;
                    let mut t = tally.lock().unwrap();
                    let key = match &outcome {
                        None => "no-answer".to_string(),
                        Some((200, _)) => "ok".to_string(),
                        Some((_, v)) => v["code"].as_str().unwrap_or("other").to_string(),
                    };
                    if std::env::var_os("SOAK_VERBOSE").is_some()
                        && let Some((st, v)) = &outcome
                        && *st != 200
                    {
                        eprintln!("{st} {}", v["message"]);
                    }
                    *t.outcomes.entry(key).or_default() += 1;
                    if let Some((200, v)) = &outcome
                        && quota
                        && was_calm
                        && calm.load(Ordering::Relaxed)
                        && v["trace"]["skipped"].as_array().is_none_or(Vec::is_empty)
                        && v["trace"]["attempts"]
                            .as_array()
                            .is_some_and(|a| a.len() == 1)
                    {
                        let p = v["provider"].as_str().unwrap_or("?").to_string();
                        *t.calm_split.entry(p).or_default() += 1;
                    }
                });
            }
        })
    };

    // The faults, each cycle (a sixth of the soak), and a sample a minute.
    let cycle = total / 6;
    let sample_every = Duration::from_secs(60).min(total / 6);
    let mut next_sample = Duration::ZERO;
    let mut samples: Vec<Vec<(f64, f64)>> = vec![Vec::new(); REPLICAS];
    let mut warm_rss = [0.0; REPLICAS];
    let mut last_sent_events = [0u64; REPLICAS];
    let mut last_at = Instant::now();
    let mut last_cmds = redis.commands();
    println!(
        "\n  t(min)  | replica: RSS MiB, CPU %, resyncs, events/s | Redis cmd/s | outcomes so far"
    );
    // Faults at 5, 25, 45, 60 and 75 % of each cycle, until 85 % of the
    // soak; the rest is calm, to see everything settle.
    let fault_end = total.mul_f64(0.85);
    let mut schedule: std::collections::VecDeque<(Duration, usize)> = (0..6)
        .flat_map(|c| {
            [0.05, 0.25, 0.45, 0.60, 0.75]
                .iter()
                .enumerate()
                .map(move |(step, f)| (cycle * c + cycle.mul_f64(*f), step))
        })
        .filter(|(at, _)| *at < fault_end)
        .collect();
    let settle = Duration::from_secs(8).min(cycle.mul_f64(0.1));
    let mut pauses = 0u32;
    loop {
        let t = started.elapsed();
        if t >= total {
            break;
        }
        if t >= next_sample {
            next_sample += sample_every;
            let secs = last_at.elapsed().as_secs_f64().max(0.001);
            last_at = Instant::now();
            let mut line = format!("  {:6.1}  |", t.as_secs_f64() / 60.0);
            let current = bases.lock().unwrap().clone();
            for (i, r) in replicas.iter_mut().enumerate() {
                let rss = r.rss_mb();
                let cpu = r.cpu_percent();
                let resyncs = metric(&http, &current[i], "switchyard_cluster_resyncs_total").await;
                let events =
                    metric(&http, &current[i], "switchyard_cluster_events_sent_total").await;
                let rate = events.saturating_sub(last_sent_events[i]) as f64 / secs;
                last_sent_events[i] = events;
                samples[i].push((rss, cpu));
                line.push_str(&format!(
                    " r{}: {rss:.0}, {cpu:.0}, {resyncs}, {rate:.0} |",
                    i + 1
                ));
            }
            let mut local = 0;
            for b in &current {
                local += metric(&http, b, "switchyard_cluster_local_decisions_total").await;
            }
            line.push_str(&format!(" local decisions {local} |"));
            let cmds = redis.commands();
            line.push_str(&format!(
                " {:.0} | {:?}",
                cmds.saturating_sub(last_cmds) as f64 / secs,
                tally.lock().unwrap().outcomes
            ));
            last_cmds = cmds;
            println!("{line}");
            if warm_rss[0] == 0.0 && t >= cycle {
                for (i, r) in replicas.iter().enumerate() {
                    warm_rss[i] = r.rss_mb();
                }
            }
        }
        if let Some(&(at, step)) = schedule.front()
            && t >= at
        {
            schedule.pop_front();
            calm.store(false, Ordering::Relaxed);
            match step {
                0 => {
                    primary.set_failure_rate(1.0);
                    tokio::time::sleep(cycle.mul_f64(0.05)).await;
                    primary.set_failure_rate(0.0);
                }
                1 => {
                    backup.set_throttle_rate(0.5);
                    primary.set_throttle_rate(0.2);
                    tokio::time::sleep(cycle.mul_f64(0.04)).await;
                    backup.set_throttle_rate(0.0);
                    primary.set_throttle_rate(0.0);
                }
                2 => {
                    // Short stalls keep the replicas' connections; every
                    // other one outlasts the 5 s after which a replica
                    // gives up a silent connection and makes a new one.
                    pauses += 1;
                    let pause = if pauses.is_multiple_of(2) { 8 } else { 2 };
                    redis.signal("-STOP");
                    tokio::time::sleep(Duration::from_secs(pause)).await;
                    redis.signal("-CONT");
                }
                3 => {
                    redis.kill();
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    redis.up();
                    last_cmds = 0;
                }
                _ => {
                    replicas[VICTIM].kill9();
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    replicas[VICTIM].up();
                    bases.lock().unwrap()[VICTIM] = replicas[VICTIM].base.clone();
                }
            }
            // Let breakers close again (open timeout 3 s, probes) before
            // counting the split.
            tokio::time::sleep(settle).await;
            calm.store(true, Ordering::Relaxed);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let _ = load.await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    // The checks.
    let mut failed = Vec::new();
    let current = bases.lock().unwrap().clone();
    for (i, base) in current.iter().enumerate() {
        let (_, f) = call(
            &http,
            "GET",
            &format!("{base}/v1/admin/breakers/forces"),
            None,
        )
        .await
        .unwrap_or((0, Value::Null));
        if !f["forces"].as_array().is_some_and(|a| {
            a.iter()
                .any(|x| x["breaker"] == forced && x["forced"] == "open")
        }) {
            failed.push(format!("r{}: the force is lost: {f}", i + 1));
        }
        let (st, _) = call(
            &http,
            "GET",
            &format!("{base}/v1/soak/definitions/fallbacks/extra"),
            None,
        )
        .await
        .unwrap_or((0, Value::Null));
        if st != 200 {
            failed.push(format!(
                "r{}: the API-made definition is lost ({st})",
                i + 1
            ));
        }
        for kind in ["quotas/split", "fallbacks/sms"] {
            let (_, states) = call(
                &http,
                "GET",
                &format!("{base}/v1/soak/dev/{kind}/providers"),
                None,
            )
            .await
            .unwrap_or((0, Value::Null));
            for p in states["providers"].as_array().into_iter().flatten() {
                let state = p["breaker"]["state"].as_str().unwrap_or("?");
                if state != "closed" {
                    failed.push(format!(
                        "r{}: {kind} {} breaker stuck {state} after the faults ended",
                        i + 1,
                        p["provider"]
                    ));
                }
            }
        }
    }
    let (outcomes, split) = {
        let t = tally.lock().unwrap();
        (t.outcomes.clone(), t.calm_split.clone())
    };
    let (p, b) = (
        *split.get("primary").unwrap_or(&0) as f64,
        *split.get("backup").unwrap_or(&0) as f64,
    );
    let share = if p + b > 0.0 {
        100.0 * p / (p + b)
    } else {
        0.0
    };
    if (share - 70.0).abs() > 1.0 {
        failed.push(format!(
            "quota split {share:.2} % primary over calm periods, want 70 ± 1"
        ));
    }
    for i in 0..REPLICAS {
        if i == VICTIM || warm_rss[i] == 0.0 {
            continue;
        }
        let end = replicas[i].rss_mb();
        let grew = end - warm_rss[i];
        if grew > (warm_rss[i] * 0.25).max(64.0) {
            failed.push(format!(
                "r{}: RSS grew from {:.0} to {end:.0} MiB after warm-up",
                i + 1,
                warm_rss[i]
            ));
        }
    }
    let mut resyncs = Vec::new();
    for base in &current {
        resyncs.push(metric(&http, base, "switchyard_cluster_resyncs_total").await);
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    for (i, base) in current.iter().enumerate() {
        let now = metric(&http, base, "switchyard_cluster_resyncs_total").await;
        if now > resyncs[i] {
            failed.push(format!(
                "r{}: {} resyncs in 10 idle s",
                i + 1,
                now - resyncs[i]
            ));
        }
    }

    println!("\nruns sent: {}", sent.load(Ordering::Relaxed));
    println!("outcomes: {outcomes:?}");
    println!("quota split over calm periods: {split:?} = {share:.2} % primary (want 70)");
    for i in 0..REPLICAS {
        let rss: Vec<f64> = samples[i].iter().map(|s| s.0).collect();
        let cpu: Vec<f64> = samples[i].iter().skip(1).map(|s| s.1).collect();
        let max = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        println!(
            "r{}{}: RSS after warm-up {:.0} MiB, at the end {:.0} MiB, peak {:.0} MiB; CPU mean {:.0} %, peak {:.0} %",
            i + 1,
            if i == VICTIM {
                " (killed each cycle)"
            } else {
                ""
            },
            warm_rss[i],
            rss.last().copied().unwrap_or(0.0),
            max(&rss),
            mean(&cpu),
            max(&cpu)
        );
    }
    if std::env::var_os("SOAK_KEEP").is_some() {
        let kept = dir.keep();
        println!("kept {}", kept.display());
    }
    if failed.is_empty() {
        println!("\nsoak: every check passed");
        0
    } else {
        println!("\nsoak: FAILED");
        for f in &failed {
            println!("  - {f}");
        }
        1
    }
}
