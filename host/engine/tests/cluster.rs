//! The cluster seam through the engine's public API: replicas (engines on
//! one manual clock) sharing an in-memory store that implements `Shared`
//! as the Redis link does, and delivers each replica's breaker transitions
//! and health results to the others at once. What Redis adds on top (the
//! network, staleness, outages) is tested with real processes in
//! `host/server/tests/cluster.rs`.

use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use switchyard_engine::{
    AdmissionConfig, BoxFuture, BreakerConfig, BreakerState, ErrorClass, ErrorCode, FakeAdapter,
    HealthKey, ManualClock, MemoryRecords, ProbeOutcome, RunOptions, Shared, SharedBreaker,
    SkipReason, Switchyard,
};

const P: &str = "shop";

/// What Redis holds, for the engines of one test.
#[derive(Default)]
struct Store {
    counters: HashMap<String, u64>,
    leases: HashMap<String, String>,
    strings: HashMap<String, String>,
}

/// One replica's view of the store: its name and its peers.
struct Link {
    name: String,
    store: Arc<Mutex<Store>>,
    peers: Mutex<Vec<Weak<Replica>>>,
}

struct Replica {
    yard: Switchyard,
}

impl Link {
    fn incr(&self, key: String) -> u64 {
        let mut s = self.store.lock().unwrap();
        let n = s.counters.entry(key).or_default();
        *n += 1;
        *n
    }

    fn each_peer(&self, f: impl Fn(&Switchyard)) {
        for p in self.peers.lock().unwrap().iter().filter_map(Weak::upgrade) {
            f(&p.yard);
        }
    }
}

impl Shared for Link {
    fn breaker_changed(&self, key: &str, change: &SharedBreaker) {
        self.each_peer(|y| {
            y.apply_shared_breaker(key, change);
        });
    }

    fn force_changed(&self, key: &str, force: switchyard_engine::Force) {
        self.each_peer(|y| {
            y.apply_shared_force(key, force);
        });
    }

    fn probe_permit<'a>(
        &'a self,
        key: &'a str,
        episode: u64,
        permits: u64,
        _: Duration,
    ) -> BoxFuture<'a, Option<bool>> {
        Box::pin(async move { Some(self.incr(format!("probe:{key}:{episode}")) <= permits) })
    }

    fn probe_passed<'a>(&'a self, key: &'a str, episode: u64) -> BoxFuture<'a, Option<u64>> {
        Box::pin(async move { Some(self.incr(format!("passed:{key}:{episode}"))) })
    }

    fn quota_ticket<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Option<u64>> {
        Box::pin(async move { Some(self.incr(format!("quota:{key}")) - 1) })
    }

    fn health_lease<'a>(&'a self, key: &'a HealthKey, _: Duration) -> BoxFuture<'a, Option<bool>> {
        Box::pin(async move {
            let mut s = self.store.lock().unwrap();
            let holder = s
                .leases
                .entry(format!("{}/{}/{}", key.product, key.env, key.tag))
                .or_insert_with(|| self.name.clone());
            Some(*holder == self.name)
        })
    }

    fn health_result(&self, key: &HealthKey, outcome: &ProbeOutcome) {
        self.each_peer(|y| {
            y.apply_shared_health(key, outcome.clone());
        });
    }

    fn cache_get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Option<String>> {
        Box::pin(async move { self.store.lock().unwrap().strings.get(key).cloned() })
    }

    fn cache_put(&self, key: &str, value: String, _: Duration) {
        self.store
            .lock()
            .unwrap()
            .strings
            .insert(key.to_string(), value);
    }
}

struct Cluster {
    clock: Arc<ManualClock>,
    replicas: Vec<Arc<Replica>>,
    a: Vec<Arc<FakeAdapter>>,
    b: Vec<Arc<FakeAdapter>>,
}

/// `n` replicas with apps `a` and `b` (each replica its own fakes, so a
/// test can tell who called), a fallback `f` (a then b) and a 70/30
/// quota `q`.
fn cluster(n: usize) -> Cluster {
    let clock = Arc::new(ManualClock::new());
    let store = Arc::new(Mutex::new(Store::default()));
    // The replicas' idempotency records, as Redis holds them for all.
    let records = Arc::new(MemoryRecords::default());
    let mut links = Vec::new();
    let (mut replicas, mut a, mut b) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..n {
        let link = Arc::new(Link {
            name: format!("r{i}"),
            store: store.clone(),
            peers: Mutex::new(Vec::new()),
        });
        let yard = Switchyard::builder()
            .clock(clock.clone())
            .breaker(BreakerConfig {
                minimum_failure_count: 2,
                ..BreakerConfig::default()
            })
            .shared(link.clone())
            .records(records.clone())
            .build();
        let fa = Arc::new(FakeAdapter::new("a", &[("go", true), ("ping", true)]));
        let fb = Arc::new(FakeAdapter::new("b", &[("go", true), ("ping", true)]));
        yard.install_app(P, "a", "dev", fa.clone());
        yard.install_app(P, "b", "dev", fb.clone());
        links.push(link);
        replicas.push(Arc::new(Replica { yard }));
        a.push(fa);
        b.push(fb);
    }
    for (i, link) in links.iter().enumerate() {
        *link.peers.lock().unwrap() = replicas
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, r)| Arc::downgrade(r))
            .collect();
    }
    let first = &replicas[0].yard;
    first
        .fallback()
        .define(P, "f")
        .provider("a")
        .action("go")
        .provider("b")
        .action("go")
        .create()
        .unwrap();
    first
        .quota()
        .define(P, "q")
        .provider("a")
        .action("go")
        .weight(70)
        .provider("b")
        .action("go")
        .weight(30)
        .create()
        .unwrap();
    // Definitions reach the other replicas through the server's sync;
    // here they are defined on each.
    for r in &replicas[1..] {
        for def in first.fetch_all(P, None) {
            r.yard.create(def).unwrap();
        }
    }
    Cluster {
        clock,
        replicas,
        a,
        b,
    }
}

