//! Cluster mode end to end: a real `redis-server` (Debian's, started here on
//! a free port) and three real `switchyard serve` processes sharing it,
//! routing to simulated providers on loopback.

mod common;

use common::*;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` of our own, with an append-only file so a restart
/// keeps what was written (as a production Redis for definitions must).
struct Redis {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

/// Taken by the tests that time a replica's recovery and by the one that
/// adds two busy replicas: on two cores they do not overlap, so a
/// recovery is timed against Redis, not against a neighbour's load.
static TIMED: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Redis {
    fn start() -> Self {
        let mut r = Self {
            child: None,
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
        };
        r.up();
        r
    }

    fn up(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect(
                "redis-server must be installed (Debian's `redis-server`; .ci/run installs it)",
            );
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

    /// `kill -9`.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// One command over RESP; a simple or bulk string answer as text.
    fn cmd(&self, args: &[&str]) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes()).ok()?;
        let mut buf = vec![0u8; 64 * 1024];
        let n = s.read(&mut buf).ok()?;
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        let mut lines = text.split("\r\n");
        let first = lines.next()?;
        match first.as_bytes().first()? {
            b'+' | b':' => Some(first[1..].to_string()),
            b'$' if first == "$-1" => None,
            b'$' => Some(
                lines
                    .take_while(|l| !l.is_empty())
                    .collect::<Vec<_>>()
                    .join("\n"),
            ),
            _ => None,
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The config of replica `i`: the shared setup, cluster mode, a breaker
/// that opens after three failures, a fast healthcheck (the lease test)
/// and a result cache. Each replica has its own directory, so its own
/// SQLite store.
fn replica_config(setup: &Setup, redis: &Redis, i: usize) -> PathBuf {
    let extra = format!(
        r#"
[products.notify.healthchecks.backup-health]
app = "backup"
action = "ping"
input = {{ dev = {{}} }}
interval_ms = 300

[products.notify.caches.recent]
ttl_ms = 60000

[cluster]
redis_url = "{}"
sync_interval_ms = 100

[engine.breaker]
minimum_failure_count = 2
failure_timeout = 1000
open_timeout = 60000
"#,
        redis.url()
    );
    let shared = setup.config_with(&extra);
    let dir = setup.dir.path().join(format!("r{i}"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("switchyard.toml");
    std::fs::copy(shared, &path).unwrap();
    path
}

fn start_three(setup: &Setup, redis: &Redis) -> Vec<Server> {
    (1..=3)
        .map(|i| Server::start(&replica_config(setup, redis, i)))
        .collect()
}

async fn send(server: &Server, kinds: &str, tag: &str, body: Value) -> (u16, Value) {
    server
        .post(&format!("/v1/notify/dev/{kinds}/{tag}/run"), body)
        .await
}

fn pings(sim: &switchyard::Simulator) -> usize {
    sim.recorded().iter().filter(|r| r.uri == "/health").count()
}

/// Poll `f` until it holds or `within` passes; how long it took.
async fn within<F, Fut>(within: Duration, what: &str, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if f().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < within, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn sms(to: &str) -> Value {
    json!({"input": {"to": to, "text": "hi"}})
}

/// The state of the primary's breaker as `replica` sees it (live option
/// state of the `sms` fallback): read without sending anything.
async fn primary_breaker(replica: &Server) -> String {
    let (_, d) = replica
        .get("/v1/notify/definitions/fallbacks/sms?env=dev")
        .await;
    d["options"][0]["states"]["dev"]["breaker"]["state"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn skipped_for_breaker(v: &Value, provider: &str) -> bool {
    v["trace"]["skipped"].as_array().is_some_and(|s| {
        s.iter()
            .any(|x| x["provider"] == provider && x["reason"] == "breaker-open")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_share_the_split_health_definitions_caches_idempotency_and_breakers() {
    let redis = Redis::start();
    let setup = Setup::new().await;
    setup.primary.record(true);
    setup.backup.record(true);
    let servers = start_three(&setup, &redis);

    // Quota: 1,000 runs dealt over the three replicas, 30 at a time, keep
    // the 70/30 split within one run.
    let mut n = 0;
    while n < 1_000 {
        let batch: Vec<_> = (n..(n + 30).min(1_000))
            .map(|i| {
                send(
                    &servers[i % 3],
                    "quotas",
                    "split",
                    json!({"input": {"to": "+1"}}),
                )
            })
            .collect();
        n += batch.len();
        for (st, v) in futures_join_all(batch.into_iter()).await {
            assert_eq!(st, 200, "{v}");
        }
    }
    let (p, b) = (posts(&setup.primary), posts(&setup.backup));
    assert_eq!(p + b, 1_000);
    assert!(
        (699..=701).contains(&p),
        "primary served {p} of 1,000 (backup {b})"
    );

    // Health: the 300 ms check runs once per interval in the cluster, not
    // once per replica, and every replica sees its results.
    let before = pings(&setup.backup);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let ran = pings(&setup.backup) - before;
    assert!(
        (6..=13).contains(&ran),
        "{ran} checks in 3 s at a 300 ms interval over three replicas"
    );
    for s in &servers {
        let (_, h) = s.get("/v1/notify/dev/healthchecks/backup-health").await;
        let age = now_ms() - h["last_checked_unix_ms"].as_u64().unwrap_or(0);
        assert!(
            age < 1_500,
            "replica {} last saw a check {age} ms ago: {h}",
            s.base
        );
        assert_eq!(h["status"], "healthy");
    }

    // Definitions: made through one replica, in force on the others
    // within a second; deleted through another, gone everywhere.
    let def = json!({"tag": "backup-only", "name": "Backup only", "input": {"to": {"type": "string"}},
        "options": [{"provider": "backup", "app": "backup", "action": "send-message",
                     "input": {"to": "$Input{to}", "text": "x"}}]});
    let (st, v) = servers[0]
        .post("/v1/notify/definitions/fallbacks", def)
        .await;
    assert_eq!(st, 201, "{v}");
    for s in &servers[1..] {
        let took = within(
            Duration::from_secs(1),
            "created definition reaches the others",
            || async {
                let (st, v) = send(
                    s,
                    "fallbacks",
                    "backup-only",
                    json!({"input": {"to": "+2"}}),
                )
                .await;
                assert!(st == 200 || st == 404, "{st} {v}");
                st == 200
            },
        )
        .await;
        eprintln!("definition reached {} in {took:?}", s.base);
    }
    let (st, _) = servers[1]
        .call(
            "DELETE",
            "/v1/notify/definitions/fallbacks/backup-only",
            Some(TOKEN),
            None,
        )
        .await;
    assert_eq!(st, 200);
    for s in [&servers[0], &servers[2]] {
        within(
            Duration::from_secs(1),
            "deleted definition leaves the others",
            || async {
                s.get("/v1/notify/definitions/fallbacks/backup-only")
                    .await
                    .0
                    == 404
            },
        )
        .await;
    }

    // Drains: made through one replica's operator, in force on all; and
    // the restore too.
    async fn drained(s: &Server) -> bool {
        let (_, d) = s.get("/v1/notify/definitions/fallbacks/sms?env=dev").await;
        d["options"][1]["states"]["dev"]["drained"] == true
    }
    for (action, want) in [("drain", true), ("restore", false)] {
        let (st, v) = servers[0]
            .post(&format!("/v1/notify/providers/backup/{action}"), json!({}))
            .await;
        assert_eq!(st, 200, "{v}");
        for s in &servers[1..] {
            within(
                Duration::from_secs(1),
                "the drain reaches the others",
                || async { drained(s).await == want },
            )
            .await;
        }
    }

    // Result caches: a result one replica cached serves the others.
    let cached = json!({"input": {"to": "+3", "text": "hi"}, "cache": "recent"});
    let (st, first) = send(&servers[0], "fallbacks", "sms", cached.clone()).await;
    assert_eq!(st, 200, "{first}");
    let sent = posts(&setup.primary) + posts(&setup.backup);
    let (st, again) = send(&servers[2], "fallbacks", "sms", cached).await;
    assert_eq!(st, 200, "{again}");
    assert_eq!(again["trace"]["cached"], true, "{again}");
    assert_eq!(again["output"], first["output"]);
    assert_eq!(posts(&setup.primary) + posts(&setup.backup), sent);

    // Idempotency: the same key sent to two replicas at once reaches the
    // provider once; a retry on the third gets the stored outcome.
    setup.primary.set_latency(Duration::from_millis(400));
    let sent = posts(&setup.primary);
    let keyed = json!({"input": {"to": "+4", "text": "pay"}, "idempotency_key": "order-77"});
    let (a, b) = tokio::join!(
        send(&servers[0], "fallbacks", "sms", keyed.clone()),
        send(&servers[1], "fallbacks", "sms", keyed.clone())
    );
    setup.primary.set_latency(Duration::ZERO);
    let statuses = [a.0, b.0];
    assert!(statuses.contains(&200), "{a:?} {b:?}");
    for (st, v) in [&a, &b] {
        assert!(
            *st == 200 || (*st == 409 && v["code"] == "in-progress"),
            "{st} {v}"
        );
    }
    let served = if a.0 == 200 { &a.1 } else { &b.1 };
    let (st, retry) = send(&servers[2], "fallbacks", "sms", keyed).await;
    assert_eq!(st, 200, "{retry}");
    assert_eq!(retry["trace"]["replayed"], true, "{retry}");
    assert_eq!(retry["output"], served["output"]);
    assert_eq!(
        posts(&setup.primary) - sent,
        1,
        "the provider was called once"
    );

    // Breakers: traffic through replica 1 opens the primary's breaker;
    // replicas 2 and 3 skip the primary within a second.
    setup.primary.set_failure_rate(1.0);
    within(
        Duration::from_secs(5),
        "replica 1's breaker opens",
        || async {
            let (st, v) = send(&servers[0], "fallbacks", "sms", sms("+5")).await;
            st == 200 && skipped_for_breaker(&v, "primary")
        },
    )
    .await;
    let tried = setup.primary.recorded().len();
    for s in &servers[1..] {
        let took = within(
            Duration::from_secs(1),
            "the trip reaches the others",
            || async { primary_breaker(s).await == "open" },
        )
        .await;
        eprintln!("breaker reached {} in {took:?}", s.base);
    }
    for s in &servers[1..] {
        for _ in 0..5 {
            let (st, v) = send(s, "fallbacks", "sms", sms("+7")).await;
            assert_eq!(st, 200, "{v}");
            assert!(skipped_for_breaker(&v, "primary"), "{v}");
        }
    }
    assert_eq!(
        setup.primary.recorded().len(),
        tried,
        "replicas 2 and 3 called a provider whose breaker opened on replica 1"
    );

    // The health lease: kill -9 its holder; another replica takes it over
    // and the check goes on.
    let holder = redis
        .cmd(&["GET", "switchyard:lease:notify/dev/backup-health"])
        .expect("a replica holds the lease");
    let pid: u32 = holder.rsplit('-').next().unwrap().parse().unwrap();
    let mut servers = servers;
    let at = servers
        .iter()
        .position(|s| s.child.id() == pid)
        .unwrap_or_else(|| panic!("lease holder {holder} is none of ours"));
    servers.remove(at).kill9();
    let took = within(
        Duration::from_secs(3),
        "another replica takes the lease",
        || async {
            redis
                .cmd(&["GET", "switchyard:lease:notify/dev/backup-health"])
                .is_some_and(|h| h != holder)
        },
    )
    .await;
    eprintln!("lease taken over in {took:?}");
    let before = pings(&setup.backup);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        pings(&setup.backup) > before,
        "the check stopped with its holder"
    );
    for s in &servers {
        let (_, h) = s.get("/v1/notify/dev/healthchecks/backup-health").await;
        let age = now_ms() - h["last_checked_unix_ms"].as_u64().unwrap_or(0);
        assert!(age < 1_500, "{h}");
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

async fn readyz(s: &Server) -> String {
    let (_, v) = s.call("GET", "/readyz", Some(TOKEN), None).await;
    v.as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_redis_runs_go_on_locally_and_the_cluster_converges_when_it_is_back() {
    let mut redis = Redis::start();
    let setup = Setup::new().await;
    let servers = start_three(&setup, &redis);
    for s in &servers {
        assert!(
            readyz(s).await.contains("cluster: connected"),
            "{}",
            readyz(s).await
        );
    }

    // Traffic on every replica while Redis goes away: every run serves,
    // none waits long on the missing store.
    let traffic = |secs: u64| {
        let bases: Vec<&Server> = servers.iter().collect();
        async move {
            let end = Instant::now() + Duration::from_secs(secs);
            let mut slowest = Duration::ZERO;
            let mut runs = 0;
            while Instant::now() < end {
                for s in &bases {
                    let t = Instant::now();
                    let (st, v) = send(s, "quotas", "split", json!({"input": {"to": "+1"}})).await;
                    assert_eq!(st, 200, "{v}");
                    slowest = slowest.max(t.elapsed());
                    runs += 1;
                }
            }
            (runs, slowest)
        }
    };
    let (_, before) = tokio::join!(
        async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            redis.kill();
        },
        traffic(2)
    );
    let (runs, slowest) = traffic(2).await;
    eprintln!("without Redis: {runs} runs, slowest {slowest:?} (with it: {before:?})");
    assert!(
        slowest < Duration::from_millis(500),
        "a run waited {slowest:?} on a dead Redis"
    );
    for s in &servers {
        within(Duration::from_secs(3), "readyz says degraded", || async {
            readyz(s).await.contains("DEGRADED")
        })
        .await;
        let (st, m) = s.call("GET", "/metrics", Some(TOKEN), None).await;
        assert_eq!(st, 200);
        assert!(
            m.as_str().unwrap().contains("switchyard_cluster_up 0"),
            "{m}"
        );
    }

    // While Redis is away: a definition changed through replica 1 is
    // acknowledged, and replica 1's breaker for the primary opens.
    let (st, v) = servers[0]
        .call(
            "PATCH",
            "/v1/notify/definitions/quotas/split",
            Some(TOKEN),
            Some(json!({"name": "Edited while Redis was away"})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    setup.primary.set_failure_rate(1.0);
    within(
        Duration::from_secs(5),
        "replica 1's breaker opens",
        || async {
            let (_, v) = send(&servers[0], "fallbacks", "sms", sms("+5")).await;
            skipped_for_breaker(&v, "primary")
        },
    )
    .await;
    assert_eq!(
        primary_breaker(&servers[1]).await,
        "closed",
        "nothing can reach replica 2 yet"
    );

    // Redis is back: the edit and the trip reach the others, and every
    // replica says it is connected again.
    redis.up();
    for s in &servers {
        within(Duration::from_secs(3), "readyz says connected", || async {
            readyz(s).await.contains("cluster: connected")
        })
        .await;
    }
    for s in &servers[1..] {
        within(
            Duration::from_secs(3),
            "the edit made while away converges",
            || async {
                let (_, d) = s.get("/v1/notify/definitions/quotas/split").await;
                d["name"] == "Edited while Redis was away"
            },
        )
        .await;
        within(
            Duration::from_secs(3),
            "the trip made while away converges",
            || async { primary_breaker(s).await == "open" },
        )
        .await;
    }

    // Definitions live in Redis (append-only) and in each store: after
    // every replica restarts, the edit still serves.
    drop(servers);
    let servers = start_three(&setup, &redis);
    for s in &servers {
        let (_, d) = s.get("/v1/notify/definitions/quotas/split").await;
        assert_eq!(d["name"], "Edited while Redis was away", "{d}");
    }
}

/// `examples/cluster/run.sh --check`, the command docs/cluster.md gives
/// for running three replicas locally, starts them and passes its tour.
#[test]
fn the_three_replica_example_runs_and_passes_its_checks() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/cluster/run.sh");
    // Fourteen ports in a row, all free now (the others' ports come from
    // the kernel's ephemeral range, above 32,768).
    let base = (0..)
        .map(|i: u16| 20_000 + (free_port().wrapping_add(i) % 12_000))
        .find(|&b| (0..14).all(|k| std::net::TcpListener::bind(("127.0.0.1", b + k)).is_ok()))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("bash")
        .arg(script)
        .arg("--check")
        .env("SWITCHYARD", env!("CARGO_BIN_EXE_switchyard"))
        .env("PORT_BASE", base.to_string())
        .env("CLUSTER_DIR", dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("replica 3 sees alpha's breaker: open"),
        "{text}"
    );
}

/// The review's reproduction: with Redis paused (SIGSTOP) the same key
/// sent to r1, r2, r1 once executed three times, left a stale `running`
/// marker from claims Redis applied when it resumed, and ran a fourth time
/// when that lapsed. Now each keyed run is refused while its record cannot
/// be read, nothing is sent, the late claims are released (fenced), and
/// after the stall the key runs exactly once and then replays.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_stall_never_runs_a_key_twice() {
    let _turn = TIMED.lock().await;
    let redis = Redis::start();
    let setup = Setup::new().await;
    setup.primary.record(true);
    setup.backup.record(true);
    let servers = start_three(&setup, &redis);
    let pid = redis.child.as_ref().expect("running").id().to_string();
    let signal = |sig: &str| {
        let ok = Command::new("kill")
            .args([sig, &pid])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill {sig} {pid}");
    };
    let sent = || posts(&setup.primary) + posts(&setup.backup);
    let keyed = json!({"input": {"to": "+9", "text": "pay"}, "idempotency_key": "order-stall"});
    let before = sent();

    signal("-STOP");
    let mut during = Vec::new();
    for i in [0, 1, 0] {
        during.push(send(&servers[i], "fallbacks", "sms", keyed.clone()).await);
    }
    signal("-CONT");
    for (st, v) in &during {
        assert_eq!(*st, 503, "{v}");
        assert_eq!(v["code"], "idempotency-unavailable", "{v}");
        assert!(v["retry_after_ms"].as_u64().is_some(), "{v}");
    }
    assert_eq!(
        sent(),
        before,
        "nothing was sent while the record could not be read"
    );

    // Once Redis answers, the key runs once (no stale marker holds it for
    // a run's deadline), and every retry on any replica replays.
    within(
        Duration::from_secs(10),
        "the key runs after the stall",
        || async { send(&servers[1], "fallbacks", "sms", keyed.clone()).await.0 == 200 },
    )
    .await;
    for s in &servers {
        let (st, v) = send(s, "fallbacks", "sms", keyed.clone()).await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["trace"]["replayed"], true, "{v}");
    }
    assert_eq!(sent() - before, 1, "executed exactly once");
}

/// A counter or gauge of `replica`'s `/metrics`.
async fn metric(replica: &Server, name: &str) -> u64 {
    let (_, text) = replica.get("/metrics").await;
    text.as_str()
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// Announce `n` breaker openings as a replica `ghost` would, straight into
/// Redis (the shared hash and the event log, `n` events: more than a
/// replica reads in one batch and more than the log keeps), and `stale`
/// entries that ended long ago.
fn seed_openings(redis: &Redis, n: usize, stale: usize) {
    const SEED: &str = r#"
local now = tonumber(ARGV[3])
for i = 1, tonumber(ARGV[1]) do
  local key = 'notify/dev/storm/' .. i
  local change = '{"open":true,"episode":' .. now .. ',"open_timeout_ms":60000,"requests":10,"last_error":null}'
  redis.call('HSET', KEYS[1], key, change)
  local seq = redis.call('INCR', KEYS[2])
  redis.call('LPUSH', KEYS[3], seq .. ' {"r":"ghost","t":"breaker","key":"' .. key .. '","change":' .. change .. '}')
  redis.call('LTRIM', KEYS[3], 0, 1023)
end
for i = 1, tonumber(ARGV[2]) do
  redis.call('HSET', KEYS[1], 'notify/dev/old/' .. i, '{"open":false,"episode":' .. (now - 3600000) .. ',"open_timeout_ms":0,"requests":0,"last_error":null}')
end
return 1"#;
    let now = now_ms().to_string();
    let (n, stale) = (n.to_string(), stale.to_string());
    redis.cmd(&[
        "EVAL",
        SEED,
        "3",
        "switchyard:breakers",
        "switchyard:seq",
        "switchyard:events",
        &n,
        &stale,
        &now,
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thousands_of_open_breakers_do_not_start_a_resync_storm() {
    let redis = Redis::start();
    let setup = Setup::new().await;
    let servers = start_three(&setup, &redis);
    // 2,000 openings arrive at once (beyond the log's 1,024 and a read's
    // 256): every replica falls behind and resynchronises, taking in all
    // of them. Before, each resync re-announced every open breaker it held,
    // which made the others fall behind again, for ever.
    seed_openings(&redis, 2_000, 300);
    const OPEN: &str = "switchyard_breakers{state=\"open\"}";
    for s in &servers {
        within(
            Duration::from_secs(20),
            "each replica holds every opening",
            || async { metric(s, OPEN).await >= 2_000 },
        )
        .await;
    }
    // Settled: nothing feeds back. Over five seconds the idle cluster
    // resynchronises no more, and the log grows only by the healthcheck's
    // results (one every 300 ms), not by thousands of re-announcements.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let seq = |r: &Redis| {
        r.cmd(&["GET", "switchyard:seq"])
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let mut resyncs = Vec::new();
    for s in &servers {
        resyncs.push(metric(s, "switchyard_cluster_resyncs_total").await);
    }
    let commands = |r: &Redis| {
        r.cmd(&["INFO", "stats"])
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("total_commands_processed:"))
                    .and_then(|v| v.trim().parse::<u64>().ok())
            })
            .unwrap_or(0)
    };
    let seq_before = seq(&redis);
    let commands_before = commands(&redis);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let grew = seq(&redis) - seq_before;
    assert!(grew < 60, "the idle log grew by {grew} events in 5 s");
    // Redis is as quiet as an idle cluster's reads and heartbeats (each
    // replica's pull every 100 ms, the healthcheck's lease), not a storm's
    // tens of thousands of commands a second.
    let per_sec = (commands(&redis) - commands_before) / 5;
    assert!(per_sec < 500, "{per_sec} Redis commands/s while idle");
    eprintln!("idle after 2,000 openings: {grew} events and {per_sec} Redis commands/s over 5 s");
    for (s, before) in servers.iter().zip(resyncs) {
        let after = metric(s, "switchyard_cluster_resyncs_total").await;
        assert!(after - before <= 1, "{} resyncs in 5 s", after - before);
    }
    // The entries that ended an hour ago were swept; the live ones stay.
    let held = redis
        .cmd(&["HLEN", "switchyard:breakers"])
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    assert_eq!(
        held, 2_000,
        "the 300 stale entries are swept, the 2,000 live ones kept"
    );
    let swept: u64 = {
        let mut n = 0;
        for s in &servers {
            n += metric(s, "switchyard_cluster_breaker_entries_swept_total").await;
        }
        n
    };
    assert_eq!(swept, 300);
}

async fn forced(replica: &Server) -> Vec<(String, String)> {
    let (st, v) = replica.get("/v1/admin/breakers/forces").await;
    assert_eq!(st, 200, "{v}");
    v["forces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["breaker"].as_str().unwrap().to_string(),
                f["forced"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forces_survive_replica_and_redis_restarts_and_only_real_breakers_are_forced() {
    let _turn = TIMED.lock().await;
    let mut redis = Redis::start();
    let setup = Setup::new().await;
    setup.primary.record(true);
    setup.backup.record(true);
    let mut servers = start_three(&setup, &redis);
    let key = "notify/dev/primary/send-message";
    let force = |state: &str| json!({"breaker": key, "state": state});

    // Only breakers that exist: a made-up key is refused, naming the fix.
    let (st, v) = servers[0]
        .post(
            "/v1/admin/breakers/force",
            json!({"breaker": format!("notify/dev/{}", "x".repeat(400)), "state": "open"}),
        )
        .await;
    assert_eq!(st, 404, "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("no such breaker"),
        "{v}"
    );

    let (st, v) = servers[0]
        .post("/v1/admin/breakers/force", force("open"))
        .await;
    assert_eq!(st, 200, "{v}");
    let want = vec![(key.to_string(), "open".to_string())];
    for s in &servers {
        within(
            Duration::from_secs(5),
            "every replica applies the force",
            || async { forced(s).await == want },
        )
        .await;
    }

    // A replica restarts: it comes back forced (from the cluster and its
    // own store), and its runs skip the provider an operator forced open.
    servers.remove(1).kill9();
    servers.insert(
        1,
        Server::start(&setup.dir.path().join("r2/switchyard.toml")),
    );
    assert_eq!(forced(&servers[1]).await, want);
    let (st, v) = send(&servers[1], "fallbacks", "sms", sms("+1")).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["provider"], "backup", "{v}");
    assert!(skipped_for_breaker(&v, "primary"), "{v}");

    // Redis restarts (append-only file) and a replica with an empty store
    // joins: the force is the cluster's durable state.
    redis.kill();
    redis.up();
    servers.remove(2).kill9();
    for f in ["state.db", "state.db-wal", "state.db-shm"] {
        std::fs::remove_file(setup.dir.path().join("r3").join(f)).ok();
    }
    servers.insert(
        2,
        Server::start(&setup.dir.path().join("r3/switchyard.toml")),
    );
    assert_eq!(forced(&servers[2]).await, want);

    // A release made while a replica is away reaches it when it is back.
    servers.remove(2).kill9();
    let (st, v) = servers[0]
        .post("/v1/admin/breakers/force", force("release"))
        .await;
    assert_eq!(st, 200, "{v}");
    servers.insert(
        2,
        Server::start(&setup.dir.path().join("r3/switchyard.toml")),
    );
    for s in &servers {
        within(
            Duration::from_secs(5),
            "the release reaches every replica",
            || async { forced(s).await.is_empty() },
        )
        .await;
    }
    let (st, v) = send(&servers[2], "fallbacks", "sms", sms("+2")).await;
    assert_eq!((st, &v["provider"]), (200, &json!("primary")), "{v}");
}

/// An operator's release and restore made through a replica while Redis is
/// away hold on that replica when Redis is back with the older force and
/// drain (they wait in its outbox, newer than the shared hashes), and reach
/// the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_release_made_while_redis_is_away_holds_where_it_was_made() {
    let _turn = TIMED.lock().await;
    let mut redis = Redis::start();
    let setup = Setup::new().await;
    let servers: Vec<Server> = (1..=2)
        .map(|i| Server::start(&replica_config(&setup, &redis, i)))
        .collect();
    let key = "notify/dev/primary/send-message";
    async fn drained(s: &Server) -> bool {
        let (_, d) = s.get("/v1/notify/definitions/fallbacks/sms?env=dev").await;
        d["options"][1]["states"]["dev"]["drained"] == true
    }
    // An operator forces (or releases) the primary's breaker and drains
    // (or restores) the backup through `s`.
    async fn operate(s: &Server, key: &str, force: &str, drain: &str) {
        let (st, v) = s
            .post(
                "/v1/admin/breakers/force",
                json!({"breaker": key, "state": force}),
            )
            .await;
        assert_eq!(st, 200, "{v}");
        let (st, v) = s
            .post(&format!("/v1/notify/providers/backup/{drain}"), json!({}))
            .await;
        assert_eq!(st, 200, "{v}");
    }

    operate(&servers[0], key, "open", "drain").await;
    let want = vec![(key.to_string(), "open".to_string())];
    for s in &servers {
        within(
            Duration::from_secs(5),
            "the force and the drain reach every replica",
            || async { forced(s).await == want && drained(s).await },
        )
        .await;
    }

    // Redis goes away (its append-only file keeps the force and the
    // drain); the operator releases and restores through replica 1.
    redis.kill();
    operate(&servers[0], key, "release", "restore").await;
    // A few sync rounds try to write them and fail.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(forced(&servers[0]).await.is_empty());
    assert!(!drained(&servers[0]).await);

    redis.up();
    within(
        Duration::from_secs(10),
        "the release and the restore reach replica 2",
        || async { forced(&servers[1]).await.is_empty() && !drained(&servers[1]).await },
    )
    .await;
    // Replica 1 converged before it wrote them: it still holds its own.
    assert!(
        forced(&servers[0]).await.is_empty(),
        "replica 1 is forced again"
    );
    assert!(!drained(&servers[0]).await, "replica 1 is drained again");
}

/// A TCP relay to Redis that can go silent: after [`Relay::silence`],
/// every connection it carries so far stops passing bytes either way but
/// stays open (a Redis that moved in a failover, or a middlebox that
/// dropped the connection without a reset); connections made afterwards
/// pass as before (the address now leads to a Redis that answers).
struct Relay {
    port: u16,
    accepted: std::sync::Arc<std::sync::atomic::AtomicU64>,
    silent_below: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Relay {
    fn start(redis_port: u16) -> Self {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU64, Ordering};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicU64::new(0));
        let silent_below = Arc::new(AtomicU64::new(0));
        let (count, silent) = (accepted.clone(), silent_below.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let id = count.fetch_add(1, Ordering::SeqCst);
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", redis_port)) else {
                    continue;
                };
                let pairs = [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ];
                for (mut from, mut to) in pairs {
                    let silent = silent.clone();
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16 * 1024];
                        while let Ok(n @ 1..) = from.read(&mut buf) {
                            // A silenced connection swallows what it is sent.
                            if id >= silent.load(Ordering::SeqCst)
                                && to.write_all(&buf[..n]).is_err()
                            {
                                break;
                            }
                        }
                    });
                }
            }
        });
        Self {
            port,
            accepted,
            silent_below,
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Every connection made so far goes silent.
    fn silence(&self) {
        use std::sync::atomic::Ordering;
        self.silent_below
            .store(self.accepted.load(Ordering::SeqCst), Ordering::SeqCst);
    }
}

/// A replica whose connection Redis stopped answering on (no error, no
/// reset: every call only times out) gives it up after a few seconds of
/// silence and makes a new one, and catches up with what the cluster did
/// meanwhile. Until then it serves on local state.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_connection_redis_stopped_answering_on_is_made_again() {
    let _turn = TIMED.lock().await;
    let redis = Redis::start();
    let relay = Relay::start(redis.port);
    let setup = Setup::new().await;
    let r1 = Server::start(&variant(&setup, &redis, 1, |t| {
        t.replace(&redis.url(), &relay.url())
    }));
    let r2 = Server::start(&replica_config(&setup, &redis, 2));
    for s in [&r1, &r2] {
        within(Duration::from_secs(10), "the replica joins", || async {
            readyz(s).await.contains("cluster: connected")
        })
        .await;
    }
    relay.silence();
    let key = "notify/dev/primary/send-message";
    let (st, v) = r2
        .post(
            "/v1/admin/breakers/force",
            json!({"breaker": key, "state": "open"}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let want = vec![(key.to_string(), "open".to_string())];
    within(
        Duration::from_secs(20),
        "the force reaches replica 1 over a new connection",
        || async { forced(&r1).await == want },
    )
    .await;
    // Runs on replica 1 still work, and it says it is connected.
    let (st, v) = send(&r1, "fallbacks", "sms", sms("+3")).await;
    assert_eq!(st, 200, "{v}");
    assert!(readyz(&r1).await.contains("cluster: connected"));
}

/// Replica `i`'s config with `edit` applied to its text.
fn variant(setup: &Setup, redis: &Redis, i: usize, edit: impl Fn(String) -> String) -> PathBuf {
    let path = replica_config(setup, redis, i);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, edit(text)).unwrap();
    path
}

/// Start `serve` expecting it to stop at once; its exit code and stderr.
fn refused_start(config: &std::path::Path) -> (i32, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("serve")
        .arg(config)
        .env("SWITCHYARD_TOKEN", TOKEN)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return (status.code().unwrap_or(-1), err);
        }
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("serve kept running: it should have refused to join");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn sms_name(s: &Server) -> String {
    let (_, d) = s.get("/v1/notify/definitions/fallbacks/sms").await;
    d["name"].as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_with_another_config_or_cluster_is_told_apart_loudly() {
    let redis = Redis::start();
    let setup = Setup::new().await;
    let r1 = Server::start(&replica_config(&setup, &redis, 1));
    let r2 = Server::start(&replica_config(&setup, &redis, 2));
    assert_eq!(metric(&r2, "switchyard_cluster_config_mismatch").await, 0);
    let staging = |t: String| t.replace("name = \"SMS\"", "name = \"SMS staging\"");

    // Same Redis and prefix, another config: read-only by default. It
    // serves the cluster's definitions, writes none of its own, and says
    // so in its log, /readyz and a metric.
    let r3 = Server::start(&variant(&setup, &redis, 3, staging));
    assert_eq!(sms_name(&r3).await, "SMS");
    assert_eq!(metric(&r3, "switchyard_cluster_config_mismatch").await, 1);
    let (st, ready) = r3.call("GET", "/readyz", Some(TOKEN), None).await;
    assert_eq!(st, 200);
    assert!(
        ready.as_str().unwrap().contains("CONFIG DIFFERS"),
        "{ready}"
    );
    // Without a token: ready, and nothing about the cluster.
    let (st, bare) = r3.call("GET", "/readyz", None, None).await;
    assert_eq!((st, bare.as_str()), (200, Some("ready\n")));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sms_name(&r1).await, "SMS");
    assert_eq!(sms_name(&r2).await, "SMS");

    // Another cluster's name under the same prefix: refused, naming both.
    let other = variant(&setup, &redis, 4, |t| {
        t.replace("[cluster]\n", "[cluster]\nname = \"staging\"\n")
    });
    let (code, err) = refused_start(&other);
    assert_ne!(code, 0);
    assert!(
        err.contains("belongs to cluster `switchyard`") && err.contains("`staging`"),
        "{err}"
    );
    // A differing config under `on_mismatch = "refuse"`: refused too.
    let strict = variant(&setup, &redis, 5, |t| {
        staging(t).replace("[cluster]\n", "[cluster]\non_mismatch = \"refuse\"\n")
    });
    let (code, err) = refused_start(&strict);
    assert_ne!(code, 0);
    assert!(err.contains("fingerprint"), "{err}");

    // `server.seed = "overwrite"`: this replica's config becomes the
    // cluster's, and every write publishes its event, so the replicas
    // already running take it in (no two replicas serve two versions).
    let rollout = variant(&setup, &redis, 6, |t| {
        staging(t).replace("[server]\n", "[server]\nseed = \"overwrite\"\n")
    });
    let r6 = Server::start(&rollout);
    assert_eq!(sms_name(&r6).await, "SMS staging");
    for s in [&r1, &r2, &r3] {
        within(
            Duration::from_secs(5),
            "every replica serves the rollout",
            || async { sms_name(s).await == "SMS staging" },
        )
        .await;
    }
    // The read-only replica's config now agrees with the cluster's: at its
    // next join it is no longer read-only.
    drop(r3);
    let r3 = Server::start(&setup.dir.path().join("r3/switchyard.toml"));
    assert_eq!(metric(&r3, "switchyard_cluster_config_mismatch").await, 0);
}

/// Tokens made through one replica are honoured by all within the sync
/// interval, and a revoke or rotation takes effect everywhere as fast;
/// while Redis is away tokens cannot change (nothing half-applied), and
/// a restarted replica takes the cluster's set, not a stale store's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tokens_made_on_one_replica_are_honoured_and_revoked_on_all() {
    let mut redis = Redis::start();
    let setup = Setup::new().await;
    // Two replicas are enough to show it (and keep this binary's load
    // down: its tests run side by side).
    let r: Vec<Server> = (1..=2)
        .map(|i| Server::start(&replica_config(&setup, &redis, i)))
        .collect();
    let (st, v) = r[0]
        .post(
            "/v1/admin/tokens",
            json!({"name": "checkout", "role": "run", "products": ["notify"]}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let token = v["token"].as_str().unwrap().to_string();
    async fn whoami(s: &Server, t: String) -> u16 {
        s.call("GET", "/v1/whoami", Some(&t), None).await.0
    }
    for replica in &r {
        within(
            Duration::from_secs(2),
            "every replica honours the new token",
            || {
                let f = whoami(replica, token.clone());
                async move { f.await == 200 }
            },
        )
        .await;
    }
    let (st, v) = r[1]
        .post("/v1/admin/tokens/checkout/rotate", json!(null))
        .await;
    assert_eq!(st, 200, "{v}");
    let rotated = v["token"].as_str().unwrap().to_string();
    for replica in &r {
        within(
            Duration::from_secs(2),
            "the old secret stops everywhere",
            || {
                let f = whoami(replica, token.clone());
                async move { f.await == 401 }
            },
        )
        .await;
        assert_eq!(whoami(replica, rotated.clone()).await, 200);
    }

    // Redis away: no token changes (503), and the replicas keep
    // authenticating with what they hold.
    redis.kill();
    let (st, v) = r[1]
        .call("DELETE", "/v1/admin/tokens/checkout", Some(TOKEN), None)
        .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (503, Some("cluster-unavailable")),
        "{v}"
    );
    assert_eq!(whoami(&r[1], rotated.clone()).await, 200);
    redis.up();

    // Revoked through r2: every replica refuses it within the interval.
    within(
        Duration::from_secs(5),
        "the revoke goes through once Redis is back",
        || {
            let s = &r[1];
            async move {
                s.call("DELETE", "/v1/admin/tokens/checkout", Some(TOKEN), None)
                    .await
                    .0
                    == 200
            }
        },
    )
    .await;
    let revoked_at = Instant::now();
    for replica in &r {
        within(
            Duration::from_secs(2),
            "every replica refuses the revoked token",
            || {
                let f = whoami(replica, rotated.clone());
                async move { f.await == 401 }
            },
        )
        .await;
    }
    eprintln!("revoked everywhere in {:?}", revoked_at.elapsed());
}

/// Two replicas agree on a provider's scorecard within the sync interval
/// (each counts the other's outcomes with its own), and one that served
/// nothing routes away from a provider the other saw degrade.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_combine_their_scorecards_and_route_on_what_the_others_saw() {
    let _turn = TIMED.lock().await;
    let redis = Redis::start();
    let setup = Setup::new().await;
    let quota = |text: String| {
        text + r#"
[products.notify.quotas.smart]
input = { to = { type = "string" }, text = { type = "string" } }
breaker = { failure_threshold = 95.0, minimum_failure_count = 1000 }
adaptive = { strategy = "success-rate", explore_percent = 0, min_samples = 20 }
providers = [
  { provider = "primary", app = "primary", action = "send-message", weight = 70 },
  { provider = "backup", app = "backup", action = "send-message", weight = 30 },
]
"#
    };
    let r: Vec<Server> = (1..=2)
        .map(|i| Server::start(&variant(&setup, &redis, i, quota)))
        .collect();
    setup.primary.set_failure_rate(0.5);
    // The first replica alone sends traffic until the primary is judged.
    for i in 0..80 {
        let (st, v) = send(&r[0], "quotas", "smart", sms(&format!("+{i}"))).await;
        assert_eq!(st, 200, "{v}");
    }
    let card = |v: &Value| v["providers"][0]["scorecard"].clone();
    let (_, v) = r[0].get("/v1/notify/dev/quotas/smart/providers").await;
    let here = card(&v);
    let samples = here["samples"].as_u64().unwrap();
    assert!(samples >= 20, "{here}");
    let took = within(
        Duration::from_secs(5),
        "the other replica counts them",
        || async {
            let (_, v) = r[1].get("/v1/notify/dev/quotas/smart/providers").await;
            card(&v)["samples"].as_u64() == Some(samples)
        },
    )
    .await;
    let (_, v) = r[1].get("/v1/notify/dev/quotas/smart/providers").await;
    let there = card(&v);
    assert_eq!(there["replicas"], 2, "{there}");
    assert_eq!(there["ok"], here["ok"], "{there} vs {here}");
    eprintln!("the second replica had the first one's outcomes after {took:?}");
    // The second replica, which sent nothing, already routes off the
    // degraded primary, and its trace says what it read.
    let (st, v) = send(&r[1], "quotas", "smart", sms("+1")).await;
    assert_eq!(st, 200, "{v}");
    let scores = &v["trace"]["adaptive"]["scores"];
    assert!(scores[0]["success_rate"].as_f64().unwrap() < 0.7, "{v}");
    let mut primary = 0;
    for i in 0..40 {
        let (_, v) = send(&r[1], "quotas", "smart", sms(&format!("+9{i}"))).await;
        primary += usize::from(v["trace"]["attempts"][0]["provider"] == "primary");
    }
    assert!(
        primary < 10,
        "the second replica still sent {primary} of 40 to the primary first"
    );
}
