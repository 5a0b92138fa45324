//! Adyen adapter.
//!
//! An exchange-world adapter over Adyen's Checkout API (v71): a payment
//! with the details the merchant holds (`/payments`), a refund of one
//! (`/payments/{pspReference}/refunds`), and the payment methods as a
//! health probe. The host adds `X-API-Key` at egress from the app's grant
//! (`scheme = "api-key-header"`); the adapter never sees it. Every POST
//! carries the run's key as `Idempotency-Key`, so a payment and a refund
//! are keyed (a repeat of the key at this account returns the first
//! result).
//!
//! Config keys: `api_base` (default `https://checkout-test.adyen.com/v71`;
//! live accounts have their own prefix), `merchant_account` (required),
//! `return_url` (default for payments that may redirect).
//!
//! A 200 answer is not always a payment: its `resultCode` decides.
//! `Authorised`, `Pending`, `Received` serve; `Refused` and `Cancelled`
//! are `rejected` (the code is the `refusalReasonCode`, the message the
//! `refusalReason`); `Error` is `unavailable` (Adyen could not process
//! it: retried, failed over); an action for the shopper
//! (`RedirectShopper`, `IdentifyShopper`, `ChallengeShopper`,
//! `PresentToShopper`) serves with its `action`, for the caller to hand
//! to the shopper. Non-2xx answers keep Adyen's `errorCode`.

use serde_json::{Value, json};
use switchyard_guest::http::{self, percent_encode};
use switchyard_guest::{
    Action, AppInfo, Error, Exchange, Idempotency, Request, config, export_exchange,
};

struct Adyen;

const PAYMENTS: &str = "payments";
const REFUND: &str = "refund";
const PING: &str = "ping";

fn base() -> String {
    config::get("api_base")
        .unwrap_or_else(|| "https://checkout-test.adyen.com/v71".into())
        .trim_end_matches('/')
        .to_string()
}

fn merchant() -> Result<String, Error> {
    config::get("merchant_account").ok_or_else(|| {
        Error::internal(
            "config `merchant_account` is not set: name the Adyen merchant account in the app's config",
        )
    })
}

impl Exchange for Adyen {
    fn describe() -> AppInfo {
        AppInfo::new("adyen", env!("CARGO_PKG_VERSION"))
            .action(
                Action::new(PAYMENTS)
                    .describe("POST /payments (idempotent with the run's key)")
                    .input(json!({
                        "amount": {"type": "integer", "required": true, "description": "in the currency's smallest unit"},
                        "currency": {"type": "string", "required": true},
                        "reference": {"type": "string", "required": true, "description": "the merchant's reference of the payment"},
                        "paymentMethod": {"type": "object", "required": true, "description": "Adyen's paymentMethod (`{\"type\": \"scheme\", \"storedPaymentMethodId\": …}`, encrypted card fields, …)"},
                        "shopperReference": {"type": "string"},
                        "shopperInteraction": {"type": "string"},
                        "recurringProcessingModel": {"type": "string"},
                        "returnUrl": {"type": "string"}
                    }))
                    .idempotency(Idempotency::Keyed),
            )
            .action(
                Action::new(REFUND)
                    .read_by_host()
                    .describe("POST /payments/{pspReference}/refunds (idempotent with the run's key)")
                    .input(json!({
                        "psp_reference": {"type": "string", "required": true},
                        "amount": {"type": "integer", "required": true},
                        "currency": {"type": "string", "required": true},
                        "reference": {"type": "string"}
                    }))
                    .idempotency(Idempotency::Keyed),
            )
            .action(
                Action::new(PING)
                    .describe("POST /paymentMethods: healthy when Adyen answers 2xx")
                    .safe(),
            )
    }

