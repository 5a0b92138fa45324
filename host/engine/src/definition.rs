//! Definitions: what a platform team declares. Healthchecks, quotas,
//! fallbacks, features and result caches, each namespaced by product and
//! named by a tag. They serialize to the same JSON/TOML shapes the config
//! file and the HTTP API use; [`crate::Switchyard`] checks every
//! reference and compiles every mapping when one is created or updated.

use super::breaker::BreakerSettings;
use super::schema::InputSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;

/// The kinds of definitions.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A provider probe.
    Healthcheck,
    /// Weighted choice among providers.
    Quota,
    /// Ordered options.
    Fallback,
    /// Steps in sequence.
    Feature,
    /// A result cache with a TTL.
    Cache,
}

impl Kind {
    /// Lower-case singular name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthcheck => "healthcheck",
            Self::Quota => "quota",
            Self::Fallback => "fallback",
            Self::Feature => "feature",
            Self::Cache => "cache",
        }
    }

    /// The kind a plural names (`fallbacks`), if any.
    pub fn from_plural(s: &str) -> Option<Self> {
        [
            Self::Healthcheck,
            Self::Quota,
            Self::Fallback,
            Self::Feature,
            Self::Cache,
        ]
        .into_iter()
        .find(|k| k.plural() == s)
    }

    /// Plural, as in config tables and error paths (`fallbacks.pay`).
    pub fn plural(self) -> &'static str {
        match self {
            Self::Healthcheck => "healthchecks",
            Self::Quota => "quotas",
            Self::Fallback => "fallbacks",
            Self::Feature => "features",
            Self::Cache => "caches",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn whole_input() -> Value {
    Value::String("$Input{}".into())
}

fn whole_response() -> Value {
    Value::String("$Response{}".into())
}

fn is_whole_input(v: &Value) -> bool {
    v.as_str() == Some("$Input{}")
}

fn is_whole_response(v: &Value) -> bool {
    v.as_str() == Some("$Response{}")
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn yes() -> bool {
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

fn is_action(k: &OptionKind) -> bool {
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

/// Fields every definition has. It is flattened into each definition and
/// refuses unknown fields for it (serde ignores `deny_unknown_fields` on a
/// struct with a flattened field, so the flattened part must do it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Meta {
    /// Namespace (`payments`). In a config file and on the HTTP API it
    /// comes from where the definition sits and may be left out.
    #[serde(default)]
    pub product: String,
    /// Identifier within the product and kind (`card-payment`). In a
    /// config file it is the table key and may be left out.
    #[serde(default)]
    pub tag: String,
    /// Human name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// What it is for.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

impl Meta {
    /// Meta with an empty name and description.
    pub fn new(product: impl Into<String>, tag: impl Into<String>) -> Self {
        Self {
            product: product.into(),
            tag: tag.into(),
            name: String::new(),
            description: String::new(),
        }
    }
}

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

fn default_interval() -> u64 {
    30_000
}
fn default_probe_timeout() -> u64 {
    5_000
}
fn default_jitter() -> f64 {
    0.1
}
fn default_history() -> usize {
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

fn default_entries() -> usize {
    10_000
}

/// Any definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Definition {
    /// A healthcheck.
    Healthcheck(HealthcheckDef),
    /// A quota.
    Quota(QuotaDef),
    /// A fallback.
    Fallback(FallbackDef),
    /// A feature.
    Feature(FeatureDef),
    /// A result cache.
    Cache(CacheDef),
}

impl Definition {
    /// Its kind.
    pub fn kind(&self) -> Kind {
        match self {
            Self::Healthcheck(_) => Kind::Healthcheck,
            Self::Quota(_) => Kind::Quota,
            Self::Fallback(_) => Kind::Fallback,
            Self::Feature(_) => Kind::Feature,
            Self::Cache(_) => Kind::Cache,
        }
    }

    /// Product, tag, name and description.
    pub fn meta(&self) -> &Meta {
        match self {
            Self::Healthcheck(d) => &d.meta,
            Self::Quota(d) => &d.meta,
            Self::Fallback(d) => &d.meta,
            Self::Feature(d) => &d.meta,
            Self::Cache(d) => &d.meta,
        }
    }

    /// Product, tag, name and description, to change.
    pub fn meta_mut(&mut self) -> &mut Meta {
        match self {
            Self::Healthcheck(d) => &mut d.meta,
            Self::Quota(d) => &mut d.meta,
            Self::Fallback(d) => &mut d.meta,
            Self::Feature(d) => &mut d.meta,
            Self::Cache(d) => &mut d.meta,
        }
    }

    /// What identifies it: product, kind, tag.
    pub fn key(&self) -> (String, Kind, String) {
        let m = self.meta();
        (m.product.clone(), self.kind(), m.tag.clone())
    }

    /// `fallbacks.pay`, the root of error paths.
    pub fn path(&self) -> String {
        format!("{}.{}", self.kind().plural(), self.meta().tag)
    }
}

impl From<HealthcheckDef> for Definition {
    fn from(d: HealthcheckDef) -> Self {
        Self::Healthcheck(d)
    }
}
impl From<QuotaDef> for Definition {
    fn from(d: QuotaDef) -> Self {
        Self::Quota(d)
    }
}
impl From<FallbackDef> for Definition {
    fn from(d: FallbackDef) -> Self {
        Self::Fallback(d)
    }
}
impl From<FeatureDef> for Definition {
    fn from(d: FeatureDef) -> Self {
        Self::Feature(d)
    }
}
impl From<CacheDef> for Definition {
    fn from(d: CacheDef) -> Self {
        Self::Cache(d)
    }
}

/// A definition that cannot be accepted: the field path and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct DefineError {
    /// `fallbacks.pay.options[1].weight`.
    pub path: String,
    /// What is wrong and what to do.
    pub reason: String,
}

impl DefineError {
    /// An error at `path`.
    pub fn new(path: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_and_refuses_unknown_fields() {
        let d: Definition = serde_json::from_value(json!({
            "kind": "fallback", "product": "payments", "tag": "pay",
            "input": {"amount": {"type": "integer"}},
            "options": [{"provider": "stripe", "app": "stripe", "action": "charge", "retries": 2}]
        }))
        .unwrap();
        assert_eq!(d.path(), "fallbacks.pay");
        let Definition::Fallback(f) = &d else {
            panic!("{d:?}")
        };
        assert_eq!(f.options[0].input, json!("$Input{}"));
        assert_eq!(f.options[0].retries, 2);
        let back: Definition = serde_json::from_value(serde_json::to_value(&d).unwrap()).unwrap();
        assert_eq!(back, d);

        let e = serde_json::from_value::<Definition>(json!({
            "kind": "fallback", "product": "p", "tag": "t", "options": [], "panic": true
        }))
        .unwrap_err();
        assert!(e.to_string().contains("unknown field `panic`"), "{e}");
        let e = serde_json::from_value::<Definition>(json!({
            "kind": "fallback", "product": "p", "tag": "t", "optoins": []
        }))
        .unwrap_err();
        assert!(e.to_string().contains("options"), "{e}");
        let e = serde_json::from_value::<Definition>(json!({
            "kind": "fallback", "product": "p", "tag": "t",
            "options": [{"provider": "a", "app": "a", "action": "x", "retry": 1}]
        }))
        .unwrap_err();
        assert!(e.to_string().contains("retry"), "{e}");
    }
}
