//! A running configuration: the plugin runtime with every app loaded, the
//! engine with every definition, the store they persist in, and metrics.
//! `switchyard serve`, `run` and `check` and the HTTP API all stand on it.

use crate::config::{Config, FieldPath, Problem, Problems, SeedMode};
use crate::metrics::{AppHandle, Metrics, Scrape};
use crate::store::{Store, StoreError};
use std::collections::HashMap;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use switchyard_engine::Recover;
use switchyard_engine::{
    AdmissionConfig, DefineError, Definition, HealthKey, Kind, Observer, ProbeOutcome, Switchyard,
};
use switchyard_runtime::{Limits, Runtime, RuntimeConfig};

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
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Loaded apps (one per product, app and env).
    pub apps: Vec<AppHandle>,
    /// The config.
    pub config: Config,
    /// Stored definitions that no longer check out against the config;
    /// skipped (and kept in the store) so the rest can serve.
    pub warnings: Vec<String>,
    writes: Mutex<()>,
    runtime: Runtime,
}

impl std::fmt::Debug for Deployment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deployment")
            .field("config", &self.config.path)
            .field("apps", &self.apps.len())
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
        let runtime = Runtime::new(RuntimeConfig {
            cache_dir: file
                .runtime
                .cache_dir
                .as_ref()
                .map(|d| config.relative(d))
                .or_else(switchyard_runtime::ComponentCache::default_dir),
            limits,
            max_instances: file.runtime.instances(),
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
        let mut store = None;
        if options.store {
            let at = config.relative(&file.server.store);
            match Store::open(&at) {
                Ok(s) => {
                    let s = Arc::new(s);
                    builder = builder.observer(Arc::new(HealthRecorder {
                        tx: spawn_recorder(s.clone()),
                    }));
                    store = Some(s);
                }
                Err(e) => problems.push(store_problem(&config, e)),
            }
        }
        let yard = builder.build();

        let mut apps = Vec::new();
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
        let defs: Vec<(Option<FieldPath>, Definition)> = match &store {
            None => from_config.into_iter().map(|(p, d)| (Some(p), d)).collect(),
            Some(s) => {
                let seed = file.server.seed;
                let err = |e| Problems(vec![store_problem(&config, e)]);
                let mut paths = HashMap::new();
                for (path, d) in from_config {
                    let m = d.meta();
                    let stored = s.get(&m.product, d.kind(), &m.tag).map_err(err)?;
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
        Ok(Self {
            yard,
            store,
            metrics,
            apps,
            config,
            warnings,
            writes: Mutex::new(()),
            runtime,
        })
    }

    /// How many definitions the engine holds, over the config's products.
    pub fn definition_count(&self) -> usize {
        self.config
            .file
            .products
            .keys()
            .map(|p| self.yard.fetch_all(p, None).len())
            .sum()
    }

    /// The Prometheus text exposition, with breaker states, admission
    /// state, instance slots and app counters read now.
    pub fn metrics_text(&self) -> String {
        self.metrics.render(&Scrape {
            breakers: &self.yard.breaker_states(),
            apps: &self.apps,
            admission: &self.yard.admission_states(),
            instances: self.runtime.instances(),
        })
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
        Ok(old)
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