fn run(
    c: &Cluster,
    i: usize,
    tag: &str,
) -> impl std::future::Future<Output = Result<switchyard_engine::RunResult, switchyard_engine::RunError>>
+ use<> {
    run_with(c, i, tag, RunOptions::default())
}

/// Run `tag` (`q` is the quota, anything else a fallback) on replica `i`.
fn run_with(
    c: &Cluster,
    i: usize,
    tag: &str,
    options: RunOptions,
) -> impl std::future::Future<Output = Result<switchyard_engine::RunResult, switchyard_engine::RunError>>
+ use<> {
    let y = c.replicas[i].yard.clone();
    let tag = tag.to_string();
    async move {
        let kind = if tag == "q" {
            switchyard_engine::Kind::Quota
        } else {
            switchyard_engine::Kind::Fallback
        };
        y.run(kind, P, "dev", &tag, json!({}), options).await
    }
}

#[tokio::test]
async fn a_trip_on_one_replica_opens_the_others_and_probes_are_counted_cluster_wide() {
    let c = cluster(3);
    for a in &c.a {
        a.fail(ErrorClass::Unavailable);
    }
    for _ in 0..3 {
        run(&c, 0, "f").await.unwrap();
    }
    assert_eq!(c.a[0].call_count(), 3);
    for i in 1..3 {
        let r = run(&c, i, "f").await.unwrap();
        assert_eq!(
            c.a[i].call_count(),
            0,
            "replica {i} called an open provider"
        );
        assert!(matches!(
            &r.trace.skipped[0].reason,
            SkipReason::BreakerOpen { open: true, last_error: Some(e), .. } if e.contains("go failed")
        ));
    }

    // Half-open: the allowance (5 % of 3 requests: one probe) is the
    // cluster's, not each replica's. Replica 1's probe is held in flight;
    // replicas 0 and 2 get no probe of their own.
    c.clock.advance(Duration::from_secs(31));
    for a in &c.a {
        a.behave(|_| Ok(json!({"ok": true})));
    }
    let gate = c.a[1].hold();
    let probe = tokio::spawn(run(&c, 1, "f"));
    while c.a[1].in_flight() == 0 {
        tokio::task::yield_now().await;
    }
    for i in [0, 2] {
        let r = run(&c, i, "f").await.unwrap();
        assert_eq!(r.provider.as_deref(), Some("b"), "replica {i} probed too");
    }
    assert_eq!(c.a[0].call_count(), 3);
    assert_eq!(c.a[2].call_count(), 0);
    gate.add_permits(1);
    let r = probe.await.unwrap().unwrap();
    assert_eq!(r.provider.as_deref(), Some("a"));
    // The probe passed: the breaker closed everywhere.
    for (i, r) in c.replicas.iter().enumerate() {
        let s = r.yard.fallback().providers(P, "dev", "f").unwrap();
        assert_eq!(s[0].breaker.state, BreakerState::Closed, "replica {i}");
    }
    let r = run(&c, 2, "f").await.unwrap();
    assert_eq!(r.provider.as_deref(), Some("a"));
}

#[tokio::test]
async fn the_quota_split_holds_across_replicas() {
    let c = cluster(3);
    for n in 0..1_000 {
        run(&c, n % 3, "q").await.unwrap();
        let a: usize = c.a.iter().map(|f| f.call_count()).sum();
        let exact = 0.7 * (n + 1) as f64;
        assert!(
            (a as f64 - exact).abs() < 1.0 + 1e-9,
            "after {} runs: {a}",
            n + 1
        );
    }
    let b: usize = c.b.iter().map(|f| f.call_count()).sum();
    assert_eq!(b, 300);
}

