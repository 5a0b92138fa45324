//! Square adapter.
//!
//! An exchange-world adapter over Square's Payments API
//! (`https://connect.squareup.com`): create a payment, refund it, read it.
//! The host adds `Authorization: Bearer <access token>` at egress from the
//! app's grant; the adapter never sees it. Every request carries
//! `Square-Version` (config `square_version`, default `2025-08-20`).
//!
//! Square requires an `idempotency_key` in the body of a payment and a
//! refund: the run's key is sent there, so both are keyed (a repeat of the
//! key at this account returns the first result).
//!
//! Config keys: `api_base` (default `https://connect.squareup.com`),
//! `square_version`, `location_id` (default location for payments).
//!
//! Errors keep Square's `errors[0]` (`category`, `code`, `detail`,
//! `field`): the code is Square's (`CARD_DECLINED`, `INSUFFICIENT_FUNDS`),
//! declines and invalid requests are `rejected`, 401/403 `internal`, 429
//! `rate-limited`, a 500/502/504 to an action with an effect `ambiguous`,
//! other 5xx `unavailable`.

use serde_json::{Value, json};
use switchyard_guest::http::{self, percent_encode};
use switchyard_guest::{
    Action, AppInfo, Error, Exchange, Idempotency, Request, config, export_exchange,
};

struct Square;

const CREATE_PAYMENT: &str = "create-payment";
const REFUND: &str = "refund";
const GET_PAYMENT: &str = "get-payment";
const PING: &str = "ping";

fn base() -> String {
    config::get("api_base")
        .unwrap_or_else(|| "https://connect.squareup.com".into())
        .trim_end_matches('/')
        .to_string()
}

fn versioned(request: http::Request) -> http::Request {
    request.header(
        "square-version",
        config::get("square_version").unwrap_or_else(|| "2025-08-20".into()),
    )
}

impl Exchange for Square {
    fn describe() -> AppInfo {
        AppInfo::new("square", env!("CARGO_PKG_VERSION"))
            .action(
                Action::new(CREATE_PAYMENT)
                    .read_by_host()
                    .describe("POST /v2/payments (idempotent with the run's key, sent as idempotency_key)")
                    .input(json!({
                        "source_id": {"type": "string", "required": true, "description": "a card nonce, a card on file id, …"},
                        "amount": {"type": "integer", "required": true, "description": "in the currency's smallest unit"},
                        "currency": {"type": "string", "required": true, "description": "ISO 4217, upper case"},
                        "autocomplete": {"type": "boolean", "description": "capture at once (default true)"},
                        "location_id": {"type": "string"},
                        "customer_id": {"type": "string"},
                        "reference_id": {"type": "string"},
                        "note": {"type": "string"},
                        "verification_token": {"type": "string"}
                    }))
                    .idempotency(Idempotency::Keyed),
            )
            .action(
                Action::new(REFUND)
                    .read_by_host()
                    .describe("POST /v2/refunds (idempotent with the run's key)")
                    .input(json!({
                        "payment_id": {"type": "string", "required": true},
                        "amount": {"type": "integer", "required": true},
                        "currency": {"type": "string", "required": true},
                        "reason": {"type": "string"}
                    }))
                    .idempotency(Idempotency::Keyed),
            )
            .action(
                Action::new(GET_PAYMENT)
                    .read_by_host()
                    .describe("GET /v2/payments/{id}")
                    .input(json!({"id": {"type": "string", "required": true}}))
                    .safe(),
            )
            .action(
                Action::new(PING)
                    .describe("GET /v2/locations: healthy when Square answers 2xx")
                    .safe(),
            )
    }

    fn request(req: &Request) -> Result<http::Request, Error> {
        let money = |req: &Request| -> Result<Value, Error> {
            let amount = req.i64("amount")?;
            if amount < 0 {
                return Err(Error::rejected(format!(
                    "`amount` is {amount}; it must be at least 0 (in the currency's smallest unit)"
                )));
            }
            Ok(json!({"amount": amount, "currency": req.str("currency")?.to_ascii_uppercase()}))
        };
        let key = || {
            if req.idempotency_key.is_empty() {
                Err(Error::rejected(
                    "Square needs an idempotency key for this action; give the run one",
                ))
            } else {
                Ok(req.idempotency_key.clone())
            }
        };
        let request = match req.action.as_str() {
            CREATE_PAYMENT => {
                let mut body = json!({
                    "source_id": req.str("source_id")?,
                    "idempotency_key": key()?,
                    "amount_money": money(req)?,
                });
                for k in [
                    "location_id",
                    "customer_id",
                    "reference_id",
                    "note",
                    "verification_token",
                ] {
                    if let Some(v) = req.opt_str(k)? {
                        body[k] = json!(v);
                    }
                }
                if body.get("location_id").is_none()
                    && let Some(l) = config::get("location_id")
                {
                    body["location_id"] = json!(l);
                }
                if let Some(a) = req.get("autocomplete") {
                    body["autocomplete"] = a.clone();
                }
                http::Request::post(format!("{}/v2/payments", base())).json(&body)
            }
            REFUND => {
                let mut body = json!({
                    "idempotency_key": key()?,
                    "payment_id": req.str("payment_id")?,
                    "amount_money": money(req)?,
                });
                if let Some(r) = req.opt_str("reason")? {
                    body["reason"] = json!(r);
                }
                http::Request::post(format!("{}/v2/refunds", base())).json(&body)
            }
            GET_PAYMENT => http::Request::get(format!(
                "{}/v2/payments/{}",
                base(),
                percent_encode(req.str("id")?)
            )),
            PING => http::Request::get(format!("{}/v2/locations", base())),
            _ => return Err(req.unknown_action()),
        };
        Ok(versioned(request))
    }

    fn response(req: &Request, answer: http::Response) -> Result<Value, Error> {
        if !(200..300).contains(&answer.status) {
            let effect = matches!(req.action.as_str(), CREATE_PAYMENT | REFUND);
            return Err(square_error(&answer, effect));
        }
        if req.action == PING {
            return Ok(json!({"ok": true}));
        }
        answer.json()
    }
}

/// Square's `{"errors": [{"category", "code", "detail", "field"}]}` to an
/// adapter error.
fn square_error(answer: &http::Response, effect: bool) -> Error {
    let status = answer.status;
    let body: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
    let first = body["errors"]
        .as_array()
        .and_then(|e| e.first())
        .cloned()
        .unwrap_or(Value::Null);
    let field = |k: &str| first[k].as_str().map(str::to_string);
    let code = field("code").unwrap_or_else(|| format!("http_{status}"));
    let category = field("category").unwrap_or_default();
    let mut message = field("detail").unwrap_or_else(|| answer.snippet(300));
    if let Some(f) = field("field") {
        message = format!("{message} (field `{f}`)");
    }
    if let Some(v) = answer.header("sl-violations") {
        message = format!("{message}; violations: {v}");
    }
    let message = format!("square {status} {category} {code}: {message}");
    let error = match status {
        401 | 403 => Error::internal(message).with_status(status),
        // Square does not promise a 500 did nothing: for a payment or a
        // refund the host retries this account with the same key.
        500 | 502 | 504 if effect => Error::ambiguous(message).with_status(status),
        _ => Error::from_status(status, message, answer.retry_after()),
    };
    error.with_code(code)
}

export_exchange!(Square);
