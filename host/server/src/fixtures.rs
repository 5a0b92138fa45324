//! Recorded provider exchanges for exchange-world adapters: a fixture file
//! holds cases (an action, its input, the requests the adapter described
//! and the provider's answers, and the outcome), recorded once from a real
//! or fake provider and replayed with no network by `switchyard plugin
//! test`. Because an exchange adapter's steps are pure, a replay checks
//! exactly what it sends and what it makes of each answer.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use switchyard_engine::{AttemptError, CallRequest, CallResponse};
use switchyard_runtime::{Answered, App, Described};

/// A fixture file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fixtures {
    /// The plain settings the adapter is loaded with for every case (its
    /// grant's `config`; never secrets).
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// The cases, run in order.
    #[serde(default)]
    pub cases: Vec<Case>,
}

/// One call and what it exchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// Unique within the file.
    pub name: String,
    /// The action.
    pub action: String,
    /// The input.
    #[serde(default)]
    pub input: Value,
    /// The run's idempotency key (fixed, so what the adapter sends is too).
    #[serde(default = "fixture_key")]
    pub idempotency_key: String,
    /// The env.
    #[serde(default = "fixture_env")]
    pub env: String,
    /// Each request the adapter described, with the provider's answer.
    #[serde(default)]
    pub exchanges: Vec<Exchange>,
    /// What the call must end with.
    pub expect: Expect,
}

fn fixture_key() -> String {
    "fixture-key".into()
}

fn fixture_env() -> String {
    "dev".into()
}

/// A request as described (without the host's credentials) and its answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exchange {
    /// What the adapter asked the host to send.
    pub request: RecordedRequest,
    /// What the provider answered.
    pub response: RecordedResponse,
}

/// A described request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedRequest {
    /// Method.
    pub method: String,
    /// URL.
    pub url: String,
    /// Headers (compared without regard to order or the names' case).
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// Body, as text.
    #[serde(default)]
    pub body: String,
}

/// A provider's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedResponse {
    /// Status.
    pub status: u16,
    /// Headers.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// Body, as text.
    #[serde(default)]
    pub body: String,
}

/// The outcome a case expects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Expect {
    /// The call's output, exactly.
    Output(Value),
    /// A failure of this class, and status and code when given.
    Error {
        /// `rejected`, `unavailable`, `rate-limited`, `timeout`,
        /// `ambiguous` or `internal`.
        class: String,
        /// The provider's HTTP status.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status: Option<u16>,
        /// The provider's error code.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<String>,
    },
}

impl Expect {
    /// What a call's result expects of a replay.
    pub fn of(result: &Result<CallResponse, AttemptError>) -> Self {
        match result {
            Ok(r) => Self::Output(r.output.clone()),
            Err(e) => Self::Error {
                class: e.class.as_str().to_string(),
                status: e.status,
                code: e.code.clone(),
            },
        }
    }
}

/// Why a fixture file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    /// Unreadable or unwritable.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Not a fixture file.
    #[error(
        "{path}: not a fixture file: {reason}; see docs/adapter-guide.md § Testing with recorded exchanges"
    )]
    Format {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A body that is not UTF-8 text.
    #[error("case `{case}`: the {what} body is not UTF-8 text; fixtures hold text bodies")]
    Binary {
        /// The case.
        case: String,
        /// `request` or `response`.
        what: &'static str,
    },
}

