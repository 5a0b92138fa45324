//! The healthcheck scheduler: which healthchecks are due, one probe round
//! (tries with backoff, never counted against a provider when the host
//! could not start it), and the background task.

use super::admission::OverloadReason;
use super::attempt;
use super::definition::{HealthcheckDef, Kind};
use super::health::{self, HealthKey, HealthSnapshot};
use super::locks::{Recover, RecoverRw};
use super::retry::RetryPolicy;
use crate::adapter::{AttemptError, CallRequest, ErrorClass, FailureKind};
use crate::clock;
use crate::switchyard::{Inner, Switchyard};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// Backoff between the tries of one healthcheck round: full jitter,
/// doubling from 100 ms, at most 5 s.
pub(crate) const PROBE_BACKOFF: RetryPolicy = RetryPolicy {
    retries: 0,
    base_ms: 100,
    max_backoff_ms: 5_000,
};

impl Switchyard {
    /// Run every healthcheck due now (by the engine's clock) and wait for
    /// them; returns how many ran. The scheduler calls this; tests call it
    /// after advancing a manual clock.
    pub async fn run_due_healthchecks(&self) -> usize {
        let handles = self.spawn_due();
        let n = handles.len();
        for h in handles {
            let _ = h.await;
        }
        n
    }

    /// Run one healthcheck in one env now, whatever its schedule.
    pub async fn check_now(&self, product: &str, env: &str, tag: &str) -> Option<HealthSnapshot> {
        let key = HealthKey {
            product: product.into(),
            env: env.into(),
            tag: tag.into(),
        };
        if self.inner.health.locked().claim(&key) {
            self.inner.clone().probe(key).await;
        }
        self.health(product, env, tag)
    }

    pub(crate) fn spawn_due(&self) -> Vec<tokio::task::JoinHandle<()>> {
        let now = self.inner.clock.now();
        let due = self.inner.health.locked().due(now);
        due.into_iter()
            .map(|k| tokio::spawn(self.inner.clone().probe(k)))
            .collect()
    }

    /// Start the healthcheck scheduler on the current tokio runtime. It
    /// stops when the returned handle is dropped.
    pub fn spawn_healthchecks(&self) -> HealthcheckTask {
        let yard = self.clone();
        let task = tokio::spawn(async move {
            loop {
                // Probes run detached so a slow one does not hold the others.
                drop(yard.spawn_due());
                let now = yard.inner.clock.now();
                let next = yard.inner.health.locked().next_due();
                let wait = next
                    .map_or(Duration::from_secs(1), |t| t.saturating_duration_since(now))
                    .clamp(Duration::from_millis(10), Duration::from_secs(1));
                // A probe that ends reschedules its check: look again then,
                // not only when the next idle check is due.
                tokio::select! {
                    () = yard.inner.clock.sleep(wait) => {}
                    () = yard.inner.probe_ended.notified() => {}
                }
            }
        });
        HealthcheckTask { task }
    }
}

/// The running healthcheck scheduler; aborted on drop.
#[derive(Debug)]
pub struct HealthcheckTask {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for HealthcheckTask {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Inner {
    /// The healthchecks the options of the stored `kind` `tag` name.
    pub(crate) fn checks_named(&self, product: &str, kind: Kind, tag: &str) -> Vec<String> {
        self.registry
            .reading()
            .fetch(product, kind, tag)
            .map(crate::registry::checks_named_by)
            .unwrap_or_default()
    }

    /// Track `checks` again with the interval the registry now gives them.
    pub(crate) fn retrack(&self, product: &str, mut checks: Vec<String>) {
        checks.sort();
        checks.dedup();
        for tag in checks {
            let def = self.registry.reading().healthcheck(product, &tag);
            if let Some(h) = def {
                self.track(&h);
            }
        }
    }

