//! The resilience engine, independent of wasmtime: it sees apps only as
//! [`crate::adapter::Adapter`]s and reads time only through [`Clock`].
//!
//! [`Switchyard`] is the front door: install apps, define healthchecks,
//! quotas, fallbacks, features and result caches (checked and compiled at
//! definition time), run them, and read provider state. The policies it
//! combines each live in their own module: [`breaker`], [`retry`],
//! [`budget`], [`admission`], [`weighted`], [`health`], and the runs in `fallback`,
//! `quota` and `feature`.

pub mod admission;
mod attempt;
pub mod bounds;
pub mod breaker;
pub mod budget;
pub mod builder;
pub mod clock;
pub mod definition;
mod fallback;
mod feature;
pub mod health;
pub(crate) mod locks;
pub mod observer;
mod quota;
mod registry;
pub mod result_cache;
pub mod retry;
pub mod run;
pub mod schema;
mod switchyard;
pub mod trace;
pub mod weighted;

pub use admission::{AdmissionConfig, AdmissionSnapshot, Overload, OverloadReason};
pub use breaker::{Breaker, BreakerConfig, BreakerSnapshot, BreakerState, Breakers, Open, Ticket};
pub use budget::{BudgetConfig, RetryBudget};
pub use builder::{
    CacheBuilder, Caches, Fallbacks, FeatureBuilder, Features, HealthcheckBuilder, Healthchecks,
    Quotas, RouteBuilder,
};
pub use clock::{Clock, ManualClock, SystemClock};
pub use definition::{
    CacheDef, DefineError, Definition, FallbackDef, FeatureDef, HealthcheckDef, Kind, Meta,
    ProviderOption, QuotaDef, StepDef, StepKind,
};
pub use health::{HealthKey, HealthSnapshot, HealthStatus, ProbeOutcome};
pub use observer::{AttemptEvent, Observer};
pub use registry::{AppSummary, DEFAULT_RUN_DEADLINE};
pub use retry::{Jitter, RetryPolicy};
pub use run::{ErrorCode, RunError, RunOptions, RunResult};
pub use schema::{FieldSchema, FieldType, InputSchema};
pub use switchyard::{
    AppAdmission, Counts, HealthcheckTask, ProviderState, Switchyard, SwitchyardBuilder,
};
pub use trace::{AttemptRecord, Outcome, Skip, SkipReason, StepTrace, Trace};
pub use weighted::SmoothWeighted;
