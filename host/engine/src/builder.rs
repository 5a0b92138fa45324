//! The code-first API: `yard.quota().define("sms", "send")
//! .provider("twilio").weight(70).app("twilio-app").action("send-sms")...
//! .create()`, and the same for fallbacks, healthchecks, features and
//! caches. Each kind also has `fetch`, `fetch_all`, `update` (through the
//! builder), `delete`, and for runnable kinds `run` and provider state.

use super::breaker::BreakerSettings;
use super::definition::{
    CacheDef, DefineError, Definition, FallbackDef, FeatureDef, HealthcheckDef, Kind, Meta,
    OptionKind, ProviderOption, QuotaDef, StepDef, StepKind,
};
use super::provider_state::{LiveDefinition, ProviderState};
use super::run::{RunError, RunOptions, RunResult};
use super::schema::{FieldSchema, FieldType, InputSchema};
use super::switchyard::Switchyard;
use serde_json::Value;
use std::time::Duration;

macro_rules! kind_api {
    ($name:ident, $kind:expr, $what:literal) => {
        #[doc = concat!("The ", $what, " definitions of an engine.")]
        #[derive(Debug, Clone, Copy)]
        pub struct $name<'a> {
            yard: &'a Switchyard,
        }

        impl<'a> $name<'a> {
            #[doc = concat!("One ", $what, ".")]
            pub fn fetch(&self, product: &str, tag: &str) -> Option<Definition> {
                self.yard.fetch(product, $kind, tag)
            }

            #[doc = concat!("One ", $what, " with each option's live state in `envs` (every env of the product when empty).")]
            pub fn fetch_live(
                &self,
                product: &str,
                tag: &str,
                envs: &[String],
            ) -> Option<LiveDefinition> {
                self.yard.fetch_live(product, $kind, tag, envs)
            }

            #[doc = concat!("Every ", $what, " of `product`.")]
            pub fn fetch_all(&self, product: &str) -> Vec<Definition> {
                self.yard.fetch_all(product, Some($kind))
            }

            #[doc = concat!("Delete a ", $what, " (refused while in use).")]
            pub fn delete(&self, product: &str, tag: &str) -> Result<Definition, DefineError> {
                self.yard.delete(product, $kind, tag)
            }
        }
    };
}

kind_api!(Quotas, Kind::Quota, "quota");
kind_api!(Fallbacks, Kind::Fallback, "fallback");
kind_api!(Healthchecks, Kind::Healthcheck, "healthcheck");
kind_api!(Features, Kind::Feature, "feature");
kind_api!(Caches, Kind::Cache, "cache");

macro_rules! runnable {
    ($name:ident, $kind:expr) => {
        impl<'a> $name<'a> {
            /// Run it.
            pub async fn run(
                self,
                product: &str,
                env: &str,
                tag: &str,
                input: Value,
                options: RunOptions,
            ) -> Result<RunResult, RunError> {
                self.yard
                    .run($kind, product, env, tag, input, options)
                    .await
            }
        }
    };
}

runnable!(Quotas, Kind::Quota);
runnable!(Fallbacks, Kind::Fallback);
runnable!(Features, Kind::Feature);

impl<'a> Quotas<'a> {
    /// Start a quota definition.
    pub fn define(&self, product: &str, tag: &str) -> RouteBuilder<'a> {
        RouteBuilder::new(self.yard, Kind::Quota, product, tag)
    }

    /// Health, breaker and counts of each provider in `env`.
    pub fn providers(
        &self,
        product: &str,
        env: &str,
        tag: &str,
    ) -> Result<Vec<ProviderState>, DefineError> {
        self.yard.provider_states(product, env, Kind::Quota, tag)
    }
}

impl<'a> Fallbacks<'a> {
    /// Start a fallback definition.
    pub fn define(&self, product: &str, tag: &str) -> RouteBuilder<'a> {
        RouteBuilder::new(self.yard, Kind::Fallback, product, tag)
    }

    /// Health, breaker and counts of each option in `env`.
    pub fn providers(
        &self,
        product: &str,
        env: &str,
        tag: &str,
    ) -> Result<Vec<ProviderState>, DefineError> {
        self.yard.provider_states(product, env, Kind::Fallback, tag)
    }
}

impl<'a> Healthchecks<'a> {
    /// Start a healthcheck definition.
    pub fn define(&self, product: &str, tag: &str) -> HealthcheckBuilder<'a> {
        HealthcheckBuilder {
            yard: self.yard,
            def: HealthcheckDef::new(Meta::new(product, tag), "", ""),
        }
    }
}

