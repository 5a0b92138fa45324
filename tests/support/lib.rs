//! Shared setup for the integration tests: a runtime with a test cache dir,
//! the built guest components, and the simulated provider.

pub use switchyard::Simulator;
pub use switchyard_artifacts as artifacts;

use std::path::PathBuf;
use switchyard_runtime::RuntimeConfig;
use switchyard_runtime::{App, Grant, Runtime};

/// Cache dir shared by test runs, so components compile once per machine.
pub fn cache_dir() -> PathBuf {
    std::env::temp_dir().join("switchyard-test-cache")
}

/// A runtime with default limits and the shared test cache.
pub fn runtime() -> Runtime {
    Runtime::new(RuntimeConfig {
        cache_dir: Some(cache_dir()),
        ..RuntimeConfig::default()
    })
    .expect("runtime starts")
}

/// Where `tests/contracts/fakes.sh` keeps the provider fakes' tools, logs
/// and SNS key pair: `$SWITCHYARD_FAKES_DIR`, default `/tmp/switchyard-fakes`.
pub fn fakes_dir() -> PathBuf {
    std::env::var_os("SWITCHYARD_FAKES_DIR")
        .map_or_else(|| PathBuf::from("/tmp/switchyard-fakes"), PathBuf::from)
}

/// Tests that talk to the Prism fakes take turns, so each sees only its
/// own lines in a fake's log (some send invalid requests on purpose).
pub async fn prism_turn() -> tokio::sync::MutexGuard<'static, ()> {
    static TURN: std::sync::OnceLock<tokio::sync::Mutex<()>> = std::sync::OnceLock::new();
    TURN.get_or_init(|| tokio::sync::Mutex::new(()))
        .lock()
        .await
}

/// The key pair the SNS fake (moto) accepts, written by `fakes.sh start`:
/// (access key id, secret access key).
pub fn sns_keys() -> (String, String) {
    let path = fakes_dir().join("run/sns-iam.env");
    let env = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "{} is missing: start the fakes with tests/contracts/fakes.sh start",
            path.display()
        )
    });
    let get = |k: &str| {
        env.lines()
            .find_map(|l| {
                l.trim_start_matches("export ")
                    .strip_prefix(&format!("{k}="))
            })
            .unwrap_or_else(|| panic!("{k} not in sns-iam.env"))
            .trim_matches('"')
            .to_string()
    };
    (get("AWS_ACCESS_KEY_ID"), get("AWS_SECRET_ACCESS_KEY"))
}

/// The misbehaving guest loaded with `grant`.
pub async fn misbehave(rt: &Runtime, grant: Grant) -> App {
    rt.load(
        "misbehave",
        std::path::Path::new(artifacts::MISBEHAVE_PATH),
        grant,
    )
    .await
    .expect("misbehave loads")
}

/// The http plugin loaded as `name` with `grant`.
pub async fn http_plugin(rt: &Runtime, name: &str, grant: Grant) -> App {
    rt.load(name, artifacts::HTTP_PLUGIN, grant)
        .await
        .expect("http plugin loads")
}

pub mod scripted;

/// A Python or JavaScript adapter built by `plugins/build-polyglot.sh`
/// (`vonage`, `slack`): `$SWITCHYARD_POLYGLOT_DIR/<name>.wasm`, default
/// `<target dir>/polyglot/<name>.wasm`. Panics with the command to run if
/// it has not been built.
pub fn polyglot(name: &str) -> PathBuf {
    let dir = std::env::var_os("SWITCHYARD_POLYGLOT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target")
                })
                .join("polyglot")
        });
    let path = dir.join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: build the Python/JS adapters first with `plugins/build-polyglot.sh` \
         (it installs componentize-py and componentize-js; needs python3-venv, node and npm)",
        path.display()
    );
    path
}
