//! [`Switchyard`]: the engine's front door for embedders. Install apps,
//! define healthchecks / quotas / fallbacks / features / caches (checked
//! and compiled on the spot), run them, read provider state, and drive the
//! healthcheck scheduler.

use super::admission::{AdmissionConfig, AdmissionSnapshot, Gate, OverloadReason};
use super::bounds::MAX_DEADLINE;
use super::breaker::{
    BreakerConfig, BreakerSnapshot, BreakerState, Breakers, Classifier, default_classifier,
};
use super::budget::{BudgetConfig, BudgetToken, RetryBudget};
use super::clock::{Clock, SystemClock};
use super::definition::{DefineError, Definition, HealthcheckDef, Kind};
use super::health::{self, HealthBoard, HealthKey, HealthSnapshot, HealthStatus, ProbeOutcome};
use super::locks::{Recover, RecoverRw};
use super::observer::{AttemptEvent, Observer};
use super::registry::{AppSummary, CompiledRoute, Registry};
use super::result_cache::ResultCache;
use super::retry::{Jitter, RetryPolicy};
use super::run::{ErrorCode, RunError, RunOptions, RunResult};
use super::schema;
use super::trace::Trace;
use super::weighted::SmoothWeighted;
use super::{attempt, fallback, feature, quota};
use crate::adapter::{
    Adapter, AttemptError, BoxFuture, CallRequest, ErrorClass, FailureKind, Session,
};
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// Attempts and outcomes of one app action (in one product and env).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Attempts made.
    pub attempts: u64,
    /// Attempts that succeeded.
    pub successes: u64,
    /// Failed attempts by error class.
    pub failures: BTreeMap<String, u64>,
}

/// Backoff between the tries of one healthcheck round: full jitter,
/// doubling from 100 ms, at most 5 s.
const PROBE_BACKOFF: RetryPolicy = RetryPolicy {
    retries: 0,
    base_ms: 100,
    max_backoff_ms: 5_000,
};

/// What a result-cache entry is keyed by: everything that separates the
/// callers it may be shared between. The kind, tag and env of the run, the
/// caller's session (its tag and a SHA-256 of its token, so two sessions
/// never share an entry and no token is kept in the key), and the input.
/// The idempotency key is not part of it: identical work asked again under
/// a new key is what a cache is for.
fn cache_entry(
    kind: &str,
    tag: &str,
    env: &str,
    session: Option<&Session>,
    input: &Value,
) -> String {
    use sha2::{Digest, Sha256};
    let session = session.map_or_else(
        || "-".to_string(),
        |s| {
            // The tag's length first, so no tag can pose as another
            // tag plus part of a token.
            let token = hex::encode(Sha256::digest(s.token.as_bytes()));
            format!("{}:{}:{token}", s.tag.len(), s.tag)
        },
    );
    format!("{kind}/{tag}/{env}/{session}/{input}")
}

/// The state of one provider of a quota or fallback, as the fetch API
/// shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProviderState {
    /// The provider (option) name.
    pub provider: String,
    /// Its app.
    pub app: String,
    /// Its action.
    pub action: String,
    /// Its quota weight.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    /// Its healthcheck.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<String>,
    /// Unhealthy if its healthcheck failed or its breaker is open; healthy
    /// if its healthcheck passed; unknown otherwise.
    pub status: HealthStatus,
    /// When its healthcheck last ended (Unix ms).
    pub last_checked_unix_ms: Option<u64>,
    /// When its healthcheck last succeeded (Unix ms).
    pub last_available_unix_ms: Option<u64>,
    /// Its breaker (the default `app/action` key).
    pub breaker: BreakerSnapshot,
    /// Its attempt counts.
    pub counts: Counts,
    /// Its app's admission in this env: attempts in flight and queued,
    /// the limits, rate-limit tokens and any provider-requested pause.
    pub admission: AdmissionSnapshot,
}

/// The admission state of one app in one env.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AppAdmission {
    /// Product.
    pub product: String,
    /// Env.
    pub env: String,
    /// App tag.
    pub app: String,
    /// Its state.
    #[serde(flatten)]
    pub state: AdmissionSnapshot,
}

