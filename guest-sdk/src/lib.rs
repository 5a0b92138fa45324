//! Write Switchyard provider adapters in Rust.
//!
//! An adapter is a WebAssembly component (target `wasm32-wasip2`) in one of
//! the two `switchyard:adapter` worlds:
//!
//! - **exchange** (preferred): implement [`Exchange`] — one function that
//!   builds the provider request from the call, one that maps the
//!   provider's answer — and export it with [`export_exchange!`]. The host
//!   sends the request itself and holds no instance while the provider
//!   answers. Several requests per call (fetch a token, then call):
//!   implement [`Steps`] and export with [`export_steps!`].
//! - **adapter**: implement [`Adapter`] and export it with
//!   [`export_adapter!`]; `call` sends its own requests with [`http`] over
//!   `wasi:http` (streaming, libraries that do their own I/O).
//!
//! Either way the crate gives the mapping of HTTP statuses to the error
//! classes the engine understands ([`Error`]), the app's plain settings
//! ([`config`]) and logging ([`log`]).
//!
//! ```ignore
//! use switchyard_guest::{Action, AppInfo, Error, Exchange, Request, export_exchange, http};
//! use serde_json::{Value, json};
//!
//! struct Echo;
//!
//! impl Exchange for Echo {
//!     fn describe() -> AppInfo {
//!         AppInfo::new("echo", "0.1.0").action(
//!             Action::new("post").input(json!({"text": {"type": "string", "required": true}})),
//!         )
//!     }
//!
//!     fn request(call: &Request) -> Result<http::Request, Error> {
//!         let base = switchyard_guest::config::require("base_url")?;
//!         Ok(http::Request::post(format!("{base}/echo")).json(&json!({"text": call.str("text")?})))
//!     }
//!
//!     fn response(_call: &Request, answer: http::Response) -> Result<Value, Error> {
//!         answer.error_for_status()?.json()
//!     }
//! }
//!
//! export_exchange!(Echo);
//! ```
//!
//! The same adapter in the `adapter` world:
//!
//! ```ignore
//! use switchyard_guest::{Action, Adapter, AppInfo, Error, Request, export_adapter, http};
//! use serde_json::{Value, json};
//!
//! struct Echo;
//!
//! impl Adapter for Echo {
//!     fn describe() -> AppInfo {
//!         AppInfo::new("echo", "0.1.0").action(
//!             Action::new("post").input(json!({"text": {"type": "string", "required": true}})),
//!         )
//!     }
//!
//!     fn call(req: Request) -> Result<Value, Error> {
//!         let base = switchyard_guest::config::require("base_url")?;
//!         http::Request::post(format!("{base}/echo"))
//!             .json(&json!({"text": req.str("text")?}))
//!             .send()?
//!             .error_for_status()?
//!             .json()
//!     }
//! }
//!
//! export_adapter!(Echo);
//! ```

extern crate self as switchyard_guest;

mod error;
mod exchange;
pub mod http;
mod request;
pub mod text;

pub use error::{Detail, Error};
pub use exchange::{Exchange, ExportedSteps, OneRequest, Step, Steps};
pub use request::{Request, Session};
pub use serde_json;

use std::marker::PhantomData;

#[doc(hidden)]
#[allow(missing_docs, unsafe_code, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "switchyard:adapter/adapter",
        pub_export_macro: true,
        export_macro_name: "__export_provider",
        default_bindings_module: "::switchyard_guest::bindings",
        runtime_path: "::switchyard_guest::__wit_bindgen::rt",
        generate_all,
    });
}

/// Bindings of the `exchange-reading-adapter` world (the `exchange-adapter`
/// world plus `exchange-reading`); its shared interfaces are the `adapter`
/// world's.
#[doc(hidden)]
#[allow(missing_docs, unsafe_code, clippy::all)]
pub mod exchange_bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "switchyard:adapter/exchange-reading-adapter",
        pub_export_macro: true,
        export_macro_name: "__export_exchange",
        default_bindings_module: "::switchyard_guest::exchange_bindings",
        runtime_path: "::switchyard_guest::__wit_bindgen::rt",
        with: {
            "switchyard:adapter/adapter-types@0.2.0": crate::bindings::switchyard::adapter::adapter_types,
            "switchyard:adapter/config@0.2.0": crate::bindings::switchyard::adapter::config,
            "switchyard:adapter/logging@0.2.0": crate::bindings::switchyard::adapter::logging,
        },
        generate_all,
    });
}

