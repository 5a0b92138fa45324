//! `switchyard serve`, `run`, `check` and `config schema`: the commands
//! that start from a config file.

use super::{Exit, usage};
use crate::api::{self, ApiState};
use crate::config::{Config, Problems};
use crate::deployment::{Deployment, Drift, StartOptions, drift};
use crate::store::Store;
use clap::Args;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};
use switchyard_engine::{Kind, RunOptions, Session};

/// Exit code: the server could not start or stopped on an error.
pub const EXIT_SERVE: i32 = 3;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The config file.
    #[arg(default_value = "switchyard.toml")]
    config: PathBuf,
    /// Listen here instead of `server.listen` (`127.0.0.1:0` picks a port).
    #[arg(long)]
    listen: Option<String>,
}

/// The kinds `run` runs, by the engine's own names.
fn runnable(s: &str) -> Result<Kind, String> {
    [Kind::Fallback, Kind::Quota, Kind::Feature]
        .into_iter()
        .find(|k| k.as_str() == s)
        .ok_or_else(|| format!("`{s}` cannot be run; run a fallback, quota or feature"))
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// What to run: fallback, quota or feature.
    #[arg(value_parser = runnable)]
    kind: Kind,
    /// Its tag.
    tag: String,
    /// The input, as JSON.
    #[arg(long, default_value = "{}")]
    input: String,
    /// The env (default: the product's only env).
    #[arg(long)]
    env: Option<String>,
    /// The product (default: the config's only product).
    #[arg(long)]
    product: Option<String>,
    /// The config file, as for `serve` and `check` (default
    /// `switchyard.toml`; `--config PATH` works too).
    #[arg(conflicts_with = "config_flag")]
    config: Option<PathBuf>,
    /// The config file (same as the positional argument).
    #[arg(long = "config", value_name = "CONFIG")]
    config_flag: Option<PathBuf>,
    /// Use the store even if its file does not exist yet (it is used by
    /// default when it exists, so definitions created through the API run).
    #[arg(long, conflicts_with = "no_store")]
    with_store: bool,
    /// Ignore the store: run the config's definitions only.
    #[arg(long)]
    no_store: bool,
    /// Idempotency key of the run (default: a fresh one).
    #[arg(long)]
    idempotency_key: Option<String>,
    /// The caller's session, `TAG:TOKEN` (passed to every attempt, and
    /// part of the result-cache key).
    #[arg(long, value_name = "TAG:TOKEN")]
    session: Option<String>,
    /// Serve from and fill this result cache (a cache definition's tag).
    #[arg(long, value_name = "CACHE")]
    cache: Option<String>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// Every kind, by its singular name (`fallback`) or plural (`fallbacks`).
fn any_kind(s: &str) -> Result<Kind, String> {
    [
        Kind::Healthcheck,
        Kind::Quota,
        Kind::Fallback,
        Kind::Feature,
        Kind::Cache,
    ]
    .into_iter()
    .find(|k| k.as_str() == s || k.plural() == s)
    .ok_or_else(|| format!("`{s}` is not a kind: healthcheck, quota, fallback, feature or cache"))
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// The kind: healthcheck, quota, fallback, feature or cache.
    #[arg(value_parser = any_kind)]
    kind: Kind,
    /// Its tag.
    tag: String,
    /// The config file, as for `serve` (default `switchyard.toml`).
    config: Option<PathBuf>,
    /// Add each option's live state in this env (`*`: every env).
    #[arg(long)]
    env: Option<String>,
    /// The product (default: the config's only product).
    #[arg(long)]
    product: Option<String>,
    /// Ask a running server (`http://127.0.0.1:8080`) instead of loading
    /// the config here: its breakers, counts and health are the live ones.
    /// The token is read from `server.token_env` (default
    /// `SWITCHYARD_TOKEN`).
    #[arg(long, value_name = "URL")]
    server: Option<String>,
}

/// `switchyard get`: the definition as the API's fetch returns it. Loaded
/// here, a definition's health comes from the store's history (what
/// `serve` recorded); breakers and counts are this process's, so for the
/// live ones of a serving replica pass `--server`.
pub async fn get(args: GetArgs) -> Result<(), Exit> {
    let path = args
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from("switchyard.toml"));
    let config = if args.server.is_some() && args.product.is_some() && !path.exists() {
        None
    } else {
        Some(load(&path)?)
    };
    let product = match (&args.product, &config) {
        (Some(p), _) => p.clone(),
        (None, Some(c)) => only("product", "--product", c.file.products.keys())?,
        (None, None) => unreachable!("a config is loaded without --product"),
    };
    if let Some(url) = &args.server {
        let token_env = config.as_ref().map_or("SWITCHYARD_TOKEN".to_string(), |c| {
            c.file.server.token_env.clone()
        });
        let token = std::env::var(&token_env).ok().filter(|t| !t.is_empty());
        let mut uri = format!(
            "{}/v1/{product}/definitions/{}/{}",
            url.trim_end_matches('/'),
            args.kind.plural(),
            args.tag
        );
        if let Some(env) = &args.env {
            let env = if env == "*" { "%2A" } else { env.as_str() };
            uri.push_str(&format!("?env={env}"));
        }
        let (status, body) = http("GET", &uri, token.as_deref(), None).await?;
        println!("{body}");
        return if status == 200 {
            Ok(())
        } else {
            Err(usage(format!("{uri}: HTTP {status}")))
        };
    }
    let config = config.expect("loaded above");
    let Some(p) = config.file.products.get(&product) else {
        return Err(usage(format!(
            "no product `{product}` in {}",
            config.path.display()
        )));
    };
    let envs: Option<Vec<String>> = match args.env.as_deref() {
        None => None,
        Some("*") => Some(p.envs.clone()),
        Some(e) if p.envs.iter().any(|x| x == e) => Some(vec![e.to_string()]),
        Some(e) => {
            return Err(usage(format!(
                "--env `{e}` is not an env of `{product}` (envs: {}); or `*` for every env",
                p.envs.join(", ")
            )));
        }
    };
    let store = config.relative(&config.file.server.store).exists();
    let d = start(config, store).await?;
    let not_found = || {
        usage(format!(
            "no {} `{}` in product `{product}`",
            args.kind, args.tag
        ))
    };
    let v = match envs {
        None => serde_json::to_value(
            d.yard
                .fetch(&product, args.kind, &args.tag)
                .ok_or_else(not_found)?,
        ),
        Some(envs) => serde_json::to_value(
            d.yard
                .fetch_live(&product, args.kind, &args.tag, &envs)
                .ok_or_else(not_found)?,
        ),
    }
    .expect("serializable");
    println!(
        "{}",
        serde_json::to_string_pretty(&v).expect("serializable")
    );
    Ok(())
}

