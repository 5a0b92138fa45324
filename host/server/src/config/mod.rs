//! The config file: one TOML document with the server settings, engine
//! defaults, and per product its envs, apps (plugin + grant per env) and
//! definitions. `docs/configuration.md` documents it field by field and
//! `switchyard config schema` prints its JSON Schema.
//!
//! Loading never stops at the first mistake: [`Config::load`] returns every
//! problem it finds, each with the file, line and field path and the fix.

mod access;
mod locate;
mod secrets;
mod unknown;

pub use access::{TlsConfig, TokenConfig};
pub use locate::{FieldPath, line_of, locate};
pub use secrets::Secrets;

use schemars::JsonSchema;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use switchyard_engine::{
    AdmissionConfig, BreakerConfig, BudgetConfig, CacheDef, Definition, FallbackDef, FeatureDef,
    HealthcheckDef, QuotaDef,
};
use switchyard_runtime::ComponentSource;
use switchyard_runtime::Grant;

/// Env names the HTTP API's routes reserve (they would shadow
/// `/v1/{product}/apps` and `/v1/{product}/definitions`).
pub const RESERVED_ENVS: &[&str] = &["apps", "definitions"];

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// The HTTP server (`switchyard serve`).
    #[serde(default)]
    pub server: ServerConfig,
    /// Engine-wide breaker and retry-budget settings.
    #[serde(default)]
    pub engine: EngineConfig,
    /// Plugin runtime settings.
    #[serde(default)]
    pub runtime: RuntimeSection,
    /// Cluster mode: share breakers, health, quota rotation, limits,
    /// caches, idempotency records and definitions with other replicas
    /// through Redis (docs/cluster.md). Absent: one process, as before.
    #[serde(default)]
    pub cluster: Option<ClusterConfig>,
    /// A TOML file of `name = "value"` secrets that credentials reference
    /// with `{ secret = "name" }`; relative to this file. Keep it out of
    /// version control.
    #[serde(default)]
    pub secrets_file: Option<PathBuf>,
    /// Products by name.
    #[serde(default)]
    pub products: BTreeMap<String, ProductConfig>,
}

fn default_listen() -> String {
    "127.0.0.1:7400".into()
}
fn default_store() -> PathBuf {
    "switchyard.db".into()
}
fn default_token_env() -> String {
    "SWITCHYARD_TOKEN".into()
}
fn default_body() -> usize {
    256 * 1024
}
fn default_grace() -> u64 {
    30_000
}
fn default_header_timeout() -> u64 {
    10_000
}
fn yes() -> bool {
    true
}

/// `[server]`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on. Default `127.0.0.1:7400`.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// SQLite file holding definitions and health history; relative to the
    /// config file. Default `switchyard.db`.
    #[serde(default = "default_store")]
    pub store: PathBuf,
    /// Require `Authorization: Bearer <token>` on `/v1` and `/metrics`.
    /// Default true.
    #[serde(default = "yes")]
    pub auth: bool,
    /// Environment variable holding the API token. Default
    /// `SWITCHYARD_TOKEN`.
    #[serde(default = "default_token_env")]
    pub token_env: String,
    /// Largest request body, bytes. Default 262 144.
    #[serde(default = "default_body")]
    pub max_body_bytes: usize,
    /// On SIGTERM/SIGINT, how long in-flight runs may take to finish, ms.
    /// Default 30 000.
    #[serde(default = "default_grace")]
    pub shutdown_grace_ms: u64,
    /// How the config's definitions meet the store at start:
    /// `missing` (default) adds those the store lacks, so API edits
    /// survive restarts; `overwrite` makes the config win.
    #[serde(default)]
    pub seed: SeedMode,
    /// Run healthchecks on their schedule. Default true.
    #[serde(default = "yes")]
    pub healthchecks: bool,
    /// Time a client has to send a request's headers, ms (100 to
    /// 600 000); a connection that trickles them is closed. Default 10 000.
    #[serde(default = "default_header_timeout")]
    pub header_read_timeout_ms: u64,
    /// Most `/v1/events` streams open at once (1 to 10 000); past it a new
    /// stream gets 503 `overloaded` with Retry-After. Default 64.
    #[serde(default = "default_event_streams")]
    pub max_event_streams: usize,
    /// One budget, MiB (16 to 65 536), for everything the host holds for
    /// callers and providers at once: request bodies being read and run,
    /// and providers' answers read whole for exchange-world adapters
    /// (each also under its own cap: `max_body_bytes`,
    /// `limits.egress.max_response_body`). When it is full, a new request
    /// body gets 503 `overloaded` and a new provider request is not sent
    /// (the attempt is `overloaded`, the host's limit). Default 512.
    #[serde(default = "default_buffered_mb")]
    pub max_buffered_mb: usize,
    /// Tokens that did not match one client address may send within a
    /// minute (1 to 1 000 000) before it is answered 429 for the rest of
    /// the minute. Behind a proxy every client shares its address: raise
    /// it there. Default 20.
    #[serde(default = "default_auth_failures")]
    pub auth_failures_per_minute: u32,
    /// Named API tokens, each with a role and a scope
    /// (docs/security.md). `token_env`, when set, adds an `admin` token
    /// named `default`.
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
    /// Serve HTTPS: a PEM certificate chain and key, reloaded on SIGHUP.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            store: default_store(),
            auth: true,
            token_env: default_token_env(),
            max_body_bytes: default_body(),
            shutdown_grace_ms: default_grace(),
            seed: SeedMode::Missing,
            healthchecks: true,
            header_read_timeout_ms: default_header_timeout(),
            max_event_streams: default_event_streams(),
            max_buffered_mb: default_buffered_mb(),
            auth_failures_per_minute: default_auth_failures(),
            tokens: Vec::new(),
            tls: None,
        }
    }
}

