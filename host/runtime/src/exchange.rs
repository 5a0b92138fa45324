//! One call of an `exchange-adapter`-world app: `start`, then `resume` per
//! answer. A call's steps share one instance while its provider answers
//! within the runtime's `exchange_hold` (25 ms by default) and a quarter
//! of the pool is free: the common single-request call then instantiates
//! once, not twice. A provider that takes longer (or a busy pool) gets the
//! instance dropped, with its slot, and the next step runs on a fresh one:
//! no instance is alive while a provider thinks longer than that. An
//! instance never serves two calls. The host sends each request itself
//! through the app's egress gate (allowlist, private addresses, per-origin
//! credentials, SigV4 over the exact body, caps, the per-call request cap,
//! the deadline) and classifies transport failures itself: refused before
//! it was sent → `unavailable` (or `timeout` when connecting timed out),
//! no answer after it was sent → `ambiguous`, a denial → `internal`.

use crate::bindings::exchange_world::ExchangeAdapterPre;
use crate::bindings::exchange_world::xtypes::{HttpResponse, Step};
use crate::bindings::types::CallRequest as WitRequest;
use crate::egress::{Answered, CallLog, Described};
use crate::instance::AppInner;
use crate::outcome::{adapter_answer, deadline_exceeded, sandbox_failure};
use crate::state::CallState;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchyard_engine::{AttemptError, CallRequest, CallResponse, ErrorClass, FailureKind};
use tokio::sync::OwnedSemaphorePermit;
use wasmtime::Store;
use wasmtime::component::{ComponentExportIndex, Func, Instance, TypedFunc};
use wasmtime_wasi_http::Error as HttpError;

/// Largest state an adapter may carry from one step to the next: the host
/// holds it while the provider answers.
pub const MAX_STATE: usize = 1 << 20;

/// The scale of the share of host-read answers that needed `resume`.
const UNREAD_SCALE: u64 = 1 << 16;

/// The export every exchange-world component has (a component built
/// against any 0.2.x of the contract is found under this name).
const EXCHANGE_EXPORT: &str = "switchyard:adapter/exchange@0.2.0";

/// An exchange-world component prepared for instantiation, with where its
/// `start` and `resume` are.
pub(crate) struct ExchangePre {
    /// The generated bindings: `describe` goes through them.
    pub(crate) typed: ExchangeAdapterPre<CallState>,
    steps: StepFuncs,
}

/// Where a component's `start` and `resume` are. The generated bindings
/// look up and type-check all three of the export's functions on every
/// instance (1.7 % of a run's CPU under load); their types are the
/// component's, the same for each of its instances, so they are checked
/// once, on the instance `describe` runs on ([`ExchangePre::check`]), and
/// each call's instance takes the two it runs by index.
#[derive(Debug, Clone, Copy)]
struct StepFuncs {
    start: ComponentExportIndex,
    resume: ComponentExportIndex,
}

impl ExchangePre {
    /// Find `start` and `resume` in `typed`'s component.
    pub(crate) fn new(typed: ExchangeAdapterPre<CallState>) -> wasmtime::Result<Self> {
        let func = |name| crate::instance::export_func(typed.instance_pre(), EXCHANGE_EXPORT, name);
        let steps = StepFuncs {
            start: func("start")?,
            resume: func("resume")?,
        };
        Ok(Self { typed, steps })
    }

    /// Check the types of `start` and `resume` on `instance`, one of this
    /// component's, as the contract defines them. An app is loaded only
    /// once this passed (its `describe` calls it), and only a loaded app
    /// runs steps.
    pub(crate) fn check(
        &self,
        store: &mut Store<CallState>,
        instance: &Instance,
    ) -> wasmtime::Result<()> {
        instance.get_typed_func::<(&WitRequest,), (Step,)>(&mut *store, &self.steps.start)?;
        instance.get_typed_func::<(&WitRequest, &[u8], &HttpResponse), (Step,)>(
            &mut *store,
            &self.steps.resume,
        )?;
        Ok(())
    }
}