/// One request to a running server with an optional bearer token and JSON
/// body, as the CLI's actor: the status and the body text.
pub(super) async fn http(
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: Option<String>,
) -> Result<(u16, String), Exit> {
    http_with(method, uri, token, body, None).await
}

/// [`http`], to an `http://` or `https://` server; `ca` is a PEM file of
/// the CA that signed the server's certificate (default: the public web's
/// roots).
pub(super) async fn http_with(
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: Option<String>,
    ca: Option<&Path>,
) -> Result<(u16, String), Exit> {
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = hyper_rustls::HttpsConnectorBuilder::new();
    let connector = match ca {
        Some(path) => {
            use rustls_pki_types::pem::PemObject;
            let mut roots = rustls::RootCertStore::empty();
            let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
                .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                .map_err(|e| usage(format!("--ca {}: {e}", path.display())))?;
            for c in certs {
                roots
                    .add(c)
                    .map_err(|e| usage(format!("--ca {}: {e}", path.display())))?;
            }
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| usage(e.to_string()))?
                .with_root_certificates(roots)
                .with_no_client_auth();
            builder
                .with_tls_config(config)
                .https_or_http()
                .enable_http1()
                .build()
        }
        None => builder
            .with_provider_and_webpki_roots(provider)
            .map_err(|e| usage(e.to_string()))?
            .https_or_http()
            .enable_http1()
            .build(),
    };
    let client: Client<_, Full<bytes::Bytes>> =
        Client::builder(TokioExecutor::new()).build(connector);
    let mut req = http::Request::builder()
        .method(method)
        .uri(uri)
        .header("x-switchyard-actor", "cli");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let req = req
        .body(Full::new(bytes::Bytes::from(body.unwrap_or_default())))
        .map_err(|e| usage(format!("--server: {e}")))?;
    let resp = client.request(req).await.map_err(|e| {
        usage(format!(
            "{uri}: {e:?}; is the server running (and is it http or https)?"
        ))
    })?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| usage(format!("{uri}: {e}")))?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The config file.
    #[arg(default_value = "switchyard.toml")]
    config: PathBuf,
    /// Also compare the config's definitions with the store's.
    #[arg(long)]
    diff: bool,
}

