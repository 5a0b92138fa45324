//! Cluster mode: the engine's [`Shared`] seam over Redis, and the task that
//! keeps a replica in step with the others.
//!
//! Every call a run makes waits on one pipelined round trip at most, bounded
//! by `cluster.timeout_ms`; when Redis is away or slow the call answers
//! "decide locally" and the replica goes on with its own state. What the
//! engine hands over without waiting (breaker transitions, health results,
//! definition changes) goes to an outbox that the sync task flushes at once
//! (woken) and keeps while Redis is away, so it converges when Redis comes
//! back. The sync task also reads, every `cluster.sync_interval_ms`, what
//! other replicas shared: that interval is the staleness bound.
//!
//! Keys (all under `<prefix>:`):
//!
//! | key | what |
//! |---|---|
//! | `seq`, `events` | the event log: a counter and a list of `"<seq> <json>"`, newest first, trimmed to [`EVENT_LOG`] |
//! | `identity` | hash: the cluster's `name`, the `fingerprint` of the config that seeded its definitions, the `replica` that set it and when (`at`) |
//! | `breakers` | hash: breaker key → its latest transition (for a replica that (re)joins); closed and expired entries are swept at resync |
//! | `forces` | hash: breaker key → an operator's force (`{"force":"open","at":…}`), releases kept as `release` |
//! | `probe:<key>:<episode>`, `passed:<key>:<episode>` | half-open permits taken and probes passed, cluster-wide |
//! | `quota:<product/env/tag>` | the quota rotation's ticket counter |
//! | `lease:<product/env/tag>` | the healthcheck lease: the holder's replica name |
//! | `cache:<product>/<cache>/<sha256>` | a result cache entry, with its TTL |
//! | `idem/<sha256>` | an idempotency record: `running <until> <fence> <pin>`, `pinned <pin>` or `done <outcome>` (fenced writes) |
//! | `defs`, `deleted` | hash: `product/kind/tag` → definition JSON; tombstones of deletes |
//! | `drains` | hash: `product/provider` → 1 drained, 0 restored |
//! | `replicas` | sorted set: replica → last heartbeat (Unix ms) |

mod tokens;

use crate::config::{ClusterConfig, Mismatch};
use redis::aio::MultiplexedConnection;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use switchyard_engine::{
    BoxFuture, Claim, Definition, Force, HealthKey, Kind, Pin, ProbeOutcome, Record, Records,
    Recover, RecoverRw, Settlement, Shared, SharedBreaker, Switchyard,
};

/// What the link needs of the replica it serves (the deployment implements
/// it), so this module does not depend on the deployment that owns it.
pub trait Local: Send + Sync + 'static {
    /// The replica's engine.
    fn yard(&self) -> &Switchyard;
    /// Every definition it holds as `(key, definition, from the config)`,
    /// and whether the config's copies win (`server.seed = "overwrite"`).
    fn cluster_seeds(&self) -> (Vec<(String, Definition, bool)>, bool);
    /// Make its copy of a definition the cluster's (`None`: deleted).
    fn apply_shared_definition(
        &self,
        product: &str,
        kind: Kind,
        tag: &str,
        def: Option<Definition>,
    );
    /// What this replica keeps of the API's tokens, as JSON by name (the
    /// first replica of a cluster shares them).
    fn local_tokens(&self) -> Vec<(String, String)>;
    /// Make the cluster's API tokens (JSON by name) this replica's.
    fn apply_shared_tokens(&self, tokens: Vec<(String, String)>);
    /// Take in another replica's drain or restore.
    fn apply_shared_drain(&self, product: &str, provider: &str, drained: bool);
    /// Take in another replica's force or release (also one the cluster
    /// kept while this replica was away).
    fn apply_shared_force(&self, key: &str, force: Force);
    /// The SHA-256 of the definitions its config file holds (canonical
    /// JSON, sorted by key): what replicas compare when they join.
    fn config_fingerprint(&self) -> String;
}

/// Events kept in the shared log; a replica further behind than this
/// resynchronises from the full state instead.
pub const EVENT_LOG: usize = 1_024;
/// Events a replica keeps for Redis while it is away; past it the oldest
/// are dropped (counted) and the full push at reconnect covers breakers.
pub const OUTBOX: usize = 10_000;
/// The bound of the sync task's own round trips (see `Cluster::sync`).
const SYNC_TIMEOUT: Duration = Duration::from_secs(2);
/// Events read per sync round trip; a replica further behind reads on, up
/// to [`EVENT_LOG`], before it resynchronises.
const READ_BATCH: isize = 256;
/// Events written per flush round trip (the rest follow at once, in
/// order), so a large push after an outage is never one huge pipeline.
const FLUSH_BATCH: usize = 512;
/// A closed or expired breaker entry older than this is swept from the
/// shared hash at resync (its replicas closed it long ago).
const BREAKER_ENTRY_KEPT_MS: u64 = 10 * 60 * 1000;

