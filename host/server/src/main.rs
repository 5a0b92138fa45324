//! The `switchyard` binary.

use clap::Parser;

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .with_writer(std::io::stderr)
        .init();
    // The runtime is built after `serve` reads its config: its threads
    // follow `server.api_threads`.
    let code = switchyard::cli_main(switchyard::Cli::parse());
    std::process::exit(code);
}
