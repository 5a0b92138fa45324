//! What a deployment is: its state ([`Deployment`]), how a change can
//! fail, what a reload reports, the drift between config and store, and
//! the small helpers its other files share.

use crate::config::{Config, FieldPath, Problem};
use crate::metrics::{AppHandle, Metrics};
use crate::store::{Store, StoreError};
use std::collections::HashMap;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, RwLock};
use switchyard_engine::RecoverRw;
use switchyard_engine::{
    DefineError, Definition, HealthKey, Kind, Observer, ProbeOutcome, Switchyard,
};
use switchyard_runtime::{App, ComponentSource, Grant, Runtime};

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
pub(crate) struct HealthRecorder {
    pub(crate) tx: mpsc::Sender<(HealthKey, ProbeOutcome)>,
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
    pub(crate) config_tokens: Mutex<Vec<String>>,
    /// The newest engine minute of provider history in the store.
    pub(crate) history_flushed: Mutex<Option<u64>>,
    /// Operator actions when there is no store (`demo --serve`).
    pub(crate) audit_mem: Mutex<std::collections::VecDeque<crate::store::AuditEntry>>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Loaded apps (one per product, app and env); replaced by a reload.
    pub(crate) apps: RwLock<Vec<AppHandle>>,
    /// The config; replaced by a reload.
    pub(crate) config: RwLock<Arc<Config>>,
    /// What each loaded app was loaded from: its plugin's SHA-256 and its
    /// grant, so a reload reloads only what changed.
    pub(crate) loaded: Mutex<HashMap<AppKey, (String, Grant)>>,
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
    pub(crate) baseline: Mutex<HashMap<DefKey, Definition>>,
    pub(crate) writes: Mutex<()>,
    pub(crate) reloading: tokio::sync::Mutex<()>,
    pub(crate) runtime: Runtime,
}

/// Most breakers forced at once (per replica, and so per cluster: every
/// replica holds every force). A force is kept until released, never
/// evicted, and survives restarts, so it has its own bound, far below the
/// breakers' ([`switchyard_engine::MAX_BREAKERS`]).
pub const MAX_FORCES: usize = 1_000;

/// Product, app tag and env of a loaded app.
pub(crate) type AppKey = (String, String, String);

/// Product, kind and tag of a definition (`Definition::key`).
pub(crate) type DefKey = (String, Kind, String);

/// An app a reload loaded: its key, the app, its plugin's SHA-256, its grant.
pub(crate) type Fresh = (AppKey, App, String, Grant);

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
pub(crate) fn fingerprint(source: &ComponentSource) -> Result<String, String> {
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

/// A definition's refusal, placed at its table in the config file (with
/// its line) when the config wrote it.
pub(crate) fn problem_in_config(
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
pub(crate) fn store_problem(config: &Config, e: StoreError) -> Problem {
    config.problem(&FieldPath::keys(["server", "store"]), e.to_string())
}

/// Define `defs` in dependency order: each pass defines what it can, until
/// a pass makes no progress. Returns what could not be defined.
pub(crate) fn define_all<P>(
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

pub(crate) fn spawn_recorder(store: Arc<Store>) -> mpsc::Sender<(HealthKey, ProbeOutcome)> {
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