/// One app's gate in one env, with the names it is listed under.
struct GateEntry {
    product: String,
    env: String,
    app: String,
    gate: Arc<Gate>,
}

/// Engine-wide settings.
pub struct SwitchyardBuilder {
    clock: Arc<dyn Clock>,
    breaker: BreakerConfig,
    budget: BudgetConfig,
    admission: AdmissionConfig,
    classifier: Classifier,
    seed: Option<u64>,
    observers: Vec<Arc<dyn Observer>>,
}

impl std::fmt::Debug for SwitchyardBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SwitchyardBuilder")
            .field("breaker", &self.breaker)
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

impl SwitchyardBuilder {
    /// Read time from `clock` (a `ManualClock` in tests).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Breaker settings for every breaker.
    pub fn breaker(mut self, config: BreakerConfig) -> Self {
        self.breaker = config;
        self
    }

    /// Retry budget settings for every app.
    pub fn budget(mut self, config: BudgetConfig) -> Self {
        self.budget = config;
        self
    }

    /// Admission settings of every app that has none of its own
    /// ([`Switchyard::set_admission`]).
    pub fn admission(mut self, config: AdmissionConfig) -> Self {
        self.admission = config;
        self
    }

    /// Which errors count against breakers (default: unavailable, timeout,
    /// ambiguous, rate-limited).
    pub fn classifier(mut self, f: impl Fn(&AttemptError) -> bool + Send + Sync + 'static) -> Self {
        self.classifier = Box::new(f);
        self
    }

    /// Seed backoff and healthcheck jitter (deterministic tests).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Report attempts, budget refusals and healthcheck outcomes to
    /// `observer` (metrics, a store). Can be called more than once.
    pub fn observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observers.push(observer);
        self
    }

    /// The engine.
    pub fn build(self) -> Switchyard {
        let jitter = || self.seed.map_or_else(Jitter::from_entropy, Jitter::seeded);
        let prefix = Jitter::from_entropy().next_u64();
        Switchyard {
            inner: Arc::new(Inner {
                health: Mutex::new(HealthBoard::new(jitter())),
                jitter: Mutex::new(jitter()),
                clock: self.clock,
                breakers: Breakers::new(self.breaker, self.classifier),
                budget_config: self.budget,
                budgets: Mutex::new(HashMap::new()),
                admission_default: self.admission,
                admission: RwLock::new(HashMap::new()),
                gates: Mutex::new(HashMap::new()),
                registry: RwLock::new(Registry::default()),
                quota_state: Mutex::new(HashMap::new()),
                caches: Mutex::new(HashMap::new()),
                counts: Mutex::new(HashMap::new()),
                key_prefix: prefix,
                key_counter: AtomicU64::new(0),
                observers: self.observers,
            }),
        }
    }
}

pub(crate) struct Inner {
    pub clock: Arc<dyn Clock>,
    pub breakers: Breakers,
    budget_config: BudgetConfig,
    budgets: Mutex<HashMap<String, RetryBudget>>,
    admission_default: AdmissionConfig,
    /// Settings per (product, app).
    admission: RwLock<HashMap<(String, String), AdmissionConfig>>,
    /// Gates by `product/env/app`.
    gates: Mutex<HashMap<String, GateEntry>>,
    jitter: Mutex<Jitter>,
    registry: RwLock<Registry>,
    health: Mutex<HealthBoard>,
    quota_state: Mutex<HashMap<(String, String, String), SmoothWeighted>>,
    caches: Mutex<HashMap<(String, String), ResultCache<RunResult>>>,
    counts: Mutex<HashMap<String, Counts>>,
    key_prefix: u64,
    key_counter: AtomicU64,
    observers: Vec<Arc<dyn Observer>>,
}

/// The engine. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Switchyard {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Switchyard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Switchyard").finish_non_exhaustive()
    }
}

impl Default for Switchyard {
    fn default() -> Self {
        Self::new()
    }
}

impl Switchyard {
    /// An engine on the system clock with default breaker and budget.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// Settings before building.
    pub fn builder() -> SwitchyardBuilder {
        SwitchyardBuilder {
            clock: Arc::new(SystemClock),
            breaker: BreakerConfig::default(),
            budget: BudgetConfig::default(),
            admission: AdmissionConfig::default(),
            classifier: Box::new(default_classifier),
            seed: None,
            observers: Vec::new(),
        }
    }

