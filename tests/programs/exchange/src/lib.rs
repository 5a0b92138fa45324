//! An exchange-world adapter for the host's tests: a call in several steps
//! (fetch a token, then use it), and one action per way an exchange
//! adapter can misbehave. The host must contain each with a typed error.

use serde_json::{Value, json};
use switchyard_guest::{Action, AppInfo, Error, Request, Step, Steps, config, export_steps, http};

struct Exchange;

fn base() -> Result<String, Error> {
    config::require("base_url")
}

impl Steps for Exchange {
    fn describe() -> AppInfo {
        let mut info = AppInfo::new("exchange", "0.1.0");
        for name in [
            "two-steps",
            "echo",
            "post",
            "big-state",
            "bad-url",
            "loop-in-resume",
            "wasi-http",
            "endless",
        ] {
            info = info.action(Action::new(name).idempotent(name == "echo"));
        }
        // Like `post`, but a 2xx JSON answer is read by the host: `resume`
        // (which wraps the answer as `{"status", "body"}`) runs only for
        // the answers the host leaves to it.
        info.action(Action::new("read-by-host").read_by_host())
    }

    fn start(call: &Request) -> Result<Step, Error> {
        let base = base()?;
        match call.action.as_str() {
            // Step 1: a token from /token; step 2 (resume) uses it.
            "two-steps" => Ok(Step::send_with(
                http::Request::post(format!("{base}/token")).json(&json!({})),
                &json!({"phase": "token"}),
            )),
            "echo" => Ok(Step::Done(json!({
                "input": call.input,
                "idempotency_key": call.idempotency_key,
                "remaining_ms": call.remaining().as_millis() as u64,
            }))),
            "post" | "read-by-host" => Ok(Step::send(
                http::Request::post(format!("{base}/v1/messages"))
                    .header("idempotency-key", call.idempotency_key.clone())
                    .json(&call.input),
            )),
            "big-state" => Ok(Step::Send(
                http::Request::get(format!("{base}/health")),
                vec![7u8; 2 << 20],
            )),
            "bad-url" => Ok(Step::send(http::Request::get("not a url"))),
            "loop-in-resume" | "endless" => {
                Ok(Step::send(http::Request::get(format!("{base}/health"))))
            }
            // An exchange adapter has no network of its own: the host
            // refuses whatever it tries.
            "wasi-http" => {
                let r = http::Request::get(format!("{base}/health")).send();
                Ok(Step::Done(json!({"sent": r.is_ok()})))
            }
            _ => Err(call.unknown_action()),
        }
    }

    fn resume(call: &Request, state: Vec<u8>, answer: http::Response) -> Result<Step, Error> {
        let base = base()?;
        match call.action.as_str() {
            "two-steps" => {
                let state: Value = serde_json::from_slice(&state)
                    .map_err(|e| Error::internal(format!("state: {e}")))?;
                if state["phase"] == "token" {
                    let token = answer.error_for_status()?.text();
                    return Ok(Step::send_with(
                        http::Request::post(format!("{base}/v1/messages"))
                            .header("x-token", token.clone())
                            .json(&call.input),
                        &json!({"phase": "send", "token": token}),
                    ));
                }
                let sent = answer.error_for_status()?.json()?;
                Ok(Step::Done(json!({"token": state["token"], "sent": sent})))
            }
            "loop-in-resume" => {
                let mut n = 0u64;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            // Never done: the per-call request cap ends it.
            "endless" => Ok(Step::send(http::Request::get(format!("{base}/health")))),
            _ => Ok(Step::Done(json!({
                "status": answer.status,
                "body": answer.text(),
            }))),
        }
    }
}

export_steps!(Exchange);
