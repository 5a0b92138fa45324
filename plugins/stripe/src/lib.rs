//! Stripe adapter.
//!
//! An exchange-world adapter: it describes each request, the host sends it
//! (and adds the secret key) and hands back the answer.
//!
//! Calls Stripe's REST API (`https://api.stripe.com`, or `api_base` from
//! config): form-encoded bodies with Stripe's bracket notation for nested
//! fields, the run's idempotency key as `Idempotency-Key` on every POST,
//! `Stripe-Version` from config. The secret key is never seen here: the
//! host adds `Authorization: Bearer sk_…` at egress from the app's grant.
//!
//! Config keys: `api_base` (default `https://api.stripe.com`),
//! `stripe_version` (e.g. `2023-08-16`; default: the account's),
//! `stripe_account` (a Connect account id sent as `Stripe-Account`).
//!
//! Errors keep Stripe's `type`, `code`, `decline_code` and `param`: card
//! declines and invalid requests are `rejected` (code = decline code or
//! error code), 429 `rate-limited`, 5xx `unavailable`, authentication and
//! permission errors `internal` (a grant problem: not retried, failed over).

use serde_json::{Map, Value, json};
use switchyard_guest::http::{self, bracket_pairs, form_encode, percent_encode};
use switchyard_guest::{
    Action, AppInfo, Error, Exchange, Idempotency, Request, config, export_exchange,
};

struct Stripe;

const CREATE_PAYMENT_INTENT: &str = "create-payment-intent";
const CREATE_CHARGE: &str = "create-charge";
const CREATE_REFUND: &str = "create-refund";
const RETRIEVE_PAYMENT_INTENT: &str = "retrieve-payment-intent";
const PING: &str = "ping";

impl Exchange for Stripe {
    fn describe() -> AppInfo {
        let money = |extra: Value| {
            let mut schema = json!({
                "amount": {"type": "integer", "required": true, "description": "in the currency's smallest unit"},
                "currency": {"type": "string", "required": true, "description": "ISO code, lower case"},
                "description": {"type": "string"},
                "customer": {"type": "string"},
                "metadata": {"type": "object"},
                "statement_descriptor": {"type": "string"},
                "receipt_email": {"type": "string"}
            });
            if let (Some(s), Value::Object(e)) = (schema.as_object_mut(), extra) {
                s.extend(e);
            }
            schema
        };
        AppInfo::new("stripe", env!("CARGO_PKG_VERSION"))
            .action(
                Action::new(CREATE_PAYMENT_INTENT)
                    .read_by_host()
                    .describe("POST /v1/payment_intents (idempotent with the run's key)")
                    .input(money(json!({
                        "payment_method": {"type": "string"},
                        "payment_method_types": {"type": "array"},
                        "confirm": {"type": "boolean"},
                        "capture_method": {"type": "string"}
                    })))
                    .idempotency(Idempotency::Keyed),
            )
            .action(
                Action::new(CREATE_CHARGE)
                    .read_by_host()
                    .describe("POST /v1/charges (idempotent with the run's key)")
                    .input(money(json!({
                        "source": {"type": "string"},
                        "capture": {"type": "boolean"}
                    })))
                    .idempotency(Idempotency::Keyed),
            )
            .action(
                Action::new(CREATE_REFUND)
                    .read_by_host()
                    .describe("POST /v1/refunds for a charge or payment intent (idempotent with the run's key)")
                    .input(json!({
                        "charge": {"type": "string"},
                        "payment_intent": {"type": "string"},
                        "amount": {"type": "integer"},
                        "reason": {"type": "string"},
                        "metadata": {"type": "object"}
                    }))
                    .idempotency(Idempotency::Keyed),
            )
            .action(
                Action::new(RETRIEVE_PAYMENT_INTENT)
                    .read_by_host()
                    .describe("GET /v1/payment_intents/{id}")
                    .input(json!({"id": {"type": "string", "required": true}}))
                    .safe(),
            )
            .action(
                Action::new(PING)
                    .describe("GET /v1/balance: healthy when Stripe answers 2xx")
                    .safe(),
            )
    }

