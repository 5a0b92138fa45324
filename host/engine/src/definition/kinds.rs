//! The five kinds of definitions, field by field: healthchecks, quotas,
//! fallbacks, features (and their steps) and result caches.

use super::meta::{Kind, Meta};
use super::option::*;
use crate::adaptive::AdaptiveConfig;
use crate::breaker::BreakerSettings;
use crate::schema::InputSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// A probe of one provider: an app's action called on an interval with a
/// per-env input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthcheckDef {
    /// Product, tag, name, description.
    #[serde(flatten)]
    pub meta: Meta,
    /// App to probe.
    pub app: String,
    /// Action to call (usually `ping`).
    pub action: String,
    /// Input per env; the check runs in the envs listed here (an empty
    /// object for an env that needs no input).
    #[serde(default)]
    pub input: BTreeMap<String, Value>,
    /// Time between checks, ms. Default 30 000.
    #[serde(default = "default_interval")]
    pub interval_ms: u64,
    /// Retries within one check before it counts as failed.
    #[serde(default)]
    pub retries: u32,
    /// Deadline of one probe, ms. Default 5 000.
    #[serde(default = "default_probe_timeout")]
    pub timeout_ms: u64,
    /// Random spread of the interval, as a fraction (0.1 = ±10 %).
    #[serde(default = "default_jitter")]
    pub jitter: f64,
    /// Outcomes kept in the history. Default 100.
    #[serde(default = "default_history")]
    pub history: usize,
}

pub(crate) fn default_interval() -> u64 {
    30_000
}
pub(crate) fn default_probe_timeout() -> u64 {
    5_000
}
pub(crate) fn default_jitter() -> f64 {
    0.1
}
pub(crate) fn default_history() -> usize {
    100
}

impl HealthcheckDef {
    /// A check of `app`'s `action` with defaults and no envs yet.
    pub fn new(meta: Meta, app: impl Into<String>, action: impl Into<String>) -> Self {
        Self {
            meta,
            app: app.into(),
            action: action.into(),
            input: BTreeMap::new(),
            interval_ms: default_interval(),
            retries: 0,
            timeout_ms: default_probe_timeout(),
            jitter: default_jitter(),
            history: default_history(),
        }
    }
}

/// Weighted choice among providers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QuotaDef {
    /// Product, tag, name, description.
    #[serde(flatten)]
    pub meta: Meta,
    /// Accepted input fields.
    #[serde(default)]
    pub input: InputSchema,
    /// Providers with weights.
    pub providers: Vec<ProviderOption>,
    /// When no provider is eligible, try them all by weight anyway.
    #[serde(default = "yes")]
    pub panic_mode: bool,
    /// Allow failing over after an `ambiguous` outcome of a non-idempotent
    /// action (risks executing twice).
    #[serde(default, skip_serializing_if = "is_false")]
    pub failover_after_ambiguous: bool,
    /// When a provider's app is saturated (at its `max_in_flight`, out of
    /// rate-limit tokens, or paused by a 429), move on to the next
    /// eligible provider at once instead of waiting in the app's queue.
    /// The last eligible provider always waits. Default false: runs wait
    /// for the provider the definition prefers.
    #[serde(default, skip_serializing_if = "is_false")]
    pub spillover: bool,
    /// Deadline of the whole run, ms. Default 30 000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
    /// Breaker settings of every provider, over the engine's; a provider's
    /// own `breaker` wins field by field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaker: Option<BreakerSettings>,
    /// Route by outcomes as well as weights (docs/engine.md, "Adaptive
    /// routing"). Default off: the configured weights alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adaptive: Option<AdaptiveConfig>,
    /// Rules on every provider's errors (an option's own `on` comes
    /// first; docs/engine.md, "Rules on provider errors").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on: Vec<crate::rules::ErrorRule>,
    /// Hedge slow calls of every option (each must be a safe action;
    /// an option's own `hedge` wins; docs/engine.md, "Hedging").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hedge: Option<crate::hedge::HedgeConfig>,
}

