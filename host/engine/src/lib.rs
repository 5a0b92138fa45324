//! Switchyard's resilience engine, independent of wasmtime and of any HTTP
//! server: it sees apps only as [`Adapter`]s and reads time only through
//! [`Clock`].
//!
//! [`Switchyard`] is the front door: install apps, define healthchecks,
//! quotas, fallbacks, features and result caches (checked and compiled at
//! definition time), run them, and read provider state.
//!
//! Where each concern lives (all modules are private; this page is the
//! crate's whole surface):
//!
//! | concern | file |
//! |---|---|
//! | the adapter seam ([`Adapter`], [`CallRequest`], [`AttemptError`]) | `adapter.rs` |
//! | the facade ([`Switchyard`], [`SwitchyardBuilder`]) | `switchyard.rs` |
//! | run dispatch (cache, admission, deadline, kind) | `dispatch.rs` |
//! | one attempt and the order of providers | `attempt.rs`, `fallback.rs`, `quota.rs`, `feature.rs` |
//! | the healthcheck scheduler | `scheduler.rs` |
//! | the provider-state read model ([`ProviderState`]) | `provider_state.rs` |
//! | definitions and their storage | `definition.rs`, `registry.rs` |
//! | the route compiler (definitions checked and compiled) | `compile.rs` |
//! | what one breaker decides; the breakers' state and time, and the breaker key | `breaker.rs`; `breakers.rs` |
//! | policies: retries, budgets, admission, weights, health, caches | `retry.rs`, `budget.rs`, `admission.rs`, `weighted.rs`, `health.rs`, `result_cache.rs` |
//! | `$Input`/`$Response`/`$Sequence` mappings | `mapping.rs` |
//! | bounds on every number a user sets | [`bounds`] |
//! | operator controls: drain/restore a provider, force a breaker | `operator.rs` |
//! | the cluster seam ([`Shared`]): what replicas share, and taking it in | `cluster.rs` |
//! | idempotency records ([`Records`]): one execution per key, at one app | `records.rs` |

mod accounting;
mod adapter;
mod admission;
mod attempt;
pub mod bounds;
mod breaker;
mod budget;
mod builder;
mod clock;
mod cluster;
mod cluster_sync;
mod compile;
mod compile_feature;
mod compiled;
mod definition;
mod dispatch;
mod error;
mod fallback;
mod feature;
mod health;
mod locks;
mod mapping;
mod meters;
mod observer;
mod operator;
mod provider_state;
mod quota;
mod records;
mod registry;
mod result_cache;
mod retry;
mod run;
mod scheduler;
mod schema;
mod switchyard;
#[cfg(feature = "testing")]
mod testing;
mod trace;
mod weighted;

pub use adapter::{
    ActionInfo, Adapter, AppInfo, AttemptError, BoxFuture, CallRequest, CallResponse, ErrorClass,
    FailureKind, Idempotency, MAX_ERROR_CODE, MAX_ERROR_MESSAGE, Session,
};
pub use admission::{AdmissionConfig, AdmissionSnapshot, Overload, OverloadReason};
pub use breaker::{
    BreakerConfig, BreakerSettings, BreakerSnapshot, BreakerState, Classifier, ErrorClasses, Force,
    MAX_BREAKERS, SharedBreaker, default_classifier,
};
pub use budget::BudgetConfig;
pub use builder::{CacheBuilder, FeatureBuilder, HealthcheckBuilder, RouteBuilder};
pub use clock::{Clock, Elapsed, ManualClock, SystemClock, timeout};
pub use cluster::Shared;
pub use definition::{
    CacheDef, DefineError, Definition, FallbackDef, FeatureDef, HealthcheckDef, Kind, Meta,
    OptionKind, ProviderOption, QuotaDef, StepDef, StepKind,
};
pub use health::{HealthKey, HealthSnapshot, HealthStatus, ProbeOutcome};
pub use locks::{Recover, RecoverRw};
pub use mapping::{Mapping, MappingError};
pub use meters::Counts;
pub use observer::{AttemptEvent, Observer};
pub use provider_state::{AppAdmission, LiveDefinition, ProviderState, TEMPLATED_BREAKERS_SHOWN};
pub use records::{
    Claim, DEFAULT_MEMORY_RECORDS, MemoryRecords, Pin, Record, Records, RecordsUnavailable,
    Settlement, StoredOutcome,
};
pub use registry::{AppSummary, DEFAULT_RUN_DEADLINE};
pub use retry::{Jitter, RetryPolicy};
pub use run::{ErrorCode, Reconcile, RunError, RunOptions, RunResult};
pub use scheduler::HealthcheckTask;
pub use schema::{FieldSchema, FieldType, InputError, InputSchema};
pub use switchyard::{Change, Switchyard, SwitchyardBuilder};
#[cfg(feature = "testing")]
pub use testing::FakeAdapter;
pub use trace::{AttemptRecord, Outcome, RunKind, Skip, SkipReason, StepTrace, Trace};