/// A call's instance, kept from one step to the next of the same call.
/// Fields drop in order: the store before its slot.
struct Kept {
    store: Store<CallState>,
    start: Func,
    resume: Func,
    _slot: OwnedSemaphorePermit,
}

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
        pre: &ExchangePre,
        request: CallRequest,
    ) -> Result<CallResponse, AttemptError> {
        self.exchange_steps(pre, request, Transport::Live(None))
            .await
    }

    /// Run `request` as steps, the requests answered by `transport`.
    pub(crate) async fn exchange_steps(
        &self,
        pre: &ExchangePre,
        request: CallRequest,
        mut transport: Transport<'_>,
    ) -> Result<CallResponse, AttemptError> {
        let budget = request.deadline;
        let deadline = Instant::now() + budget;
        let log = Arc::new(Mutex::new(CallLog::default()));
        let mut wit_request = Self::wit_request(request);
        // The adapter lists this action in `exchange-reading`: a 2xx JSON
        // answer to the first request is the output, with no `resume`.
        let reads = self.host_reads.contains(&wit_request.action);
        let max_output = self.runtime.inner.limits.max_output;
        let mut answer: Option<(Vec<u8>, HttpResponse)> = None;
        let mut made = 0u32;
        let mut holding: Option<crate::held::Held> = None;
        let mut kept: Option<Kept> = None;
        loop {
            // Each step is told the time left, not the attempt's budget.
            wit_request.deadline_ms = deadline
                .saturating_duration_since(Instant::now())
                .as_millis() as u64;
            let (step, mut instance) = self
                .step(
                    pre,
                    kept.take(),
                    &wit_request,
                    answer.take(),
                    deadline,
                    budget,
                    &log,
                )
                .await;
            let send = match step? {
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
            // Read by the host unless the answer needs the adapter: the
            // instance is not needed while the provider answers, unless
            // the app's recent answers to such actions mostly needed its
            // `resume` (a provider failing fast): then the hold applies,
            // so a failed attempt does not instantiate twice.
            let host_reads = reads && made == 1;
            if host_reads && !self.host_reads_fail() {
                instance = None;
            }
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
                    // Boxed: inline, the send's future (~2.8 KB) was held
                    // several times over in the call's future, and every
                    // move of that future copied it.
                    let sent = Box::pin(
                        self.egress
                            .exchange(&log, described, timeout, made, deadline),
                    );
                    let started = Instant::now();
                    let (result, instance) = hold_while(instance, self.hold(), sent).await;
                    self.answered_in(started.elapsed());
                    kept = instance;
                    let (a, held) = result.map_err(|e| transport_failure(&log, reached, &e))?;
                    // Held under the host's budget until the next step has
                    // taken it in (replaced by the next answer's).
                    drop(std::mem::replace(&mut holding, held));
                    if let (Some(record), Some(seen)) = (record.as_mut(), seen) {
                        record.push((seen, a.clone()));
                    }
                    a
                }
                Transport::Replay(provider) => {
                    kept = instance;
                    provider(&described).map_err(|why| {
                        AttemptError::new(
                            ErrorClass::Internal,
                            FailureKind::Host,
                            format!("replay: {why}"),
                        )
                    })?
                }
            };
            if host_reads {
                let output = read_json_body(&answered, max_output);
                self.host_read(output.is_some());
                if let Some(output) = output {
                    self.instances.read_by_host.fetch_add(1, Ordering::Relaxed);
                    return Ok(CallResponse { output });
                }
            }
            let response = HttpResponse {
                status: answered.status,
                headers: answered.headers,
                body: answered.body,
            };
            answer = Some((send.state, response));
        }
    }

    /// How long a call may keep its instance through its next send: the
    /// runtime's `exchange_hold` while the app's provider usually answers
    /// within it and at least a quarter of the pool's slots are free, else
    /// not at all (a slow provider's calls never wait out the hold).
    fn hold(&self) -> Duration {
        let inner = &self.runtime.inner;
        let free = inner.slots.available_permits();
        let usual = Duration::from_micros(self.instances.send_micros.load(Ordering::Relaxed));
        if usual < inner.exchange_hold && free.saturating_mul(4) >= inner.max_instances as usize {
            inner.exchange_hold
        } else {
            Duration::ZERO
        }
    }

    /// Whether most recent answers to the app's host-read actions still
    /// needed its `resume` (a moving share over the last ~8, above half).
    fn host_reads_fail(&self) -> bool {
        self.instances.unread_share.load(Ordering::Relaxed) > UNREAD_SCALE / 2
    }

    /// Fold one answer to a host-read action into the share that needed
    /// `resume`.
    fn host_read(&self, read: bool) {
        let sample = if read { 0 } else { UNREAD_SCALE };
        fold_eighth(&self.instances.unread_share, sample);
    }

    /// Fold one send's time into the app's moving average.
    fn answered_in(&self, took: Duration) {
        let sample = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        fold_eighth(&self.instances.send_micros, sample);
    }

    /// One step, on the call's kept instance or a fresh one. Answers the
    /// step and, after a `send`, the instance for the next step.
    #[allow(clippy::too_many_arguments)]
    async fn step(
        &self,
        pre: &ExchangePre,
        kept: Option<Kept>,
        request: &WitRequest,
        answer: Option<(Vec<u8>, HttpResponse)>,
        deadline: Instant,
        budget: Duration,
        log: &Arc<Mutex<CallLog>>,
    ) -> (Result<Step, AttemptError>, Option<Kept>) {
        let mut kept = match kept {
            Some(k) => k,
            None => match self.fresh(pre, deadline, budget, log).await {
                Ok(k) => k,
                Err(e) => return (Err(e), None),
            },
        };
        let work = async {
            match &answer {
                None => {
                    // SAFETY: `start`'s type was checked against these
                    // parameters and results when the app was loaded
                    // (`ExchangePre::check`), and this instance is of the
                    // same component.
                    let start =
                        unsafe { TypedFunc::<(&WitRequest,), (Step,)>::new_unchecked(kept.start) };
                    start.call_async(&mut kept.store, (request,)).await
                }
                Some((state, response)) => {
                    // SAFETY: as for `start` above.
                    let resume = unsafe {
                        TypedFunc::<(&WitRequest, &[u8], &HttpResponse), (Step,)>::new_unchecked(
                            kept.resume,
                        )
                    };
                    resume
                        .call_async(&mut kept.store, (request, state, response))
                        .await
                }
            }
            .map(|(step,)| step)
        };
        let outcome = tokio::time::timeout_at(deadline.into(), work).await;
        match settled(outcome, &kept.store, log, budget) {
            Ok(Step::Send(send)) => (Ok(Step::Send(send)), Some(kept)),
            other => (other, None),
        }
    }

    /// A fresh instance in a slot of the pool.
    async fn fresh(
        &self,
        pre: &ExchangePre,
        deadline: Instant,
        budget: Duration,
        log: &Arc<Mutex<CallLog>>,
    ) -> Result<Kept, AttemptError> {
        let Some(slot) = self.runtime.slot(deadline).await else {
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
        let started = Instant::now();
        let made = tokio::time::timeout_at(
            deadline.into(),
            pre.typed.instance_pre().instantiate_async(&mut store),
        )
        .await;
        let instance = settled(made, &store, log, budget)?;
        self.instantiated(started);
        let start = instance.get_func(&mut store, pre.steps.start);
        let resume = instance.get_func(&mut store, pre.steps.resume);
        let (Some(start), Some(resume)) = (start, resume) else {
            // Found when the app was loaded, so never expected here.
            return Err(AttemptError::new(
                after_send(log, ErrorClass::Internal),
                FailureKind::Host,
                "the adapter's instance exports no `start` or `resume` function",
            ));
        };
        Ok(Kept {
            store,
            start,
            resume,
            _slot: slot,
        })
    }
}

