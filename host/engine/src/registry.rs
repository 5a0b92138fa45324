//! Definitions and apps, in memory: create / fetch / fetch-all / update /
//! delete, with every reference checked. Each accepted definition is
//! compiled (`compile.rs`) before it is stored; runs read the compiled
//! forms only.

use super::definition::{
    CacheDef, DefineError, Definition, FallbackDef, HealthcheckDef, Kind, OptionKind,
    ProviderOption, QuotaDef,
};
use crate::adapter::{Adapter, AppInfo};
use crate::compiled::{Compiled, CompiledFeature, CompiledRoute, check_name};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

/// Default deadline of a whole run.
pub const DEFAULT_RUN_DEADLINE: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
struct Entry {
    def: Definition,
    compiled: Compiled,
}

/// An installed app: its instances per env.
#[derive(Clone)]
pub(crate) struct AppEntry {
    pub envs: BTreeMap<String, Arc<dyn Adapter>>,
}

/// An app as `Switchyard::apps` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct AppSummary {
    /// The app's tag.
    pub tag: String,
    /// Envs it is installed for.
    pub envs: Vec<String>,
    /// Its self-description (from one of its envs).
    pub info: AppInfo,
}

/// Everything defined, per product. Cloned only to apply a batch of
/// changes all or none (the clone shares every compiled form and adapter).
#[derive(Default, Clone)]
pub(crate) struct Registry {
    pub(crate) apps: HashMap<String, HashMap<String, AppEntry>>,
    /// product → kind → tag → definition (nested so lookups need no
    /// allocation).
    defs: HashMap<String, HashMap<Kind, HashMap<String, Entry>>>,
}

impl Registry {
    pub fn install_app(&mut self, product: &str, tag: &str, env: &str, adapter: Arc<dyn Adapter>) {
        self.apps
            .entry(product.to_string())
            .or_default()
            .entry(tag.to_string())
            .or_insert_with(|| AppEntry {
                envs: BTreeMap::new(),
            })
            .envs
            .insert(env.to_string(), adapter);
    }

    pub fn remove_app(&mut self, product: &str, tag: &str) -> Result<(), DefineError> {
        let users = self.referrers(product, |d| app_refs(d).contains(&tag));
        if !users.is_empty() {
            return Err(DefineError::new(
                format!("apps.{tag}"),
                format!(
                    "is used by {}; delete or change those first",
                    users.join(", ")
                ),
            ));
        }
        self.apps
            .get_mut(product)
            .and_then(|a| a.remove(tag))
            .map(|_| ())
            .ok_or_else(|| {
                DefineError::new(
                    format!("apps.{tag}"),
                    format!("no such app in product `{product}`"),
                )
            })
    }

    /// Uninstall one env of an app; the app goes with its last env, which
    /// is refused while a definition uses it.
    pub fn remove_app_env(
        &mut self,
        product: &str,
        tag: &str,
        env: &str,
    ) -> Result<(), DefineError> {
        let last = self
            .apps
            .get(product)
            .and_then(|a| a.get(tag))
            .is_some_and(|e| e.envs.len() == 1 && e.envs.contains_key(env));
        if last {
            return self.remove_app(product, tag);
        }
        if let Some(e) = self.apps.get_mut(product).and_then(|a| a.get_mut(tag)) {
            e.envs.remove(env);
        }
        Ok(())
    }

    pub fn adapter(&self, product: &str, app: &str, env: &str) -> Option<&Arc<dyn Adapter>> {
        self.apps.get(product)?.get(app)?.envs.get(env)
    }

    pub fn apps(&self, product: &str) -> Vec<AppSummary> {
        let Some(apps) = self.apps.get(product) else {
            return Vec::new();
        };
        let mut out: Vec<AppSummary> = apps
            .iter()
            .filter_map(|(tag, e)| {
                let info = e.envs.values().next()?.info().clone();
                Some(AppSummary {
                    tag: tag.clone(),
                    envs: e.envs.keys().cloned().collect(),
                    info,
                })
            })
            .collect();
        out.sort_by(|a, b| a.tag.cmp(&b.tag));
        out
    }

