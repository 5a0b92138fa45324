//! What the dashboard and other subscribers see: a live snapshot of every
//! product's providers (health with its recent history, breaker, counts,
//! admission, weights, drains), the runs this replica served (kept, newest
//! first, bounded, findable), and operator actions as they happen.

use crate::store::AuditEntry;
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::Mutex;
use switchyard_engine::{Kind, Recover, RunError, RunResult, Switchyard};
use tokio::sync::broadcast;

/// Runs kept for `/v1/runs` and the page.
pub const RUNS_KEPT: usize = 500;
/// Health outcomes per provider in a snapshot (the page's sparkline).
pub const HISTORY_SHOWN: usize = 30;

/// One run this replica served, as `/v1/runs` and the stream show it.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    /// When it ended (Unix ms).
    pub at_unix_ms: u64,
    /// Product, env, kind and tag.
    pub product: String,
    /// Env.
    pub env: String,
    /// `quota`, `fallback` or `feature`.
    pub kind: String,
    /// Tag.
    pub tag: String,
    /// The run's idempotency key (the caller's, or the one it was given).
    pub idempotency_key: String,
    /// `ok` or the error code.
    pub outcome: String,
    /// Who served, if one did.
    pub provider: Option<String>,
    /// How long it took, ms.
    pub duration_ms: f64,
    /// Its explain trace.
    pub trace: Value,
}

/// Something that happened, as the stream sends it.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Event {
    /// A run ended.
    Run(RunRecord),
    /// An operator acted.
    Audit(AuditEntry),
}

impl Event {
    /// The SSE event name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Run(_) => "run",
            Self::Audit(_) => "audit",
        }
    }
}

/// The runs kept and the subscribers.
#[derive(Debug)]
pub struct Hub {
    tx: broadcast::Sender<Event>,
    runs: Mutex<VecDeque<RunRecord>>,
}

impl Default for Hub {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(1_024).0,
            runs: Mutex::new(VecDeque::new()),
        }
    }
}

/// Which runs `/v1/runs` returns.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunFilter {
    /// Only this product.
    pub product: Option<String>,
    /// Only this idempotency key.
    pub key: Option<String>,
    /// Only this tag.
    pub tag: Option<String>,
    /// Only runs this provider served or was tried in.
    pub provider: Option<String>,
    /// Only this outcome (`ok` or an error code).
    pub outcome: Option<String>,
    /// At most this many (default 50, at most [`RUNS_KEPT`]).
    pub limit: Option<usize>,
}

impl Hub {
    /// A new subscriber.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }

    /// Tell subscribers.
    pub fn send(&self, e: Event) {
        let _ = self.tx.send(e);
    }

    /// Keep a run that ended and tell subscribers.
    pub fn record_run(
        &self,
        product: &str,
        env: &str,
        kind: Kind,
        tag: &str,
        result: &Result<RunResult, RunError>,
        duration_ms: f64,
    ) {
        let (key, outcome, provider, trace) = match result {
            Ok(r) => (
                r.idempotency_key.clone(),
                "ok".to_string(),
                r.provider.clone(),
                serde_json::to_value(&r.trace).unwrap_or(Value::Null),
            ),
            Err(e) => (
                e.trace
                    .as_ref()
                    .map(|t| t.idempotency_key.clone())
                    .unwrap_or_default(),
                e.code.as_str().to_string(),
                None,
                e.trace.as_ref().map_or(Value::Null, |t| {
                    serde_json::to_value(t).unwrap_or(Value::Null)
                }),
            ),
        };
        let record = RunRecord {
            at_unix_ms: now_ms(),
            product: product.into(),
            env: env.into(),
            kind: kind.as_str().into(),
            tag: tag.into(),
            idempotency_key: key,
            outcome,
            provider,
            duration_ms,
            trace,
        };
        {
            let mut runs = self.runs.locked();
            runs.push_front(record.clone());
            runs.truncate(RUNS_KEPT);
        }
        self.send(Event::Run(record));
    }

    /// Kept runs matching `f`, newest first.
    pub fn runs(&self, f: &RunFilter) -> Vec<RunRecord> {
        let tried = |r: &RunRecord, p: &str| {
            r.provider.as_deref() == Some(p)
                || r.trace["considered"]
                    .as_array()
                    .is_some_and(|c| c.iter().any(|x| x == p))
        };
        self.runs
            .locked()
            .iter()
            .filter(|r| f.product.as_ref().is_none_or(|p| &r.product == p))
            .filter(|r| f.key.as_ref().is_none_or(|k| &r.idempotency_key == k))
            .filter(|r| f.tag.as_ref().is_none_or(|t| &r.tag == t))
            .filter(|r| f.outcome.as_ref().is_none_or(|o| &r.outcome == o))
            .filter(|r| f.provider.as_ref().is_none_or(|p| tried(r, p)))
            .take(f.limit.unwrap_or(50).min(RUNS_KEPT))
            .cloned()
            .collect()
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Every product and env (`scopes`: each product with its envs), each
/// quota, fallback and feature with its providers' live state, and the
/// cluster's readiness line if any: what the page draws.
pub fn snapshot(
    yard: &Switchyard,
    scopes: &[(String, Vec<String>)],
    cluster: Option<String>,
) -> Value {
    let mut products = Vec::new();
    for (product, envs) in scopes {
        for env in envs {
            let mut defs = Vec::new();
            for def in yard.fetch_all(product, None) {
                let kind = def.kind();
                let tag = def.meta().tag.clone();
                match kind {
                    Kind::Quota | Kind::Fallback => {
                        let Ok(states) = yard.provider_states(product, env, kind, &tag) else {
                            continue;
                        };
                        let providers: Vec<Value> = states
                            .iter()
                            .map(|s| {
                                let mut v = serde_json::to_value(s).unwrap_or(Value::Null);
                                if let Some(h) = s
                                    .healthcheck
                                    .as_ref()
                                    .and_then(|hc| yard.health(product, env, hc))
                                {
                                    let skip = h.history.len().saturating_sub(HISTORY_SHOWN);
                                    v["history"] = json!(h.history[skip..]
                                        .iter()
                                        .map(|o| json!({"at": o.at_unix_ms, "ok": o.ok, "ms": o.latency_ms}))
                                        .collect::<Vec<_>>());
                                }
                                v
                            })
                            .collect();
                        defs.push(json!({"kind": kind.as_str(), "tag": tag, "name": def.meta().name, "providers": providers}));
                    }
                    Kind::Feature => {
                        let v = serde_json::to_value(&def).unwrap_or(Value::Null);
                        let steps: Vec<Value> = v["steps"]
                            .as_array()
                            .map(|s| {
                                s.iter()
                                    .map(|x| json!({"name": x["name"], "type": x["type"], "tag": x["tag"], "app": x["app"], "action": x["action"]}))
                                    .collect()
                            })
                            .unwrap_or_default();
                        defs.push(json!({"kind": "feature", "tag": tag, "name": def.meta().name, "steps": steps}));
                    }
                    _ => {}
                }
            }
            products.push(json!({"product": product, "env": env, "definitions": defs}));
        }
    }
    json!({"at_unix_ms": now_ms(), "products": products, "cluster": cluster})
}
