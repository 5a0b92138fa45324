//! A running configuration: the plugin runtime with every app loaded, the
//! engine with every definition, the store they persist in, and metrics.
//! `switchyard serve`, `run` and `check` and the HTTP API all stand on it.

use crate::config::{Config, FieldPath, Problem, Problems, SeedMode};
use crate::metrics::{AppHandle, Metrics, Scrape};
use crate::store::{Store, StoreError};
use std::collections::HashMap;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;
use switchyard_engine::{
    AdmissionConfig, Change, DefineError, Definition, HealthKey, Kind, Observer, ProbeOutcome,
    Switchyard,
};
use switchyard_engine::{Recover, RecoverRw};
use switchyard_runtime::{App, ComponentSource, Grant, Limits, Runtime, RuntimeConfig};

/// How to start.
#[derive(Debug, Clone, Copy, Default)]
pub struct StartOptions {
    /// Open the store and seed it (serve). Without it, definitions come
    /// from the config alone (check, run).
    pub store: bool,
    /// Print plugin loading progress on stderr.
    pub progress: bool,
}

/// A definition change that could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// No such definition.
    #[error("no {kind} `{tag}` in product `{product}`")]
    NotFound {
        /// Product.
        product: String,
        /// Kind.
        kind: Kind,
        /// Tag.
        tag: String,
    },
    /// It exists already (create).
    #[error("{kind} `{tag}` already exists in product `{product}`; update it with PUT instead")]
    Exists {
        /// Product.
        product: String,
        /// Kind.
        kind: Kind,
        /// Tag.
        tag: String,
    },
    /// The engine refused it.
    #[error(transparent)]
    Invalid(#[from] DefineError),
    /// The store failed; the engine was left as it was.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Writes healthcheck outcomes to the store from its own thread, so a
/// probe never waits on disk.
struct HealthRecorder {
    tx: mpsc::Sender<(HealthKey, ProbeOutcome)>,
}

impl Observer for HealthRecorder {
    fn healthcheck(&self, key: &HealthKey, outcome: &ProbeOutcome) {
        let _ = self.tx.send((key.clone(), outcome.clone()));
    }
}

/// Everything a config starts.
pub struct Deployment {
    /// The engine.
    pub yard: Switchyard,
    /// The store, when started with one.
    pub store: Option<Arc<Store>>,
    /// The link to the other replicas, in cluster mode.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// Runs served and operator actions, for `/v1/runs` and `/v1/events`.
    pub hub: crate::events::Hub,
    /// The budget request bodies and providers' answers are held under
    /// (`server.max_buffered_mb`; a reload keeps the one it started with).
    pub host_bytes: Arc<switchyard_runtime::HostBytes>,
    /// The API tokens it honours (the config's and those made through
    /// the API); empty when auth is off.
    pub tokens: crate::access::Tokens,
    /// Failed authentications per client address.
    pub throttle: crate::access::Throttle,
    /// Set by `serve` when it authenticates requests: a reload then
    /// takes the config's tokens again.
    pub auth: std::sync::atomic::AtomicBool,
    /// What the config's tokens were at the last start or reload (names,
    /// roles, scopes, digests), to report a change.
    config_tokens: Mutex<Vec<String>>,
    /// Operator actions when there is no store (`demo --serve`).
    audit_mem: Mutex<std::collections::VecDeque<crate::store::AuditEntry>>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Loaded apps (one per product, app and env); replaced by a reload.
    apps: RwLock<Vec<AppHandle>>,
    /// The config; replaced by a reload.
    config: RwLock<Arc<Config>>,
    /// What each loaded app was loaded from: its plugin's SHA-256 and its
    /// grant, so a reload reloads only what changed.
    loaded: Mutex<HashMap<AppKey, (String, Grant)>>,
    /// Stored definitions that no longer check out against the config;
    /// skipped (and kept in the store) so the rest can serve.
    pub warnings: Vec<String>,
    /// Where the config and the store disagreed at start, and which side
    /// serves.
    pub drift: Vec<String>,
    /// Per definition the config defines, the copy of it that serves as
    /// the config's: the config's own, or the store's where the store's
    /// won at start. A reload applies every config definition that differs
    /// from its entry here.
    baseline: Mutex<HashMap<DefKey, Definition>>,
    writes: Mutex<()>,
    reloading: tokio::sync::Mutex<()>,
    runtime: Runtime,
}

/// Most breakers forced at once (per replica, and so per cluster: every
/// replica holds every force). A force is kept until released, never
/// evicted, and survives restarts, so it has its own bound, far below the
/// breakers' ([`switchyard_engine::MAX_BREAKERS`]).
pub const MAX_FORCES: usize = 1_000;

/// Product, app tag and env of a loaded app.
type AppKey = (String, String, String);

/// Product, kind and tag of a definition (`Definition::key`).
type DefKey = (String, Kind, String);

/// An app a reload loaded: its key, the app, its plugin's SHA-256, its grant.
type Fresh = (AppKey, App, String, Grant);

/// What a reload changed, and what it could not change without a restart.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReloadReport {
    /// Definitions created, updated or deleted because the config's copy
    /// changed (`~ products.notify.fallbacks.sms updated`).
    pub definitions: Vec<String>,
    /// Apps loaded again (plugin file or grant changed), added or removed.
    pub apps: Vec<String>,
    /// Apps whose admission limits changed.
    pub admission: Vec<String>,
    /// API tokens of the config added, changed or removed, and whether
    /// the TLS certificate was read again.
    pub access: Vec<String>,
    /// Config sections that changed but take effect only at a restart.
    pub needs_restart: Vec<String>,
    /// Definitions the config's copy did not change: left as they serve
    /// (with any change made through the API).
    pub unchanged: usize,
}

