//! The bounds of every number a definition can set, checked when it is
//! defined (create, update, config load), each refusal naming the field
//! path and the allowed range. Past the check, arithmetic on these numbers
//! cannot overflow: the largest deadline plus any `Instant` the engine
//! reads stays representable, and no capacity is ever multiplied past
//! `usize`. `docs/configuration.md` lists them.

use super::definition::{DefineError, Definition, ProviderOption};
use std::fmt::Display;
use std::time::Duration;

/// Retries of one option, feature step or healthcheck round.
pub const MAX_RETRIES: u32 = 10;
/// Backoff base and ceiling, ms (10 minutes).
pub const MAX_BACKOFF_MS: u64 = 600_000;
/// Deadline of one attempt, ms (1 hour).
pub const MAX_TIMEOUT_MS: u64 = 3_600_000;
/// Deadline of a whole run, ms (1 day).
pub const MAX_DEADLINE_MS: u64 = 86_400_000;
/// The longest run deadline, as a `Duration` (caller-supplied run options
/// are clamped to it).
pub const MAX_DEADLINE: Duration = Duration::from_millis(MAX_DEADLINE_MS);
/// Healthcheck interval, ms: at least 100 ms, at most 1 day.
pub const MIN_INTERVAL_MS: u64 = 100;
/// See [`MIN_INTERVAL_MS`].
pub const MAX_INTERVAL_MS: u64 = 86_400_000;
/// Deadline of one healthcheck probe, ms (10 minutes).
pub const MAX_PROBE_TIMEOUT_MS: u64 = 600_000;
/// Outcomes a healthcheck keeps.
pub const MAX_HISTORY: usize = 10_000;
/// How long an idempotency record keeps a run's outcome by default.
pub const DEFAULT_IDEMPOTENCY_TTL: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
/// The longest an idempotency record may be kept.
pub const MAX_IDEMPOTENCY_TTL: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);
/// Most replicas a cluster counts when splitting limits.
pub const MAX_REPLICAS: u32 = 1_000;
/// Quota weight.
pub const MAX_WEIGHT: i64 = 1_000_000;
/// Result cache TTL, ms (7 days).
pub const MAX_TTL_MS: u64 = 604_800_000;
/// Result cache entries.
pub const MAX_CACHE_ENTRIES: usize = 1_000_000;

fn within<T: PartialOrd + Display>(
    path: impl Display,
    value: T,
    min: T,
    max: T,
) -> Result<(), DefineError> {
    if value < min || value > max {
        return Err(DefineError::new(
            path.to_string(),
            format!("is {value}; it must be between {min} and {max}"),
        ));
    }
    Ok(())
}

fn option(p: &str, o: &ProviderOption) -> Result<(), DefineError> {
    within(format!("{p}.retries"), o.retries, 0, MAX_RETRIES)?;
    if let Some(b) = o.backoff_ms {
        within(format!("{p}.backoff_ms"), b, 0, MAX_BACKOFF_MS)?;
    }
    if let Some(b) = o.max_backoff_ms {
        within(format!("{p}.max_backoff_ms"), b, 0, MAX_BACKOFF_MS)?;
    }
    if let Some(t) = o.timeout_ms {
        within(format!("{p}.timeout_ms"), t, 1, MAX_TIMEOUT_MS)?;
    }
    if let Some(w) = o.weight {
        within(format!("{p}.weight"), w, 1, MAX_WEIGHT)?;
    }
    if let Some(i) = o.check_interval_ms {
        within(
            format!("{p}.check_interval_ms"),
            i,
            MIN_INTERVAL_MS,
            MAX_INTERVAL_MS,
        )?;
    }
    Ok(())
}

fn deadline(root: &str, d: Option<u64>) -> Result<(), DefineError> {
    match d {
        Some(ms) => within(format!("{root}.deadline_ms"), ms, 1, MAX_DEADLINE_MS),
        None => Ok(()),
    }
}

