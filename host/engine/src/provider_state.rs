//! The provider-state read model: what fetch and the providers endpoint
//! show for each provider (health, breaker, counts, admission).

use super::admission::AdmissionSnapshot;
use super::definition::{DefineError, Definition, Kind};
use super::health::{HealthKey, HealthSnapshot, HealthStatus, ProbeOutcome};
use super::locks::{Recover, RecoverRw};
use crate::breaker;
use crate::breaker::{BreakerConfig, BreakerSnapshot, BreakerState};
use crate::compiled::OptionTarget;
use crate::meters::Counts;
use crate::scorecard::ScorecardSnapshot;
use crate::switchyard::Switchyard;
use crate::trace::RunKind;
use serde::Serialize;
use std::collections::BTreeMap;

/// The state of one provider of a quota or fallback in one env, as fetch
/// and the providers endpoint show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProviderState {
    /// The provider (option) name.
    pub provider: String,
    /// Its app (action options).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub app: String,
    /// Its action (action options).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub action: String,
    /// The feature it runs (feature options).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feature: Option<String>,
    /// Its quota weight.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    /// Its healthcheck.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<String>,
    /// Unhealthy if its healthcheck failed or its breaker is open; healthy
    /// if its healthcheck passed; unknown otherwise (the reference's
    /// `provider_status`).
    pub status: HealthStatus,
    /// Whether its healthcheck passed at the last check (the reference's
    /// `last_available`); absent before the first check or without one.
    pub last_available: Option<bool>,
    /// When its healthcheck last ended (Unix ms; the reference's
    /// `last_checked`).
    pub last_checked_unix_ms: Option<u64>,
    /// When its healthcheck last succeeded (Unix ms).
    pub last_available_unix_ms: Option<u64>,
    /// How often its healthcheck runs, ms (the reference's
    /// `check_interval`).
    pub check_interval_ms: Option<u64>,
    /// The breaker routing uses for it. With a `breaker_key` template, the
    /// worst of the breakers the template has made (open first).
    pub breaker: BreakerSnapshot,
    /// Its `breaker_key` template, if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub breaker_key: Option<String>,
    /// With a template: the breakers it made, open first, at most
    /// [`TEMPLATED_BREAKERS_SHOWN`]; `breakers_total` counts all.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub breakers: Vec<BreakerSnapshot>,
    /// With a template: how many breakers it has made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub breakers_total: Option<usize>,
    /// The breaker settings in force: the engine's, the definition's and
    /// the option's, in that order.
    pub breaker_settings: BreakerConfig,
    /// Its attempt counts, and the requests its breaker blocked.
    pub counts: Counts,
    /// How it has been doing lately: success rate over what the provider
    /// caused, latency percentiles, attempts in flight, by class, over a
    /// sliding window; absent before its first attempt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scorecard: Option<ScorecardSnapshot>,
    /// The key of its scorecard and of its history (its default breaker
    /// key: `product/env/app/action`, or `product/env/feature:tag`).
    pub scorecard_key: String,
    /// An operator took it out of routing ([`Switchyard::drain`]).
    pub drained: bool,
    /// Its app's admission in this env: attempts in flight and queued,
    /// the limits, rate-limit tokens and any provider-requested pause
    /// (action options).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admission: Option<AdmissionSnapshot>,
}

/// A definition as fetch shows it with live state: each quota or fallback
/// option with its [`ProviderState`] in every env asked for (the
/// reference's fetch, whose options carry `provider_status`,
/// `last_available`, `last_checked` and `check_interval`).
#[derive(Debug, Clone, PartialEq)]
pub struct LiveDefinition {
    /// The definition as stored.
    pub definition: Definition,
    /// Env → one state per option, in the definition's order (empty for
    /// kinds without options).
    pub states: BTreeMap<String, Vec<ProviderState>>,
}

impl LiveDefinition {
    /// The definition's JSON with `states: {env: state}` added to each
    /// option (so a GET with states is not a body to PUT back as is).
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(&self.definition).expect("definitions serialize");
        let list = match self.definition.kind() {
            Kind::Quota => "providers",
            Kind::Fallback => "options",
            _ => return v,
        };
        if let Some(options) = v.get_mut(list).and_then(serde_json::Value::as_array_mut) {
            for (i, o) in options.iter_mut().enumerate() {
                let by_env: serde_json::Map<String, serde_json::Value> = self
                    .states
                    .iter()
                    .filter_map(|(env, states)| {
                        let s = serde_json::to_value(states.get(i)?).ok()?;
                        Some((env.clone(), s))
                    })
                    .collect();
                if let Some(o) = o.as_object_mut() {
                    o.insert("states".into(), by_env.into());
                }
            }
        }
        v
    }
}