/// A record settlement waiting for Redis: key, fence, mode (`set`, `free`,
/// `release`), the record's new text, its TTL.
type Settle = (String, String, &'static str, String, Duration);

/// One thing a replica shares through the event log.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Event {
    /// The replica that made it.
    r: String,
    #[serde(flatten)]
    what: What,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "kebab-case")]
enum What {
    Breaker {
        key: String,
        change: SharedBreaker,
    },
    Health {
        key: [String; 3],
        outcome: ProbeOutcome,
    },
    Definition {
        key: String,
    },
    Drain {
        product: String,
        provider: String,
        drained: bool,
    },
    Force {
        key: String,
        force: Force,
    },
    /// The API tokens changed: read the `tokens` hash again.
    Tokens,
}

/// An operator's force as the `forces` hash keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ForceEntry {
    force: Force,
    /// Unix ms of the operator's action.
    at: u64,
}

/// How a replica's join went.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Join {
    /// The cluster was new, or its config's fingerprint matches ours.
    Agrees,
    /// This replica's config won (`server.seed = "overwrite"`).
    Overwrote,
    /// The configs differ: this replica serves the cluster's definitions
    /// and writes none of its config's (`read-only`).
    ReadOnly(String),
    /// Another cluster name, or a differing config under
    /// `on_mismatch = "refuse"`: this replica does not join.
    Refused(String),
}

/// How the link to Redis stands.
#[derive(Debug, Clone)]
struct Status {
    up: bool,
    since: SystemTime,
    last_error: Option<String>,
}

/// Counters `/metrics` shows.
#[derive(Debug, Default)]
struct Counters {
    errors: AtomicU64,
    timeouts: AtomicU64,
    local_decisions: AtomicU64,
    sent: AtomicU64,
    applied: AtomicU64,
    dropped: AtomicU64,
    resyncs: AtomicU64,
    swept: AtomicU64,
}

/// A replica's link to the cluster.
pub struct Cluster {
    client: redis::Client,
    prefix: String,
    replica: String,
    timeout: Duration,
    sync_interval: Duration,
    conn: RwLock<Option<MultiplexedConnection>>,
    status: Mutex<Status>,
    outbox: Mutex<VecDeque<Event>>,
    /// Definitions changed here and not yet in Redis (`product/kind/tag`).
    pending_defs: Mutex<BTreeSet<String>>,
    /// Settlements of records Redis could not take when their runs ended
    /// ([`Settle`]): written at the next flush,
    /// fenced, so a retry after Redis is back gets them and a claim that
    /// landed after its caller stopped waiting does not hold the key.
    settles: Mutex<VecDeque<Settle>>,
    wake: tokio::sync::Notify,
    /// The newest event seq applied.
    seen: AtomicU64,
    replicas: AtomicU32,
    counters: Counters,
    /// The cluster's name (`cluster.name`, default the prefix).
    name: String,
    /// What a replica whose config differs does.
    on_mismatch: Mismatch,
    /// How the last join went (`None`: not joined yet).
    joined: Mutex<Option<Join>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("replica", &self.replica)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// The key of a definition in the shared hash.
pub fn def_key(product: &str, kind: Kind, tag: &str) -> String {
    format!("{product}/{}/{tag}", kind.plural())
}

fn parse_def_key(k: &str) -> Option<(String, Kind, String)> {
    let mut it = k.splitn(3, '/');
    let (p, kinds, t) = (it.next()?, it.next()?, it.next()?);
    let kind = Kind::from_plural(kinds)?;
    Some((p.to_string(), kind, t.to_string()))
}

const PUBLISH: &str = r"
local n = redis.call('INCR', KEYS[1])
redis.call('LPUSH', KEYS[2], n .. ' ' .. ARGV[1])
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[2]) - 1)
return n";

// The idempotency record's state machine (the engine's `Record`), as
// scripts: `running <until> <fence> <pin|->`, `pinned <pin>`, `done <outcome>`.
// CLAIM: ARGV fence, now ms, until ms, ttl ms.
const CLAIM: &str = r"
local v = redis.call('GET', KEYS[1])
local function take(pin)
  local px = math.max(tonumber(ARGV[4]), tonumber(ARGV[3]) - tonumber(ARGV[2]), 1)
  redis.call('SET', KEYS[1], 'running ' .. ARGV[3] .. ' ' .. ARGV[1] .. ' ' .. pin, 'PX', string.format('%d', px))
  return 'claimed ' .. pin
end
if not v then return take('-') end
if string.sub(v, 1, 5) == 'done ' then return v end
if string.sub(v, 1, 7) == 'pinned ' then return take(string.sub(v, 8)) end
local held, fence, pin = string.match(v, '^running (%d+) (%S+) (.*)$')
if held and tonumber(held) <= tonumber(ARGV[2]) then return take(pin) end
return 'running'";

// PIN: ARGV fence, pin JSON. Only the fence's holder writes.
const PIN: &str = r"
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local held, fence = string.match(v, '^running (%d+) (%S+) ')
if fence ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], 'running ' .. held .. ' ' .. fence .. ' ' .. ARGV[2], 'KEEPTTL')
return 1";