    // ---- apps ----

    /// Install `adapter` as app `tag` of `product` for `env` (a wasm
    /// [`crate::runtime::App`] or any native [`Adapter`]). Replaces an
    /// earlier instance for the same env.
    pub fn install_app(&self, product: &str, tag: &str, env: &str, adapter: Arc<dyn Adapter>) {
        self.inner
            .registry
            .writing()
            .install_app(product, tag, env, adapter);
    }

    /// Remove an app (every env); refused while a definition uses it.
    pub fn remove_app(&self, product: &str, tag: &str) -> Result<(), DefineError> {
        self.inner.registry.writing().remove_app(product, tag)
    }

    /// The apps of `product`.
    pub fn apps(&self, product: &str) -> Vec<AppSummary> {
        self.inner.registry.reading().apps(product)
    }

    /// Set `app`'s admission limits (in every env of `product`): attempts
    /// in flight, queue, rate limit, cooldown cap. Applies at once, to
    /// waiting attempts too; refused with the field path if a number is
    /// out of bounds.
    pub fn set_admission(
        &self,
        product: &str,
        app: &str,
        config: AdmissionConfig,
    ) -> Result<(), DefineError> {
        config.validate(&format!("apps.{app}.admission"))?;
        self.inner
            .admission
            .writing()
            .insert((product.to_string(), app.to_string()), config);
        for e in self.inner.gates.locked().values() {
            if e.product == product && e.app == app {
                e.gate.reconfigure(config);
            }
        }
        Ok(())
    }

    /// The admission settings `app` of `product` runs under.
    pub fn admission(&self, product: &str, app: &str) -> AdmissionConfig {
        self.inner.admission_config(product, app)
    }

    /// Admission state of every app (in every env) that has been called.
    pub fn admission_states(&self) -> Vec<AppAdmission> {
        let now = self.inner.clock.now();
        let mut v: Vec<AppAdmission> = self
            .inner
            .gates
            .locked()
            .values()
            .map(|e| AppAdmission {
                product: e.product.clone(),
                env: e.env.clone(),
                app: e.app.clone(),
                state: e.gate.snapshot(now),
            })
            .collect();
        v.sort_by(|a, b| (&a.product, &a.env, &a.app).cmp(&(&b.product, &b.env, &b.app)));
        v
    }

    // ---- definitions ----

    /// Add a definition; refused if it exists or does not check out.
    pub fn create(&self, def: impl Into<Definition>) -> Result<(), DefineError> {
        self.put(def.into(), false)
    }

    /// Replace an existing definition; refused if absent or invalid. Quota
    /// rotation restarts; healthcheck history is kept.
    pub fn update(&self, def: impl Into<Definition>) -> Result<(), DefineError> {
        self.put(def.into(), true)
    }

    fn put(&self, def: Definition, replace: bool) -> Result<(), DefineError> {
        let (product, tag, kind) = (
            def.meta().product.clone(),
            def.meta().tag.clone(),
            def.kind(),
        );
        let hc = match &def {
            Definition::Healthcheck(h) => Some(h.clone()),
            _ => None,
        };
        self.inner.registry.writing().put(def, replace)?;
        self.inner.forget_state(&product, kind, &tag);
        if let Some(h) = hc {
            self.inner.track(&h);
        }
        Ok(())
    }

    /// One definition.
    pub fn fetch(&self, product: &str, kind: Kind, tag: &str) -> Option<Definition> {
        self.inner
            .registry
            .reading()
            .fetch(product, kind, tag)
            .cloned()
    }

    /// Every definition of `product` (of `kind`, if given), by kind and tag.
    pub fn fetch_all(&self, product: &str, kind: Option<Kind>) -> Vec<Definition> {
        self.inner.registry.reading().fetch_all(product, kind)
    }

