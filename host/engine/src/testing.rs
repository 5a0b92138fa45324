//! Native adapters for tests, examples and benchmarks: an app whose
//! behaviour the test sets and changes while the engine runs, and which
//! records every request it receives.

use crate::adapter::{
    ActionInfo, Adapter, AppInfo, AttemptError, BoxFuture, CallRequest, CallResponse, ErrorClass,
    FailureKind, Idempotency,
};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;

type Behaviour = Box<dyn FnMut(&CallRequest) -> Result<Value, AttemptError> + Send>;

/// A scripted app. By default every action succeeds with
/// `{"app": name, "action": ..., "input": ...}`.
pub struct FakeAdapter {
    info: AppInfo,
    behaviour: Mutex<Behaviour>,
    calls: Mutex<Vec<CallRequest>>,
    hold: Mutex<Option<Arc<Semaphore>>>,
    in_flight: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
}

impl std::fmt::Debug for FakeAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeAdapter")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl FakeAdapter {
    /// An app called `name` with `actions` given as (name, idempotent):
    /// `true` declares the action keyed (idempotent at this app with the
    /// same key), `false` unsafe.
    pub fn new(name: &str, actions: &[(&str, bool)]) -> Self {
        let declared: Vec<(&str, Idempotency)> = actions
            .iter()
            .map(|(a, i)| (*a, Idempotency::from_override(*i)))
            .collect();
        Self::declaring(name, &declared)
    }

    /// An app called `name` with `actions` given as (name, idempotency).
    pub fn declaring(name: &str, actions: &[(&str, Idempotency)]) -> Self {
        let app = name.to_string();
        Self {
            info: AppInfo {
                name: name.into(),
                version: "0.0.0".into(),
                actions: actions
                    .iter()
                    .map(|(a, idempotency)| ActionInfo {
                        name: (*a).into(),
                        description: String::new(),
                        input_schema: json!({}),
                        idempotency: *idempotency,
                    })
                    .collect(),
            },
            behaviour: Mutex::new(Box::new(move |r: &CallRequest| {
                Ok(json!({"app": app, "action": r.action, "input": r.input}))
            })),
            calls: Mutex::new(Vec::new()),
            hold: Mutex::new(None),
            in_flight: Arc::new(AtomicUsize::new(0)),
            peak: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// From now on every call stays in flight until the returned
    /// semaphore gets a permit for it (`add_permits`); each answer uses
    /// one up. A slow provider whose pace the test sets.
    pub fn hold(&self) -> Arc<Semaphore> {
        let s = Arc::new(Semaphore::new(0));
        *self.hold.lock().expect("hold") = Some(s.clone());
        s
    }

    /// Calls in flight now (held ones included).
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// The most calls that were in flight at once.
    pub fn peak_in_flight(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }

    /// Answer every call with `f`.
    pub fn behave(
        &self,
        f: impl FnMut(&CallRequest) -> Result<Value, AttemptError> + Send + 'static,
    ) {
        *self.behaviour.lock().expect("behaviour") = Box::new(f);
    }

    /// Answer every call with `output`.
    pub fn succeed_with(&self, output: Value) {
        self.behave(move |_| Ok(output.clone()));
    }

    /// Fail every call with an error of `class` reported by the provider.
    pub fn fail(&self, class: ErrorClass) {
        self.behave(move |r| {
            Err(AttemptError::new(
                class,
                FailureKind::Provider,
                format!("{} failed ({class})", r.action),
            ))
        });
    }

    /// The requests received so far.
    pub fn calls(&self) -> Vec<CallRequest> {
        self.calls.lock().expect("calls").clone()
    }

    /// How many requests were received.
    pub fn call_count(&self) -> usize {
        self.calls.lock().expect("calls").len()
    }

    /// Forget the recorded requests.
    pub fn clear_calls(&self) {
        self.calls.lock().expect("calls").clear();
    }
}

impl Adapter for FakeAdapter {
    fn info(&self) -> &AppInfo {
        &self.info
    }

    fn call(&self, request: CallRequest) -> BoxFuture<'_, Result<CallResponse, AttemptError>> {
        let result = (self.behaviour.lock().expect("behaviour"))(&request);
        self.calls.lock().expect("calls").push(request);
        let n = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(n, Ordering::SeqCst);
        let hold = self.hold.lock().expect("hold").clone();
        let in_flight = self.in_flight.clone();
        Box::pin(async move {
            // Count the call out even if the caller gives up on it.
            struct Out(Arc<AtomicUsize>);
            impl Drop for Out {
                fn drop(&mut self) {
                    self.0.fetch_sub(1, Ordering::SeqCst);
                }
            }
            let _out = Out(in_flight);
            if let Some(h) = hold
                && let Ok(p) = h.acquire().await
            {
                p.forget();
            }
            result.map(|output| CallResponse { output })
        })
    }
}