impl ReloadReport {
    /// One line per change, for logs and the CLI.
    pub fn lines(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .apps
            .iter()
            .chain(&self.admission)
            .chain(&self.access)
            .chain(&self.definitions)
            .cloned()
            .collect();
        out.extend(
            self.needs_restart
                .iter()
                .map(|s| format!("! [{s}] changed; it takes effect at the next restart")),
        );
        out.push(format!(
            "{} definitions unchanged in the config (kept as they serve)",
            self.unchanged
        ));
        out
    }
}

/// SHA-256 of a plugin's bytes, read now.
fn fingerprint(source: &ComponentSource) -> Result<String, String> {
    use sha2::{Digest, Sha256};
    let digest = match source {
        ComponentSource::File(p) => {
            let bytes = std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
            Sha256::digest(&bytes)
        }
        ComponentSource::Bytes(b) => Sha256::digest(b),
    };
    Ok(hex::encode(digest))
}

impl std::fmt::Debug for Deployment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deployment")
            .field("config", &self.config().path)
            .field("apps", &self.apps.reading().len())
            .finish_non_exhaustive()
    }
}

impl Deployment {
    /// Load every app and definition of `config`. Fails with every problem
    /// found (plugins that do not load, definitions that do not check out).
    pub async fn start(config: Config, options: StartOptions) -> Result<Self, Problems> {
        let file = &config.file;
        let mut problems = Vec::new();
        let mut limits = Limits::default();
        if let Some(mb) = file.runtime.memory_mb {
            limits.memory = mb << 20;
        }
        let host_bytes =
            switchyard_runtime::HostBytes::new(file.server.max_buffered_mb.saturating_mul(1 << 20));
        let runtime = Runtime::new(RuntimeConfig {
            cache_dir: file
                .runtime
                .cache_dir
                .as_ref()
                .map(|d| config.relative(d))
                .or_else(switchyard_runtime::ComponentCache::default_dir),
            limits,
            max_instances: file.runtime.instances(),
            host_bytes: Some(host_bytes.clone()),
            ..RuntimeConfig::default()
        })
        .map_err(|e| {
            Problems(vec![Problem {
                file: config.path.clone(),
                line: None,
                path: None,
                message: e.to_string(),
            }])
        })?;

        let metrics = Arc::new(Metrics::new());
        let mut builder = Switchyard::builder()
            .breaker(file.engine.breaker)
            .budget(file.engine.budget)
            .admission(file.engine.admission)
            .observer(metrics.clone());
        let idem = &file.engine.idempotency;
        builder = builder
            .records_unavailable(idem.when_unavailable)
            .idempotency_ttl(std::time::Duration::from_secs(idem.ttl_s));
        let mut store = None;
        if options.store {
            let at = config.relative(&file.server.store);
            match Store::open(&at) {
                Ok(s) => {
                    let s = Arc::new(s);
                    builder = builder.observer(Arc::new(HealthRecorder {
                        tx: spawn_recorder(s.clone()),
                    }));
                    // One replica's records live beside its definitions
                    // (a cluster's replace them with Redis's below).
                    match crate::records::SqliteRecords::open(&at, idem.max_records) {
                        Ok(r) => builder = builder.records(Arc::new(r)),
                        Err(e) => problems.push(store_problem(&config, e.into())),
                    }
                    store = Some(s);
                }
                Err(e) => problems.push(store_problem(&config, e)),
            }
        }
        // Cluster mode is for a serving replica (with its store); `check`
        // and `run` stay on their own.
        let cluster = match (&file.cluster, options.store) {
            (Some(c), true) => {
                let link = crate::cluster::Cluster::new(c).map_err(|e| {
                    Problems(vec![
                        config.problem(&FieldPath::keys(["cluster", "redis_url"]), e),
                    ])
                })?;
                builder = builder.shared(link.clone()).records(link.clone());
                if let Some(ttl) = c.idempotency_ttl_s {
                    builder = builder.idempotency_ttl(std::time::Duration::from_secs(ttl));
                }
                Some(link)
            }
            _ => None,
        };
        let yard = builder.build();

        let mut apps = Vec::new();
        let mut loaded = HashMap::new();
        for spec in &config.apps {
            if let Some(a) = spec.admission
                && let Err(e) = yard.set_admission(&spec.product, &spec.tag, a)
            {
                let at = FieldPath::keys(["products", &spec.product, "apps", &spec.tag]);
                problems.push(config.problem(&at.key("admission"), e.to_string()));
            }
            for (env, grant) in &spec.grants {
                let name = format!("{}/{}@{env}", spec.product, spec.tag);
                let started = Instant::now();
                if options.progress {
                    eprintln!("loading {} for {name} ...", spec.plugin);
                }
                match runtime
                    .load(&name, spec.source.clone(), grant.clone())
                    .await
                {
                    Ok(app) => {
                        // What it was loaded from, so a reload can tell
                        // whether the file changed since.
                        loaded.insert(
                            (spec.product.clone(), spec.tag.clone(), env.clone()),
                            (hex::encode(app.load_report().sha256), grant.clone()),
                        );
                        if options.progress {
                            let r = app.load_report();
                            eprintln!(
                                "  loaded in {:.2?} ({:?} precompiled cache)",
                                started.elapsed(),
                                r.cache
                            );
                        }
                        yard.install_app(&spec.product, &spec.tag, env, Arc::new(app.clone()));
                        apps.push(AppHandle {
                            product: spec.product.clone(),
                            app: spec.tag.clone(),
                            env: env.clone(),
                            handle: app,
                        });
                    }
                    Err(e) => problems.push(config.problem(
                        &FieldPath::keys(["products", &spec.product, "apps", &spec.tag, "plugin"]),
                        format!("env `{env}`: {e}"),
                    )),
                }
            }
        }
        if !problems.is_empty() {
            return Err(Problems(problems));
        }

        let from_config = config.definitions();
        let mut warnings = Vec::new();
        let mut drift = Vec::new();
        let mut baseline = HashMap::new();
        if !options.store {
            baseline.extend(from_config.iter().map(|(_, d)| (d.key(), d.clone())));
        }
        let defs: Vec<(Option<FieldPath>, Definition)> = match &store {
            None => from_config.into_iter().map(|(p, d)| (Some(p), d)).collect(),
            Some(s) => {
                let seed = file.server.seed;
                let err = |e| Problems(vec![store_problem(&config, e)]);
                let mut paths = HashMap::new();
                for (path, d) in from_config {
                    let m = d.meta();
                    let stored = s.get(&m.product, d.kind(), &m.tag).map_err(err)?;
                    let kept = match &stored {
                        Some(old) if seed != SeedMode::Overwrite => old.clone(),
                        _ => d.clone(),
                    };
                    baseline.insert(d.key(), kept);
                    match &stored {
                        Some(old) if *old != d && seed == SeedMode::Overwrite => drift.push(format!(
                            "{path}: the config's copy replaced the store's (server.seed = \"overwrite\")"
                        )),
                        Some(old) if *old != d => drift.push(format!(
                            "{path}: differs between the config and the store; the store's copy serves (changed through the API, or the config was edited while stopped). To apply the config's: POST /v1/admin/reload after an edit, PUT it, or set server.seed = \"overwrite\"; `switchyard check --diff` shows every difference"
                        )),
                        _ => {}
                    }
                    if stored.is_none() || seed == SeedMode::Overwrite {
                        s.put(&d).map_err(err)?;
                    }
                    paths.insert(d.key(), path);
                }
                s.all()
                    .map_err(err)?
                    .into_iter()
                    .map(|d| (paths.remove(&d.key()), d))
                    .collect()
            }
        };
        for (path, def, e) in define_all(&yard, defs) {
            match path {
                // A definition written in the config: the config is wrong.
                Some(path) => {
                    let rest = e.path.strip_prefix(&def.path()).unwrap_or(&e.path);
                    problems.push(config.problem(&path.join_dotted(rest), e.reason));
                }
                // Only in the store (created through the API): keep serving.
                None => warnings.push(format!(
                    "stored {} `{}/{}` skipped: {e}; fix it with PUT /v1/{}/{}/{} or delete it",
                    def.kind(),
                    def.meta().product,
                    def.meta().tag,
                    def.meta().product,
                    def.kind().plural(),
                    def.meta().tag
                )),
            }
        }
        if !problems.is_empty() {
            return Err(Problems(problems));
        }
        if let Some(s) = &store {
            let err = |e| Problems(vec![store_problem(&config, e)]);
            let history = s.health_history().map_err(err)?;
            for (key, outcomes) in history {
                yard.restore_health(&key.product, &key.env, &key.tag, outcomes);
            }
            // Admission limits set through the API outlive restarts, as
            // definitions do; `seed = "overwrite"` makes the config win.
            if file.server.seed == SeedMode::Overwrite {
                s.clear_admissions().map_err(err)?;
            }
            let pool = file.runtime.instances();
            for (product, app, a) in s.admissions().map_err(err)? {
                let known = config
                    .apps
                    .iter()
                    .any(|x| x.product == product && x.tag == app);
                if !known {
                    continue;
                }
                if let Err(e) = a
                    .validate_within("admission", pool)
                    .and_then(|()| yard.set_admission(&product, &app, a))
                {
                    warnings.push(format!(
                        "stored admission of `{product}/{app}` skipped: {e}; set it again with PUT /v1/{product}/apps/{app}/admission"
                    ));
                }
            }
        }
        let deployment = Self {
            yard,
            cluster,
            hub: crate::events::Hub::default(),
            host_bytes,
            tokens: crate::access::Tokens::default(),
            throttle: crate::access::Throttle::default(),
            auth: std::sync::atomic::AtomicBool::new(false),
            config_tokens: Mutex::new(Vec::new()),
            audit_mem: Mutex::new(std::collections::VecDeque::new()),
            store,
            metrics,
            apps: RwLock::new(apps),
            config: RwLock::new(Arc::new(config)),
            loaded: Mutex::new(loaded),
            warnings,
            drift,
            baseline: Mutex::new(baseline),
            writes: Mutex::new(()),
            reloading: tokio::sync::Mutex::new(()),
            runtime,
        };
        let dropped = deployment
            .restore_operator_state()
            .map_err(|e| Problems(vec![store_problem(&deployment.config(), e)]))?;
        let mut deployment = deployment;
        deployment.warnings.extend(dropped);
        Ok(deployment)
    }