    /// Delete a definition; refused while another definition uses it.
    pub fn delete(&self, product: &str, kind: Kind, tag: &str) -> Result<Definition, DefineError> {
        let def = self.inner.registry.writing().delete(product, kind, tag)?;
        self.inner.forget_state(product, kind, tag);
        if kind == Kind::Healthcheck {
            self.inner.health.locked().untrack(product, tag, &[]);
        }
        Ok(def)
    }

    // ---- runs ----

    /// Run a definition of `kind` (fallback, quota or feature).
    pub async fn run(
        &self,
        kind: Kind,
        product: &str,
        env: &str,
        tag: &str,
        input: Value,
        options: RunOptions,
    ) -> Result<RunResult, RunError> {
        self.inner
            .run_boxed(kind, product, env, tag, input, options, 0)
            .await
    }

    /// Run a fallback.
    pub async fn run_fallback(
        &self,
        product: &str,
        env: &str,
        tag: &str,
        input: Value,
        options: RunOptions,
    ) -> Result<RunResult, RunError> {
        self.run(Kind::Fallback, product, env, tag, input, options)
            .await
    }

    /// Run a quota.
    pub async fn run_quota(
        &self,
        product: &str,
        env: &str,
        tag: &str,
        input: Value,
        options: RunOptions,
    ) -> Result<RunResult, RunError> {
        self.run(Kind::Quota, product, env, tag, input, options)
            .await
    }

    /// Run a feature.
    pub async fn run_feature(
        &self,
        product: &str,
        env: &str,
        tag: &str,
        input: Value,
        options: RunOptions,
    ) -> Result<RunResult, RunError> {
        self.run(Kind::Feature, product, env, tag, input, options)
            .await
    }

    // ---- state ----

    /// The state of every provider of a quota or fallback in `env`.
    pub fn provider_states(
        &self,
        product: &str,
        env: &str,
        kind: Kind,
        tag: &str,
    ) -> Result<Vec<ProviderState>, DefineError> {
        let route = self
            .inner
            .registry
            .reading()
            .compiled_route(product, kind, tag)
            .ok_or_else(|| {
                DefineError::new(
                    format!("{}.{tag}", kind.plural()),
                    format!("no such {kind} in product `{product}` (provider state exists for quotas and fallbacks)"),
                )
            })?;
        let now = self.inner.clock.now();
        let gates: Vec<AdmissionSnapshot> = route
            .options
            .iter()
            .map(|o| self.inner.gate(product, env, &o.app).snapshot(now))
            .collect();
        let health = self.inner.health.locked();
        let counts = self.inner.counts.locked();
        Ok(route
            .options
            .iter()
            .zip(gates)
            .map(|(o, admission)| {
                let key = format!("{product}/{env}/{}/{}", o.app, o.action);
                let breaker = self.inner.breakers.snapshot(&key);
                let snap = o.healthcheck.as_ref().and_then(|hc| {
                    health.snapshot(&HealthKey {
                        product: product.to_string(),
                        env: env.to_string(),
                        tag: hc.clone(),
                    })
                });
                let status = if breaker.state == super::BreakerState::Open {
                    HealthStatus::Unhealthy
                } else {
                    snap.as_ref().map_or(HealthStatus::Unknown, |s| s.status)
                };
                ProviderState {
                    provider: o.provider.clone(),
                    app: o.app.clone(),
                    action: o.action.clone(),
                    weight: (route.kind == "quota").then_some(o.weight),
                    healthcheck: o.healthcheck.clone(),
                    status,
                    last_checked_unix_ms: snap.as_ref().and_then(|s| s.last_checked_unix_ms),
                    last_available_unix_ms: snap.as_ref().and_then(|s| s.last_available_unix_ms),
                    breaker,
                    counts: counts.get(&key).cloned().unwrap_or_default(),
                    admission,
                }
            })
            .collect())
    }

    /// Put back the outcomes of an earlier process (oldest first), e.g.
    /// from a store, so status, `last_checked` and `last_available` survive
    /// a restart. Only for a healthcheck already defined with that env;
    /// returns whether it was.
    pub fn restore_health(
        &self,
        product: &str,
        env: &str,
        tag: &str,
        history: Vec<ProbeOutcome>,
    ) -> bool {
        let key = HealthKey {
            product: product.into(),
            env: env.into(),
            tag: tag.into(),
        };
        self.inner.health.locked().restore(&key, history)
    }

