//! A deployment's provider history: the engine's scorecard minutes written
//! to the store, read back by step with the minutes not yet written
//! (`crate::history` has the rows and the merging).

use super::Deployment;
use crate::history::{Minute, Point, now_unix_ms, points};
use serde_json::Value;
use switchyard_engine::Recover;

/// The engine's minutes after `after` (of scorecard `only`, or all) as
/// rows stamped with wall time.
fn minutes(
    d: &Deployment,
    after: Option<u64>,
    current: bool,
    only: Option<&str>,
) -> (Option<u64>, Vec<Minute>) {
    let m = d.yard.scorecard_minutes(after, current, only);
    let wall = now_unix_ms();
    let rows = m
        .minutes
        .into_iter()
        .map(|s| {
            let mut parts = s.key.splitn(3, '/');
            let product = parts.next().unwrap_or_default().to_string();
            let env = parts.next().unwrap_or_default().to_string();
            let began_ago = m.now_ms.saturating_sub(s.minute.saturating_mul(60_000));
            Minute {
                at_unix_ms: wall.saturating_sub(began_ago),
                key: s.key,
                product,
                env,
                ok: s.ok,
                failed: s.failed,
                rejected: s.rejected,
                latency: s.latency,
            }
        })
        .collect();
    (m.newest, rows)
}

impl Deployment {
    /// Write the minutes the store lacks (with `current`, the minute in
    /// progress too: at a graceful stop), and forget what is older than
    /// `server.history_days` or past `server.history_max_rows`. Returns
    /// how many minutes were written.
    pub fn flush_history(&self, current: bool) -> Result<usize, String> {
        let Some(store) = &self.store else {
            return Ok(0);
        };
        let server = self.config().file.server.clone();
        let mut flushed = self.history_flushed.locked();
        let (newest, rows) = minutes(self, *flushed, current, None);
        if server.history_days > 0 && !rows.is_empty() {
            store.put_history(&rows).map_err(|e| e.to_string())?;
        }
        if newest.is_some() {
            *flushed = newest.max(*flushed);
        }
        drop(flushed);
        let keep_ms = server.history_days.saturating_mul(86_400_000);
        store
            .prune_history(
                now_unix_ms().saturating_sub(keep_ms),
                server.history_max_rows,
            )
            .map_err(|e| e.to_string())?;
        Ok(rows.len())
    }

    /// `key`'s history from `from` to `to` (Unix ms) by `step`: what the
    /// store keeps and the minutes it does not hold yet.
    pub fn history(&self, key: &str, from: u64, to: u64, step: u64) -> Result<Vec<Point>, String> {
        let flushed = *self.history_flushed.locked();
        let mut rows = match &self.store {
            Some(store) => store.history(key, from, to).map_err(|e| e.to_string())?,
            None => Vec::new(),
        };
        let after = if self.store.is_some() { flushed } else { None };
        let (_, fresh) = minutes(self, after, true, Some(key));
        rows.extend(fresh);
        Ok(points(&rows, from, to, step))
    }

    /// Add `last_hour` (one point over the last hour) beside every
    /// `scorecard_key` in `v`: a provider's state as the API shows it.
    pub(crate) fn annotate_history(&self, v: &mut Value) {
        match v {
            Value::Object(o) => {
                if let Some(Value::String(key)) = o.get("scorecard_key") {
                    let to = now_unix_ms();
                    let from = to.saturating_sub(3_600_000);
                    if let Ok(p) = self.history(key, from, to, 3_600_000)
                        && let Some(p) = p.into_iter().next()
                        && let Ok(p) = serde_json::to_value(p)
                    {
                        o.insert("last_hour".into(), p);
                    }
                }
                for x in o.values_mut() {
                    self.annotate_history(x);
                }
            }
            Value::Array(a) => a.iter_mut().for_each(|x| self.annotate_history(x)),
            _ => {}
        }
    }
}
