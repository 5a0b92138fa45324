//! `switchyard plugin test` and `switchyard plugin record`: an
//! exchange-world adapter's calls replayed against recorded provider
//! answers with no network, and recorded from a real or fake provider.

use super::common::{Exit, GrantArgs, runtime, usage};
use crate::fixtures::{Case, Fixtures};
use clap::Args;
use std::path::PathBuf;
use std::time::Instant;
use switchyard_engine::CallRequest;
use switchyard_runtime::{ComponentSource, Grant};

/// `bundled:NAME` or a `.wasm` path, as a config's `plugin` is written.
fn plugin_source(plugin: &str) -> Result<ComponentSource, Exit> {
    match plugin.strip_prefix("bundled:") {
        Some(name) => crate::bundled::bundled(name).ok_or_else(|| {
            usage(format!(
                "no bundled plugin `{name}`; bundled: {}",
                crate::bundled::BUNDLED.join(", ")
            ))
        }),
        None => Ok(ComponentSource::File(PathBuf::from(plugin))),
    }
}

#[derive(Debug, Args)]
pub struct TestArgs {
    /// The plugin: a `.wasm` path or `bundled:NAME`.
    plugin: String,
    /// Fixture files (JSON), as `switchyard plugin record` writes them.
    #[arg(required = true)]
    fixtures: Vec<PathBuf>,
}

/// Replay every case of every fixture file; exit 1 if any fails.
pub async fn test(args: TestArgs) -> Result<(), Exit> {
    let rt = runtime()?;
    let source = plugin_source(&args.plugin)?;
    let (mut passed, mut failed) = (0, 0);
    for path in &args.fixtures {
        let fixtures = Fixtures::load(path).map_err(usage)?;
        let mut grant = Grant::new();
        for (k, v) in &fixtures.config {
            grant = grant.config(k.clone(), v.clone());
        }
        let app = rt
            .load("fixture", source.clone(), grant)
            .await
            .map_err(usage)?;
        println!("{} ({} cases)", path.display(), fixtures.cases.len());
        for case in &fixtures.cases {
            let started = Instant::now();
            match case.replay(&app).await {
                Ok(()) => {
                    passed += 1;
                    println!("  ok    {} ({:.1?})", case.name, started.elapsed());
                }
                Err(why) => {
                    failed += 1;
                    println!("  FAIL  {}: {why}", case.name);
                }
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        return Err(Exit {
            code: 1,
            message: format!("{failed} fixture cases failed"),
        });
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct RecordArgs {
    /// The plugin: a `.wasm` path or `bundled:NAME`.
    plugin: String,
    /// The fixture file to add the case to (created if missing; a case of
    /// the same name is replaced).
    #[arg(long)]
    fixtures: PathBuf,
    /// The case's name.
    #[arg(long)]
    name: String,
    /// The action to run.
    #[arg(long)]
    action: String,
    /// The input, as JSON.
    #[arg(long, default_value = "{}")]
    input: String,
    /// The run's idempotency key (fixed, so replays send the same).
    #[arg(long, default_value = "fixture-key")]
    idempotency_key: String,
    #[command(flatten)]
    grant: GrantArgs,
}

/// Run one call against the provider and write what it exchanged.
pub async fn record(args: RecordArgs) -> Result<(), Exit> {
    let input: serde_json::Value = serde_json::from_str(&args.input)
        .map_err(|e| usage(format!("--input is not valid JSON: {e}")))?;
    let mut fixtures = if args.fixtures.exists() {
        Fixtures::load(&args.fixtures).map_err(usage)?
    } else {
        Fixtures::default()
    };
    // The plain settings go into the file, so a replay loads the adapter
    // as it was recorded; credentials never do.
    let mut grant = args.grant.grant()?;
    for (k, v) in &args.grant.config {
        fixtures.config.insert(k.clone(), v.clone());
    }
    grant.config = fixtures.config.clone().into_iter().collect();
    let rt = runtime()?;
    let app = rt
        .load("record", plugin_source(&args.plugin)?, grant)
        .await
        .map_err(usage)?;
    let mut request = CallRequest::new(args.action, input);
    request.idempotency_key = args.idempotency_key;
    let (result, exchanges) = app.call_recorded(request.clone()).await;
    let n = exchanges.len();
    let case = Case::recorded(&args.name, &request, exchanges, &result).map_err(usage)?;
    fixtures.put(case);
    fixtures.save(&args.fixtures).map_err(usage)?;
    match &result {
        Ok(r) => println!(
            "recorded `{}`: {n} exchanges, output {}",
            args.name, r.output
        ),
        Err(e) => println!("recorded `{}`: {n} exchanges, error {e}", args.name),
    }
    Ok(())
}
