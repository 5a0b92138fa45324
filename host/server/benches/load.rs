//! Slow-provider load: `switchyard serve` against a provider that answers
//! every request after 300 ms, at 1,000 and 5,000 concurrent clients, next
//! to the peer a team would write instead (`tests/benches/peers/cockatiel`:
//! Node.js + cockatiel, retry + breaker + fallback, pooled keep-alive
//! client), measured interleaved in the same run.
//!
//! ```sh
//! cargo bench -p switchyard --bench load
//! # knobs: LOAD_SECONDS (10), LOAD_WARMUP_SECONDS (2), LOAD_ROUNDS (2),
//! #        LOAD_CONCURRENCY (1000,5000), LOAD_LATENCY_MS (300),
//! #        LOAD_CONTENDERS (switchyard,switchyard-defaults,node; also
//! #        switchyard-per-step, switchyard-wasi, node2, haproxy, rust,
//! #        switchyard-cluster, switchyard-cluster3, switchyard-python
//! #        (the Python adapter), and switchyard-alt,
//! #        switchyard-alt2, …: `switchyard` served by the binary at
//! #        LOAD_ALT_BIN, LOAD_ALT2_BIN, …, to compare builds in one run;
//! #        `-t<N>` after a switchyard contender's name, e.g.
//! #        switchyard-python-t0: with `runtime.sandbox_threads = N`),
//! #        LOAD_ROUTE (fallback | quota), LOAD_KEYED (1: an idempotency
//! #        key per run)
//! # CPU per run against a quick provider (docs/performance.md): the server's
//! # user + system time per run served, next to Node in one and two
//! # processes and HAProxy (Debian's `haproxy`) as the floor:
//! LOAD_LATENCY_MS=0 LOAD_CONCURRENCY=64 LOAD_SECONDS=5 \
//!   LOAD_CONTENDERS=switchyard,switchyard-per-step,node,node2,haproxy cargo bench -p switchyard --bench load
//! # cluster mode (docs/cluster.md): the added latency at one caller and
//! # the throughput of three replicas against one:
//! LOAD_LATENCY_MS=0 LOAD_CONCURRENCY=1 LOAD_ROUTE=quota LOAD_KEYED=1 \
//!   LOAD_CONTENDERS=switchyard,switchyard-cluster cargo bench -p switchyard --bench load
//! LOAD_LATENCY_MS=20 LOAD_CONCURRENCY=300 LOAD_ROUTE=quota LOAD_KEYED=1 \
//!   LOAD_CONTENDERS=switchyard,switchyard-cluster,switchyard-cluster3 cargo bench -p switchyard --bench load
//! ```
//!
//! Each contender serves a fallback over two providers (primary with 2
//! retries, then backup) on loopback. The client (closed loop, one
//! keep-alive connection per simulated caller) and the providers run in
//! this process; the server under test is its own process, so its peak RSS
//! (`VmHWM`) is its own. Every figure is printed; nothing is asserted.
//!
//! Contenders: `switchyard` sized for the load (`runtime.max_instances` and
//! the apps' `max_in_flight` above the concurrency), `switchyard-defaults`
//! (the shipped limits: 1,024 instances, 256 per app, queue 4,096) and
//! `node` (needs `node` and `npm`; the peer's dependencies are installed
//! on first use). `switchyard-wasi` (not run by default) is `switchyard`
//! with the same http plugin logic built for the `adapter` world, which
//! holds its instance while the provider thinks; the other two Switchyard
//! contenders use the shipped plugin, in the exchange world. For
//! Switchyard the most plugin instances alive at once while measuring is
//! sampled from `/metrics`. `switchyard-cluster` is `switchyard` in cluster
//! mode against a Redis the bench starts (Debian's `redis-server`), and
//! `switchyard-cluster3` three such replicas with the callers dealt over
//! them; for both, the Redis commands per run are counted (`INFO stats`).
//! `rust` is the same job as the Node peer, written by hand on the HTTP
//! stack Switchyard uses, with no sandbox and no engine (`load/peer.rs`):
//! what a Switchyard run costs beyond it is the sandbox, the engine, the
//! trace and the API.

#[path = "load/peer.rs"]
mod peer;

