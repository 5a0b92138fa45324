//! The generic `http` plugin in the `adapter` world: the same request and
//! answer mapping (`plugins/http/src/spec.rs`), but the adapter sends the
//! request itself over `wasi:http` and holds its instance until the
//! provider answers.

#[path = "../../../../plugins/http/src/spec.rs"]
mod spec;

use serde_json::Value;
use switchyard_guest::{Adapter, AppInfo, Error, Request, export_adapter};

struct HttpWasi;

impl Adapter for HttpWasi {
    fn describe() -> AppInfo {
        spec::describe()
    }

    fn call(req: Request) -> Result<Value, Error> {
        let response = spec::request(&req)?.send()?;
        spec::response(&req, response)
    }
}

export_adapter!(HttpWasi);