#[tokio::test]
async fn a_healthcheck_runs_on_the_lease_holder_and_every_replica_sees_it() {
    let c = cluster(3);
    for r in &c.replicas {
        r.yard
            .healthcheck()
            .define(P, "a-up")
            .app("a")
            .action("ping")
            .input("dev", json!({}))
            .create()
            .unwrap();
    }
    for r in &c.replicas {
        r.yard.run_due_healthchecks().await;
    }
    let pings: usize = c.a.iter().map(|f| f.call_count()).sum();
    assert_eq!(pings, 1, "one check in the cluster");
    assert_eq!(c.a[0].call_count(), 1, "by the lease holder");
    for (i, r) in c.replicas.iter().enumerate() {
        let h = r.yard.health(P, "dev", "a-up").unwrap();
        assert_eq!(h.history.len(), 1, "replica {i} sees the result");
        assert!(h.last_checked_unix_ms.is_some());
    }
}

#[tokio::test]
async fn an_idempotency_key_runs_once_in_the_cluster_and_a_retry_gets_the_outcome() {
    let c = cluster(2);
    let keyed = |i: usize| run_with(&c, i, "f", RunOptions::default().idempotency_key("order-1"));
    let gate = c.a[0].hold();
    let first = tokio::spawn(keyed(0));
    while c.a[0].in_flight() == 0 {
        tokio::task::yield_now().await;
    }
    let e = keyed(1).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::InProgress);
    assert!(e.retry_after_ms.is_some());
    gate.add_permits(1_000);
    let served = first.await.unwrap().unwrap();
    let again = keyed(1).await.unwrap();
    assert!(again.trace.replayed);
    assert_eq!(again.output, served.output);
    assert_eq!(c.a[0].call_count() + c.a[1].call_count(), 1);

    // A failure a retry may undo frees the key; a final one is kept.
    for a in &c.a {
        a.fail(ErrorClass::Unavailable);
    }
    for b in &c.b {
        b.fail(ErrorClass::Unavailable);
    }
    let free =
        |i: usize, key: &str| run_with(&c, i, "f", RunOptions::default().idempotency_key(key));
    assert_eq!(free(0, "k2").await.unwrap_err().code, ErrorCode::AllFailed);
    for b in &c.b {
        b.behave(|_| Ok(json!({"ok": 1})));
    }
    assert!(free(1, "k2").await.is_ok(), "all-failed freed the key");
    for b in &c.b {
        b.fail(ErrorClass::Rejected);
    }
    for a in &c.a {
        a.fail(ErrorClass::Rejected);
    }
    let e = free(0, "k3").await.unwrap_err();
    assert_eq!(e.code, ErrorCode::Rejected);
    let calls: usize = c.a.iter().chain(&c.b).map(|f| f.call_count()).sum();
    let again = free(1, "k3").await.unwrap_err();
    assert_eq!(again.code, ErrorCode::Rejected);
    assert!(again.trace.is_some_and(|t| t.replayed));
    let after: usize = c.a.iter().chain(&c.b).map(|f| f.call_count()).sum();
    assert_eq!(after, calls, "a rejected run is not run again");
}

#[tokio::test]
async fn result_caches_are_shared_and_limits_are_split_between_replicas() {
    let c = cluster(2);
    for r in &c.replicas {
        r.yard
            .cache()
            .define(P, "recent")
            .ttl(Duration::from_secs(60))
            .create()
            .unwrap();
    }
    let cached = |i: usize| run_with(&c, i, "f", RunOptions::default().cache("recent"));
    let first = cached(0).await.unwrap();
    let hit = cached(1).await.unwrap();
    assert!(hit.trace.cached);
    assert_eq!(hit.output, first.output);
    assert_eq!(c.a[1].call_count(), 0);

    // A rate limit of 10/s with a burst of 10 is 5 and 5 on two replicas.
    let c = cluster(2);
    let y = &c.replicas[0].yard;
    y.set_admission(
        P,
        "a",
        AdmissionConfig {
            rate_per_sec: Some(10.0),
            burst: Some(10),
            ..AdmissionConfig::default()
        },
    )
    .unwrap();
    y.set_replicas(2);
    assert_eq!(y.replicas(), 2);
    // Ten attempts on `a`: alone, the burst of 10 admits them at once;
    // as one of two replicas, its burst of 5 admits five and the other
    // five wait for tokens at 5/s (the manual clock moves only as they
    // wait).
    use switchyard_engine::Clock;
    let started = c.clock.now();
    for _ in 0..10 {
        let r = y
            .fallback()
            .run(P, "dev", "f", json!({}), RunOptions::default())
            .await
            .unwrap();
        assert_eq!(r.provider.as_deref(), Some("a"));
    }
    let waited = c.clock.now() - started;
    assert!(
        (Duration::from_millis(900)..Duration::from_millis(1_100)).contains(&waited),
        "five waits at 5/s, not 10/s: {waited:?}"
    );
    assert_eq!(
        y.admission(P, "a").rate_per_sec,
        Some(10.0),
        "the configured limit is shown"
    );
}
