//! Operator controls: take a provider out of routing (drain) and put it
//! back (restore), and force a breaker open or closed until released.
//! Both act at once on every run; the server audits them and keeps them
//! across restarts.

use crate::breaker::{BreakerState, Force};
use crate::locks::RecoverRw;
use crate::switchyard::{Inner, Switchyard};
use std::collections::BTreeSet;

impl Inner {
    pub(crate) fn is_drained(&self, product: &str, provider: &str) -> bool {
        let d = self.drained.reading();
        !d.is_empty() && d.contains(&(product.to_string(), provider.to_string()))
    }
}

impl Switchyard {
    /// Take `provider` (an option's provider name) of `product` out of
    /// every quota and fallback, in every env, without editing a
    /// definition: runs skip it (`drained`), panic mode included. Returns
    /// whether it was not drained already.
    pub fn drain(&self, product: &str, provider: &str) -> bool {
        self.inner
            .drained
            .writing()
            .insert((product.to_string(), provider.to_string()))
    }

    /// Put a drained provider back. Returns whether it was drained.
    pub fn restore(&self, product: &str, provider: &str) -> bool {
        self.inner
            .drained
            .writing()
            .remove(&(product.to_string(), provider.to_string()))
    }

    /// The drained providers of `product`.
    pub fn drained(&self, product: &str) -> BTreeSet<String> {
        self.inner
            .drained
            .reading()
            .iter()
            .filter(|(p, _)| p == product)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Force the breaker `key` (as provider state and `/metrics` name it,
    /// `product/env/app/action`) open or closed, or release it. Returns
    /// the state it has now. In cluster mode the force reaches every
    /// replica, as a trip does.
    pub fn force_breaker(&self, key: &str, force: Force) -> BreakerState {
        let now = self.inner.clock.now();
        let state = self.inner.breakers.force(key, force, now);
        if let Some(shared) = &self.inner.shared {
            shared.force_changed(key, force);
        }
        state
    }

    /// Every forced breaker and its force, by key.
    pub fn forces(&self) -> Vec<(String, Force)> {
        self.inner.breakers.forces()
    }

    /// Whether `key` names a breaker that exists: one a run uses now, or
    /// the default key (`product/env/app/action`, `product/env/feature:tag`)
    /// of an option of a defined quota or fallback in one of the product's
    /// envs. Operators may force only these (a `breaker_key` template's
    /// keys once a run has made them).
    pub fn breaker_exists(&self, key: &str) -> bool {
        self.inner.breakers.holds(key)
            || key
                .split_once('/')
                .is_some_and(|(product, _)| self.option_breaker_keys(product).contains(key))
    }

    /// The default breaker key of every option of `product`'s quotas and
    /// fallbacks, in every env the product serves: one lookup set for
    /// checking many keys.
    pub fn option_breaker_keys(&self, product: &str) -> std::collections::HashSet<String> {
        let envs = self.envs(product);
        let registry = self.inner.registry.reading();
        envs.iter()
            .flat_map(|env| registry.option_keys(product, env).collect::<Vec<_>>())
            .collect()
    }
}
