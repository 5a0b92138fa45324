//! Keeping in step: the task that connects, converges, flushes the outbox
//! and reads the event log, and applying what other replicas shared.

use super::link::*;
use super::model::*;
use super::scripts::*;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;
use switchyard_engine::{Definition, HealthKey, Recover};

impl Cluster {
    /// Connect, join, converge, then keep in step until the deployment
    /// goes. Call once; the returned task stops when dropped or aborted.
    pub fn spawn(self: &Arc<Self>, deployment: &Arc<dyn Local>) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        let d = Arc::downgrade(deployment);
        tokio::spawn(async move {
            // Scorecards are shared by a task of their own: a slow round
            // trip of theirs never holds up breakers, forces and
            // definitions.
            let scores = tokio::spawn(me.clone().share_scores_every_second(d.clone()));
            me.run(d).await;
            scores.abort();
        })
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

    pub(super) async fn run(self: Arc<Self>, deployment: Weak<dyn Local>) {
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

    /// Write the outbox and pending definitions in one pipeline.
    pub(super) async fn flush(&self, d: &dyn Local) {
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
    pub(super) async fn pull(&self, d: &dyn Local) {
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

    pub(super) async fn apply(&self, d: &dyn Local, what: What) {
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
}
