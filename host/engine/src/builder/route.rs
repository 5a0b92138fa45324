//! Quotas and fallbacks, code-first ([`RouteBuilder`]).

use super::commit::commit;
use crate::breaker::BreakerSettings;
use crate::definition::{
    DefineError, Definition, FallbackDef, Kind, Meta, OptionKind, ProviderOption, QuotaDef,
};
use crate::schema::{FieldSchema, FieldType, InputSchema};
use crate::switchyard::Switchyard;
use serde_json::Value;
use std::time::Duration;

/// Builds a quota or a fallback. Provider settings (`weight`, `app`,
/// `retries`...) apply to the provider most recently added with
/// [`RouteBuilder::provider`].
#[derive(Debug)]
pub struct RouteBuilder<'a> {
    yard: &'a Switchyard,
    kind: Kind,
    meta: Meta,
    input: InputSchema,
    options: Vec<ProviderOption>,
    failover_after_ambiguous: bool,
    spillover: bool,
    panic_mode: bool,
    deadline_ms: Option<u64>,
    breaker: Option<BreakerSettings>,
    adaptive: Option<crate::adaptive::AdaptiveConfig>,
    on: Vec<crate::rules::ErrorRule>,
    hedge: Option<crate::hedge::HedgeConfig>,
    error: Option<DefineError>,
}

impl<'a> RouteBuilder<'a> {
    pub(crate) fn new(yard: &'a Switchyard, kind: Kind, product: &str, tag: &str) -> Self {
        Self {
            yard,
            kind,
            meta: Meta::new(product, tag),
            input: InputSchema::new(),
            options: Vec::new(),
            failover_after_ambiguous: false,
            spillover: false,
            panic_mode: true,
            deadline_ms: None,
            breaker: None,
            adaptive: None,
            on: Vec::new(),
            hedge: None,
            error: None,
        }
    }

    fn current(&mut self, setting: &str, f: impl FnOnce(&mut ProviderOption)) -> &mut Self {
        match self.options.last_mut() {
            Some(o) => f(o),
            None => {
                let path = format!("{}.{}", self.kind.plural(), self.meta.tag);
                self.error.get_or_insert(DefineError::new(
                    path,
                    format!(
                        "`{setting}` was set before any `provider(...)`; add the provider first"
                    ),
                ));
            }
        }
        self
    }

    /// Human name.
    pub fn name(mut self, name: &str) -> Self {
        self.meta.name = name.into();
        self
    }

    /// What it is for.
    pub fn description(mut self, text: &str) -> Self {
        self.meta.description = text.into();
        self
    }

    /// A required input field.
    pub fn input(mut self, field: &str, kind: FieldType) -> Self {
        self.input.insert(field.into(), FieldSchema::required(kind));
        self
    }

    /// An optional input field.
    pub fn optional_input(mut self, field: &str, kind: FieldType) -> Self {
        self.input.insert(field.into(), FieldSchema::optional(kind));
        self
    }

    /// Add a provider (an option, for fallbacks) named `name`; its app
    /// defaults to the same name.
    pub fn provider(mut self, name: &str) -> Self {
        self.options.push(ProviderOption::new(name, name, ""));
        self
    }

    /// The current provider's app.
    pub fn app(mut self, app: &str) -> Self {
        self.current("app", |o| o.app = app.into());
        self
    }

    /// The current provider's action.
    pub fn action(mut self, action: &str) -> Self {
        self.current("action", |o| o.action = action.into());
        self
    }

    /// The current provider runs the feature `tag` instead of an app's
    /// action.
    pub fn feature(mut self, tag: &str) -> Self {
        self.current("feature", |o| {
            o.kind = OptionKind::Feature;
            o.tag = Some(tag.into());
            o.app.clear();
            o.action.clear();
        });
        self
    }

    /// Route by outcomes as well as weights or order (docs/engine.md,
    /// "Adaptive routing").
    pub fn adaptive(mut self, config: crate::adaptive::AdaptiveConfig) -> Self {
        self.adaptive = Some(config);
        self
    }

    /// A rule on every provider's errors (after each provider's own).
    pub fn on(mut self, rule: crate::rules::ErrorRule) -> Self {
        self.on.push(rule);
        self
    }

    /// A rule on the current provider's errors (before the definition's).
    pub fn provider_on(mut self, rule: crate::rules::ErrorRule) -> Self {
        self.current("provider_on", |o| o.on.push(rule));
        self
    }

    /// Hedge slow calls of every provider (each must be a safe action).
    pub fn hedge(mut self, config: crate::hedge::HedgeConfig) -> Self {
        self.hedge = Some(config);
        self
    }