impl<'a> Features<'a> {
    /// Start a feature definition.
    pub fn define(&self, product: &str, tag: &str) -> FeatureBuilder<'a> {
        FeatureBuilder {
            yard: self.yard,
            def: FeatureDef {
                meta: Meta::new(product, tag),
                input: InputSchema::new(),
                steps: Vec::new(),
                output: None,
                deadline_ms: None,
            },
            error: None,
        }
    }
}

impl<'a> Caches<'a> {
    /// Start a result cache definition.
    pub fn define(&self, product: &str, tag: &str) -> CacheBuilder<'a> {
        CacheBuilder {
            yard: self.yard,
            def: CacheDef {
                meta: Meta::new(product, tag),
                ttl_ms: 60_000,
                max_entries: 10_000,
            },
        }
    }
}

impl Switchyard {
    /// Quotas: weighted choice among providers.
    pub fn quota(&self) -> Quotas<'_> {
        Quotas { yard: self }
    }

    /// Fallbacks: ordered options.
    pub fn fallback(&self) -> Fallbacks<'_> {
        Fallbacks { yard: self }
    }

    /// Healthchecks: provider probes.
    pub fn healthcheck(&self) -> Healthchecks<'_> {
        Healthchecks { yard: self }
    }

    /// Features: steps in sequence.
    pub fn feature(&self) -> Features<'_> {
        Features { yard: self }
    }

    /// Result caches.
    pub fn cache(&self) -> Caches<'_> {
        Caches { yard: self }
    }
}

fn commit(
    yard: &Switchyard,
    def: Result<Definition, DefineError>,
    replace: bool,
) -> Result<(), DefineError> {
    let def = def?;
    if replace {
        yard.update(def)
    } else {
        yard.create(def)
    }
}

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
    error: Option<DefineError>,
}

impl<'a> RouteBuilder<'a> {
    fn new(yard: &'a Switchyard, kind: Kind, product: &str, tag: &str) -> Self {
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
            }),
            _ => Definition::Fallback(FallbackDef {
                meta: self.meta,
                input: self.input,
                options: self.options,
                failover_after_ambiguous: self.failover_after_ambiguous,
                spillover: self.spillover,
                deadline_ms: self.deadline_ms,
                breaker: self.breaker,
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

/// Builds a healthcheck.
#[derive(Debug)]
pub struct HealthcheckBuilder<'a> {
    yard: &'a Switchyard,
    def: HealthcheckDef,
}

impl HealthcheckBuilder<'_> {
    /// Human name.
    pub fn name(mut self, name: &str) -> Self {
        self.def.meta.name = name.into();
        self
    }

    /// What it is for.
    pub fn description(mut self, text: &str) -> Self {
        self.def.meta.description = text.into();
        self
    }

    /// The app to probe.
    pub fn app(mut self, app: &str) -> Self {
        self.def.app = app.into();
        self
    }

    /// The action to call.
    pub fn action(mut self, action: &str) -> Self {
        self.def.action = action.into();
        self
    }

    /// Run in `env` with this input.
    pub fn input(mut self, env: &str, input: Value) -> Self {
        self.def.input.insert(env.into(), input);
        self
    }

    /// Time between checks.
    pub fn interval(mut self, d: Duration) -> Self {
        self.def.interval_ms = d.as_millis() as u64;
        self
    }

    /// Retries within a check.
    pub fn retries(mut self, n: u32) -> Self {
        self.def.retries = n;
        self
    }

    /// Deadline of one probe.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.def.timeout_ms = d.as_millis() as u64;
        self
    }

    /// Spread of the interval (0.1 = ±10 %).
    pub fn jitter(mut self, fraction: f64) -> Self {
        self.def.jitter = fraction;
        self
    }

    /// Outcomes kept.
    pub fn history(mut self, n: usize) -> Self {
        self.def.history = n;
        self
    }

    /// The definition, without storing it.
    pub fn build(self) -> Definition {
        Definition::Healthcheck(self.def)
    }

    /// Check and store it as new.
    pub fn create(self) -> Result<(), DefineError> {
        let yard = self.yard;
        commit(yard, Ok(self.build()), false)
    }

    /// Check and replace the existing one.
    pub fn update(self) -> Result<(), DefineError> {
        let yard = self.yard;
        commit(yard, Ok(self.build()), true)
    }
}

