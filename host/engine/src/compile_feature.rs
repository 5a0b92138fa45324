//! The compiler's second half: features and their steps, the checks that
//! span definitions (cycles, breaker settings shared by options), and the
//! checks of mapped fields.

use super::definition::{
    DefineError, Definition, FeatureDef, Kind, OptionKind, ProviderOption, StepDef, StepKind,
};
use super::schema::InputSchema;
use crate::breaker::BreakerSettings;
use crate::compiled::{CompiledFeature, CompiledRoute, CompiledStep, StepTarget, check_name};
use crate::mapping::{Mapping, STEP_FIELDS};
use crate::registry::{DEFAULT_RUN_DEADLINE, Registry, runs_started_by};
use crate::trace::RunKind;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

impl Registry {
    /// The top-level fields a step's output always comes from, if its
    /// output mappings say (an action's `output`, every option's `output`
    /// of a fallback or quota, a feature's `output`).
    pub(crate) fn step_output_fields(&self, product: &str, s: &StepDef) -> Option<Vec<String>> {
        let keys = |v: &serde_json::Value| -> Option<Vec<String>> {
            v.as_object().map(|o| o.keys().cloned().collect())
        };
        match s.kind {
            StepKind::Action => s.output.as_ref().and_then(keys),
            StepKind::Fallback | StepKind::Quota => {
                let kind = if s.kind == StepKind::Fallback {
                    Kind::Fallback
                } else {
                    Kind::Quota
                };
                let def = self.fetch(product, kind, s.tag.as_deref()?)?;
                let mut all: Vec<String> = Vec::new();
                for o in crate::registry::options_of(def) {
                    for k in keys(&o.output)? {
                        if !all.contains(&k) {
                            all.push(k);
                        }
                    }
                }
                Some(all)
            }
            StepKind::Feature => match self.fetch(product, Kind::Feature, s.tag.as_deref()?)? {
                Definition::Feature(FeatureDef {
                    output: Some(o), ..
                }) => keys(o),
                _ => None,
            },
        }
    }

    pub(crate) fn compile_feature(
        &self,
        f: &FeatureDef,
        root: &str,
    ) -> Result<CompiledFeature, DefineError> {
        let product = &f.meta.product;
        if f.steps.is_empty() {
            return Err(DefineError::new(
                format!("{root}.steps"),
                "is empty; add at least one step",
            ));
        }
        let mut earlier: Vec<String> = Vec::new();
        // The output fields each step is known to have (`None`: a raw
        // provider response, whose shape only the provider knows).
        let mut shapes: HashMap<String, Option<Vec<String>>> = HashMap::new();
        let mut steps = Vec::with_capacity(f.steps.len());
        for (i, s) in f.steps.iter().enumerate() {
            let p = format!("{root}.steps[{i}]");
            check_name(&format!("{p}.name"), "step name", &s.name)?;
            if earlier.contains(&s.name) {
                return Err(DefineError::new(
                    format!("{p}.name"),
                    format!("`{}` appears twice; step names must be unique", s.name),
                ));
            }
            let input =
                self.compile_input(&s.input, &format!("{p}.input"), &f.input, Some(&earlier))?;
            check_sequence_fields(&input, &shapes, &format!("{p}.input"))?;
            let target = self.compile_step_target(product, s, &p)?;
            shapes.insert(s.name.clone(), self.step_output_fields(product, s));
            steps.push(CompiledStep {
                name: s.name.clone(),
                input,
                target,
            });
            earlier.push(s.name.clone());
        }
        let output = match &f.output {
            None => None,
            Some(o) => {
                let at = format!("{root}.output");
                let m = self.compile_input(o, &at, &f.input, Some(&earlier))?;
                check_sequence_fields(&m, &shapes, &at)?;
                Some(m)
            }
        };
        Ok(CompiledFeature {
            tag: f.meta.tag.clone(),
            schema: f.input.clone(),
            steps,
            output,
            deadline: f
                .deadline_ms
                .map_or(DEFAULT_RUN_DEADLINE, Duration::from_millis),
        })
    }

