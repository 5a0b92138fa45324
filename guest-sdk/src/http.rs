//! A small blocking HTTP client over `wasi:http/outgoing-handler`.
//!
//! The host gates every request: the app's allowlist, credentials it adds
//! itself (do not set `Authorization`: the host refuses the request), and a
//! deadline. Failures come back already classified as [`Error`]: a failure
//! to connect is `unavailable` (the request never left), a failure after the
//! request was sent is `ambiguous` (the provider may have acted on it).

use crate::Error;
use crate::bindings::wasi::http::outgoing_handler;
use crate::bindings::wasi::http::types::{
    ErrorCode, Fields, IncomingResponse, Method, OutgoingBody, OutgoingRequest, RequestOptions,
    Scheme,
};
use crate::bindings::wasi::io::streams::StreamError;
use serde_json::Value;
use std::time::Duration;

/// Largest response body the client reads; larger answers are an error.
pub const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;
/// Default timeout of one request when none is set.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// `wasi:io` streams accept at most this much per blocking write.
const WRITE_CHUNK: usize = 4096;

/// A request being built.
#[derive(Debug, Clone)]
pub struct Request {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    timeout: Option<Duration>,
}

impl Request {
    /// A request with any method.
    pub fn new(method: impl Into<String>, url: impl Into<String>) -> Self {
        Self {
            method: method.into(),
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
            timeout: None,
        }
    }
    /// `GET url`.
    pub fn get(url: impl Into<String>) -> Self {
        Self::new("GET", url)
    }
    /// `POST url`.
    pub fn post(url: impl Into<String>) -> Self {
        Self::new("POST", url)
    }

    /// Add a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// A JSON body (`Content-Type: application/json`).
    pub fn json(self, body: &Value) -> Self {
        let bytes = body.to_string().into_bytes();
        self.header("content-type", "application/json").body(bytes)
    }

    /// A form body (`application/x-www-form-urlencoded`) from flat pairs.
    pub fn form<K: AsRef<str>, V: AsRef<str>>(self, pairs: &[(K, V)]) -> Self {
        let body = form_encode(pairs.iter().map(|(k, v)| (k.as_ref(), v.as_ref())));
        self.header("content-type", "application/x-www-form-urlencoded")
            .body(body.into_bytes())
    }

    /// A raw body.
    pub fn body(mut self, body: Vec<u8>) -> Self {
        self.body = body;
        self
    }

    /// Give up on this request after `timeout` (bounded by the host's deadline).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The request as the exchange world hands it to the host to send.
    pub(crate) fn into_exchange(
        self,
    ) -> crate::exchange_bindings::switchyard::adapter::exchange_types::HttpRequest {
        crate::exchange_bindings::switchyard::adapter::exchange_types::HttpRequest {
            method: self.method,
            url: self.url,
            headers: self.headers,
            body: self.body,
            timeout_ms: self.timeout.map(|t| t.as_millis() as u64),
        }
    }

