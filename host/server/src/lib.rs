//! The Switchyard server and CLI: the config file, the definition store
//! (SQLite), the HTTP API, Prometheus metrics, the deployment that ties
//! them to the engine and the runtime, and the `switchyard` command.
//!
//! The engine is the `switchyard-engine` crate (no WebAssembly, no HTTP
//! server) and the WebAssembly runtime with its egress gate is
//! `switchyard-runtime`; an embedder who wants only routing over their own
//! adapters depends on the engine alone.
//!
//! Imports go one way, and no two files import each other in a loop:
//! `cli` → `api` → `ops`, `token_ops` → `deployment` → `cluster`, `events`
//! → `config`, `store`, `metrics`, `records`, `access`, `history` (the
//! rows of providers' history and how they merge by step) → the engine
//! and runtime crates. The config layer knows nothing of the CLI or the
//! API.
//! In cluster mode the deployment owns a `cluster` link (Redis), whose
//! sync task applies what other replicas shared through the
//! `cluster::Local` trait the deployment implements, so `cluster` sits
//! below the deployment, not beside it. `access` (tokens, roles, scopes,
//! the failed-authentication throttle) depends on nothing of the server;
//! the deployment holds its token set, `api::guard` applies it to every
//! route, and `tls` serves HTTPS. Each folder's `mod.rs` is only its face:
//! it names its files and what they export.
//!
//! | concern | where |
//! |---|---|
//! | the config file: its shape, problems, checks, tokens and TLS, secrets, lines | `config/` (`file.rs`, `problem.rs`, `check.rs`, `access.rs`, `secrets.rs`, `locate.rs`, `unknown.rs`) |
//! | a running config: its state, start, reload, API changes, what the cluster asks of it, providers' history in the store | `deployment/` (`state.rs`, `start.rs`, `reload.rs`, `changes.rs`, `local.rs`, `history.rs`) |
//! | cluster mode over Redis: what is shared, the Lua, the link, joining, the sync task, the engine's ports, tokens, scorecards across replicas | `cluster/` (`model.rs`, `scripts.rs`, `link.rs`, `converge.rs`, `sync.rs`, `shared.rs`, `tokens.rs`, `scores.rs`) |
//! | the HTTP API: shared state and errors, bodies, handlers, the guard, routes, the listener | `api/` |
//! | the `switchyard` command | `cli/` |

pub mod access;
mod api;
mod bundled;
mod cli;
mod cluster;
mod config;
mod deployment;
mod events;
pub mod fixtures;
mod history;
mod metrics;
mod ops;
mod records;
mod simulator;
mod store;
pub mod tls;
mod token_ops;

pub use api::{
    ApiError, ApiState, ClientAddr, OPENAPI, RULES, openapi_document, router, rule, serve,
};
pub use bundled::{BUNDLED, bundled};
pub use cli::{Cli, Exit, main as cli_main, run as run_cli};
pub use cluster::Cluster;
pub use config::{ClusterConfig, Config, Problem, Problems, RESERVED_ENVS, json_schema};
pub use deployment::{ChangeError, Deployment, Drift, ReloadReport, StartOptions, drift};
pub use events::{Event, Hub, RunRecord};
pub use history::{Minute as HistoryMinute, Point as HistoryPoint};
pub use metrics::Metrics;
pub use ops::OpError;
pub use records::SqliteRecords;
pub use simulator::{Recorded, Simulator};
pub use store::{Store, StoreError};
pub use token_ops::TokenOpError;
