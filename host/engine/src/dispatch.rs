//! Run dispatch: one way into a run (kind, product, env, tag), the result
//! cache in front of it, and the deadline and trace of each run.

use super::bounds::MAX_DEADLINE;
use super::definition::Kind;
use super::locks::{Recover, RecoverRw};
use super::result_cache::ResultCache;
use super::run::{ErrorCode, RunError, RunOptions, RunResult};
use super::schema;
use super::trace::Trace;
use super::{attempt, fallback, feature, quota};
use crate::adapter::{BoxFuture, Session};
use crate::compiled::CompiledRoute;
use crate::records::{Claim, Pin, RecordsUnavailable, RunRecord, Settlement, StoredOutcome};
use crate::switchyard::{Inner, Switchyard};
use crate::trace::RunKind;
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// What a result-cache entry is keyed by: everything that separates the
/// callers it may be shared between. The kind, tag and env of the run, the
/// caller's session (its tag and a SHA-256 of its token, so two sessions
/// never share an entry and no token is kept in the key), and the input.
/// The idempotency key is not part of it: identical work asked again under
/// a new key is what a cache is for.
pub(crate) fn cache_entry(
    kind: RunKind,
    tag: &str,
    env: &str,
    session: Option<&Session>,
    input: &Value,
) -> String {
    use sha2::{Digest, Sha256};
    let session = session.map_or_else(
        || "-".to_string(),
        |s| {
            // The tag's length first, so no tag can pose as another
            // tag plus part of a token.
            let token = hex::encode(Sha256::digest(s.token.as_bytes()));
            format!("{}:{}:{token}", s.tag.len(), s.tag)
        },
    );
    format!("{kind}/{tag}/{env}/{session}/{input}")
}

/// The idempotency record key of a run: everything that separates the
/// callers who may share it (product, env, kind, tag, the session as in
/// [`cache_entry`]) and the caller's key, hashed so no token or oversized
/// key reaches the store.
fn record_key(
    product: &str,
    env: &str,
    kind: RunKind,
    tag: &str,
    session: Option<&Session>,
    key: &str,
) -> String {
    use sha2::{Digest, Sha256};
    let scope = cache_entry(kind, tag, env, session, &Value::Null);
    let digest = Sha256::digest(format!("{}:{product}/{scope}/{key}", product.len()).as_bytes());
    format!("idem/{}", hex::encode(digest))
}

/// How a finished run leaves its key's record. A success, and failures a
/// retry must get back rather than undo (the provider refused, or acted and
/// the mapping failed; the input is wrong), are kept. An unresolved
/// `ambiguous` pins the key to the app that may have acted (a feature's,
/// which names no single app, is kept as it is). Anything else (no
/// provider, all failed without acting, overloaded, deadline) frees the
/// key, unless an earlier run pinned it: that pin stands until an answer.
fn settlement(result: &Result<RunResult, RunError>, pinned: Option<&Pin>) -> Settlement {
    let keep =
        |o: StoredOutcome| serde_json::to_string(&o).map_or(Settlement::Free, Settlement::Done);
    match result {
        Ok(r) => keep(StoredOutcome::Served(r.clone())),
        Err(e) => match (e.code, &e.reconcile) {
            (ErrorCode::Ambiguous, Some(at)) => Settlement::Pinned(Pin {
                app: at.app.clone(),
                provider: at.provider.clone(),
            }),
            (
                ErrorCode::Rejected
                | ErrorCode::Ambiguous
                | ErrorCode::Mapping
                | ErrorCode::InvalidInput,
                _,
            ) => keep(StoredOutcome::Failed(e.clone())),
            _ => pinned.cloned().map_or(Settlement::Free, Settlement::Pinned),
        },
    }
}

impl Switchyard {
    /// Run a definition of `kind` (fallback, quota or feature): the one way
    /// into a run (`yard.fallback().run(…)` and friends call this).
    pub async fn run(
        &self,
        kind: Kind,
        product: &str,
        env: &str,
        tag: &str,
        input: Value,
        options: RunOptions,
    ) -> Result<RunResult, RunError> {
        self.inner
            .run_boxed(kind, product, env, tag, input, options, 0)
            .await
    }
}

impl Inner {
    pub(crate) fn next_key(&self) -> String {
        let n = self.key_counter.fetch_add(1, Ordering::Relaxed);
        format!("sy-{:016x}-{n:x}", self.key_prefix)
    }