    /// Send the request and read the whole answer.
    pub fn send(self) -> Result<Response, Error> {
        let url = Url::parse(&self.url)?;
        let fields = Fields::new();
        for (name, value) in &self.headers {
            fields.append(name, value.as_bytes()).map_err(|e| {
                Error::internal(format!("header `{name}` refused by the host: {e:?}"))
            })?;
        }
        let request = OutgoingRequest::new(fields);
        request
            .set_method(&method(&self.method))
            .map_err(|()| Error::internal(format!("invalid method `{}`", self.method)))?;
        request
            .set_scheme(Some(&url.scheme))
            .map_err(|()| Error::internal("invalid scheme"))?;
        request
            .set_authority(Some(&url.authority))
            .map_err(|()| Error::internal(format!("invalid authority `{}`", url.authority)))?;
        request
            .set_path_with_query(Some(&url.path_and_query))
            .map_err(|()| Error::internal(format!("invalid path `{}`", url.path_and_query)))?;
        let body = request
            .body()
            .map_err(|()| Error::internal("request body already taken"))?;

        let options = RequestOptions::new();
        let nanos = self.timeout.unwrap_or(DEFAULT_TIMEOUT).as_nanos() as u64;
        // The host may not support every timeout; it still bounds the call.
        let _ = options.set_connect_timeout(Some(nanos));
        let _ = options.set_first_byte_timeout(Some(nanos));
        let _ = options.set_between_bytes_timeout(Some(nanos));

        let future = outgoing_handler::handle(request, Some(options)).map_err(classify)?;
        let mut write_failed = false;
        {
            let stream = body
                .write()
                .map_err(|()| Error::internal("request body stream already taken"))?;
            for chunk in self.body.chunks(WRITE_CHUNK) {
                if stream.blocking_write_and_flush(chunk).is_err() {
                    // The real cause (refused, denied...) arrives on the future.
                    write_failed = true;
                    break;
                }
            }
        }
        if !write_failed {
            let _ = OutgoingBody::finish(body, None);
        }

        future.subscribe().block();
        let response = match future.get() {
            Some(Ok(Ok(response))) => response,
            Some(Ok(Err(code))) => return Err(classify(code)),
            Some(Err(())) => return Err(Error::internal("response already taken")),
            None => return Err(Error::internal("response not ready after block")),
        };
        read_response(response)
    }
}

fn read_response(response: IncomingResponse) -> Result<Response, Error> {
    let status = response.status();
    let headers = response
        .headers()
        .entries()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
        .collect();
    let incoming = response
        .consume()
        .map_err(|()| Error::internal("response body already taken"))?;
    let mut body = Vec::new();
    {
        let stream = incoming
            .stream()
            .map_err(|()| Error::internal("response stream already taken"))?;
        loop {
            match stream.blocking_read(64 * 1024) {
                Ok(chunk) => {
                    body.extend_from_slice(&chunk);
                    if body.len() > MAX_RESPONSE_BYTES {
                        return Err(Error::ambiguous(format!(
                            "response body larger than {MAX_RESPONSE_BYTES} bytes"
                        )));
                    }
                }
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(e)) => {
                    return Err(Error::ambiguous(format!(
                        "reading the response failed: {}",
                        e.to_debug_string()
                    )));
                }
            }
        }
    }
    drop(incoming);
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// A whole HTTP answer.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers, names lower-case.
    pub headers: Vec<(String, String)>,
    /// The body bytes.
    pub body: Vec<u8>,
}

impl Response {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// `Retry-After` in seconds, if the provider sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        self.header("retry-after")?
            .trim()
            .parse::<u64>()
            .ok()
            .map(Duration::from_secs)
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// At most `max` bytes of the body as text (lossy), cut on a character
    /// boundary: what an error message quotes of a provider's answer.
    pub fn snippet(&self, max: usize) -> String {
        let head = &self.body[..self.body.len().min(max.saturating_add(3))];
        crate::text::cut(&String::from_utf8_lossy(head), max).to_string()
    }

    /// The body parsed as JSON; `ambiguous` if it is not JSON (the provider
    /// answered, so the request was executed or not, we cannot tell).
    pub fn json(&self) -> Result<Value, Error> {
        serde_json::from_slice(&self.body).map_err(|e| {
            Error::ambiguous(format!("status {}, body is not JSON: {e}", self.status))
                .with_status(self.status)
        })
    }

    /// `Ok(self)` for 2xx; otherwise the error class of the status (see
    /// [`Error::from_status`]) with the body's first 512 bytes as message
    /// (cut on a character boundary).
    pub fn error_for_status(self) -> Result<Self, Error> {
        if (200..300).contains(&self.status) {
            return Ok(self);
        }
        Err(Error::from_status(
            self.status,
            self.snippet(512),
            self.retry_after(),
        ))
    }
}

