//! [`Switchyard`]: the engine's front door for embedders. Install apps,
//! define healthchecks / quotas / fallbacks / features / caches (checked
//! and compiled on the spot) and set admission. Runs are in `dispatch.rs`,
//! provider state in `provider_state.rs`, the healthcheck scheduler in
//! `scheduler.rs`, budgets, gates and counters in `accounting.rs`.

use crate::meters::{Counts, GateEntry};
use crate::scorecard::Scorecards;

use super::admission::AdmissionConfig;
use super::budget::{BudgetConfig, RetryBudget};
use super::clock::{Clock, SystemClock};
use super::definition::{DefineError, Definition, Kind};
use super::health::{HealthBoard, HealthKey, HealthStatus};
use super::locks::{Recover, RecoverRw};
use super::observer::Observer;
use super::registry::{AppSummary, Registry};
use super::result_cache::ResultCache;
use super::retry::Jitter;
use super::run::RunResult;
use super::weighted::SmoothWeighted;
use crate::adapter::{Adapter, AttemptError};
use crate::breaker::Breakers;
use crate::breaker::{BreakerConfig, Classifier, default_classifier};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// Engine-wide settings.
pub struct SwitchyardBuilder {
    clock: Arc<dyn Clock>,
    breaker: BreakerConfig,
    budget: BudgetConfig,
    admission: AdmissionConfig,
    classifier: Classifier,
    seed: Option<u64>,
    observers: Vec<Arc<dyn Observer>>,
    shared: Option<Arc<dyn crate::cluster::Shared>>,
    records: Option<Arc<dyn crate::records::Records>>,
    records_unavailable: crate::records::RecordsUnavailable,
    idempotency_ttl: Duration,
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

    /// Share state with other replicas through `shared` (cluster mode):
    /// breaker transitions, half-open permits, quota tickets, health leases
    /// and results, result caches and idempotency records.
    pub fn shared(mut self, shared: Arc<dyn crate::cluster::Shared>) -> Self {
        self.shared = Some(shared);
        self
    }

    /// Keep idempotency records in `records` (the server's SQLite store in
    /// one process, Redis in a cluster). Default: a
    /// [`MemoryRecords`](crate::records::MemoryRecords) of
    /// [`DEFAULT_MEMORY_RECORDS`](crate::records::DEFAULT_MEMORY_RECORDS).
    pub fn records(mut self, records: Arc<dyn crate::records::Records>) -> Self {
        self.records = Some(records);
        self
    }

    /// What a keyed run of a definition with a non-safe action does when
    /// its record cannot be read or written (default: refuse).
    pub fn records_unavailable(mut self, policy: crate::records::RecordsUnavailable) -> Self {
        self.records_unavailable = policy;
        self
    }

    /// How long an idempotency record keeps a finished run's outcome
    /// (bounded by [`crate::bounds::MAX_IDEMPOTENCY_TTL`]).
    pub fn idempotency_ttl(mut self, ttl: Duration) -> Self {
        self.idempotency_ttl = ttl.min(crate::bounds::MAX_IDEMPOTENCY_TTL);
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
                clock: self.clock.clone(),
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
                scorecards: Scorecards::new(self.clock.now()),
                key_prefix: prefix,
                key_counter: AtomicU64::new(0),
                observers: self.observers,
                shared: self.shared,
                records: self
                    .records
                    .unwrap_or_else(|| Arc::new(crate::records::MemoryRecords::default())),
                records_unavailable: self.records_unavailable,
                idempotency_ttl: self.idempotency_ttl,
                replicas: std::sync::atomic::AtomicU32::new(1),
                probe_ended: tokio::sync::Notify::new(),
                drained: RwLock::new(std::collections::HashSet::new()),
            }),
        }
    }
}

