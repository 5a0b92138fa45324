//! An exchange-world adapter that is fine but for its `exchange-reading`
//! export, which has a shape the contract does not have. The host must
//! refuse to load it.

#[allow(missing_docs)]
mod bindings {
    wit_bindgen::generate!({
        path: ["../../../wit", "wit"],
        world: "switchyard:test-reading-mismatch/mismatched",
        generate_all,
    });
}

// Two versions of the contract's package: the generated modules carry
// their versions.
use bindings::exports::switchyard::adapter0_2_0::exchange;
use bindings::exports::switchyard::adapter0_2_1::exchange_reading;
use bindings::switchyard::adapter0_2_0::adapter_types::{AppInfo, CallRequest, CallResponse};
use bindings::switchyard::adapter0_2_0::exchange_types::{HttpResponse, Step};

struct Mismatched;

impl exchange::Guest for Mismatched {
    fn describe() -> AppInfo {
        AppInfo {
            name: "reading-mismatch".into(),
            version: "0.1.0".into(),
            actions: Vec::new(),
        }
    }

    fn start(_request: CallRequest) -> Step {
        Step::Done(Ok(CallResponse {
            output: "{}".into(),
        }))
    }

    fn resume(_request: CallRequest, _state: Vec<u8>, _response: HttpResponse) -> Step {
        Step::Done(Ok(CallResponse {
            output: "{}".into(),
        }))
    }
}

impl exchange_reading::Guest for Mismatched {
    fn readings() -> Vec<String> {
        vec!["send".into()]
    }
}

bindings::export!(Mismatched with_types_in bindings);