// SETTLE: ARGV fence, mode (`set`, `free`, `release`), value, ttl ms. A
// record held by another fence, or already settled, is left alone;
// `release` gives back a pin the claim took over from a dead run.
const SETTLE: &str = r"
local v = redis.call('GET', KEYS[1])
local pin = nil
if v then
  local fence, p = string.match(v, '^running %d+ (%S+) (.*)$')
  if fence ~= ARGV[1] then return 0 end
  pin = p
end
if ARGV[2] == 'set' then
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
elseif v then
  if ARGV[2] == 'release' and pin and pin ~= '-' then
    redis.call('SET', KEYS[1], 'pinned ' .. pin, 'PX', ARGV[4])
  else
    redis.call('DEL', KEYS[1])
  end
end
return 1";

// IDENTITY: KEYS identity; ARGV name, fingerprint, replica, at ms,
// overwrite (1/0). Answers [verdict, fingerprint, replica, at] of the
// cluster as it stood: `new`, `same`, `overwrote`, `differs` or `name`.
const IDENTITY: &str = r"
local h = redis.call('HMGET', KEYS[1], 'name', 'fingerprint', 'replica', 'at')
local function set()
  redis.call('HSET', KEYS[1], 'name', ARGV[1], 'fingerprint', ARGV[2], 'replica', ARGV[3], 'at', ARGV[4])
end
if not h[1] then set() return {'new', ARGV[2], ARGV[3], ARGV[4]} end
if h[1] ~= ARGV[1] then return {'name', h[1], h[3] or '', h[4] or ''} end
if h[2] == ARGV[2] then return {'same', h[2], h[3] or '', h[4] or ''} end
if ARGV[5] == '1' then set() return {'overwrote', h[2] or '', h[3] or '', h[4] or ''} end
return {'differs', h[2] or '', h[3] or '', h[4] or ''}";

// SEED: KEYS defs, deleted, seq, events; ARGV field, definition JSON, mode
// (`set`: ours wins; `nx`: only if the cluster lacks it), event JSON, log
// size. A write that changes the shared copy publishes its event, so every
// replica takes it in (a join's writes included).
const SEED: &str = r"
local changed = 0
if ARGV[3] == 'set' then
  if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then
    redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
    changed = 1
  end
  redis.call('HDEL', KEYS[2], ARGV[1])
else
  changed = redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
end
if changed == 1 then
  local n = redis.call('INCR', KEYS[3])
  redis.call('LPUSH', KEYS[4], n .. ' ' .. ARGV[4])
  redis.call('LTRIM', KEYS[4], 0, tonumber(ARGV[5]) - 1)
end
return changed";

// DELIF: delete hash field ARGV[1] only while it still holds ARGV[2] (a
// sweep never removes a newer entry written meanwhile).
const DELIF: &str = r"
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0";

const LEASE: &str = r"
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if not v then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
return 0";

