//! Errors of starting a runtime and of loading an app, each naming the
//! phase that failed.

use crate::version::SUPPORTED_RANGE;
use std::path::PathBuf;
use thiserror::Error;

/// The runtime could not start.
#[derive(Debug, Error)]
#[error("could not create the WebAssembly engine: {0}")]
pub struct RuntimeError(pub(crate) String);

/// A component could not be loaded as an app.
#[derive(Debug, Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read plugin {path}: {source}")]
    Read {
        /// The path given.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not WebAssembly at all.
    #[error(
        "not a WebAssembly file (no `\\0asm` header); build the plugin with `cargo build --target wasm32-wasip2` or a WASI 0.2 component toolchain"
    )]
    NotWasm,
    /// A core module, not a component.
    #[error(
        "this is a core WebAssembly module, not a component; build for `wasm32-wasip2` (or wrap it with `wasm-tools component new`)"
    )]
    CoreModule,
    /// Unknown binary version.
    #[error("unknown WebAssembly encoding version {0:#x}; expected a component (WASI 0.2)")]
    UnknownEncoding(u32),
    /// Compilation failed.
    #[error("the component does not compile: {0}")]
    Compile(String),
    /// Neither an `exchange` nor a `provider` export.
    #[error("the component exports neither `switchyard:adapter/exchange` nor `switchyard:adapter/provider` (it exports: {}); build it against the `exchange-adapter` or the `adapter` world in wit/", if found.is_empty() { "nothing".to_string() } else { found.join(", ") })]
    MissingExport {
        /// What it does export.
        found: Vec<String>,
    },
    /// A provider export of a version this host does not support.
    #[error(
        "the component targets switchyard:adapter@{found}; this host supports {SUPPORTED_RANGE}"
    )]
    UnsupportedVersion {
        /// Version the component exports.
        found: String,
    },
    /// Imports the host does not provide.
    #[error("the component imports {} which this host does not provide (it provides WASI 0.2 and switchyard:adapter 0.1 config/logging)", .0.join(", "))]
    UnsupportedImports(Vec<String>),
    /// Linking failed for another reason.
    #[error("the component cannot be linked: {0}")]
    Link(String),
    /// The grant is invalid.
    #[error("app `{app}`: {reason}")]
    Grant {
        /// The app.
        app: String,
        /// What is wrong, naming the field.
        reason: String,
    },
    /// `describe` failed or returned nonsense.
    #[error("app `{app}`: describe() {reason}")]
    Describe {
        /// The app.
        app: String,
        /// What went wrong.
        reason: String,
    },
}
