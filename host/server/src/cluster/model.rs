//! What the link shares and keeps: the replica it serves ([`Local`]), the
//! events of the log, the forces and joins it records, the bounds it keeps,
//! and the keys of shared definitions.

use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use switchyard_engine::{Definition, Force, Kind, ProbeOutcome, SharedBreaker, Switchyard};

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
pub(super) const SYNC_TIMEOUT: Duration = Duration::from_secs(2);
/// A connection on which nothing has answered for this long, while calls
/// on it time out, is dropped and made again: a Redis that moved (a
/// failover to a new address) or a path that silently dropped the
/// connection never resets it, and TCP would take many minutes to notice.
/// A stall shorter than this keeps the connection (its queued calls
/// answer when Redis is back).
pub(super) const SILENT_LINK: Duration = Duration::from_secs(5);
/// Events read per sync round trip; a replica further behind reads on, up
/// to [`EVENT_LOG`], before it resynchronises.
pub(super) const READ_BATCH: isize = 256;
/// Events written per flush round trip (the rest follow at once, in
/// order), so a large push after an outage is never one huge pipeline.
pub(super) const FLUSH_BATCH: usize = 512;
/// A closed or expired breaker entry older than this is swept from the
/// shared hash at resync (its replicas closed it long ago).
pub(super) const BREAKER_ENTRY_KEPT_MS: u64 = 10 * 60 * 1000;

/// A record settlement waiting for Redis: key, fence, mode (`set`, `free`,
/// `release`), the record's new text, its TTL.
pub(super) type Settle = (String, String, &'static str, String, Duration);

/// One thing a replica shares through the event log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Event {
    /// The replica that made it.
    pub(super) r: String,
    #[serde(flatten)]
    pub(super) what: What,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "kebab-case")]
pub(super) enum What {
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
pub(super) struct ForceEntry {
    pub(super) force: Force,
    /// Unix ms of the operator's action.
    pub(super) at: u64,
}

/// How a replica's join went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Join {
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

pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub(super) fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// The key of a definition in the shared hash.
pub fn def_key(product: &str, kind: Kind, tag: &str) -> String {
    format!("{product}/{}/{tag}", kind.plural())
}

pub(super) fn parse_def_key(k: &str) -> Option<(String, Kind, String)> {
    let mut it = k.splitn(3, '/');
    let (p, kinds, t) = (it.next()?, it.next()?, it.next()?);
    let kind = Kind::from_plural(kinds)?;
    Some((p.to_string(), kind, t.to_string()))
}
