//! Scorecards across replicas: once a second (or every sync, if slower)
//! a replica writes its own scorecards to `<prefix>:scores` (one field per
//! replica, stamped) and takes in the other live replicas' into its
//! engine, so every replica routes and reports on the outcomes of all.
//! A replica silent for three sync intervals (at least 3 s) is dropped.

use super::link::*;
use super::model::*;
use std::sync::atomic::Ordering;
use std::time::Duration;
use switchyard_engine::SharedScorecard;

/// Largest share one replica writes (its scorecards beyond are left
/// out, the least recently used first) and reads from another.
pub const MAX_SCORES_BYTES: usize = 4 << 20;

/// One replica's field of `<prefix>:scores`, as written.
#[derive(serde::Serialize)]
struct Outgoing<'a> {
    /// When written, Unix ms.
    at: u64,
    cards: &'a [SharedScorecard],
}

/// Another replica's field, as read.
#[derive(serde::Deserialize)]
struct Shared {
    at: u64,
    cards: Vec<SharedScorecard>,
}

impl Cluster {
    /// Once a second, while the deployment lives: share this replica's
    /// scorecards and take in the others'.
    pub(super) async fn share_scores_every_second(
        self: std::sync::Arc<Self>,
        deployment: std::sync::Weak<dyn Local>,
    ) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(d) = deployment.upgrade() else {
                return;
            };
            if self.refused().is_none() {
                self.share_scores(&*d).await;
            }
        }
    }

    /// Share this replica's scorecards and take in the others'.
    pub(super) async fn share_scores(&self, d: &dyn Local) {
        // Only while connected: a replica that lost Redis shares nothing
        // until the sync task has reconnected and caught up.
        if self.connection().is_none() {
            return;
        }
        let now = now_ms();
        let cards = d.yard().scorecards_to_share(now);
        // The most recently used first: past the bound, halve the tail.
        let mut keep = cards.len();
        let body = loop {
            let body = serde_json::to_string(&Outgoing {
                at: now,
                cards: &cards[..keep],
            })
            .unwrap_or_default();
            if body.len() <= MAX_SCORES_BYTES || keep == 0 {
                break body;
            }
            keep /= 2;
        };
        let key = self.key("scores");
        let me = self.replica.clone();
        let Some(all) = self
            .sync(|mut c| async move {
                redis::pipe()
                    .hset(&key, &me, body)
                    .ignore()
                    .hgetall(&key)
                    .query_async::<(std::collections::HashMap<String, Vec<u8>>,)>(&mut c)
                    .await
            })
            .await
        else {
            return;
        };
        let stale = now.saturating_sub(ms(self.sync_interval).saturating_mul(3).max(3_000));
        let mut others = Vec::new();
        let mut gone = Vec::new();
        for (replica, value) in all.0 {
            if replica == self.replica {
                continue;
            }
            if value.len() > MAX_SCORES_BYTES {
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            match serde_json::from_slice::<Shared>(&value) {
                Ok(s) if s.at >= stale => others.push(s.cards),
                Ok(_) => gone.push(replica),
                Err(_) => {
                    self.counters.errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        d.yard().set_remote_scorecards(now_ms(), &others);
        if !gone.is_empty() {
            let key = self.key("scores");
            let _ = self
                .sync(|mut c| async move {
                    redis::cmd("HDEL")
                        .arg(key)
                        .arg(gone)
                        .query_async::<()>(&mut c)
                        .await
                })
                .await;
        }
    }
}