    fn track(&self, h: &HealthcheckDef) {
        let interval =
            self.registry
                .reading()
                .check_interval(&h.meta.product, &h.meta.tag, h.interval_ms);
        let now = self.clock.now();
        let mut board = self.health.locked();
        let envs: Vec<&str> = h.input.keys().map(String::as_str).collect();
        board.untrack(&h.meta.product, &h.meta.tag, &envs);
        for env in envs {
            board.track(
                HealthKey {
                    product: h.meta.product.clone(),
                    env: env.to_string(),
                    tag: h.meta.tag.clone(),
                },
                Duration::from_millis(interval),
                h.jitter,
                h.history,
                now,
            );
        }
    }

    /// One healthcheck round: the probe action with its retries.
    pub(crate) async fn probe(self: Arc<Self>, key: HealthKey) {
        let def = self.registry.reading().healthcheck(&key.product, &key.tag);
        let Some(def) = def else {
            return; // deleted while due
        };
        if let Some(shared) = &self.shared {
            // One replica checks per interval: the lease holder. Its lease
            // outlives two intervals, so a holder that dies is taken over
            // within about that; the others take in its results.
            let interval = self.health.locked().interval(&key);
            if let Some(interval) = interval
                && shared.health_lease(&key, interval.saturating_mul(2)).await == Some(false)
            {
                let now = self.clock.now();
                self.health.locked().postpone(&key, now, interval);
                self.probe_ended.notify_one();
                return;
            }
        }
        let adapter = self.adapter(&key.product, &def.app, &key.env);
        let start = self.clock.now();
        let mut tries = 0;
        let mut error = None;
        let input = def
            .input
            .get(&key.env)
            .cloned()
            .unwrap_or(Value::Object(Default::default()));
        for attempt in 0..=def.retries {
            if attempt > 0 {
                // A failing provider is not hammered.
                let wait = self.backoff(&PROBE_BACKOFF, attempt - 1, None);
                self.clock.sleep(wait).await;
            }
            tries += 1;
            let Some(adapter) = &adapter else {
                error = Some(format!(
                    "app `{}` is not installed for env `{}`",
                    def.app, key.env
                ));
                break;
            };
            let deadline = Duration::from_millis(def.timeout_ms);
            let request = CallRequest {
                action: def.action.clone(),
                input: input.clone(),
                idempotency_key: format!("healthcheck:{}:{}", key.tag, self.next_key()),
                deadline,
                env: key.env.clone(),
                session: None,
            };
            let result = clock::timeout(
                &*self.clock,
                deadline + attempt::GRACE,
                adapter.call(request),
            )
            .await
            .map(|r| r.map_err(AttemptError::bounded))
            .unwrap_or_else(|_| {
                Err(AttemptError::new(
                    ErrorClass::Timeout,
                    FailureKind::DeadlineExceeded,
                    "probe took longer than its timeout",
                ))
            });
            match result {
                Ok(_) => {
                    error = None;
                    break;
                }
                // A retry that could not start: the earlier try's failure
                // stands.
                Err(e) if e.class == ErrorClass::Overloaded && error.is_some() => break,
                Err(e) if e.class == ErrorClass::Overloaded => {
                    // The host had no instance free: the provider was not
                    // asked, so its health must not move. Try again soon.
                    self.observe_overload(
                        &key.product,
                        &key.env,
                        &def.app,
                        &OverloadReason::NoInstance,
                    );
                    let now = self.clock.now();
                    self.health
                        .locked()
                        .postpone(&key, now, Duration::from_secs(1));
                    self.probe_ended.notify_one();
                    return;
                }
                Err(e) => error = Some(e.to_string()),
            }
        }
        let end = self.clock.now();
        let wall = self.clock.wall();
        let outcome = health::outcome(wall, error.is_none(), end - start, tries, error);
        for o in &self.observers {
            o.healthcheck(&key, &outcome);
        }
        if let Some(shared) = &self.shared {
            shared.health_result(&key, &outcome);
        }
        self.health.locked().finish(&key, outcome, end, wall);
        self.probe_ended.notify_one();
    }
}
