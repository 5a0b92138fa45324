//! PayPal adapter.
//!
//! An exchange-world adapter over PayPal's REST API: Orders v2 and
//! Payments v2. The host holds the OAuth2 client credentials: it fetches
//! the bearer token from `/v1/oauth2/token` and adds it at egress (the
//! app's grant names `scheme = "oauth2-client-credentials"`), so neither
//! the client secret nor the token is ever seen here.
//!
//! Actions:
//! - `charge`: a server-side charge in one call: `POST /v2/checkout/orders`
//!   with `intent = CAPTURE` and the `payment_source` given (a vaulted
//!   token or card), then `POST /v2/checkout/orders/{id}/capture`. Keyed:
//!   `PayPal-Request-Id` is the run's key on the create and the key plus
//!   `:capture` on the capture, so a retry with the same key at this
//!   account neither creates a second order nor captures twice.
//! - `create-order`, `capture-order`: the two halves (for buyer-approved
//!   flows), keyed the same way;
//! - `refund`: `POST /v2/payments/captures/{capture_id}/refund`, keyed;
//! - `get-order`: `GET /v2/checkout/orders/{id}`, safe;
//! - `ping`: `GET /v2/checkout/orders/{id}` of an order that does not exist:
//!   healthy when PayPal answers 404 (reached and authenticated) or 2xx.
//!
//! Config keys: `api_base` (default `https://api-m.paypal.com`),
//! `payments_base` (Payments v2; default `api_base`).
//!
//! Errors keep PayPal's `name` and the first `details[].issue`: the code is
//! the issue (`INSTRUMENT_DECLINED`) when there is one, else the name
//! (`UNPROCESSABLE_ENTITY`). Declines and invalid requests are `rejected`,
//! 401/403 `internal`, 429 `rate-limited`, 5xx `unavailable` except a 500
//! to an action with an effect, which PayPal does not promise did nothing:
//! `ambiguous` (retried at this account with the same request id).

use serde_json::{Value, json};
use switchyard_guest::http::{self, percent_encode};
use switchyard_guest::{
    Action, AppInfo, Error, Idempotency, Request, Step, Steps, config, export_steps,
};

struct PayPal;

const CHARGE: &str = "charge";
const CREATE_ORDER: &str = "create-order";
const CAPTURE_ORDER: &str = "capture-order";
const REFUND: &str = "refund";
const GET_ORDER: &str = "get-order";
const PING: &str = "ping";

fn base() -> String {
    config::get("api_base")
        .unwrap_or_else(|| "https://api-m.paypal.com".into())
        .trim_end_matches('/')
        .to_string()
}

fn payments_base() -> String {
    config::get("payments_base")
        .map(|b| b.trim_end_matches('/').to_string())
        .unwrap_or_else(base)
}

impl Steps for PayPal {
    fn describe() -> AppInfo {
        let order = json!({
            "amount": {"required": true, "description": "a decimal string (`\"10.00\"`) or an integer in the currency's smallest unit (`1000`)"},
            "currency": {"type": "string", "required": true, "description": "ISO 4217 code, upper case (`USD`)"},
            "reference_id": {"type": "string"},
            "description": {"type": "string"},
            "invoice_id": {"type": "string"},
            "custom_id": {"type": "string"},
            "payment_source": {"type": "object", "description": "PayPal's payment_source (a vaulted `token`, a `card`, …)"}
        });
        AppInfo::new("paypal", env!("CARGO_PKG_VERSION"))
            .action(
                Action::new(CHARGE)
                    .describe("create an order with intent CAPTURE and capture it (idempotent with the run's key)")
                    .input(order.clone())
                    .idempotency(Idempotency::Keyed),
            )
            .action(
                Action::new(CREATE_ORDER)
                    .read_by_host()
                    .describe("POST /v2/checkout/orders (idempotent with the run's key)")
                    .input(order)
                    .idempotency(Idempotency::Keyed),
            )
            .action(
                Action::new(CAPTURE_ORDER)
                    .describe("POST /v2/checkout/orders/{id}/capture (idempotent with the run's key)")
                    .input(json!({"id": {"type": "string", "required": true}}))
                    .idempotency(Idempotency::Keyed),
            )
            .action(
                Action::new(REFUND)
                    .read_by_host()
                    .describe("POST /v2/payments/captures/{capture_id}/refund (idempotent with the run's key)")
                    .input(json!({
                        "capture_id": {"type": "string", "required": true},
                        "amount": {"type": "string", "description": "part of the capture; default all of it"},
                        "currency": {"type": "string"},
                        "note_to_payer": {"type": "string"}
                    }))
                    .idempotency(Idempotency::Keyed),
            )
            .action(
                Action::new(GET_ORDER)
                    .read_by_host()
                    .describe("GET /v2/checkout/orders/{id}")
                    .input(json!({"id": {"type": "string", "required": true}}))
                    .safe(),
            )
            .action(
                Action::new(PING)
                    .describe("healthy when PayPal answers (404 for an order that does not exist)")
                    .safe(),
            )
    }

