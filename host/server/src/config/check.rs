//! Loading and checking a config: every problem at once, each with its
//! line; the apps' plugins and grants resolved.

use super::file::*;
use super::problem::*;
use super::{FieldPath, Secrets, line_of, locate, unknown};

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use switchyard_engine::{AdmissionConfig, Definition};
use switchyard_runtime::ComponentSource;
use switchyard_runtime::Grant;

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

    pub(crate) fn check_cluster(&self, c: &ClusterConfig, problems: &mut Vec<Problem>) {
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

    /// The secrets file `secrets_file` names (none: no secrets), or the
    /// problem of reading it.
    pub(crate) fn secrets(&self) -> Result<Secrets, Problem> {
        match &self.file.secrets_file {
            None => Ok(Secrets::default()),
            Some(f) => Secrets::load(&self.relative(f))
                .map_err(|e| self.problem(&FieldPath::keys(["secrets_file"]), e)),
        }
    }

    pub(crate) fn check(&mut self, problems: &mut Vec<Problem>) {
        let secrets = self.secrets().unwrap_or_else(|p| {
            problems.push(p);
            Secrets::default()
        });
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
    pub(crate) fn check_limits(&self, problems: &mut Vec<Problem>) {
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
        if let Some(keep) = rt.keep_resident_mb {
            let cap = rt.memory_cap_mb();
            if keep > cap {
                problems.push(self.problem(
                    &FieldPath::keys(["runtime", "keep_resident_mb"]),
                    format!(
                        "is {keep}; it must be between 0 and `runtime.memory_mb` ({cap}): no call's memory is larger"
                    ),
                ));
            }
        }
        if let Some(n) = rt.sandbox_threads
            && n > switchyard_runtime::MAX_SANDBOX_THREADS
        {
            problems.push(self.problem(
                &FieldPath::keys(["runtime", "sandbox_threads"]),
                format!(
                    "is {n}; it must be between 0 (calls run on the server's threads) and {}",
                    switchyard_runtime::MAX_SANDBOX_THREADS
                ),
            ));
        }
        if let Some(n) = self.file.server.api_threads
            && !(1..=MAX_API_THREADS).contains(&n)
        {
            problems.push(self.problem(
                &FieldPath::keys(["server", "api_threads"]),
                format!(
                    "is {n}; it must be between 1 and {MAX_API_THREADS} (leave it out for half the machine's cores)"
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
        let days = self.file.server.history_days;
        if days > 90 {
            problems.push(self.problem(
                &FieldPath::keys(["server", "history_days"]),
                format!("is {days}; it must be between 0 (keep none) and 90"),
            ));
        }
        let rows = self.file.server.history_max_rows;
        if !(1_000..=10_000_000).contains(&rows) {
            problems.push(self.problem(
                &FieldPath::keys(["server", "history_max_rows"]),
                format!("is {rows}; it must be between 1000 and 10000000"),
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
        if let Some(hold) = rt.exchange_hold_ms
            && hold > switchyard_runtime::MAX_EXCHANGE_HOLD.as_millis() as u64
        {
            problems.push(self.problem(
                &FieldPath::keys(["runtime", "exchange_hold_ms"]),
                format!("is {hold}; it must be between 0 and 1000 (ms)"),
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
    pub(crate) fn check_tags(
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
    pub(crate) fn app_spec(
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
