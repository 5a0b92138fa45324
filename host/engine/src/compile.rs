//! The route compiler: a definition checked against the apps and the other
//! definitions it names, its mappings compiled, into the forms runs read
//! ([`CompiledRoute`], [`CompiledFeature`]). Errors name the field path.

use super::definition::{DefineError, Definition, Kind, OptionKind, ProviderOption};
use super::retry::RetryPolicy;
use super::schema::InputSchema;
use crate::adapter::AppInfo;
use crate::compiled::{
    Compiled, CompiledOption, CompiledRoute, OptionTarget, RouteFlags, check_name,
};
use crate::mapping::Mapping;
use crate::registry::{DEFAULT_RUN_DEADLINE, Registry};
use crate::trace::RunKind;
use std::sync::Arc;
use std::time::Duration;

fn compile(template: &serde_json::Value, at: &str) -> Result<Mapping, DefineError> {
    Mapping::compile(template, at).map_err(|e| match e {
        crate::mapping::MappingError::Syntax { at, reason }
        | crate::mapping::MappingError::TooBig { at, reason } => DefineError::new(at, reason),
        other => DefineError::new(at, other.to_string()),
    })
}

impl Registry {
    pub(crate) fn app_info(
        &self,
        product: &str,
        app: &str,
        path: &str,
    ) -> Result<Vec<&AppInfo>, DefineError> {
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
    pub(crate) fn check_action(
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
                    adaptive: q.adaptive,
                    on: q.on.clone(),
                    hedge: q.hedge,
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
                    adaptive: f.adaptive,
                    on: f.on.clone(),
                    hedge: f.hedge,
                },
            )?))),
            Definition::Feature(f) => {
                Ok(Compiled::Feature(Arc::new(self.compile_feature(f, &root)?)))
            }
            Definition::Cache(c) => Ok(Compiled::Cache(c.clone())),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn compile_route(
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
        let root = at.rsplit_once('.').map_or(at, |(r, _)| r);
        if let Some(a) = &flags.adaptive {
            a.validate(&format!("{root}.adaptive"))?;
        }
        crate::rules::validate(&flags.on, &format!("{root}.on"))?;
        if let Some(h) = &flags.hedge {
            h.validate(&format!("{root}.hedge"))?;
        }
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
            c.rules.extend(
                flags
                    .on
                    .iter()
                    .enumerate()
                    .map(|(j, r)| (format!("{root}.on[{j}]"), r.clone())),
            );
            c.hedge = o.hedge.or(flags.hedge);
            if let Some(h) = &c.hedge {
                let at = if o.hedge.is_some() {
                    format!("{p}.hedge")
                } else {
                    format!("{root}.hedge")
                };
                self.check_hedged(product, &c, &at, h)?;
            }
            compiled.push(c);
        }
        // A hedge to the next option races two providers: every option it
        // may race must be safe too.
        if let Some((k, h)) = compiled.iter().enumerate().find_map(|(k, c)| {
            c.hedge
                .filter(|h| h.to == crate::hedge::HedgeTo::Next)
                .map(|h| (k, h))
        }) {
            let hat = if options[k].hedge.is_some() {
                format!("{at}[{k}].hedge")
            } else {
                format!("{root}.hedge")
            };
            for c in &compiled {
                self.check_hedged(product, c, &hat, &h)?;
            }
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
            adaptive: flags.adaptive,
        })
    }

    pub(crate) fn compile_option(
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
            rules: {
                crate::rules::validate(&o.on, &format!("{p}.on"))?;
                o.on.iter()
                    .enumerate()
                    .map(|(j, r)| (format!("{p}.on[{j}]"), r.clone()))
                    .collect()
            },
            hedge: match &o.hedge {
                Some(h) => {
                    h.validate(&format!("{p}.hedge"))?;
                    Some(*h)
                }
                None => None,
            },
        })
    }

    /// Hedging sends a request more than once: only an action every env's
    /// adapter declares safe (and no override makes otherwise) may be
    /// hedged.
    fn check_hedged(
        &self,
        product: &str,
        c: &CompiledOption,
        at: &str,
        _h: &crate::hedge::HedgeConfig,
    ) -> Result<(), DefineError> {
        if !matches!(c.target, OptionTarget::Action) {
            return Err(DefineError::new(
                at,
                format!(
                    "option `{}` runs a feature; only an action's call can be hedged",
                    c.provider
                ),
            ));
        }
        for info in self.app_info(product, &c.app, at)? {
            let declared = crate::attempt::declared(c, info);
            if declared != crate::adapter::Idempotency::Safe {
                return Err(DefineError::new(
                    at,
                    format!(
                        "hedging sends the request again while the first may still run; action `{}` of app `{}` (option `{}`) is {}, so it may not be hedged. Hedge only safe actions (lookups, status checks, quotes), or remove `hedge`",
                        c.action,
                        c.app,
                        c.provider,
                        crate::attempt::idempotency_words(declared)
                    ),
                ));
            }
        }
        Ok(())
    }

    /// An action option names an installed app's action; a feature option
    /// names a defined feature and nothing of an action's.
    pub(crate) fn compile_option_target(
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
    pub(crate) fn compile_input(
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
}

pub(crate) fn check_input_fields(
    m: &Mapping,
    schema: &InputSchema,
    at: &str,
) -> Result<(), DefineError> {
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