#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;

use bindings::exports::switchyard::adapter::provider as wit_provider;
use bindings::switchyard::adapter::adapter_types as wit;

/// What an adapter author implements.
///
/// Both functions run in a fresh instance: no state survives between calls.
pub trait Adapter {
    /// The app's name, version and actions. Must not touch the network.
    fn describe() -> AppInfo;

    /// Run `request.action` once. Return the provider's answer as JSON, or an
    /// [`Error`] whose class tells the engine whether to retry or fail over.
    fn call(request: Request) -> Result<serde_json::Value, Error>;
}

/// Description of an app, returned by [`Adapter::describe`].
#[derive(Debug, Clone)]
pub struct AppInfo {
    name: String,
    version: String,
    actions: Vec<Action>,
}

impl AppInfo {
    /// An app with no actions yet.
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            version: version.into(),
            actions: Vec::new(),
        }
    }

    /// Add an action.
    pub fn action(mut self, action: Action) -> Self {
        self.actions.push(action);
        self
    }
}

/// What repeating an action does, and so where the host may repeat it
/// after a failure. A key is honoured by one app (one account at one
/// provider): after an attempt that may have taken effect, only a
/// [`Idempotency::Safe`] action is ever sent to another app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Idempotency {
    /// A read or lookup with no effect: retried, failed over and hedged
    /// anywhere.
    Safe,
    /// Idempotent at the app that received it with the same key (the
    /// provider deduplicates by it): retried there, never moved elsewhere.
    Keyed,
    /// Neither: not repeated after an `ambiguous` outcome.
    #[default]
    Unsafe,
}

/// One action of an app.
#[derive(Debug, Clone)]
pub struct Action {
    name: String,
    description: String,
    input: serde_json::Value,
    idempotency: Idempotency,
    read_by_host: bool,
}

impl Action {
    /// An unsafe action (not repeated after `ambiguous`) with an empty
    /// input schema.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            description: String::new(),
            input: serde_json::json!({}),
            idempotency: Idempotency::Unsafe,
            read_by_host: false,
        }
    }

    /// One line for humans.
    pub fn describe(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// The input schema: `{"field": {"type": "string", "required": true}}`.
    pub fn input(mut self, schema: serde_json::Value) -> Self {
        self.input = schema;
        self
    }

    /// Declare what repeating the action does.
    pub fn idempotency(mut self, idempotency: Idempotency) -> Self {
        self.idempotency = idempotency;
        self
    }

    /// Exchange style only: let the host read this action's answer itself.
    /// When the answer to the request [`Exchange::request`] (or
    /// [`Steps::start`]) asked for is a 2xx whose body is a JSON document,
    /// that body is the call's output as is, and the host calls neither
    /// [`Exchange::response`] nor [`Steps::resume`]: the call runs one
    /// sandbox step instead of two. Any other answer (an error status, an
    /// empty or non-JSON body) still goes to the adapter. Declare it only
    /// when the adapter would return exactly that body for such an answer.
    /// Ignored by adapters in the `adapter` world.
    pub fn read_by_host(mut self) -> Self {
        self.read_by_host = true;
        self
    }

    /// Declare the action a read with no effect ([`Idempotency::Safe`]).
    pub fn safe(self) -> Self {
        self.idempotency(Idempotency::Safe)
    }

    /// Declare that the provider deduplicates the action by the run's
    /// idempotency key at this app (`true`: [`Idempotency::Keyed`]) or not
    /// (`false`: [`Idempotency::Unsafe`]).
    pub fn idempotent(self, idempotent: bool) -> Self {
        self.idempotency(if idempotent {
            Idempotency::Keyed
        } else {
            Idempotency::Unsafe
        })
    }
}

