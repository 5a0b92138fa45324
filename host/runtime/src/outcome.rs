//! Outcome classification: what a call's end (a trap, a limit, the
//! deadline, the adapter's own error, its output) means for the engine,
//! as one [`AttemptError`] class and kind.

use crate::bindings::types;
use crate::egress::CallLog;
use crate::limits::HOST_RESERVE;
use crate::state;
use crate::state::CallState;
use std::collections::HashSet;
use std::time::Duration;
use switchyard_engine::{ActionInfo, AttemptError, CallResponse, ErrorClass, FailureKind};
use wasmtime::{Store, Trap};

/// What the adapter's own answer means: its output (capped, JSON) or its
/// error, unless the gate refused a request during the call (its reason
/// wins over the adapter's paraphrase) or a request went out unanswered.
pub(crate) fn adapter_answer(
    answer: Result<types::CallResponse, types::AdapterError>,
    log: &CallLog,
    max_output: usize,
) -> Result<CallResponse, AttemptError> {
    match answer {
        Err(e) => Err(match (log.denials.first(), over_memory(log)) {
            (Some(reason), _) => AttemptError::new(
                ErrorClass::Internal,
                FailureKind::EgressDenied,
                reason.to_string(),
            ),
            (None, Some(refused)) => refused,
            (None, None) => unanswered_is_ambiguous(adapter_error(e), log),
        }),
        Ok(response) if response.output.len() > max_output => Err(AttemptError::new(
            after_send(log, ErrorClass::Internal),
            FailureKind::OutputTooLarge,
            format!(
                "the adapter returned {} bytes; the cap is {max_output}",
                response.output.len()
            ),
        )),
        Ok(response) => match serde_json::from_str(&response.output) {
            Ok(output) => Ok(CallResponse { output }),
            Err(e) => Err(AttemptError::new(
                after_send(log, ErrorClass::Internal),
                FailureKind::BadOutput,
                format!("the adapter's output is not JSON: {e}"),
            )),
        },
    }
}

/// Maximum actions an adapter may describe.
const MAX_ACTIONS: usize = 256;

/// Check what `describe` returned, action by action (name, description,
/// input schema as JSON text, idempotency): unique names, schemas that are
/// JSON objects. A guest's output: it must never panic the host.
pub(crate) fn check_actions(
    raw: Vec<(String, String, String, switchyard_engine::Idempotency)>,
) -> Result<Vec<ActionInfo>, String> {
    if raw.len() > MAX_ACTIONS {
        return Err(format!(
            "lists {} actions; at most {MAX_ACTIONS}",
            raw.len()
        ));
    }
    let mut actions: Vec<ActionInfo> = Vec::with_capacity(raw.len());
    for (name, description, schema, idempotency) in raw {
        if actions.iter().any(|b| b.name == name) {
            return Err(format!("lists action `{name}` twice"));
        }
        let input_schema: serde_json::Value = serde_json::from_str(&schema)
            .map_err(|e| format!("action `{name}`: input-schema is not JSON: {e}"))?;
        if !input_schema.is_object() {
            return Err(format!(
                "action `{name}`: input-schema must be a JSON object"
            ));
        }
        actions.push(ActionInfo {
            name,
            description,
            input_schema,
            idempotency,
        });
    }
    Ok(actions)
}

/// Check what `readings` returned: at most one per action, each naming a
/// described action.
pub(crate) fn check_readings(
    readings: Vec<String>,
    actions: &[ActionInfo],
) -> Result<HashSet<String>, String> {
    if readings.len() > MAX_ACTIONS {
        return Err(format!(
            "readings() lists {} actions; at most {MAX_ACTIONS}",
            readings.len()
        ));
    }
    let mut reads = HashSet::with_capacity(readings.len());
    for action in readings {
        if !actions.iter().any(|a| a.name == action) {
            return Err(format!(
                "readings() names action `{action}`, which describe() does not list"
            ));
        }
        if !reads.insert(action.clone()) {
            return Err(format!("readings() lists action `{action}` twice"));
        }
    }
    Ok(reads)
}

/// A failure after a request may have reached the provider is ambiguous.
pub(crate) fn after_send(log: &CallLog, otherwise: ErrorClass) -> ErrorClass {
    if log.reached > 0 {
        ErrorClass::Ambiguous
    } else {
        otherwise
    }
}

pub(crate) fn deadline_exceeded(log: &CallLog, budget: Duration) -> AttemptError {
    AttemptError::new(
        after_send(log, ErrorClass::Timeout),
        FailureKind::DeadlineExceeded,
        format!("the call did not finish within its deadline of {budget:?}"),
    )
}