    /// What the config's tokens were at the last start or reload.
    pub(crate) fn config_tokens_mut(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        self.config_tokens.locked()
    }

    /// Keep an audit entry in memory (no store), numbered, at most 1,000.
    pub(crate) fn audit_mem(&self, mut e: crate::store::AuditEntry) -> crate::store::AuditEntry {
        let mut log = self.audit_mem.locked();
        e.id = log.front().map_or(1, |x| x.id + 1);
        log.push_front(e.clone());
        log.truncate(1_000);
        e
    }

    /// The newest `limit` entries kept in memory.
    pub(crate) fn audit_mem_log(&self, limit: usize) -> Vec<crate::store::AuditEntry> {
        self.audit_mem
            .locked()
            .iter()
            .take(limit)
            .cloned()
            .collect()
    }

    /// The config in force (the latest one a reload applied).
    pub fn config(&self) -> Arc<Config> {
        self.config.reading().clone()
    }

    /// The loaded apps.
    pub fn apps(&self) -> Vec<AppHandle> {
        self.apps.reading().clone()
    }

    /// Read the config file again and apply what changed in it, without a
    /// restart: apps whose plugin file or grant changed are loaded again
    /// (runs in flight finish on the old instance), definitions whose
    /// copy in the config changed are created, updated or deleted as one
    /// batch (all or none), admission limits follow the config. What the
    /// config did not change is left as it serves, API edits included.
    /// Breakers, health and retry budgets are keyed by app and action, so
    /// they carry over. On any problem nothing changes and every problem
    /// is returned.
    pub async fn reload(&self) -> Result<ReloadReport, Problems> {
        // One reload at a time; API writes wait only for the part that
        // changes the engine and the store (not while plugins load).
        let _one = self.reloading.lock().await;
        let old = self.config();
        let new = Config::load(&old.path)?;
        let mut report = ReloadReport::default();
        // The config's tokens, resolved before anything changes: a token
        // whose secret is missing refuses the whole reload.
        let tokens = if self.auth.load(std::sync::atomic::Ordering::SeqCst) {
            Some(new.server_tokens()?)
        } else {
            None
        };

        let (fresh, wanted) = self.load_changed_apps(&new, &mut report).await?;
        let (changes, paths) = self.definition_changes(&new, &mut report);

        // Install the apps, apply the batch; undo the apps if it is refused.
        let _w = self.writes.locked();
        let previous: Vec<AppHandle> = self.apps();
        for ((product, tag, env), app, _, _) in &fresh {
            self.yard
                .install_app(product, tag, env, Arc::new(app.clone()));
        }
        let undo_apps = || {
            for ((product, tag, env), _, _, _) in &fresh {
                match previous
                    .iter()
                    .find(|h| (&h.product, &h.app, &h.env) == (product, tag, env))
                {
                    Some(h) => self
                        .yard
                        .install_app(product, tag, env, Arc::new(h.handle.clone())),
                    None => {
                        let _ = self.yard.remove_app_env(product, tag, env);
                    }
                }
            }
        };
        // What puts the engine back if the store refuses the batch.
        let undo: Vec<Change> = changes
            .iter()
            .map(|c| {
                let (product, kind, tag) = c.key();
                match self.yard.fetch(&product, kind, &tag) {
                    Some(d) => Change::Put(Box::new(d)),
                    None => Change::Delete { product, kind, tag },
                }
            })
            .collect();
        let applied: Vec<Change> = changes.clone();
        if let Err(errors) = self.yard.apply(changes) {
            undo_apps();
            return Err(Problems(
                errors
                    .into_iter()
                    .map(|e| problem_in_config(&new, &paths, e))
                    .collect(),
            ));
        }
        if let Some(s) = &self.store
            && let Err(e) = s.apply(&applied)
        {
            // Engine and store, or neither.
            let _ = self.yard.apply(undo);
            undo_apps();
            return Err(Problems(vec![store_problem(&new, e)]));
        }
        if let Some(c) = &self.cluster {
            for change in &applied {
                let (p, kind, t) = change.key();
                c.definition_changed(&p, kind, &t);
            }
        }

        // Apps no longer in the config (their definitions are gone now).
        let mut apps: Vec<AppHandle> = previous
            .into_iter()
            .filter(|h| {
                let key = (h.product.clone(), h.app.clone(), h.env.clone());
                wanted.contains(&key) && !fresh.iter().any(|(k, ..)| *k == key)
            })
            .collect();
        for h in self.apps() {
            let key = (h.product.clone(), h.app.clone(), h.env.clone());
            if !wanted.contains(&key) {
                match self.yard.remove_app_env(&h.product, &h.app, &h.env) {
                    Ok(()) => report
                        .apps
                        .push(format!("- app {}/{}@{} removed", h.product, h.app, h.env)),
                    Err(e) => {
                        // Still used by a definition made through the API:
                        // it keeps serving until that changes.
                        report
                            .apps
                            .push(format!("! app {}/{}@{} kept: {e}", h.product, h.app, h.env));
                        apps.push(h.clone());
                        continue;
                    }
                }
            }
        }
        let mut loaded = self.loaded.locked();
        loaded.retain(|k, _| wanted.contains(k));
        for (key, app, print, grant) in fresh {
            apps.push(AppHandle {
                product: key.0.clone(),
                app: key.1.clone(),
                env: key.2.clone(),
                handle: app,
            });
            loaded.insert(key, (print, grant));
        }
        drop(loaded);
        *self.apps.writing() = apps;

        // Admission limits written in the config.
        for spec in &new.apps {
            let was = old
                .apps
                .iter()
                .find(|a| a.product == spec.product && a.tag == spec.tag)
                .and_then(|a| a.admission);
            if spec.admission != was {
                let a = spec.admission.unwrap_or(new.file.engine.admission);
                if self.yard.set_admission(&spec.product, &spec.tag, a).is_ok() {
                    report
                        .admission
                        .push(format!("~ admission of {}/{} set", spec.product, spec.tag));
                }
            }
        }
        // Tokens and the TLS files apply at reload; the rest of [server]
        // at a restart.
        let reloadable = |s: &crate::config::ServerConfig| {
            let mut s = s.clone();
            s.tokens.clear();
            s.tls = None;
            format!("{s:?}")
        };
        if let Some(tokens) = tokens {
            let before: Vec<String> = self.config_tokens.locked().clone();
            let after = crate::access::marks(&tokens);
            if before != after {
                report.access.push(format!(
                    "~ {} tokens from the config (was {})",
                    after.len(),
                    before.len()
                ));
            }
            self.tokens.replace_config(&tokens);
            *self.config_tokens.locked() = after;
        }
        for (section, a, b) in [
            (
                "server",
                reloadable(&old.file.server),
                reloadable(&new.file.server),
            ),
            (
                "engine",
                format!("{:?}", old.file.engine),
                format!("{:?}", new.file.engine),
            ),
            (
                "runtime",
                format!("{:?}", old.file.runtime),
                format!("{:?}", new.file.runtime),
            ),
        ] {
            if a != b {
                report.needs_restart.push(section.to_string());
            }
        }
        *self.baseline.locked() = new
            .definitions()
            .into_iter()
            .map(|(_, d)| (d.key(), d))
            .collect();
        *self.config.writing() = Arc::new(new);
        Ok(report)
    }