/// How config definitions seed the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SeedMode {
    /// Add what the store lacks; the store wins on a difference.
    #[default]
    Missing,
    /// The config wins: its definitions replace the stored ones.
    Overwrite,
}

/// `[engine]`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    /// Circuit breakers (one per app/action and env).
    #[serde(default)]
    pub breaker: BreakerConfig,
    /// Retry budget (per product, env and app).
    #[serde(default)]
    pub budget: BudgetConfig,
    /// Admission limits of every app that sets none of its own.
    #[serde(default)]
    pub admission: AdmissionConfig,
    /// Idempotency records: how long they keep an outcome, how many one
    /// replica keeps, and what a keyed run does when they cannot be read.
    #[serde(default)]
    pub idempotency: IdempotencyConfig,
}

/// `[engine.idempotency]`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IdempotencyConfig {
    /// How long a record keeps a finished run's outcome (or an unresolved
    /// key's app), seconds (1 to 2 592 000). Default 86 400.
    #[serde(default = "default_idempotency_ttl")]
    pub ttl_s: u64,
    /// Records one replica keeps in its store (1 000 to 10 000 000);
    /// expired ones are swept, and when it is full of live ones a new
    /// key's keyed run is refused as `idempotency-unavailable`. Default
    /// 1 000 000.
    #[serde(default = "default_max_records")]
    pub max_records: u64,
    /// A keyed run of a definition with an action that is not safe, when
    /// its record cannot be read or written (store error, Redis away):
    /// `refuse` (default: 503 `idempotency-unavailable`, nothing sent) or
    /// `run` (run without the record: a retry during the outage may
    /// execute again, on another app; unsafe for payments).
    #[serde(default)]
    pub when_unavailable: switchyard_engine::RecordsUnavailable,
}

impl Default for IdempotencyConfig {
    fn default() -> Self {
        Self {
            ttl_s: default_idempotency_ttl(),
            max_records: default_max_records(),
            when_unavailable: switchyard_engine::RecordsUnavailable::default(),
        }
    }
}

fn default_max_records() -> u64 {
    1_000_000
}

/// `[runtime]`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuntimeSection {
    /// Where precompiled plugins are cached; relative to the config file.
    /// Default: the user cache dir (`~/.cache/switchyard`).
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
    /// Memory cap of one call, MiB (40 to 4 096): the guest's memory plus
    /// the resources it makes the host hold (8 MiB reserved). Default 128.
    #[serde(default)]
    pub memory_mb: Option<usize>,
    /// Plugin instances live at once, over all apps (the instance pool;
    /// 1 to 65 536). Default 1 024. Every app's `admission.max_in_flight`
    /// must fit in it.
    #[serde(default)]
    pub max_instances: Option<u32>,
}

/// `[cluster]`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// The Redis server every replica shares: `redis://host:port/db`
    /// (`rediss://` is not supported by this build).
    pub redis_url: String,
    /// Prefix of every key this cluster writes, so clusters can share one
    /// Redis. Default `switchyard`.
    #[serde(default = "default_cluster_prefix")]
    pub prefix: String,
    /// This replica's name in leases, events and `/readyz`. Default: host
    /// name and process id.
    #[serde(default)]
    pub replica: Option<String>,
    /// The most a run waits on one Redis round trip before going on with
    /// local state, ms (1 to 1 000). Default 25.
    #[serde(default = "default_cluster_timeout")]
    pub timeout_ms: u64,
    /// How often a replica reads what the others shared (breakers, health,
    /// definitions) and reconnects when Redis is away, ms (20 to 1 000):
    /// the staleness bound. Default 200.
    #[serde(default = "default_cluster_sync")]
    pub sync_interval_ms: u64,
    /// How long an idempotency record keeps a finished run's outcome,
    /// seconds (1 to 2 592 000); when set, it wins over
    /// `engine.idempotency.ttl_s` (the older spelling).
    #[serde(default)]
    pub idempotency_ttl_s: Option<u64>,
    /// The cluster's name. Replicas sharing a prefix must share it: a
    /// replica with another name refuses to join (its `serve` stops with
    /// both names). Default: the prefix.
    #[serde(default)]
    pub name: Option<String>,
    /// What a replica does when its config's definitions differ from those
    /// of the config that seeded the cluster (compared by fingerprint at
    /// join): `read-only` (default) serves the cluster's definitions and
    /// writes none of its config's; `refuse` does not join (`serve` stops;
    /// at a later reconnect `/readyz` answers 503). A replica started with
    /// `server.seed = "overwrite"` makes its config the cluster's instead.
    #[serde(default)]
    pub on_mismatch: Mismatch,
}