fn problems(p: Problems) -> Exit {
    usage(p.to_string().trim_end())
}

fn load(path: &Path) -> Result<Config, Exit> {
    Config::load(path).map_err(problems)
}

/// Prints a line every few seconds while plugins compile (Python and
/// JavaScript components take ~15 s the first time), until dropped.
fn ticker() -> AbortOnDrop {
    let started = Instant::now();
    AbortOnDrop(tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            eprintln!(
                "  ... still loading plugins ({:.0?}; first loads compile, later ones use the cache)",
                started.elapsed()
            );
        }
    }))
}

async fn start(config: Config, store: bool) -> Result<Deployment, Exit> {
    let _ticker = ticker();
    let d = Deployment::start(
        config,
        StartOptions {
            store,
            progress: true,
        },
    )
    .await
    .map_err(problems)?;
    for w in &d.warnings {
        eprintln!("warning: {w}");
    }
    Ok(d)
}

pub async fn serve(args: ServeArgs) -> Result<(), Exit> {
    let config = load(&args.config)?;
    let server = config.file.server.clone();
    // Every token, secrets resolved, before anything starts.
    let tokens = config.server_tokens().map_err(problems)?;
    let tls = match &server.tls {
        Some(t) => Some(Arc::new(
            crate::tls::Tls::load(&config.relative(&t.cert), &config.relative(&t.key)).map_err(
                |e| Exit {
                    code: EXIT_SERVE,
                    message: format!("{}: {e}", config.path.display()),
                },
            )?,
        )),
        None => None,
    };
    let deployment = Arc::new(start(config, true).await?);
    deployment
        .throttle
        .set_limit(server.auth_failures_per_minute);
    if server.auth {
        let warnings = deployment.enable_auth(&tokens).map_err(|e| Exit {
            code: EXIT_SERVE,
            message: format!("the store's tokens could not be read: {e}"),
        })?;
        for w in warnings {
            eprintln!("warning: {w}");
        }
    }
    for line in &deployment.drift {
        eprintln!("config drift: {line}");
    }
    // Cluster mode: take in the cluster's definitions and open breakers
    // before serving (a few seconds at most; without Redis the replica
    // serves on its own state and converges when Redis is reachable).
    let _cluster = match &deployment.cluster {
        Some(c) => {
            match c.join(&*deployment, Duration::from_secs(3)).await {
                Ok(true) => {}
                Ok(false) => eprintln!("{}", c.readiness().trim_end()),
                Err(why) => {
                    return Err(Exit {
                        code: EXIT_SERVE,
                        message: format!(
                            "{}: cluster: this replica does not join: {why}",
                            deployment.config().path.display()
                        ),
                    });
                }
            }
            let local: Arc<dyn crate::cluster::Local> = deployment.clone();
            Some(AbortOnDrop(c.spawn(&local)))
        }
        None => None,
    };
    let listen = args.listen.unwrap_or(server.listen);
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .map_err(|e| Exit {
            code: EXIT_SERVE,
            message: format!(
                "cannot listen on {listen}: {e}; set `server.listen` or pass --listen"
            ),
        })?;
    let addr = listener.local_addr().map_err(|e| Exit {
        code: EXIT_SERVE,
        message: e.to_string(),
    })?;
    let healthchecks = server
        .healthchecks
        .then(|| deployment.yard.spawn_healthchecks());
    let defs = deployment.definition_count();
    println!(
        "switchyard serving on {}://{addr} ({} apps, {defs} definitions, store {}, auth {})",
        if tls.is_some() { "https" } else { "http" },
        deployment.apps().len(),
        deployment
            .store
            .as_ref()
            .map_or_else(String::new, |s| s.path().display().to_string()),
        if server.auth {
            format!("on, {} tokens", deployment.token_list().len())
        } else {
            "off".to_string()
        }
    );
    let state = Arc::new(ApiState {
        deployment,
        tls: tls.clone(),
        max_body_bytes: server.max_body_bytes,
        max_event_streams: server.max_event_streams,
        ready: AtomicBool::new(true),
        header_read_timeout: Duration::from_millis(server.header_read_timeout_ms),
    });
    let grace = Duration::from_millis(server.shutdown_grace_ms);
    let _hup = reload_on_sighup(state.deployment.clone(), tls);
    let _token_use = token_use(&state.deployment);
    api::serve(listener, state, shutdown_signal(), grace)
        .await
        .map_err(|e| Exit {
            code: EXIT_SERVE,
            message: format!("server stopped: {e}"),
        })?;
    drop(healthchecks);
    eprintln!("switchyard stopped");
    Ok(())
}