    /// Load the apps of `new` whose plugin bytes or grant differ from what
    /// is loaded (or that are new); also every app key `new` wants.
    async fn load_changed_apps(
        &self,
        new: &Config,
        report: &mut ReloadReport,
    ) -> Result<(Vec<Fresh>, Vec<AppKey>), Problems> {
        let mut problems = Vec::new();
        let mut fresh = Vec::new();
        let loaded = self.loaded.locked().clone();
        let mut wanted: Vec<AppKey> = Vec::new();
        for spec in &new.apps {
            for (env, grant) in &spec.grants {
                let key = (spec.product.clone(), spec.tag.clone(), env.clone());
                wanted.push(key.clone());
                let at = FieldPath::keys(["products", &spec.product, "apps", &spec.tag, "plugin"]);
                let print = match fingerprint(&spec.source) {
                    Ok(p) => p,
                    Err(e) => {
                        problems.push(new.problem(&at, e));
                        continue;
                    }
                };
                let verb = match loaded.get(&key) {
                    Some((p, g)) if *p == print && g == grant => continue,
                    Some((p, _)) if *p != print => "reloaded (plugin changed)",
                    Some(_) => "reloaded (grant changed)",
                    None => "added",
                };
                let name = format!("{}/{}@{env}", spec.product, spec.tag);
                match self
                    .runtime
                    .load(&name, spec.source.clone(), grant.clone())
                    .await
                {
                    Ok(app) => {
                        report.apps.push(format!("~ app {name} {verb}"));
                        fresh.push((key, app, print, grant.clone()));
                    }
                    Err(e) => problems.push(new.problem(&at, format!("env `{env}`: {e}"))),
                }
            }
        }
        if problems.is_empty() {
            Ok((fresh, wanted))
        } else {
            Err(Problems(problems))
        }
    }