pub(crate) struct Inner {
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) breakers: Breakers,
    pub(crate) budget_config: BudgetConfig,
    pub(crate) budgets: Mutex<HashMap<String, RetryBudget>>,
    pub(crate) admission_default: AdmissionConfig,
    /// Settings per (product, app).
    pub(crate) admission: RwLock<HashMap<(String, String), AdmissionConfig>>,
    /// Gates by `product/env/app`.
    pub(crate) gates: Mutex<HashMap<String, GateEntry>>,
    pub(crate) jitter: Mutex<Jitter>,
    pub(crate) registry: RwLock<Registry>,
    pub(crate) health: Mutex<HealthBoard>,
    pub(crate) quota_state: Mutex<HashMap<(String, String, String), SmoothWeighted>>,
    pub(crate) caches: Mutex<HashMap<(String, String), ResultCache<RunResult>>>,
    pub(crate) counts: Mutex<HashMap<String, Counts>>,
    /// How each option has been doing lately.
    pub(crate) scorecards: Scorecards,
    pub(crate) key_prefix: u64,
    pub(crate) key_counter: AtomicU64,
    pub(crate) observers: Vec<Arc<dyn Observer>>,
    /// The cluster seam, in cluster mode.
    pub(crate) shared: Option<Arc<dyn crate::cluster::Shared>>,
    /// Idempotency records: one execution per caller key, at one app.
    pub(crate) records: Arc<dyn crate::records::Records>,
    pub(crate) records_unavailable: crate::records::RecordsUnavailable,
    pub(crate) idempotency_ttl: Duration,
    /// Replicas sharing the traffic (cluster mode), for splitting limits.
    pub(crate) replicas: std::sync::atomic::AtomicU32,
    /// Wakes the healthcheck scheduler when a probe ends.
    pub(crate) probe_ended: tokio::sync::Notify,
    /// Providers an operator drained: (product, provider).
    pub(crate) drained: RwLock<std::collections::HashSet<(String, String)>>,
}