/// SIGINT or SIGTERM.
/// SIGHUP reloads the config (as `POST /v1/admin/reload` does) and says
/// what changed on stderr. Stops with the returned guard.
fn reload_on_sighup(
    deployment: Arc<Deployment>,
    tls: Option<Arc<crate::tls::Tls>>,
) -> Option<AbortOnDrop> {
    #[cfg(unix)]
    {
        let mut hup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()?;
        Some(AbortOnDrop(tokio::spawn(async move {
            while hup.recv().await.is_some() {
                // The certificate first: it does not depend on the config.
                if let Some(tls) = &tls {
                    match tls.reload() {
                        Ok(()) => eprintln!("reload: the TLS certificate was read again"),
                        Err(e) => eprintln!("reload: the TLS certificate was not changed: {e}"),
                    }
                }
                match deployment.reload().await {
                    Ok(report) => {
                        for line in report.lines() {
                            eprintln!("reload: {line}");
                        }
                        let actor = crate::ops::Actor {
                            name: "signal".into(),
                            channel: "signal",
                        };
                        let _ = deployment.audit(
                            &actor,
                            "reload",
                            "config",
                            format!("{} changes", report.lines().len().saturating_sub(1)),
                        );
                    }
                    Err(p) => eprintln!(
                        "reload refused, nothing changed: {}",
                        p.to_string().trim_end()
                    ),
                }
            }
        })))
    }
    #[cfg(not(unix))]
    {
        let _ = (deployment, tls);
        None
    }
}

/// Once a minute, keep the tokens' last-used times in the store.
fn token_use(deployment: &Arc<Deployment>) -> AbortOnDrop {
    let weak = Arc::downgrade(deployment);
    AbortOnDrop(tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tick.tick().await;
            let Some(d) = weak.upgrade() else { return };
            let _ = tokio::task::spawn_blocking(move || d.flush_token_use()).await;
        }
    }))
}

/// Aborts its task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    eprintln!("shutting down: finishing in-flight runs");
}