    pub fn compiled_route(
        &self,
        product: &str,
        kind: Kind,
        tag: &str,
    ) -> Option<Arc<CompiledRoute>> {
        match &self.entry(product, kind, tag)?.compiled {
            Compiled::Route(r) => Some(r.clone()),
            _ => None,
        }
    }

    /// The default breaker key of every option of `product`'s quotas and
    /// fallbacks in `env`.
    pub fn option_keys<'a>(
        &'a self,
        product: &'a str,
        env: &'a str,
    ) -> impl Iterator<Item = String> + 'a {
        self.defs
            .get(product)
            .into_iter()
            .flat_map(|kinds| kinds.values())
            .flat_map(|tags| tags.values())
            .filter_map(|e| match &e.compiled {
                Compiled::Route(r) => Some(r.clone()),
                _ => None,
            })
            .flat_map(move |r| {
                r.options
                    .iter()
                    .map(|o| crate::compiled::option_key(product, env, o))
                    .collect::<Vec<_>>()
            })
    }

    pub fn compiled_feature(&self, product: &str, tag: &str) -> Option<Arc<CompiledFeature>> {
        match &self.entry(product, Kind::Feature, tag)?.compiled {
            Compiled::Feature(f) => Some(f.clone()),
            _ => None,
        }
    }

    pub fn healthcheck(&self, product: &str, tag: &str) -> Option<Arc<HealthcheckDef>> {
        match &self.entry(product, Kind::Healthcheck, tag)?.compiled {
            Compiled::Healthcheck(h) => Some(h.clone()),
            _ => None,
        }
    }

    pub fn cache(&self, product: &str, tag: &str) -> Option<&CacheDef> {
        match &self.entry(product, Kind::Cache, tag)?.compiled {
            Compiled::Cache(c) => Some(c),
            _ => None,
        }
    }

    fn entry(&self, product: &str, kind: Kind, tag: &str) -> Option<&Entry> {
        self.defs.get(product)?.get(&kind)?.get(tag)
    }

    pub fn fetch(&self, product: &str, kind: Kind, tag: &str) -> Option<&Definition> {
        self.entry(product, kind, tag).map(|e| &e.def)
    }

    pub fn fetch_all(&self, product: &str, kind: Option<Kind>) -> Vec<Definition> {
        let Some(m) = self.defs.get(product) else {
            return Vec::new();
        };
        let mut out: Vec<&Entry> = m
            .iter()
            .filter(|(k, _)| kind.is_none_or(|want| **k == want))
            .flat_map(|(_, by_tag)| by_tag.values())
            .collect();
        out.sort_by(|a, b| {
            (a.def.kind(), &a.def.meta().tag).cmp(&(b.def.kind(), &b.def.meta().tag))
        });
        out.into_iter().map(|e| e.def.clone()).collect()
    }

    /// Validate and store; `replace` decides between create and update.
    pub fn put(&mut self, def: Definition, replace: bool) -> Result<(), DefineError> {
        let root = def.path();
        let meta = def.meta();
        check_name(&format!("{root}.product"), "product", &meta.product)?;
        check_name(&format!("{root}.tag"), "tag", &meta.tag)?;
        let exists = self.fetch(&meta.product, def.kind(), &meta.tag).is_some();
        match (exists, replace) {
            (true, false) => {
                return Err(DefineError::new(
                    root,
                    format!(
                        "already exists in product `{}`; update it instead of creating it",
                        meta.product
                    ),
                ));
            }
            (false, true) => {
                return Err(DefineError::new(
                    root,
                    format!(
                        "does not exist in product `{}`; create it first",
                        meta.product
                    ),
                ));
            }
            _ => {}
        }
        let compiled = self.compile(&def)?;
        self.check_cycle(&def)?;
        self.check_breaker_settings(&def)?;
        self.defs
            .entry(def.meta().product.clone())
            .or_default()
            .entry(def.kind())
            .or_default()
            .insert(def.meta().tag.clone(), Entry { def, compiled });
        Ok(())
    }

    pub fn delete(
        &mut self,
        product: &str,
        kind: Kind,
        tag: &str,
    ) -> Result<Definition, DefineError> {
        let path = format!("{}.{tag}", kind.plural());
        if self.fetch(product, kind, tag).is_none() {
            return Err(DefineError::new(
                path,
                format!("no such {kind} in product `{product}`"),
            ));
        }
        let users = self.referrers(product, |d| def_refs(d).contains(&(kind, tag)));
        if !users.is_empty() {
            return Err(DefineError::new(
                path,
                format!(
                    "is used by {}; delete or change those first",
                    users.join(", ")
                ),
            ));
        }
        let e = self
            .defs
            .get_mut(product)
            .and_then(|m| m.get_mut(&kind))
            .and_then(|m| m.remove(tag))
            .expect("checked above");
        Ok(e.def)
    }

    fn referrers(&self, product: &str, uses: impl Fn(&Definition) -> bool) -> Vec<String> {
        let mut out: Vec<String> = self
            .definitions(product)
            .filter(|d| uses(d))
            .map(Definition::path)
            .collect();
        out.sort();
        out
    }
}

