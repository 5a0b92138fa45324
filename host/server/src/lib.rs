//! The Switchyard server and CLI: the config file, the definition store
//! (SQLite), the HTTP API, Prometheus metrics, the deployment that ties
//! them to the engine and the runtime, and the `switchyard` command.
//!
//! The engine is the `switchyard-engine` crate (no WebAssembly, no HTTP
//! server) and the WebAssembly runtime with its egress gate is
//! `switchyard-runtime`; an embedder who wants only routing over their own
//! adapters depends on the engine alone.
//!
//! Imports go one way: `cli` → `api` → `deployment` → `config`, `store`,
//! `metrics` → the engine and runtime crates. The config layer knows
//! nothing of the CLI or the API.

pub mod api;
pub mod bundled;
pub mod cli;
pub mod config;
pub mod deployment;
pub mod metrics;
pub mod simulator;
pub mod store;