/// Every number of `def` within its bounds, or the first that is not.
pub(crate) fn check(def: &Definition) -> Result<(), DefineError> {
    let root = def.path();
    match def {
        Definition::Healthcheck(h) => {
            within(
                format!("{root}.interval_ms"),
                h.interval_ms,
                MIN_INTERVAL_MS,
                MAX_INTERVAL_MS,
            )?;
            within(
                format!("{root}.timeout_ms"),
                h.timeout_ms,
                1,
                MAX_PROBE_TIMEOUT_MS,
            )?;
            within(format!("{root}.retries"), h.retries, 0, MAX_RETRIES)?;
            within(format!("{root}.history"), h.history, 1, MAX_HISTORY)
        }
        Definition::Quota(q) => {
            for (i, o) in q.providers.iter().enumerate() {
                option(&format!("{root}.providers[{i}]"), o)?;
            }
            deadline(&root, q.deadline_ms)
        }
        Definition::Fallback(f) => {
            for (i, o) in f.options.iter().enumerate() {
                option(&format!("{root}.options[{i}]"), o)?;
            }
            deadline(&root, f.deadline_ms)
        }
        Definition::Feature(f) => {
            for (i, s) in f.steps.iter().enumerate() {
                let p = format!("{root}.steps[{i}]");
                within(format!("{p}.retries"), s.retries, 0, MAX_RETRIES)?;
                if let Some(t) = s.timeout_ms {
                    within(format!("{p}.timeout_ms"), t, 1, MAX_TIMEOUT_MS)?;
                }
            }
            deadline(&root, f.deadline_ms)
        }
        Definition::Cache(c) => {
            within(format!("{root}.ttl_ms"), c.ttl_ms, 1, MAX_TTL_MS)?;
            within(
                format!("{root}.max_entries"),
                c.max_entries,
                1,
                MAX_CACHE_ENTRIES,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn def(v: serde_json::Value) -> Definition {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn every_number_is_bounded_with_its_path() {
        let cases = [
            (
                json!({"kind": "cache", "product": "p", "tag": "c", "ttl_ms": 5, "max_entries": 18446744073709551615u64}),
                "caches.c.max_entries",
            ),
            (
                json!({"kind": "cache", "product": "p", "tag": "c", "ttl_ms": 18446744073709551615u64}),
                "caches.c.ttl_ms",
            ),
            (
                json!({"kind": "healthcheck", "product": "p", "tag": "h", "app": "a", "action": "ping", "retries": 4294967295u32}),
                "healthchecks.h.retries",
            ),
            (
                json!({"kind": "healthcheck", "product": "p", "tag": "h", "app": "a", "action": "ping", "interval_ms": 1}),
                "healthchecks.h.interval_ms",
            ),
            (
                json!({"kind": "healthcheck", "product": "p", "tag": "h", "app": "a", "action": "ping", "history": 100000000}),
                "healthchecks.h.history",
            ),
            (
                json!({"kind": "fallback", "product": "p", "tag": "f", "deadline_ms": 18446744073709551615u64,
                       "options": [{"provider": "a", "app": "a", "action": "x"}]}),
                "fallbacks.f.deadline_ms",
            ),
            (
                json!({"kind": "fallback", "product": "p", "tag": "f",
                       "options": [{"provider": "a", "app": "a", "action": "x", "retries": 1000}]}),
                "fallbacks.f.options[0].retries",
            ),
            (
                json!({"kind": "quota", "product": "p", "tag": "q",
                       "providers": [{"provider": "a", "app": "a", "action": "x", "weight": 1},
                                     {"provider": "b", "app": "b", "action": "x", "timeout_ms": 18446744073709551615u64}]}),
                "quotas.q.providers[1].timeout_ms",
            ),
            (
                json!({"kind": "feature", "product": "p", "tag": "x",
                       "steps": [{"name": "s", "type": "action", "app": "a", "action": "x", "retries": 99}]}),
                "features.x.steps[0].retries",
            ),
        ];
        for (v, path) in cases {
            let e = check(&def(v)).unwrap_err();
            assert_eq!(e.path, path, "{e}");
            assert!(e.reason.contains("must be between"), "{e}");
        }
    }
}
