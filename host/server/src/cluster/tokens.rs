//! API tokens shared by the cluster: Redis holds what is kept of each
//! (never the token) in `<prefix>:tokens`, and every replica honours
//! exactly that set. A change is written there first (refused while Redis
//! is away, so no replica keeps a token another revoked) and announced on
//! the event log; replicas read the hash again on the announcement and at
//! every resync.

use super::link::Cluster;
use super::model::{EVENT_LOG, Event, Local, What};
use super::scripts::PUBLISH;

/// A field of the hash that marks it as the cluster's (so an emptied hash
/// is not filled again from a replica's store). Not a valid token name.
const SEEDED: &str = ".seeded";

impl Cluster {
    /// Write token `name` (`Some`: what is kept of it, as JSON; `None`:
    /// revoked) to the cluster and announce it. `Err` when Redis did not
    /// take it: nothing changed anywhere.
    pub async fn share_token(&self, name: &str, json: Option<String>) -> Result<(), String> {
        let event = serde_json::to_string(&Event {
            r: self.replica.clone(),
            what: What::Tokens,
        })
        .map_err(|e| e.to_string())?;
        let mut pipe = redis::pipe();
        pipe.atomic();
        let key = self.key("tokens");
        match &json {
            Some(j) => pipe.hset(&key, name, j).ignore(),
            None => pipe.hdel(&key, name).ignore(),
        };
        pipe.hset(&key, SEEDED, 1).ignore();
        pipe.cmd("EVAL")
            .arg(PUBLISH)
            .arg(2)
            .arg(self.key("seq"))
            .arg(self.key("events"))
            .arg(event)
            .arg(EVENT_LOG)
            .ignore();
        self.sync(|mut c| async move { pipe.query_async::<()>(&mut c).await })
            .await
            .ok_or_else(|| {
                "the cluster's Redis did not answer; tokens change only when every replica can see the change, retry when it is back".to_string()
            })
    }

    /// Read the cluster's tokens and make them this replica's.
    pub(super) async fn pull_tokens(&self, d: &dyn Local) {
        let key = self.key("tokens");
        let Some(all) = self
            .sync(|mut c| async move {
                redis::cmd("HGETALL")
                    .arg(key)
                    .query_async::<Vec<(String, String)>>(&mut c)
                    .await
            })
            .await
        else {
            return;
        };
        if all.iter().any(|(k, _)| k == SEEDED) {
            d.apply_shared_tokens(all.into_iter().filter(|(k, _)| k != SEEDED).collect());
        }
    }

    /// At join and resync: the first replica with tokens shares them (once:
    /// the hash is then the cluster's, emptied or not); every replica then
    /// takes the cluster's set.
    pub(super) async fn converge_tokens(&self, d: &dyn Local) {
        let local = d.local_tokens();
        if !local.is_empty() {
            let key = self.key("tokens");
            let mut cmd = redis::cmd("EVAL");
            cmd.arg(SEED_TOKENS).arg(1).arg(key).arg(SEEDED);
            for (name, json) in &local {
                cmd.arg(name).arg(json);
            }
            let _ = self
                .sync(|mut c| async move { cmd.query_async::<i64>(&mut c).await })
                .await;
        }
        self.pull_tokens(d).await;
    }
}

/// Fill the hash from ARGV (after the marker) when it was never seeded.
const SEED_TOKENS: &str = r"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('HSET', KEYS[1], ARGV[1], 1)
return 1";
