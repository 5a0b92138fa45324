//! Feature runs: steps in order; each step's input is mapped from the
//! feature's `$Input` and earlier steps' outputs (`$Sequence{step}{path}`);
//! the first failing step fails the feature, with every step's trace.

use super::definition::Kind;
use super::run::{ErrorCode, RunError, RunOptions, RunResult};
use super::switchyard::Inner;
use super::trace::{StepTrace, Trace};
use crate::adapter::Session;
use crate::compiled::{CompiledFeature, StepTarget};
use crate::mapping::Scope;
use serde_json::Value;
use std::collections::HashMap;
use std::time::Instant;

/// Feature steps may run features; definitions cannot form cycles, but a
/// bound keeps a pathological chain from recursing without end.
pub(crate) const MAX_DEPTH: u32 = 16;

#[allow(clippy::too_many_arguments)]
pub(crate) async fn run(
    inner: &Inner,
    feature: &CompiledFeature,
    product: &str,
    env: &str,
    key: &str,
    session: Option<&Session>,
    deadline_at: Instant,
    input: &Value,
    depth: u32,
    trace: &mut Trace,
) -> Result<(Value, Option<String>), RunError> {
    let mut outputs: HashMap<String, Value> = HashMap::new();
    // Who served each step, under which key (`$Sequence{step}{provider}`).
    let mut served: HashMap<String, Value> = HashMap::new();
    let mut last: Option<(Value, Option<String>)> = None;
    for step in &feature.steps {
        let scope = Scope {
            input: Some(input),
            response: None,
            sequence: Some(&outputs),
            steps: Some(&served),
        };
        let step_input = step.input.apply(&scope).map_err(|e| {
            let code = match e {
                crate::mapping::MappingError::Oversized { .. } => ErrorCode::Rejected,
                _ => ErrorCode::Mapping,
            };
            RunError::new(
                code,
                format!("feature `{}` step `{}`: {e}", feature.tag, step.name),
            )
        })?;
        let remaining = deadline_at.saturating_duration_since(inner.clock.now());
        // Each step is its own operation: a distinct key, derived from the
        // run's so a repeated feature run repeats the same keys.
        let step_key = format!("{key}:{}", step.name);
        let options = RunOptions {
            idempotency_key: Some(step_key.clone()),
            session: session.cloned(),
            cache: None,
            deadline: Some(remaining),
        };
        let result = match &step.target {
            StepTarget::Action(route) => {
                inner
                    .run_route(route.clone(), product, env, step_input, options, depth + 1)
                    .await
            }
            StepTarget::Fallback(tag) | StepTarget::Quota(tag) | StepTarget::Feature(tag) => {
                let kind = match &step.target {
                    StepTarget::Fallback(_) => Kind::Fallback,
                    StepTarget::Quota(_) => Kind::Quota,
                    _ => Kind::Feature,
                };
                inner
                    .run_boxed(kind, product, env, tag, step_input, options, depth + 1)
                    .await
            }
        };
        match result {
            Ok(RunResult {
                output,
                provider,
                trace: t,
                ..
            }) => {
                trace.steps.push(StepTrace {
                    name: step.name.clone(),
                    trace: t,
                });
                outputs.insert(step.name.clone(), output.clone());
                served.insert(
                    step.name.clone(),
                    serde_json::json!({"provider": provider, "idempotency_key": step_key}),
                );
                last = Some((output, provider));
            }
            Err(mut e) => {
                if let Some(t) = e.trace.take() {
                    trace.steps.push(StepTrace {
                        name: step.name.clone(),
                        trace: *t,
                    });
                }
                e.message = format!(
                    "feature `{}` step `{}`: {}",
                    feature.tag, step.name, e.message
                );
                return Err(e);
            }
        }
    }
    let (last_output, provider) = last.expect("a feature has steps");
    let output = match &feature.output {
        None => last_output,
        Some(m) => m
            .apply(&Scope {
                input: Some(input),
                response: None,
                sequence: Some(&outputs),
                steps: Some(&served),
            })
            .map_err(|e| {
                RunError::new(
                    ErrorCode::Mapping,
                    format!("feature `{}` output: {e}", feature.tag),
                )
            })?,
    };
    trace.served_by = provider.clone();
    Ok((output, provider))
}