    fn request(req: &Request) -> Result<http::Request, Error> {
        let base = config::get("api_base").unwrap_or_else(|| "https://api.stripe.com".into());
        let base = base.trim_end_matches('/');
        let mut fields = req.input.as_object().cloned().unwrap_or_default();
        // Stripe wants ISO codes in lower case; a caller routing one input
        // to several processors may send `USD`.
        if let Some(Value::String(c)) = fields.get_mut("currency") {
            *c = c.to_ascii_lowercase();
        }
        let request = match req.action.as_str() {
            CREATE_PAYMENT_INTENT | CREATE_CHARGE => {
                req.i64("amount")?;
                req.str("currency")?;
                let path = if req.action == CREATE_CHARGE {
                    "/v1/charges"
                } else {
                    "/v1/payment_intents"
                };
                post(req, &format!("{base}{path}"), &fields)
            }
            CREATE_REFUND => {
                if req.get("charge").is_none() && req.get("payment_intent").is_none() {
                    return Err(Error::rejected(
                        "input needs `charge` or `payment_intent`: the payment to refund",
                    ));
                }
                post(req, &format!("{base}/v1/refunds"), &fields)
            }
            RETRIEVE_PAYMENT_INTENT => {
                let id = req.str("id")?;
                http::Request::get(format!("{base}/v1/payment_intents/{}", percent_encode(id)))
            }
            PING => http::Request::get(format!("{base}/v1/balance")),
            _ => return Err(req.unknown_action()),
        };
        Ok(with_account_headers(request))
    }

    fn response(req: &Request, answer: http::Response) -> Result<Value, Error> {
        if !(200..300).contains(&answer.status) {
            return Err(stripe_error(req, &answer));
        }
        if req.action == PING {
            return Ok(json!({"ok": true}));
        }
        answer.json()
    }
}

fn post(req: &Request, url: &str, fields: &Map<String, Value>) -> http::Request {
    let pairs = bracket_pairs(fields);
    let body = form_encode(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let mut request = http::Request::post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.into_bytes());
    if !req.idempotency_key.is_empty() {
        request = request.header("idempotency-key", &req.idempotency_key);
    }
    request
}

/// `Stripe-Version` and `Stripe-Account` from config.
fn with_account_headers(mut request: http::Request) -> http::Request {
    if let Some(v) = config::get("stripe_version") {
        request = request.header("stripe-version", v);
    }
    if let Some(a) = config::get("stripe_account") {
        request = request.header("stripe-account", a);
    }
    request
}

/// Stripe's error envelope `{"error": {"type", "code", "decline_code",
/// "param", "message"}}` to an adapter error.
fn stripe_error(req: &Request, response: &http::Response) -> Error {
    let status = response.status;
    let body: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    let e = body.get("error").cloned().unwrap_or(Value::Null);
    let field = |k: &str| e.get(k).and_then(Value::as_str).map(str::to_string);
    let kind = field("type").unwrap_or_else(|| format!("http_{status}"));
    let code = field("decline_code").or_else(|| field("code"));
    let mut message = field("message").unwrap_or_else(|| response.snippet(300));
    if let Some(p) = field("param") {
        message = format!("{message} (param `{p}`)");
    }
    // A validating proxy (Prism) explains invalid requests in this header.
    if let Some(v) = response.header("sl-violations") {
        message = format!("{message}; violations: {v}");
    }
    let mut parts = vec![format!("type {kind}")];
    if let Some(c) = field("code") {
        parts.push(format!("code {c}"));
    }
    if let Some(d) = field("decline_code") {
        parts.push(format!("decline_code {d}"));
    }
    let message = format!("stripe {status} ({}): {message}", parts.join(", "));
    // Stripe calls a 500 indeterminate (the charge may exist), and a 504
    // from its edge says the API may still be working: for an action with
    // an effect both are ambiguous, so the host retries this account with
    // the same key and never moves the payment elsewhere.
    let effect = matches!(
        req.action.as_str(),
        CREATE_PAYMENT_INTENT | CREATE_CHARGE | CREATE_REFUND
    );
    let error = match (status, kind.as_str()) {
        (401 | 403, _) | (_, "authentication_error") => {
            Error::internal(message).with_status(status)
        }
        (500 | 504, _) if effect => Error::ambiguous(message).with_status(status),
        _ => Error::from_status(status, message, response.retry_after()),
    };
    error.with_code(code.unwrap_or(kind))
}

export_exchange!(Stripe);
