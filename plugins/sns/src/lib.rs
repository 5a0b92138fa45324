//! AWS SNS adapter (query protocol, API version 2010-03-31).
//!
//! `publish` sends `Action=Publish` to a phone number, a topic ARN or a
//! target ARN, with message attributes and FIFO group / deduplication ids
//! when given; `publish-fifo` publishes to a FIFO topic with the run's
//! idempotency key as deduplication id (so repeating it is safe); `ping`
//! lists topics. Responses are XML; the adapter reads `MessageId` and the
//! error `Code` / `Message`.
//!
//! An exchange-world adapter: it describes the request; the host sends it,
//! signed with AWS SigV4 over the exact body at egress (credential
//! `aws-sigv4` with service `sns` and the app's region in the grant): the
//! secret key never enters the sandbox.
//!
//! Config keys: `region` (required, e.g. `us-east-1`), `endpoint` (default
//! `https://sns.{region}.amazonaws.com`).

use serde_json::{Map, Value, json};
use switchyard_guest::http::{self, form_encode};
use switchyard_guest::{
    Action, AppInfo, Error, Exchange, Idempotency, Request, config, export_exchange,
};

struct Sns;

const PUBLISH: &str = "publish";
const PUBLISH_FIFO: &str = "publish-fifo";
const PING: &str = "ping";
const VERSION: &str = "2010-03-31";

fn publish_schema(fifo: bool) -> Value {
    let mut s = json!({
        "Message": {"type": "string", "required": true},
        "Subject": {"type": "string"},
        "MessageStructure": {"type": "string"},
        "MessageAttributes": {"type": "object", "description": "name → string, or name → {DataType, StringValue}"},
        "MessageDeduplicationId": {"type": "string"}
    });
    let m = s.as_object_mut().expect("object");
    if fifo {
        m.insert(
            "TopicArn".into(),
            json!({"type": "string", "required": true}),
        );
        m.insert(
            "MessageGroupId".into(),
            json!({"type": "string", "required": true}),
        );
    } else {
        m.insert("PhoneNumber".into(), json!({"type": "string"}));
        m.insert("TopicArn".into(), json!({"type": "string"}));
        m.insert("TargetArn".into(), json!({"type": "string"}));
        m.insert("MessageGroupId".into(), json!({"type": "string"}));
    }
    s
}

impl Exchange for Sns {
    fn describe() -> AppInfo {
        AppInfo::new("sns", env!("CARGO_PKG_VERSION"))
            .action(
                Action::new(PUBLISH)
                    .describe("Publish to exactly one of PhoneNumber, TopicArn, TargetArn (not idempotent)")
                    .input(publish_schema(false)),
            )
            .action(
                Action::new(PUBLISH_FIFO)
                    .describe("Publish to a FIFO topic, deduplicated by the run's idempotency key (keyed)")
                    .input(publish_schema(true))
                    .idempotency(Idempotency::Keyed),
            )
            .action(
                Action::new(PING)
                    .describe("ListTopics: healthy when SNS answers 2xx")
                    .safe(),
            )
    }

