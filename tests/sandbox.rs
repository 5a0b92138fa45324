//! The sandbox matrix: every misbehaviour is contained with a typed error
//! and the host serves the next call.

use serde_json::json;
use std::time::{Duration, Instant};
use switchyard_engine::{CallRequest, ErrorClass, FailureKind};
use switchyard_runtime::{App, Grant, LoadError};
use switchyard_tests::{Simulator, misbehave, runtime};

/// Tests here measure this process's resident memory, and others make a
/// guest or the host hold a lot of it: they take turns, so no test counts
/// another's memory.
async fn one_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    TURN.lock().await
}

async fn still_serving(app: &App) {
    let r = app.call(CallRequest::new("noop", json!({}))).await;
    assert!(
        r.is_ok(),
        "host stopped serving after a contained failure: {r:?}"
    );
}

async fn fails(
    app: &App,
    action: &str,
    input: serde_json::Value,
) -> switchyard_engine::AttemptError {
    let err = app
        .call(CallRequest::new(action, input).deadline(Duration::from_secs(2)))
        .await
        .expect_err("the misbehaviour must fail the call");
    still_serving(app).await;
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_a_host_file_finds_no_filesystem() {
    let _turn = one_at_a_time().await;
    let rt = runtime();
    let app = misbehave(&rt, Grant::new()).await;
    let e = fails(&app, "read-file", json!({"path": "/etc/passwd"})).await;
    assert_eq!(e.kind, FailureKind::Provider);
    assert!(
        !e.message.contains("root:"),
        "file content leaked: {}",
        e.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_environment_is_invisible() {
    let _turn = one_at_a_time().await;
    // The host process has variables (PATH at least); the guest sees none.
    assert!(std::env::vars().count() > 0);
    let rt = runtime();
    let app = misbehave(&rt, Grant::new()).await;
    let out = app
        .call(CallRequest::new("env", json!({})))
        .await
        .unwrap()
        .output;
    assert_eq!(out, json!({}), "the guest saw host environment variables");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infinite_loop_is_stopped_at_the_deadline() {
    let _turn = one_at_a_time().await;
    let rt = runtime();
    let app = misbehave(&rt, Grant::new()).await;
    let started = Instant::now();
    let e = app
        .call(CallRequest::new("loop", json!({})).deadline(Duration::from_millis(200)))
        .await
        .unwrap_err();
    assert_eq!(
        (e.class, e.kind),
        (ErrorClass::Timeout, FailureKind::DeadlineExceeded),
        "{e}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    still_serving(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_bomb_hits_the_cap() {
    let _turn = one_at_a_time().await;
    let rt = runtime();
    let app = misbehave(&rt, Grant::new()).await;
    let e = fails(&app, "memory-bomb", json!({})).await;
    assert_eq!(e.kind, FailureKind::MemoryLimit, "{e}");
    assert_eq!(e.class, ErrorClass::Unavailable);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stack_overflow_is_contained() {
    let _turn = one_at_a_time().await;
    let rt = runtime();
    let app = misbehave(&rt, Grant::new()).await;
    let e = fails(&app, "stack-overflow", json!({})).await;
    assert_eq!(e.kind, FailureKind::StackOverflow, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_output_is_refused() {
    let _turn = one_at_a_time().await;
    let rt = runtime();
    let app = misbehave(&rt, Grant::new()).await;
    let e = fails(&app, "big-output", json!({"bytes": 2 << 20})).await;
    assert_eq!(e.kind, FailureKind::OutputTooLarge, "{e}");
    // Just under the cap passes.
    let ok = app
        .call(CallRequest::new("big-output", json!({"bytes": 1000})))
        .await;
    assert!(ok.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traps_panics_and_exits_are_contained() {
    let _turn = one_at_a_time().await;
    let rt = runtime();
    let app = misbehave(&rt, Grant::new()).await;
    let e = fails(&app, "trap", json!({})).await;
    assert_eq!(e.kind, FailureKind::Trap, "{e}");
    let e = fails(&app, "panic", json!({})).await;
    assert_eq!(e.kind, FailureKind::Trap, "{e}");
    assert!(
        e.message.contains("panicked on purpose"),
        "panic message not surfaced: {}",
        e.message
    );
    // WASI 0.2's `exit` carries only ok/err: the guest's code 3 arrives as 1.
    let e = fails(&app, "exit", json!({})).await;
    assert!(e.message.contains("exited with code 1"), "{}", e.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_state_survives_between_calls() {
    let _turn = one_at_a_time().await;
    let rt = runtime();
    let app = misbehave(&rt, Grant::new()).await;
    for _ in 0..3 {
        let out = app
            .call(CallRequest::new("state", json!({})))
            .await
            .unwrap()
            .output;
        assert_eq!(out, json!(1));
    }
}

/// A provider that holds the requests it gets, in batches: each batch's
/// `n` requests wait until told to answer.
struct HeldProvider {
    url: String,
    batches: tokio::sync::mpsc::UnboundedSender<(
        usize,
        tokio::sync::oneshot::Sender<()>,
        tokio::sync::oneshot::Receiver<()>,
    )>,
}

impl HeldProvider {
    async fn start() -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (batches, mut rx) = tokio::sync::mpsc::unbounded_channel::<(
            usize,
            tokio::sync::oneshot::Sender<()>,
            tokio::sync::oneshot::Receiver<()>,
        )>();
        tokio::spawn(async move {
            while let Some((n, arrived, released)) = rx.recv().await {
                let mut held = Vec::new();
                while held.len() < n {
                    let (mut s, _) = listener.accept().await.unwrap();
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        let got = s.read(&mut buf).await.unwrap();
                        assert!(got > 0, "the request ended early");
                        head.extend_from_slice(&buf[..got]);
                    }
                    held.push(s);
                }
                let _ = arrived.send(());
                let _ = released.await;
                for mut s in held {
                    s.write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await
                    .unwrap();
                }
            }
        });
        Self { url, batches }
    }

    /// Hold the next `n` requests: fires `arrived` once all are in, and
    /// answers them when `release` is sent.
    fn batch(
        &self,
        n: usize,
    ) -> (
        tokio::sync::oneshot::Receiver<()>,
        tokio::sync::oneshot::Sender<()>,
    ) {
        let (arrived_tx, arrived) = tokio::sync::oneshot::channel();
        let (release, released) = tokio::sync::oneshot::channel();
        self.batches.send((n, arrived_tx, released)).unwrap();
        (arrived, release)
    }
}

/// Ask the kernel to page out every private writable mapping of this
/// process (`MADV_PAGEOUT`), as memory pressure would; answers the bytes
/// now in swap (`VmSwap`).
fn page_out_everything() -> u64 {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    for line in maps.lines() {
        let mut f = line.split_whitespace();
        let (Some(range), Some(perms)) = (f.next(), f.next()) else {
            continue;
        };
        if perms != "rw-p" {
            continue;
        }
        let (a, b) = range.split_once('-').unwrap();
        let start = usize::from_str_radix(a, 16).unwrap();
        let end = usize::from_str_radix(b, 16).unwrap();
        // SAFETY: advice only; the pages keep their contents (swapped in
        // again on the next access).
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_PAGEOUT);
        }
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmSwap:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

/// A runtime whose slots write the first `keep_resident` bytes of their
/// memory back in place between calls and drop the rest.
fn keeping_resident(keep_resident: usize) -> switchyard_runtime::Runtime {
    switchyard_runtime::Runtime::new(switchyard_runtime::RuntimeConfig {
        cache_dir: Some(switchyard_tests::cache_dir()),
        keep_resident,
        ..Default::default()
    })
    .unwrap()
}

/// `n` calls of `remember` at once, each held by the provider until all
/// are in (so they take `n` slots): what each saw.
async fn remember_at_once(
    app: &App,
    provider: &HeldProvider,
    n: usize,
    page_out: bool,
) -> Vec<serde_json::Value> {
    let (arrived, release) = provider.batch(n);
    let url = &provider.url;
    let calls: Vec<_> = (0..n)
        .map(|_| {
            let app = app.clone();
            let input = json!({"url": format!("{url}/held")});
            tokio::spawn(async move { app.call(CallRequest::new("remember", input)).await })
        })
        .collect();
    tokio::time::timeout(Duration::from_secs(20), arrived)
        .await
        .expect("all the calls reach the provider")
        .unwrap();
    if page_out {
        // Every guest has filled its 64 KiB and waits for the provider:
        // page their memory out while they do, as memory pressure would.
        let swapped = page_out_everything();
        assert!(swapped > 64 << 10, "only {swapped} bytes went to swap");
    }
    release.send(()).unwrap();
    let mut seen = Vec::new();
    for c in calls {
        seen.push(c.await.unwrap().unwrap().output);
    }
    seen
}

/// A guest's memory paged out to swap while it runs is reset like the
/// rest: no later call finds it. (The kernel's dirty-page scan, which the
/// runtime used to reset only what a call dirtied, reports only pages in
/// memory: with it, four of the six calls after the page-out found the
/// earlier calls' words.) Needs swap: where the kernel pages nothing out,
/// the test says so and passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_state_survives_a_page_swapped_out_during_a_call() {
    let _turn = one_at_a_time().await;
    let swap = std::fs::read_to_string("/proc/swaps").is_ok_and(|s| s.lines().count() > 1);
    if !swap || page_out_everything() == 0 {
        eprintln!(
            "the kernel pages nothing out here (no swap in /proc/swaps, or none for this cgroup); skipped"
        );
        return;
    }
    // The guest's whole memory (a few hundred KiB) reset in place (the default),
    // and every page dropped.
    for keep_resident in [switchyard_runtime::DEFAULT_KEEP_RESIDENT, 0] {
        let rt = keeping_resident(keep_resident);
        let provider = HeldProvider::start().await;
        let app = misbehave(&rt, Grant::new().allow(&provider.url)).await;
        let clean = json!({"seen": 0});
        let first = remember_at_once(&app, &provider, 4, true).await;
        assert_eq!(first, vec![clean.clone(); 4]);
        // The next calls take the same slots (and others).
        for _ in 0..3 {
            let seen = remember_at_once(&app, &provider, 6, false).await;
            assert_eq!(
                seen,
                vec![clean.clone(); 6],
                "keep_resident {keep_resident}: a call found an earlier call's memory"
            );
        }
    }
}

/// A slot that keeps its whole memory resident between calls
/// (`keep_resident` = the memory cap: every byte written back in place,
/// none dropped) gives no call an earlier call's data either, after calls
/// that filled and grew their memory and after one that grew it to the cap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_state_survives_a_slot_kept_resident_whole() {
    let _turn = one_at_a_time().await;
    let rt = keeping_resident(switchyard_runtime::Limits::default().memory);
    let provider = HeldProvider::start().await;
    let app = misbehave(&rt, Grant::new().allow(&provider.url)).await;
    let clean = json!({"seen": 0});
    for round in 0..3 {
        let seen = remember_at_once(&app, &provider, 4, false).await;
        assert_eq!(
            seen,
            vec![clean.clone(); 4],
            "round {round}: a call found an earlier call's memory"
        );
        let e = fails(&app, "memory-bomb", json!({})).await;
        assert_eq!(e.kind, FailureKind::MemoryLimit, "{e}");
        let out = app
            .call(CallRequest::new("state", json!({})))
            .await
            .unwrap()
            .output;
        assert_eq!(
            out,
            json!(1),
            "round {round}: a static kept an earlier call's value"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_not_on_the_allowlist_is_denied_before_connecting() {
    let _turn = one_at_a_time().await;
    let allowed = Simulator::start().await.unwrap();
    let other = Simulator::start().await.unwrap();
    other.record(true);
    let rt = runtime();
    let app = misbehave(&rt, Grant::new().allow(allowed.url())).await;
    let e = fails(
        &app,
        "fetch",
        json!({"url": format!("{}/health", other.url())}),
    )
    .await;
    assert_eq!(e.kind, FailureKind::EgressDenied, "{e}");
    assert!(
        !e.message.contains(&allowed.url()),
        "a denial must not list the app's allowlist: {e}"
    );
    assert!(
        e.message.contains("not on app `misbehave`'s allowlist"),
        "{}",
        e.message
    );
    assert!(
        other.recorded().is_empty(),
        "a denied request reached the server"
    );
    assert_eq!(app.egress_stats().denied, 1);
    // The allowed one works.
    let ok = app
        .call(CallRequest::new(
            "fetch",
            json!({"url": format!("{}/health", allowed.url())}),
        ))
        .await;
    assert_eq!(ok.unwrap().output["status"], 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_resolving_to_private_addresses_need_a_grant() {
    let _turn = one_at_a_time().await;
    let sim = Simulator::start().await.unwrap();
    let url = format!("http://localhost:{}", sim.addr().port());
    let rt = runtime();
    // Allowed by name, but localhost resolves to loopback: refused after DNS.
    let app = misbehave(&rt, Grant::new().allow(&url)).await;
    let e = fails(&app, "fetch", json!({"url": format!("{url}/health")})).await;
    assert_eq!(e.kind, FailureKind::EgressDenied, "{e}");
    assert!(e.message.contains("loopback"), "{}", e.message);
    assert_eq!(sim.counts().0, 0);
    // The grant opens loopback explicitly: now it passes.
    let app = misbehave(&rt, Grant::new().allow(&url).private_network("127.0.0.0/8")).await;
    let ok = app
        .call(CallRequest::new(
            "fetch",
            json!({"url": format!("{url}/health")}),
        ))
        .await;
    assert_eq!(ok.unwrap().output["status"], 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_may_not_set_authorization() {
    let _turn = one_at_a_time().await;
    let sim = Simulator::start().await.unwrap();
    sim.record(true);
    let rt = runtime();
    let app = misbehave(&rt, Grant::new().allow(sim.url())).await;
    let e = fails(
        &app,
        "set-auth",
        json!({"url": format!("{}/health", sim.url())}),
    )
    .await;
    assert_eq!(e.kind, FailureKind::EgressDenied, "{e}");
    assert!(
        e.message.contains("`authorization` header"),
        "{}",
        e.message
    );
    assert!(sim.recorded().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_requests_per_call_are_capped() {
    let _turn = one_at_a_time().await;
    let sim = Simulator::start().await.unwrap();
    let rt = runtime();
    let app = misbehave(&rt, Grant::new().allow(sim.url())).await;
    let cap = rt.limits().egress.max_requests_per_call as u64;
    let e = fails(
        &app,
        "many-requests",
        json!({"url": format!("{}/health", sim.url()), "count": cap + 5}),
    )
    .await;
    assert_eq!(e.kind, FailureKind::EgressDenied, "{e}");
    assert!(
        e.message.contains("outbound requests in one call"),
        "{}",
        e.message
    );
    assert_eq!(sim.counts().0, cap);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_provider_is_cut_at_the_call_deadline() {
    let _turn = one_at_a_time().await;
    let sim = Simulator::start().await.unwrap();
    let rt = runtime();
    let app = misbehave(&rt, Grant::new().allow(sim.url())).await;
    let started = Instant::now();
    let e = app
        .call(
            CallRequest::new("fetch", json!({"url": format!("{}/slow/10000", sim.url())}))
                .deadline(Duration::from_millis(300)),
        )
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    // The request reached the provider: the outcome is ambiguous.
    assert_eq!(e.class, ErrorClass::Ambiguous, "{e}");
    still_serving(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_misbehaving_calls_are_all_contained() {
    let _turn = one_at_a_time().await;
    let rt = runtime();
    let app = misbehave(&rt, Grant::new()).await;
    let actions = [
        "trap",
        "panic",
        "memory-bomb",
        "stack-overflow",
        "noop",
        "loop",
    ];
    let mut tasks = Vec::new();
    for i in 0..24 {
        let app = app.clone();
        let action = actions[i % actions.len()];
        tasks.push(tokio::spawn(async move {
            let r = app
                .call(CallRequest::new(action, json!({})).deadline(Duration::from_millis(500)))
                .await;
            (action, r)
        }));
    }
    for t in tasks {
        let (action, r) = t.await.unwrap();
        assert_eq!(r.is_ok(), action == "noop", "{action}: {r:?}");
    }
    still_serving(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_components_are_refused_with_clear_errors() {
    let _turn = one_at_a_time().await;
    let rt = runtime();
    let garbage: &[u8] = b"definitely not wasm";
    let e = rt.load("x", garbage, Grant::new()).await.unwrap_err();
    assert!(matches!(e, LoadError::NotWasm), "{e}");
    let core: &[u8] = b"\0asm\x01\0\0\0";
    let e = rt.load("x", core, Grant::new()).await.unwrap_err();
    assert!(
        e.to_string()
            .contains("core WebAssembly module, not a component"),
        "{e}"
    );
    // An empty but valid component exports nothing.
    let empty: &[u8] = b"\0asm\x0d\0\x01\0";
    let e = rt.load("x", empty, Grant::new()).await.unwrap_err();
    assert!(
        e.to_string().contains(
            "exports neither `switchyard:adapter/exchange` nor `switchyard:adapter/provider`"
        ),
        "{e}"
    );
    let e = rt
        .load(
            "x",
            std::path::Path::new("/nonexistent/plugin.wasm"),
            Grant::new(),
        )
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("cannot read plugin /nonexistent/plugin.wasm"),
        "{e}"
    );
    let e = rt
        .load(
            "x",
            switchyard_tests::artifacts::MISBEHAVE,
            Grant::new().allow("ftp://nope"),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("allow[0]"), "{e}");
}

/// This process's resident memory, MiB.
fn rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_guest_makes_the_host_hold_is_capped() {
    let _turn = one_at_a_time().await;
    let rt = runtime();
    let app = misbehave(&rt, Grant::new()).await;
    let before = rss_mib();
    // The reported attack: 8,000 header maps of 120 KB each took the host
    // to 987 MB while the guest's own memory stayed under 1 MiB. One map
    // may now hold 16 KiB: the first is refused.
    let e = fails(
        &app,
        "fields-flood",
        json!({"count": 8000, "size": 120_000}),
    )
    .await;
    assert_eq!(e.kind, FailureKind::MemoryLimit, "{e}");
    assert!(e.message.contains("header map over 16 KiB"), "{e}");
    // Many small maps: the call runs out of host resources and fails with
    // the memory-limit error, on 8 calls at once.
    let calls = (0..8).map(|_| {
        let app = app.clone();
        tokio::spawn(async move {
            app.call(
                CallRequest::new("fields-flood", json!({"count": 8000, "size": 10_000}))
                    .deadline(Duration::from_secs(5)),
            )
            .await
        })
    });
    for c in calls {
        let e = c.await.unwrap().expect_err("the flood must fail");
        assert_eq!(e.kind, FailureKind::MemoryLimit, "{e}");
        assert!(e.message.contains("resources at once"), "{e}");
    }
    let grown = rss_mib().saturating_sub(before);
    assert!(grown < 100, "host RSS grew {grown} MiB");
    still_serving(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_the_host_holds_count_against_the_call() {
    let _turn = one_at_a_time().await;
    let sim = Simulator::start().await.unwrap();
    // The provider takes its time, so every body of a call is held by the
    // host at once.
    sim.set_latency(Duration::from_millis(800));
    let rt = runtime();
    let app = misbehave(&rt, Grant::new().allow(sim.url())).await;
    let flood = |ballast_mib: u32| {
        CallRequest::new(
            "bodies-flood",
            json!({
                "authority": sim.addr().to_string(),
                "count": 8,
                "size": 4_000_000,
                "ballast": ballast_mib,
            }),
        )
        .deadline(Duration::from_secs(10))
    };
    // 8 bodies of 4 MB (32 MB held by the host) beside a small guest fit
    // the call's 120 MiB.
    let ok = app.call(flood(0)).await.expect("a modest flood fits");
    assert_eq!(ok.output["statuses"].as_array().map(Vec::len), Some(8));
    // With 96 MiB of the guest's own (about 102 MiB in all) the same
    // bodies would take the call to about 134 MiB: a body is refused and
    // the call fails with the memory-limit error, although the guest's
    // own memory never reached its cap.
    let e = app.call(flood(96)).await.expect_err("over the cap");
    assert_eq!(e.kind, FailureKind::MemoryLimit, "{e}");
    assert!(e.message.contains("request bodies held by the host"), "{e}");
    still_serving(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_error_message_is_cut_at_the_boundary() {
    let _turn = one_at_a_time().await;
    let rt = runtime();
    let app = misbehave(&rt, Grant::new()).await;
    let e = fails(&app, "huge-error", json!({"bytes": 50_000_000})).await;
    assert!(
        e.message.len() <= switchyard_engine::MAX_ERROR_MESSAGE + 64,
        "{} bytes",
        e.message.len()
    );
    assert!(
        e.message.ends_with("more bytes cut]"),
        "{}",
        &e.message[4_000..]
    );
    assert!(e.code.unwrap().len() <= switchyard_engine::MAX_ERROR_CODE + 64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_flood_is_dropped_not_buffered() {
    let _turn = one_at_a_time().await;
    let rt = runtime();
    let app = misbehave(&rt, Grant::new()).await;
    let before = rss_mib();
    // 200 lines per call reach the host's log; the rest are dropped, so a
    // million lines cost the guest's time, not host memory.
    let r = app
        .call(
            CallRequest::new("log-flood", json!({"count": 1_000_000}))
                .deadline(Duration::from_secs(20)),
        )
        .await;
    assert!(r.is_ok(), "{r:?}");
    assert!(rss_mib().saturating_sub(before) < 50);
    still_serving(&app).await;
}