impl AppInfo {
    /// The actions declared [`Action::read_by_host`].
    pub(crate) fn read_by_host(&self) -> impl Iterator<Item = &str> {
        self.actions
            .iter()
            .filter(|a| a.read_by_host)
            .map(|a| a.name.as_str())
    }

    pub(crate) fn into_wit(self) -> wit::AppInfo {
        wit::AppInfo {
            name: self.name,
            version: self.version,
            actions: self
                .actions
                .into_iter()
                .map(|a| wit::ActionInfo {
                    name: a.name,
                    description: a.description,
                    input_schema: a.input.to_string(),
                    idempotency: match a.idempotency {
                        Idempotency::Safe => wit::Idempotency::Safe,
                        Idempotency::Keyed => wit::Idempotency::Keyed,
                        Idempotency::Unsafe => wit::Idempotency::Unsafe,
                    },
                })
                .collect(),
        }
    }
}

/// Bridges an [`Adapter`] to the generated `provider` export. Used by
/// [`export_adapter!`]; not meant to be named by authors.
#[doc(hidden)]
pub struct Exported<T>(PhantomData<T>);

impl<T: Adapter> wit_provider::Guest for Exported<T> {
    fn describe() -> wit::AppInfo {
        T::describe().into_wit()
    }

    fn call(request: wit::CallRequest) -> Result<wit::CallResponse, wit::AdapterError> {
        let request = Request::from_wit(request).map_err(Error::into_wit)?;
        match T::call(request) {
            Ok(output) => Ok(wit::CallResponse {
                output: output.to_string(),
            }),
            Err(e) => Err(e.into_wit()),
        }
    }
}

/// Export `$ty` (which implements [`Adapter`]) as this component's provider.
#[macro_export]
macro_rules! export_adapter {
    ($ty:ty) => {
        type __SwitchyardExportedAdapter = $crate::Exported<$ty>;
        $crate::bindings::__export_provider!(__SwitchyardExportedAdapter with_types_in $crate::bindings);
    };
}

/// Export `$ty` (which implements [`Exchange`]: one request per call) as
/// this component's `exchange` (and `exchange-reading`, listing the actions
/// declared [`Action::read_by_host`]), in the `exchange-adapter` world.
#[macro_export]
macro_rules! export_exchange {
    ($ty:ty) => {
        $crate::export_steps!($crate::OneRequest<$ty>);
    };
}

/// Export `$ty` (which implements [`Steps`]: any number of requests per
/// call) as this component's `exchange` (and `exchange-reading`, listing the
/// actions declared [`Action::read_by_host`]), in the `exchange-adapter`
/// world.
#[macro_export]
macro_rules! export_steps {
    ($ty:ty) => {
        type __SwitchyardExportedSteps = $crate::ExportedSteps<$ty>;
        $crate::exchange_bindings::__export_exchange!(__SwitchyardExportedSteps with_types_in $crate::exchange_bindings);
    };
}

/// The app's plain settings, from its grant in the host's config.
pub mod config {
    use crate::Error;
    use crate::bindings::switchyard::adapter::config as wit;

    /// The value of `key`, if the grant sets it.
    pub fn get(key: &str) -> Option<String> {
        wit::get(key)
    }

    /// The value of `key`, or an `internal` error naming the missing key.
    pub fn require(key: &str) -> Result<String, Error> {
        get(key).ok_or_else(|| {
            Error::internal(format!(
                "config key `{key}` is not set; add it to this app's `config` in the grant"
            ))
        })
    }

    /// Every key the grant sets.
    pub fn keys() -> Vec<String> {
        wit::keys()
    }
}

/// Logs attributed to this app by the host.
pub mod log {
    use crate::bindings::switchyard::adapter::logging::{Level, log};

    /// Debug-level message.
    pub fn debug(message: &str) {
        log(Level::Debug, message)
    }
    /// Info-level message.
    pub fn info(message: &str) {
        log(Level::Info, message)
    }
    /// Warning.
    pub fn warn(message: &str) {
        log(Level::Warn, message)
    }
    /// Error-level message.
    pub fn error(message: &str) {
        log(Level::Error, message)
    }
}
