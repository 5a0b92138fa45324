//! Switchyard's resilience engine, independent of wasmtime and of any HTTP
//! server: it sees apps only as [`Adapter`]s and reads time only through
//! [`Clock`].
//!
//! [`Switchyard`] is the front door: install apps, define healthchecks,
//! quotas, fallbacks, features and result caches (checked and compiled at
//! definition time), run them, and read provider state.
//!
//! Where each concern lives (all modules are private; this page is the
//! crate's whole surface). Imports only point down this table, and no two
//! files import each other in a loop:
//!
//! | floor | concern | files |
//! |---|---|---|
//! | vocabulary | the adapter seam ([`Adapter`], [`CallRequest`], [`AttemptError`]); time ([`Clock`]); locks; input schemas; `$Input`/`$Response`/`$Sequence` mappings; a definition's error; weighted rotation; the result cache | `adapter.rs`, `clock.rs`, `locks.rs`, `schema.rs`, `mapping.rs`, `error.rs`, `weighted.rs`, `result_cache.rs` |
//! | mechanisms | circuit breakers: settings, state (forces, snapshots, the record replicas share), one circuit, the keyed set | `breaker/` (`config.rs`, `state.rs`, `circuit.rs`, `set.rs`) |
//! | | retries and their budget; admission (settings and the gate); health; the trace | `retry.rs`, `budget.rs`, `admission/` (`config.rs`, `gate.rs`), `health.rs`, `trace.rs` |
//! | | scorecards per option (a latency histogram, the window, elimination's record, what replicas share); rules on provider errors; hedging's settings | `scorecard/` (`histogram.rs`, `shared.rs`, `mod.rs`), `rules.rs`, `hedge.rs` |
//! | | adaptive routing's strategies, pure: `success-rate`, `latency`, `elimination`, and a judgement to an order | `adaptive/` (`success.rs`, `latency.rs`, `elimination.rs`, `choose.rs`, `mod.rs`) |
//! | definitions | what a team declares: the kind and meta, a provider option, each kind's fields, any definition | `definition/` (`meta.rs`, `option.rs`, `kinds.rs`, `mod.rs`) |
//! | | a run's result and errors; bounds on every number a user sets ([`bounds`]); the compiled forms runs read | `run.rs`, `bounds.rs`, `compiled.rs` |
//! | ports | what the engine asks of its host: [`Shared`] (the cluster), [`Observer`], [`Records`] (one execution per key, at one app) | `cluster.rs`, `observer.rs`, `records.rs` |
//! | state | the registry (definitions and apps, a store only); counts and gates | `registry.rs`, `meters.rs` |
//! | | the engine's state ([`Switchyard`], its `Inner`) and builder | `switchyard.rs` |
//! | compiler | definitions checked against apps and each other, mappings compiled | `compile.rs`, `compile_feature.rs` |
//! | dispatch | counting and metering per app; operator controls (drain, force); asking and telling the cluster port, and taking in what replicas shared | `accounting.rs`, `operator.rs`, `cluster_sync.rs` |
//! | | one option's attempts (a hedged call), the order of options, a pinned key, a feature as an option | `attempt/` (`ctx.rs`, `option.rs`, `hedging.rs`, `race.rs`, `mod.rs`) |
//! | | a run's adaptive choice; fallbacks, quotas, features; the healthcheck scheduler; the provider-state read model ([`ProviderState`]) | `choice.rs`, `fallback.rs`, `quota.rs`, `feature.rs`, `scheduler.rs`, `provider_state.rs` |
//! | front door | run dispatch (cache, admission, deadline, idempotency, kind); the code-first API | `dispatch.rs`, `builder/` |

mod accounting;
mod adapter;
mod adaptive;
mod admission;
mod attempt;
pub mod bounds;
mod breaker;
mod budget;
mod builder;
mod choice;
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
mod hedge;
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
mod rules;
mod run;
mod scheduler;
mod schema;
mod scorecard;
mod switchyard;
#[cfg(feature = "testing")]
mod testing;
mod trace;
mod weighted;

pub use adapter::{
    ActionInfo, Adapter, AppInfo, AttemptError, BoxFuture, CallRequest, CallResponse, ErrorClass,
    FailureKind, Idempotency, MAX_ERROR_CODE, MAX_ERROR_MESSAGE, Session,
};
pub use adaptive::{AdaptiveConfig, AdaptiveTrace, Mode as AdaptiveMode, Score, Strategy};
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
pub use hedge::{HedgeConfig, HedgeDelay, HedgeRecord, HedgeTo, MAX_HEDGES, OptionHedge};
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
pub use rules::{ErrorRule, MAX_RULE_CODE, MAX_RULES, RuleAction, validate as validate_rules};
pub use run::{ErrorCode, Reconcile, RunError, RunOptions, RunResult};
pub use scheduler::HealthcheckTask;
pub use schema::{FieldSchema, FieldType, InputError, InputSchema};
pub use scorecard::{
    BUCKET_MS, LatencyHistogram, MAX_SCORECARDS, MAX_SHARED_SCORECARDS, MinuteStats,
    ScorecardMinutes, ScorecardSnapshot, SharedScorecard, SharedSlot, WINDOW_MS,
};
pub use switchyard::{Change, Switchyard, SwitchyardBuilder};
#[cfg(feature = "testing")]
pub use testing::FakeAdapter;
pub use trace::{AttemptRecord, Outcome, RunKind, Skip, SkipReason, StepTrace, Trace};
