//! Healthchecks, features and result caches, code-first.

use super::commit::commit;
use crate::breaker::BreakerSettings;
use crate::definition::{
    CacheDef, DefineError, Definition, FeatureDef, HealthcheckDef, StepDef, StepKind,
};
use crate::schema::{FieldSchema, FieldType};
use crate::switchyard::Switchyard;
use serde_json::Value;
use std::time::Duration;

/// Builds a healthcheck.
#[derive(Debug)]
pub struct HealthcheckBuilder<'a> {
    pub(crate) yard: &'a Switchyard,
    pub(crate) def: HealthcheckDef,
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
    pub(crate) yard: &'a Switchyard,
    pub(crate) def: FeatureDef,
    pub(crate) error: Option<DefineError>,
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
    pub(crate) yard: &'a Switchyard,
    pub(crate) def: CacheDef,
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
