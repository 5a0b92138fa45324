//! One call of an `exchange-adapter`-world app. Each step (`start`, then
//! `resume` per answer) runs on a fresh instance that is dropped, with its
//! instance slot, before the host sends the step's request: no instance is
//! alive while a provider thinks. The host sends each request itself
//! through the app's egress gate (allowlist, private addresses, per-origin
//! credentials, SigV4 over the exact body, caps, the per-call request cap,
//! the deadline) and classifies transport failures itself: refused before
//! it was sent → `unavailable` (or `timeout` when connecting timed out),
//! no answer after it was sent → `ambiguous`, a denial → `internal`.

use crate::bindings::exchange_world::ExchangeAdapterPre;
use crate::bindings::exchange_world::xtypes::{HttpResponse, Step};
use crate::egress::{Answered, CallLog, Described};
use crate::instance::AppInner;
use crate::outcome::{adapter_answer, deadline_exceeded, sandbox_failure};
use crate::state::CallState;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchyard_engine::{AttemptError, CallRequest, CallResponse, ErrorClass, FailureKind};
use wasmtime_wasi_http::Error as HttpError;

/// Largest state an adapter may carry from one step to the next: the host
/// holds it while the provider answers.
pub const MAX_STATE: usize = 1 << 20;

/// Who answers the requests of an exchange call.
pub(crate) enum Transport<'a> {
    /// The provider, through the egress gate; each exchange recorded when
    /// asked.
    Live(Option<&'a mut Vec<(Described, Answered)>>),
    /// A test's recorded answers: no network.
    Replay(&'a mut (dyn FnMut(&Described) -> Result<Answered, String> + Send)),
}

impl AppInner {
    /// Run `request` as steps: start, then send and resume until done.
    pub(crate) async fn call_exchange(
        &self,
        pre: &ExchangeAdapterPre<CallState>,
        request: CallRequest,
    ) -> Result<CallResponse, AttemptError> {
        self.exchange_steps(pre, request, Transport::Live(None))
            .await
    }

    /// Run `request` as steps, the requests answered by `transport`.
    pub(crate) async fn exchange_steps(
        &self,
        pre: &ExchangeAdapterPre<CallState>,
        request: CallRequest,
        mut transport: Transport<'_>,
    ) -> Result<CallResponse, AttemptError> {
        let budget = request.deadline;
        let deadline = Instant::now() + budget;
        let log = Arc::new(Mutex::new(CallLog::default()));
        let mut wit_request = Self::wit_request(request);
        let max_output = self.runtime.inner.limits.max_output;
        let mut answer: Option<(Vec<u8>, HttpResponse)> = None;
        let mut made = 0u32;
        let mut holding: Option<crate::held::Held> = None;
        loop {
            // Each step is told the time left, not the attempt's budget.
            wit_request.deadline_ms = deadline
                .saturating_duration_since(Instant::now())
                .as_millis() as u64;
            let step = self
                .step(pre, &wit_request, answer.take(), deadline, budget, &log)
                .await?;
            let send = match step {
                Step::Done(result) => {
                    return adapter_answer(result, &log.lock().expect("call log"), max_output);
                }
                Step::Send(send) => send,
            };
            if send.state.len() > MAX_STATE {
                return Err(AttemptError::new(
                    after_send(&log, ErrorClass::Internal),
                    FailureKind::BadOutput,
                    format!(
                        "the adapter carried {} bytes of state to its next step; at most {MAX_STATE}",
                        send.state.len()
                    ),
                ));
            }
            made = made.saturating_add(1);
            let r = send.request;
            let reached = log.lock().expect("call log").reached;
            let timeout = r.timeout_ms.map(Duration::from_millis);
            let described = Described {
                method: r.method,
                url: r.url,
                headers: r.headers,
                body: r.body,
            };
            let answered = match &mut transport {
                Transport::Live(record) => {
                    let seen = record.as_ref().map(|_| described.clone());
                    let (a, held) = self
                        .egress
                        .exchange(&log, described, timeout, made, deadline)
                        .await
                        .map_err(|e| transport_failure(&log, reached, &e))?;
                    // Held under the host's budget until the next step has
                    // taken it in (replaced by the next answer's).
                    drop(std::mem::replace(&mut holding, held));
                    if let (Some(record), Some(seen)) = (record.as_mut(), seen) {
                        record.push((seen, a.clone()));
                    }
                    a
                }
                Transport::Replay(provider) => provider(&described).map_err(|why| {
                    AttemptError::new(
                        ErrorClass::Internal,
                        FailureKind::Host,
                        format!("replay: {why}"),
                    )
                })?,
            };
            let response = HttpResponse {
                status: answered.status,
                headers: answered.headers,
                body: answered.body,
            };
            answer = Some((send.state, response));
        }
    }

    /// One step on a fresh instance, dropped (with its slot) on return.
    async fn step(
        &self,
        pre: &ExchangeAdapterPre<CallState>,
        request: &crate::bindings::types::CallRequest,
        answer: Option<(Vec<u8>, HttpResponse)>,
        deadline: Instant,
        budget: Duration,
        log: &Arc<Mutex<CallLog>>,
    ) -> Result<Step, AttemptError> {
        let Some(_slot) = self.runtime.slot(deadline).await else {
            let mut e = self.no_slot(budget);
            // After a request went out, giving up may hide an executed
            // request: never fail over as if nothing happened. Still the
            // host's limit (kind `overload`), so it moves no breaker.
            e.class = after_send(log, ErrorClass::Overloaded);
            return Err(e);
        };
        // No wasi:http for this world: a component that imports it anyway
        // has every request refused (cap 0).
        let mut store = self.store(deadline, log.clone(), Some(0));
        let work = async {
            let started = Instant::now();
            let adapter = pre.instantiate_async(&mut store).await?;
            self.instantiated(started);
            let x = adapter.switchyard_adapter_exchange();
            match &answer {
                None => x.call_start(&mut store, request).await,
                Some((state, response)) => {
                    x.call_resume(&mut store, request, state, response).await
                }
            }
        };
        let outcome = tokio::time::timeout_at(deadline.into(), work).await;
        let log = log.lock().expect("call log");
        match outcome {
            Err(_) => Err(deadline_exceeded(&log, budget)),
            Ok(Err(e)) => Err(sandbox_failure(&store, &log, e)),
            Ok(Ok(step)) => Ok(step),
        }
    }
}

/// `otherwise`, or `ambiguous` once a request of the call may have reached
/// a provider.
fn after_send(log: &Mutex<CallLog>, otherwise: ErrorClass) -> ErrorClass {
    crate::outcome::after_send(&log.lock().expect("call log"), otherwise)
}

/// A described request that got no HTTP answer. `reached` is the log's
/// count before it: if the count grew, the request left and may have been
/// acted on.
fn transport_failure(log: &Mutex<CallLog>, reached: u32, e: &HttpError) -> AttemptError {
    let log = log.lock().expect("call log");
    if let Some(why) = &log.host_full {
        return AttemptError::new(
            crate::outcome::after_send(&log, ErrorClass::Overloaded),
            FailureKind::Overload,
            why.clone(),
        );
    }
    let why = log
        .failures
        .last()
        .cloned()
        .unwrap_or_else(|| e.to_string());
    if let Some(denial) = log.denials.last() {
        return AttemptError::new(
            crate::outcome::after_send(&log, ErrorClass::Internal),
            FailureKind::EgressDenied,
            denial.to_string(),
        );
    }
    if matches!(e, HttpError::HttpRequestUriInvalid) {
        return AttemptError::new(
            crate::outcome::after_send(&log, ErrorClass::Internal),
            FailureKind::BadOutput,
            format!("the adapter described a request the host cannot send: {why}"),
        );
    }
    if matches!(e, HttpError::InternalError(_)) && log.reached <= reached {
        // The host could not authenticate the request (an OAuth2 token
        // endpoint that refused the app's credentials): the grant's
        // problem, not the caller's, and nothing was sent.
        return AttemptError::new(
            crate::outcome::after_send(&log, ErrorClass::Internal),
            FailureKind::Provider,
            format!("the request was not sent: {why}"),
        );
    }
    if log.reached > reached {
        let kind = if matches!(e, HttpError::HttpResponseTimeout) {
            FailureKind::DeadlineExceeded
        } else {
            FailureKind::Provider
        };
        return AttemptError::new(
            ErrorClass::Ambiguous,
            kind,
            format!(
                "the request was sent but got no whole answer, so the provider may have acted on it: {why}"
            ),
        );
    }
    let class = if matches!(e, HttpError::ConnectionTimeout) {
        ErrorClass::Timeout
    } else {
        crate::outcome::after_send(&log, ErrorClass::Unavailable)
    };
    AttemptError::new(
        class,
        FailureKind::Provider,
        format!("the request never reached the provider: {why}"),
    )
}
