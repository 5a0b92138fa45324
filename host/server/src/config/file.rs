//! The config file's shape, section by section (what serde reads and
//! JSON Schema shows), and a loaded [`Config`].

use crate::access::Role;

use schemars::JsonSchema;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
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

pub(crate) fn default_listen() -> String {
    "127.0.0.1:7400".into()
}

pub(crate) fn default_store() -> PathBuf {
    "switchyard.db".into()
}

pub(crate) fn default_token_env() -> String {
    "SWITCHYARD_TOKEN".into()
}

pub(crate) fn default_body() -> usize {
    256 * 1024
}

pub(crate) fn default_grace() -> u64 {
    30_000
}

pub(crate) fn default_header_timeout() -> u64 {
    10_000
}

pub(crate) fn yes() -> bool {
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
    /// Days of providers' per-minute history (success, failures, latency)
    /// kept in the store (0 to 90; 0 keeps none). Default 7.
    #[serde(default = "default_history_days")]
    pub history_days: u64,
    /// Most rows of history kept (one per provider and minute with
    /// traffic; 1 000 to 10 000 000), the oldest forgotten first. Default
    /// 1 000 000 (about 120 MB).
    #[serde(default = "default_history_rows")]
    pub history_max_rows: u64,
    /// Named API tokens, each with a role and a scope
    /// (docs/security.md). `token_env`, when set, adds an `admin` token
    /// named `default`.
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
    /// Serve HTTPS: a PEM certificate chain and key, reloaded on SIGHUP.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Threads that serve the API and run the engine (1 to 64). Default:
    /// half the machine's cores, at least 1, or all of them with
    /// `runtime.sandbox_threads = 0`; `TOKIO_WORKER_THREADS`, when set,
    /// replaces that default.
    #[serde(default)]
    pub api_threads: Option<usize>,
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
            history_days: default_history_days(),
            history_max_rows: default_history_rows(),
            tokens: Vec::new(),
            tls: None,
            api_threads: None,
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

pub(crate) fn default_max_records() -> u64 {
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
    /// Exchange-world adapters: how long a call keeps its plugin instance
    /// for its next step while the provider answers, ms (0 to 1 000;
    /// default 25; 0: every step on a fresh instance). A quick provider's
    /// call then instantiates once instead of twice; a slower one, or a
    /// pool with less than a quarter free, gives the instance back.
    #[serde(default)]
    pub exchange_hold_ms: Option<u64>,
    /// Between calls, how much of a slot's linear memory is written back
    /// in place, MiB (0 to `memory_mb`; default 2); the rest is dropped
    /// and faulted in again by the next call. A Rust adapter's memory fits
    /// the default. Python and JavaScript adapters' memories are larger:
    /// more here makes their calls cheaper, and every warm slot holds that
    /// much of its memory resident.
    #[serde(default)]
    pub keep_resident_mb: Option<usize>,
    /// Threads of the runtime's own that run every call (the adapter's
    /// steps and the requests it has the host send), apart from the
    /// threads that serve the API and run the engine (0 to 64; 0: calls
    /// run on the server's threads). Default: the machine's cores.
    #[serde(default)]
    pub sandbox_threads: Option<usize>,
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

pub(crate) fn default_buffered_mb() -> usize {
    512
}

pub(crate) fn default_history_days() -> u64 {
    7
}

fn default_history_rows() -> u64 {
    1_000_000
}

fn default_auth_failures() -> u32 {
    crate::access::FAILURES_PER_WINDOW
}

pub(crate) fn default_event_streams() -> usize {
    64
}

pub(crate) fn default_cluster_prefix() -> String {
    "switchyard".into()
}

pub(crate) fn default_cluster_timeout() -> u64 {
    25
}

pub(crate) fn default_cluster_sync() -> u64 {
    200
}

pub(crate) fn default_idempotency_ttl() -> u64 {
    86_400
}

/// Largest `server.api_threads`.
pub const MAX_API_THREADS: usize = 64;

/// The machine's cores (1 when unknown).
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl ConfigFile {
    /// The API threads in effect: `server.api_threads`; else half the
    /// machine's cores, at least 1, or all of them when calls run on these
    /// threads (`runtime.sandbox_threads = 0`).
    pub fn api_threads(&self) -> usize {
        self.server.api_threads.unwrap_or_else(|| {
            if self.runtime.sandbox_threads() == 0 {
                cores()
            } else {
                (cores() / 2).max(1)
            }
            .min(MAX_API_THREADS)
        })
    }
}

/// Largest `runtime.memory_mb`.
pub const MAX_MEMORY_MB: usize = 4_096;

impl RuntimeSection {
    /// The pool size in effect.
    pub fn instances(&self) -> u32 {
        self.max_instances
            .unwrap_or(switchyard_runtime::DEFAULT_MAX_INSTANCES)
    }

    /// The sandbox threads in effect: `sandbox_threads`, or the machine's
    /// cores.
    pub fn sandbox_threads(&self) -> usize {
        self.sandbox_threads
            .unwrap_or_else(cores)
            .min(switchyard_runtime::MAX_SANDBOX_THREADS)
    }

    /// Every call's memory cap in effect, MiB.
    pub fn memory_cap_mb(&self) -> usize {
        self.memory_mb
            .unwrap_or(switchyard_runtime::Limits::default().memory >> 20)
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
    pub(crate) fn as_written(&self) -> Vec<(&str, Definition)> {
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

/// The config file's JSON Schema (for editors: Taplo / Even Better TOML
/// read it from a `#:schema` comment).
/// Built once: every config load walks it for unknown fields.
pub fn json_schema() -> &'static serde_json::Value {
    static SCHEMA: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();
    SCHEMA.get_or_init(|| {
        serde_json::to_value(schemars::schema_for!(ConfigFile)).expect("schema serializes")
    })
}

/// A secret reference, as JSON Schema shows it: exactly one of the two.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub(crate) struct SecretRef {
    /// An environment variable.
    env: Option<String>,
    /// A name in `secrets_file`.
    secret: Option<String>,
}

/// One `[[server.tokens]]` entry.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Its name: the audit's actor. 1 to 64 of `A-Z a-z 0-9 . _ -`.
    pub name: String,
    /// `run`, `read`, `operate`, `define` or `admin`.
    pub role: Role,
    /// Products it may act on; `["*"]` for all.
    pub products: Vec<String>,
    /// Envs it may act in (default all); `["*"]` for all.
    #[serde(default)]
    pub envs: Option<Vec<String>>,
    /// The token: `{ env = "VAR" }` or `{ secret = "name" }`, never inline.
    #[schemars(with = "SecretRef")]
    pub token: toml::Value,
}

/// `[server.tls]`: serve HTTPS (TLS 1.2 and 1.3).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first; relative to the config file.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1), readable by its owner
    /// only; relative to the config file.
    pub key: PathBuf,
}