    /// The changes that make the engine serve `new`'s definitions where
    /// the config's copy changed since it was last applied, and where
    /// each one is written in `new`.
    fn definition_changes(
        &self,
        new: &Config,
        report: &mut ReloadReport,
    ) -> (Vec<Change>, HashMap<DefKey, FieldPath>) {
        let before = self.baseline.locked().clone();
        let mut paths = HashMap::new();
        let mut changes = Vec::new();
        let mut seen = Vec::new();
        for (path, d) in new.definitions() {
            seen.push(d.key());
            match before.get(&d.key()) {
                Some(b) if *b == d => report.unchanged += 1,
                b => {
                    let verb = if b.is_some() { "updated" } else { "created" };
                    report.definitions.push(format!("~ {path} {verb}"));
                    paths.insert(d.key(), path);
                    changes.push(Change::Put(Box::new(d)));
                }
            }
        }
        for (key, d) in &before {
            if !seen.contains(key) {
                report.definitions.push(format!(
                    "- products.{}.{} deleted (no longer in the config)",
                    d.meta().product,
                    d.path()
                ));
                changes.push(Change::Delete {
                    product: key.0.clone(),
                    kind: key.1,
                    tag: key.2.clone(),
                });
            }
        }
        (changes, paths)
    }

    /// How many definitions the engine holds, over the config's products.
    pub fn definition_count(&self) -> usize {
        self.config()
            .file
            .products
            .keys()
            .map(|p| self.yard.fetch_all(p, None).len())
            .sum()
    }