/// The memory-limit error of a call whose request body the gate refused
/// for the call's memory cap, however the adapter went on.
pub(crate) fn over_memory(log: &CallLog) -> Option<AttemptError> {
    log.over_memory.as_ref().map(|reason| {
        AttemptError::new(
            after_send(log, ErrorClass::Unavailable),
            FailureKind::MemoryLimit,
            reason.clone(),
        )
    })
}

/// Classify a wasmtime error (a trap, a limit) into an attempt error.
pub(crate) fn sandbox_failure(
    store: &Store<CallState>,
    log: &CallLog,
    e: wasmtime::Error,
) -> AttemptError {
    let state = store.data();
    // Traps before any request reached a provider: the attempt failed
    // cleanly and another provider may serve (the JS toolchain traps on a
    // refused connection).
    let class = after_send(log, ErrorClass::Unavailable);
    if let Some(refused) = over_memory(log) {
        return refused;
    }
    if state.limiter.hit {
        return AttemptError::new(
            class,
            FailureKind::MemoryLimit,
            format!(
                "the guest tried to grow its memory past its cap of {} MiB (the call's cap less what the guest may make the host hold; request bodies the host holds for the call count too)",
                state.limiter.memory.cap() >> 20
            ),
        );
    }
    if matches!(
        e.downcast_ref::<wasmtime::component::ResourceTableError>(),
        Some(wasmtime::component::ResourceTableError::Full)
    ) {
        return AttemptError::new(
            class,
            FailureKind::MemoryLimit,
            format!(
                "the guest made the host hold more than {} resources at once (wasi:http fields, requests, streams...); each call may hold {} ({} MiB of its memory cap is reserved for them)",
                state::MAX_RESOURCES,
                state::MAX_RESOURCES,
                HOST_RESERVE >> 20
            ),
        );
    }
    if matches!(
        e.downcast_ref::<wasmtime_wasi_http::FieldMapError>(),
        Some(wasmtime_wasi_http::FieldMapError::TotalSizeTooBig)
    ) {
        return AttemptError::new(
            class,
            FailureKind::MemoryLimit,
            format!(
                "the guest built a header map over {} KiB, the most one may hold",
                state::FIELDS_LIMIT >> 10
            ),
        );
    }
    if let Some(exit) = e.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return AttemptError::new(
            class,
            FailureKind::Trap,
            format!("the guest exited with code {}", exit.0),
        );
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => AttemptError::new(
            after_send(log, ErrorClass::Timeout),
            FailureKind::DeadlineExceeded,
            "the call ran past its deadline".to_string(),
        ),
        Some(Trap::StackOverflow) => AttemptError::new(
            class,
            FailureKind::StackOverflow,
            "the guest overflowed its stack".to_string(),
        ),
        Some(trap) => {
            let mut message = format!("the guest trapped: {trap}");
            // A trap carries no reason; an outbound request that failed just
            // before it usually is the reason (componentize-js traps when a
            // fetch() with a body fails).
            if let Some(failure) = log.failures.last() {
                message.push_str(&format!(" after its outbound request failed: {failure}"));
            }
            if let Some(tail) = state.stderr_tail() {
                message.push_str(&format!(" (stderr: {tail})"));
            }
            AttemptError::new(class, FailureKind::Trap, message)
        }
        None => AttemptError::new(class, FailureKind::Host, format!("{e:#}")),
    }
}

/// An adapter may not be able to tell a refused connection from one that
/// broke after sending (JavaScript's `fetch()` says `NetworkError` for both).
/// The host can: when a request may have reached the provider and no answer
/// came back, a clean failure the adapter reports is really ambiguous.
pub(crate) fn unanswered_is_ambiguous(mut e: AttemptError, log: &CallLog) -> AttemptError {
    if matches!(e.class, ErrorClass::Unavailable | ErrorClass::Timeout) && log.unanswered() {
        e.class = ErrorClass::Ambiguous;
        e.message.push_str(
            " (the host saw the request leave without an answer: the provider may have acted on it)",
        );
    }
    e
}

pub(crate) fn adapter_error(e: types::AdapterError) -> AttemptError {
    let (class, d, retry_after) = match e {
        types::AdapterError::Rejected(d) => (ErrorClass::Rejected, d, None),
        types::AdapterError::Unavailable(d) => (ErrorClass::Unavailable, d, None),
        types::AdapterError::Timeout(d) => (ErrorClass::Timeout, d, None),
        types::AdapterError::Ambiguous(d) => (ErrorClass::Ambiguous, d, None),
        types::AdapterError::Internal(d) => (ErrorClass::Internal, d, None),
        types::AdapterError::RateLimited(r) => (
            ErrorClass::RateLimited,
            r.detail,
            r.retry_after_ms.map(Duration::from_millis),
        ),
    };
    AttemptError {
        class,
        kind: FailureKind::Provider,
        message: d.message,
        status: d.status,
        code: d.code,
        retry_after,
    }
}

