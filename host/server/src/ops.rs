//! Operator actions: run a healthcheck now, force a breaker open or closed
//! (and release it), drain a provider and restore it. Each is checked,
//! done, kept in the store (drains and forces survive a restart), audited
//! in the store and told to the event stream.

pub use crate::access::{Actor, CHANNELS};
use crate::deployment::Deployment;
use crate::events::Event;
use crate::store::{AuditEntry, StoreError};
use std::collections::HashMap;
use switchyard_engine::{BreakerState, Force, HealthSnapshot, Kind};

/// An action that could not be done.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// What it names does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request is malformed.
    #[error("{0}")]
    Invalid(String),
    /// The store failed; nothing was done.
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub use crate::deployment::MAX_FORCES;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Deployment {
    /// Keep an audit entry and tell the event stream.
    pub(crate) fn audit(
        &self,
        actor: &Actor,
        action: &str,
        target: &str,
        detail: String,
    ) -> Result<(), OpError> {
        let entry = AuditEntry {
            id: 0,
            at_unix_ms: now_ms(),
            actor: actor.name.clone(),
            channel: actor.channel.into(),
            action: action.into(),
            target: target.into(),
            detail,
        };
        let entry = match &self.store {
            Some(s) => s.audit(&entry)?,
            None => self.audit_mem(entry),
        };
        self.hub.send(Event::Audit(entry));
        Ok(())
    }

    /// That `product` (and `env`, if given) is one of the config's: the
    /// one check of a named scope, for the API and the operator actions.
    pub fn check_scope(&self, product: &str, env: Option<&str>) -> Result<(), OpError> {
        let config = self.config();
        let products = &config.file.products;
        let Some(p) = products.get(product) else {
            let names: Vec<&String> = products.keys().collect();
            return Err(OpError::NotFound(format!(
                "no product `{product}`; products: {names:?}"
            )));
        };
        if let Some(env) = env
            && !p.envs.iter().any(|e| e == env)
        {
            return Err(OpError::NotFound(format!(
                "`{env}` is not an env of `{product}`; envs: {:?}",
                p.envs
            )));
        }
        Ok(())
    }

    /// Run healthcheck `tag` in `env` now (whatever its schedule or lease).
    pub async fn op_check_now(
        &self,
        actor: &Actor,
        product: &str,
        env: &str,
        tag: &str,
    ) -> Result<HealthSnapshot, OpError> {
        self.check_scope(product, Some(env))?;
        if self.yard.fetch(product, Kind::Healthcheck, tag).is_none() {
            return Err(OpError::NotFound(format!(
                "no healthcheck `{tag}` in product `{product}`"
            )));
        }
        let snap = self
            .yard
            .check_now(product, env, tag)
            .await
            .ok_or_else(|| {
                OpError::NotFound(format!("healthcheck `{tag}` does not run in env `{env}`"))
            })?;
        let last = snap.history.last();
        let detail = match last {
            Some(o) if o.ok => format!("passed in {:.1} ms", o.latency_ms),
            Some(o) => format!("failed: {}", o.error.clone().unwrap_or_default()),
            None => "no outcome".into(),
        };
        self.audit(
            actor,
            "check-now",
            &format!("{product}/{env}/{tag}"),
            detail,
        )?;
        Ok(snap)
    }

    /// Force the breaker `key` (`product/env/app/action`, as provider state
    /// names it), or release it.
    pub fn op_force(
        &self,
        actor: &Actor,
        key: &str,
        force: Force,
    ) -> Result<BreakerState, OpError> {
        let mut parts = key.splitn(3, '/');
        let (Some(product), Some(env), Some(rest)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(OpError::Invalid(format!(
                "breaker `{key}`: a breaker key is `product/env/app/action` (or `product/env/feature:tag`), as provider state shows it"
            )));
        };
        self.check_scope(product, Some(env))?;
        if rest.is_empty() || rest.len() > 512 {
            return Err(OpError::Invalid(format!(
                "breaker `{key}`: name the app and action after `{product}/{env}/`"
            )));
        }
        let forces = self.yard.forces();
        let forced = forces.iter().any(|(k, _)| k == key);
        if !forced && !self.yard.breaker_exists(key) {
            return Err(OpError::NotFound(format!(
                "breaker `{key}`: no such breaker; name one provider state shows (an option's `product/env/app/action`, or a key a `breaker_key` template made)"
            )));
        }
        if force != Force::Release && !forced && forces.len() >= MAX_FORCES {
            return Err(OpError::Invalid(format!(
                "breaker `{key}`: {MAX_FORCES} breakers are forced already, the most there may be; release some first (GET /v1/admin/breakers/forces lists them)"
            )));
        }
        if let Some(s) = &self.store {
            let value = (force != Force::Release).then_some(force.as_str());
            s.put_operator_state("force", product, key, value)?;
        }
        let state = self.yard.force_breaker(key, force);
        let action = match force {
            Force::Open => "force-open",
            Force::Closed => "force-closed",
            Force::Release => "release",
        };
        self.audit(
            actor,
            action,
            key,
            format!("breaker now {state:?}").to_lowercase(),
        )?;
        Ok(state)
    }

    /// Take `provider` out of `product`'s quotas and fallbacks (`drain`) or
    /// put it back.
    pub fn op_drain(
        &self,
        actor: &Actor,
        product: &str,
        provider: &str,
        drain: bool,
    ) -> Result<bool, OpError> {
        self.check_scope(product, None)?;
        let named = [Kind::Quota, Kind::Fallback].iter().any(|k| {
            self.yard.fetch_all(product, Some(*k)).iter().any(|d| {
                let v = serde_json::to_value(d).unwrap_or_default();
                ["providers", "options"].iter().any(|list| {
                    v[*list]
                        .as_array()
                        .is_some_and(|o| o.iter().any(|x| x["provider"] == provider))
                })
            })
        });
        if !named {
            return Err(OpError::NotFound(format!(
                "no quota or fallback of product `{product}` has a provider `{provider}`"
            )));
        }
        if let Some(s) = &self.store {
            s.put_operator_state("drain", product, provider, drain.then_some("drained"))?;
        }
        let changed = if drain {
            self.yard.drain(product, provider)
        } else {
            self.yard.restore(product, provider)
        };
        if let Some(c) = &self.cluster {
            c.drain_changed(product, provider, drain);
        }
        let detail = match (drain, changed) {
            (true, true) => "out of routing until restored",
            (true, false) => "was drained already",
            (false, true) => "back in routing",
            (false, false) => "was not drained",
        };
        self.audit(
            actor,
            if drain { "drain" } else { "restore" },
            &format!("{product}/{provider}"),
            detail.into(),
        )?;
        Ok(changed)
    }

    /// The newest `limit` operator actions.
    pub fn audit_log(&self, limit: usize) -> Result<Vec<AuditEntry>, OpError> {
        Ok(match &self.store {
            Some(s) => s.audit_log(limit)?,
            None => self.audit_mem_log(limit),
        })
    }

    /// Every forced breaker and its force.
    pub fn op_forces(&self) -> Vec<(String, Force)> {
        self.yard.forces()
    }

    /// Put back the drains and forces the store kept: drains of products
    /// the config has, and at most [`MAX_FORCES`] forces (rows past it, or
    /// of products no longer configured, are removed from the store and
    /// reported). Forces go to the engine without being shared again: the
    /// cluster keeps its own copy.
    pub(crate) fn restore_operator_state(&self) -> Result<Vec<String>, StoreError> {
        let Some(s) = &self.store else {
            return Ok(Vec::new());
        };
        let products = self.config().file.products.clone();
        let (mut forces, mut dropped) = (0usize, Vec::new());
        // Forces of breakers that exist first, so rows a bound did not
        // stop before (made-up keys) cannot crowd out real ones.
        let mut rows = s.operator_states()?;
        let existing: HashMap<&String, std::collections::HashSet<String>> = products
            .keys()
            .map(|p| (p, self.yard.option_breaker_keys(p)))
            .collect();
        rows.sort_by_key(|(what, product, target, _)| {
            what == "force"
                && !existing
                    .get(product)
                    .is_some_and(|keys| keys.contains(target))
        });
        for (what, product, target, value) in rows {
            let known = products.contains_key(&product);
            match (what.as_str(), Force::parse(&value)) {
                ("drain", _) if known => {
                    self.yard.drain(&product, &target);
                }
                ("force", Some(f)) if known && forces < MAX_FORCES => {
                    self.yard.apply_shared_force(&target, f);
                    forces += 1;
                }
                _ => dropped.push((what, product, target)),
            }
        }
        s.forget_operator_states(&dropped)?;
        Ok(if dropped.is_empty() {
            Vec::new()
        } else {
            vec![format!(
                "{} stored operator rows dropped (a product no longer configured, or more than {MAX_FORCES} forces), e.g. {}",
                dropped.len(),
                format!("{} {}", dropped[0].0, dropped[0].2)
            )]
        })
    }
}