/// Builds a feature. Step settings (`map_input`, `map_output`, `retries`)
/// apply to the step most recently added.
#[derive(Debug)]
pub struct FeatureBuilder<'a> {
    yard: &'a Switchyard,
    def: FeatureDef,
    error: Option<DefineError>,
}

impl FeatureBuilder<'_> {
    fn step(mut self, step: StepDef) -> Self {
        self.def.steps.push(step);
        self
    }

    fn current(&mut self, setting: &str, f: impl FnOnce(&mut StepDef)) {
        match self.def.steps.last_mut() {
            Some(s) => f(s),
            None => {
                let path = format!("features.{}", self.def.meta.tag);
                self.error.get_or_insert(DefineError::new(
                    path,
                    format!("`{setting}` was set before any step; add a step first"),
                ));
            }
        }
    }

    /// Human name.
    pub fn name(mut self, name: &str) -> Self {
        self.def.meta.name = name.into();
        self
    }

    /// What it is for.
    pub fn description(mut self, text: &str) -> Self {
        self.def.meta.description = text.into();
        self
    }

    /// A required input field.
    pub fn input(mut self, field: &str, kind: FieldType) -> Self {
        self.def
            .input
            .insert(field.into(), FieldSchema::required(kind));
        self
    }

    /// An optional input field.
    pub fn optional_input(mut self, field: &str, kind: FieldType) -> Self {
        self.def
            .input
            .insert(field.into(), FieldSchema::optional(kind));
        self
    }

    /// A step calling one app action.
    pub fn step_action(self, name: &str, app: &str, action: &str) -> Self {
        let mut s = StepDef::new(name, StepKind::Action);
        s.app = Some(app.into());
        s.action = Some(action.into());
        self.step(s)
    }

    /// A step running a fallback.
    pub fn step_fallback(self, name: &str, tag: &str) -> Self {
        self.step_tagged(name, StepKind::Fallback, tag)
    }

    /// A step running a quota.
    pub fn step_quota(self, name: &str, tag: &str) -> Self {
        self.step_tagged(name, StepKind::Quota, tag)
    }

    /// A step running another feature.
    pub fn step_feature(self, name: &str, tag: &str) -> Self {
        self.step_tagged(name, StepKind::Feature, tag)
    }

    fn step_tagged(self, name: &str, kind: StepKind, tag: &str) -> Self {
        let mut s = StepDef::new(name, kind);
        s.tag = Some(tag.into());
        self.step(s)
    }

    /// Input mapping of the current step (`$Input`, `$Sequence`).
    pub fn map_input(mut self, mapping: Value) -> Self {
        self.current("map_input", |s| s.input = mapping);
        self
    }

    /// Output mapping of the current action step (`$Response`).
    pub fn map_output(mut self, mapping: Value) -> Self {
        self.current("map_output", |s| s.output = Some(mapping));
        self
    }

    /// Retries of the current action step.
    pub fn retries(mut self, n: u32) -> Self {
        self.current("retries", |s| s.retries = n);
        self
    }

    /// Breaker settings of the current action step, over the engine's.
    pub fn step_breaker(mut self, settings: BreakerSettings) -> Self {
        self.current("step_breaker", |s| s.breaker = Some(settings));
        self
    }

    /// The feature's output mapping (`$Input`, `$Sequence`); default: the
    /// last step's output.
    pub fn output(mut self, mapping: Value) -> Self {
        self.def.output = Some(mapping);
        self
    }

    /// Deadline of a whole run.
    pub fn deadline(mut self, d: Duration) -> Self {
        self.def.deadline_ms = Some(d.as_millis() as u64);
        self
    }

    /// The definition, without storing it.
    pub fn build(self) -> Result<Definition, DefineError> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(Definition::Feature(self.def)),
        }
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

/// Builds a result cache.
#[derive(Debug)]
pub struct CacheBuilder<'a> {
    yard: &'a Switchyard,
    def: CacheDef,
}

impl CacheBuilder<'_> {
    /// How long a result stays fresh (default 60 s).
    pub fn ttl(mut self, d: Duration) -> Self {
        self.def.ttl_ms = d.as_millis() as u64;
        self
    }

    /// Entries kept at most (default 10 000).
    pub fn max_entries(mut self, n: usize) -> Self {
        self.def.max_entries = n;
        self
    }

    /// Check and store it as new.
    pub fn create(self) -> Result<(), DefineError> {
        self.yard.create(self.def)
    }

    /// Check and replace the existing one.
    pub fn update(self) -> Result<(), DefineError> {
        self.yard.update(self.def)
    }
}