/// The engine. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Switchyard {
    pub(crate) inner: Arc<Inner>,
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
            shared: None,
            records: None,
            records_unavailable: crate::records::RecordsUnavailable::default(),
            idempotency_ttl: crate::bounds::DEFAULT_IDEMPOTENCY_TTL,
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

    /// Uninstall one env of an app (a config reload that drops it); the
    /// app goes with its last env, refused while a definition uses it.
    pub fn remove_app_env(&self, product: &str, tag: &str, env: &str) -> Result<(), DefineError> {
        self.inner
            .registry
            .writing()
            .remove_app_env(product, tag, env)
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
        let part = self.inner.admission_part(config);
        for e in self.inner.gates.locked().values() {
            if e.product == product && e.app == app {
                e.gate.reconfigure(part);
            }
        }
        Ok(())
    }

    /// How many replicas share the traffic (cluster mode; at least 1):
    /// rate limits and the retry budget's floor are split between them so
    /// the cluster keeps the configured totals. Existing gates and budgets
    /// take the new part at once.
    pub fn set_replicas(&self, n: u32) {
        let n = n.clamp(1, crate::bounds::MAX_REPLICAS);
        if self.inner.replicas.swap(n, Ordering::Relaxed) == n {
            return;
        }
        for e in self.inner.gates.locked().values() {
            let config = self.inner.admission_config(&e.product, &e.app);
            e.gate.reconfigure(self.inner.admission_part(config));
        }
        let part = self.inner.budget_part();
        for b in self.inner.budgets.locked().values_mut() {
            b.set_config(part);
        }
    }

    /// How many replicas this one counts, for splitting limits.
    pub fn replicas(&self) -> u32 {
        self.inner.replicas.load(Ordering::Relaxed)
    }

    /// The admission settings `app` of `product` runs under.
    pub fn admission(&self, product: &str, app: &str) -> AdmissionConfig {
        self.inner.admission_config(product, app)
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

    pub(crate) fn put(&self, def: Definition, replace: bool) -> Result<(), DefineError> {
        let (product, tag, kind) = (
            def.meta().product.clone(),
            def.meta().tag.clone(),
            def.kind(),
        );
        // Healthchecks whose interval an option's `check_interval_ms` may
        // change: those the old and the new definition name.
        let mut checks = self.inner.checks_named(&product, kind, &tag);
        checks.extend(crate::registry::checks_named_by(&def));
        if let Definition::Healthcheck(h) = &def {
            checks.push(h.meta.tag.clone());
        }
        self.inner.registry.writing().put(def, replace)?;
        self.inner.forget_state(&product, kind, &tag);
        self.inner.retrack(&product, checks);
        Ok(())
    }

    /// Apply `changes` all or none, as one step: each is checked against
    /// the definitions the others leave, in whatever order lets every one
    /// check out (a fallback and the new healthcheck it names may come in
    /// any order). On any refusal nothing changes and every refusal is
    /// returned. Runs in flight keep the compiled forms they started with;
    /// breakers, health and budgets are untouched (they are keyed by app
    /// and action, not by definition).
    pub fn apply(&self, changes: Vec<Change>) -> Result<(), Vec<DefineError>> {
        let mut touched: Vec<(String, Kind, String)> = Vec::new();
        let mut checks: Vec<(String, String)> = Vec::new();
        {
            let mut live = self.inner.registry.writing();
            let mut scratch = live.clone();
            let mut pending = changes;
            loop {
                let mut errors = Vec::new();
                let before = pending.len();
                for c in std::mem::take(&mut pending) {
                    let (product, kind, tag) = c.key();
                    let old_checks = scratch
                        .fetch(&product, kind, &tag)
                        .map(crate::registry::checks_named_by)
                        .unwrap_or_default();
                    let result = match &c {
                        Change::Put(d) => {
                            let exists = scratch.fetch(&product, kind, &tag).is_some();
                            scratch.put((**d).clone(), exists)
                        }
                        Change::Delete { .. } => scratch.delete(&product, kind, &tag).map(|_| ()),
                    };
                    match result {
                        Ok(()) => {
                            if let Change::Put(d) = &c {
                                checks.extend(
                                    crate::registry::checks_named_by(d)
                                        .into_iter()
                                        .map(|t| (product.clone(), t)),
                                );
                            }
                            checks.extend(old_checks.into_iter().map(|t| (product.clone(), t)));
                            if kind == Kind::Healthcheck {
                                checks.push((product.clone(), tag.clone()));
                            }
                            touched.push((product, kind, tag));
                        }
                        Err(e) => {
                            errors.push(e);
                            pending.push(c);
                        }
                    }
                }
                if pending.is_empty() {
                    break;
                }
                if pending.len() == before {
                    return Err(errors);
                }
            }
            *live = scratch;
        }
        for (product, kind, tag) in &touched {
            self.inner.forget_state(product, *kind, tag);
            if *kind == Kind::Healthcheck && self.fetch(product, *kind, tag).is_none() {
                self.inner.health.locked().untrack(product, tag, &[]);
            }
        }
        checks.sort();
        checks.dedup();
        for (product, tag) in checks {
            self.inner.retrack(&product, vec![tag]);
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
        self.inner
            .retrack(product, crate::registry::checks_named_by(&def));
        Ok(def)
    }
}

/// One change of a batch ([`Switchyard::apply`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Create the definition, or replace the one with its kind and tag.
    Put(Box<Definition>),
    /// Delete a definition.
    Delete {
        /// Product.
        product: String,
        /// Kind.
        kind: Kind,
        /// Tag.
        tag: String,
    },
}

impl Change {
    /// Product, kind and tag of the definition it changes.
    pub fn key(&self) -> (String, Kind, String) {
        match self {
            Self::Put(d) => (d.meta().product.clone(), d.kind(), d.meta().tag.clone()),
            Self::Delete { product, kind, tag } => (product.clone(), *kind, tag.clone()),
        }
    }
}

impl Inner {
    pub fn adapter(&self, product: &str, app: &str, env: &str) -> Option<Arc<dyn Adapter>> {
        self.registry.reading().adapter(product, app, env).cloned()
    }

    pub fn health_status(&self, key: &HealthKey) -> HealthStatus {
        self.health.locked().status(key)
    }

    /// Drop runtime state tied to a definition that changed.
    pub(crate) fn forget_state(&self, product: &str, kind: Kind, tag: &str) {
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
}
