//! Definitions: list, fetch (with live state), create, replace, patch,
//! delete, and the reload of the config file.

use super::body::*;
use super::error::*;
use super::guard;
use super::state::*;

use crate::access::Principal;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use switchyard_engine::{Definition, Kind};

/// `POST /v1/admin/reload`: apply the config file's changes now (as
/// SIGHUP does). 200 with what changed, or 422 with every problem and
/// nothing changed.
pub(crate) async fn reload(
    State(s): State<Arc<ApiState>>,
    axum::Extension(who): axum::Extension<Principal>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let actor = guard::actor(&who, &headers)?;
    match s.deployment.reload().await {
        Ok(report) => {
            for line in report.lines() {
                eprintln!("reload: {line}");
            }
            if let Some(tls) = &s.tls {
                match tls.reload() {
                    Ok(()) => eprintln!("reload: the TLS certificate was read again"),
                    Err(e) => eprintln!("reload: the TLS certificate was not changed: {e}"),
                }
            }
            let _ = s.deployment.audit(
                &actor,
                "reload",
                "config",
                format!("{} changes", report.lines().len().saturating_sub(1)),
            );
            Ok(axum::Json(report).into_response())
        }
        Err(problems) => Err(ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            body: json!({
                "code": "invalid-config",
                "message": format!("the config was not applied; nothing changed. {}", problems.to_string().trim_end()),
                "problems": problems.0.iter().map(ToString::to_string).collect::<Vec<_>>(),
            }),
            retry_after: None,
        }),
    }
}

/// `?env=prod` (or `?env=*` for every env of the product) on fetch and
/// fetch-all: add each option's live state in that env.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StateQuery {
    pub(crate) env: Option<String>,
}

/// The envs a `?env=` asks for, checked against the product's; `None`
/// without one (the stored definition only, fit to PUT back).
pub(crate) fn state_envs(
    s: &ApiState,
    who: &Principal,
    product: &str,
    q: &StateQuery,
) -> Result<Option<Vec<String>>, ApiError> {
    match q.env.as_deref() {
        None => Ok(None),
        // Every env the token may see.
        Some("*") => Ok(Some(
            s.deployment.config().file.products[product]
                .envs
                .iter()
                .filter(|e| who.envs.has(e))
                .cloned()
                .collect(),
        )),
        Some(env) => {
            if let Some(why) = who.refusal(product, Some(env)) {
                return Err(guard::forbidden(why).field("env"));
            }
            check_product_env(s, product, Some(env)).map_err(|e| e.field("env"))?;
            Ok(Some(vec![env.to_string()]))
        }
    }
}

pub(crate) fn state_query(
    q: Result<Query<StateQuery>, QueryRejection>,
) -> Result<StateQuery, ApiError> {
    q.map(|Query(q)| q).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid-query",
            format!(
                "{}; the only parameter is `env` (an env of the product, or `*` for every env)",
                e.body_text()
            ),
        )
    })
}

pub(crate) async fn list(
    State(s): State<Arc<ApiState>>,
    axum::Extension(who): axum::Extension<Principal>,
    Path((product, kinds)): Path<(String, String)>,
    q: Result<Query<StateQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let kind = kind_of(&kinds, ALL_KINDS)?;
    check_product_env(&s, &product, None)?;
    let q = state_query(q)?;
    let body = match state_envs(&s, &who, &product, &q)? {
        None => json!({ kinds: s.deployment.yard.fetch_all(&product, Some(kind)) }),
        Some(envs) => {
            json!({ kinds: s.deployment.yard.fetch_all_live(&product, Some(kind), &envs) })
        }
    };
    Ok(axum::Json(body).into_response())
}

pub(crate) async fn fetch(
    State(s): State<Arc<ApiState>>,
    axum::Extension(who): axum::Extension<Principal>,
    Path((product, kinds, tag)): Path<(String, String, String)>,
    q: Result<Query<StateQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let kind = kind_of(&kinds, ALL_KINDS)?;
    check_product_env(&s, &product, None)?;
    let q = state_query(q)?;
    let def = stored(&s, &product, kind, &tag)?;
    match state_envs(&s, &who, &product, &q)? {
        None => Ok(axum::Json(def).into_response()),
        Some(envs) => {
            let live = s
                .deployment
                .yard
                .fetch_live(&product, kind, &tag, &envs)
                .ok_or_else(|| {
                    ApiError::not_found(format!("no {kind} `{tag}` in product `{product}`"))
                })?;
            // Each provider's state with its last hour from the history.
            let d = s.deployment.clone();
            let body = tokio::task::spawn_blocking(move || {
                let mut v = serde_json::to_value(live).unwrap_or_default();
                d.annotate_history(&mut v);
                v
            })
            .await
            .map_err(|e| {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            })?;
            Ok(axum::Json(body).into_response())
        }
    }
}

/// The stored definition, or 404.
pub(crate) fn stored(
    s: &ApiState,
    product: &str,
    kind: Kind,
    tag: &str,
) -> Result<Definition, ApiError> {
    s.deployment
        .yard
        .fetch(product, kind, tag)
        .ok_or_else(|| ApiError::not_found(format!("no {kind} `{tag}` in product `{product}`")))
}