    /// The Prometheus text exposition, with breaker states, admission
    /// state, instance slots and app counters read now.
    pub fn metrics_text(&self) -> String {
        let mut text = self.metrics.render(&Scrape {
            breakers: &self.yard.breaker_states(),
            apps: &self.apps(),
            admission: &self.yard.admission_states(),
            instances: self.runtime.instances(),
        });
        let b = &self.host_bytes;
        text.push_str(&crate::metrics::unlabelled(&[
            (
                "switchyard_host_bytes_held",
                "gauge",
                "Bytes of request bodies and provider answers the host holds now.",
                b.used() as u64,
            ),
            (
                "switchyard_host_bytes_max",
                "gauge",
                "The host's byte budget (server.max_buffered_mb).",
                b.cap() as u64,
            ),
            (
                "switchyard_host_bytes_refused_total",
                "counter",
                "Request bodies refused and provider requests not sent because the byte budget was full.",
                b.refused(),
            ),
            (
                "switchyard_host_bytes_waited_total",
                "counter",
                "Provider answers that waited for room in the byte budget.",
                b.waited(),
            ),
            (
                "switchyard_event_streams",
                "gauge",
                "/v1/events streams open now.",
                self.hub.streams() as u64,
            ),
        ]));
        if let Some(c) = &self.cluster {
            text.push_str(&c.metrics());
        }
        text
    }

    /// Set an app's admission limits (engine and store, or neither).
    pub fn set_admission(
        &self,
        product: &str,
        app: &str,
        config: AdmissionConfig,
    ) -> Result<(), ChangeError> {
        let _w = self.writes.locked();
        let (_, pool) = self.runtime.instances();
        config.validate_within("admission", pool)?;
        if let Some(s) = &self.store {
            s.put_admission(product, app, &config)?;
        }
        self.yard.set_admission(product, app, config)?;
        Ok(())
    }

    /// Create a definition (engine and store, or neither).
    pub fn create(&self, def: Definition) -> Result<(), ChangeError> {
        let _w = self.writes.locked();
        let m = def.meta().clone();
        if self.yard.fetch(&m.product, def.kind(), &m.tag).is_some() {
            return Err(ChangeError::Exists {
                product: m.product,
                kind: def.kind(),
                tag: m.tag,
            });
        }
        self.yard.create(def.clone())?;
        if let Some(s) = &self.store
            && let Err(e) = s.put(&def)
        {
            let _ = self.yard.delete(&m.product, def.kind(), &m.tag);
            return Err(e.into());
        }
        self.shared_change(&m.product, def.kind(), &m.tag);
        Ok(())
    }

