//! The commands that load a config in this process: `run`, `get`, `check`
//! and `config schema`.

use super::common::{Exit, usage};
use super::http::*;
use super::serve::*;
use crate::deployment::{Drift, drift};
use crate::store::Store;
use clap::Args;
use std::path::PathBuf;
use std::time::Instant;
use switchyard_engine::{Kind, RunOptions, Session};

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

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The config file.
    #[arg(default_value = "switchyard.toml")]
    config: PathBuf,
    /// Also compare the config's definitions with the store's.
    #[arg(long)]
    diff: bool,
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
