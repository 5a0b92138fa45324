//! What the server says of itself: `/readyz`, `/openapi.json` (with the
//! definition schemas generated from the Rust types) and `/metrics`
//! (scoped to the token).

use super::guard::{self, ClientAddr};
use super::state::*;

use crate::access::Principal;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// `/readyz`: `ready` or not, nothing more without a token; with a token
/// that may read, also the cluster link's state.
pub(crate) async fn readyz(
    State(s): State<Arc<ApiState>>,
    addr: Option<axum::Extension<ClientAddr>>,
    headers: HeaderMap,
) -> Response {
    // A token sent here is checked like anywhere else (counted, throttled).
    let details = if guard::bearer(&headers).is_some() {
        match guard::authenticate(&s, &headers, addr.map(|a| a.0)) {
            Ok(p) => p
                .role
                .grants(crate::access::Need::Role(crate::access::Role::Read)),
            Err(e) => return e.into_response(),
        }
    } else {
        !s.deployment.auth.load(Ordering::SeqCst)
    };
    let r = readyz_full(&s);
    if details {
        return r;
    }
    let status = r.status();
    let word = if status.is_success() {
        "ready\n"
    } else {
        "not ready\n"
    };
    (status, word).into_response()
}

pub(crate) fn readyz_full(s: &ApiState) -> Response {
    if s.ready.load(Ordering::SeqCst) {
        // Ready while Redis is away too (runs go on with local state); the
        // body says so, for people and probes that read it.
        match &s.deployment.cluster {
            Some(c) if c.refused().is_some() => (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready\n{}", c.readiness()),
            )
                .into_response(),
            Some(c) => format!("ready\n{}", c.readiness()).into_response(),
            None => "ready\n".into_response(),
        }
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response()
    }
}

pub(crate) async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        openapi_document(),
    )
        .into_response()
}

/// The OpenAPI document `/openapi.json` serves: [`OPENAPI`] with the
/// request bodies of definitions generated from the Rust types the server
/// parses them into (one strict schema per kind; `kind` and `product` may
/// be left out, they come from the path), so the document refuses exactly
/// the shapes the server refuses. What no schema can say (an unknown app,
/// a bound that depends on this server's pool) the server still checks.
pub fn openapi_document() -> &'static str {
    static DOC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc: Value = serde_json::from_str(OPENAPI).expect("the OpenAPI document is JSON");
        let generated = crate::config::json_schema();
        let kinds = [
            ("HealthcheckDef", "healthcheck"),
            ("QuotaDef", "quota"),
            ("FallbackDef", "fallback"),
            ("FeatureDef", "feature"),
            ("CacheDef", "cache"),
        ];
        let schemas = doc["components"]["schemas"]
            .as_object_mut()
            .expect("components.schemas");
        if let Some(defs) = generated["$defs"].as_object() {
            for (name, schema) in defs {
                let mut schema = schema.clone();
                rebase_refs(&mut schema);
                if let Some((_, kind)) = kinds.iter().find(|(n, _)| n == name) {
                    schema["properties"]["kind"] = json!({"type": "string", "enum": [kind]});
                    // The rule `check_name` applies to tags.
                    schema["properties"]["tag"]["pattern"] = json!("^[A-Za-z0-9._-]{1,128}$");
                }
                schemas.entry(name.clone()).or_insert(schema);
            }
        }
        let variants: Vec<Value> = kinds
            .iter()
            .map(|(n, _)| json!({"$ref": format!("#/components/schemas/{n}")}))
            .collect();
        schemas.insert(
            "DefinitionBody".into(),
            json!({
                "description": "A definition as sent to create or replace it: the fields of its kind (docs/configuration.md). `kind` and `product` come from the path and may be left out; `tag` comes from the body (POST) or the path (PUT).",
                "oneOf": variants,
            }),
        );
        let body = json!({"$ref": "#/components/schemas/DefinitionBody"});
        // POST takes the tag from the body; PUT from the path.
        let with_tag = json!({"allOf": [body, {"required": ["tag"]}]});
        for (path, method, schema) in [
            ("/v1/{product}/definitions/{kinds}", "post", with_tag),
            ("/v1/{product}/definitions/{kinds}/{tag}", "put", body),
        ] {
            doc["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"] =
                schema;
        }
        serde_json::to_string_pretty(&doc).expect("serializes")
    })
}

/// Point a generated schema's `#/$defs/X` references at `#/components/schemas/X`.
pub(crate) fn rebase_refs(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get_mut("$ref")
                && let Some(name) = r.strip_prefix("#/$defs/")
            {
                *r = format!("#/components/schemas/{name}");
            }
            m.values_mut().for_each(rebase_refs);
        }
        Value::Array(a) => a.iter_mut().for_each(rebase_refs),
        _ => {}
    }
}

pub(crate) async fn metrics(
    State(s): State<Arc<ApiState>>,
    axum::Extension(who): axum::Extension<Principal>,
) -> Response {
    let mut text = s.deployment.metrics_text();
    if !who.sees_all() {
        text = scoped_metrics(&text, &who);
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// The series of `text` a scoped token may see: those without a
/// `product` label, and those of its products (and envs, where a series
/// has an `env` label).
pub(crate) fn scoped_metrics(text: &str, who: &Principal) -> String {
    let label = |head: &str, name: &str| -> Option<String> {
        let at = ["{", ","]
            .iter()
            .find_map(|sep| head.find(&format!("{sep}{name}=\"")))?
            + name.len()
            + 3;
        let rest = head.get(at..)?;
        Some(rest[..rest.find('"')?].to_string())
    };
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let keep = line.starts_with('#') || {
            let head = line.split('}').next().unwrap_or_default();
            label(head, "product").is_none_or(|p| who.products.has(&p))
                && label(head, "env").is_none_or(|e| who.envs.has(&e))
                && label(head, "breaker").is_none_or(|b| who.may_breaker(&b))
        };
        if keep {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}
