//! One provider option of a quota or fallback ([`ProviderOption`]) and
//! the serde defaults the definitions share.

use crate::breaker::BreakerSettings;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub(crate) fn whole_input() -> Value {
    Value::String("$Input{}".into())
}

pub(crate) fn whole_response() -> Value {
    Value::String("$Response{}".into())
}

pub(crate) fn is_whole_input(v: &Value) -> bool {
    v.as_str() == Some("$Input{}")
}

pub(crate) fn is_whole_response(v: &Value) -> bool {
    v.as_str() == Some("$Response{}")
}

pub(crate) fn is_zero(n: &u32) -> bool {
    *n == 0
}

pub(crate) fn is_false(b: &bool) -> bool {
    !*b
}

pub(crate) fn yes() -> bool {
    true
}

/// What an option of a quota or fallback runs.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum OptionKind {
    /// One app action (`app` + `action`).
    #[default]
    Action,
    /// A feature of the same product (`tag`): its steps run as this
    /// option, and the option fails over when the feature fails.
    Feature,
}

pub(crate) fn is_action(k: &OptionKind) -> bool {
    *k == OptionKind::Action
}

/// One provider of a quota or option of a fallback: an app's action (or a
/// feature), how the run's input maps to it and its response maps back,
/// its retries, its breaker and the healthcheck that vouches for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderOption {
    /// Name shown in traces and provider state (`twilio`); unique within
    /// the definition.
    pub provider: String,
    /// What it runs: `action` (default) or `feature`.
    #[serde(rename = "type", default, skip_serializing_if = "is_action")]
    pub kind: OptionKind,
    /// Tag of the app that serves it (action options).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub app: String,
    /// The app's action (action options).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub action: String,
    /// The feature's tag (feature options).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Mapping from the run's input (`$Input{...}`) to the action's input.
    /// Default: the whole input.
    #[serde(default = "whole_input", skip_serializing_if = "is_whole_input")]
    pub input: Value,
    /// Mapping from the action's response (`$Response{...}`, `$Input{...}`)
    /// to the run's output. Default: the whole response.
    #[serde(default = "whole_response", skip_serializing_if = "is_whole_response")]
    pub output: Value,
    /// Quota weight (> 0); not used by fallbacks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i64>,
    /// Retries on this provider after the first try.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: u32,
    /// Backoff base in ms (full jitter, doubling per retry). Default 50.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_ms: Option<u64>,
    /// Longest backoff in ms. Default 5000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_backoff_ms: Option<u64>,
    /// Deadline of one attempt in ms (bounded by the run's deadline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Tag of the healthcheck whose status decides whether this provider is
    /// eligible.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<String>,
    /// Override the action's idempotency as the adapter describes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotent: Option<bool>,
    /// Breaker key template (`"stripe/$Input{merchant}"`); default one
    /// breaker per app and action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaker_key: Option<String>,
    /// Breaker settings of this option, over its definition's `breaker`
    /// and the engine's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaker: Option<BreakerSettings>,
    /// Run this option's healthcheck at least this often, ms (the check
    /// runs at the shortest interval its definition and its options ask).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_interval_ms: Option<u64>,
    /// Rules on this provider's errors, over its definition's `on`
    /// (docs/engine.md, "Rules on provider errors").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on: Vec<crate::rules::ErrorRule>,
    /// Hedge a slow call of a safe action (docs/engine.md, "Hedging"),
    /// over its definition's `hedge`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hedge: Option<crate::hedge::HedgeConfig>,
}

impl ProviderOption {
    /// An option named `provider` calling `app`'s `action`, with defaults.
    pub fn new(
        provider: impl Into<String>,
        app: impl Into<String>,
        action: impl Into<String>,
    ) -> Self {
        Self {
            provider: provider.into(),
            kind: OptionKind::Action,
            app: app.into(),
            action: action.into(),
            tag: None,
            input: whole_input(),
            output: whole_response(),
            weight: None,
            retries: 0,
            backoff_ms: None,
            max_backoff_ms: None,
            timeout_ms: None,
            healthcheck: None,
            idempotent: None,
            breaker_key: None,
            breaker: None,
            check_interval_ms: None,
            on: Vec::new(),
            hedge: None,
        }
    }

    /// An option named `provider` running the feature `tag`.
    pub fn feature(provider: impl Into<String>, tag: impl Into<String>) -> Self {
        Self {
            kind: OptionKind::Feature,
            tag: Some(tag.into()),
            ..Self::new(provider, "", "")
        }
    }
}