    fn request(req: &Request) -> Result<http::Request, Error> {
        let amount = |req: &Request| -> Result<Value, Error> {
            Ok(
                json!({"value": req.i64("amount")?, "currency": req.str("currency")?.to_ascii_uppercase()}),
            )
        };
        let keyed = |r: http::Request| {
            if req.idempotency_key.is_empty() {
                r
            } else {
                r.header("idempotency-key", &req.idempotency_key)
            }
        };
        Ok(match req.action.as_str() {
            PAYMENTS => {
                let method = req
                    .get("paymentMethod")
                    .filter(|m| m.is_object())
                    .ok_or_else(|| {
                        Error::rejected("`paymentMethod` must be Adyen's paymentMethod object")
                    })?;
                let mut body = json!({
                    "amount": amount(req)?,
                    "reference": req.str("reference")?,
                    "merchantAccount": merchant()?,
                    "paymentMethod": method,
                });
                let return_url = req
                    .opt_str("returnUrl")?
                    .map(str::to_string)
                    .or_else(|| config::get("return_url"));
                if let Some(u) = return_url {
                    body["returnUrl"] = json!(u);
                }
                for k in [
                    "shopperReference",
                    "shopperInteraction",
                    "recurringProcessingModel",
                ] {
                    if let Some(v) = req.opt_str(k)? {
                        body[k] = json!(v);
                    }
                }
                keyed(http::Request::post(format!("{}/payments", base())).json(&body))
            }
            REFUND => {
                let mut body = json!({"amount": amount(req)?, "merchantAccount": merchant()?});
                if let Some(r) = req.opt_str("reference")? {
                    body["reference"] = json!(r);
                }
                keyed(
                    http::Request::post(format!(
                        "{}/payments/{}/refunds",
                        base(),
                        percent_encode(req.str("psp_reference")?)
                    ))
                    .json(&body),
                )
            }
            PING => http::Request::post(format!("{}/paymentMethods", base()))
                .json(&json!({"merchantAccount": merchant()?})),
            _ => return Err(req.unknown_action()),
        })
    }

    fn response(req: &Request, answer: http::Response) -> Result<Value, Error> {
        let effect = req.action != PING;
        if !(200..300).contains(&answer.status) {
            return Err(adyen_error(&answer, effect));
        }
        if req.action == PING {
            return Ok(json!({"ok": true}));
        }
        let mut body = answer.json()?;
        if req.action != PAYMENTS {
            return Ok(body);
        }
        // A shopper action comes without a pspReference: the key is there
        // (null) so an output mapping can name it either way.
        if body.get("pspReference").is_none()
            && let Some(o) = body.as_object_mut()
        {
            o.insert("pspReference".into(), Value::Null);
        }
        let result = body["resultCode"].as_str().unwrap_or("");
        let reason = body["refusalReason"].as_str().unwrap_or(result).to_string();
        let code = body["refusalReasonCode"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| result.to_string());
        match result {
            "Refused" | "Cancelled" => Err(Error::rejected(format!(
                "adyen {result}: {reason} (pspReference {})",
                body["pspReference"].as_str().unwrap_or("-")
            ))
            .with_code(code)),
            "Error" => Err(Error::unavailable(format!(
                "adyen Error: {reason} (pspReference {})",
                body["pspReference"].as_str().unwrap_or("-")
            ))
            .with_code(code)),
            "" => Err(Error::ambiguous(
                "Adyen answered 2xx without a `resultCode`: the payment may exist",
            )),
            _ => Ok(body),
        }
    }
}

/// Adyen's `{status, errorCode, message, errorType, pspReference}` to an
/// adapter error.
fn adyen_error(answer: &http::Response, effect: bool) -> Error {
    let status = answer.status;
    let body: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
    let code = body["errorCode"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| format!("http_{status}"));
    let kind = body["errorType"].as_str().unwrap_or("");
    let mut message = body["message"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| answer.snippet(300));
    if let Some(p) = body["pspReference"].as_str() {
        message = format!("{message} (pspReference {p})");
    }
    if let Some(v) = answer.header("sl-violations") {
        message = format!("{message}; violations: {v}");
    }
    let message = format!("adyen {status} {kind} {code}: {message}");
    let error = match status {
        401 | 403 => Error::internal(message).with_status(status),
        500 | 502 | 504 if effect => Error::ambiguous(message).with_status(status),
        _ => Error::from_status(status, message, answer.retry_after()),
    };
    error.with_code(code)
}

export_exchange!(Adyen);