#[cfg(test)]
mod tests {
    use switchyard_engine::{ActionInfo, Idempotency};

    #[test]
    fn readings_name_described_actions_once() {
        let actions: Vec<ActionInfo> = ["send", "ping"]
            .into_iter()
            .map(|name| ActionInfo {
                name: name.into(),
                description: String::new(),
                input_schema: serde_json::json!({}),
                idempotency: Idempotency::Unsafe,
            })
            .collect();
        let reads = check_readings(vec!["send".into()], &actions).unwrap();
        assert!(reads.contains("send") && !reads.contains("ping"));
        assert!(check_readings(Vec::new(), &actions).unwrap().is_empty());
        let e = check_readings(vec!["charge".into()], &actions).unwrap_err();
        assert!(
            e.contains("`charge`") && e.contains("describe() does not list"),
            "{e}"
        );
        let e = check_readings(vec!["send".into(), "send".into()], &actions).unwrap_err();
        assert!(e.contains("twice"), "{e}");
        let e = check_readings(vec!["send".into(); 257], &actions).unwrap_err();
        assert!(e.contains("at most 256"), "{e}");
    }

    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever a guest's `describe` returns, the host answers with a
        /// result, never a panic; what it accepts is well-formed.
        #[test]
        fn fuzz_describe_output(
            raw in prop::collection::vec(
                ("[a-c-]{0,3}", ".{0,8}", prop_oneof![
                    Just("{}".to_string()),
                    Just("[]".to_string()),
                    "[{}\\[\\]\":,a-z0-9 ]{0,24}",
                    ".{0,12}",
                ], prop::sample::select(vec![
                    switchyard_engine::Idempotency::Safe,
                    switchyard_engine::Idempotency::Keyed,
                    switchyard_engine::Idempotency::Unsafe,
                ])),
                0..12,
            )
        ) {
            if let Ok(actions) = check_actions(raw.clone()) {
                prop_assert_eq!(actions.len(), raw.len());
                prop_assert!(actions.iter().all(|a| a.input_schema.is_object()));
            }
        }

        /// Whatever output text or error an adapter answers with (any
        /// class, any sizes, any retry-after), the host classifies it
        /// without panicking: output within the cap and valid JSON passes,
        /// everything else is a typed error, cut to the boundary's sizes.
        #[test]
        fn fuzz_adapter_answer(
            output in prop_oneof![
                Just("{}".to_string()),
                "[{}\\[\\]\":,a-z0-9 .-]{0,40}",
                ".{0,40}",
            ],
            failed in any::<bool>(),
            class in 0u8..6,
            message in ".{0,64}",
            repeat in 0usize..300,
            code in proptest::option::of(".{0,16}"),
            status in proptest::option::of(any::<u16>()),
            retry_after_ms in proptest::option::of(any::<u64>()),
            reached in 0u32..3,
            answered in 0u32..3,
        ) {
            let detail = types::ErrorDetail {
                message: message.repeat(repeat),
                code: code.map(|c| c.repeat(repeat)),
                status,
            };
            let error = match class {
                0 => types::AdapterError::Rejected(detail),
                1 => types::AdapterError::Unavailable(detail),
                2 => types::AdapterError::Timeout(detail),
                3 => types::AdapterError::Ambiguous(detail),
                4 => types::AdapterError::Internal(detail),
                _ => types::AdapterError::RateLimited(types::RateLimit { detail, retry_after_ms }),
            };
            let answer = if failed {
                Err(error)
            } else {
                Ok(types::CallResponse { output: output.clone() })
            };
            let log = CallLog { reached, answered, ..CallLog::default() };
            match adapter_answer(answer, &log, 32).map_err(AttemptError::bounded) {
                Ok(r) => {
                    prop_assert!(!failed && output.len() <= 32);
                    prop_assert_eq!(r.output, serde_json::from_str::<serde_json::Value>(&output).unwrap());
                }
                Err(e) => {
                    prop_assert!(e.message.len() <= switchyard_engine::MAX_ERROR_MESSAGE + 64);
                    prop_assert!(e.code.as_ref().is_none_or(|c| c.len() <= switchyard_engine::MAX_ERROR_CODE + 64));
                }
            }
        }
    }
}
