//! What the generic HTTP adapter does, independent of the world it is
//! exported in: the request a call makes, and what the answer means.

use serde_json::{Map, Value, json};
use switchyard_guest::http::{self, percent_encode};
use switchyard_guest::{Action, AppInfo, Error, Idempotency, Request, config};

/// One configured action.
struct ActionSpec {
    name: String,
    method: String,
    path: String,
    description: String,
    idempotency: Idempotency,
    headers: Map<String, Value>,
    input: Value,
}

fn configured_actions() -> Result<Vec<ActionSpec>, Error> {
    let Some(raw) = config::get("actions") else {
        return Ok(Vec::new());
    };
    let parsed: Value = serde_json::from_str(&raw)
        .map_err(|e| Error::internal(format!("config `actions` is not valid JSON: {e}")))?;
    let Value::Array(items) = parsed else {
        return Err(Error::internal("config `actions` must be a JSON array"));
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let field = |k: &str| item.get(k).and_then(Value::as_str).map(str::to_string);
            let name = field("name").ok_or_else(|| {
                Error::internal(format!("config `actions[{i}].name` is required"))
            })?;
            let path = field("path").ok_or_else(|| {
                Error::internal(format!("config `actions[{i}].path` is required"))
            })?;
            let method = field("method")
                .unwrap_or_else(|| "POST".into())
                .to_uppercase();
            // GET and HEAD are reads unless the action says otherwise;
            // `idempotent: true` is the older spelling of "keyed".
            let idempotency = match field("idempotency").as_deref() {
                Some("safe") => Idempotency::Safe,
                Some("keyed") => Idempotency::Keyed,
                Some("unsafe") => Idempotency::Unsafe,
                Some(other) => {
                    return Err(Error::internal(format!(
                        "config `actions[{i}].idempotency` is `{other}`; use \"safe\", \"keyed\" or \"unsafe\""
                    )));
                }
                None => match item.get("idempotent").and_then(Value::as_bool) {
                    Some(true) => Idempotency::Keyed,
                    Some(false) => Idempotency::Unsafe,
                    None if matches!(method.as_str(), "GET" | "HEAD") => Idempotency::Safe,
                    None => Idempotency::Unsafe,
                },
            };
            Ok(ActionSpec {
                method,
                description: field("description").unwrap_or_default(),
                idempotency,
                headers: item
                    .get("headers")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default(),
                input: item.get("input").cloned().unwrap_or_else(|| json!({})),
                name,
                path,
            })
        })
        .collect()
}

/// The app's actions: `request`, `ping` and the configured ones.
pub fn describe() -> AppInfo {
    let mut info = AppInfo::new("http", env!("CARGO_PKG_VERSION"))
        .action(
            Action::new("request")
                .describe("Send any request: method, path, query, headers, body")
                .read_by_host()
                .input(json!({
                    "method": {"type": "string", "required": true},
                    "path": {"type": "string", "required": true},
                    "query": {"type": "object"},
                    "headers": {"type": "object"},
                    "body": {"type": "object"}
                })),
        )
        .action(
            Action::new("ping")
                .describe("GET ping_path; healthy when the API answers 2xx")
                .safe(),
        );
    // A broken `actions` config surfaces on the first call, with its reason.
    for a in configured_actions().unwrap_or_default() {
        info = info.action(
            Action::new(a.name)
                .describe(a.description)
                // A 2xx JSON body is the output as is (`response` below).
                .read_by_host()
                .input(a.input)
                .idempotency(a.idempotency),
        );
    }
    info
}

/// The request that serves `req`.
pub fn request(req: &Request) -> Result<http::Request, Error> {
    let base = config::require("base_url")?;
    let base = base.trim_end_matches('/');
    let (method, url, headers, body) = match req.action.as_str() {
        "ping" => {
            let path = config::get("ping_path").unwrap_or_else(|| "/".into());
            ("GET".to_string(), format!("{base}{path}"), Map::new(), None)
        }
        "request" => {
            let method = req.str("method")?.to_uppercase();
            let mut url = format!("{base}{}", req.str("path")?);
            if let Some(Value::Object(q)) = req.get("query") {
                push_query(&mut url, q);
            }
            let headers = match req.get("headers") {
                Some(Value::Object(h)) => h.clone(),
                _ => Map::new(),
            };
            (method, url, headers, req.get("body").cloned())
        }
        name => {
            let actions = configured_actions()?;
            let Some(spec) = actions.into_iter().find(|a| a.name == name) else {
                return Err(req.unknown_action());
            };
            let mut fields = match &req.input {
                Value::Object(m) => m.clone(),
                _ => return Err(Error::rejected("input must be a JSON object")),
            };
            let path = fill_path(&spec.path, &mut fields)?;
            let mut url = format!("{base}{path}");
            let body = if matches!(spec.method.as_str(), "GET" | "DELETE" | "HEAD") {
                push_query(&mut url, &fields);
                None
            } else {
                Some(Value::Object(fields))
            };
            (spec.method, url, spec.headers, body)
        }
    };

    let mut request = http::Request::new(method, url);
    if let Some(t) = config::get("timeout_ms").and_then(|t| t.parse::<u64>().ok()) {
        request = request.timeout(std::time::Duration::from_millis(t));
    }
    for (k, v) in &headers {
        let v = match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        request = request.header(k.clone(), v);
    }
    if let Some(h) = config::get("idempotency_header") {
        request = request.header(h, req.idempotency_key.clone());
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    Ok(request)
}

/// The call's output from the provider's answer: its JSON (or text) for
/// 2xx, the status's error class otherwise.
pub fn response(req: &Request, answer: http::Response) -> Result<Value, Error> {
    let response = answer.error_for_status()?;
    if req.action == "ping" {
        return Ok(json!({"status": response.status}));
    }
    if response.body.is_empty() {
        return Ok(Value::Null);
    }
    match response.json() {
        Ok(v) => Ok(v),
        Err(_) => Ok(Value::String(response.text())),
    }
}

/// Replace `{field}` placeholders with input values, removing those fields.
fn fill_path(template: &str, fields: &mut Map<String, Value>) -> Result<String, Error> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let end = rest[start..]
            .find('}')
            .map(|e| start + e)
            .ok_or_else(|| Error::internal(format!("unclosed `{{` in path `{template}`")))?;
        out.push_str(&rest[..start]);
        let name = &rest[start + 1..end];
        let value = match fields.remove(name) {
            Some(Value::String(s)) => s,
            Some(Value::Number(n)) => n.to_string(),
            Some(other) => {
                return Err(Error::rejected(format!(
                    "input.{name} must be a string or number for the path, got {other}"
                )));
            }
            None => return Err(Error::rejected(format!("input.{name} is required"))),
        };
        out.push_str(&percent_encode(&value));
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn push_query(url: &mut String, fields: &Map<String, Value>) {
    let mut sep = if url.contains('?') { '&' } else { '?' };
    for (k, v) in fields {
        let v = match v {
            Value::String(s) => s.clone(),
            Value::Null | Value::Object(_) | Value::Array(_) => continue,
            other => other.to_string(),
        };
        url.push(sep);
        url.push_str(&percent_encode(k));
        url.push('=');
        url.push_str(&percent_encode(&v));
        sep = '&';
    }
}
