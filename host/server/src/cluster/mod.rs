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
//! | `scores` | hash: replica → its scorecards' slots of the last 5 minutes, stamped (`{"at", "cards"}`), rewritten once a second |
//!
//! `model.rs`: what is shared and kept; `scripts.rs`: the Lua; `link.rs`:
//! the connection, bounded calls and outbox; `converge.rs`: joining;
//! `sync.rs`: the sync task; `shared.rs`: the engine's ports; `tokens.rs`:
//! API tokens; `scores.rs`: scorecards across replicas.

mod converge;
mod link;
mod model;
mod scores;
mod scripts;
mod shared;
mod sync;
mod tokens;

pub use link::Cluster;
pub use model::{Local, def_key};