    /// Replace a definition (engine and store, or neither).
    pub fn update(&self, def: Definition) -> Result<(), ChangeError> {
        let _w = self.writes.locked();
        let m = def.meta().clone();
        let Some(old) = self.yard.fetch(&m.product, def.kind(), &m.tag) else {
            return Err(ChangeError::NotFound {
                product: m.product,
                kind: def.kind(),
                tag: m.tag,
            });
        };
        self.yard.update(def.clone())?;
        if let Some(s) = &self.store
            && let Err(e) = s.put(&def)
        {
            let _ = self.yard.update(old);
            return Err(e.into());
        }
        self.shared_change(&m.product, def.kind(), &m.tag);
        Ok(())
    }

    /// Delete a definition (engine and store, or neither); refused while
    /// another definition uses it.
    pub fn delete(&self, product: &str, kind: Kind, tag: &str) -> Result<Definition, ChangeError> {
        let _w = self.writes.locked();
        if self.yard.fetch(product, kind, tag).is_none() {
            return Err(ChangeError::NotFound {
                product: product.into(),
                kind,
                tag: tag.into(),
            });
        }
        let old = self.yard.delete(product, kind, tag)?;
        if let Some(s) = &self.store
            && let Err(e) = s.delete(product, kind, tag)
        {
            let _ = self.yard.create(old);
            return Err(e.into());
        }
        self.shared_change(product, kind, tag);
        Ok(old)
    }

    fn shared_change(&self, product: &str, kind: Kind, tag: &str) {
        if let Some(c) = &self.cluster {
            c.definition_changed(product, kind, tag);
        }
    }
}

impl crate::cluster::Local for Deployment {
    fn yard(&self) -> &Switchyard {
        &self.yard
    }

    /// Every definition this replica holds, each with whether the config
    /// defines it, and whether the config's copies win
    /// (`server.seed = "overwrite"`): what it offers the cluster's shared
    /// copy when it joins.
    fn cluster_seeds(&self) -> (Vec<(String, Definition, bool)>, bool) {
        let config = self.config();
        let baseline = self.baseline.locked();
        let mut out = Vec::new();
        for product in config.file.products.keys() {
            for def in self.yard.fetch_all(product, None) {
                let (p, kind, tag) = def.key();
                let from_config = baseline.contains_key(&(p.clone(), kind, tag.clone()));
                out.push((crate::cluster::def_key(&p, kind, &tag), def, from_config));
            }
        }
        (out, config.file.server.seed == SeedMode::Overwrite)
    }

    /// Make this replica's copy of a definition the cluster's (`None`: it
    /// was deleted), in the engine and the store, without sharing it back.
    /// A copy this replica cannot serve (an app it does not have) is
    /// reported and skipped; the cluster keeps it.
    fn apply_shared_definition(
        &self,
        product: &str,
        kind: Kind,
        tag: &str,
        def: Option<Definition>,
    ) {
        let _w = self.writes.locked();
        let mine = self.yard.fetch(product, kind, tag);
        if mine == def {
            return;
        }
        let becomes = |d: Option<Definition>| match d {
            Some(d) => Change::Put(Box::new(d)),
            None => Change::Delete {
                product: product.into(),
                kind,
                tag: tag.into(),
            },
        };
        let (change, undo) = (becomes(def), becomes(mine));
        if let Err(errors) = self.yard.apply(vec![change.clone()]) {
            for e in errors {
                eprintln!(
                    "cluster: shared {kind} `{product}/{tag}` not applied on this replica: {e}"
                );
            }
            return;
        }
        if let Some(s) = &self.store
            && let Err(e) = s.apply(std::slice::from_ref(&change))
        {
            let _ = self.yard.apply(vec![undo]);
            eprintln!("cluster: shared {kind} `{product}/{tag}` not stored: {e}");
        }
    }

    fn local_tokens(&self) -> Vec<(String, String)> {
        self.tokens
            .stored()
            .into_iter()
            .filter_map(|t| Some((t.name.clone(), serde_json::to_string(&t).ok()?)))
            .collect()
    }

    fn apply_shared_tokens(&self, tokens: Vec<(String, String)>) {
        self.take_shared_tokens(tokens);
    }

    fn apply_shared_force(&self, key: &str, force: switchyard_engine::Force) {
        use switchyard_engine::Force;
        let product = key.split('/').next().unwrap_or_default();
        if !self.config().file.products.contains_key(product) {
            return;
        }
        let forces = self.yard.forces();
        let forced = forces.iter().any(|(k, _)| k == key);
        if force == Force::Release && !forced {
            return; // nothing to release here
        }
        if !forced && forces.len() >= MAX_FORCES {
            eprintln!(
                "cluster: a shared force on `{key}` not applied: {} breakers are forced here already",
                MAX_FORCES
            );
            return;
        }
        self.yard.apply_shared_force(key, force);
        if let Some(s) = &self.store
            && let Err(e) = s.put_operator_state(
                "force",
                product,
                key,
                (force != Force::Release).then_some(force.as_str()),
            )
        {
            eprintln!("cluster: a shared force on `{key}` not stored: {e}");
        }
    }

