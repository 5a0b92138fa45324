//! The engine's ports over Redis: [`Shared`] (breakers, permits, quota
//! tickets, health leases, caches) and [`Records`] (idempotency records,
//! fenced).

use super::link::*;
use super::model::*;
use super::scripts::*;
use std::sync::atomic::Ordering;
use std::time::Duration;
use switchyard_engine::{
    BoxFuture, Claim, Force, HealthKey, Pin, ProbeOutcome, Record, Records, Recover, Settlement,
    Shared, SharedBreaker,
};

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
