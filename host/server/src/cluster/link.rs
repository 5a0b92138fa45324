//! The link itself: its connection, bounded calls, outbox, status and
//! metrics.

use super::model::*;
use crate::config::{ClusterConfig, Mismatch};
use redis::aio::MultiplexedConnection;
use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use switchyard_engine::{Kind, Recover, RecoverRw};

/// How the link to Redis stands.
#[derive(Debug, Clone)]
pub(super) struct Status {
    pub(super) up: bool,
    pub(super) since: SystemTime,
    pub(super) last_error: Option<String>,
}

/// Counters `/metrics` shows.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) errors: AtomicU64,
    pub(super) timeouts: AtomicU64,
    pub(super) local_decisions: AtomicU64,
    pub(super) sent: AtomicU64,
    pub(super) applied: AtomicU64,
    pub(super) dropped: AtomicU64,
    pub(super) resyncs: AtomicU64,
    pub(super) swept: AtomicU64,
}

/// A replica's link to the cluster.
pub struct Cluster {
    pub(super) client: redis::Client,
    pub(super) prefix: String,
    pub(super) replica: String,
    pub(super) timeout: Duration,
    pub(super) sync_interval: Duration,
    /// The connection, with its generation (one more at each connect), so
    /// a call that fails on a connection already replaced does not take
    /// the new one down.
    pub(super) conn: RwLock<Option<(u64, MultiplexedConnection)>>,
    /// Connections made so far.
    pub(super) generation: AtomicU64,
    /// When Redis last answered anything on the current connection (ms
    /// since `epoch`): a connection silent for [`SILENT_LINK`] while its
    /// calls time out is dropped.
    pub(super) answered_ms: AtomicU64,
    pub(super) epoch: Instant,
    pub(super) status: Mutex<Status>,
    pub(super) outbox: Mutex<VecDeque<Event>>,
    /// Definitions changed here and not yet in Redis (`product/kind/tag`).
    pub(super) pending_defs: Mutex<BTreeSet<String>>,
    /// Settlements of records Redis could not take when their runs ended
    /// ([`Settle`]): written at the next flush,
    /// fenced, so a retry after Redis is back gets them and a claim that
    /// landed after its caller stopped waiting does not hold the key.
    pub(super) settles: Mutex<VecDeque<Settle>>,
    pub(super) wake: tokio::sync::Notify,
    /// The newest event seq applied.
    pub(super) seen: AtomicU64,
    pub(super) replicas: AtomicU32,
    pub(super) counters: Counters,
    /// The cluster's name (`cluster.name`, default the prefix).
    pub(super) name: String,
    /// What a replica whose config differs does.
    pub(super) on_mismatch: Mismatch,
    /// How the last join went (`None`: not joined yet).
    pub(super) joined: Mutex<Option<Join>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("replica", &self.replica)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// A link for `config`, not yet connected (the sync task connects).
    pub fn new(config: &ClusterConfig) -> Result<Arc<Self>, String> {
        let client = redis::Client::open(config.redis_url.as_str())
            .map_err(|e| format!("cluster.redis_url: {e}"))?;
        let replica = config.replica.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/etc/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_default();
            format!(
                "{}-{}",
                if host.is_empty() { "replica" } else { &host },
                std::process::id()
            )
        });
        Ok(Arc::new(Self {
            client,
            prefix: config.prefix.clone(),
            replica,
            timeout: Duration::from_millis(config.timeout_ms),
            sync_interval: Duration::from_millis(config.sync_interval_ms),
            conn: RwLock::new(None),
            generation: AtomicU64::new(0),
            answered_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            status: Mutex::new(Status {
                up: false,
                since: SystemTime::now(),
                last_error: Some("not connected yet".into()),
            }),
            outbox: Mutex::new(VecDeque::new()),
            pending_defs: Mutex::new(BTreeSet::new()),
            settles: Mutex::new(VecDeque::new()),
            wake: tokio::sync::Notify::new(),
            seen: AtomicU64::new(0),
            replicas: AtomicU32::new(1),
            counters: Counters::default(),
            name: config.name.clone().unwrap_or_else(|| config.prefix.clone()),
            on_mismatch: config.on_mismatch,
            joined: Mutex::new(None),
        }))
    }

    /// This replica's name.
    pub fn replica(&self) -> &str {
        &self.replica
    }

    pub(super) fn key(&self, rest: &str) -> String {
        format!("{}:{rest}", self.prefix)
    }

    /// Whether the link is up.
    pub fn is_up(&self) -> bool {
        self.status.locked().up
    }

    /// Why this replica does not take part in the cluster, when it
    /// refused to join (another cluster's name, or a config that differs
    /// under `on_mismatch = "refuse"`): `/readyz` answers 503 with it.
    pub fn refused(&self) -> Option<String> {
        match &*self.joined.locked() {
            Some(Join::Refused(why)) => Some(why.clone()),
            _ => None,
        }
    }

    /// The lines `/readyz` adds.
    pub fn readiness(&self) -> String {
        let st = self.status.locked().clone();
        let since = st
            .since
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let joined = self.joined.locked().clone();
        if let Some(Join::Refused(why)) = &joined {
            return format!(
                "cluster: REFUSED: replica `{}` did not join cluster `{}`: {why}\n",
                self.replica, self.name
            );
        }
        let mismatch = match &joined {
            Some(Join::ReadOnly(why)) => format!("cluster: CONFIG DIFFERS: {why}\n"),
            _ => String::new(),
        };
        if st.up {
            format!(
                "cluster: connected to `{}` as `{}`, {} replicas live, shared state in force\n{mismatch}",
                self.name,
                self.replica,
                self.replicas.load(Ordering::Relaxed)
            )
        } else {
            format!(
                "cluster: DEGRADED: Redis unreachable since unix {since} ({}); replica `{}` serves on local state and will converge when Redis is back\n",
                st.last_error.unwrap_or_default(),
                self.replica
            )
        }
    }

    /// Prometheus lines.
    pub fn metrics(&self) -> String {
        let c = &self.counters;
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let joined = self.joined.locked().clone();
        let series: [(&str, &str, &str, u64); 12] = [
            (
                "switchyard_cluster_up",
                "gauge",
                "1 while this replica reaches Redis; 0 while it serves on local state.",
                u64::from(self.is_up()),
            ),
            (
                "switchyard_cluster_replicas",
                "gauge",
                "Replicas with a heartbeat in the last three sync intervals.",
                u64::from(self.replicas.load(Ordering::Relaxed)),
            ),
            (
                "switchyard_cluster_errors_total",
                "counter",
                "Redis calls that failed (connection or command).",
                n(&c.errors),
            ),
            (
                "switchyard_cluster_timeouts_total",
                "counter",
                "Redis calls that took longer than cluster.timeout_ms.",
                n(&c.timeouts),
            ),
            (
                "switchyard_cluster_local_decisions_total",
                "counter",
                "Shared decisions (quota ticket, probe permit, lease, claim, cache) made locally because Redis did not answer in time.",
                n(&c.local_decisions),
            ),
            (
                "switchyard_cluster_events_sent_total",
                "counter",
                "Events (breaker transitions, health results, drains, definition changes) written to Redis.",
                n(&c.sent),
            ),
            (
                "switchyard_cluster_events_applied_total",
                "counter",
                "Events from other replicas applied here.",
                n(&c.applied),
            ),
            (
                "switchyard_cluster_events_dropped_total",
                "counter",
                "Events dropped because the outbox was full while Redis was away.",
                n(&c.dropped),
            ),
            (
                "switchyard_cluster_resyncs_total",
                "counter",
                "Full resynchronisations (at start, after Redis came back, or after falling behind the event log).",
                n(&c.resyncs),
            ),
            (
                "switchyard_cluster_config_mismatch",
                "gauge",
                "1 while this replica's config differs from the one that seeded the cluster's definitions (it serves the cluster's and writes none of its config's), 2 while it refused to join; 0 otherwise.",
                match joined {
                    Some(Join::ReadOnly(_)) => 1,
                    Some(Join::Refused(_)) => 2,
                    _ => 0,
                },
            ),
            (
                "switchyard_cluster_breaker_entries_swept_total",
                "counter",
                "Closed or expired breaker entries removed from the shared hash at resync.",
                n(&c.swept),
            ),
            (
                "switchyard_cluster_outbox",
                "gauge",
                "Events waiting for Redis.",
                self.outbox.locked().len() as u64,
            ),
        ];
        crate::metrics::unlabelled(&series)
    }

    pub(super) fn connection(&self) -> Option<MultiplexedConnection> {
        self.conn.reading().as_ref().map(|(_, c)| c.clone())
    }

    /// Redis failed a call made on the connection of `generation`: that
    /// connection is dropped, unless a newer one has replaced it already
    /// (a late error of a call on the old one says nothing of the new).
    fn failed_on(&self, generation: u64, why: String) {
        {
            let mut conn = self.conn.writing();
            if conn.as_ref().is_some_and(|(g, _)| *g != generation) {
                return;
            }
            *conn = None;
        }
        self.went_down(why);
    }

    pub(super) fn went_down(&self, why: String) {
        *self.conn.writing() = None;
        let mut st = self.status.locked();
        if st.up {
            eprintln!("cluster: lost Redis ({why}); serving on local state until it is back");
            st.up = false;
            st.since = SystemTime::now();
        }
        st.last_error = Some(why);
    }

    /// A decision a run waits on: `f` within `cluster.timeout_ms`; `None`
    /// (counted as a local decision) when Redis is away, failed or slow.
    pub(super) async fn call<T, F, Fut>(&self, f: F) -> Option<T>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let answer = self.call_within(self.timeout, f).await;
        if answer.is_none() {
            self.counters
                .local_decisions
                .fetch_add(1, Ordering::Relaxed);
        }
        answer
    }

    /// The sync task's own work (joining, flushing the outbox, reading the
    /// event log): no run waits on it, and a backlog written after an outage
    /// or a large definition set takes longer than a decision may, so it
    /// gets [`SYNC_TIMEOUT`] rather than `cluster.timeout_ms`.
    pub(super) async fn sync<T, F, Fut>(&self, f: F) -> Option<T>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        self.call_within(SYNC_TIMEOUT, f).await
    }

    /// The bound of what keeps a caller's retry safe (claiming and settling
    /// an idempotency record): ten decision timeouts, at least 250 ms and
    /// at most 1 s, so a busy Redis does not turn into a second charge.
    pub(super) fn record_timeout(&self) -> Duration {
        (self.timeout * 10).clamp(Duration::from_millis(250), Duration::from_secs(1))
    }

    pub(super) async fn call_within<T, F, Fut>(&self, bound: Duration, f: F) -> Option<T>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let (generation, conn) = self.conn.reading().clone()?;
        match tokio::time::timeout(bound, f(conn)).await {
            Ok(Ok(v)) => {
                self.answered(generation);
                Some(v)
            }
            Ok(Err(e)) => {
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
                if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() {
                    self.failed_on(generation, e.to_string());
                } else if e.is_timeout() {
                    self.silent_on(generation);
                } else {
                    // An error reply is still an answer: Redis is there.
                    self.answered(generation);
                }
                None
            }
            Err(_) => {
                self.counters.timeouts.fetch_add(1, Ordering::Relaxed);
                self.silent_on(generation);
                None
            }
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Redis answered a call on the connection of `generation`.
    fn answered(&self, generation: u64) {
        if self.generation.load(Ordering::Relaxed) == generation {
            self.answered_ms.fetch_max(self.now_ms(), Ordering::Relaxed);
        }
    }

    /// A call on the connection of `generation` got no answer in time: if
    /// nothing has answered on it for [`SILENT_LINK`], drop it so the sync
    /// task makes a new one (to wherever the URL now leads).
    fn silent_on(&self, generation: u64) {
        let silent = self
            .now_ms()
            .saturating_sub(self.answered_ms.load(Ordering::Relaxed));
        if silent >= SILENT_LINK.as_millis() as u64 {
            self.failed_on(
                generation,
                format!(
                    "Redis has not answered on this connection for {:.1} s; making a new one",
                    silent as f64 / 1000.0
                ),
            );
        }
    }

    pub(super) fn push(&self, what: What) {
        let mut out = self.outbox.locked();
        if out.len() >= OUTBOX {
            out.pop_front();
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
        out.push_back(Event {
            r: self.replica.clone(),
            what,
        });
        drop(out);
        self.wake.notify_one();
    }

    /// An operator drained (or restored) a provider through this replica:
    /// every replica applies it.
    pub fn drain_changed(&self, product: &str, provider: &str, drained: bool) {
        self.push(What::Drain {
            product: product.into(),
            provider: provider.into(),
            drained,
        });
    }

    /// A definition changed through this replica: share it.
    pub fn definition_changed(&self, product: &str, kind: Kind, tag: &str) {
        self.pending_defs
            .locked()
            .insert(def_key(product, kind, tag));
        self.wake.notify_one();
    }

    pub(super) async fn connect(&self) -> bool {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Duration::from_secs(1))
            // Every call is bounded by its own timeout (at most
            // SYNC_TIMEOUT); whether a silent connection is given up is
            // decided by SILENT_LINK (`silent_on`), not by the client.
            .set_response_timeout(SILENT_LINK);
        match self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
        {
            Ok(c) => {
                // A new connection starts with a clean slate: nothing
                // has been silent on it yet.
                self.answered_ms.store(self.now_ms(), Ordering::Relaxed);
                let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
                *self.conn.writing() = Some((generation, c));
                let mut st = self.status.locked();
                if !st.up {
                    eprintln!("cluster: connected to Redis as replica `{}`", self.replica);
                }
                st.up = true;
                st.since = SystemTime::now();
                st.last_error = None;
                true
            }
            Err(e) => {
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
                self.went_down(e.to_string());
                false
            }
        }
    }

    pub(super) async fn script_int(
        &self,
        script: &'static str,
        key: String,
        args: Vec<String>,
    ) -> Option<i64> {
        self.call(|mut c| async move {
            let mut cmd = redis::cmd("EVAL");
            cmd.arg(script).arg(1).arg(key);
            for a in args {
                cmd.arg(a);
            }
            cmd.query_async::<i64>(&mut c).await
        })
        .await
    }
}
