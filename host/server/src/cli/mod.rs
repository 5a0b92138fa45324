//! The `switchyard` command line.
//!
//! Exit codes: 0 success; 1 the run or call ran and failed (the error is
//! printed); 2 bad usage, a config with problems, a plugin that does not
//! load, or a grant that is invalid; 3 the server could not start or
//! stopped on an error.

use clap::{Args, Parser, Subcommand};
pub use common::Exit;
use common::*;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use switchyard_engine::CallRequest;
use switchyard_runtime::ComponentSource;
use switchyard_runtime::Grant;

mod common;
mod demo;
mod http;
mod local;
mod op;
mod plugin_test;
mod serve;
mod token;

/// Switchyard: route provider calls through sandboxed WebAssembly adapters.
#[derive(Debug, Parser)]
#[command(name = "switchyard", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the bundled http plugin against a loopback provider and show the
    /// sandbox at work (nothing leaves this machine); `--serve` then keeps
    /// the demo's engine up with traffic and an outage every 15 s, and
    /// prints the dashboard's address.
    Demo(demo::DemoArgs),
    /// Inspect or precompile plugins.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Serve the HTTP API for a config file.
    Serve(serve::ServeArgs),
    /// Run a fallback, quota or feature of a config once and explain it.
    Run(local::RunArgs),
    /// Print a definition; with `--env`, each option's live state
    /// (health, breaker, counts) as fetch shows it.
    Get(local::GetArgs),
    /// Load a config and its plugins and report every problem at once.
    Check(local::CheckArgs),
    /// Config file helpers.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Call one action of a plugin once, on a fresh sandboxed instance.
    Call(CallArgs),
    /// Operator actions on a running server (audited): run a healthcheck
    /// now, force a breaker, drain or restore a provider, read the log.
    #[command(subcommand)]
    Op(op::OpCommand),
    /// API tokens on a running server (admin): create, list, rotate,
    /// revoke. A new token is printed once.
    #[command(subcommand)]
    Token(token::TokenCommand),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print the config file's JSON Schema (for editors).
    Schema,
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// Replay recorded provider exchanges against an exchange-world
    /// plugin, with no network: every request it describes must be the
    /// recorded one and every outcome the expected one.
    Test(plugin_test::TestArgs),
    /// Run one call of an exchange-world plugin against a real or fake
    /// provider and write what it exchanged as a fixture case.
    Record(Box<plugin_test::RecordArgs>),
    /// Print a plugin's world, version, actions and imports.
    Inspect {
        #[command(flatten)]
        plugin: PluginArg,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Compile plugins into the on-disk cache so the next start is fast.
    Precompile {
        /// Plugin files.
        files: Vec<PathBuf>,
    },
}

#[derive(Debug, Args)]
struct CallArgs {
    #[command(flatten)]
    plugin: PluginArg,
    /// The action to run.
    #[arg(long)]
    action: String,
    /// The input, as JSON.
    #[arg(long, default_value = "{}")]
    input: String,
    #[command(flatten)]
    grant: GrantArgs,
    /// Deadline of the call, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    deadline_ms: u64,
}

/// Run the CLI on a tokio runtime of its own; returns the process exit
/// code. `serve` reads its config before the runtime starts, so that the
/// runtime's threads are `server.api_threads` (by default half the
/// cores).
pub fn main(cli: Cli) -> i32 {
    let mut threads = tokio::runtime::Builder::new_multi_thread();
    threads.enable_all();
    let Command::Serve(args) = cli.command else {
        return match threads.build() {
            Ok(rt) => finish(rt, run(cli)),
            Err(e) => report(Err(cannot_start(e))),
        };
    };
    let config = match serve::load(&args.config) {
        Ok(c) => c,
        Err(e) => return report(Err(e)),
    };
    // Tokio's own variable stays in force unless the config says.
    if config.file.server.api_threads.is_some()
        || std::env::var_os("TOKIO_WORKER_THREADS").is_none()
    {
        threads.worker_threads(config.file.api_threads());
    }
    match threads.build() {
        Ok(rt) => finish(rt, async {
            report(serve::serve_config(args, config).await)
        }),
        Err(e) => report(Err(cannot_start(e))),
    }
}

/// Runs `command` to its end, then stops the runtime without waiting on
/// what is left in it (the process exits next).
fn finish(rt: tokio::runtime::Runtime, command: impl Future<Output = i32>) -> i32 {
    let code = rt.block_on(command);
    rt.shutdown_background();
    code
}

fn cannot_start(e: std::io::Error) -> Exit {
    Exit {
        code: serve::EXIT_SERVE,
        message: format!("cannot start the runtime's threads: {e}"),
    }
}