impl Serialize for LiveDefinition {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(s)
    }
}

/// Breakers of one `breaker_key` template shown in provider state.
pub const TEMPLATED_BREAKERS_SHOWN: usize = 20;

/// The admission state of one app in one env.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AppAdmission {
    /// Product.
    pub product: String,
    /// Env.
    pub env: String,
    /// App tag.
    pub app: String,
    /// Its state.
    #[serde(flatten)]
    pub state: AdmissionSnapshot,
}

impl Switchyard {
    /// Every env some app of `product` is installed for.
    pub fn envs(&self, product: &str) -> Vec<String> {
        let mut envs: Vec<String> = self
            .apps(product)
            .into_iter()
            .flat_map(|a| a.envs)
            .collect();
        envs.sort();
        envs.dedup();
        envs
    }

    /// A definition with each option's live state in each of `envs` (every
    /// env of the product when `envs` is empty).
    pub fn fetch_live(
        &self,
        product: &str,
        kind: Kind,
        tag: &str,
        envs: &[String],
    ) -> Option<LiveDefinition> {
        let definition = self.fetch(product, kind, tag)?;
        Some(self.live(definition, envs))
    }

    /// Every definition of `product` (of `kind`, if given) with live state,
    /// as [`Switchyard::fetch_live`].
    pub fn fetch_all_live(
        &self,
        product: &str,
        kind: Option<Kind>,
        envs: &[String],
    ) -> Vec<LiveDefinition> {
        self.fetch_all(product, kind)
            .into_iter()
            .map(|d| self.live(d, envs))
            .collect()
    }

    fn live(&self, definition: Definition, envs: &[String]) -> LiveDefinition {
        let m = definition.meta();
        let all;
        let envs = if envs.is_empty() {
            all = self.envs(&m.product);
            &all
        } else {
            envs
        };
        let states = match definition.kind() {
            Kind::Quota | Kind::Fallback => envs
                .iter()
                .filter_map(|env| {
                    let s = self
                        .provider_states(&m.product, env, definition.kind(), &m.tag)
                        .ok()?;
                    Some((env.clone(), s))
                })
                .collect(),
            _ => BTreeMap::new(),
        };
        LiveDefinition { definition, states }
    }

    /// Admission state of every app (in every env) that has been called.
    pub fn admission_states(&self) -> Vec<AppAdmission> {
        let now = self.inner.clock.now();
        let mut v: Vec<AppAdmission> = self
            .inner
            .gates
            .locked()
            .values()
            .map(|e| AppAdmission {
                product: e.product.clone(),
                env: e.env.clone(),
                app: e.app.clone(),
                state: e.gate.snapshot(now),
            })
            .collect();
        v.sort_by(|a, b| (&a.product, &a.env, &a.app).cmp(&(&b.product, &b.env, &b.app)));
        v
    }

    /// Every scorecard's whole minutes after engine minute `after` (all
    /// the 5-minute window holds when `None`), and with `current` the
    /// minute in progress: what a server keeps as history. With `only`,
    /// that scorecard's alone (one provider's history).
    pub fn scorecard_minutes(
        &self,
        after: Option<u64>,
        current: bool,
        only: Option<&str>,
    ) -> crate::scorecard::ScorecardMinutes {
        self.inner
            .scorecards
            .minutes(after, current, only, self.inner.clock.now())
    }

    /// This replica's scorecards to share with the others (cluster mode):
    /// those with outcomes in the window, the most recently used first,
    /// slots stamped with `wall_ms`, the wall clock now.
    pub fn scorecards_to_share(&self, wall_ms: u64) -> Vec<crate::scorecard::SharedScorecard> {
        self.inner
            .scorecards
            .to_share(self.inner.clock.now(), wall_ms)
    }

    /// Take in the other replicas' scorecards (one list per replica),
    /// replacing what they shared before: routing and provider state count
    /// them with this replica's own.
    pub fn set_remote_scorecards(
        &self,
        wall_ms: u64,
        replicas: &[Vec<crate::scorecard::SharedScorecard>],
    ) {
        self.inner
            .scorecards
            .set_remote(self.inner.clock.now(), wall_ms, replicas);
    }