    fn start(req: &Request) -> Result<Step, Error> {
        let step = match req.action.as_str() {
            CHARGE | CREATE_ORDER => Step::send_with(
                keyed(
                    http::Request::post(format!("{}/v2/checkout/orders", base()))
                        .json(&order_body(req)?),
                    &req.idempotency_key,
                ),
                &json!({"stage": "create"}),
            ),
            CAPTURE_ORDER => {
                Step::send_with(capture(req, req.str("id")?), &json!({"stage": "capture"}))
            }
            REFUND => {
                let id = req.str("capture_id")?;
                let mut body = json!({});
                if let Some(amount) = req.opt_str("amount")? {
                    let currency = req.str("currency").map_err(|_| {
                        Error::rejected("a partial refund needs `currency` with `amount`")
                    })?;
                    body["amount"] =
                        json!({"value": amount, "currency_code": currency.to_ascii_uppercase()});
                }
                if let Some(note) = req.opt_str("note_to_payer")? {
                    body["note_to_payer"] = json!(note);
                }
                Step::send_with(
                    keyed(
                        http::Request::post(format!(
                            "{}/v2/payments/captures/{}/refund",
                            payments_base(),
                            percent_encode(id)
                        ))
                        .json(&body),
                        &req.idempotency_key,
                    ),
                    &json!({"stage": "refund"}),
                )
            }
            GET_ORDER => Step::send(http::Request::get(format!(
                "{}/v2/checkout/orders/{}",
                base(),
                percent_encode(req.str("id")?)
            ))),
            PING => Step::send(http::Request::get(format!(
                "{}/v2/checkout/orders/SWITCHYARDPING",
                base()
            ))),
            _ => return Err(req.unknown_action()),
        };
        Ok(step)
    }

    fn resume(req: &Request, state: Vec<u8>, answer: http::Response) -> Result<Step, Error> {
        let stage: Value = serde_json::from_slice(&state).unwrap_or(Value::Null);
        let stage = stage["stage"].as_str().unwrap_or("");
        if req.action == PING {
            return if answer.status == 404 || (200..300).contains(&answer.status) {
                Ok(Step::Done(json!({"ok": true})))
            } else {
                Err(paypal_error(&answer, false))
            };
        }
        let effect = req.action != GET_ORDER;
        if !(200..300).contains(&answer.status) {
            return Err(paypal_error(&answer, effect));
        }
        let body = answer.json()?;
        match (req.action.as_str(), stage) {
            // The order exists; capture it (unless PayPal already did).
            (CHARGE, "create") => {
                let id = body["id"]
                    .as_str()
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| {
                        Error::ambiguous("PayPal created an order but its answer has no `id`")
                    })?;
                if body["status"] == "COMPLETED" {
                    return Ok(Step::Done(summary(&body)));
                }
                Ok(Step::send_with(
                    capture(req, id),
                    &json!({"stage": "capture"}),
                ))
            }
            (CHARGE | CAPTURE_ORDER, _) => Ok(Step::Done(summary(&body))),
            _ => Ok(Step::Done(body)),
        }
    }
}

/// `PayPal-Request-Id`: the run's key makes a retry at this account the
/// same request.
fn keyed(request: http::Request, key: &str) -> http::Request {
    let request = request.header("prefer", "return=representation");
    if key.is_empty() {
        request
    } else {
        request.header("paypal-request-id", key)
    }
}

fn capture(req: &Request, id: &str) -> http::Request {
    let key = if req.idempotency_key.is_empty() {
        String::new()
    } else if req.action == CAPTURE_ORDER {
        req.idempotency_key.clone()
    } else {
        format!("{}:capture", req.idempotency_key)
    };
    keyed(
        http::Request::post(format!(
            "{}/v2/checkout/orders/{}/capture",
            base(),
            percent_encode(id)
        ))
        .json(&json!({})),
        &key,
    )
}

