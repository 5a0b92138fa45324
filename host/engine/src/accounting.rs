//! What the engine counts and meters per app: retry budgets, admission
//! gates, attempt counts, quota rotation state and observer events.

use super::admission::{AdmissionConfig, Gate, OverloadReason};
use super::budget::{BudgetConfig, BudgetToken, RetryBudget};
use super::locks::{Recover, RecoverRw};
use super::observer::AttemptEvent;
use super::retry::RetryPolicy;
use super::weighted::SmoothWeighted;
use crate::adapter::AttemptError;
use crate::compiled::CompiledRoute;
use crate::meters::GateEntry;
use crate::switchyard::Inner;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

impl Inner {
    /// The key of an app in a product and env, for its retry budget and
    /// its admission gate.
    pub(crate) fn app_key(product: &str, env: &str, app: &str) -> String {
        format!("{product}/{env}/{app}")
    }

    /// `f` of an app's key, written into this thread's buffer: a lookup
    /// of a known app allocates nothing (every attempt makes a few). `f`
    /// must not call this again.
    fn with_app_key<R>(product: &str, env: &str, app: &str, f: impl FnOnce(&str) -> R) -> R {
        thread_local! {
            static KEY: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
        }
        KEY.with_borrow_mut(|key| {
            key.clear();
            for (i, part) in [product, env, app].into_iter().enumerate() {
                if i > 0 {
                    key.push('/');
                }
                key.push_str(part);
            }
            let r = f(key);
            // A very long key is not kept for the next lookup.
            if key.capacity() > 1024 {
                *key = String::new();
            }
            r
        })
    }

    /// The app's retry budget, made on first use.
    fn budget_of<R>(
        &self,
        product: &str,
        env: &str,
        app: &str,
        f: impl FnOnce(&mut RetryBudget, std::time::Instant) -> R,
    ) -> R {
        let now = self.clock.now();
        Self::with_app_key(product, env, app, |key| {
            let mut b = self.budgets.locked();
            let budget = match b.get_mut(key) {
                Some(budget) => budget,
                None => b
                    .entry(key.to_string())
                    .or_insert_with(|| RetryBudget::new(self.budget_part(), now)),
            };
            f(budget, now)
        })
    }

    /// This replica's part of the engine-wide retry budget: with `n`
    /// replicas sharing the traffic, the floor of retries every window
    /// allows is split between them (the ratio part already scales with
    /// each one's own first attempts), so the cluster's total stays the
    /// configured one.
    pub(crate) fn budget_part(&self) -> BudgetConfig {
        let n = self.replicas.load(Ordering::Relaxed).max(1);
        BudgetConfig {
            min_retries: self.budget_config.min_retries.div_ceil(n),
            ..self.budget_config
        }
    }

    /// This replica's part of an app's admission settings: with `n`
    /// replicas, the rate limit and its burst are split between them; the
    /// in-flight limit and queue stay per replica (they guard this
    /// replica's own instances).
    pub(crate) fn admission_part(&self, config: AdmissionConfig) -> AdmissionConfig {
        let n = self.replicas.load(Ordering::Relaxed).max(1);
        if n == 1 {
            return config;
        }
        let rate = config.rate_per_sec.map(|r| r / f64::from(n));
        AdmissionConfig {
            rate_per_sec: rate,
            burst: config
                .rate_per_sec
                .map(|_| (config.capacity() / f64::from(n)).ceil().max(1.0) as u32),
            ..config
        }
    }

    pub fn deposit_budget(&self, product: &str, env: &str, app: &str) {
        self.budget_of(product, env, app, |b, now| b.deposit(now));
    }

    pub fn withdraw_budget(&self, product: &str, env: &str, app: &str) -> Option<BudgetToken> {
        self.budget_of(product, env, app, |b, now| b.try_withdraw(now))
    }