/// Map a `wasi:http` error to the engine's classes: failures to connect
/// never reached the provider (`unavailable` / `timeout`); failures after the
/// request left are `ambiguous`.
fn classify(code: ErrorCode) -> Error {
    let text = format!("{code:?}");
    match code {
        ErrorCode::DnsTimeout | ErrorCode::ConnectionTimeout => Error::timeout(text),
        ErrorCode::DnsError(_)
        | ErrorCode::DestinationNotFound
        | ErrorCode::DestinationUnavailable
        | ErrorCode::DestinationIpProhibited
        | ErrorCode::DestinationIpUnroutable
        | ErrorCode::ConnectionRefused
        | ErrorCode::ConnectionLimitReached
        | ErrorCode::TlsProtocolError
        | ErrorCode::TlsCertificateError
        | ErrorCode::TlsAlertReceived(_) => Error::unavailable(text),
        ErrorCode::HttpRequestDenied => {
            Error::internal("the host's egress gate denied the request".to_string())
        }
        ErrorCode::HttpRequestMethodInvalid
        | ErrorCode::HttpRequestUriInvalid
        | ErrorCode::HttpRequestUriTooLong
        | ErrorCode::HttpRequestHeaderSectionSize(_)
        | ErrorCode::HttpRequestHeaderSize(_)
        | ErrorCode::HttpRequestBodySize(_)
        | ErrorCode::HttpRequestLengthRequired => Error::internal(text),
        _ => Error::ambiguous(text),
    }
}

fn method(m: &str) -> Method {
    match m.to_ascii_uppercase().as_str() {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "PATCH" => Method::Patch,
        "OPTIONS" => Method::Options,
        other => Method::Other(other.to_string()),
    }
}

struct Url {
    scheme: Scheme,
    authority: String,
    path_and_query: String,
}

impl Url {
    fn parse(url: &str) -> Result<Self, Error> {
        let bad = || Error::internal(format!("`{url}` is not an absolute http(s) URL"));
        let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            _ => return Err(bad()),
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            return Err(bad());
        }
        let path_and_query = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_string()
        };
        Ok(Self {
            scheme,
            authority: authority.to_string(),
            path_and_query,
        })
    }
}

/// Flatten a JSON object into form pairs with bracket notation, as Stripe,
/// Rails and PHP read them: `{"metadata": {"order": 42}, "types": ["card"]}`
/// → `metadata[order]=42`, `types[0]=card`. Strings are sent as is,
/// numbers and booleans as their JSON text; nulls are left out.
pub fn bracket_pairs(fields: &serde_json::Map<String, Value>) -> Vec<(String, String)> {
    fn walk(prefix: String, v: &Value, out: &mut Vec<(String, String)>) {
        match v {
            Value::Null => {}
            Value::String(s) => out.push((prefix, s.clone())),
            Value::Bool(_) | Value::Number(_) => out.push((prefix, v.to_string())),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    walk(format!("{prefix}[{i}]"), item, out);
                }
            }
            Value::Object(m) => {
                for (k, item) in m {
                    walk(format!("{prefix}[{k}]"), item, out);
                }
            }
        }
    }
    let mut out = Vec::new();
    for (k, v) in fields {
        walk(k.clone(), v, &mut out);
    }
    out
}

/// `application/x-www-form-urlencoded` encoding of `pairs`.
pub fn form_encode<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::new();
    for (k, v) in pairs {
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(&percent_encode(k));
        out.push('=');
        out.push_str(&percent_encode(v));
    }
    out
}

/// Percent-encode `s` for a URL path segment, query or form value.
pub fn percent_encode(s: &str) -> String {
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
    const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    utf8_percent_encode(s, UNRESERVED).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding_escapes_reserved_characters() {
        assert_eq!(
            form_encode([("To", "+1 555"), ("Body", "a&b=c")]),
            "To=%2B1%20555&Body=a%26b%3Dc"
        );
    }

    #[test]
    fn bracket_notation_flattens_objects_and_arrays() {
        let v = serde_json::json!({
            "amount": 1099, "confirm": true, "skip": null,
            "metadata": {"order": "42"}, "payment_method_types": ["card", "link"]
        });
        let pairs = bracket_pairs(v.as_object().unwrap());
        let got: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("amount", "1099"),
                ("confirm", "true"),
                ("metadata[order]", "42"),
                ("payment_method_types[0]", "card"),
                ("payment_method_types[1]", "link"),
            ]
        );
    }
}
