//! What the dashboard and other subscribers see: a live snapshot of every
//! product's providers (health with its recent history, breaker, counts,
//! admission, weights, drains), the runs this replica served (kept, newest
//! first, bounded, findable), and operator actions as they happen.

use crate::access::Principal;
use crate::store::AuditEntry;
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use switchyard_engine::{Kind, Recover, RunError, RunResult, Switchyard, Trace};
use tokio::sync::{broadcast, watch};

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
    /// Its explain trace (none when the run failed before one began).
    pub trace: Option<Box<Trace>>,
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
    /// Whether `who` may see it: a run of its products and envs; an
    /// audit entry of its products (reloads and token changes only when
    /// it sees everything).
    pub fn visible_to(&self, who: &Principal) -> bool {
        match self {
            Self::Run(r) => who.may(&r.product, Some(&r.env)),
            Self::Audit(a) => audit_visible(a, who),
        }
    }

    /// The SSE event name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Run(_) => "run",
            Self::Audit(_) => "audit",
        }
    }
}

/// Whether `who` may see audit entry `a`.
pub fn audit_visible(a: &AuditEntry, who: &Principal) -> bool {
    if who.sees_all() {
        return true;
    }
    if a.action == "reload" || a.action.starts_with("token-") {
        return false;
    }
    who.products
        .has(a.target.split('/').next().unwrap_or_default())
}

/// One tick of the providers' state, made once and shared by every
/// stream: the whole state (for a stream that starts, or missed a tick)
/// and what changed since the tick before.
#[derive(Debug)]
pub struct Tick {
    /// Counts from 1; a stream that saw tick `n - 1` may send `diff`.
    pub seq: u64,
    /// The `state` event's data.
    pub full: String,
    /// The `state-diff` event's data: `{at_unix_ms, cluster, changed:
    /// [{product, env, definition}], removed: [{product, env, kind, tag}]}`.
    pub diff: String,
    /// `at_unix_ms` and `cluster` as JSON, for the scoped views.
    at: String,
    cluster: String,
    /// Each product and env's entry of `full`, as JSON.
    products: Vec<(String, String, String)>,
    /// Each entry of `changed`, and of `removed`, with its product and env.
    changed: Vec<(String, String, String)>,
    removed: Vec<(String, String, String)>,
}

impl Tick {
    fn join(&self, list: &[(String, String, String)], who: &Principal) -> String {
        let parts: Vec<&str> = list
            .iter()
            .filter(|(p, e, _)| who.may(p, Some(e)))
            .map(|(_, _, j)| j.as_str())
            .collect();
        format!("[{}]", parts.join(","))
    }

    /// The `state` event's data as `who` may see it: only its products
    /// and envs.
    pub fn full_for(&self, who: &Principal) -> String {
        if who.sees_all() {
            return self.full.clone();
        }
        format!(
            "{{\"at_unix_ms\":{},\"cluster\":{},\"products\":{}}}",
            self.at,
            self.cluster,
            self.join(&self.products, who)
        )
    }

    /// The `state-diff` event's data as `who` may see it.
    pub fn diff_for(&self, who: &Principal) -> String {
        if who.sees_all() {
            return self.diff.clone();
        }
        format!(
            "{{\"at_unix_ms\":{},\"changed\":{},\"cluster\":{},\"removed\":{}}}",
            self.at,
            self.join(&self.changed, who),
            self.cluster,
            self.join(&self.removed, who)
        )
    }
}

/// The runs kept and the subscribers.
#[derive(Debug)]
pub struct Hub {
    tx: broadcast::Sender<Event>,
    runs: Mutex<VecDeque<RunRecord>>,
    state: watch::Sender<Option<Arc<Tick>>>,
    /// Each definition's JSON at the last tick, by `product/env/kind/tag`.
    last: Mutex<HashMap<String, String>>,
    /// Whether the task that makes ticks runs.
    pub ticking: AtomicBool,
    /// Streams open now.
    streams: AtomicUsize,
}