/// `cluster.on_mismatch`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Mismatch {
    /// Serve the cluster's definitions; write none of the config's.
    #[default]
    ReadOnly,
    /// Do not join.
    Refuse,
}

fn default_buffered_mb() -> usize {
    512
}

fn default_auth_failures() -> u32 {
    crate::access::FAILURES_PER_WINDOW
}
fn default_event_streams() -> usize {
    64
}

fn default_cluster_prefix() -> String {
    "switchyard".into()
}
fn default_cluster_timeout() -> u64 {
    25
}
fn default_cluster_sync() -> u64 {
    200
}
fn default_idempotency_ttl() -> u64 {
    86_400
}

/// Largest `runtime.memory_mb`.
pub const MAX_MEMORY_MB: usize = 4_096;

impl RuntimeSection {
    /// The pool size in effect.
    pub fn instances(&self) -> u32 {
        self.max_instances
            .unwrap_or(switchyard_runtime::DEFAULT_MAX_INSTANCES)
    }
}

/// `[products.<name>]`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductConfig {
    /// The envs runs may name (`dev`, `prd`).
    pub envs: Vec<String>,
    /// Apps by tag.
    #[serde(default)]
    pub apps: BTreeMap<String, AppConfig>,
    /// Healthchecks by tag.
    #[serde(default)]
    pub healthchecks: BTreeMap<String, HealthcheckDef>,
    /// Result caches by tag.
    #[serde(default)]
    pub caches: BTreeMap<String, CacheDef>,
    /// Quotas by tag.
    #[serde(default)]
    pub quotas: BTreeMap<String, QuotaDef>,
    /// Fallbacks by tag.
    #[serde(default)]
    pub fallbacks: BTreeMap<String, FallbackDef>,
    /// Features by tag.
    #[serde(default)]
    pub features: BTreeMap<String, FeatureDef>,
}

impl ProductConfig {
    /// Its definitions as written (product and tag as in the body, maybe
    /// empty), keyed by table key, in an order where every reference
    /// points backwards (features last).
    fn as_written(&self) -> Vec<(&str, Definition)> {
        fn all<D: Clone + Into<Definition>>(
            m: &BTreeMap<String, D>,
        ) -> impl Iterator<Item = (&str, Definition)> {
            m.iter().map(|(t, d)| (t.as_str(), d.clone().into()))
        }
        all(&self.healthchecks)
            .chain(all(&self.caches))
            .chain(all(&self.quotas))
            .chain(all(&self.fallbacks))
            .chain(all(&self.features))
            .collect()
    }
}

/// `[products.<p>.apps.<tag>]`: a plugin and its grant per env.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// `bundled:stripe` (also `http`, `twilio`, `sns`) or a `.wasm` path
    /// relative to the config file.
    pub plugin: String,
    /// Admission limits (attempts in flight, queue, rate limit, cooldown
    /// cap) in each env; default `[engine.admission]`.
    #[serde(default)]
    pub admission: Option<AdmissionConfig>,
    /// What the app may do in each env; an app serves only the envs listed.
    pub envs: BTreeMap<String, GrantConfig>,
}

/// A grant as written in the config: like [`Grant`], but credentials hold
/// secret references, never secret values.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantConfig {
    /// Origins the app may reach (`https://api.stripe.com`).
    #[serde(default)]
    pub allow: Vec<String>,
    /// Non-public networks (CIDR) the app may reach after DNS.
    #[serde(default)]
    pub private_networks: Vec<String>,
    /// Plain settings the adapter reads (not secret).
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// Credentials the host adds to requests. Secret fields take
    /// `{ env = "VAR" }` or `{ secret = "name" }`, e.g.
    /// `{ scheme = "bearer", token = { env = "STRIPE_KEY" } }`.
    #[serde(default)]
    #[schemars(with = "Vec<serde_json::Map<String, serde_json::Value>>")]
    pub credentials: Vec<toml::Table>,
}

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// Field path, when known.
    pub path: Option<String>,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        f.write_str(": ")?;
        if let Some(p) = &self.path {
            write!(f, "{p}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found in a config (and, once loaded, its plugins and
/// definitions).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(f, "{n} problem{}:", if n == 1 { "" } else { "s" })?;
        for p in &self.0 {
            writeln!(f, "  {p}")?;
        }
        Ok(())
    }
}