/// Parse a definition body: `kind` comes from the path, `product` from the
/// path (a different one in the body is refused), `tag` from the body or,
/// for PUT, the path.
pub(crate) async fn definition_body(
    s: &ApiState,
    product: &str,
    kind: Kind,
    tag: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Definition, ApiError> {
    let v: Value = read_json(body, headers, s).await?.0;
    definition_value(product, kind, tag, v)
}

/// A definition from its JSON, with `product`, `kind` and (when given)
/// `tag` taken from the path.
pub(crate) fn definition_value(
    product: &str,
    kind: Kind,
    tag: Option<&str>,
    mut v: Value,
) -> Result<Definition, ApiError> {
    let Some(obj) = v.as_object_mut() else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid-body",
            "the body must be a JSON object (the definition)",
        ));
    };
    let mut set = |field: &str, value: &str| -> Result<(), ApiError> {
        // An empty string is the field left out (as the config allows).
        match obj.get(field).and_then(Value::as_str) {
            Some(given) if !given.is_empty() && given != value => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid-body",
                format!("`{field}` is `{given}` in the body but `{value}` in the path; make them agree or leave it out of the body"),
            )
            .field(field)),
            _ => {
                obj.insert(field.into(), Value::String(value.into()));
                Ok(())
            }
        }
    };
    set("product", product)?;
    set("kind", kind.as_str())?;
    if let Some(tag) = tag {
        set("tag", tag)?;
    } else if !obj.get("tag").is_some_and(Value::is_string) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid-body",
            "give the definition a `tag` (a string)",
        )
        .field("tag"));
    }
    serde_json::from_value(v).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-definition",
            format!("{e}; see docs/configuration.md"),
        )
    })
}

pub(crate) async fn create(
    State(s): State<Arc<ApiState>>,
    axum::Extension(who): axum::Extension<Principal>,
    Path((product, kinds)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let kind = kind_of(&kinds, ALL_KINDS)?;
    check_product_env(&s, &product, None)?;
    let actor = guard::actor(&who, &headers)?;
    let def = definition_body(&s, &product, kind, None, &headers, body).await?;
    s.deployment.create(def.clone())?;
    defined(&s, &actor, "create", &product, kind, &def.meta().tag);
    Ok((StatusCode::CREATED, axum::Json(def)).into_response())
}

pub(crate) async fn update(
    State(s): State<Arc<ApiState>>,
    axum::Extension(who): axum::Extension<Principal>,
    Path((product, kinds, tag)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let kind = kind_of(&kinds, ALL_KINDS)?;
    check_product_env(&s, &product, None)?;
    let actor = guard::actor(&who, &headers)?;
    let def = definition_body(&s, &product, kind, Some(&tag), &headers, body).await?;
    s.deployment.update(def.clone())?;
    defined(&s, &actor, "update", &product, kind, &tag);
    Ok(axum::Json(def).into_response())
}

/// A partial update with JSON merge-patch semantics (RFC 7386): the fields
/// given replace the stored ones, objects merge field by field, `null`
/// removes a field, and everything not given stays. The merged definition
/// is validated as a whole, as a PUT would be.
pub(crate) async fn patch(
    State(s): State<Arc<ApiState>>,
    axum::Extension(who): axum::Extension<Principal>,
    Path((product, kinds, tag)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let kind = kind_of(&kinds, ALL_KINDS)?;
    check_product_env(&s, &product, None)?;
    // A JSON object (`read_json` refuses anything else): the fields to
    // change, `null` removing one.
    let changes: Value = read_json(body, &headers, &s).await?.0;
    let current = stored(&s, &product, kind, &tag)?;
    let mut merged = serde_json::to_value(&current)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    merge_patch(&mut merged, changes);
    let def = definition_value(&product, kind, Some(&tag), merged)?;
    let actor = guard::actor(&who, &headers)?;
    s.deployment.update(def.clone())?;
    defined(&s, &actor, "patch", &product, kind, &tag);
    Ok(axum::Json(def).into_response())
}

/// Audit a definition change by `actor`.
pub(crate) fn defined(
    s: &ApiState,
    actor: &crate::ops::Actor,
    action: &str,
    product: &str,
    kind: Kind,
    tag: &str,
) {
    let _ = s.deployment.audit(
        actor,
        action,
        &format!("{product}/{}/{tag}", kind.plural()),
        String::new(),
    );
}

/// Apply a JSON merge patch (RFC 7386) to `target`.
pub(crate) fn merge_patch(target: &mut Value, patch: Value) {
    let Value::Object(changes) = patch else {
        *target = patch;
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    if let Value::Object(fields) = target {
        for (key, value) in changes {
            if value.is_null() {
                fields.remove(&key);
            } else {
                merge_patch(fields.entry(key).or_insert(Value::Null), value);
            }
        }
    }
}

pub(crate) async fn delete(
    State(s): State<Arc<ApiState>>,
    axum::Extension(who): axum::Extension<Principal>,
    headers: HeaderMap,
    Path((product, kinds, tag)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let kind = kind_of(&kinds, ALL_KINDS)?;
    let actor = guard::actor(&who, &headers)?;
    check_product_env(&s, &product, None)?;
    let old = s.deployment.delete(&product, kind, &tag)?;
    defined(&s, &actor, "delete", &product, kind, &tag);
    Ok(axum::Json(old).into_response())
}
