//! The provider-state read model: what fetch and the providers endpoint
//! show for each provider (health, breaker, counts, admission).

use super::admission::AdmissionSnapshot;
use super::breaker::{BreakerSnapshot, BreakerState};
use super::breakers;
use super::definition::{DefineError, Kind};
use super::health::{HealthKey, HealthSnapshot, HealthStatus, ProbeOutcome};
use super::locks::{Recover, RecoverRw};
use crate::accounting::Counts;
use crate::switchyard::Switchyard;
use crate::trace::RunKind;
use serde::Serialize;

/// The state of one provider of a quota or fallback, as the fetch API
/// shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProviderState {
    /// The provider (option) name.
    pub provider: String,
    /// Its app.
    pub app: String,
    /// Its action.
    pub action: String,
    /// Its quota weight.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    /// Its healthcheck.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<String>,
    /// Unhealthy if its healthcheck failed or its breaker is open; healthy
    /// if its healthcheck passed; unknown otherwise.
    pub status: HealthStatus,
    /// When its healthcheck last ended (Unix ms).
    pub last_checked_unix_ms: Option<u64>,
    /// When its healthcheck last succeeded (Unix ms).
    pub last_available_unix_ms: Option<u64>,
    /// Its breaker (the default `app/action` key).
    pub breaker: BreakerSnapshot,
    /// Its attempt counts.
    pub counts: Counts,
    /// Its app's admission in this env: attempts in flight and queued,
    /// the limits, rate-limit tokens and any provider-requested pause.
    pub admission: AdmissionSnapshot,
}

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
        let gates: Vec<AdmissionSnapshot> = route
            .options
            .iter()
            .map(|o| self.inner.gate(product, env, &o.app).snapshot(now))
            .collect();
        let health = self.inner.health.locked();
        let counts = self.inner.counts.locked();
        Ok(route
            .options
            .iter()
            .zip(gates)
            .map(|(o, admission)| {
                let key = breakers::default_key(product, env, &o.app, &o.action);
                let breaker = self.inner.breakers.snapshot(&key);
                let snap = o.healthcheck.as_ref().and_then(|hc| {
                    health.snapshot(&HealthKey {
                        product: product.to_string(),
                        env: env.to_string(),
                        tag: hc.clone(),
                    })
                });
                let status = if breaker.state == super::BreakerState::Open {
                    HealthStatus::Unhealthy
                } else {
                    snap.as_ref().map_or(HealthStatus::Unknown, |s| s.status)
                };
                ProviderState {
                    provider: o.provider.clone(),
                    app: o.app.clone(),
                    action: o.action.clone(),
                    weight: (route.kind == RunKind::Quota).then_some(o.weight),
                    healthcheck: o.healthcheck.clone(),
                    status,
                    last_checked_unix_ms: snap.as_ref().and_then(|s| s.last_checked_unix_ms),
                    last_available_unix_ms: snap.as_ref().and_then(|s| s.last_available_unix_ms),
                    breaker,
                    counts: counts.get(&key).cloned().unwrap_or_default(),
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
