//! The route compiler: a definition checked against the apps and the other
//! definitions it names, its mappings compiled, into the forms runs read
//! ([`CompiledRoute`], [`CompiledFeature`]). Errors name the field path.

use super::breaker::BreakerSettings;
use super::definition::{
    CacheDef, DefineError, Definition, FeatureDef, HealthcheckDef, Kind, OptionKind,
    ProviderOption, StepDef, StepKind,
};
use super::retry::RetryPolicy;
use super::schema::InputSchema;
use crate::adapter::AppInfo;
use crate::mapping::{Mapping, STEP_FIELDS};
use crate::registry::{DEFAULT_RUN_DEADLINE, Registry, runs_started_by};
use crate::trace::RunKind;
use std::collections::HashMap;
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
}

/// The options' shared settings of a quota or fallback.
pub(crate) struct RouteFlags {
    pub failover_after_ambiguous: bool,
    pub spillover: bool,
    pub panic_mode: bool,
    pub deadline_ms: Option<u64>,
    pub breaker: Option<BreakerSettings>,
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

fn compile(template: &serde_json::Value, at: &str) -> Result<Mapping, DefineError> {
    Mapping::compile(template, at).map_err(|e| match e {
        crate::mapping::MappingError::Syntax { at, reason }
        | crate::mapping::MappingError::TooBig { at, reason } => DefineError::new(at, reason),
        other => DefineError::new(at, other.to_string()),
    })
}

impl Registry {
    fn app_info(&self, product: &str, app: &str, path: &str) -> Result<Vec<&AppInfo>, DefineError> {
        let entry = self.apps.get(product).and_then(|a| a.get(app)).ok_or_else(|| {
            let mut known: Vec<&str> = self
                .apps
                .get(product)
                .map(|a| a.keys().map(String::as_str).collect())
                .unwrap_or_default();
            known.sort_unstable();
            DefineError::new(
                path,
                format!(
                    "unknown app `{app}` in product `{product}` (installed: {}); install it or fix the name",
                    if known.is_empty() { "none".to_string() } else { known.join(", ") }
                ),
            )
        })?;
        Ok(entry.envs.values().map(|a| a.info()).collect())
    }