/// Run the CLI; returns the process exit code.
pub async fn run(cli: Cli) -> i32 {
    let result = match cli.command {
        Command::Demo(args) => demo::run(args).await,
        Command::Plugin(PluginCommand::Inspect { plugin, json }) => inspect(&plugin, json).await,
        Command::Plugin(PluginCommand::Precompile { files }) => precompile(files).await,
        Command::Plugin(PluginCommand::Test(args)) => plugin_test::test(args).await,
        Command::Plugin(PluginCommand::Record(args)) => plugin_test::record(*args).await,
        Command::Call(args) => call(args).await,
        Command::Serve(args) => serve::serve(args).await,
        Command::Run(args) => local::run(args).await,
        Command::Get(args) => local::get(args).await,
        Command::Check(args) => local::check(args).await,
        Command::Config(ConfigCommand::Schema) => local::schema(),
        Command::Op(cmd) => op::run(cmd).await,
        Command::Token(cmd) => token::run(cmd).await,
    };
    report(result)
}

/// Prints the error, if any; the exit code.
fn report(result: Result<(), Exit>) -> i32 {
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {}", e.message);
            e.code
        }
    }
}

async fn inspect(plugin: &PluginArg, json: bool) -> Result<(), Exit> {
    let rt = runtime()?;
    let src = source(plugin)?;
    let (component, _) = rt.compile(&src).await.map_err(usage)?;
    let app = rt.load("inspect", src, Grant::new()).await.map_err(usage)?;
    let ty = component.component_type();
    let imports: Vec<String> = ty
        .imports(rt.engine())
        .map(|(n, _)| n.to_string())
        .collect();
    let exports: Vec<String> = ty
        .exports(rt.engine())
        .map(|(n, _)| n.to_string())
        .collect();
    let info = switchyard_engine::Adapter::info(&app);
    let report = app.load_report();
    if json {
        let out = serde_json::json!({
            "info": info, "world": report.world, "imports": imports, "exports": exports, "load": report,
            "read_by_host": app.read_by_host(),
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&out).expect("serializable")
        );
        return Ok(());
    }
    println!("plugin   {} {}", info.name, info.version);
    let style = match report.world {
        switchyard_runtime::World::ExchangeAdapter => {
            "pure steps; the host sends each request and holds no instance while the provider answers"
        }
        switchyard_runtime::World::Adapter => {
            "the adapter sends its own requests over wasi:http, holding its instance until they are answered"
        }
    };
    println!(
        "world    switchyard:adapter/{} — {style} (host supports {})",
        report.world.name(),
        switchyard_runtime::SUPPORTED_RANGE
    );
    println!(
        "size     {} bytes; load {:?} (cache: {:?})",
        report.size, report.total, report.cache
    );
    if let Some(memory) = report.initial_memory {
        println!(
            "memory   starts at {:.1} MiB per call",
            memory as f64 / (1u64 << 20) as f64
        );
        if let Some(hint) = crate::deployment::resident_hint(&rt, &report) {
            println!("         {hint}");
        }
    }
    println!("exports  {}", exports.join(", "));
    println!("imports  {}", imports.join("\n         "));
    println!("actions");
    let reads = app.read_by_host();
    for a in &info.actions {
        println!("  {:<20} {:<7} {}", a.name, a.idempotency, a.description);
        println!("  {:<20} input {}", "", a.input_schema);
        if reads.contains(&a.name.as_str()) {
            println!(
                "  {:<20} a 2xx JSON answer is read by the host (no resume step)",
                ""
            );
        }
    }
    Ok(())
}

async fn precompile(files: Vec<PathBuf>) -> Result<(), Exit> {
    if files.is_empty() {
        return Err(usage("give at least one plugin file"));
    }
    let rt = runtime()?;
    for f in files {
        let started = Instant::now();
        let (_, report) = rt
            .compile(&ComponentSource::File(f.clone()))
            .await
            .map_err(usage)?;
        println!(
            "{}: {:?} in {:?}",
            f.display(),
            report.cache,
            started.elapsed()
        );
    }
    Ok(())
}

async fn call(args: CallArgs) -> Result<(), Exit> {
    let input: serde_json::Value = serde_json::from_str(&args.input)
        .map_err(|e| usage(format!("--input is not valid JSON: {e}")))?;
    let grant = args.grant.grant()?;
    let rt = runtime()?;
    let app = rt
        .load("cli", source(&args.plugin)?, grant)
        .await
        .map_err(usage)?;
    let request =
        CallRequest::new(args.action, input).deadline(Duration::from_millis(args.deadline_ms));
    let started = Instant::now();
    match app.call(request).await {
        Ok(r) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&r.output).expect("serializable")
            );
            eprintln!("ok in {:?}", started.elapsed());
            Ok(())
        }
        Err(e) => Err(attempt_failed(&e)),
    }
}