    /// Every breaker used so far, by key (`product/env/app/action`), and its
    /// state.
    pub fn breaker_states(&self) -> Vec<(String, BreakerState)> {
        self.inner.breakers.states()
    }

    /// What the healthcheck `tag` of `product` knows in `env`.
    pub fn health(&self, product: &str, env: &str, tag: &str) -> Option<HealthSnapshot> {
        self.inner.health.locked().snapshot(&HealthKey {
            product: product.into(),
            env: env.into(),
            tag: tag.into(),
        })
    }

    // ---- healthchecks ----

    /// Run every healthcheck due now (by the engine's clock) and wait for
    /// them; returns how many ran. The scheduler calls this; tests call it
    /// after advancing a manual clock.
    pub async fn run_due_healthchecks(&self) -> usize {
        let handles = self.spawn_due();
        let n = handles.len();
        for h in handles {
            let _ = h.await;
        }
        n
    }

    /// Run one healthcheck in one env now, whatever its schedule.
    pub async fn check_now(&self, product: &str, env: &str, tag: &str) -> Option<HealthSnapshot> {
        let key = HealthKey {
            product: product.into(),
            env: env.into(),
            tag: tag.into(),
        };
        if self.inner.health.locked().claim(&key) {
            self.inner.clone().probe(key).await;
        }
        self.health(product, env, tag)
    }

    fn spawn_due(&self) -> Vec<tokio::task::JoinHandle<()>> {
        let now = self.inner.clock.now();
        let due = self.inner.health.locked().due(now);
        due.into_iter()
            .map(|k| tokio::spawn(self.inner.clone().probe(k)))
            .collect()
    }

    /// Start the healthcheck scheduler on the current tokio runtime. It
    /// stops when the returned handle is dropped.
    pub fn spawn_healthchecks(&self) -> HealthcheckTask {
        let yard = self.clone();
        let task = tokio::spawn(async move {
            loop {
                // Probes run detached so a slow one does not hold the others.
                drop(yard.spawn_due());
                let now = yard.inner.clock.now();
                let next = yard.inner.health.locked().next_due();
                let wait = next
                    .map_or(Duration::from_secs(1), |t| t.saturating_duration_since(now))
                    .clamp(Duration::from_millis(10), Duration::from_secs(1));
                yard.inner.clock.sleep(wait).await;
            }
        });
        HealthcheckTask { task }
    }
}

/// The running healthcheck scheduler; aborted on drop.
#[derive(Debug)]
pub struct HealthcheckTask {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for HealthcheckTask {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Inner {
    pub fn adapter(&self, product: &str, app: &str, env: &str) -> Option<Arc<dyn Adapter>> {
        self.registry.reading().adapter(product, app, env).cloned()
    }

    pub fn health_status(&self, key: &HealthKey) -> HealthStatus {
        self.health.locked().status(key)
    }

    fn budget_key(product: &str, env: &str, app: &str) -> String {
        format!("{product}/{env}/{app}")
    }

    pub fn deposit_budget(&self, product: &str, env: &str, app: &str) {
        let now = self.clock.now();
        let mut b = self.budgets.locked();
        b.entry(Self::budget_key(product, env, app))
            .or_insert_with(|| RetryBudget::new(self.budget_config, now))
            .deposit(now);
    }

    pub fn withdraw_budget(&self, product: &str, env: &str, app: &str) -> Option<BudgetToken> {
        let now = self.clock.now();
        let mut b = self.budgets.locked();
        b.entry(Self::budget_key(product, env, app))
            .or_insert_with(|| RetryBudget::new(self.budget_config, now))
            .try_withdraw(now)
    }

    /// Give back a retry's token when the retry was not made.
    pub fn refund_budget(&self, product: &str, env: &str, app: &str, token: Option<BudgetToken>) {
        let Some(token) = token else { return };
        if let Some(b) = self
            .budgets
            .locked()
            .get_mut(&Self::budget_key(product, env, app))
        {
            b.refund(token);
        }
    }