/// Ordered options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FallbackDef {
    /// Product, tag, name, description.
    #[serde(flatten)]
    pub meta: Meta,
    /// Accepted input fields.
    #[serde(default)]
    pub input: InputSchema,
    /// Options, first preferred.
    pub options: Vec<ProviderOption>,
    /// Allow failing over after an `ambiguous` outcome of a non-idempotent
    /// action (risks executing twice).
    #[serde(default, skip_serializing_if = "is_false")]
    pub failover_after_ambiguous: bool,
    /// When a provider's app is saturated (at its `max_in_flight`, out of
    /// rate-limit tokens, or paused by a 429), move on to the next
    /// eligible provider at once instead of waiting in the app's queue.
    /// The last eligible provider always waits. Default false: runs wait
    /// for the provider the definition prefers.
    #[serde(default, skip_serializing_if = "is_false")]
    pub spillover: bool,
    /// Deadline of the whole run, ms. Default 30 000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
    /// Breaker settings of every option, over the engine's; an option's
    /// own `breaker` wins field by field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaker: Option<BreakerSettings>,
    /// Demote options by outcomes (docs/engine.md, "Adaptive routing").
    /// Default off: the configured order alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adaptive: Option<AdaptiveConfig>,
    /// Rules on every provider's errors (an option's own `on` comes
    /// first; docs/engine.md, "Rules on provider errors").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on: Vec<crate::rules::ErrorRule>,
    /// Hedge slow calls of every option (each must be a safe action;
    /// an option's own `hedge` wins; docs/engine.md, "Hedging").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hedge: Option<crate::hedge::HedgeConfig>,
}

/// What a feature step runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StepKind {
    /// One app action (`app` + `action`).
    Action,
    /// A fallback (`tag`).
    Fallback,
    /// A quota (`tag`).
    Quota,
    /// Another feature (`tag`).
    Feature,
}

impl StepKind {
    /// The kind of definition a step of this kind runs (none for an
    /// action step).
    pub fn runs(self) -> Option<Kind> {
        match self {
            Self::Action => None,
            Self::Fallback => Some(Kind::Fallback),
            Self::Quota => Some(Kind::Quota),
            Self::Feature => Some(Kind::Feature),
        }
    }
}

/// One step of a feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepDef {
    /// Name later steps use in `$Sequence{name}{path}`.
    pub name: String,
    /// What it runs.
    #[serde(rename = "type")]
    pub kind: StepKind,
    /// The fallback/quota/feature tag (not for actions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// The app (actions only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// The action (actions only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// Mapping from `$Input` and `$Sequence` to the step's input. Default:
    /// the feature's whole input.
    #[serde(default = "whole_input", skip_serializing_if = "is_whole_input")]
    pub input: Value,
    /// Output mapping (actions only; `$Response`). Default: whole response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// Retries (actions only).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: u32,
    /// Attempt deadline in ms (actions only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Breaker settings of the action (actions only), over the engine's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaker: Option<BreakerSettings>,
}

impl StepDef {
    /// A step of `kind` named `name`, reading the whole feature input.
    pub fn new(name: impl Into<String>, kind: StepKind) -> Self {
        Self {
            name: name.into(),
            kind,
            tag: None,
            app: None,
            action: None,
            input: whole_input(),
            output: None,
            retries: 0,
            timeout_ms: None,
            breaker: None,
        }
    }
}

/// Steps in sequence; later steps read earlier outputs with `$Sequence`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FeatureDef {
    /// Product, tag, name, description.
    #[serde(flatten)]
    pub meta: Meta,
    /// Accepted input fields.
    #[serde(default)]
    pub input: InputSchema,
    /// The steps, run in order.
    pub steps: Vec<StepDef>,
    /// Mapping of `$Input` and `$Sequence` to the feature's output. Default:
    /// the last step's output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// Deadline of the whole run, ms. Default 30 000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
}

/// A result cache: a run that names it returns a stored successful result
/// for an identical input within `ttl_ms`, without calling providers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CacheDef {
    /// Product, tag, name, description.
    #[serde(flatten)]
    pub meta: Meta,
    /// How long a result stays fresh, ms.
    pub ttl_ms: u64,
    /// Entries kept at most (oldest evicted first). Default 10 000.
    #[serde(default = "default_entries")]
    pub max_entries: usize,
}

pub(crate) fn default_entries() -> usize {
    10_000
}