// The `rust` peer runs in a child process of this binary; it allocates as
// the `switchyard` binary does.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Serve every connection `listener` accepts over HTTP/1.1 with `handle`
/// (the bench's providers, the `rust` peer). Never returns.
async fn serve_http1<F, Fut>(listener: TcpListener, handle: F)
where
    F: Fn(http::Request<hyper::body::Incoming>) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = http::Response<Full<Bytes>>> + Send + 'static,
{
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let handle = handle.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let answer = handle(req);
                async move { Ok::<_, hyper::Error>(answer.await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// A provider that answers every request after `latency`.
async fn provider(latency: Duration) -> (SocketAddr, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = Arc::new(AtomicU64::new(0));
    let count = served.clone();
    tokio::spawn(serve_http1(
        listener,
        move |req: http::Request<hyper::body::Incoming>| {
            let count = count.clone();
            async move {
                let _ = req.into_body().collect().await;
                tokio::time::sleep(latency).await;
                let n = count.fetch_add(1, Ordering::Relaxed);
                // `message_uuid` too: the Python (Vonage) contenders read it.
                let body =
                    format!(r#"{{"id":"msg_{n}","status":"queued","message_uuid":"msg_{n}"}}"#);
                http::Response::builder()
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(body)))
                    .unwrap()
            }
        },
    ));
    (addr, served)
}

struct Contender {
    child: Child,
    url: String,
    path: String,
    /// Whether it serves Switchyard's `/metrics`.
    metrics: bool,
    /// More replicas of it (cluster contenders): callers are dealt over
    /// `url` and theirs, round-robin.
    more: Vec<(Child, String)>,
}

impl Drop for Contender {
    fn drop(&mut self) {
        for (c, _) in &mut self.more {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `http://…` from the first line a server prints that has one.
fn read_url(child: &mut Child) -> String {
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "server exited");
        if let Some(u) = line.split_whitespace().find(|w| w.starts_with("http://")) {
            let url = u.trim_end_matches('/').to_string();
            std::thread::spawn(move || for _ in out.lines() {});
            return url;
        }
    }
}

const ACTIONS: &str =
    r#"[{"name": "send", "method": "POST", "path": "/v1/messages", "idempotent": true}]"#;

/// A Redis of the bench's own (cluster contenders), on a free port, with
/// nothing kept on disk.
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed (Debian's `redis-server`)");
        let r = Self { child, port };
        let started = Instant::now();
        while r.cmd("PING").is_none() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        r
    }

    /// An inline command's reply, as text.
    fn cmd(&self, line: &str) -> Option<String> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.write_all(format!("{line}\r\n").as_bytes()).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut buf = vec![0u8; 1 << 16];
        let n = s.read(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    /// Commands Redis has processed (`INFO stats`).
    fn commands(&self) -> u64 {
        self.cmd("INFO stats")
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
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the clients ask for: `LOAD_ROUTE` (`fallback`, the default, or
/// `quota`: a 70/30 split, which draws a shared ticket in cluster mode),
/// and with `LOAD_KEYED=1` a fresh idempotency key per run (a claim and a
/// settle in cluster mode).
fn route() -> String {
    std::env::var("LOAD_ROUTE").unwrap_or_else(|_| "fallback".into())
}

/// How one Switchyard contender is set up.
struct Serve<'a> {
    /// `runtime.max_instances` and the apps' `max_in_flight` above this
    /// (None: the shipped limits).
    sized: Option<u32>,
    plugin: &'a str,
    /// The Python adapter (`plugins/vonage-py`) instead of `plugin`.
    python: bool,
    /// `runtime.sandbox_threads` (None: the default).
    sandbox_threads: Option<usize>,
    /// Cluster mode over this Redis, with this many replicas.
    cluster: Option<(&'a Redis, usize)>,
    exchange_hold_ms: Option<u64>,
    /// The binary: this build's, or `LOAD_ALT_BIN` for `switchyard-alt`.
    bin: PathBuf,
}

impl Serve<'_> {
    fn sized(conc: usize) -> Self {
        Self {
            sized: Some(conc as u32 + 1_000),
            plugin: "bundled:http",
            python: false,
            sandbox_threads: None,
            cluster: None,
            exchange_hold_ms: None,
            bin: PathBuf::from(env!("CARGO_BIN_EXE_switchyard")),
        }
    }
}

fn switchyard(dir: &Path, primary: SocketAddr, backup: SocketAddr, serve: Serve<'_>) -> Contender {
    let Serve {
        sized,
        plugin,
        python,
        sandbox_threads,
        cluster,
        exchange_hold_ms,
        bin,
    } = serve;
    let app = |name: &str, addr: SocketAddr| {
        let (plugin, config) = if python {
            (
                python_adapter().display().to_string(),
                format!(
                    "messages_base = \"http://{addr}\", rest_base = \"http://{addr}\", default_from = \"Bench\""
                ),
            )
        } else {
            (
                plugin.to_string(),
                format!(
                    "base_url = \"http://{addr}\", ping_path = \"/health\", idempotency_header = \"Idempotency-Key\", actions = '{ACTIONS}'"
                ),
            )
        };
        format!(
            "[products.bench.apps.{name}]\nplugin = \"{plugin}\"\n[products.bench.apps.{name}.envs.dev]\nallow = [\"http://{addr}\"]\nconfig = {{ {config} }}\n"
        )
    };
    // Vonage needs the text; the http plugin's quota sends only `to`.
    let (action, out, quota_text) = if python {
        ("send-sms", "message_uuid", ", text = \"$Input{text}\"")
    } else {
        ("send", "id", "")
    };
    // `[runtime]` fields beside the pool's size. Python's memory is ~14
    // MiB: kept resident, its calls fault no pages in.
    let mut runtime =
        exchange_hold_ms.map_or(String::new(), |ms| format!("exchange_hold_ms = {ms}\n"));
    if python {
        runtime.push_str("keep_resident_mb = 16\n");
    }
    if let Some(n) = sandbox_threads {
        runtime.push_str(&format!("sandbox_threads = {n}\n"));
    }
    let limits = match sized {
        Some(n) => format!(
            "[runtime]\nmax_instances = {}\n{runtime}[engine.admission]\nmax_in_flight = {n}\nmax_queue = 20000\n",
            n + 512
        ),
        None if !runtime.is_empty() => format!("[runtime]\n{runtime}"),
        None => String::new(),
    };
    let cluster_table = cluster.map_or(String::new(), |(r, _)| {
        format!(
            "[cluster]\nredis_url = \"redis://127.0.0.1:{}/0\"\n",
            r.port
        )
    });
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nstore = \"bench.db\"\nauth = false\nhealthchecks = false\n{limits}{cluster_table}\n[products.bench]\nenvs = [\"dev\"]\n{}{}\n[products.bench.fallbacks.sms]\ninput = {{ to = {{ type = \"string\" }}, text = {{ type = \"string\" }} }}\noptions = [\n  {{ provider = \"primary\", app = \"primary\", action = \"{action}\", retries = 2, input = {{ to = \"$Input{{to}}\", text = \"$Input{{text}}\" }}, output = {{ message_id = \"$Response{{{out}}}\" }} }},\n  {{ provider = \"backup\", app = \"backup\", action = \"{action}\", input = {{ to = \"$Input{{to}}\", text = \"$Input{{text}}\" }}, output = {{ message_id = \"$Response{{{out}}}\" }} }},\n]\n[products.bench.quotas.split]\ninput = {{ to = {{ type = \"string\" }}, text = {{ type = \"string\" }} }}\nproviders = [\n  {{ provider = \"primary\", app = \"primary\", action = \"{action}\", weight = 70, input = {{ to = \"$Input{{to}}\"{quota_text} }}, output = {{ message_id = \"$Response{{{out}}}\" }} }},\n  {{ provider = \"backup\", app = \"backup\", action = \"{action}\", weight = 30, input = {{ to = \"$Input{{to}}\"{quota_text} }}, output = {{ message_id = \"$Response{{{out}}}\" }} }},\n]\n",
        app("primary", primary),
        app("backup", backup),
    );
    // Each replica its own directory (its own store).
    let replicas = cluster.map_or(1, |(_, n)| n.max(1));
    let mut servers: Vec<(Child, String)> = (0..replicas)
        .map(|i| {
            let dir = dir.join(format!("replica-{i}"));
            std::fs::create_dir_all(&dir).unwrap();
            let _ = std::fs::remove_file(dir.join("bench.db"));
            let path = dir.join("bench.toml");
            std::fs::write(&path, &config).unwrap();
            let mut child = Command::new(&bin)
                .arg("serve")
                .arg(&path)
                .env("RUST_LOG", "warn")
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let url = read_url(&mut child);
            (child, url)
        })
        .collect();
    let (child, url) = servers.remove(0);
    let path = match route().as_str() {
        "quota" => "/v1/bench/dev/quotas/split/run",
        _ => "/v1/bench/dev/fallbacks/sms/run",
    };
    Contender {
        child,
        url,
        path: path.into(),
        metrics: true,
        more: servers,
    }
}

/// The Python adapter's component, built by `plugins/build-polyglot.sh
/// vonage` (`SWITCHYARD_POLYGLOT_DIR`, default `target/polyglot`).
fn python_adapter() -> PathBuf {
    std::env::var_os("SWITCHYARD_POLYGLOT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/polyglot"))
        .join("vonage.wasm")
}

/// `switchyard-t0` → (`switchyard`, Some(0)); any other name as it is.
fn threads_suffix(name: &str) -> (&str, Option<usize>) {
    if let Some((base, n)) = name.rsplit_once("-t")
        && base.starts_with("switchyard")
        && let Ok(n) = n.parse()
    {
        return (base, Some(n));
    }
    (name, None)
}

fn peer_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/benches/peers/cockatiel")
}

fn node(primary: SocketAddr, backup: SocketAddr, workers: usize) -> Contender {
    let dir = peer_dir();
    if !dir.join("node_modules/cockatiel").exists() {
        let ok = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--no-package-lock"])
            .current_dir(&dir)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "npm install in {} failed", dir.display());
    }
    let mut child = Command::new("node")
        .arg("server.js")
        .arg(format!("http://{primary}"))
        .arg(format!("http://{backup}"))
        .env("WORKERS", workers.to_string())
        .current_dir(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node is installed");
    let url = read_url(&mut child);
    peer(child, url)
}

/// The same job by hand on Switchyard's own HTTP stack, with no sandbox
/// or engine (`load/peer.rs`): this binary again, as a child process.
fn rust_peer(primary: SocketAddr, backup: SocketAddr) -> Contender {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(peer::VAR, format!("{primary},{backup}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let url = read_url(&mut child);
    peer(child, url)
}

/// A peer serving `POST /run` at `url` (no `/metrics`, one process).
fn peer(child: Child, url: String) -> Contender {
    Contender {
        child,
        url,
        path: "/run".into(),
        metrics: false,
        more: Vec::new(),
    }
}

/// The floor: HAProxy (Debian's `haproxy`) forwarding each run to the
/// primary, 2 retries, then the backup: routing with no mapping, no
/// sandbox, no trace. Two threads, keep-alive to the providers.
fn haproxy(dir: &Path, primary: SocketAddr, backup: SocketAddr) -> Contender {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = dir.join("haproxy.cfg");
    std::fs::write(
        &cfg,
        format!(
            "global\n  nbthread 2\n  maxconn 4000\ndefaults\n  mode http\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n  retries 2\n  option redispatch\n  http-reuse always\nfrontend run\n  bind 127.0.0.1:{port}\n  default_backend providers\nbackend providers\n  http-request set-path /v1/messages\n  server primary {primary}\n  server backup {backup} backup\n"
        ),
    )
    .unwrap();
    let child = Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("haproxy is installed (apt-get install haproxy)");
    // Wait until it accepts.
    let url = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    peer(child, url)
}

/// CPU time (user + system) a process and its children (a Node cluster's
/// workers) have used so far, µs. Linux `/proc`, 100 ticks a second.
fn cpu_us(pid: u32) -> u64 {
    let ticks = |stat: &str| -> Option<(u32, u64)> {
        let rest = &stat[stat.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ppid = f.get(1)?.parse().ok()?;
        let t = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
        Some((ppid, t))
    };
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Some(id) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{id}/stat")) else {
                continue;
            };
            if let Some((ppid, t)) = ticks(&stat)
                && (id == pid || ppid == pid)
            {
                total += t;
            }
        }
    }
    total * 10_000
}

/// Peak resident memory of a process, MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

#[derive(Default)]
struct Tally {
    ok: u64,
    failed: u64,
    errors: u64,
    latencies_us: Vec<u32>,
}

/// One caller: a keep-alive connection posting runs back to back.
async fn caller(
    addr: SocketAddr,
    path: Arc<str>,
    id: usize,
    measuring: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    keyed: bool,
) -> Tally {
    let mut tally = Tally::default();
    let mut conn = None;
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        if conn.is_none() {
            let Ok(stream) = TcpStream::connect(addr).await else {
                tally.errors += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let _ = stream.set_nodelay(true);
            let Ok((send, driver)) =
                hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream)).await
            else {
                tally.errors += 1;
                continue;
            };
            tokio::spawn(driver);
            conn = Some(send);
        }
        let send = conn.as_mut().unwrap();
        n += 1;
        let body = if keyed {
            format!(
                r#"{{"input":{{"to":"+1555{id:04}{n:06}","text":"hi"}},"idempotency_key":"k-{id}-{n}-{}"}}"#,
                std::process::id()
            )
        } else {
            format!(r#"{{"input":{{"to":"+1555{id:04}{n:06}","text":"hi"}}}}"#)
        };
        let req = http::Request::post(&*path)
            .header("host", "bench")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let started = Instant::now();
        let counted = measuring.load(Ordering::Relaxed);
        match send.send_request(req).await {
            Ok(resp) => {
                let ok = resp.status().is_success();
                let _ = resp.into_body().collect().await;
                if counted {
                    if ok {
                        tally.ok += 1;
                    } else {
                        tally.failed += 1;
                    }
                    tally
                        .latencies_us
                        .push(started.elapsed().as_micros().min(u32::MAX as u128) as u32);
                }
            }
            Err(_) => {
                if counted {
                    tally.errors += 1;
                }
                conn = None;
            }
        }
    }
    tally
}

struct Figures {
    runs_per_sec: f64,
    success: f64,
    p50_ms: f64,
    p99_ms: f64,
    rss_mib: f64,
    failed: u64,
    errors: u64,
    /// Most plugin instances alive at once while measuring (Switchyard's
    /// `switchyard_plugin_instances_in_use`, sampled every 100 ms).
    instances: Option<f64>,
    /// Redis commands processed per run while measuring (cluster
    /// contenders).
    redis_per_run: Option<f64>,
    /// CPU time (user + system) of the server's processes per run served
    /// while measuring, µs.
    cpu_us_per_run: f64,
}

/// `switchyard_plugin_instances_in_use` from a server's `/metrics`.
async fn instances_in_use(addr: SocketAddr) -> Option<f64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(addr).await.ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").await.ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).await.ok()?;
    text.lines()
        .find(|l| l.starts_with("switchyard_plugin_instances_in_use"))?
        .rsplit(' ')
        .next()?
        .parse()
        .ok()
}