    fn admission_config(&self, product: &str, app: &str) -> AdmissionConfig {
        self.admission
            .reading()
            .get(&(product.to_string(), app.to_string()))
            .copied()
            .unwrap_or(self.admission_default)
    }

    /// The admission gate of `app` in `product`/`env`, made on first use.
    pub fn gate(&self, product: &str, env: &str, app: &str) -> Arc<Gate> {
        let key = format!("{product}/{env}/{app}");
        if let Some(e) = self.gates.locked().get(&key) {
            return e.gate.clone();
        }
        let config = self.admission_config(product, app);
        let now = self.clock.now();
        self.gates
            .locked()
            .entry(key)
            .or_insert_with(|| GateEntry {
                product: product.to_string(),
                env: env.to_string(),
                app: app.to_string(),
                gate: Arc::new(Gate::new(config, now)),
            })
            .gate
            .clone()
    }

    pub fn observe_admitted(&self, product: &str, env: &str, app: &str, waited: Duration) {
        for o in &self.observers {
            o.admitted(product, env, app, waited);
        }
    }

    pub fn observe_overload(&self, product: &str, env: &str, app: &str, reason: &OverloadReason) {
        for o in &self.observers {
            o.overloaded(product, env, app, reason);
        }
    }

    pub fn backoff(
        &self,
        policy: &RetryPolicy,
        retry: u32,
        retry_after: Option<Duration>,
    ) -> Duration {
        policy.backoff(retry, retry_after, &mut self.jitter.locked())
    }

    pub fn observe_attempt(&self, event: &AttemptEvent<'_>) {
        for o in &self.observers {
            o.attempt(event);
        }
    }

    pub fn budget_rejected(&self, product: &str, env: &str, app: &str) {
        for o in &self.observers {
            o.budget_rejected(product, env, app);
        }
    }

    pub fn count(&self, key: &str, result: Result<(), &AttemptError>) {
        let mut counts = self.counts.locked();
        let c = match counts.get_mut(key) {
            Some(c) => c,
            None => counts.entry(key.to_string()).or_default(),
        };
        c.attempts += 1;
        match result {
            Ok(()) => c.successes += 1,
            Err(e) => *c.failures.entry(e.class.as_str().to_string()).or_default() += 1,
        }
    }

    pub fn with_quota_state<T>(
        &self,
        product: &str,
        env: &str,
        tag: &str,
        route: &CompiledRoute,
        f: impl FnOnce(&mut SmoothWeighted) -> T,
    ) -> T {
        let mut states = self.quota_state.locked();
        let sw = states
            .entry((product.to_string(), env.to_string(), tag.to_string()))
            .or_insert_with(|| {
                SmoothWeighted::new(route.options.iter().map(|o| o.weight).collect())
            });
        f(sw)
    }

    /// Drop runtime state tied to a definition that changed.
    fn forget_state(&self, product: &str, kind: Kind, tag: &str) {
        match kind {
            Kind::Quota => self
                .quota_state
                .locked()
                .retain(|(p, _, t), _| !(p == product && t == tag)),
            Kind::Cache => self
                .caches
                .locked()
                .retain(|(p, t), _| !(p == product && t == tag)),
            _ => {}
        }
    }

    fn track(&self, h: &HealthcheckDef) {
        let now = self.clock.now();
        let mut board = self.health.locked();
        let envs: Vec<&str> = h.input.keys().map(String::as_str).collect();
        board.untrack(&h.meta.product, &h.meta.tag, &envs);
        for env in envs {
            board.track(
                HealthKey {
                    product: h.meta.product.clone(),
                    env: env.to_string(),
                    tag: h.meta.tag.clone(),
                },
                Duration::from_millis(h.interval_ms),
                h.jitter,
                h.history,
                now,
            );
        }
    }

