//! Joining and resynchronising: the cluster's identity against this
//! replica's, then the whole shared state taken in and this replica's
//! share of it written.

use super::link::*;
use super::model::*;
use super::scripts::*;
use crate::config::Mismatch;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::Ordering;
use switchyard_engine::{Definition, Recover, RecoverRw, SharedBreaker};

impl Cluster {
    /// Compare this replica's cluster name and config with the cluster's
    /// (`identity`), and record the verdict. `None`: Redis did not answer.
    pub(super) async fn identify(&self, d: &dyn Local, overwrite: bool) -> Option<Join> {
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

    /// The drain keys (`product/provider`) and breaker keys of this
    /// replica's drains and forces waiting in the outbox.
    fn pending_drains_and_forces(&self) -> (HashSet<String>, HashSet<String>) {
        let mut drains = HashSet::new();
        let mut forces = HashSet::new();
        for e in self.outbox.locked().iter() {
            match &e.what {
                What::Drain {
                    product, provider, ..
                } => {
                    drains.insert(format!("{product}/{provider}"));
                }
                What::Force { key, .. } => {
                    forces.insert(key.clone());
                }
                _ => {}
            }
        }
        (drains, forces)
    }

    /// After (re)connecting: check the cluster's identity, push what this
    /// replica holds that the cluster lacks (its definitions as the seeding
    /// rule says, its open breakers and forces the shared hashes do not
    /// hold), then take in the cluster's whole state. Nothing the cluster
    /// already holds is announced again, so replicas that resynchronise
    /// together do not make each other fall behind.
    pub(super) async fn converge(&self, d: &dyn Local) {
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
        // This replica's own drains and forces still in the outbox were
        // made while Redis was away, after what the hashes hold: the flush
        // that follows writes them, so the hashes must not undo them here
        // (an operator's release would otherwise be lost on the replica
        // that made it, while every other replica applies it).
        let (our_drains, our_forces) = self.pending_drains_and_forces();
        for (k, drained) in drains {
            if our_drains.contains(&k) {
                continue;
            }
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
            if our_forces.contains(k) {
                continue;
            }
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
}