    #[allow(clippy::too_many_arguments)]
    pub fn run_boxed<'a>(
        &'a self,
        kind: Kind,
        product: &'a str,
        env: &'a str,
        tag: &'a str,
        input: Value,
        options: RunOptions,
        depth: u32,
    ) -> BoxFuture<'a, Result<RunResult, RunError>> {
        Box::pin(async move {
            if depth > feature::MAX_DEPTH {
                return Err(RunError::new(
                    ErrorCode::InvalidInput,
                    format!("features nest deeper than {}", feature::MAX_DEPTH),
                ));
            }
            let not_found = || {
                RunError::new(
                    ErrorCode::NotFound,
                    format!("no {kind} `{tag}` in product `{product}`"),
                )
            };
            match kind {
                Kind::Fallback | Kind::Quota => {
                    let route = self
                        .registry
                        .reading()
                        .compiled_route(product, kind, tag)
                        .ok_or_else(not_found)?;
                    self.run_route(route, product, env, input, options, depth)
                        .await
                }
                Kind::Feature => {
                    let f = self
                        .registry
                        .reading()
                        .compiled_feature(product, tag)
                        .ok_or_else(not_found)?;
                    schema::validate(&f.schema, &input).map_err(RunError::invalid_input)?;
                    let input = &input;
                    let record = (depth == 0).then(|| options.deadline.unwrap_or(f.deadline));
                    // Boxed: a feature's future is large, and inline it
                    // would make every route's run as large.
                    Box::pin(self.cached(
                        product,
                        env,
                        RunKind::Feature,
                        tag,
                        input,
                        options,
                        record,
                        || true,
                        |key, options, _record| async move {
                            let deadline_at = self.clock.now()
                                + options.deadline.unwrap_or(f.deadline).min(MAX_DEADLINE);
                            let mut trace = Trace::new(RunKind::Feature, tag, env, &key);
                            match feature::run(
                                self,
                                &f,
                                product,
                                env,
                                &key,
                                options.session.as_ref(),
                                deadline_at,
                                input,
                                depth,
                                &mut trace,
                            )
                            .await
                            {
                                Ok((output, provider)) => Ok(RunResult {
                                    output,
                                    provider,
                                    idempotency_key: key,
                                    trace,
                                }),
                                Err(e) => Err(e.with_trace(trace)),
                            }
                        },
                    ))
                    .await
                }
                Kind::Healthcheck | Kind::Cache => Err(RunError::new(
                    ErrorCode::NotFound,
                    format!("a {kind} cannot be run; run a fallback, quota or feature"),
                )),
            }
        })
    }

    /// Run a compiled quota, fallback or action step.
    pub async fn run_route(
        &self,
        route: Arc<CompiledRoute>,
        product: &str,
        env: &str,
        input: Value,
        options: RunOptions,
        depth: u32,
    ) -> Result<RunResult, RunError> {
        schema::validate(&route.schema, &input).map_err(RunError::invalid_input)?;
        let kind = route.kind;
        let tag = route.tag.clone();
        let input = &input;
        let record = (depth == 0).then(|| options.deadline.unwrap_or(route.deadline));
        self.cached(
            product,
            env,
            kind,
            &tag,
            input,
            options,
            record,
            {
                let route = route.clone();
                move || self.has_effect(&route, product, env)
            },
            |key, options, record| async move {
                let deadline_at =
                    self.clock.now() + options.deadline.unwrap_or(route.deadline).min(MAX_DEADLINE);
                let mut trace = Trace::new(kind, &route.tag, env, &key);
                let ctx = attempt::RunCtx {
                    inner: self,
                    product,
                    env,
                    key: &key,
                    session: options.session.as_ref(),
                    deadline_at,
                    depth,
                    record: record.as_deref(),
                };
                let pinned = record.as_ref().and_then(|r| r.pinned.as_ref());
                let result = match (kind, pinned) {
                    (_, Some(pin)) => {
                        trace.pinned_to = Some(pin.app.clone());
                        attempt::run_pinned(&ctx, &route, pin, input, &mut trace).await
                    }
                    (RunKind::Quota, None) => quota::run(&ctx, &route, input, &mut trace).await,
                    _ => fallback::run(&ctx, &route, input, &mut trace).await,
                };
                match result {
                    Ok((output, provider)) => Ok(RunResult {
                        output,
                        provider: Some(provider),
                        idempotency_key: key,
                        trace,
                    }),
                    Err(e) => Err(e.with_trace(trace)),
                }
            },
        )
        .await
    }

    /// Whether any option of `route` has an effect (an action that is not
    /// safe, or a feature): what makes a keyed run need its record.
    fn has_effect(&self, route: &CompiledRoute, product: &str, env: &str) -> bool {
        route.options.iter().any(|o| match &o.target {
            crate::compiled::OptionTarget::Feature(_) => true,
            crate::compiled::OptionTarget::Action => self
                .adapter(product, &o.app, env)
                .is_none_or(|a| attempt::declared(o, a.info()).has_effect()),
        })
    }

    /// A top-level run (`record` holds its deadline) with the caller's
    /// idempotency key claims that key's record first: a finished run's
    /// stored outcome answers instead of running again, one still running
    /// answers `in-progress`, and a key an earlier run left unresolved at
    /// one app runs there only. When the record cannot be read, a run with
    /// an effect (`has_effect`) is refused unless the engine's policy says
    /// run. Then the result cache.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn cached<F, Fut>(
        &self,
        product: &str,
        env: &str,
        kind: RunKind,
        tag: &str,
        input: &Value,
        options: RunOptions,
        record: Option<Duration>,
        has_effect: impl FnOnce() -> bool,
        f: F,
    ) -> Result<RunResult, RunError>
    where
        F: FnOnce(String, RunOptions, Option<Arc<RunRecord>>) -> Fut,
        Fut: std::future::Future<Output = Result<RunResult, RunError>>,
    {
        let (Some(deadline), Some(caller_key)) = (record, options.idempotency_key.as_deref())
        else {
            return self
                .cached_run(product, env, kind, tag, input, options, None, f)
                .await;
        };
        let rkey = record_key(
            product,
            env,
            kind,
            tag,
            options.session.as_ref(),
            caller_key,
        );
        let fence = self.next_key();
        // A holder that dies frees the key once its run could no longer be
        // going on (its pin stays).
        let hold = deadline.min(MAX_DEADLINE) + Duration::from_secs(5);
        let now_ms = crate::breaker::unix_ms(self.clock.wall());
        let until_ms = now_ms.saturating_add(u64::try_from(hold.as_millis()).unwrap_or(u64::MAX));
        let records = &*self.records;
        let ttl = self.idempotency_ttl;
        match records.claim(&rkey, &fence, now_ms, until_ms, ttl).await {
            Claim::Running => Err(RunError {
                retry_after_ms: Some(1_000),
                ..RunError::new(
                    ErrorCode::InProgress,
                    format!(
                        "a run with idempotency key `{caller_key}` has not finished yet (on this or another replica); retry after it does"
                    ),
                )
            }),
            Claim::Done(stored) => match serde_json::from_str::<StoredOutcome>(&stored) {
                Ok(StoredOutcome::Served(mut r)) => {
                    r.trace.replayed = true;
                    Ok(r)
                }
                Ok(StoredOutcome::Failed(mut e)) => {
                    if let Some(t) = e.trace.as_mut() {
                        t.replayed = true;
                    }
                    Err(e)
                }
                Err(e) => Err(RunError::new(
                    ErrorCode::InProgress,
                    format!(
                        "the stored outcome of idempotency key `{caller_key}` cannot be read ({e}); it is kept, not run again"
                    ),
                )),
            },
            Claim::Unreachable => {
                // A claim the store took after we stopped waiting must not
                // hold the key: free it, if it is ours (fenced).
                let now_ms = crate::breaker::unix_ms(self.clock.wall());
                if self.records_unavailable == RecordsUnavailable::Refuse && has_effect() {
                    records
                        .settle(&rkey, &fence, Settlement::Release, now_ms, ttl)
                        .await;
                    return Err(RunError {
                        retry_after_ms: Some(1_000),
                        ..RunError::new(
                            ErrorCode::IdempotencyUnavailable,
                            format!(
                                "the record of idempotency key `{caller_key}` cannot be read now, so nothing was sent (a retry could otherwise execute twice); retry later"
                            ),
                        )
                    });
                }
                let result = self
                    .cached_run(product, env, kind, tag, input, options, None, f)
                    .await;
                let s = match settlement(&result, None) {
                    Settlement::Free => Settlement::Release,
                    s => s,
                };
                let now_ms = crate::breaker::unix_ms(self.clock.wall());
                records.settle(&rkey, &fence, s, now_ms, ttl).await;
                result
            }
            Claim::Claimed { pin } => {
                let held = Arc::new(RunRecord {
                    key: rkey.clone(),
                    fence: fence.clone(),
                    pinned: pin,
                    written: std::sync::Mutex::new(None),
                });
                let result = self
                    .cached_run(
                        product,
                        env,
                        kind,
                        tag,
                        input,
                        options,
                        Some(held.clone()),
                        f,
                    )
                    .await;
                let s = settlement(&result, held.pinned.as_ref());
                let now_ms = crate::breaker::unix_ms(self.clock.wall());
                records.settle(&rkey, &fence, s, now_ms, ttl).await;
                result
            }
        }
    }

    /// Serve from the run's result cache if it names one and holds a fresh
    /// result (this replica's, or in cluster mode the cluster's); otherwise
    /// run `f` (with the run's idempotency key) and store a success.
    #[allow(clippy::too_many_arguments)]
    async fn cached_run<F, Fut>(
        &self,
        product: &str,
        env: &str,
        kind: RunKind,
        tag: &str,
        input: &Value,
        options: RunOptions,
        record: Option<Arc<RunRecord>>,
        f: F,
    ) -> Result<RunResult, RunError>
    where
        F: FnOnce(String, RunOptions, Option<Arc<RunRecord>>) -> Fut,
        Fut: std::future::Future<Output = Result<RunResult, RunError>>,
    {
        let key = |options: &RunOptions| {
            options
                .idempotency_key
                .clone()
                .unwrap_or_else(|| self.next_key())
        };
        let Some(cache_tag) = options.cache.clone() else {
            return f(key(&options), options, record).await;
        };
        let def = self
            .registry
            .reading()
            .cache(product, &cache_tag)
            .cloned()
            .ok_or_else(|| {
                RunError::new(
                    ErrorCode::NotFound,
                    format!("no cache `{cache_tag}` in product `{product}`; define it or drop the cache option"),
                )
            })?;
        let entry = cache_entry(kind, tag, env, options.session.as_ref(), input);
        let ttl = Duration::from_millis(def.ttl_ms);
        let now = self.clock.now();
        let mut hit = self
            .caches
            .locked()
            .entry((product.to_string(), cache_tag.clone()))
            .or_insert_with(|| ResultCache::new(ttl, def.max_entries))
            .get(&entry, now);
        let shared_key = self.shared.as_ref().map(|_| {
            use sha2::{Digest, Sha256};
            format!(
                "cache/{product}/{cache_tag}/{}",
                hex::encode(Sha256::digest(entry.as_bytes()))
            )
        });
        if let (None, Some(shared), Some(k)) = (&hit, &self.shared, &shared_key) {
            hit = shared
                .cache_get(k)
                .await
                .and_then(|v| serde_json::from_str::<RunResult>(&v).ok());
        }
        if let Some(mut r) = hit {
            // The stored run's key is that caller's, not this one's: a hit
            // answers with this run's own key (the caller's, or a fresh
            // one), so no key ever leaks from one run to another.
            let own = key(&options);
            r.idempotency_key.clone_from(&own);
            r.trace.idempotency_key = own;
            r.trace.cached = true;
            r.trace.attempts.clear();
            r.trace.steps.clear();
            return Ok(r);
        }
        let result = f(key(&options), options, record).await?;
        if let (Some(shared), Some(k)) = (&self.shared, &shared_key)
            && let Ok(v) = serde_json::to_string(&result)
        {
            shared.cache_put(k, v, ttl);
        }
        let now = self.clock.now();
        if let Some(c) = self
            .caches
            .locked()
            .get_mut(&(product.to_string(), cache_tag))
        {
            c.put(entry, result.clone(), now);
        }
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Switchyard;

    /// A run's future is boxed once per run, and moved whole: its size is
    /// bytes copied on every run. The paths few runs take (hedged races,
    /// features) are boxed apart so that they do not make every run's
    /// future as large as theirs: the run's future was 11.5 KB before
    /// they were, and 5.9 KB after (release build).
    #[test]
    fn a_runs_future_stays_small() {
        let yard = Switchyard::new();
        let run = yard.inner.run_boxed(
            Kind::Fallback,
            "p",
            "dev",
            "t",
            Value::Null,
            RunOptions::default(),
            0,
        );
        let size = std::mem::size_of_val(&*run);
        println!("a run's future: {size} bytes");
        assert!(
            size <= 8 << 10,
            "a run's future takes {size} bytes; box the large futures of rare paths"
        );
    }
}
