//! The HTTP API (axum): runs, CRUD of definitions, provider and
//! healthcheck state, `/healthz`, `/readyz`, Prometheus `/metrics` and the
//! OpenAPI description at `/openapi.json`.
//!
//! Every error is JSON `{"code", "message", "field"?, "trace"?}` with a
//! stable `code`; bad input is a 4xx, never a 500.
//!
//! `state.rs` and `error.rs` are what every handler shares; `body.rs`
//! reads requests; `runs.rs`, `definitions.rs`, `docs.rs`, `live.rs` and
//! `tokens.rs` are the handlers; `guard.rs` decides who may call what;
//! `routes.rs` ties them into the router; `listener.rs` serves it.

mod body;
mod definitions;
mod docs;
mod error;
mod guard;
mod history;
mod listener;
mod live;
mod routes;
mod runs;
mod state;
mod tokens;

pub use docs::openapi_document;
pub use error::ApiError;
pub use guard::{ClientAddr, RULES, rule};
pub use listener::serve;
pub use routes::router;
pub use state::{ApiState, OPENAPI};