/// Currencies PayPal takes without decimals.
const ZERO_DECIMAL: [&str; 3] = ["HUF", "JPY", "TWD"];

/// `amount` as PayPal's decimal string: a decimal string as given
/// (`"10.00"`), or an integer in the currency's smallest unit (`1000`, as
/// Stripe, Square and Adyen take it) converted.
fn decimal_amount(req: &Request, currency: &str) -> Result<String, Error> {
    let bad = |what: &str| {
        Error::rejected(format!(
            "`amount` is {what}; give a decimal string such as \"10.00\" or an integer in the currency's smallest unit (1000)"
        ))
    };
    match req.get("amount") {
        Some(Value::String(s))
            if !s.is_empty() && s.chars().all(|c| c.is_ascii_digit() || c == '.') =>
        {
            Ok(s.clone())
        }
        Some(Value::Number(n)) => match n.as_u64() {
            Some(v) if ZERO_DECIMAL.contains(&currency) => Ok(v.to_string()),
            Some(v) => Ok(format!("{}.{:02}", v / 100, v % 100)),
            None => Err(bad(&n.to_string())),
        },
        Some(other) => Err(bad(&other.to_string())),
        None => Err(Error::rejected("input needs `amount`")),
    }
}

/// Orders v2's body for a CAPTURE order of one purchase unit.
fn order_body(req: &Request) -> Result<Value, Error> {
    let currency = req.str("currency")?.to_ascii_uppercase();
    let amount = decimal_amount(req, &currency)?;
    let mut unit = json!({"amount": {"currency_code": currency, "value": amount}});
    for k in ["reference_id", "description", "invoice_id", "custom_id"] {
        if let Some(v) = req.opt_str(k)? {
            unit[k] = json!(v);
        }
    }
    let mut body = json!({"intent": "CAPTURE", "purchase_units": [unit]});
    if let Some(source) = req.get("payment_source") {
        body["payment_source"] = source.clone();
    }
    Ok(body)
}

/// The parts of an order a caller maps: its id, status, and the capture.
fn summary(order: &Value) -> Value {
    let capture = order["purchase_units"]
        .as_array()
        .and_then(|u| u.first())
        .and_then(|u| u["payments"]["captures"].as_array())
        .and_then(|c| c.first())
        .cloned()
        .unwrap_or(Value::Null);
    json!({
        "id": order["id"],
        "status": order["status"],
        "capture_id": capture["id"],
        "capture_status": capture["status"],
        "order": order,
    })
}

/// PayPal's error `{name, message, debug_id, details: [{issue,
/// description}]}` to an adapter error.
fn paypal_error(answer: &http::Response, effect: bool) -> Error {
    let status = answer.status;
    let body: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
    let name = body["name"]
        .as_str()
        .or_else(|| body["error"].as_str())
        .map(str::to_string)
        .unwrap_or_else(|| format!("http_{status}"));
    let issue = body["details"]
        .as_array()
        .and_then(|d| d.first())
        .and_then(|d| d["issue"].as_str())
        .map(str::to_string);
    let detail = body["details"]
        .as_array()
        .and_then(|d| d.first())
        .and_then(|d| d["description"].as_str())
        .map(str::to_string);
    let mut message = body["message"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| answer.snippet(300));
    if let Some(d) = detail {
        message = format!("{message}: {d}");
    }
    if let Some(id) = body["debug_id"].as_str() {
        message = format!("{message} (debug_id {id})");
    }
    // A validating proxy (Prism) explains invalid requests in this header.
    if let Some(v) = answer.header("sl-violations") {
        message = format!("{message}; violations: {v}");
    }
    let code = issue.clone().unwrap_or_else(|| name.clone());
    let message = format!(
        "paypal {status} {name}{}: {message}",
        issue.map(|i| format!(" {i}")).unwrap_or_default()
    );
    let error = match status {
        401 | 403 => Error::internal(message).with_status(status),
        // PayPal does not promise a 500 did nothing: for an action with an
        // effect the host retries this account with the same request id.
        500 | 502 | 504 if effect => Error::ambiguous(message).with_status(status),
        // A request with the same PayPal-Request-Id is still running.
        409 => Error::unavailable(message).with_status(status),
        _ => Error::from_status(status, message, answer.retry_after()),
    };
    error.with_code(code)
}

export_steps!(PayPal);