    /// One healthcheck round: the probe action with its retries.
    async fn probe(self: Arc<Self>, key: HealthKey) {
        let def = self.registry.reading().healthcheck(&key.product, &key.tag);
        let Some(def) = def else {
            return; // deleted while due
        };
        let adapter = self.adapter(&key.product, &def.app, &key.env);
        let start = self.clock.now();
        let mut tries = 0;
        let mut error = None;
        let input = def
            .input
            .get(&key.env)
            .cloned()
            .unwrap_or(Value::Object(Default::default()));
        for attempt in 0..=def.retries {
            if attempt > 0 {
                // A failing provider is not hammered.
                let wait = self.backoff(&PROBE_BACKOFF, attempt - 1, None);
                self.clock.sleep(wait).await;
            }
            tries += 1;
            let Some(adapter) = &adapter else {
                error = Some(format!(
                    "app `{}` is not installed for env `{}`",
                    def.app, key.env
                ));
                break;
            };
            let deadline = Duration::from_millis(def.timeout_ms);
            let request = CallRequest {
                action: def.action.clone(),
                input: input.clone(),
                idempotency_key: format!("healthcheck:{}:{}", key.tag, self.next_key()),
                deadline,
                env: key.env.clone(),
                session: None,
            };
            let result = tokio::time::timeout(deadline + attempt::GRACE, adapter.call(request))
                .await
                .map(|r| r.map_err(AttemptError::bounded))
                .unwrap_or_else(|_| {
                    Err(AttemptError::new(
                        ErrorClass::Timeout,
                        FailureKind::DeadlineExceeded,
                        "probe took longer than its timeout",
                    ))
                });
            match result {
                Ok(_) => {
                    error = None;
                    break;
                }
                // A retry that could not start: the earlier try's failure
                // stands.
                Err(e) if e.class == ErrorClass::Overloaded && error.is_some() => break,
                Err(e) if e.class == ErrorClass::Overloaded => {
                    // The host had no instance free: the provider was not
                    // asked, so its health must not move. Try again soon.
                    self.observe_overload(
                        &key.product,
                        &key.env,
                        &def.app,
                        &OverloadReason::NoInstance,
                    );
                    let now = self.clock.now();
                    self.health
                        .locked()
                        .postpone(&key, now, Duration::from_secs(1));
                    return;
                }
                Err(e) => error = Some(e.to_string()),
            }
        }
        let end = self.clock.now();
        let wall = self.clock.wall();
        let outcome = health::outcome(wall, error.is_none(), end - start, tries, error);
        for o in &self.observers {
            o.healthcheck(&key, &outcome);
        }
        self.health.locked().finish(&key, outcome, end, wall);
    }

    fn next_key(&self) -> String {
        let n = self.key_counter.fetch_add(1, Ordering::Relaxed);
        format!("sy-{:016x}-{n:x}", self.key_prefix)
    }

    #[allow(clippy::too_many_arguments)]
    pub fn run_boxed<'a>(
        &'a self,
        kind: Kind,
        product: &'a str,
        env: &'a str,
        tag: &'a str,
        input: Value,
        options: RunOptions,
        depth: u32,
    ) -> BoxFuture<'a, Result<RunResult, RunError>> {
        Box::pin(async move {
            if depth > feature::MAX_DEPTH {
                return Err(RunError::new(
                    ErrorCode::InvalidInput,
                    format!("features nest deeper than {}", feature::MAX_DEPTH),
                ));
            }
            let not_found = || {
                RunError::new(
                    ErrorCode::NotFound,
                    format!("no {kind} `{tag}` in product `{product}`"),
                )
            };
            match kind {
                Kind::Fallback | Kind::Quota => {
                    let route = self
                        .registry
                        .reading()
                        .compiled_route(product, kind, tag)
                        .ok_or_else(not_found)?;
                    self.run_route(route, product, env, input, options).await
                }
                Kind::Feature => {
                    let f = self
                        .registry
                        .reading()
                        .compiled_feature(product, tag)
                        .ok_or_else(not_found)?;
                    schema::validate(&f.schema, &input).map_err(RunError::invalid_input)?;
                    let input = &input;
                    self.cached(
                        product,
                        env,
                        "feature",
                        tag,
                        input,
                        options,
                        |key, options| async move {
                            let deadline_at = self.clock.now()
                                + options.deadline.unwrap_or(f.deadline).min(MAX_DEADLINE);
                            let mut trace = Trace::new("feature", tag, env, &key);
                            match feature::run(
                                self,
                                &f,
                                product,
                                env,
                                &key,
                                options.session.as_ref(),
                                deadline_at,
                                input,
                                depth,
                                &mut trace,
                            )
                            .await
                            {
                                Ok((output, provider)) => Ok(RunResult {
                                    output,
                                    provider,
                                    idempotency_key: key,
                                    trace,
                                }),
                                Err(e) => Err(e.with_trace(trace)),
                            }
                        },
                    )
                    .await
                }
                Kind::Healthcheck | Kind::Cache => Err(RunError::new(
                    ErrorCode::NotFound,
                    format!("a {kind} cannot be run; run a fallback, quota or feature"),
                )),
            }
        })
    }

