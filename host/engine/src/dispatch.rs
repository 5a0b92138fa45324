//! Run dispatch: one way into a run (kind, product, env, tag), the result
//! cache in front of it, and the deadline and trace of each run.

use super::bounds::MAX_DEADLINE;
use super::compile::CompiledRoute;
use super::definition::Kind;
use super::locks::{Recover, RecoverRw};
use super::result_cache::ResultCache;
use super::run::{ErrorCode, RunError, RunOptions, RunResult};
use super::schema;
use super::trace::Trace;
use super::{attempt, fallback, feature, quota};
use crate::adapter::{BoxFuture, Session};
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
                    self.cached(
                        product,
                        env,
                        RunKind::Feature,
                        tag,
                        input,
                        options,
                        |key, options| async move {
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
                    )
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
        self.cached(
            product,
            env,
            kind,
            &tag,
            input,
            options,
            |key, options| async move {
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
                };
                let result = match kind {
                    RunKind::Quota => quota::run(&ctx, &route, input, &mut trace).await,
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

    /// Serve from the run's result cache if it names one and holds a fresh
    /// result; otherwise run `f` (with the run's idempotency key) and store
    /// a success.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn cached<F, Fut>(
        &self,
        product: &str,
        env: &str,
        kind: RunKind,
        tag: &str,
        input: &Value,
        options: RunOptions,
        f: F,
    ) -> Result<RunResult, RunError>
    where
        F: FnOnce(String, RunOptions) -> Fut,
        Fut: std::future::Future<Output = Result<RunResult, RunError>>,
    {
        let key = |options: &RunOptions| {
            options
                .idempotency_key
                .clone()
                .unwrap_or_else(|| self.next_key())
        };
        let Some(cache_tag) = options.cache.clone() else {
            return f(key(&options), options).await;
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
        let now = self.clock.now();
        let hit = self
            .caches
            .locked()
            .entry((product.to_string(), cache_tag.clone()))
            .or_insert_with(|| ResultCache::new(Duration::from_millis(def.ttl_ms), def.max_entries))
            .get(&entry, now);
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
        let result = f(key(&options), options).await?;
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