    pub(crate) fn compile_step_target(
        &self,
        product: &str,
        s: &StepDef,
        p: &str,
    ) -> Result<StepTarget, DefineError> {
        let only_actions = |field: &str, set: bool| -> Result<(), DefineError> {
            if set {
                Err(DefineError::new(
                    format!("{p}.{field}"),
                    "applies to `type = \"action\"` steps only; remove it",
                ))
            } else {
                Ok(())
            }
        };
        if s.kind != StepKind::Action {
            only_actions("app", s.app.is_some())?;
            only_actions("action", s.action.is_some())?;
            only_actions("output", s.output.is_some())?;
            only_actions("retries", s.retries > 0)?;
            only_actions("timeout_ms", s.timeout_ms.is_some())?;
            only_actions("breaker", s.breaker.is_some())?;
        }
        let tag = |kind: Kind| -> Result<String, DefineError> {
            let t = s.tag.clone().ok_or_else(|| {
                DefineError::new(
                    format!("{p}.tag"),
                    format!("a `{kind}` step needs the tag of the {kind} to run"),
                )
            })?;
            if self.fetch(product, kind, &t).is_none() {
                return Err(DefineError::new(
                    format!("{p}.tag"),
                    format!("unknown {kind} `{t}` in product `{product}`; define it first"),
                ));
            }
            Ok(t)
        };
        Ok(match s.kind {
            StepKind::Fallback => StepTarget::Fallback(tag(Kind::Fallback)?),
            StepKind::Quota => StepTarget::Quota(tag(Kind::Quota)?),
            StepKind::Feature => StepTarget::Feature(tag(Kind::Feature)?),
            StepKind::Action => {
                if s.tag.is_some() {
                    return Err(DefineError::new(
                        format!("{p}.tag"),
                        "an action step names `app` and `action`, not a tag",
                    ));
                }
                let need = |v: &Option<String>, field: &str| {
                    v.clone().ok_or_else(|| {
                        DefineError::new(
                            format!("{p}.{field}"),
                            format!("an action step needs `{field}`"),
                        )
                    })
                };
                let mut o = ProviderOption::new(
                    need(&s.app, "app")?,
                    need(&s.app, "app")?,
                    need(&s.action, "action")?,
                );
                if let Some(out) = &s.output {
                    o.output = out.clone();
                }
                o.retries = s.retries;
                o.timeout_ms = s.timeout_ms;
                o.breaker = s.breaker;
                // The step's input mapping already shaped the input.
                let opt = self.compile_option(product, &InputSchema::new(), &o, p, false)?;
                StepTarget::Action(Arc::new(CompiledRoute {
                    kind: RunKind::Action,
                    tag: format!("{}/{}", o.app, o.action),
                    schema: InputSchema::new(),
                    options: vec![opt],
                    failover_after_ambiguous: false,
                    spillover: false,
                    panic_mode: false,
                    deadline: DEFAULT_RUN_DEADLINE,
                    adaptive: None,
                }))
            }
        })
    }

    /// A run of `def` must never start itself again, through feature steps
    /// or feature options, however deep.
    pub(crate) fn check_cycle(&self, def: &Definition) -> Result<(), DefineError> {
        let product = &def.meta().product;
        let me = (def.kind(), def.meta().tag.clone());
        let name = |(k, t): &(Kind, String)| format!("{}.{t}", k.plural());
        let mut stack: Vec<Vec<(Kind, String)>> = runs_started_by(def)
            .into_iter()
            .map(|(k, t)| vec![me.clone(), (k, t.to_string())])
            .collect();
        let mut seen: Vec<(Kind, String)> = Vec::new();
        while let Some(chain) = stack.pop() {
            let last = chain.last().expect("a chain has a start").clone();
            if last == me {
                let what = if def.kind() == Kind::Feature {
                    "steps"
                } else {
                    "options"
                };
                return Err(DefineError::new(
                    format!("{}.{what}", def.path()),
                    format!(
                        "runs would start themselves, a cycle: {}",
                        chain.iter().map(name).collect::<Vec<_>>().join(" → ")
                    ),
                ));
            }
            if seen.contains(&last) {
                continue;
            }
            seen.push(last.clone());
            if let Some(next) = self.fetch(product, last.0, &last.1) {
                for (k, t) in runs_started_by(next) {
                    let mut c = chain.clone();
                    c.push((k, t.to_string()));
                    stack.push(c);
                }
            }
        }
        Ok(())
    }