    fn config_fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut defs: Vec<(String, String)> = self
            .config()
            .definitions()
            .into_iter()
            .map(|(_, d)| {
                let (p, kind, tag) = d.key();
                // Through `Value`, whose maps are sorted, so the text does
                // not depend on any map's iteration order.
                let json = serde_json::to_value(&d)
                    .map(|v| v.to_string())
                    .unwrap_or_default();
                (crate::cluster::def_key(&p, kind, &tag), json)
            })
            .collect();
        defs.sort();
        let mut h = Sha256::new();
        for (k, json) in defs {
            h.update(k.as_bytes());
            h.update([0]);
            h.update(json.as_bytes());
            h.update([0]);
        }
        hex::encode(h.finalize())
    }

    /// Take in a drain or restore another replica's operator made: the
    /// engine and the store follow (the audit entry is the other replica's).
    fn apply_shared_drain(&self, product: &str, provider: &str, drained: bool) {
        if self.config().file.products.contains_key(product) {
            if drained {
                self.yard.drain(product, provider);
            } else {
                self.yard.restore(product, provider);
            }
            if let Some(s) = &self.store
                && let Err(e) =
                    s.put_operator_state("drain", product, provider, drained.then_some("drained"))
            {
                eprintln!("cluster: a shared drain of `{product}/{provider}` not stored: {e}");
            }
        }
    }
}

/// A definition's refusal, placed at its table in the config file (with
/// its line) when the config wrote it.
fn problem_in_config(
    config: &Config,
    paths: &HashMap<DefKey, FieldPath>,
    e: DefineError,
) -> Problem {
    let hit = paths.iter().find_map(|((_, kind, tag), at)| {
        let root = format!("{}.{tag}", kind.plural());
        let rest = e.path.strip_prefix(&root)?;
        (rest.is_empty() || rest.starts_with(['.', '['])).then(|| (at, rest.to_string()))
    });
    match hit {
        Some((at, rest)) => config.problem(&at.clone().join_dotted(&rest), e.reason),
        None => config.problem(
            &FieldPath::keys(["products"]),
            format!("{}: {}", e.path, e.reason),
        ),
    }
}

/// A store failure, reported at `server.store`.
fn store_problem(config: &Config, e: StoreError) -> Problem {
    config.problem(&FieldPath::keys(["server", "store"]), e.to_string())
}

/// Define `defs` in dependency order: each pass defines what it can, until
/// a pass makes no progress. Returns what could not be defined.
fn define_all<P>(
    yard: &Switchyard,
    defs: Vec<(P, Definition)>,
) -> Vec<(P, Definition, DefineError)> {
    let mut pending = defs;
    loop {
        let mut failed = Vec::new();
        let before = pending.len();
        for (p, d) in pending {
            if let Err(e) = yard.create(d.clone()) {
                failed.push((p, d, e));
            }
        }
        if failed.is_empty() || failed.len() == before {
            return failed;
        }
        pending = failed.into_iter().map(|(p, d, _)| (p, d)).collect();
    }
}

fn spawn_recorder(store: Arc<Store>) -> mpsc::Sender<(HealthKey, ProbeOutcome)> {
    let (tx, rx) = mpsc::channel::<(HealthKey, ProbeOutcome)>();
    std::thread::Builder::new()
        .name("switchyard-health-store".into())
        .spawn(move || {
            for (key, outcome) in rx {
                // Bounded per check; a definition's own `history` bounds
                // what the engine keeps in memory.
                if let Err(e) = store.record_health(&key, &outcome, HEALTH_ROWS) {
                    tracing::warn!("could not store a healthcheck outcome: {e}");
                }
            }
        })
        .expect("spawn health recorder");
    tx
}

/// Healthcheck outcomes kept in the store per (product, env, check).
pub const HEALTH_ROWS: usize = 500;

/// How the config's definitions differ from the store's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Drift {
    /// In the config, not in the store (seeding adds it).
    OnlyInConfig(String),
    /// In the store (created through the API), not in the config.
    OnlyInStore(String),
    /// In both, different (the store wins unless `seed = "overwrite"`).
    Differs(String),
}

/// Compare the config's definitions with the store's.
pub fn drift(config: &Config, store: &Store) -> Result<Vec<Drift>, StoreError> {
    let mut stored: HashMap<(String, Kind, String), Definition> =
        store.all()?.into_iter().map(|d| (d.key(), d)).collect();
    let mut out = Vec::new();
    for (path, d) in config.definitions() {
        match stored.remove(&d.key()) {
            None => out.push(Drift::OnlyInConfig(path.to_string())),
            Some(s) if s != d => out.push(Drift::Differs(path.to_string())),
            Some(_) => {}
        }
    }
    let mut rest: Vec<String> = stored
        .into_values()
        .map(|d| format!("products.{}.{}", d.meta().product, d.path()))
        .collect();
    rest.sort();
    out.extend(rest.into_iter().map(Drift::OnlyInStore));
    Ok(out)
}