async fn load(
    c: &Contender,
    concurrency: usize,
    warmup: Duration,
    measure: Duration,
    redis: Option<&Redis>,
) -> Figures {
    let parse = |u: &str| -> SocketAddr { u.trim_start_matches("http://").parse().unwrap() };
    let addr = parse(&c.url);
    let addrs: Vec<SocketAddr> = std::iter::once(addr)
        .chain(c.more.iter().map(|(_, u)| parse(u)))
        .collect();
    let keyed = std::env::var("LOAD_KEYED").is_ok_and(|v| v == "1");
    let path: Arc<str> = c.path.clone().into();
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..concurrency)
        .map(|i| {
            tokio::spawn(caller(
                addrs[i % addrs.len()],
                path.clone(),
                i,
                measuring.clone(),
                stop.clone(),
                keyed,
            ))
        })
        .collect();
    tokio::time::sleep(warmup).await;
    let commands_before = redis.map(Redis::commands);
    let pids: Vec<u32> = std::iter::once(c.child.id())
        .chain(c.more.iter().map(|(p, _)| p.id()))
        .collect();
    let cpu_before: u64 = pids.iter().map(|&p| cpu_us(p)).sum();
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    let sampler = {
        let measuring = measuring.clone();
        let metrics = c.metrics;
        tokio::spawn(async move {
            let mut most: Option<f64> = None;
            while metrics && measuring.load(Ordering::Relaxed) {
                if let Some(n) = instances_in_use(addr).await {
                    most = Some(most.map_or(n, |m: f64| m.max(n)));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            most
        })
    };
    tokio::time::sleep(measure).await;
    measuring.store(false, Ordering::Relaxed);
    let cpu = pids
        .iter()
        .map(|&p| cpu_us(p))
        .sum::<u64>()
        .saturating_sub(cpu_before);
    let commands = redis
        .zip(commands_before)
        .map(|(r, before)| r.commands().saturating_sub(before));
    let instances = sampler.await.unwrap();
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut all = Tally::default();
    for t in tasks {
        let t = t.await.unwrap();
        all.ok += t.ok;
        all.failed += t.failed;
        all.errors += t.errors;
        all.latencies_us.extend(t.latencies_us);
    }
    all.latencies_us.sort_unstable();
    let pct = |p: f64| {
        let v = &all.latencies_us;
        if v.is_empty() {
            return 0.0;
        }
        f64::from(v[((v.len() as f64 * p) as usize).min(v.len() - 1)]) / 1e3
    };
    let total = all.ok + all.failed + all.errors;
    Figures {
        runs_per_sec: all.ok as f64 / elapsed.as_secs_f64(),
        success: if total == 0 {
            0.0
        } else {
            all.ok as f64 / total as f64
        },
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        rss_mib: peak_rss_mib(c.child.id())
            + c.more
                .iter()
                .map(|(p, _)| peak_rss_mib(p.id()))
                .sum::<f64>(),
        failed: all.failed,
        errors: all.errors,
        instances,
        // Less the sync task's own (a pipeline or two per replica every
        // 200 ms) and the /metrics sampler's, which count nothing: the
        // bench subtracts nothing, so this slightly overstates a run's.
        redis_per_run: commands.map(|n| n as f64 / (all.ok + all.failed).max(1) as f64),
        cpu_us_per_run: cpu as f64 / all.ok.max(1) as f64,
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() { 0.0 } else { v[v.len() / 2] }
}

/// Every contender named is known and can start here: checked before the
/// first round, so a long run does not stop halfway on a missing tool.
fn check_contenders(contenders: &[String]) -> Result<(), String> {
    const KNOWN: &[&str] = &[
        "switchyard",
        "switchyard-defaults",
        "switchyard-per-step",
        "switchyard-wasi",
        "switchyard-cluster",
        "switchyard-cluster3",
        "switchyard-python",
        "node",
        "node2",
        "haproxy",
        "rust",
    ];
    let runs = |tool: &str, arg: &str| {
        Command::new(tool)
            .arg(arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    for full in contenders {
        let (name, _) = threads_suffix(full);
        if let Some(alt) = name.strip_prefix("switchyard-alt") {
            let var = format!("LOAD_ALT{}_BIN", alt.to_uppercase());
            match std::env::var_os(&var) {
                Some(bin) if Path::new(&bin).is_file() => {}
                Some(bin) => {
                    return Err(format!(
                        "{name}: {var} is {}, which is not a file; set it to the path of another switchyard binary",
                        Path::new(&bin).display()
                    ));
                }
                None => {
                    return Err(format!(
                        "{name}: set {var} to the path of another switchyard binary"
                    ));
                }
            }
        } else if !KNOWN.contains(&name) {
            return Err(format!(
                "unknown contender `{name}`; choose from {}, or switchyard-alt[N] with LOAD_ALT[N]_BIN; add -t<N> to a switchyard contender for `runtime.sandbox_threads = N`",
                KNOWN.join(", ")
            ));
        } else if name.starts_with("node") && !runs("node", "--version") {
            return Err(format!(
                "{name} needs node on the PATH (apt-get install nodejs npm)"
            ));
        } else if name.starts_with("switchyard-python") && !python_adapter().is_file() {
            return Err(format!(
                "{name} needs the Python adapter at {}: run plugins/build-polyglot.sh vonage",
                python_adapter().display()
            ));
        } else if name == "haproxy" && !runs("haproxy", "-v") {
            return Err("haproxy needs haproxy on the PATH (apt-get install haproxy)".into());
        } else if name.starts_with("switchyard-cluster") && !runs("redis-server", "--version") {
            return Err(format!(
                "{name} needs redis-server on the PATH (apt-get install redis-server)"
            ));
        }
    }
    Ok(())
}

fn main() {
    if let Ok(spec) = std::env::var(peer::VAR) {
        peer::main(&spec);
    }
    let seconds: u64 = env_or("LOAD_SECONDS", 10);
    let warmup: u64 = env_or("LOAD_WARMUP_SECONDS", 2);
    let rounds: usize = env_or("LOAD_ROUNDS", 2);
    let latency: u64 = env_or("LOAD_LATENCY_MS", 300);
    let concurrencies: Vec<usize> = std::env::var("LOAD_CONCURRENCY")
        .unwrap_or_else(|_| "1000,5000".into())
        .split(',')
        .filter_map(|c| c.trim().parse().ok())
        .collect();
    let contenders: Vec<String> = std::env::var("LOAD_CONTENDERS")
        .unwrap_or_else(|_| "switchyard,switchyard-defaults,node".into())
        .split(',')
        .map(|c| c.trim().to_string())
        .collect();
    if let Err(problem) = check_contenders(&contenders) {
        eprintln!("LOAD_CONTENDERS: {problem}");
        std::process::exit(2);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (primary, _) = provider(Duration::from_millis(latency)).await;
        let (backup, _) = provider(Duration::from_millis(latency)).await;
        let dir = tempfile::tempdir().unwrap();
        let mut redis: Option<Redis> = None;
        println!(
            "slow-provider load: provider latency {latency} ms, {seconds} s measured after {warmup} s warm-up, {rounds} rounds interleaved"
        );
        println!(
            "{:<22} {:>6} {:>5} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7} {:>7} {:>9} {:>10}",
            "contender", "conc", "round", "runs/s", "success", "p50 ms", "p99 ms", "RSS MiB", "non-2xx", "errors", "instances", "CPU µs/run"
        );
        for &conc in &concurrencies {
            let mut results: Vec<(String, Vec<Figures>)> =
                contenders.iter().map(|c| (c.clone(), Vec::new())).collect();
            for round in 1..=rounds {
                for (name, figures) in &mut results {
                    // `<contender>-t<N>`: with `runtime.sandbox_threads = N`.
                    let (base, sandbox_threads) = threads_suffix(name);
                    let sized = |conc: usize| Serve { sandbox_threads, ..Serve::sized(conc) };
                    let c = match base {
                        "switchyard" => switchyard(dir.path(), primary, backup, sized(conc)),
                        // The same, served by another build of the binary
                        // (`LOAD_ALT_BIN`): an A/B of two builds in one run.
                        // `switchyard-alt2` reads `LOAD_ALT2_BIN`, and so on.
                        alt if alt.starts_with("switchyard-alt") => {
                            let var = format!("LOAD_{}_BIN", alt["switchyard-".len()..].to_uppercase());
                            let bin = std::env::var_os(&var)
                                .map(PathBuf::from)
                                .unwrap_or_else(|| panic!("{alt}: set {var} to the path of another switchyard binary"));
                            switchyard(dir.path(), primary, backup, Serve { bin, ..sized(conc) })
                        }
                        "switchyard-defaults" => switchyard(dir.path(), primary, backup, Serve { sized: None, ..sized(conc) }),
                        // Every exchange step on a fresh instance (what it
                        // was before a call kept its instance across a send).
                        "switchyard-per-step" => switchyard(dir.path(), primary, backup, Serve { exchange_hold_ms: Some(0), ..sized(conc) }),
                        // The same plugin logic in the adapter world: it
                        // holds its instance through the provider's wait.
                        "switchyard-wasi" => switchyard(dir.path(), primary, backup, Serve {
                            plugin: switchyard_artifacts::HTTP_WASI_PATH,
                            ..sized(conc)
                        }),
                        // The Python adapter (Vonage) for both providers:
                        // calls that are mostly the guest's CPU.
                        "switchyard-python" => switchyard(dir.path(), primary, backup, Serve { python: true, ..sized(conc) }),
                        "node" => node(primary, backup, 1),
                        "node2" => node(primary, backup, 2),
                        "haproxy" => haproxy(dir.path(), primary, backup),
                        "rust" => rust_peer(primary, backup),
                        // Cluster mode over the bench's Redis: one replica,
                        // or three with the callers dealt over them.
                        "switchyard-cluster" | "switchyard-cluster3" => {
                            let r = redis.get_or_insert_with(Redis::start);
                            r.cmd("FLUSHALL");
                            let n = if base.ends_with('3') { 3 } else { 1 };
                            switchyard(dir.path(), primary, backup, Serve { cluster: Some((r, n)), ..sized(conc) })
                        }
                        other => panic!("unknown contender {other}"),
                    };
                    let f = load(
                        &c,
                        conc,
                        Duration::from_secs(warmup),
                        Duration::from_secs(seconds),
                        redis.as_ref().filter(|_| name.starts_with("switchyard-cluster")),
                    )
                    .await;
                    println!(
                        "{name:<22} {conc:>6} {round:>5} {:>9.0} {:>8.2}% {:>9.1} {:>9.1} {:>9.1} {:>7} {:>7} {:>9} {:>10.1}",
                        f.runs_per_sec,
                        f.success * 100.0,
                        f.p50_ms,
                        f.p99_ms,
                        f.rss_mib,
                        f.failed,
                        f.errors,
                        f.instances.map_or("-".to_string(), |n| format!("{n:.0}")),
                        f.cpu_us_per_run
                    );
                    figures.push(f);
                    drop(c);
                    // Let the sockets of the last contender close.
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
            println!("medians at concurrency {conc}:");
            let node_rps = results
                .iter()
                .find(|(n, _)| n == "node")
                .map(|(_, f)| median(&mut f.iter().map(|x| x.runs_per_sec).collect::<Vec<_>>()));
            let node_p99 = results
                .iter()
                .find(|(n, _)| n == "node")
                .map(|(_, f)| median(&mut f.iter().map(|x| x.p99_ms).collect::<Vec<_>>()));
            let node2_rps = results
                .iter()
                .find(|(n, _)| n == "node2")
                .map(|(_, f)| median(&mut f.iter().map(|x| x.runs_per_sec).collect::<Vec<_>>()));
            for (name, f) in &results {
                let rps = median(&mut f.iter().map(|x| x.runs_per_sec).collect::<Vec<_>>());
                let p50 = median(&mut f.iter().map(|x| x.p50_ms).collect::<Vec<_>>());
                let p99 = median(&mut f.iter().map(|x| x.p99_ms).collect::<Vec<_>>());
                let ok = median(&mut f.iter().map(|x| x.success * 100.0).collect::<Vec<_>>());
                let rss = median(&mut f.iter().map(|x| x.rss_mib).collect::<Vec<_>>());
                let cpu = median(&mut f.iter().map(|x| x.cpu_us_per_run).collect::<Vec<_>>());
                let inst = f
                    .iter()
                    .filter_map(|x| x.instances)
                    .fold(None, |m: Option<f64>, n| Some(m.map_or(n, |m| m.max(n))));
                let mut vs = match (node_rps, node_p99) {
                    (Some(r), Some(p)) if name != "node" && r > 0.0 && p > 0.0 => {
                        format!("  runs/s ×{:.2} of node, p99 ×{:.2} of node", rps / r, p99 / p)
                    }
                    _ => String::new(),
                };
                if let Some(r) = node2_rps.filter(|r| *r > 0.0 && name.starts_with("switchyard")) {
                    vs.push_str(&format!(", ×{:.2} of node2", rps / r));
                }
                let inst = inst.map_or(String::new(), |n| format!("  instances held ≤ {n:.0}"));
                let cmds = f.iter().filter_map(|x| x.redis_per_run).collect::<Vec<_>>();
                let inst = if cmds.is_empty() {
                    inst
                } else {
                    format!("{inst}  Redis commands/run {:.2}", median(&mut cmds.clone()))
                };
                println!(
                    "  {name:<20} runs/s {rps:>7.0}  success {ok:>6.2}%  p50 {p50:>7.1} ms  p99 {p99:>7.1} ms  peak RSS {rss:>7.1} MiB  CPU {cpu:>6.1} µs/run{inst}{vs}"
                );
            }
        }
    });
}
