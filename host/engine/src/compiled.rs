//! The compiled forms runs read: a route's options ([`CompiledRoute`],
//! [`CompiledOption`]), a feature's steps ([`CompiledFeature`]), and the
//! rule for names. Made by the compiler (`compile.rs`), kept by the
//! registry.

use crate::adaptive::AdaptiveConfig;
use crate::breaker::{BreakerSettings, default_key};
use crate::definition::{CacheDef, DefineError, HealthcheckDef};
use crate::mapping::Mapping;
use crate::retry::RetryPolicy;
use crate::schema::InputSchema;
use crate::trace::RunKind;
use std::sync::Arc;
use std::time::Duration;

/// What a compiled option runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OptionTarget {
    /// Its `app`'s `action`.
    Action,
    /// The feature with this tag.
    Feature(String),
}

/// One option, compiled.
#[derive(Debug)]
pub(crate) struct CompiledOption {
    pub provider: String,
    pub target: OptionTarget,
    /// Empty for a feature option.
    pub app: String,
    /// Empty for a feature option.
    pub action: String,
    pub input: Mapping,
    pub output: Mapping,
    pub policy: RetryPolicy,
    pub timeout: Option<Duration>,
    pub healthcheck: Option<String>,
    pub idempotent: Option<bool>,
    pub breaker_key: Option<Mapping>,
    /// The `breaker_key` template as written (names the breakers it makes).
    pub breaker_template: Option<String>,
    /// The definition's `breaker` with the option's over it.
    pub breaker: Option<BreakerSettings>,
    pub weight: u32,
    /// Rules on its errors: its own, then its definition's, each with
    /// where it is written.
    pub rules: Vec<(String, crate::rules::ErrorRule)>,
    /// Its hedging (its own or its definition's; safe actions only).
    pub hedge: Option<crate::hedge::HedgeConfig>,
}

/// The options' shared settings of a quota or fallback.
pub(crate) struct RouteFlags {
    pub failover_after_ambiguous: bool,
    pub spillover: bool,
    pub panic_mode: bool,
    pub deadline_ms: Option<u64>,
    pub breaker: Option<BreakerSettings>,
    pub adaptive: Option<AdaptiveConfig>,
    pub on: Vec<crate::rules::ErrorRule>,
    pub hedge: Option<crate::hedge::HedgeConfig>,
}

/// A quota, fallback, or a feature's action step, compiled.
#[derive(Debug)]
pub(crate) struct CompiledRoute {
    pub kind: RunKind,
    pub tag: String,
    pub schema: InputSchema,
    pub options: Vec<CompiledOption>,
    pub failover_after_ambiguous: bool,
    pub spillover: bool,
    pub panic_mode: bool,
    pub deadline: Duration,
    /// Adaptive routing (quotas).
    pub adaptive: Option<AdaptiveConfig>,
}

#[derive(Debug)]
pub(crate) enum StepTarget {
    Action(Arc<CompiledRoute>),
    Fallback(String),
    Quota(String),
    Feature(String),
}

#[derive(Debug)]
pub(crate) struct CompiledStep {
    pub name: String,
    pub input: Mapping,
    pub target: StepTarget,
}

#[derive(Debug)]
pub(crate) struct CompiledFeature {
    pub tag: String,
    pub schema: InputSchema,
    pub steps: Vec<CompiledStep>,
    pub output: Option<Mapping>,
    pub deadline: Duration,
}

#[derive(Debug, Clone)]
pub(crate) enum Compiled {
    Route(Arc<CompiledRoute>),
    Feature(Arc<CompiledFeature>),
    Healthcheck(Arc<HealthcheckDef>),
    Cache(CacheDef),
}

pub(crate) fn check_name(path: &str, what: &str, value: &str) -> Result<(), DefineError> {
    let ok = !value.is_empty()
        && value.len() <= 128
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(DefineError::new(
            path,
            format!(
                "{what} `{value}` must be 1-128 characters of letters, digits, `-`, `_` or `.`"
            ),
        ))
    }
}

/// What an option runs, as breaker keys and metrics name it: `app/action`,
/// or `feature:tag` for a feature option (`:` is never part of a tag, so
/// the two cannot meet).
pub(crate) fn option_target(opt: &CompiledOption) -> String {
    match &opt.target {
        OptionTarget::Action => format!("{}/{}", opt.app, opt.action),
        OptionTarget::Feature(tag) => format!("feature:{tag}"),
    }
}

/// The breaker key of an option without a `breaker_key` template:
/// [`default_key`] for an action, `product/env/feature:tag` for a feature.
pub(crate) fn option_key(product: &str, env: &str, opt: &CompiledOption) -> String {
    match &opt.target {
        OptionTarget::Action => default_key(product, env, &opt.app, &opt.action),
        OptionTarget::Feature(tag) => format!("{product}/{env}/feature:{tag}"),
    }
}