    /// Check that `app` is installed and has `action`; `at` is the path of
    /// the definition part holding both (`….options[0]`).
    fn check_action(
        &self,
        product: &str,
        app: &str,
        action: &str,
        at: &str,
    ) -> Result<(), DefineError> {
        let path = format!("{at}.action");
        for info in self.app_info(product, app, &format!("{at}.app"))? {
            if info.action(action).is_none() {
                let names: Vec<&str> = info.actions.iter().map(|a| a.name.as_str()).collect();
                return Err(DefineError::new(
                    path.clone(),
                    format!(
                        "app `{app}` has no action `{action}` (it has: {})",
                        names.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }

    pub(crate) fn compile(&self, def: &Definition) -> Result<Compiled, DefineError> {
        super::bounds::check(def)?;
        let root = def.path();
        match def {
            Definition::Healthcheck(h) => {
                self.check_action(&h.meta.product, &h.app, &h.action, &root)?;
                if !(0.0..=1.0).contains(&h.jitter) {
                    return Err(DefineError::new(
                        format!("{root}.jitter"),
                        "must be a fraction between 0 and 1 (0.1 = ±10 %)",
                    ));
                }
                if h.input.is_empty() {
                    return Err(DefineError::new(
                        format!("{root}.input"),
                        "lists no env; add an input per env the check runs in (`{\"dev\": {}}`)",
                    ));
                }
                Ok(Compiled::Healthcheck(Arc::new(h.clone())))
            }
            Definition::Quota(q) => Ok(Compiled::Route(Arc::new(self.compile_route(
                &q.meta.product,
                RunKind::Quota,
                &q.meta.tag,
                &q.input,
                &q.providers,
                &format!("{root}.providers"),
                RouteFlags {
                    failover_after_ambiguous: q.failover_after_ambiguous,
                    spillover: q.spillover,
                    panic_mode: q.panic_mode,
                    deadline_ms: q.deadline_ms,
                    breaker: q.breaker,
                },
            )?))),
            Definition::Fallback(f) => Ok(Compiled::Route(Arc::new(self.compile_route(
                &f.meta.product,
                RunKind::Fallback,
                &f.meta.tag,
                &f.input,
                &f.options,
                &format!("{root}.options"),
                RouteFlags {
                    failover_after_ambiguous: f.failover_after_ambiguous,
                    spillover: f.spillover,
                    panic_mode: false,
                    deadline_ms: f.deadline_ms,
                    breaker: f.breaker,
                },
            )?))),
            Definition::Feature(f) => {
                Ok(Compiled::Feature(Arc::new(self.compile_feature(f, &root)?)))
            }
            Definition::Cache(c) => Ok(Compiled::Cache(c.clone())),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn compile_route(
        &self,
        product: &str,
        kind: RunKind,
        tag: &str,
        schema: &InputSchema,
        options: &[ProviderOption],
        at: &str,
        flags: RouteFlags,
    ) -> Result<CompiledRoute, DefineError> {
        if options.is_empty() {
            return Err(DefineError::new(at, "is empty; add at least one provider"));
        }
        let is_quota = kind == RunKind::Quota;
        let mut compiled = Vec::with_capacity(options.len());
        for (i, o) in options.iter().enumerate() {
            let p = format!("{at}[{i}]");
            check_name(&format!("{p}.provider"), "provider", &o.provider)?;
            if options[..i].iter().any(|x| x.provider == o.provider) {
                return Err(DefineError::new(
                    format!("{p}.provider"),
                    format!(
                        "`{}` appears twice; provider names must be unique",
                        o.provider
                    ),
                ));
            }
            let mut c = self.compile_option(product, schema, o, &p, is_quota)?;
            c.breaker = match (o.breaker, flags.breaker) {
                (Some(own), Some(def)) => Some(own.over_settings(&def)),
                (own, def) => own.or(def),
            };
            compiled.push(c);
        }
        Ok(CompiledRoute {
            kind,
            tag: tag.to_string(),
            schema: schema.clone(),
            options: compiled,
            failover_after_ambiguous: flags.failover_after_ambiguous,
            spillover: flags.spillover,
            panic_mode: flags.panic_mode,
            deadline: flags
                .deadline_ms
                .map_or(DEFAULT_RUN_DEADLINE, Duration::from_millis),
        })
    }

    fn compile_option(
        &self,
        product: &str,
        schema: &InputSchema,
        o: &ProviderOption,
        p: &str,
        is_quota: bool,
    ) -> Result<CompiledOption, DefineError> {
        let target = self.compile_option_target(product, o, p)?;
        let weight = match (is_quota, o.weight) {
            (true, None) => 1,
            (true, Some(w)) if w <= 0 || w > super::bounds::MAX_WEIGHT => {
                return Err(DefineError::new(
                    format!("{p}.weight"),
                    format!(
                        "is {w}; a weight must be a whole number > 0 (70 and 30 split traffic 70/30)"
                    ),
                ));
            }
            (true, Some(w)) => w as u32,
            (false, None) => 0,
            (false, Some(_)) => {
                return Err(DefineError::new(
                    format!("{p}.weight"),
                    "a fallback tries options in order; weights belong to quotas (remove it)",
                ));
            }
        };
        let input = self.compile_input(&o.input, &format!("{p}.input"), schema, None)?;
        let output = compile(&o.output, &format!("{p}.output"))?;
        if !output.sequence_steps().is_empty() {
            return Err(DefineError::new(
                format!("{p}.output"),
                "an output mapping reads `$Response` and `$Input`, not `$Sequence`",
            ));
        }
        check_input_fields(&output, schema, &format!("{p}.output"))?;
        if o.check_interval_ms.is_some() && o.healthcheck.is_none() {
            return Err(DefineError::new(
                format!("{p}.check_interval_ms"),
                "sets how often the option's healthcheck runs, but the option names no `healthcheck`; add one or remove it",
            ));
        }
        if let Some(hc) = &o.healthcheck
            && self.fetch(product, Kind::Healthcheck, hc).is_none()
        {
            return Err(DefineError::new(
                format!("{p}.healthcheck"),
                format!("unknown healthcheck `{hc}` in product `{product}`; define it first"),
            ));
        }
        let breaker_key = match &o.breaker_key {
            None => None,
            Some(k) => {
                let m = self.compile_input(
                    &serde_json::Value::String(k.clone()),
                    &format!("{p}.breaker_key"),
                    schema,
                    None,
                )?;
                Some(m)
            }
        };
        if let Some(b) = &o.breaker {
            b.validate(&format!("{p}.breaker"))?;
        }
        let defaults = RetryPolicy::default();
        Ok(CompiledOption {
            provider: o.provider.clone(),
            target,
            app: o.app.clone(),
            action: o.action.clone(),
            input,
            output,
            policy: RetryPolicy {
                retries: o.retries,
                base_ms: o.backoff_ms.unwrap_or(defaults.base_ms),
                max_backoff_ms: o.max_backoff_ms.unwrap_or(defaults.max_backoff_ms),
            },
            timeout: o.timeout_ms.map(Duration::from_millis),
            healthcheck: o.healthcheck.clone(),
            idempotent: o.idempotent,
            breaker_key,
            breaker_template: o.breaker_key.clone(),
            breaker: o.breaker,
            weight,
        })
    }

    /// An action option names an installed app's action; a feature option
    /// names a defined feature and nothing of an action's.
    fn compile_option_target(
        &self,
        product: &str,
        o: &ProviderOption,
        p: &str,
    ) -> Result<OptionTarget, DefineError> {
        match o.kind {
            OptionKind::Action => {
                for (field, v) in [("app", &o.app), ("action", &o.action)] {
                    if v.is_empty() {
                        return Err(DefineError::new(
                            format!("{p}.{field}"),
                            format!(
                                "an action option needs `{field}` (or set `type = \"feature\"` and a `tag`)"
                            ),
                        ));
                    }
                }
                if o.tag.is_some() {
                    return Err(DefineError::new(
                        format!("{p}.tag"),
                        "an action option names `app` and `action`; `tag` is for `type = \"feature\"` options",
                    ));
                }
                self.check_action(product, &o.app, &o.action, p)?;
                Ok(OptionTarget::Action)
            }
            OptionKind::Feature => {
                let refuse = |field: &str, why: &str| {
                    Err(DefineError::new(format!("{p}.{field}"), why.to_string()))
                };
                if !o.app.is_empty() || !o.action.is_empty() {
                    return refuse(
                        if o.app.is_empty() { "action" } else { "app" },
                        "a feature option runs the feature named by `tag`; remove `app` and `action`",
                    );
                }
                if o.retries > 0 || o.backoff_ms.is_some() || o.max_backoff_ms.is_some() {
                    return refuse(
                        "retries",
                        "a feature option is not retried as a whole; set retries on the feature's steps",
                    );
                }
                let Some(tag) = &o.tag else {
                    return refuse(
                        "tag",
                        "a feature option needs the `tag` of the feature to run",
                    );
                };
                if self.fetch(product, Kind::Feature, tag).is_none() {
                    return refuse(
                        "tag",
                        &format!("unknown feature `{tag}` in product `{product}`; define it first"),
                    );
                }
                Ok(OptionTarget::Feature(tag.clone()))
            }
        }
    }

    /// Compile an input-side mapping: no `$Response`; `$Input` fields must
    /// be in the schema (when it lists any); `$Sequence` only of `steps`.
    fn compile_input(
        &self,
        template: &serde_json::Value,
        at: &str,
        schema: &InputSchema,
        steps: Option<&[String]>,
    ) -> Result<Mapping, DefineError> {
        let m = compile(template, at)?;
        if m.reads_response() {
            return Err(DefineError::new(
                at,
                "an input mapping cannot read `$Response` (there is no response yet); use `$Input{...}`",
            ));
        }
        check_input_fields(&m, schema, at)?;
        for s in m.sequence_steps() {
            match steps {
                None => {
                    return Err(DefineError::new(
                        at,
                        format!("`$Sequence{{{s}}}` is only available to feature steps"),
                    ));
                }
                Some(earlier) if !earlier.contains(&s) => {
                    return Err(DefineError::new(
                        at,
                        format!(
                            "`$Sequence{{{s}}}` names no earlier step (earlier steps: {})",
                            if earlier.is_empty() {
                                "none".to_string()
                            } else {
                                earlier.join(", ")
                            }
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        Ok(m)
    }

    /// The top-level fields a step's output always comes from, if its
    /// output mappings say (an action's `output`, every option's `output`
    /// of a fallback or quota, a feature's `output`).
    fn step_output_fields(&self, product: &str, s: &StepDef) -> Option<Vec<String>> {
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

    fn compile_feature(&self, f: &FeatureDef, root: &str) -> Result<CompiledFeature, DefineError> {
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

    fn compile_step_target(
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

fn check_input_fields(m: &Mapping, schema: &InputSchema, at: &str) -> Result<(), DefineError> {
    if schema.is_empty() {
        return Ok(());
    }
    for field in m.input_fields() {
        if !field.is_empty() && !schema.contains_key(&field) {
            let known: Vec<&str> = schema.keys().map(String::as_str).collect();
            return Err(DefineError::new(
                at,
                format!(
                    "`$Input{{{field}}}` is not an input field of this definition (fields: {})",
                    known.join(", ")
                ),
            ));
        }
    }
    Ok(())
}
