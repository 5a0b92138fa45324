//! Generic JSON-over-HTTP adapter.
//!
//! Calls any JSON HTTP API described in the app's config, for providers that
//! have no dedicated adapter. Config keys (all plain settings, no secrets:
//! credentials are added by the host's egress gate):
//!
//! - `base_url` (required): `https://api.example.com`.
//! - `actions`: JSON array of `{"name", "method", "path", "description",
//!   "idempotent", "headers", "input"}`. `path` may hold `{field}`
//!   placeholders filled from the input (percent-encoded, removed from the
//!   body). For GET/DELETE/HEAD the remaining scalar fields become the query
//!   string; otherwise the remaining fields are the JSON body.
//! - `ping_path`: path probed by the built-in `ping` action (default `/`).
//! - `idempotency_header`: header that carries the run's idempotency key
//!   (e.g. `Idempotency-Key`); not sent when unset.
//! - `timeout_ms`: per-request timeout (default: the call's deadline).
//!
//! Besides the configured actions, `request` sends any request given in the
//! input (`method`, `path`, optional `query`, `headers`, `body`), and `ping`
//! checks that the API answers 2xx.

//!
//! Exported in the `exchange-adapter` world: the host sends the request
//! this adapter describes and holds no instance while the provider answers.
//! The same logic in the `adapter` world (the adapter sends it itself over
//! `wasi:http`) is the test program `tests/programs/http-wasi`.

mod spec;

use serde_json::Value;
use switchyard_guest::{AppInfo, Error, Exchange, Request, export_exchange, http};

struct HttpAdapter;

impl Exchange for HttpAdapter {
    fn describe() -> AppInfo {
        spec::describe()
    }

    fn request(call: &Request) -> Result<http::Request, Error> {
        spec::request(call)
    }

    fn response(call: &Request, answer: http::Response) -> Result<Value, Error> {
        spec::response(call, answer)
    }
}

export_exchange!(HttpAdapter);