    /// Hedge slow calls of the current provider (a safe action).
    pub fn provider_hedge(mut self, config: crate::hedge::HedgeConfig) -> Self {
        self.current("provider_hedge", |o| o.hedge = Some(config));
        self
    }

    /// Breaker settings of the current provider, over the definition's.
    pub fn provider_breaker(mut self, settings: BreakerSettings) -> Self {
        self.current("provider_breaker", |o| o.breaker = Some(settings));
        self
    }

    /// Run the current provider's healthcheck at least this often.
    pub fn check_interval(mut self, every: Duration) -> Self {
        self.current("check_interval", |o| {
            o.check_interval_ms = Some(every.as_millis() as u64)
        });
        self
    }

    /// Breaker settings of every provider, over the engine's.
    pub fn breaker(mut self, settings: BreakerSettings) -> Self {
        self.breaker = Some(settings);
        self
    }

    /// The current provider's weight (quotas).
    pub fn weight(mut self, weight: i64) -> Self {
        self.current("weight", |o| o.weight = Some(weight));
        self
    }

    /// The current provider's healthcheck.
    pub fn healthcheck(mut self, tag: &str) -> Self {
        self.current("healthcheck", |o| o.healthcheck = Some(tag.into()));
        self
    }

    /// Retries on the current provider.
    pub fn retries(mut self, retries: u32) -> Self {
        self.current("retries", |o| o.retries = retries);
        self
    }

    /// Backoff base and ceiling of the current provider's retries.
    pub fn backoff(mut self, base: Duration, max: Duration) -> Self {
        self.current("backoff", |o| {
            o.backoff_ms = Some(base.as_millis() as u64);
            o.max_backoff_ms = Some(max.as_millis() as u64);
        });
        self
    }

    /// Deadline of one attempt on the current provider.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.current("timeout", |o| {
            o.timeout_ms = Some(timeout.as_millis() as u64)
        });
        self
    }

    /// Input mapping of the current provider.
    pub fn map_input(mut self, mapping: Value) -> Self {
        self.current("map_input", |o| o.input = mapping);
        self
    }

    /// Output mapping of the current provider.
    pub fn map_output(mut self, mapping: Value) -> Self {
        self.current("map_output", |o| o.output = mapping);
        self
    }

    /// Override whether the current provider's action is idempotent.
    pub fn idempotent(mut self, idempotent: bool) -> Self {
        self.current("idempotent", |o| o.idempotent = Some(idempotent));
        self
    }

    /// Breaker key template of the current provider (`"$Input{merchant}"`).
    pub fn breaker_key(mut self, template: &str) -> Self {
        self.current("breaker_key", |o| o.breaker_key = Some(template.into()));
        self
    }

    /// Allow failover after an ambiguous outcome of a non-idempotent action.
    pub fn failover_after_ambiguous(mut self, allow: bool) -> Self {
        self.failover_after_ambiguous = allow;
        self
    }

    /// Move on to the next eligible provider when a provider's app is
    /// saturated, instead of waiting in its admission queue (default off).
    pub fn spillover(mut self, on: bool) -> Self {
        self.spillover = on;
        self
    }

    /// Quotas: try every provider when none is eligible (default on).
    pub fn panic_mode(mut self, on: bool) -> Self {
        self.panic_mode = on;
        self
    }

    /// Deadline of a whole run.
    pub fn deadline(mut self, d: Duration) -> Self {
        self.deadline_ms = Some(d.as_millis() as u64);
        self
    }

    /// The definition, without storing it.
    pub fn build(self) -> Result<Definition, DefineError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        Ok(match self.kind {
            Kind::Quota => Definition::Quota(QuotaDef {
                meta: self.meta,
                input: self.input,
                providers: self.options,
                panic_mode: self.panic_mode,
                failover_after_ambiguous: self.failover_after_ambiguous,
                spillover: self.spillover,
                deadline_ms: self.deadline_ms,
                breaker: self.breaker,
                adaptive: self.adaptive,
                on: self.on,
                hedge: self.hedge,
            }),
            _ => Definition::Fallback(FallbackDef {
                meta: self.meta,
                input: self.input,
                options: self.options,
                failover_after_ambiguous: self.failover_after_ambiguous,
                spillover: self.spillover,
                deadline_ms: self.deadline_ms,
                breaker: self.breaker,
                adaptive: self.adaptive,
                on: self.on,
                hedge: self.hedge,
            }),
        })
    }

    /// Check and store it as new.
    pub fn create(self) -> Result<(), DefineError> {
        let yard = self.yard;
        commit(yard, self.build(), false)
    }

    /// Check and replace the existing one.
    pub fn update(self) -> Result<(), DefineError> {
        let yard = self.yard;
        commit(yard, self.build(), true)
    }
}