fn only<'a>(
    what: &str,
    flag: &str,
    names: impl Iterator<Item = &'a String>,
) -> Result<String, Exit> {
    let names: Vec<&String> = names.collect();
    match names.as_slice() {
        [one] => Ok((*one).clone()),
        _ => Err(usage(format!(
            "give {flag}: the config has {} {what}s ({})",
            names.len(),
            names
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

pub async fn run(args: RunArgs) -> Result<(), Exit> {
    let input: serde_json::Value = serde_json::from_str(&args.input)
        .map_err(|e| usage(format!("--input is not valid JSON: {e}")))?;
    let path = args
        .config
        .or(args.config_flag)
        .unwrap_or_else(|| PathBuf::from("switchyard.toml"));
    let session = match &args.session {
        None => None,
        Some(s) => match s.split_once(':') {
            Some((tag, token)) if !tag.is_empty() && !token.is_empty() => Some(Session {
                tag: tag.to_string(),
                token: token.to_string(),
            }),
            _ => {
                return Err(usage(format!(
                    "--session `{s}`: write it as TAG:TOKEN (e.g. `--session alice:tok_123`)"
                )));
            }
        },
    };
    let config = load(&path)?;
    let product = match args.product {
        Some(p) => p,
        None => only("product", "--product", config.file.products.keys())?,
    };
    let Some(p) = config.file.products.get(&product) else {
        return Err(usage(format!(
            "no product `{product}` in {}",
            config.path.display()
        )));
    };
    let env = match args.env {
        Some(e) => e,
        None => only("env", "--env", p.envs.iter())?,
    };
    let kind = args.kind;
    // Definitions created through the API live in the store: a store that
    // exists is read, so `run` runs what `serve` would.
    let store =
        !args.no_store && (args.with_store || config.relative(&config.file.server.store).exists());
    let d = start(config, store).await?;
    let options = RunOptions {
        idempotency_key: args.idempotency_key,
        session,
        cache: args.cache,
        ..RunOptions::default()
    };
    let started = Instant::now();
    let result = d
        .yard
        .run(kind, &product, &env, &args.tag, input, options)
        .await;
    let took = started.elapsed();
    if args.json {
        let v = match &result {
            Ok(r) => serde_json::to_value(r),
            Err(e) => serde_json::to_value(e),
        }
        .expect("serializable");
        println!(
            "{}",
            serde_json::to_string_pretty(&v).expect("serializable")
        );
    }
    match result {
        Ok(r) => {
            if !args.json {
                println!(
                    "served by {} in {took:.2?} (idempotency key {})",
                    r.provider.as_deref().unwrap_or("cache"),
                    r.idempotency_key
                );
                println!(
                    "output: {}",
                    serde_json::to_string_pretty(&r.output).expect("serializable")
                );
                print!("{}", r.trace.render());
            }
            Ok(())
        }
        Err(e) => {
            if !args.json
                && let Some(t) = &e.trace
            {
                print!("{}", t.render());
            }
            // Overload is the host's limit, not a failed run: its own code
            // tells scripts to try again later.
            let code = if e.code == switchyard_engine::ErrorCode::Overloaded {
                4
            } else {
                1
            };
            Err(Exit {
                code,
                message: format!("{}: {}", e.code, e.message),
            })
        }
    }
}

pub async fn check(args: CheckArgs) -> Result<(), Exit> {
    let config = load(&args.config)?;
    let store_path = config.relative(&config.file.server.store);
    let d = start(config.clone(), false).await?;
    let defs = d.definition_count();
    println!(
        "{}: ok ({} products, {} apps loaded, {defs} definitions)",
        config.path.display(),
        config.file.products.len(),
        d.apps().len()
    );
    if args.diff {
        if !store_path.exists() {
            println!(
                "store {}: does not exist yet; `serve` will seed it from this config",
                store_path.display()
            );
            return Ok(());
        }
        let store = Store::open(&store_path).map_err(usage)?;
        let drift = drift(&config, &store).map_err(usage)?;
        if drift.is_empty() {
            println!(
                "store {}: same definitions as the config",
                store_path.display()
            );
        }
        for d in drift {
            match d {
                Drift::OnlyInConfig(p) => println!("+ {p}  (only in the config; serve adds it)"),
                Drift::OnlyInStore(p) => {
                    println!("- {p}  (only in the store; created through the API)")
                }
                Drift::Differs(p) => {
                    println!("~ {p}  (differs; the store wins unless server.seed = \"overwrite\")")
                }
            }
        }
    }
    Ok(())
}

pub fn schema() -> Result<(), Exit> {
    println!(
        "{}",
        serde_json::to_string_pretty(&crate::config::json_schema()).expect("serializable")
    );
    Ok(())
}
