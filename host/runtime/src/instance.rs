//! One app as the runtime holds it ([`AppInner`]): its prepared component,
//! grant, egress and counters, and a call of an `adapter`-world component
//! on a fresh instance in a slot of the pool. Exchange-world steps are in
//! `exchange.rs`; the public handle in `app.rs`.

use crate::bindings::exchange_world::ExchangeAdapter;
use crate::bindings::reading_world::reading;
use crate::bindings::{AdapterPre, types};
use crate::egress::{AppEgress, CallEgress, CallLog, CallMemory};
use crate::error::LoadError;
use crate::outcome::{
    adapter_answer, check_actions, check_readings, deadline_exceeded, sandbox_failure,
};

use crate::bindings::types::Idempotency as WitIdempotency;
use crate::runtime::{LoadReport, Runtime};
use crate::state::CallState;
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchyard_engine::{
    AppInfo, AttemptError, CallRequest, CallResponse, ErrorClass, FailureKind, Idempotency,
};
use wasmtime::component::{ComponentExportIndex, Instance, TypedFunc};
use wasmtime::{Store, UpdateDeadline};

/// A component prepared for instantiation, by the world it targets.
pub(crate) enum Pre {
    /// `adapter`: `call` does the whole attempt.
    Adapter(ProviderPre),
    /// `exchange-adapter`: `start` / `resume` steps.
    Exchange(crate::exchange::ExchangePre),
}

/// The export every `adapter`-world component has (a component built
/// against any 0.2.x of the contract is found under this name).
const PROVIDER_EXPORT: &str = "switchyard:adapter/provider@0.2.0";

