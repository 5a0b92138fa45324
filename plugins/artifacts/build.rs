//! Compiles the plugins in `plugins/` and the guest test programs in
//! `tests/programs/` for `wasm32-wasip2`, like wasmtime's `test-programs`
//! artifacts crate, and writes their paths into `$OUT_DIR/artifacts.rs`.
//!
//! The guests build in their own target dir (`target/guests`) with the
//! `guest` profile, so the nested cargo never waits on the outer one's lock.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// (cargo package, constant prefix, shipped plugin?)
const GUESTS: &[(&str, &str, bool)] = &[
    ("switchyard-plugin-http", "HTTP_PLUGIN", true),
    ("switchyard-plugin-stripe", "STRIPE_PLUGIN", true),
    ("switchyard-plugin-twilio", "TWILIO_PLUGIN", true),
    ("switchyard-plugin-sns", "SNS_PLUGIN", true),
    ("switchyard-plugin-paypal", "PAYPAL_PLUGIN", true),
    ("switchyard-plugin-square", "SQUARE_PLUGIN", true),
    ("switchyard-plugin-adyen", "ADYEN_PLUGIN", true),
    ("switchyard-test-misbehave", "MISBEHAVE", false),
    ("switchyard-test-http-wasi", "HTTP_WASI", false),
    ("switchyard-test-exchange", "EXCHANGE", false),
    (
        "switchyard-test-reading-mismatch",
        "READING_MISMATCH",
        false,
    ),
];

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest.parent().unwrap().parent().unwrap().to_path_buf();
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    for watched in [
        "wit",
        "guest-sdk",
        "plugins",
        "tests/programs",
        "Cargo.toml",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }

    let target_dir = root.join("target").join("guests");
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args(["build", "--profile", "guest", "--target", "wasm32-wasip2"])
        .arg("--target-dir")
        .arg(&target_dir);
    for (package, _, _) in GUESTS {
        cmd.args(["-p", package]);
    }
    // Settings meant for the host build must not leak into the guests.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "CLIPPY_ARGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
    ] {
        cmd.env_remove(var);
    }
    // A 64 KiB stack rather than Rust's 1 MiB: a slot's memory is written
    // back whole between calls (`RuntimeConfig::keep_resident`), and the
    // stack is most of it. The deepest JSON the guests parse (serde_json's
    // 128 levels) needs between 32 and 64 KiB; tests/provider_text.rs
    // replays such input and answers through every shipped adapter.
    cmd.env(
        "CARGO_TARGET_WASM32_WASIP2_RUSTFLAGS",
        "-C link-arg=-zstack-size=65536",
    );
    let status = cmd
        .status()
        .expect("running cargo for the wasm32-wasip2 guests");
    if !status.success() {
        panic!(
            "building the wasm32-wasip2 guests failed (see above). If the target is missing, \
             run `rustup target add wasm32-wasip2`."
        );
    }

    let built = target_dir.join("wasm32-wasip2").join("guest");
    let mut rs = String::new();
    for (package, prefix, shipped) in GUESTS {
        let file = format!("{}.wasm", package.replace('-', "_"));
        let src = built.join(&file);
        let dst = out.join(&file);
        copy_if_changed(&src, &dst);
        let kind = if *shipped {
            "Plugin"
        } else {
            "Guest test program"
        };
        rs.push_str(&format!(
            "/// {kind} `{package}`: path of the built component.\n\
             pub const {prefix}_PATH: &str = {:?};\n\
             /// {kind} `{package}`: the component's bytes.\n\
             pub const {prefix}: &[u8] = include_bytes!({:?});\n",
            dst.display().to_string(),
            dst.display().to_string(),
        ));
    }
    fs::write(out.join("artifacts.rs"), rs).unwrap();
}

fn copy_if_changed(src: &Path, dst: &Path) {
    let new = fs::read(src).unwrap_or_else(|e| panic!("reading {}: {e}", src.display()));
    if fs::read(dst).ok().as_deref() != Some(&new[..]) {
        fs::write(dst, new).unwrap();
    }
}