    /// Run a compiled quota, fallback or action step.
    pub async fn run_route(
        &self,
        route: Arc<CompiledRoute>,
        product: &str,
        env: &str,
        input: Value,
        options: RunOptions,
    ) -> Result<RunResult, RunError> {
        schema::validate(&route.schema, &input).map_err(RunError::invalid_input)?;
        let kind = route.kind;
        let tag = route.tag.clone();
        let input = &input;
        self.cached(
            product,
            env,
            kind,
            &tag,
            input,
            options,
            |key, options| async move {
                let deadline_at =
                    self.clock.now() + options.deadline.unwrap_or(route.deadline).min(MAX_DEADLINE);
                let mut trace = Trace::new(kind, &route.tag, env, &key);
                let ctx = attempt::RunCtx {
                    inner: self,
                    product,
                    env,
                    key: &key,
                    session: options.session.as_ref(),
                    deadline_at,
                };
                let result = match kind {
                    "quota" => quota::run(&ctx, &route, input, &mut trace).await,
                    _ => fallback::run(&ctx, &route, input, &mut trace).await,
                };
                match result {
                    Ok((output, provider)) => Ok(RunResult {
                        output,
                        provider: Some(provider),
                        idempotency_key: key,
                        trace,
                    }),
                    Err(e) => Err(e.with_trace(trace)),
                }
            },
        )
        .await
    }

    /// Serve from the run's result cache if it names one and holds a fresh
    /// result; otherwise run `f` (with the run's idempotency key) and store
    /// a success.
    #[allow(clippy::too_many_arguments)]
    async fn cached<F, Fut>(
        &self,
        product: &str,
        env: &str,
        kind: &str,
        tag: &str,
        input: &Value,
        options: RunOptions,
        f: F,
    ) -> Result<RunResult, RunError>
    where
        F: FnOnce(String, RunOptions) -> Fut,
        Fut: std::future::Future<Output = Result<RunResult, RunError>>,
    {
        let key = |options: &RunOptions| {
            options
                .idempotency_key
                .clone()
                .unwrap_or_else(|| self.next_key())
        };
        let Some(cache_tag) = options.cache.clone() else {
            return f(key(&options), options).await;
        };
        let def = self
            .registry
            .reading()
            .cache(product, &cache_tag)
            .cloned()
            .ok_or_else(|| {
                RunError::new(
                    ErrorCode::NotFound,
                    format!("no cache `{cache_tag}` in product `{product}`; define it or drop the cache option"),
                )
            })?;
        let entry = cache_entry(kind, tag, env, options.session.as_ref(), input);
        let now = self.clock.now();
        let hit = self
            .caches
            .locked()
            .entry((product.to_string(), cache_tag.clone()))
            .or_insert_with(|| ResultCache::new(Duration::from_millis(def.ttl_ms), def.max_entries))
            .get(&entry, now);
        if let Some(mut r) = hit {
            // The stored run's key is that caller's, not this one's: a hit
            // answers with this run's own key (the caller's, or a fresh
            // one), so no key ever leaks from one run to another.
            let own = key(&options);
            r.idempotency_key.clone_from(&own);
            r.trace.idempotency_key = own;
            r.trace.cached = true;
            r.trace.attempts.clear();
            r.trace.steps.clear();
            return Ok(r);
        }
        let result = f(key(&options), options).await?;
        let now = self.clock.now();
        if let Some(c) = self
            .caches
            .locked()
            .get_mut(&(product.to_string(), cache_tag))
        {
            c.put(entry, result.clone(), now);
        }
        Ok(result)
    }
}