    /// Options sharing a breaker (the same key) share its settings: two
    /// that set different ones would take turns changing it, so that is
    /// refused where it is written. Options that set none use whatever
    /// the breaker has.
    pub(crate) fn check_breaker_settings(&self, def: &Definition) -> Result<(), DefineError> {
        let mine = breaker_uses(def);
        if mine.is_empty() {
            return Ok(());
        }
        let others: Vec<(String, String, BreakerSettings)> = self
            .definitions(&def.meta().product)
            .filter(|d| !(d.kind() == def.kind() && d.meta().tag == def.meta().tag))
            .flat_map(breaker_uses)
            .collect();
        for (i, (path, id, settings)) in mine.iter().enumerate() {
            let clash = mine[..i]
                .iter()
                .chain(others.iter())
                .find(|(_, other_id, other)| other_id == id && other != settings);
            if let Some((other_path, _, other)) = clash {
                return Err(DefineError::new(
                    format!("{path}.breaker"),
                    format!(
                        "breaker `{id}` is also used by `{other_path}` with different {}; options with the same breaker key share one breaker, so give them the same settings or this one a `breaker_key` of its own",
                        settings.differences(other).join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Every breaker `d` sets settings for: the path of the option or step,
/// the breaker's name within its product and env (the `breaker_key`
/// template, `app/action`, or `feature:tag`), and the settings (the
/// definition's with the option's over them).
fn breaker_uses(d: &Definition) -> Vec<(String, String, BreakerSettings)> {
    let root = d.path();
    let (list, def_level) = match d {
        Definition::Quota(q) => ("providers", q.breaker),
        Definition::Fallback(f) => ("options", f.breaker),
        Definition::Feature(f) => {
            return f
                .steps
                .iter()
                .enumerate()
                .filter(|(_, s)| s.kind == StepKind::Action)
                .filter_map(|(i, s)| {
                    let b = s.breaker?;
                    let id = format!("{}/{}", s.app.as_deref()?, s.action.as_deref()?);
                    Some((format!("{root}.steps[{i}]"), id, b))
                })
                .collect();
        }
        _ => return Vec::new(),
    };
    crate::registry::options_of(d)
        .iter()
        .enumerate()
        .filter_map(|(i, o)| {
            let settings = match (o.breaker, def_level) {
                (Some(own), Some(dl)) => own.over_settings(&dl),
                (own, dl) => own.or(dl)?,
            };
            let id = match (&o.breaker_key, o.kind) {
                (Some(t), _) => t.clone(),
                (None, OptionKind::Feature) => format!("feature:{}", o.tag.as_deref()?),
                (None, OptionKind::Action) => format!("{}/{}", o.app, o.action),
            };
            Some((format!("{root}.{list}[{i}]"), id, settings))
        })
        .collect()
}

/// `$Sequence{step}{field}` must be able to resolve: `field` is one the
/// step's output mappings produce, or the step's `provider` or
/// `idempotency_key`. Caught here, not after a provider was called.
fn check_sequence_fields(
    m: &Mapping,
    shapes: &HashMap<String, Option<Vec<String>>>,
    at: &str,
) -> Result<(), DefineError> {
    for (step, field) in m.sequence_fields() {
        let Some(field) = field else { continue };
        if STEP_FIELDS.contains(&field.as_str()) {
            continue;
        }
        if let Some(Some(known)) = shapes.get(&step)
            && !known.contains(&field)
        {
            return Err(DefineError::new(
                at,
                format!(
                    "`$Sequence{{{step}}}{{{field}}}` can never resolve: step `{step}`'s output has {}; a step's `provider` and `idempotency_key` can be read too",
                    if known.is_empty() {
                        "no fields".to_string()
                    } else {
                        known
                            .iter()
                            .map(|k| format!("`{k}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                ),
            ));
        }
    }
    Ok(())
}