    /// Give back a retry's token when the retry was not made.
    pub fn refund_budget(&self, product: &str, env: &str, app: &str, token: Option<BudgetToken>) {
        let Some(token) = token else { return };
        Self::with_app_key(product, env, app, |key| {
            if let Some(b) = self.budgets.locked().get_mut(key) {
                b.refund(token);
            }
        });
    }

    pub(crate) fn admission_config(&self, product: &str, app: &str) -> AdmissionConfig {
        self.admission
            .reading()
            .get(&(product.to_string(), app.to_string()))
            .copied()
            .unwrap_or(self.admission_default)
    }

    /// The admission gate of `app` in `product`/`env`, made on first use.
    pub fn gate(&self, product: &str, env: &str, app: &str) -> Arc<Gate> {
        let known = Self::with_app_key(product, env, app, |key| {
            self.gates.locked().get(key).map(|e| e.gate.clone())
        });
        if let Some(gate) = known {
            return gate;
        }
        let key = Self::app_key(product, env, app);
        let config = self.admission_part(self.admission_config(product, app));
        let now = self.clock.now();
        self.gates
            .locked()
            .entry(key)
            .or_insert_with(|| GateEntry {
                product: product.to_string(),
                env: env.to_string(),
                app: app.to_string(),
                gate: Arc::new(Gate::new(config, now)),
            })
            .gate
            .clone()
    }

    pub fn observe_admitted(&self, product: &str, env: &str, app: &str, waited: Duration) {
        for o in &self.observers {
            o.admitted(product, env, app, waited);
        }
    }

    pub fn observe_overload(&self, product: &str, env: &str, app: &str, reason: &OverloadReason) {
        for o in &self.observers {
            o.overloaded(product, env, app, reason);
        }
    }

    pub fn backoff(
        &self,
        policy: &RetryPolicy,
        retry: u32,
        retry_after: Option<Duration>,
    ) -> Duration {
        policy.backoff(retry, retry_after, &mut self.jitter.locked())
    }

    pub fn observe_hedge(
        &self,
        product: &str,
        env: &str,
        app: &str,
        record: &crate::hedge::HedgeRecord,
    ) {
        if record.sent == 0 && record.withheld.is_none() {
            return;
        }
        for o in &self.observers {
            o.hedged(product, env, app, record);
        }
    }

    pub fn observe_attempt(&self, event: &AttemptEvent<'_>) {
        for o in &self.observers {
            o.attempt(event);
        }
    }

    pub fn budget_rejected(&self, product: &str, env: &str, app: &str) {
        for o in &self.observers {
            o.budget_rejected(product, env, app);
        }
    }

    pub fn count(&self, key: &str, result: Result<(), &AttemptError>) {
        let mut counts = self.counts.locked();
        let c = match counts.get_mut(key) {
            Some(c) => c,
            None => counts.entry(key.to_string()).or_default(),
        };
        c.attempts += 1;
        match result {
            Ok(()) => c.successes += 1,
            Err(e) => *c.failures.entry(e.class.as_str().to_string()).or_default() += 1,
        }
    }

    /// A request under `key` (`product/env/target`) that its open breaker
    /// blocked; `target` is `app/action` or `feature:tag`.
    pub fn count_blocked(&self, key: &str, product: &str, env: &str, target: &str) {
        {
            let mut counts = self.counts.locked();
            let c = match counts.get_mut(key) {
                Some(c) => c,
                None => counts.entry(key.to_string()).or_default(),
            };
            c.blocked += 1;
        }
        for o in &self.observers {
            o.blocked(product, env, target);
        }
    }

    pub fn with_quota_state<T>(
        &self,
        product: &str,
        env: &str,
        tag: &str,
        route: &CompiledRoute,
        f: impl FnOnce(&mut SmoothWeighted) -> T,
    ) -> T {
        let mut states = self.quota_state.locked();
        let sw = states
            .entry((product.to_string(), env.to_string(), tag.to_string()))
            .or_insert_with(|| {
                SmoothWeighted::new(route.options.iter().map(|o| o.weight).collect())
            });
        f(sw)
    }
}