/// Fold `sample` into the moving average `avg` with weight 1/8 (about the
/// last 8 samples). Concurrent folds may lose one; the average is a hint.
fn fold_eighth(avg: &std::sync::atomic::AtomicU64, sample: u64) {
    let old = avg.load(Ordering::Relaxed);
    avg.store(
        (old - old / 8).saturating_add(sample / 8),
        Ordering::Relaxed,
    );
}

/// The output the host reads itself for an action in the adapter's
/// `exchange-reading`: a 2xx answer whose body is one JSON document within
/// the output cap. Anything else (`None`) goes to the adapter's `resume`.
fn read_json_body(answer: &Answered, max_output: usize) -> Option<serde_json::Value> {
    if !(200..300).contains(&answer.status) || answer.body.len() > max_output {
        return None;
    }
    serde_json::from_slice(&answer.body).ok()
}

/// What a sandbox call under the step's deadline came to: its value, the
/// deadline passed, or the guest's failure.
fn settled<T>(
    outcome: Result<wasmtime::Result<T>, tokio::time::error::Elapsed>,
    store: &Store<CallState>,
    log: &Mutex<CallLog>,
    budget: Duration,
) -> Result<T, AttemptError> {
    let log = log.lock().expect("call log");
    match outcome {
        Err(_) => Err(deadline_exceeded(&log, budget)),
        Ok(Err(e)) => Err(sandbox_failure(store, &log, e)),
        Ok(Ok(value)) => Ok(value),
    }
}