impl Default for Hub {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(1_024).0,
            runs: Mutex::new(VecDeque::new()),
            state: watch::channel(None).0,
            last: Mutex::new(HashMap::new()),
            ticking: AtomicBool::new(false),
            streams: AtomicUsize::new(0),
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
    /// Take a place for one more stream, if fewer than `max` are open;
    /// give it back with [`Hub::close_stream`].
    pub fn open_stream(&self, max: usize) -> bool {
        self.streams
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    /// A stream ended.
    pub fn close_stream(&self) {
        let _ = self
            .streams
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    }

    /// Streams open now.
    pub fn streams(&self) -> usize {
        self.streams.load(Ordering::SeqCst)
    }

    /// The ticks of the providers' state.
    pub fn state(&self) -> watch::Receiver<Option<Arc<Tick>>> {
        self.state.subscribe()
    }

    /// Whether any stream watches the ticks.
    pub fn watched(&self) -> bool {
        self.state.receiver_count() > 0
    }

    /// Make the next tick from a [`snapshot`]: the whole of it, and each
    /// definition that changed (or went) since the last tick.
    pub fn tick(&self, snap: &Value) {
        let mut now: HashMap<String, String> = HashMap::new();
        let mut changed = Vec::new();
        let mut last = self.last.locked();
        let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
        let mut products = Vec::new();
        let mut changed_parts = Vec::new();
        for p in snap["products"].as_array().into_iter().flatten() {
            products.push((text(&p["product"]), text(&p["env"]), p.to_string()));
            for d in p["definitions"].as_array().into_iter().flatten() {
                let key = format!(
                    "{}/{}/{}/{}",
                    p["product"].as_str().unwrap_or_default(),
                    p["env"].as_str().unwrap_or_default(),
                    d["kind"].as_str().unwrap_or_default(),
                    d["tag"].as_str().unwrap_or_default()
                );
                let json = d.to_string();
                if last.get(&key) != Some(&json) {
                    let c = json!({"product": p["product"], "env": p["env"], "definition": d});
                    changed_parts.push((text(&p["product"]), text(&p["env"]), c.to_string()));
                    changed.push(c);
                }
                now.insert(key, json);
            }
        }
        let removed: Vec<Value> = last
            .keys()
            .filter(|k| !now.contains_key(*k))
            .filter_map(|k| {
                let mut it = k.splitn(4, '/');
                Some(json!({"product": it.next()?, "env": it.next()?, "kind": it.next()?, "tag": it.next()?}))
            })
            .collect();
        let removed_parts = removed
            .iter()
            .map(|r| (text(&r["product"]), text(&r["env"]), r.to_string()))
            .collect();
        *last = now;
        drop(last);
        let seq = self
            .state
            .borrow()
            .as_ref()
            .map_or(1, |t| t.seq.saturating_add(1));
        let tick = Tick {
            seq,
            full: snap.to_string(),
            diff: json!({
                "at_unix_ms": snap["at_unix_ms"],
                "cluster": snap["cluster"],
                "changed": changed,
                "removed": removed,
            })
            .to_string(),
            at: snap["at_unix_ms"].to_string(),
            cluster: snap["cluster"].to_string(),
            products,
            changed: changed_parts,
            removed: removed_parts,
        };
        self.state.send_replace(Some(Arc::new(tick)));
    }

    /// Forget the last tick (no stream watches): the next stream starts
    /// from a whole state, and nothing is held meanwhile.
    pub fn idle(&self) {
        self.last.locked().clear();
        self.state.send_replace(None);
    }

    /// A new subscriber.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }

    /// Tell subscribers.
    pub fn send(&self, e: Event) {
        let _ = self.tx.send(e);
    }

    /// Keep a run that ended and tell subscribers. Takes the result, so
    /// its trace moves into the record rather than being copied: answer
    /// the caller first.
    pub fn record_run(
        &self,
        product: &str,
        env: &str,
        kind: Kind,
        tag: &str,
        result: Result<RunResult, RunError>,
        duration_ms: f64,
    ) {
        let (key, outcome, provider, trace) = match result {
            Ok(r) => (
                r.idempotency_key,
                "ok".to_string(),
                r.provider,
                Some(Box::new(r.trace)),
            ),
            Err(e) => (
                e.trace
                    .as_ref()
                    .map(|t| t.idempotency_key.clone())
                    .unwrap_or_default(),
                e.code.as_str().to_string(),
                None,
                e.trace,
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
        // A copy for the stream only while someone listens.
        let event = (self.tx.receiver_count() > 0).then(|| Event::Run(record.clone()));
        {
            let mut runs = self.runs.locked();
            if runs.len() >= RUNS_KEPT {
                runs.pop_back();
            }
            runs.push_front(record);
        }
        if let Some(e) = event {
            self.send(e);
        }
    }

    /// Kept runs matching `f`, newest first.
    pub fn runs(&self, f: &RunFilter, who: &Principal) -> Vec<RunRecord> {
        let tried = |r: &RunRecord, p: &str| {
            r.provider.as_deref() == Some(p)
                || r.trace
                    .as_ref()
                    .is_some_and(|t| t.considered.iter().any(|x| x == p))
        };
        self.runs
            .locked()
            .iter()
            .filter(|r| who.may(&r.product, Some(&r.env)))
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