    fn request(req: &Request) -> Result<http::Request, Error> {
        let region = config::require("region")?;
        let endpoint = config::get("endpoint")
            .unwrap_or_else(|| format!("https://sns.{region}.amazonaws.com"));
        let url = format!("{}/", endpoint.trim_end_matches('/'));
        let mut params: Vec<(String, String)> = Vec::new();
        match req.action.as_str() {
            PUBLISH | PUBLISH_FIFO => publish_params(req, &mut params)?,
            PING => params.push(("Action".into(), "ListTopics".into())),
            _ => return Err(req.unknown_action()),
        }
        params.push(("Version".into(), VERSION.into()));
        let body = form_encode(params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        Ok(http::Request::post(url)
            .header(
                "content-type",
                "application/x-www-form-urlencoded; charset=utf-8",
            )
            .body(body.into_bytes()))
    }

    fn response(req: &Request, response: http::Response) -> Result<Value, Error> {
        let text = response.text();
        if !(200..300).contains(&response.status) {
            return Err(sns_error(&response, &text));
        }
        if req.action == PING {
            return Ok(json!({"ok": true}));
        }
        let id = tag(&text, "MessageId").ok_or_else(|| {
            // SNS answered 2xx, so the message may well be out.
            Error::ambiguous(format!(
                "SNS answered {} without a MessageId: {text}",
                response.status
            ))
        })?;
        let mut out = json!({"MessageId": id});
        if let Some(seq) = tag(&text, "SequenceNumber") {
            out["SequenceNumber"] = json!(seq);
        }
        if let Some(rid) = tag(&text, "RequestId") {
            out["RequestId"] = json!(rid);
        }
        Ok(out)
    }
}

fn publish_params(req: &Request, params: &mut Vec<(String, String)>) -> Result<(), Error> {
    let fifo = req.action == PUBLISH_FIFO;
    params.push(("Action".into(), "Publish".into()));
    let message = req.str("Message")?;
    if message.is_empty() {
        return Err(Error::rejected(
            "input.Message is empty; SNS needs a message",
        ));
    }
    params.push(("Message".into(), message.into()));
    let targets: Vec<&str> = ["PhoneNumber", "TopicArn", "TargetArn"]
        .into_iter()
        .filter(|t| req.get(t).is_some())
        .collect();
    if targets.len() != 1 {
        return Err(Error::rejected(format!(
            "input needs exactly one of PhoneNumber, TopicArn, TargetArn (got {})",
            if targets.is_empty() {
                "none".to_string()
            } else {
                targets.join(", ")
            }
        )));
    }
    for field in [
        "PhoneNumber",
        "TopicArn",
        "TargetArn",
        "Subject",
        "MessageStructure",
        "MessageGroupId",
        "MessageDeduplicationId",
    ] {
        if let Some(v) = req.opt_str(field)? {
            params.push((field.into(), v.into()));
        }
    }
    if fifo {
        req.str("MessageGroupId")?;
        if req.get("MessageDeduplicationId").is_none() {
            if req.idempotency_key.is_empty() {
                return Err(Error::rejected(
                    "publish-fifo needs MessageDeduplicationId or a run idempotency key",
                ));
            }
            // SNS allows at most 128 characters.
            let key: String = req.idempotency_key.chars().take(128).collect();
            params.push(("MessageDeduplicationId".into(), key));
        }
    }
    if let Some(attrs) = req.get("MessageAttributes") {
        let Value::Object(attrs) = attrs else {
            return Err(Error::rejected("input.MessageAttributes must be an object"));
        };
        attribute_params(attrs, params)?;
    }
    Ok(())
}

/// `MessageAttributes.entry.N.Name` / `.Value.DataType` / `.Value.StringValue`.
fn attribute_params(
    attrs: &Map<String, Value>,
    params: &mut Vec<(String, String)>,
) -> Result<(), Error> {
    for (i, (name, v)) in attrs.iter().enumerate() {
        let n = i + 1;
        let (data_type, value) = match v {
            Value::String(s) => ("String".to_string(), s.clone()),
            Value::Number(x) => ("Number".to_string(), x.to_string()),
            Value::Object(o) => (
                o.get("DataType")
                    .and_then(Value::as_str)
                    .unwrap_or("String")
                    .to_string(),
                o.get("StringValue")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        Error::rejected(format!(
                            "input.MessageAttributes.{name}.StringValue is required"
                        ))
                    })?
                    .to_string(),
            ),
            _ => {
                return Err(Error::rejected(format!(
                    "input.MessageAttributes.{name} must be a string, a number or {{DataType, StringValue}}"
                )));
            }
        };
        let p = format!("MessageAttributes.entry.{n}");
        params.push((format!("{p}.Name"), name.clone()));
        params.push((format!("{p}.Value.DataType"), data_type));
        params.push((format!("{p}.Value.StringValue"), value));
    }
    Ok(())
}

/// The text of the first `<name>…</name>` element (SNS's XML is flat and
/// never uses attributes or CDATA where we read).
fn tag(xml: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{name}>"))? + start;
    Some(unescape(xml[start..end].trim()))
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// `<ErrorResponse><Error><Type/><Code/><Message/></Error>…` to an error.
fn sns_error(response: &http::Response, text: &str) -> Error {
    let status = response.status;
    let code = tag(text, "Code");
    let message = tag(text, "Message").unwrap_or_else(|| text.chars().take(300).collect());
    let message = format!("sns {status} {}: {message}", code.as_deref().unwrap_or(""));
    let error = match code.as_deref() {
        Some("Throttling" | "ThrottlingException" | "ThrottledException") => Error::RateLimited {
            detail: switchyard_guest::Detail {
                message,
                status: Some(status),
                code: None,
            },
            retry_after: response.retry_after(),
        },
        Some(
            "SignatureDoesNotMatch"
            | "InvalidClientTokenId"
            | "AuthorizationError"
            | "AccessDenied"
            | "IncompleteSignature"
            | "MissingAuthenticationToken",
        ) => Error::internal(message).with_status(status),
        _ if status == 403 => Error::internal(message).with_status(status),
        _ => Error::from_status(status, message, response.retry_after()),
    };
    match code {
        Some(c) => error.with_code(c),
        None => error,
    }
}

export_exchange!(Sns);