/// Await `sent`, keeping `instance` for the call's next step for at most
/// `hold`; past it the instance (and its slot) goes back to the pool while
/// the provider thinks.
async fn hold_while<T>(
    instance: Option<Kept>,
    hold: Duration,
    sent: impl std::future::Future<Output = T>,
) -> (T, Option<Kept>) {
    let Some(instance) = instance.filter(|_| !hold.is_zero()) else {
        return (sent.await, None);
    };
    tokio::pin!(sent);
    tokio::select! {
        biased;
        answered = &mut sent => (answered, Some(instance)),
        _ = tokio::time::sleep(hold) => {
            drop(instance);
            (sent.await, None)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &[u8]) -> Answered {
        Answered {
            status,
            headers: Vec::new(),
            body: body.to_vec(),
        }
    }

    #[test]
    fn the_host_reads_only_a_2xx_json_document_within_the_cap() {
        let read = |status, body: &[u8]| read_json_body(&answer(status, body), 64);
        assert_eq!(
            read(200, br#"{"id": "m-1"}"#),
            Some(serde_json::json!({"id": "m-1"}))
        );
        assert_eq!(read(299, b" [1, 2] \n"), Some(serde_json::json!([1, 2])));
        assert_eq!(read(204, b"null"), Some(serde_json::Value::Null));
        for (status, body) in [
            (199, &br#"{}"#[..]),
            (300, br#"{}"#),
            (404, br#"{"error": "no"}"#),
            (500, br#"{}"#),
            (200, b""),
            (200, b"  "),
            (200, b"ok"),
            (200, br#"{"id": 1} {"id": 2}"#),
            (200, b"{\"id\": \"\xff\"}"),
            (200, br#"{"cut": "#),
        ] {
            assert_eq!(
                read(status, body),
                None,
                "{status} {:?}",
                String::from_utf8_lossy(body)
            );
        }
        let big = format!(r#"{{"pad": "{}"}}"#, "x".repeat(60));
        assert_eq!(read(200, big.as_bytes()), None, "over the output cap");
        assert!(read_json_body(&answer(200, big.as_bytes()), big.len()).is_some());
    }
}
