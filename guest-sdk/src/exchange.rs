//! The exchange style: an adapter describes each HTTP exchange as data and
//! the host performs it. [`Exchange`] is the one-request case (most
//! providers): build the request, map the answer. [`Steps`] chains several
//! (fetch a token, then call), carrying state from step to step.

use crate::bindings::switchyard::adapter::adapter_types as wit;
use crate::exchange_bindings::exports::switchyard::adapter::exchange as wit_exchange;
use crate::exchange_bindings::exports::switchyard::adapter::exchange_reading as wit_reading;
use crate::exchange_bindings::switchyard::adapter::exchange_types as xwit;
use crate::{AppInfo, Error, Request, http};
use serde_json::Value;
use std::marker::PhantomData;

/// An exchange-style adapter that makes one request per call.
///
/// Both functions are pure: they run on fresh instances, the host sends the
/// request in between, and transport failures (refused, no answer) never
/// reach the adapter — the host classifies them.
pub trait Exchange {
    /// The app's name, version and actions.
    fn describe() -> AppInfo;

    /// The request that serves `call`.
    fn request(call: &Request) -> Result<http::Request, Error>;

    /// The call's output from the provider's answer, whatever its status:
    /// [`http::Response::error_for_status`] gives the default classes.
    fn response(call: &Request, answer: http::Response) -> Result<Value, Error>;
}

/// What a step of a [`Steps`] adapter asks of the host.
#[derive(Debug)]
pub enum Step {
    /// Send this request, then call `resume` with its answer and this state.
    Send(http::Request, Vec<u8>),
    /// The call's output.
    Done(Value),
}

impl Step {
    /// Send `request`, carrying no state.
    pub fn send(request: http::Request) -> Self {
        Self::Send(request, Vec::new())
    }

    /// Send `request`, carrying `state` (as JSON) to the next step.
    pub fn send_with(request: http::Request, state: &Value) -> Self {
        Self::Send(request, state.to_string().into_bytes())
    }
}

/// An exchange-style adapter that may make several requests per call.
pub trait Steps {
    /// The app's name, version and actions.
    fn describe() -> AppInfo;

    /// The first step of `call`.
    fn start(call: &Request) -> Result<Step, Error>;

    /// The next step, given the state the last step carried and the
    /// provider's answer to its request.
    fn resume(call: &Request, state: Vec<u8>, answer: http::Response) -> Result<Step, Error>;
}

/// An [`Exchange`] as [`Steps`]: one request, then done.
#[doc(hidden)]
pub struct OneRequest<T>(PhantomData<T>);

impl<T: Exchange> Steps for OneRequest<T> {
    fn describe() -> AppInfo {
        T::describe()
    }

    fn start(call: &Request) -> Result<Step, Error> {
        T::request(call).map(Step::send)
    }

    fn resume(call: &Request, _state: Vec<u8>, answer: http::Response) -> Result<Step, Error> {
        T::response(call, answer).map(Step::Done)
    }
}

/// Bridges [`Steps`] to the generated `exchange` export. Used by
/// [`crate::export_exchange!`] and [`crate::export_steps!`].
#[doc(hidden)]
pub struct ExportedSteps<T>(PhantomData<T>);

fn to_wit(step: Result<Step, Error>) -> xwit::Step {
    match step {
        Ok(Step::Send(request, state)) => xwit::Step::Send(xwit::SendRequest {
            request: request.into_exchange(),
            state,
        }),
        Ok(Step::Done(output)) => xwit::Step::Done(Ok(wit::CallResponse {
            output: output.to_string(),
        })),
        Err(e) => xwit::Step::Done(Err(e.into_wit())),
    }
}

impl<T: Steps> wit_exchange::Guest for ExportedSteps<T> {
    fn describe() -> wit::AppInfo {
        T::describe().into_wit()
    }

    fn start(request: wit::CallRequest) -> xwit::Step {
        to_wit(Request::from_wit(request).and_then(|call| T::start(&call)))
    }

    fn resume(
        request: wit::CallRequest,
        state: Vec<u8>,
        response: xwit::HttpResponse,
    ) -> xwit::Step {
        let answer = http::Response {
            status: response.status,
            headers: response.headers,
            body: response.body,
        };
        to_wit(Request::from_wit(request).and_then(|call| T::resume(&call, state, answer)))
    }
}

impl<T: Steps> wit_reading::Guest for ExportedSteps<T> {
    fn readings() -> Vec<wit_reading::ActionReading> {
        T::describe()
            .read_by_host()
            .map(|action| wit_reading::ActionReading {
                action: action.to_string(),
                reading: wit_reading::Reading::JsonBody,
            })
            .collect()
    }
}