    /// The state of every provider of a quota or fallback in `env`.
    pub fn provider_states(
        &self,
        product: &str,
        env: &str,
        kind: Kind,
        tag: &str,
    ) -> Result<Vec<ProviderState>, DefineError> {
        let route = self
            .inner
            .registry
            .reading()
            .compiled_route(product, kind, tag)
            .ok_or_else(|| {
                DefineError::new(
                    format!("{}.{tag}", kind.plural()),
                    format!("no such {kind} in product `{product}` (provider state exists for quotas and fallbacks)"),
                )
            })?;
        let now = self.inner.clock.now();
        let gates: Vec<Option<AdmissionSnapshot>> = route
            .options
            .iter()
            .map(|o| match o.target {
                OptionTarget::Action => Some(self.inner.gate(product, env, &o.app).snapshot(now)),
                OptionTarget::Feature(_) => None,
            })
            .collect();
        let drained = self.drained(product);
        let health = self.inner.health.locked();
        let counts = self.inner.counts.locked();
        let engine = self.inner.breakers.config();
        let now = self.inner.clock.now();
        Ok(route
            .options
            .iter()
            .zip(gates)
            .map(|(o, admission)| {
                let key = crate::compiled::option_key(product, env, o);
                let (breaker, breakers, total) = match &o.breaker_template {
                    None => (self.inner.breakers.snapshot(&key), Vec::new(), None),
                    Some(t) => {
                        let origin = breaker::templated_key(product, env, t);
                        let (made, total) = self
                            .inner
                            .breakers
                            .made_by(&origin, TEMPLATED_BREAKERS_SHOWN);
                        let worst = made
                            .first()
                            .cloned()
                            .unwrap_or_else(|| self.inner.breakers.snapshot(&origin));
                        (worst, made, Some(total))
                    }
                };
                let snap = o.healthcheck.as_ref().and_then(|hc| {
                    health.snapshot(&HealthKey {
                        product: product.to_string(),
                        env: env.to_string(),
                        tag: hc.clone(),
                    })
                });
                // With a template, one open breaker closes the provider to
                // some inputs only: health says the rest.
                let status = if o.breaker_template.is_none() && breaker.state == BreakerState::Open
                {
                    HealthStatus::Unhealthy
                } else {
                    snap.as_ref().map_or(HealthStatus::Unknown, |s| s.status)
                };
                let last_available = snap.as_ref().and_then(|s| match s.status {
                    HealthStatus::Healthy => Some(true),
                    HealthStatus::Unhealthy => Some(false),
                    HealthStatus::Unknown => None,
                });
                ProviderState {
                    provider: o.provider.clone(),
                    app: o.app.clone(),
                    action: o.action.clone(),
                    feature: match &o.target {
                        OptionTarget::Feature(t) => Some(t.clone()),
                        OptionTarget::Action => None,
                    },
                    weight: (route.kind == RunKind::Quota).then_some(o.weight),
                    healthcheck: o.healthcheck.clone(),
                    status,
                    last_available,
                    last_checked_unix_ms: snap.as_ref().and_then(|s| s.last_checked_unix_ms),
                    last_available_unix_ms: snap.as_ref().and_then(|s| s.last_available_unix_ms),
                    check_interval_ms: snap.as_ref().map(|s| s.interval_ms),
                    breaker,
                    breaker_key: o.breaker_template.clone(),
                    breakers,
                    breakers_total: total,
                    breaker_settings: o.breaker.as_ref().map_or(*engine, |s| s.over(engine)),
                    counts: counts.get(&key).cloned().unwrap_or_default(),
                    scorecard: self.inner.scorecards.snapshot(&key, now),
                    scorecard_key: key.clone(),
                    drained: drained.contains(&o.provider),
                    admission,
                }
            })
            .collect())
    }

    /// Put back the outcomes of an earlier process (oldest first), e.g.
    /// from a store, so status, `last_checked` and `last_available` survive
    /// a restart. Only for a healthcheck already defined with that env;
    /// returns whether it was.
    pub fn restore_health(
        &self,
        product: &str,
        env: &str,
        tag: &str,
        history: Vec<ProbeOutcome>,
    ) -> bool {
        let key = HealthKey {
            product: product.into(),
            env: env.into(),
            tag: tag.into(),
        };
        self.inner.health.locked().restore(&key, history)
    }

    /// Every breaker used so far, by key (`product/env/app/action`), and its
    /// state.
    pub fn breaker_states(&self) -> Vec<(String, BreakerState)> {
        self.inner.breakers.states()
    }

    /// What the healthcheck `tag` of `product` knows in `env`.
    pub fn health(&self, product: &str, env: &str, tag: &str) -> Option<HealthSnapshot> {
        self.inner.health.locked().snapshot(&HealthKey {
            product: product.into(),
            env: env.into(),
            tag: tag.into(),
        })
    }
}
