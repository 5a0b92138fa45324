//! Starting a deployment: the runtime, every app, every definition (the
//! config's and the store's, with the drift between them), admission,
//! operator state; and reading what it holds.

use super::state::*;
use crate::config::{Config, FieldPath, Problem, Problems, SeedMode};
use crate::metrics::{AppHandle, Metrics};
use crate::store::Store;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;
use switchyard_engine::{Definition, Switchyard};
use switchyard_engine::{Recover, RecoverRw};
use switchyard_runtime::{Limits, Runtime, RuntimeConfig};

impl Deployment {
    /// Load every app and definition of `config`. Fails with every problem
    /// found (plugins that do not load, definitions that do not check out).
    pub async fn start(config: Config, options: StartOptions) -> Result<Self, Problems> {
        let file = &config.file;
        let mut problems = Vec::new();
        let limits = Limits {
            memory: file.runtime.memory_cap_mb().saturating_mul(1 << 20),
            ..Limits::default()
        };
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
            exchange_hold: file.runtime.exchange_hold_ms.map_or(
                switchyard_runtime::DEFAULT_EXCHANGE_HOLD,
                std::time::Duration::from_millis,
            ),
            host_bytes: Some(host_bytes.clone()),
            // Checked against `memory_mb` with the config.
            keep_resident: file
                .runtime
                .keep_resident_mb
                .map_or(switchyard_runtime::DEFAULT_KEEP_RESIDENT, |mb| {
                    mb.saturating_mul(1 << 20)
                }),
            sandbox_threads: file.runtime.sandbox_threads(),
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
                        if let Some(hint) = resident_hint(&runtime, &app.load_report()) {
                            if options.progress {
                                eprintln!("  note: {hint}");
                            }
                            tracing::info!(app = %name, "{hint}");
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
            history_flushed: Mutex::new(None),
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
}

/// For an app whose memory starts larger than what a slot keeps resident
/// between calls: what that costs each call, and the setting that trades
/// it for memory. `None` when its memory fits (every shipped Rust adapter).
pub(crate) fn resident_hint(
    runtime: &Runtime,
    report: &switchyard_runtime::LoadReport,
) -> Option<String> {
    const MIB: u64 = 1 << 20;
    let keep = runtime.keep_resident()? as u64;
    let memory = report.initial_memory?;
    (memory > keep).then(|| {
        format!(
            "its memory starts at {:.1} MiB, more than the {:.1} MiB an instance slot keeps resident between calls (`runtime.keep_resident_mb`), so every call faults the rest in again; `keep_resident_mb = {}` or more makes its calls cheaper (a quarter to a third, measured for Python and JavaScript adapters) for that much resident memory in every warm slot",
            memory as f64 / MIB as f64,
            keep as f64 / MIB as f64,
            memory.div_ceil(MIB)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::resident_hint;
    use switchyard_runtime::{CacheOutcome, LoadReport, Runtime, RuntimeConfig, World};

    fn report(initial_memory: Option<u64>) -> LoadReport {
        LoadReport {
            size: 1,
            cache: CacheOutcome::Disabled,
            compile: std::time::Duration::ZERO,
            total: std::time::Duration::ZERO,
            world: World::ExchangeAdapter,
            sha256: [0; 32],
            initial_memory,
        }
    }

    #[test]
    fn a_memory_larger_than_what_a_slot_keeps_gets_a_hint() {
        let rt = Runtime::new(RuntimeConfig {
            cache_dir: None,
            keep_resident: 2 << 20,
            max_instances: 4,
            ..RuntimeConfig::default()
        })
        .unwrap();
        if !rt.uses_pooling() {
            // On-demand allocation maps fresh memory for every call.
            assert_eq!(resident_hint(&rt, &report(Some(64 << 20))), None);
            return;
        }
        // A Python adapter's memory (13.4 MiB at the start of a call).
        let hint = resident_hint(&rt, &report(Some(220 * (64 << 10)))).unwrap();
        assert!(hint.contains("starts at 13.8 MiB"), "{hint}");
        assert!(
            hint.contains("the 2.0 MiB an instance slot keeps"),
            "{hint}"
        );
        assert!(hint.contains("`keep_resident_mb = 14` or more"), "{hint}");
        // A Rust adapter's (128 KiB) fits; so does one of exactly 2 MiB.
        assert_eq!(resident_hint(&rt, &report(Some(128 << 10))), None);
        assert_eq!(resident_hint(&rt, &report(Some(2 << 20))), None);
        assert_eq!(resident_hint(&rt, &report(None)), None);
    }
}