/// An app ready to load: where its plugin comes from and its grant per env.
#[derive(Debug, Clone)]
pub struct AppSpec {
    /// Product.
    pub product: String,
    /// App tag.
    pub tag: String,
    /// The plugin.
    pub source: ComponentSource,
    /// How the plugin was named in the file.
    pub plugin: String,
    /// Grant per env, secrets resolved.
    pub grants: BTreeMap<String, Grant>,
    /// Its own admission limits, if the config sets them.
    pub admission: Option<AdmissionConfig>,
}

/// A loaded config: the parsed file, its text (for line numbers) and what
/// it resolves to.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file.
    pub path: PathBuf,
    /// Its text.
    pub source: String,
    /// Parsed.
    pub file: ConfigFile,
    /// Apps with resolved plugins and grants.
    pub apps: Vec<AppSpec>,
}

impl Config {
    /// Read and check `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, Problems> {
        let path = path.as_ref().to_path_buf();
        let source = std::fs::read_to_string(&path).map_err(|e| {
            Problems(vec![Problem {
                file: path.clone(),
                line: None,
                path: None,
                message: format!("cannot read the config file: {e}"),
            }])
        })?;
        Self::from_source(path, source)
    }

    /// Check `source` as if read from `path` (relative paths resolve
    /// against `path`'s directory).
    pub fn from_source(path: PathBuf, source: String) -> Result<Self, Problems> {
        let parse_error = |e: toml::de::Error| Problem {
            file: path.clone(),
            line: e.span().map(|s| line_of(&source, s.start)),
            path: None,
            message: format!("{} (see docs/configuration.md)", e.message().trim_end()),
        };
        let mut table: toml::Table =
            toml::from_str(&source).map_err(|e| Problems(vec![parse_error(e)]))?;
        // Every unknown field at once, each with what it likely meant; the
        // rest of the file is still checked without them.
        let mut problems: Vec<Problem> = unknown::strip(&mut table, json_schema())
            .into_iter()
            .map(|u| Problem {
                file: path.clone(),
                line: locate(&source, &u.path),
                path: Some(u.path.to_string()),
                message: u.to_string(),
            })
            .collect();
        let parsed = if problems.is_empty() {
            // From the text, so any other mistake keeps its line.
            toml::from_str::<ConfigFile>(&source).map_err(parse_error)
        } else {
            ConfigFile::deserialize(toml::Value::Table(table)).map_err(parse_error)
        };
        let file = match parsed {
            Ok(f) => f,
            Err(p) => {
                problems.push(p);
                return Err(Problems(problems));
            }
        };
        let mut cfg = Self {
            path,
            source,
            file,
            apps: Vec::new(),
        };
        cfg.check(&mut problems);
        if problems.is_empty() {
            Ok(cfg)
        } else {
            Err(Problems(problems))
        }
    }

    /// A problem at `path`, with its line.
    pub fn problem(&self, path: &FieldPath, message: impl Into<String>) -> Problem {
        Problem {
            file: self.path.clone(),
            line: locate(&self.source, path),
            path: Some(path.to_string()),
            message: message.into(),
        }
    }

    /// A path relative to the config file's directory.
    pub fn relative(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            return p.to_path_buf();
        }
        self.path
            .parent()
            .map_or_else(|| p.to_path_buf(), |d| d.join(p))
    }

    /// The config's definitions, product and tag filled in from where they
    /// sit, in an order where every reference points backwards (features
    /// last), each with its field path.
    pub fn definitions(&self) -> Vec<(FieldPath, Definition)> {
        let mut out = Vec::new();
        for (product, p) in &self.file.products {
            let base = FieldPath::keys(["products", product.as_str()]);
            for (tag, mut def) in p.as_written() {
                let path = base.clone().key(def.kind().plural()).key(tag);
                let meta = def.meta_mut();
                meta.product = product.clone();
                meta.tag = tag.to_string();
                out.push((path, def));
            }
        }
        out
    }

    fn check_cluster(&self, c: &ClusterConfig, problems: &mut Vec<Problem>) {
        let mut bound = |field: &str, v: u64, lo: u64, hi: u64| {
            if !(lo..=hi).contains(&v) {
                problems.push(self.problem(
                    &FieldPath::keys(["cluster", field]),
                    format!("is {v}; it must be between {lo} and {hi}"),
                ));
            }
        };
        bound("timeout_ms", c.timeout_ms, 1, 1_000);
        bound("sync_interval_ms", c.sync_interval_ms, 20, 1_000);
        if let Some(ttl) = c.idempotency_ttl_s {
            bound("idempotency_ttl_s", ttl, 1, 2_592_000);
        }
        if !c.redis_url.starts_with("redis://") {
            problems.push(self.problem(
                &FieldPath::keys(["cluster", "redis_url"]),
                format!(
                    "is `{}`; it must be a redis:// URL such as redis://127.0.0.1:6379/0",
                    c.redis_url
                ),
            ));
        } else if let Err(e) = redis::Client::open(c.redis_url.as_str()) {
            problems.push(self.problem(
                &FieldPath::keys(["cluster", "redis_url"]),
                format!("cannot be read: {e}; write it as redis://host:port/db"),
            ));
        }
        let name_ok = |v: &str| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        };
        if !name_ok(&c.prefix) {
            problems.push(self.problem(
                &FieldPath::keys(["cluster", "prefix"]),
                "must be 1 to 64 letters, digits, `-`, `_`, `.` or `:`",
            ));
        }
        for (field, v) in [("replica", &c.replica), ("name", &c.name)] {
            if let Some(v) = v
                && !name_ok(v)
            {
                problems.push(self.problem(
                    &FieldPath::keys(["cluster", field]),
                    "must be 1 to 64 letters, digits, `-`, `_`, `.` or `:`",
                ));
            }
        }
    }

    fn check(&mut self, problems: &mut Vec<Problem>) {
        let secrets = match &self.file.secrets_file {
            None => Secrets::default(),
            Some(f) => match Secrets::load(&self.relative(f)) {
                Ok(s) => s,
                Err(e) => {
                    problems.push(self.problem(&FieldPath::keys(["secrets_file"]), e));
                    Secrets::default()
                }
            },
        };
        self.check_limits(problems);
        self.check_tokens(problems);
        let mut apps = Vec::new();
        for (product, p) in &self.file.products {
            let base = FieldPath::keys(["products", product.as_str()]);
            if p.envs.is_empty() {
                problems.push(self.problem(
                    &base.clone().key("envs"),
                    "list at least one env, e.g. `envs = [\"dev\", \"prd\"]`",
                ));
            }
            for (i, env) in p.envs.iter().enumerate() {
                if RESERVED_ENVS.contains(&env.as_str()) {
                    problems.push(self.problem(
                        &base.clone().key("envs").index(i),
                        format!(
                            "`{env}` is reserved by the HTTP API's routes; name the env differently"
                        ),
                    ));
                }
            }
            self.check_tags(problems, &base, product, p);
            for (tag, hc) in &p.healthchecks {
                for env in hc.input.keys().filter(|e| !p.envs.contains(e)) {
                    problems.push(self.problem(
                        &base.clone().key("healthchecks").key(tag).key("input").key(env),
                        format!(
                            "env `{env}` is not one of product `{product}`'s envs ({}); add it to `envs` or check another env",
                            p.envs.join(", ")
                        ),
                    ));
                }
            }
            for (tag, app) in &p.apps {
                let at = base.clone().key("apps").key(tag);
                if let Some(spec) =
                    self.app_spec(problems, &at, product, tag, app, &p.envs, &secrets)
                {
                    apps.push(spec);
                }
            }
        }
        self.apps = apps;
    }

    /// Runtime and admission numbers within their bounds, and every app's
    /// `max_in_flight` within the instance pool.
    fn check_limits(&self, problems: &mut Vec<Problem>) {
        let rt = &self.file.runtime;
        let min_mb = switchyard_runtime::MIN_MEMORY >> 20;
        if let Some(mb) = rt.memory_mb
            && !(min_mb..=MAX_MEMORY_MB).contains(&mb)
        {
            problems.push(self.problem(
                &FieldPath::keys(["runtime", "memory_mb"]),
                format!(
                    "is {mb}; it must be between {min_mb} and {MAX_MEMORY_MB} ({} MiB of every call's cap is reserved for what the guest makes the host hold)",
                    switchyard_runtime::HOST_RESERVE >> 20
                ),
            ));
        }
        if let Some(c) = &self.file.cluster {
            self.check_cluster(c, problems);
        }
        let hrt = self.file.server.header_read_timeout_ms;
        if !(100..=600_000).contains(&hrt) {
            problems.push(self.problem(
                &FieldPath::keys(["server", "header_read_timeout_ms"]),
                format!("is {hrt}; it must be between 100 and 600000"),
            ));
        }
        let buffered = self.file.server.max_buffered_mb;
        if !(16..=65_536).contains(&buffered) {
            problems.push(self.problem(
                &FieldPath::keys(["server", "max_buffered_mb"]),
                format!("is {buffered}; it must be between 16 and 65536"),
            ));
        }
        let failures = self.file.server.auth_failures_per_minute;
        if !(1..=1_000_000).contains(&failures) {
            problems.push(self.problem(
                &FieldPath::keys(["server", "auth_failures_per_minute"]),
                format!("is {failures}; it must be between 1 and 1000000"),
            ));
        }
        let streams = self.file.server.max_event_streams;
        if !(1..=10_000).contains(&streams) {
            problems.push(self.problem(
                &FieldPath::keys(["server", "max_event_streams"]),
                format!("is {streams}; it must be between 1 and 10000"),
            ));
        }
        let pool = rt.instances();
        if !(1..=switchyard_runtime::MAX_INSTANCES).contains(&pool) {
            problems.push(self.problem(
                &FieldPath::keys(["runtime", "max_instances"]),
                format!(
                    "is {pool}; it must be between 1 and {}",
                    switchyard_runtime::MAX_INSTANCES
                ),
            ));
        }
        let idem = &self.file.engine.idempotency;
        for (field, v, lo, hi) in [
            ("ttl_s", idem.ttl_s, 1, 2_592_000),
            ("max_records", idem.max_records, 1_000, 10_000_000),
        ] {
            if !(lo..=hi).contains(&v) {
                problems.push(self.problem(
                    &FieldPath::keys(["engine", "idempotency", field]),
                    format!("is {v}; it must be between {lo} and {hi}"),
                ));
            }
        }
        let mut located = |at: FieldPath, e: switchyard_engine::DefineError| {
            let field = e.path.rsplit('.').next().unwrap_or_default().to_string();
            problems.push(self.problem(&at.key(&field), e.reason));
        };
        if let Err(e) = self.file.engine.breaker.validate("engine.breaker") {
            located(FieldPath::keys(["engine", "breaker"]), e);
        }
        if let Err(e) = self.file.engine.budget.validate("engine.budget") {
            located(FieldPath::keys(["engine", "budget"]), e);
        }
        let mut check = |at: FieldPath, a: &AdmissionConfig| {
            if let Err(e) = a.validate_within(&at.to_string(), pool) {
                located(at, e);
            }
        };
        check(
            FieldPath::keys(["engine", "admission"]),
            &self.file.engine.admission,
        );
        for (product, p) in &self.file.products {
            for (tag, app) in &p.apps {
                if let Some(a) = &app.admission {
                    check(
                        FieldPath::keys(["products", product, "apps", tag, "admission"]),
                        a,
                    );
                }
            }
        }
    }

    /// A tag written both as the table key and in the body must agree.
    fn check_tags(
        &self,
        problems: &mut Vec<Problem>,
        base: &FieldPath,
        product: &str,
        p: &ProductConfig,
    ) {
        for (tag, def) in p.as_written() {
            let meta = def.meta();
            let at = base.clone().key(def.kind().plural()).key(tag);
            if !meta.tag.is_empty() && meta.tag != *tag {
                problems.push(self.problem(
                    &at.clone().key("tag"),
                    format!("says `{}` but the table is `{tag}`; drop the `tag` field (the table key is the tag)", meta.tag),
                ));
            }
            if !meta.product.is_empty() && meta.product != product {
                problems.push(self.problem(
                    &at.key("product"),
                    format!("says `{}` but the definition sits under product `{product}`; drop the `product` field", meta.product),
                ));
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn app_spec(
        &self,
        problems: &mut Vec<Problem>,
        at: &FieldPath,
        product: &str,
        tag: &str,
        app: &AppConfig,
        envs: &[String],
        secrets: &Secrets,
    ) -> Option<AppSpec> {
        let before = problems.len();
        let source = match app.plugin.strip_prefix("bundled:") {
            Some(name) => crate::bundled::bundled(name).or_else(|| {
                problems.push(self.problem(
                    &at.clone().key("plugin"),
                    format!(
                        "no bundled plugin `{name}`; bundled: {}",
                        crate::bundled::BUNDLED.join(", ")
                    ),
                ));
                None
            }),
            None => {
                let file = self.relative(Path::new(&app.plugin));
                if file.is_file() {
                    Some(ComponentSource::File(file))
                } else {
                    problems.push(self.problem(
                        &at.clone().key("plugin"),
                        format!(
                            "plugin file {} does not exist; give a .wasm path relative to the config file or `bundled:<name>`",
                            file.display()
                        ),
                    ));
                    None
                }
            }
        };
        if app.envs.is_empty() {
            problems.push(self.problem(
                &at.clone().key("envs"),
                "give the app a grant for at least one env: `[...apps.<tag>.envs.dev]`",
            ));
        }
        let mut grants = BTreeMap::new();
        for (env, g) in &app.envs {
            let gat = at.clone().key("envs").key(env);
            if !envs.contains(env) {
                problems.push(self.problem(
                    &gat,
                    format!(
                        "env `{env}` is not one of the product's envs ({}); add it to `products.{product}.envs` or rename it",
                        envs.join(", ")
                    ),
                ));
                continue;
            }
            let policy = match switchyard_runtime::EgressPolicy::new(&g.allow, &g.private_networks)
            {
                Ok(p) => Some(p),
                Err(e) => {
                    problems.push(self.problem(&gat.clone().key("allow"), e.to_string()));
                    None
                }
            };
            let mut grant = Grant {
                allow: g.allow.clone(),
                private_networks: g.private_networks.clone(),
                config: g.config.clone(),
                credentials: Vec::new(),
            };
            for (i, c) in g.credentials.iter().enumerate() {
                let cat = gat.clone().key("credentials").index(i);
                match secrets.credential(c) {
                    Ok(cred) => {
                        if let Some(Err(e)) = policy.as_ref().map(|p| cred.scope(i, p)) {
                            let at = if cred.origins.is_empty() {
                                cat.clone()
                            } else {
                                cat.clone().key("origins")
                            };
                            problems.push(self.problem(&at, e.to_string()));
                        }
                        grant.credentials.push(cred);
                    }
                    Err((field, e)) => {
                        let cat = field.map_or(cat.clone(), |f| cat.clone().key(f));
                        problems.push(self.problem(&cat, e));
                    }
                }
            }
            grants.insert(env.clone(), grant);
        }
        (problems.len() == before).then(|| AppSpec {
            product: product.to_string(),
            tag: tag.to_string(),
            source: source.expect("no problem means a source"),
            plugin: app.plugin.clone(),
            grants,
            admission: app.admission,
        })
    }
}

/// The config file's JSON Schema (for editors: Taplo / Even Better TOML
/// read it from a `#:schema` comment).
/// Built once: every config load walks it for unknown fields.
pub fn json_schema() -> &'static serde_json::Value {
    static SCHEMA: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();
    SCHEMA.get_or_init(|| {
        serde_json::to_value(schemars::schema_for!(ConfigFile)).expect("schema serializes")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(src: &str) -> Result<Config, Problems> {
        Config::from_source(PathBuf::from("/cfg/sy.toml"), src.to_string())
    }

    #[test]
    fn a_typo_names_the_line_and_the_field() {
        let e = load("[server]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n").unwrap_err();
        let s = e.to_string();
        assert!(s.contains("/cfg/sy.toml:3:"), "{s}");
        assert!(s.contains("lisen"), "{s}");
    }

    #[test]
    fn every_problem_is_reported_at_once_with_lines() {
        let src = r#"
[products.pay]
envs = ["dev"]

[products.pay.apps.stripe]
plugin = "bundled:nope"

[products.pay.apps.stripe.envs.prd]
allow = ["https://api.stripe.com"]

[products.pay.apps.other]
plugin = "missing.wasm"

[products.pay.apps.other.envs.dev]
credentials = [{ scheme = "bearer", token = "sk_live_inline" }]
"#;
        let e = load(src).unwrap_err();
        let lines: Vec<String> = e.0.iter().map(ToString::to_string).collect();
        assert_eq!(e.0.len(), 4, "{lines:#?}");
        assert!(
            lines[0].starts_with("/cfg/sy.toml:12: products.pay.apps.other.plugin"),
            "{lines:#?}"
        );
        assert!(lines[1].contains("credentials[0].token"), "{lines:#?}");
        assert!(lines[1].contains("{ env = "), "{lines:#?}");
        assert!(!lines[1].contains("sk_live_inline"), "{lines:#?}");
        assert!(
            lines[2].starts_with("/cfg/sy.toml:6: products.pay.apps.stripe.plugin"),
            "{lines:#?}"
        );
        assert!(
            lines[3].contains(":8: products.pay.apps.stripe.envs.prd"),
            "{lines:#?}"
        );
    }

    #[test]
    fn every_unknown_field_missing_variable_and_stray_env_at_once() {
        let src = r#"
[products.notify]
envs = ["dev"]

[products.notify.apps.sms]
plugin = "bundled:http"
[products.notify.apps.sms.envs.dev]
alow = ["https://x.example"]
credentials = [{ scheme = "bearer", token = { env = "SWITCHYARD_TEST_UNSET_A" } }]

[products.notify.apps.mail]
plugin = "bundled:http"
[products.notify.apps.mail.envs.dev]
allow = ["https://y.example"]
credentials = [{ scheme = "bearer", token = { env = "SWITCHYARD_TEST_UNSET_B" } }]

[products.notify.healthchecks.up]
app = "sms"
action = "ping"
interval = 5000
input = { prd = {} }

[products.notify.fallbacks.f]
options = [{ provider = "a", app = "sms", event = "send" }]
"#;
        let e = load(src).unwrap_err();
        let lines: Vec<String> = e.0.iter().map(ToString::to_string).collect();
        let has = |needle: &str| lines.iter().any(|l| l.contains(needle));
        assert!(
            has(
                ":8: products.notify.apps.sms.envs.dev.alow: unknown field `alow`; did you mean `allow`?"
            ),
            "{lines:#?}"
        );
        assert!(
            has(
                ":20: products.notify.healthchecks.up.interval: unknown field `interval`; did you mean `interval_ms`?"
            ),
            "{lines:#?}"
        );
        assert!(
            has("options[0].event: unknown field `event`; did you mean `action`?"),
            "{lines:#?}"
        );
        assert!(has("SWITCHYARD_TEST_UNSET_A"), "{lines:#?}");
        assert!(has("SWITCHYARD_TEST_UNSET_B"), "{lines:#?}");
        assert!(
            has("healthchecks.up.input.prd: env `prd` is not one of product `notify`'s envs (dev)"),
            "{lines:#?}"
        );
        assert_eq!(e.0.len(), 6, "{lines:#?}");
    }

    #[test]
    fn an_inline_numeric_secret_is_refused_without_echoing_it() {
        let src = "[products.p]\nenvs = [\"dev\"]\n[products.p.apps.a]\nplugin = \"bundled:http\"\n[products.p.apps.a.envs.dev]\nallow = [\"https://x.example\"]\ncredentials = [{ scheme = \"bearer\", token = 8675309123 }]\n";
        let e = load(src).unwrap_err().to_string();
        assert!(e.contains("credentials[0].token"), "{e}");
        assert!(!e.contains("8675309123"), "{e}");
    }

    #[test]
    fn definitions_take_product_and_tag_from_their_table() {
        let src = r#"
[products.pay]
envs = ["dev"]
[products.pay.caches.quick]
ttl_ms = 1000
[products.pay.fallbacks.card]
tag = "other"
options = []
"#;
        let e = load(src).unwrap_err();
        assert!(
            e.to_string()
                .contains(":7: products.pay.fallbacks.card.tag"),
            "{e}"
        );
        let ok =
            load("[products.pay]\nenvs = [\"dev\"]\n[products.pay.caches.quick]\nttl_ms = 5\n")
                .unwrap();
        let defs = ok.definitions();
        assert_eq!(defs[0].0.to_string(), "products.pay.caches.quick");
        assert_eq!(defs[0].1.meta().product, "pay");
        assert_eq!(defs[0].1.meta().tag, "quick");
    }

    #[test]
    fn the_checked_in_schema_is_current() {
        let file = include_str!("../../../../docs/switchyard.schema.json");
        let now = serde_json::to_string_pretty(&json_schema()).unwrap();
        assert!(
            file.trim_end() == now,
            "docs/switchyard.schema.json is stale: run `cargo run -p switchyard -- config schema > docs/switchyard.schema.json`"
        );
    }

    #[test]
    fn the_shipped_configs_parse() {
        for (name, text) in [
            (
                "switchyard.toml",
                include_str!("../../../../examples/switchyard.toml"),
            ),
            ("demo.toml", include_str!("../../../../examples/demo.toml")),
        ] {
            let parsed: Result<ConfigFile, _> = toml::from_str(text);
            assert!(parsed.is_ok(), "{name}: {parsed:?}");
        }
    }

    #[test]
    fn the_schema_describes_the_file() {
        let s = json_schema();
        let text = s.to_string();
        for field in [
            "products",
            "server",
            "max_body_bytes",
            "failure_threshold",
            "panic_mode",
        ] {
            assert!(text.contains(field), "{field} missing from the schema");
        }
    }

    proptest::proptest! {
        /// Config text is what an operator types: any edit of a real
        /// config (characters deleted, inserted, replaced) is loaded into a
        /// config or a list of problems, never a panic.
        #[test]
        fn fuzz_config_text(
            edits in proptest::collection::vec(
                (proptest::prelude::any::<proptest::sample::Index>(), 0u8..3, proptest::sample::select(
                    b"=[]{}\",\n #0123456789-.abcxyz$".to_vec())),
                0..24,
            ),
        ) {
            let mut text: Vec<u8> = include_str!("../../../../examples/demo.toml").as_bytes().to_vec();
            for (at, op, byte) in edits {
                let i = at.index(text.len().max(1)).min(text.len());
                match op {
                    0 if i < text.len() => { text.remove(i); }
                    1 => text.insert(i, byte),
                    _ if i < text.len() => text[i] = byte,
                    _ => {}
                }
            }
            let _ = load(&String::from_utf8_lossy(&text));
        }

        /// Any number in any numeric field of the config is accepted or
        /// refused with its path, never a panic or an overflow.
        #[test]
        fn fuzz_config_numbers(
            n in proptest::prelude::any::<u64>(),
            field in proptest::sample::select(vec![
                "runtime.max_instances", "runtime.memory_mb", "server.max_body_bytes",
                "server.shutdown_grace_ms", "server.header_read_timeout_ms",
                "server.max_event_streams", "server.max_buffered_mb",
                "engine.budget.min_retries", "engine.budget.window_ms",
                "engine.breaker.minimum_failure_count", "engine.breaker.open_timeout",
                "engine.admission.max_in_flight", "engine.admission.max_queue",
                "engine.admission.queue_timeout_ms", "engine.admission.max_cooldown_ms",
                "engine.idempotency.ttl_s", "engine.idempotency.max_records",
                "cluster.idempotency_ttl_s",
            ]),
        ) {
            let (table, key) = field.rsplit_once('.').unwrap();
            let text = format!("[{table}]\n{key} = {}\n", n.min(i64::MAX as u64));
            if let Err(p) = load(&text) {
                proptest::prop_assert!(p.0.iter().all(|x| x.path.is_some() || x.line.is_some()), "{p}");
            }
        }
    }
}