/// The type of the `provider` export's `call`, as the contract defines it.
type CallFn<'a> =
    TypedFunc<(&'a types::CallRequest,), (Result<types::CallResponse, types::AdapterError>,)>;

/// An `adapter`-world component prepared for instantiation, with where its
/// `call` is. As for the exchange world ([`crate::exchange::ExchangePre`]):
/// the generated bindings type-check the export's functions on every
/// instance, while their types are the component's; `call` is checked once
/// when the app is loaded and each call's instance takes it by index.
pub(crate) struct ProviderPre {
    /// The generated bindings: `describe` goes through them.
    pub(crate) typed: AdapterPre<CallState>,
    call: ComponentExportIndex,
}

impl ProviderPre {
    /// Find `call` in `typed`'s component.
    pub(crate) fn new(typed: AdapterPre<CallState>) -> wasmtime::Result<Self> {
        let call = export_func(typed.instance_pre(), PROVIDER_EXPORT, "call")?;
        Ok(Self { typed, call })
    }

    /// Check the type of `call` on `instance`, one of this component's. An
    /// app is loaded only once this passed (its `describe` calls it), and
    /// only a loaded app is called.
    fn check(&self, store: &mut Store<CallState>, instance: &Instance) -> wasmtime::Result<()> {
        instance.get_typed_func::<(&types::CallRequest,), (Result<types::CallResponse, types::AdapterError>,)>(
            &mut *store,
            self.call,
        )?;
        Ok(())
    }
}

/// Where function `func` of exported instance `instance` is in `pre`'s
/// component (found as the generated bindings find it).
pub(crate) fn export_func(
    pre: &wasmtime::component::InstancePre<CallState>,
    instance: &str,
    func: &str,
) -> wasmtime::Result<ComponentExportIndex> {
    let component = pre.component();
    let exported = component
        .get_export_index(None, instance)
        .ok_or_else(|| wasmtime::format_err!("no exported instance named `{instance}`"))?;
    component
        .get_export_index(Some(&exported), func)
        .ok_or_else(|| {
            wasmtime::format_err!("instance export `{instance}` does not have export `{func}`")
        })
}

pub(crate) struct AppInner {
    pub(crate) name: Arc<str>,
    pub(crate) info: AppInfo,
    pub(crate) pre: Pre,
    pub(crate) runtime: Runtime,
    pub(crate) egress: Arc<AppEgress>,
    pub(crate) config: Arc<BTreeMap<String, String>>,
    pub(crate) report: LoadReport,
    pub(crate) instances: InstanceStats,
    /// Exchange world: the actions whose 2xx JSON answer the host reads
    /// itself, without `resume` (the optional `exchange-reading` export).
    pub(crate) host_reads: HashSet<String>,
}

/// Instances created for calls, and the time spent creating them.
#[derive(Debug, Default)]
pub(crate) struct InstanceStats {
    pub(crate) count: AtomicU64,
    pub(crate) micros: AtomicU64,
    /// Exchange world: how long the app's provider takes to answer, µs
    /// (a moving average over the last ~8 sends), so a call keeps its
    /// instance across a send only for a provider that answers quickly.
    pub(crate) send_micros: AtomicU64,
    /// Exchange world: answers read by the host without a `resume` step.
    pub(crate) read_by_host: AtomicU64,
    /// Exchange world: of the recent answers to actions the host reads, the
    /// share (of 2^16, a moving average over ~8) that needed `resume`.
    /// Above half, those calls keep their instance through a quick send.
    pub(crate) unread_share: AtomicU64,
    /// Instances whose guest made a WASI or wasi:http call (the store's
    /// WASI contexts are made only then).
    pub(crate) with_wasi: Arc<AtomicU64>,
}

impl AppInner {
    pub(crate) fn store(
        &self,
        deadline: Instant,
        log: Arc<Mutex<CallLog>>,
        request_cap: Option<u32>,
    ) -> Store<CallState> {
        let limits = self.runtime.inner.limits;
        let memory = CallMemory::new(limits.guest_memory());
        let egress = CallEgress::new(
            self.egress.clone(),
            memory.clone(),
            deadline,
            log,
            request_cap,
        );
        let state = CallState::new(
            self.name.clone(),
            self.config.clone(),
            egress,
            memory,
            limits.max_log_lines,
            self.instances.with_wasi.clone(),
        );
        let mut store = Store::new(&self.runtime.inner.engine, state);
        store.limiter(|s| &mut s.limiter);
        // Past the deadline the guest traps; before it, a CPU-bound guest
        // yields every tick so it never starves the executor.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline {
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        store
    }

    /// What the app says of itself: `describe`, and for an exchange-world
    /// component that exports `exchange-reading`, the actions whose answers
    /// the host may read (checked against the described actions).
    pub(crate) async fn describe(&self) -> Result<(AppInfo, HashSet<String>), LoadError> {
        let budget = self.runtime.inner.limits.describe_deadline;
        let deadline = Instant::now() + budget;
        // Declared before the store, so it is released after the store
        // (and with it the pool slot) is gone.
        let _slot = self.runtime.slot(deadline).await.ok_or_else(|| LoadError::Describe {
            app: self.name.to_string(),
            reason: format!(
                "could not start: no plugin instance slot free within {budget:?} (all {} in use)",
                self.runtime.inner.max_instances
            ),
        })?;
        let log = Arc::new(Mutex::new(CallLog::default()));
        let mut store = self.store(deadline, log.clone(), Some(0));
        let work = async {
            let info = match &self.pre {
                Pre::Adapter(provider) => {
                    let pre = &provider.typed;
                    let instance = pre.instance_pre().instantiate_async(&mut store).await?;
                    let adapter = crate::bindings::Adapter::new(&mut store, &instance)?;
                    // The type calls rely on (`ProviderPre::check`).
                    provider.check(&mut store, &instance)?;
                    adapter
                        .switchyard_adapter_provider()
                        .call_describe(&mut store)
                        .await
                }
                Pre::Exchange(exchange) => {
                    let pre = &exchange.typed;
                    let instance = pre.instance_pre().instantiate_async(&mut store).await?;
                    let adapter = ExchangeAdapter::new(&mut store, &instance)?;
                    // The types calls rely on (`ExchangePre::check`).
                    exchange.check(&mut store, &instance)?;
                    let info = adapter
                        .switchyard_adapter_exchange()
                        .call_describe(&mut store)
                        .await?;
                    let readings = if exports_reading(pre.instance_pre()) {
                        let typed = reading::GuestIndices::new(pre.instance_pre())
                            .and_then(|ix| ix.load(&mut store, &instance));
                        match typed {
                            Ok(reading) => reading.call_readings(&mut store).await?,
                            // Exported, but not as the contract says: refuse
                            // it rather than quietly read nothing.
                            Err(e) => {
                                return Err(wasmtime::format_err!(
                                    "found an `exchange-reading` export that does not match the contract ({e:#}), so the host cannot tell which answers it may read; export the interface as `switchyard:adapter` 0.2.x defines it, or drop it"
                                ));
                            }
                        }
                    } else {
                        // Optional: a component without the export is read
                        // by its `resume`, as before.
                        Vec::new()
                    };
                    return Ok((info, readings));
                }
            };
            Ok((info?, Vec::new()))
        };
        let outcome = tokio::time::timeout_at(deadline.into(), work).await;
        let describe_error = |reason: String| LoadError::Describe {
            app: self.name.to_string(),
            reason,
        };
        let (info, readings) = match outcome {
            Err(_) => return Err(describe_error(format!("did not finish within {budget:?}"))),
            Ok(Err(e)) => {
                let log = log.lock().expect("call log");
                return Err(describe_error(sandbox_failure(&store, &log, e).message));
            }
            Ok(Ok(described)) => described,
        };
        let actions = info
            .actions
            .into_iter()
            .map(|a| {
                let idempotency = match a.idempotency {
                    WitIdempotency::Safe => Idempotency::Safe,
                    WitIdempotency::Keyed => Idempotency::Keyed,
                    WitIdempotency::Unsafe => Idempotency::Unsafe,
                };
                (a.name, a.description, a.input_schema, idempotency)
            })
            .collect();
        let actions = check_actions(actions).map_err(describe_error)?;
        let readings = readings
            .into_iter()
            .map(|r| match r.reading {
                reading::Reading::JsonBody => r.action,
            })
            .collect();
        let host_reads = check_readings(readings, &actions).map_err(describe_error)?;
        Ok((
            AppInfo {
                name: info.name,
                version: info.version,
                actions,
            },
            host_reads,
        ))
    }

    pub(crate) async fn call(&self, request: CallRequest) -> Result<CallResponse, AttemptError> {
        let result = match &self.pre {
            Pre::Adapter(pre) => self.call_adapter(pre, request).await,
            Pre::Exchange(pre) => self.call_exchange(pre, request).await,
        };
        let result = result.map_err(AttemptError::bounded);
        if let Err(e) = &result {
            tracing::debug!(app = %self.name, class = %e.class, kind = ?e.kind, message = %e.message, "attempt failed");
        }
        result
    }

    /// The call's request as the WIT contract carries it.
    pub(crate) fn wit_request(request: CallRequest) -> types::CallRequest {
        types::CallRequest {
            action: request.action,
            input: request.input.to_string(),
            idempotency_key: request.idempotency_key,
            deadline_ms: request.deadline.as_millis() as u64,
            env: request.env,
            session: request.session.map(|s| types::Session {
                tag: s.tag,
                token: s.token,
            }),
        }
    }

    /// Count one instantiation that took since `started`.
    pub(crate) fn instantiated(&self, started: Instant) {
        self.instances.count.fetch_add(1, Ordering::Relaxed);
        self.instances
            .micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
    }

    /// An `adapter`-world call: one instance does the whole attempt.
    async fn call_adapter(
        &self,
        pre: &ProviderPre,
        request: CallRequest,
    ) -> Result<CallResponse, AttemptError> {
        let deadline = Instant::now() + request.deadline;
        // The slot outlives the store (declared first, dropped last), so the
        // pool never sees more instances than permits.
        let Some(_slot) = self.runtime.slot(deadline).await else {
            return Err(self.no_slot(request.deadline));
        };
        let log = Arc::new(Mutex::new(CallLog::default()));
        let mut store = self.store(deadline, log.clone(), None);
        let budget = request.deadline;
        let wit_request = Self::wit_request(request);
        let work = async {
            let started = Instant::now();
            let instance = pre
                .typed
                .instance_pre()
                .instantiate_async(&mut store)
                .await?;
            self.instantiated(started);
            let call = instance
                .get_func(&mut store, pre.call)
                .ok_or_else(|| wasmtime::format_err!("the adapter's instance exports no `call`"))?;
            // SAFETY: `call`'s type was checked against these parameters
            // and results when the app was loaded (`ProviderPre::check`),
            // and this instance is of the same component.
            let call: CallFn<'_> = unsafe { TypedFunc::new_unchecked(call) };
            call.call_async(&mut store, (&wit_request,))
                .await
                .map(|(answer,)| answer)
        };
        let outcome = tokio::time::timeout_at(deadline.into(), work).await;
        let log = log.lock().expect("call log");
        let max_output = self.runtime.inner.limits.max_output;
        match outcome {
            Err(_) => Err(deadline_exceeded(&log, budget)),
            Ok(Err(e)) => Err(sandbox_failure(&store, &log, e)),
            Ok(Ok(answer)) => adapter_answer(answer, &log, max_output),
        }
    }

    /// No instance slot came free before the attempt's deadline: the
    /// host's limit, never the provider's failure.
    pub(crate) fn no_slot(&self, budget: Duration) -> AttemptError {
        let n = self.runtime.inner.max_instances;
        AttemptError::new(
            ErrorClass::Overloaded,
            FailureKind::Overload,
            format!(
                "no plugin instance slot became free within the attempt's {budget:?} (all {n} in use); raise the runtime's max_instances or lower the apps' max_in_flight"
            ),
        )
    }
}

/// Whether the component exports some version of `exchange-reading`.
fn exports_reading(pre: &wasmtime::component::InstancePre<CallState>) -> bool {
    pre.component()
        .component_type()
        .exports(pre.engine())
        .any(|(name, _)| name.starts_with("switchyard:adapter/exchange-reading@"))
}