impl Fixtures {
    /// Read a fixture file.
    pub fn load(path: &Path) -> Result<Self, FixtureError> {
        let text = std::fs::read_to_string(path).map_err(|source| FixtureError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let f: Self = serde_json::from_str(&text).map_err(|e| FixtureError::Format {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let mut names: Vec<&str> = f.cases.iter().map(|c| c.name.as_str()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(FixtureError::Format {
                path: path.display().to_string(),
                reason: format!("case `{}` appears twice", w[0]),
            });
        }
        Ok(f)
    }

    /// Write it, pretty-printed (cases diff well in review).
    pub fn save(&self, path: &Path) -> Result<(), FixtureError> {
        let text = serde_json::to_string_pretty(self).expect("fixtures serialize") + "\n";
        std::fs::write(path, text).map_err(|source| FixtureError::Io {
            path: path.display().to_string(),
            source,
        })
    }

    /// Add `case`, replacing a case of the same name.
    pub fn put(&mut self, case: Case) {
        match self.cases.iter_mut().find(|c| c.name == case.name) {
            Some(c) => *c = case,
            None => self.cases.push(case),
        }
    }
}

impl Case {
    /// The request a case makes.
    pub fn request(&self) -> CallRequest {
        let mut r = CallRequest::new(self.action.clone(), self.input.clone())
            .deadline(Duration::from_secs(10));
        r.idempotency_key.clone_from(&self.idempotency_key);
        r.env.clone_from(&self.env);
        r
    }

    /// A case from a live call's recording.
    pub fn recorded(
        name: &str,
        request: &CallRequest,
        exchanges: Vec<(Described, Answered)>,
        result: &Result<CallResponse, AttemptError>,
    ) -> Result<Self, FixtureError> {
        let text = |b: Vec<u8>, what| {
            String::from_utf8(b).map_err(|_| FixtureError::Binary {
                case: name.to_string(),
                what,
            })
        };
        let mut recorded = Vec::with_capacity(exchanges.len());
        for (d, a) in exchanges {
            recorded.push(Exchange {
                request: RecordedRequest {
                    method: d.method,
                    url: d.url,
                    headers: d.headers,
                    body: text(d.body, "request")?,
                },
                response: RecordedResponse {
                    status: a.status,
                    headers: a.headers,
                    body: text(a.body, "response")?,
                },
            });
        }
        Ok(Self {
            name: name.to_string(),
            action: request.action.clone(),
            input: request.input.clone(),
            idempotency_key: request.idempotency_key.clone(),
            env: request.env.clone(),
            exchanges: recorded,
            expect: Expect::of(result),
        })
    }

    /// Replay the case on `app` (loaded with the file's config): every
    /// request must be the recorded one, in order, and the outcome the
    /// expected one. `Err` says what differs.
    pub async fn replay(&self, app: &App) -> Result<(), String> {
        let mut next = 0usize;
        let mut mismatch: Option<String> = None;
        let exchanges = &self.exchanges;
        let mut provider = |d: &Described| -> Result<Answered, String> {
            let Some(x) = exchanges.get(next) else {
                let why = format!(
                    "request {} ({} {}) was not recorded; the case has {} exchanges",
                    next + 1,
                    d.method,
                    d.url,
                    exchanges.len()
                );
                mismatch.get_or_insert(why.clone());
                return Err(why);
            };
            next += 1;
            if let Some(why) = differs(&x.request, d) {
                let why = format!("request {next}: {why}");
                mismatch.get_or_insert(why.clone());
                return Err(why);
            }
            Ok(Answered {
                status: x.response.status,
                headers: x.response.headers.clone(),
                body: x.response.body.clone().into_bytes(),
            })
        };
        let result = app.replay(self.request(), &mut provider).await;
        if let Some(why) = mismatch {
            return Err(why);
        }
        if next < exchanges.len() {
            return Err(format!(
                "the adapter made {next} requests; {} were recorded",
                exchanges.len()
            ));
        }
        let got = Expect::of(&result);
        if got != self.expect {
            let detail = match &result {
                Err(e) => format!(" ({e})"),
                Ok(_) => String::new(),
            };
            return Err(format!(
                "expected {}, got {}{detail}",
                serde_json::to_string(&self.expect).expect("serializes"),
                serde_json::to_string(&got).expect("serializes"),
            ));
        }
        Ok(())
    }
}

/// How a described request differs from the recorded one, if it does.
fn differs(want: &RecordedRequest, got: &Described) -> Option<String> {
    if !want.method.eq_ignore_ascii_case(&got.method) || want.url != got.url {
        return Some(format!(
            "sent {} {}, recorded {} {}",
            got.method, got.url, want.method, want.url
        ));
    }
    let norm = |h: &[(String, String)]| {
        let mut v: Vec<(String, String)> = h
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect();
        v.sort();
        v
    };
    let (w, g) = (norm(&want.headers), norm(&got.headers));
    if w != g {
        return Some(format!("headers {g:?}, recorded {w:?}"));
    }
    let body = String::from_utf8_lossy(&got.body);
    if body != want.body {
        return Some(format!("body {body:?}, recorded {:?}", want.body));
    }
    None
}