const COUNT: &str = r"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n";

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

    fn key(&self, rest: &str) -> String {
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

    fn connection(&self) -> Option<MultiplexedConnection> {
        self.conn.reading().clone()
    }

    fn went_down(&self, why: String) {
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
    async fn call<T, F, Fut>(&self, f: F) -> Option<T>
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
    async fn sync<T, F, Fut>(&self, f: F) -> Option<T>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        self.call_within(SYNC_TIMEOUT, f).await
    }

    /// The bound of what keeps a caller's retry safe (claiming and settling
    /// an idempotency record): ten decision timeouts, at least 250 ms and
    /// at most 1 s, so a busy Redis does not turn into a second charge.
    fn record_timeout(&self) -> Duration {
        (self.timeout * 10).clamp(Duration::from_millis(250), Duration::from_secs(1))
    }

    async fn call_within<T, F, Fut>(&self, bound: Duration, f: F) -> Option<T>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let conn = self.connection()?;
        match tokio::time::timeout(bound, f(conn)).await {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) => {
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
                if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() {
                    self.went_down(e.to_string());
                }
                None
            }
            Err(_) => {
                self.counters.timeouts.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    fn push(&self, what: What) {
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

    /// Connect, join, converge, then keep in step until the deployment
    /// goes. Call once; the returned task stops when dropped or aborted.
    pub fn spawn(self: &Arc<Self>, deployment: &Arc<dyn Local>) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        let d = Arc::downgrade(deployment);
        tokio::spawn(async move { me.run(d).await })
    }

    /// Connect and converge once, waiting at most `within`: `serve` calls
    /// this before it listens, so a fresh replica starts with the cluster's
    /// definitions and open breakers.
    /// `Err` when the cluster refused this replica (another cluster's
    /// name, or a differing config under `on_mismatch = "refuse"`):
    /// `serve` stops with it rather than serve beside the cluster.
    pub async fn join(&self, deployment: &dyn Local, within: Duration) -> Result<bool, String> {
        let joined = tokio::time::timeout(within, async {
            if self.connect().await {
                self.converge(deployment).await;
            }
        })
        .await
        .is_ok()
            && self.is_up();
        match self.refused() {
            Some(why) => Err(why),
            None => Ok(joined),
        }
    }

    async fn run(self: Arc<Self>, deployment: Weak<dyn Local>) {
        loop {
            let Some(d) = deployment.upgrade() else {
                return;
            };
            if self.connection().is_none() && self.refused().is_none() && self.connect().await {
                self.converge(&*d).await;
            }
            if self.connection().is_some() && self.refused().is_none() {
                self.flush(&*d).await;
                self.pull(&*d).await;
            }
            drop(d);
            let _ = tokio::time::timeout(self.sync_interval, self.wake.notified()).await;
        }
    }

    async fn connect(&self) -> bool {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Duration::from_secs(1))
            .set_response_timeout(Duration::from_secs(2));
        match self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
        {
            Ok(c) => {
                *self.conn.writing() = Some(c);
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

    /// Compare this replica's cluster name and config with the cluster's
    /// (`identity`), and record the verdict. `None`: Redis did not answer.
    async fn identify(&self, d: &dyn Local, overwrite: bool) -> Option<Join> {
        let fingerprint = d.config_fingerprint();
        let args = [
            self.name.clone(),
            fingerprint.clone(),
            self.replica.clone(),
            now_ms().to_string(),
            if overwrite { "1" } else { "0" }.to_string(),
        ];
        let key = self.key("identity");
        let answer = self
            .sync(|mut c| async move {
                redis::cmd("EVAL")
                    .arg(IDENTITY)
                    .arg(1)
                    .arg(key)
                    .arg(&args[..])
                    .query_async::<Vec<String>>(&mut c)
                    .await
            })
            .await?;
        let [verdict, theirs, by, at] = <[String; 4]>::try_from(answer).ok()?;
        let short = |f: &str| f.get(..12).unwrap_or(f).to_string();
        let whose = format!(
            "the cluster's definitions were seeded by replica `{by}` (unix ms {at}) from a config with fingerprint {}, this replica's config has {}",
            short(&theirs),
            short(&fingerprint)
        );
        let join = match verdict.as_str() {
            "new" | "same" => Join::Agrees,
            "overwrote" => {
                eprintln!(
                    "cluster: WARNING: replica `{}` replaced the cluster's definitions with its config's (server.seed = \"overwrite\"): {whose}",
                    self.replica
                );
                Join::Overwrote
            }
            "name" => Join::Refused(format!(
                "prefix `{}` in Redis belongs to cluster `{theirs}`, this replica's cluster.name is `{}`; give each cluster its own cluster.prefix, or set cluster.name = \"{theirs}\" if this replica belongs to it",
                self.prefix, self.name
            )),
            _ if self.on_mismatch == Mismatch::Refuse => Join::Refused(format!(
                "{whose}; deploy the same config to every replica, or start one replica with server.seed = \"overwrite\" to make its config the cluster's (cluster.on_mismatch = \"refuse\")"
            )),
            _ => Join::ReadOnly(format!(
                "{whose}; this replica serves the cluster's definitions and writes none of its config's (cluster.on_mismatch = \"read-only\"); deploy the same config, or start one replica with server.seed = \"overwrite\" to make its config the cluster's"
            )),
        };
        let before = self.joined.locked().replace(join.clone());
        if before.as_ref() != Some(&join) {
            match &join {
                Join::Refused(why) => eprintln!(
                    "cluster: REFUSED: replica `{}` does not join cluster `{}`: {why}",
                    self.replica, self.name
                ),
                Join::ReadOnly(why) => eprintln!("cluster: WARNING: config differs: {why}"),
                _ => {}
            }
        }
        Some(join)
    }

    /// After (re)connecting: check the cluster's identity, push what this
    /// replica holds that the cluster lacks (its definitions as the seeding
    /// rule says, its open breakers and forces the shared hashes do not
    /// hold), then take in the cluster's whole state. Nothing the cluster
    /// already holds is announced again, so replicas that resynchronise
    /// together do not make each other fall behind.
    async fn converge(&self, d: &dyn Local) {
        self.counters.resyncs.fetch_add(1, Ordering::Relaxed);
        let (seeds, overwrite) = d.cluster_seeds();
        let Some(join) = self.identify(d, overwrite).await else {
            return;
        };
        if let Join::Refused(_) = join {
            *self.conn.writing() = None;
            return;
        }
        let read_only = matches!(join, Join::ReadOnly(_));
        let defs_key = self.key("defs");
        let deleted_key = self.key("deleted");
        let pending: BTreeSet<String> = self.pending_defs.locked().clone();
        // Deletes made while this replica was away: its store's copies of
        // those must not come back (the config's own do, as they would
        // on one process: the config seeds what the store lacks).
        let dk = deleted_key.clone();
        let Some(deleted) = self
            .sync(|mut c| async move {
                redis::cmd("HGETALL")
                    .arg(dk)
                    .query_async::<HashMap<String, String>>(&mut c)
                    .await
            })
            .await
        else {
            return;
        };
        let mut pipe = redis::pipe();
        let (seq, log) = (self.key("seq"), self.key("events"));
        for (k, def, from_config) in &seeds {
            let Ok(json) = serde_json::to_string(def) else {
                continue;
            };
            let mode = if pending.contains(k) || (*from_config && overwrite) {
                "set"
            } else if !read_only && (*from_config || !deleted.contains_key(k)) {
                "nx"
            } else {
                continue;
            };
            let Ok(event) = serde_json::to_string(&Event {
                r: self.replica.clone(),
                what: What::Definition { key: k.clone() },
            }) else {
                continue;
            };
            pipe.cmd("EVAL")
                .arg(SEED)
                .arg(4)
                .arg(&defs_key)
                .arg(&deleted_key)
                .arg(&seq)
                .arg(&log)
                .arg(k)
                .arg(json)
                .arg(mode)
                .arg(event)
                .arg(EVENT_LOG)
                .ignore();
        }
        pipe.hgetall(&defs_key)
            .hgetall(self.key("breakers"))
            .hgetall(self.key("drains"))
            .hgetall(self.key("forces"));
        pipe.get(&seq);
        let Some((defs, breakers, drains, forces, seq)) = self
            .sync(|mut c| async move {
                pipe.query_async::<(
                    HashMap<String, String>,
                    HashMap<String, String>,
                    HashMap<String, u8>,
                    HashMap<String, String>,
                    Option<u64>,
                )>(&mut c)
                    .await
            })
            .await
        else {
            return;
        };
        for (k, drained) in drains {
            if let Some((product, provider)) = k.split_once('/') {
                d.apply_shared_drain(product, provider, drained == 1);
            }
        }
        let mut shared_defs: HashMap<String, Definition> = HashMap::new();
        for (k, json) in defs {
            match serde_json::from_str::<Definition>(&json) {
                Ok(def) => {
                    shared_defs.insert(k, def);
                }
                Err(e) => eprintln!("cluster: shared definition `{k}` unreadable, skipped: {e}"),
            }
        }
        for k in deleted.keys() {
            if !shared_defs.contains_key(k)
                && let Some((p, kind, t)) = parse_def_key(k)
            {
                d.apply_shared_definition(&p, kind, &t, None);
            }
        }
        for (k, def) in &shared_defs {
            if let Some((p, kind, t)) = parse_def_key(k) {
                d.apply_shared_definition(&p, kind, &t, Some(def.clone()));
            }
        }
        // Pending changes stay pending: the flush that follows announces
        // them, so replicas that converged earlier take them in too.
        //
        // Forces: the cluster's are durable state (a release is kept as
        // one), so they apply whatever their age; ours that the cluster
        // has never seen (kept in this replica's store while Redis lost
        // them) are shared.
        for (k, json) in &forces {
            match serde_json::from_str::<ForceEntry>(json) {
                Ok(e) => d.apply_shared_force(k, e.force),
                Err(e) => eprintln!("cluster: shared force on `{k}` unreadable, skipped: {e}"),
            }
        }
        for (key, force) in d.yard().forces() {
            if !forces.contains_key(&key) {
                self.push(What::Force { key, force });
            }
        }
        // Breakers: take in the others' openings still in force, sweep the
        // entries that ended long ago, then share ours the hash lacks.
        let now = now_ms();
        let mut sweep = Vec::new();
        let mut held: HashMap<String, SharedBreaker> = HashMap::new();
        for (k, json) in breakers {
            let Ok(change) = serde_json::from_str::<SharedBreaker>(&json) else {
                sweep.push((k, json));
                continue;
            };
            let age = now.saturating_sub(change.episode);
            let in_force = change.open && age < change.open_timeout_ms.saturating_mul(2);
            if !change.open || in_force {
                d.yard().apply_shared_breaker(&k, &change);
            }
            if !in_force && age > BREAKER_ENTRY_KEPT_MS {
                sweep.push((k, json));
            } else {
                held.insert(k, change);
            }
        }
        for (key, change) in d.yard().shared_openings() {
            let known = held.get(&key).is_some_and(|h| h.episode >= change.episode);
            let in_force =
                now.saturating_sub(change.episode) < change.open_timeout_ms.saturating_mul(2);
            if !known && in_force {
                self.push(What::Breaker { key, change });
            }
        }
        if !sweep.is_empty() {
            let mut pipe = redis::pipe();
            for (k, json) in &sweep {
                pipe.cmd("EVAL")
                    .arg(DELIF)
                    .arg(1)
                    .arg(self.key("breakers"))
                    .arg(k)
                    .arg(json);
            }
            if let Some(n) = self
                .sync(|mut c| async move { pipe.query_async::<Vec<u64>>(&mut c).await })
                .await
            {
                self.counters
                    .swept
                    .fetch_add(n.iter().sum(), Ordering::Relaxed);
            }
        }
        self.converge_tokens(d).await;
        self.seen.store(seq.unwrap_or(0), Ordering::Relaxed);
    }

    /// Write the outbox and pending definitions in one pipeline.
    async fn flush(&self, d: &dyn Local) {
        let events: Vec<Event> = {
            let mut out = self.outbox.locked();
            let n = out.len().min(FLUSH_BATCH);
            let batch = out.drain(..n).collect();
            if !out.is_empty() {
                // The rest goes in the next round trip, at once.
                self.wake.notify_one();
            }
            batch
        };
        let pending: Vec<String> = self.pending_defs.locked().iter().cloned().collect();
        let settles: Vec<Settle> = self.settles.locked().drain(..).collect();
        if events.is_empty() && pending.is_empty() && settles.is_empty() {
            return;
        }
        let mut pipe = redis::pipe();
        for (k, fence, mode, value, ttl) in &settles {
            pipe.cmd("EVAL")
                .arg(SETTLE)
                .arg(1)
                .arg(self.key(k))
                .arg(fence)
                .arg(*mode)
                .arg(value)
                .arg(ms(*ttl))
                .ignore();
        }
        let (seq, log, defs, deleted) = (
            self.key("seq"),
            self.key("events"),
            self.key("defs"),
            self.key("deleted"),
        );
        let publish = |pipe: &mut redis::Pipeline, e: &Event| {
            if let Ok(json) = serde_json::to_string(e) {
                pipe.cmd("EVAL")
                    .arg(PUBLISH)
                    .arg(2)
                    .arg(&seq)
                    .arg(&log)
                    .arg(json)
                    .arg(EVENT_LOG)
                    .ignore();
            }
        };
        for e in &events {
            match &e.what {
                What::Breaker { key, change } => {
                    if let Ok(json) = serde_json::to_string(change) {
                        pipe.hset(self.key("breakers"), key, json).ignore();
                    }
                }
                // Restores are kept too, so a replica that was away when a
                // drain ended does not keep it.
                What::Drain {
                    product,
                    provider,
                    drained,
                } => {
                    pipe.hset(
                        self.key("drains"),
                        format!("{product}/{provider}"),
                        u8::from(*drained),
                    )
                    .ignore();
                }
                // Forces are durable state: kept until released, and the
                // release is kept too, so a replica that was away applies it.
                What::Force { key, force } => {
                    if let Ok(json) = serde_json::to_string(&ForceEntry {
                        force: *force,
                        at: now_ms(),
                    }) {
                        pipe.hset(self.key("forces"), key, json).ignore();
                    }
                }
                _ => {}
            }
            publish(&mut pipe, e);
        }
        for k in &pending {
            let Some((p, kind, t)) = parse_def_key(k) else {
                continue;
            };
            match d.yard().fetch(&p, kind, &t) {
                Some(def) => {
                    let Ok(json) = serde_json::to_string(&def) else {
                        continue;
                    };
                    pipe.hset(&defs, k, json)
                        .ignore()
                        .hdel(&deleted, k)
                        .ignore();
                }
                None => {
                    pipe.hdel(&defs, k)
                        .ignore()
                        .hset(&deleted, k, now_ms())
                        .ignore();
                }
            }
            publish(
                &mut pipe,
                &Event {
                    r: self.replica.clone(),
                    what: What::Definition { key: k.clone() },
                },
            );
        }
        let sent = events.len() + pending.len();
        let ok = self
            .sync(|mut c| async move { pipe.query_async::<()>(&mut c).await })
            .await;
        if ok.is_some() {
            self.counters.sent.fetch_add(sent as u64, Ordering::Relaxed);
            let mut p = self.pending_defs.locked();
            for k in &pending {
                p.remove(k);
            }
        } else {
            let mut kept = self.settles.locked();
            kept.extend(settles);
            while kept.len() > OUTBOX {
                kept.pop_front();
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
            drop(kept);
            // Keep them, in order, ahead of anything pushed meanwhile.
            let mut out = self.outbox.locked();
            for e in events.into_iter().rev() {
                out.push_front(e);
            }
            while out.len() > OUTBOX {
                out.pop_front();
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Heartbeat, count the live replicas, and apply the others' events.
    async fn pull(&self, d: &dyn Local) {
        let now = now_ms();
        let live_after = now.saturating_sub(ms(self.sync_interval).saturating_mul(3).max(1_000));
        let replicas = self.key("replicas");
        let mut pipe = redis::pipe();
        pipe.zadd(&replicas, &self.replica, now)
            .ignore()
            .zrembyscore(&replicas, 0, live_after)
            .ignore()
            .zcard(&replicas)
            .get(self.key("seq"))
            .lrange(self.key("events"), 0, READ_BATCH - 1);
        let Some((live, seq, recent)) = self
            .sync(|mut c| async move {
                pipe.query_async::<(u32, Option<u64>, Vec<String>)>(&mut c)
                    .await
            })
            .await
        else {
            return;
        };
        self.replicas.store(live.max(1), Ordering::Relaxed);
        d.yard().set_replicas(live.max(1));
        let seq = seq.unwrap_or(0);
        let seen = self.seen.load(Ordering::Relaxed);
        if seq <= seen {
            if seq < seen {
                // Redis lost its log (restarted without persistence).
                self.seen.store(seq, Ordering::Relaxed);
            }
            return;
        }
        let mut recent = recent;
        let behind = seq.saturating_sub(seen);
        let read = u64::try_from(READ_BATCH).unwrap_or(256);
        if behind > read && behind <= EVENT_LOG as u64 {
            // Behind more than one batch but still within the log: read
            // on rather than resynchronise (a resync costs every replica
            // the whole state).
            let (log, from, to) = (self.key("events"), READ_BATCH, behind as isize - 1);
            let Some(more) = self
                .sync(|mut c| async move {
                    redis::cmd("LRANGE")
                        .arg(log)
                        .arg(from)
                        .arg(to)
                        .query_async::<Vec<String>>(&mut c)
                        .await
                })
                .await
            else {
                return;
            };
            recent.extend(more);
        }
        let mut batch: Vec<(u64, Event)> = recent
            .iter()
            .filter_map(|line| {
                let (n, json) = line.split_once(' ')?;
                let n = n.parse::<u64>().ok()?;
                (n > seen).then(|| serde_json::from_str::<Event>(json).ok().map(|e| (n, e)))?
            })
            .collect();
        batch.sort_by_key(|(n, _)| *n);
        batch.dedup_by_key(|(n, _)| *n);
        let oldest = batch.first().map_or(seq, |(n, _)| *n);
        if oldest > seen + 1 {
            // Fell behind what was read (or the log was trimmed): take the
            // whole state instead.
            self.converge(d).await;
            return;
        }
        for (_, e) in batch {
            if e.r == self.replica {
                continue;
            }
            self.apply(d, e.what).await;
            self.counters.applied.fetch_add(1, Ordering::Relaxed);
        }
        self.seen.store(seq, Ordering::Relaxed);
    }

    async fn apply(&self, d: &dyn Local, what: What) {
        match what {
            What::Breaker { key, change } => {
                d.yard().apply_shared_breaker(&key, &change);
            }
            What::Health { key, outcome } => {
                let [product, env, tag] = key;
                d.yard()
                    .apply_shared_health(&HealthKey { product, env, tag }, outcome);
            }
            What::Drain {
                product,
                provider,
                drained,
            } => d.apply_shared_drain(&product, &provider, drained),
            What::Force { key, force } => d.apply_shared_force(&key, force),
            What::Tokens => self.pull_tokens(d).await,
            What::Definition { key } => {
                let Some((p, kind, t)) = parse_def_key(&key) else {
                    return;
                };
                let field = key.clone();
                let defs = self.key("defs");
                let Some(json) = self
                    .sync(|mut c| async move {
                        redis::cmd("HGET")
                            .arg(defs)
                            .arg(field)
                            .query_async::<Option<String>>(&mut c)
                            .await
                    })
                    .await
                else {
                    return;
                };
                let def = match json.map(|j| serde_json::from_str::<Definition>(&j)) {
                    None => None,
                    Some(Ok(def)) => Some(def),
                    Some(Err(e)) => {
                        eprintln!("cluster: shared definition `{key}` unreadable, skipped: {e}");
                        return;
                    }
                };
                d.apply_shared_definition(&p, kind, &t, def);
            }
        }
    }

    async fn script_int(
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

impl Shared for Cluster {
    fn breaker_changed(&self, key: &str, change: &SharedBreaker) {
        self.push(What::Breaker {
            key: key.to_string(),
            change: change.clone(),
        });
    }

    fn force_changed(&self, key: &str, force: Force) {
        self.push(What::Force {
            key: key.to_string(),
            force,
        });
    }

    fn probe_permit<'a>(
        &'a self,
        key: &'a str,
        episode: u64,
        permits: u64,
        probe_timeout: Duration,
    ) -> BoxFuture<'a, Option<bool>> {
        Box::pin(async move {
            let n = self
                .script_int(
                    COUNT,
                    self.key(&format!("probe:{key}:{episode}")),
                    vec![ms(probe_timeout).to_string()],
                )
                .await?;
            Some(u64::try_from(n).unwrap_or(u64::MAX) <= permits)
        })
    }

    fn probe_passed<'a>(&'a self, key: &'a str, episode: u64) -> BoxFuture<'a, Option<u64>> {
        Box::pin(async move {
            let n = self
                .script_int(
                    COUNT,
                    self.key(&format!("passed:{key}:{episode}")),
                    vec!["600000".into()],
                )
                .await?;
            u64::try_from(n).ok()
        })
    }

    fn quota_ticket<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Option<u64>> {
        Box::pin(async move {
            let k = self.key(&format!("quota:{key}"));
            let n =
                self.call(|mut c| async move {
                    redis::cmd("INCR").arg(k).query_async::<u64>(&mut c).await
                })
                .await?;
            Some(n.saturating_sub(1))
        })
    }

    fn health_lease<'a>(
        &'a self,
        key: &'a HealthKey,
        ttl: Duration,
    ) -> BoxFuture<'a, Option<bool>> {
        Box::pin(async move {
            let k = self.key(&format!("lease:{}/{}/{}", key.product, key.env, key.tag));
            let n = self
                .script_int(LEASE, k, vec![self.replica.clone(), ms(ttl).to_string()])
                .await?;
            Some(n == 1)
        })
    }

    fn health_result(&self, key: &HealthKey, outcome: &ProbeOutcome) {
        self.push(What::Health {
            key: [key.product.clone(), key.env.clone(), key.tag.clone()],
            outcome: outcome.clone(),
        });
    }

    fn cache_get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Option<String>> {
        Box::pin(async move {
            let k = self.key(key);
            self.call(|mut c| async move {
                redis::cmd("GET")
                    .arg(k)
                    .query_async::<Option<String>>(&mut c)
                    .await
            })
            .await
            .flatten()
        })
    }

    fn cache_put(&self, key: &str, value: String, ttl: Duration) {
        let Some(mut conn) = self.connection() else {
            return;
        };
        let k = self.key(key);
        let bound = self.timeout.saturating_mul(4);
        tokio::spawn(async move {
            let _ = tokio::time::timeout(
                bound,
                redis::cmd("SET")
                    .arg(k)
                    .arg(value)
                    .arg("PX")
                    .arg(ms(ttl))
                    .query_async::<()>(&mut conn),
            )
            .await;
        });
    }
}

impl Records for Cluster {
    fn claim<'a>(
        &'a self,
        key: &'a str,
        fence: &'a str,
        now_ms: u64,
        until_ms: u64,
        ttl: Duration,
    ) -> BoxFuture<'a, Claim> {
        Box::pin(async move {
            let k = self.key(key);
            let args = [
                fence.to_string(),
                now_ms.to_string(),
                until_ms.to_string(),
                ms(ttl).to_string(),
            ];
            let answer = self
                .call_within(self.record_timeout(), |mut c| async move {
                    let mut cmd = redis::cmd("EVAL");
                    cmd.arg(CLAIM).arg(1).arg(k).arg(&args[..]);
                    cmd.query_async::<redis::Value>(&mut c).await
                })
                .await;
            let text = match answer {
                Some(redis::Value::BulkString(b)) => String::from_utf8(b).ok(),
                Some(redis::Value::SimpleString(s)) => Some(s),
                _ => None,
            };
            let Some(text) = text else {
                self.counters
                    .local_decisions
                    .fetch_add(1, Ordering::Relaxed);
                return Claim::Unreachable;
            };
            if let Some(outcome) = text.strip_prefix("done ") {
                return Claim::Done(outcome.to_string());
            }
            match text.strip_prefix("claimed ") {
                Some("-") => Claim::Claimed { pin: None },
                Some(pin) => match serde_json::from_str::<Pin>(pin) {
                    Ok(pin) => Claim::Claimed { pin: Some(pin) },
                    // A pin this replica cannot read is still a pin: the
                    // key stays held rather than run anywhere.
                    Err(_) => Claim::Running,
                },
                None => Claim::Running,
            }
        })
    }

    fn pin<'a>(&'a self, key: &'a str, fence: &'a str, pin: &'a Pin) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            let Ok(json) = serde_json::to_string(pin) else {
                return false;
            };
            let k = self.key(key);
            let fence = fence.to_string();
            self.call_within(self.record_timeout(), |mut c| async move {
                redis::cmd("EVAL")
                    .arg(PIN)
                    .arg(1)
                    .arg(k)
                    .arg(fence)
                    .arg(json)
                    .query_async::<i64>(&mut c)
                    .await
            })
            .await
                == Some(1)
        })
    }

    fn settle<'a>(
        &'a self,
        key: &'a str,
        fence: &'a str,
        settlement: Settlement,
        _now_ms: u64,
        ttl: Duration,
    ) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            let (mode, value) = match settlement {
                Settlement::Done(o) => ("set", Record::Done(o).encode()),
                Settlement::Pinned(p) => ("set", Record::Pinned(p).encode()),
                Settlement::Free => ("free", String::new()),
                Settlement::Release => ("release", String::new()),
            };
            let (k, f, v) = (self.key(key), fence.to_string(), value.clone());
            // Settling may take longer than a decision: it is what makes a
            // later retry safe (see `record_timeout`); if it cannot be
            // written now, it is written, fenced, at the next flush.
            let done = self
                .call_within(self.record_timeout(), |mut c| async move {
                    redis::cmd("EVAL")
                        .arg(SETTLE)
                        .arg(1)
                        .arg(k)
                        .arg(f)
                        .arg(mode)
                        .arg(v)
                        .arg(ms(ttl))
                        .query_async::<i64>(&mut c)
                        .await
                })
                .await;
            if done.is_none() {
                let mut s = self.settles.locked();
                if s.len() >= OUTBOX {
                    s.pop_front();
                    self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                }
                s.push_back((key.to_string(), fence.to_string(), mode, value, ttl));
                self.wake.notify_one();
            }
            done.is_some()
        })
    }
}