impl Registry {
    /// Every definition of `product`, unordered, without copying.
    pub fn definitions(&self, product: &str) -> impl Iterator<Item = &Definition> {
        self.defs
            .get(product)
            .into_iter()
            .flat_map(|m| m.values())
            .flat_map(|m| m.values())
            .map(|e| &e.def)
    }

    /// How often the healthcheck `tag` runs: the shortest of its own
    /// `interval_ms` and every option's `check_interval_ms` that names it.
    pub fn check_interval(&self, product: &str, tag: &str, own: u64) -> u64 {
        self.definitions(product)
            .flat_map(options_of)
            .filter(|o| o.healthcheck.as_deref() == Some(tag))
            .filter_map(|o| o.check_interval_ms)
            .fold(own, u64::min)
    }
}

/// The healthchecks `d`'s options name.
pub(crate) fn checks_named_by(d: &Definition) -> Vec<String> {
    options_of(d)
        .iter()
        .filter_map(|o| o.healthcheck.clone())
        .collect()
}

pub(crate) fn options_of(d: &Definition) -> &[ProviderOption] {
    match d {
        Definition::Quota(QuotaDef { providers, .. }) => providers,
        Definition::Fallback(FallbackDef { options, .. }) => options,
        _ => &[],
    }
}

fn app_refs(d: &Definition) -> Vec<&str> {
    let mut out: Vec<&str> = options_of(d).iter().map(|o| o.app.as_str()).collect();
    match d {
        Definition::Healthcheck(h) => out.push(&h.app),
        Definition::Feature(f) => out.extend(f.steps.iter().filter_map(|s| s.app.as_deref())),
        _ => {}
    }
    out
}

fn def_refs(d: &Definition) -> Vec<(Kind, &str)> {
    let mut out: Vec<(Kind, &str)> = options_of(d)
        .iter()
        .filter_map(|o| o.healthcheck.as_deref())
        .map(|h| (Kind::Healthcheck, h))
        .collect();
    out.extend(runs_started_by(d));
    out
}

/// The runs `d` starts: its feature options' features and its feature
/// steps' fallbacks, quotas and features.
pub(crate) fn runs_started_by(d: &Definition) -> Vec<(Kind, &str)> {
    let mut out: Vec<(Kind, &str)> = options_of(d)
        .iter()
        .filter(|o| o.kind == OptionKind::Feature)
        .filter_map(|o| o.tag.as_deref())
        .map(|t| (Kind::Feature, t))
        .collect();
    if let Definition::Feature(f) = d {
        out.extend(
            f.steps
                .iter()
                .filter_map(|s| Some((s.kind.runs()?, s.tag.as_deref()?))),
        );
    }
    out
}
