//! Twilio adapter (Programmable Messaging, API 2010-04-01).
//!
//! An exchange-world adapter: it describes each request, the host sends it
//! (adding the credentials) and hands back the answer.
//!
//! `send-sms` posts a form to `/2010-04-01/Accounts/{AccountSid}/Messages.json`;
//! `fetch-message` reads one back; `ping` reads the account. HTTP Basic
//! auth (Account SID + auth token) is added by the host at egress from the
//! app's grant: the token never enters the sandbox.
//!
//! Config keys: `account_sid` (required, `AC` + 32 hex digits; it is also in
//! every path), `api_base` (default `https://api.twilio.com`).
//!
//! Errors keep Twilio's numeric error code (`21211` invalid `To`, …):
//! 4xx `rejected`, 401/403 `internal` (a grant problem), 429
//! `rate-limited`, 5xx `unavailable`.

use serde_json::{Value, json};
use switchyard_guest::http::{self, form_encode, percent_encode};
use switchyard_guest::{Action, AppInfo, Error, Exchange, Request, config, export_exchange};

struct Twilio;

const SEND_SMS: &str = "send-sms";
const FETCH_MESSAGE: &str = "fetch-message";
const PING: &str = "ping";

impl Exchange for Twilio {
    fn describe() -> AppInfo {
        AppInfo::new("twilio", env!("CARGO_PKG_VERSION"))
            .action(
                Action::new(SEND_SMS)
                    .read_by_host()
                    .describe("POST Messages.json: send an SMS (not idempotent: Twilio has no idempotency key)")
                    .input(json!({
                        "To": {"type": "string", "required": true, "description": "E.164 number"},
                        "From": {"type": "string", "description": "sender number; or MessagingServiceSid"},
                        "MessagingServiceSid": {"type": "string"},
                        "Body": {"type": "string", "required": true},
                        "StatusCallback": {"type": "string"}
                    })),
            )
            .action(
                Action::new(FETCH_MESSAGE)
                    .read_by_host()
                    .describe("GET Messages/{Sid}.json")
                    .input(json!({"Sid": {"type": "string", "required": true}}))
                    .safe(),
            )
            .action(
                Action::new(PING)
                    .describe("GET Accounts/{AccountSid}.json: healthy when Twilio answers 2xx")
                    .safe(),
            )
    }

    fn request(req: &Request) -> Result<http::Request, Error> {
        let sid = config::require("account_sid")?;
        if !(sid.len() == 34
            && sid.starts_with("AC")
            && sid[2..].chars().all(|c| c.is_ascii_hexdigit()))
        {
            return Err(Error::internal(format!(
                "config `account_sid` = `{sid}` is not an Account SID (`AC` followed by 32 hex digits)"
            )));
        }
        let base = config::get("api_base").unwrap_or_else(|| "https://api.twilio.com".into());
        let account = format!("{}/2010-04-01/Accounts/{sid}", base.trim_end_matches('/'));
        Ok(match req.action.as_str() {
            SEND_SMS => {
                let to = req.str("To")?;
                let body = req.str("Body")?;
                let from = req.opt_str("From")?;
                let service = req.opt_str("MessagingServiceSid")?;
                if from.is_none() && service.is_none() {
                    return Err(Error::rejected(
                        "input needs `From` (a Twilio number) or `MessagingServiceSid`",
                    ));
                }
                let mut pairs = vec![("To", to), ("Body", body)];
                pairs.extend(from.map(|f| ("From", f)));
                pairs.extend(service.map(|s| ("MessagingServiceSid", s)));
                if let Some(cb) = req.opt_str("StatusCallback")? {
                    pairs.push(("StatusCallback", cb));
                }
                http::Request::post(format!("{account}/Messages.json"))
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(form_encode(pairs).into_bytes())
            }
            FETCH_MESSAGE => {
                let id = req.str("Sid")?;
                http::Request::get(format!("{account}/Messages/{}.json", percent_encode(id)))
            }
            PING => http::Request::get(format!("{account}.json")),
            _ => return Err(req.unknown_action()),
        })
    }

    fn response(req: &Request, response: http::Response) -> Result<Value, Error> {
        if !(200..300).contains(&response.status) {
            return Err(twilio_error(&response));
        }
        let out = response.json()?;
        Ok(if req.action == PING {
            json!({"ok": true, "status": out.get("status").cloned().unwrap_or(Value::Null)})
        } else {
            out
        })
    }
}

/// Twilio's error body `{"code": 21211, "message", "more_info", "status"}`
/// (or a problem+json validation list from a validating proxy).
fn twilio_error(response: &http::Response) -> Error {
    let status = response.status;
    let body: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    let code = body.get("code").map(|c| match c {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    });
    let mut message = body
        .get("message")
        .or_else(|| body.get("detail"))
        .or_else(|| body.get("title"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| response.snippet(300));
    if let Some(Value::Array(v)) = body.get("validation") {
        let reasons: Vec<String> = v
            .iter()
            .map(|e| {
                let loc = e.get("location").map(|l| l.to_string()).unwrap_or_default();
                let m = e.get("message").and_then(Value::as_str).unwrap_or("");
                format!("{loc} {m}")
            })
            .collect();
        message = format!("{message}: {}", reasons.join("; "));
    }
    if let Some(info) = body.get("more_info").and_then(Value::as_str) {
        message = format!("{message} ({info})");
    }
    let message = format!("twilio {status}: {message}");
    let error = match status {
        401 | 403 => Error::internal(message).with_status(status),
        _ => Error::from_status(status, message, response.retry_after()),
    };
    match code {
        Some(c) => error.with_code(c),
        None => error,
    }
}

export_exchange!(Twilio);
