//! A loaded app: its prepared instance and egress, and one call on a fresh
//! instance (store, deadline, limiter, the egress gate as its hooks).

use crate::egress::EgressStats;
use crate::exchange::Transport;

use crate::instance::{AppInner, Pre};
use crate::runtime::LoadReport;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use switchyard_engine::{
    Adapter, AppInfo, AttemptError, BoxFuture, CallRequest, CallResponse, ErrorClass, FailureKind,
};

/// A snapshot of an app's instance counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct InstanceCounts {
    /// Instances created (one per call).
    pub instantiations: u64,
    /// Total time spent instantiating.
    pub instantiate_total: Duration,
    /// Exchange world: answers the host read itself, with no `resume` step
    /// (actions the adapter lists in `exchange-reading`).
    pub read_by_host: u64,
    /// Instances whose guest made a WASI or wasi:http call. The store's
    /// WASI contexts are made on the first such call, so an instance that
    /// makes none (an exchange-world step, usually) costs none of their
    /// setup.
    pub with_wasi: u64,
}

/// A loaded app: a component, its grant, and its self-description. Cheap
/// to clone; every call runs on a fresh instance.
#[derive(Clone)]
pub struct App {
    pub(crate) inner: Arc<AppInner>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("name", &self.inner.name)
            .field("info", &self.inner.info)
            .finish_non_exhaustive()
    }
}

impl App {
    /// The app's name (as configured, not as the adapter calls itself).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// How the load went.
    pub fn load_report(&self) -> LoadReport {
        self.inner.report
    }

    /// The world the app's component targets.
    pub fn world(&self) -> crate::world::World {
        self.inner.report.world
    }

    /// Egress counters.
    pub fn egress_stats(&self) -> EgressStats {
        self.inner.egress.stats()
    }

    /// Instance counters: how many calls got an instance, and how long
    /// instantiating took in total.
    pub fn instance_counts(&self) -> InstanceCounts {
        let s = &self.inner.instances;
        InstanceCounts {
            instantiations: s.count.load(Ordering::Relaxed),
            instantiate_total: Duration::from_micros(s.micros.load(Ordering::Relaxed)),
            read_by_host: s.read_by_host.load(Ordering::Relaxed),
            with_wasi: s.with_wasi.load(Ordering::Relaxed),
        }
    }

    /// The actions whose 2xx JSON answers the host reads itself, without a
    /// `resume` step (the adapter's optional `exchange-reading` export),
    /// sorted.
    pub fn read_by_host(&self) -> Vec<&str> {
        let mut reads: Vec<&str> = self.inner.host_reads.iter().map(String::as_str).collect();
        reads.sort_unstable();
        reads
    }

    /// Run one attempt on a fresh instance.
    pub async fn call(&self, request: CallRequest) -> Result<CallResponse, AttemptError> {
        self.run(request).await
    }

    /// One attempt: on the runtime's sandbox threads when it has them
    /// ([`crate::RuntimeConfig::sandbox_threads`]), else in the caller's
    /// task. As in place, nothing starts before the future is first
    /// polled, and dropping it stops the call, at the call's next wait.
    fn run(&self, request: CallRequest) -> BoxFuture<'_, Result<CallResponse, AttemptError>> {
        let Some(threads) = self.inner.runtime.inner.sandbox.handle() else {
            return Box::pin(self.inner.call(request));
        };
        let inner = self.inner.clone();
        Box::pin(async move {
            let call =
                tracing::Instrument::in_current_span(async move { inner.call(request).await });
            match AbortOnDrop(threads.spawn(call)).await {
                Ok(answer) => answer,
                // A panic in the host stays one, as it would in place.
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                // The runtime is shutting down: the call may have sent its
                // request, so it must not fail over.
                Err(_) => Err(AttemptError::new(
                    ErrorClass::Ambiguous,
                    FailureKind::Host,
                    "the runtime shut down during the call",
                )),
            }
        })
    }

    /// Run one attempt of an exchange-world app against its provider, as
    /// [`App::call`] does, and record every request it described (without
    /// the host's credentials) with the provider's answer: what
    /// `switchyard plugin record` writes into a fixture.
    pub async fn call_recorded(
        &self,
        request: CallRequest,
    ) -> (
        Result<CallResponse, AttemptError>,
        Vec<(crate::egress::Described, crate::egress::Answered)>,
    ) {
        let mut record = Vec::new();
        let result = match &self.inner.pre {
            Pre::Exchange(pre) => {
                self.inner
                    .exchange_steps(pre, request, Transport::Live(Some(&mut record)))
                    .await
            }
            Pre::Adapter(_) => Err(not_exchange()),
        };
        (result.map_err(AttemptError::bounded), record)
    }

    /// Run one attempt of an exchange-world app with `provider` answering
    /// each request it describes: no network, deterministic (`switchyard
    /// plugin test`). An `Err` from `provider` ends the call as `internal`
    /// with its reason.
    pub async fn replay(
        &self,
        request: CallRequest,
        provider: &mut (
                 dyn FnMut(&crate::egress::Described) -> Result<crate::egress::Answered, String>
                     + Send
             ),
    ) -> Result<CallResponse, AttemptError> {
        match &self.inner.pre {
            Pre::Exchange(pre) => self
                .inner
                .exchange_steps(pre, request, Transport::Replay(provider))
                .await
                .map_err(AttemptError::bounded),
            Pre::Adapter(_) => Err(not_exchange()),
        }
    }
}

fn not_exchange() -> AttemptError {
    AttemptError::new(
        ErrorClass::Internal,
        FailureKind::Host,
        "recording and replaying exchanges needs an exchange-world adapter (this one sends its own requests over wasi:http)",
    )
}

impl Adapter for App {
    fn info(&self) -> &AppInfo {
        &self.inner.info
    }

    fn call(&self, request: CallRequest) -> BoxFuture<'_, Result<CallResponse, AttemptError>> {
        self.run(request)
    }
}

/// A task on the sandbox threads, aborted when its caller stops waiting
/// for it.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> std::future::Future for AbortOnDrop<T> {
    type Output = Result<T, tokio::task::JoinError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
