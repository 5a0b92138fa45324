//! The exchange world's side: a request the adapter described, checked,
//! sent by the host and answered whole.

use super::denial::*;
use super::gate::*;
use super::transport::*;
use http_body_util::{BodyExt, Limited};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmtime_wasi_http::Error as HttpError;

/// A request an exchange-world adapter described, as it described it (the
/// host's credentials are not in it): what the host sends, and what a
/// fixture records and checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Described {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The absolute URL.
    pub url: String,
    /// Headers, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// A provider's whole answer to a [`Described`] request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answered {
    /// Status code.
    pub status: u16,
    /// Headers, names lower-case.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// Most header bytes (names and values) one described request may carry.
pub(crate) const MAX_EXCHANGE_HEADERS: usize = 16 << 10;

impl AppEgress {
    /// Hold the answers this app's calls read whole under `budget`.
    pub(crate) fn with_host_bytes(mut self, budget: Option<Arc<crate::held::HostBytes>>) -> Self {
        self.host_bytes = budget;
        self
    }

    /// Send a request an exchange-world adapter described, as the `made`th
    /// of its call, through the same gate as a guest's own requests. An
    /// `Err` means no HTTP answer: the call's log says why (a denial, a
    /// failure before or after the request left).
    pub(crate) async fn exchange(
        &self,
        log: &Mutex<CallLog>,
        request: Described,
        timeout: Option<Duration>,
        made: u32,
        deadline: Instant,
    ) -> Result<(Answered, Option<crate::held::Held>), HttpError> {
        let cap = self.limits.max_requests_per_call;
        if made > cap {
            self.deny(log, Denial::RequestCap(cap));
            return Err(HttpError::HttpRequestDenied);
        }
        let parts = match exchange_parts(&request, self.limits.max_request_body) {
            Ok(p) => p,
            Err(reason) => {
                log.lock().expect("call log").failed(reason);
                return Err(HttpError::HttpRequestUriInvalid);
            }
        };
        if let Err(denial) = self.admit(&parts.method, &parts.uri, &parts.headers) {
            self.deny(log, denial);
            return Err(HttpError::HttpRequestDenied);
        }
        let max = self.limits.max_response_body;
        // Sent only while the host can hold a whole answer: otherwise the
        // host's limit refuses it before anything leaves.
        if let Some(b) = &self.host_bytes
            && !b.room_for(max)
        {
            log.lock().expect("call log").host_full = Some(format!(
                "the host holds {} of its {} MiB for answers and request bodies in flight (server.max_buffered_mb), no room for another answer of up to {} KiB; nothing was sent",
                b.used() >> 20,
                b.cap() >> 20,
                max >> 10
            ));
            return Err(HttpError::HttpRequestDenied);
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        let timeout = timeout.map_or(remaining, |t| t.min(remaining));
        let response = dispatch(self, log, parts, request.body.into(), timeout).await?;
        let (parts, body) = response.into_parts();
        let mut held = self.host_bytes.as_ref().map(|b| b.hold());
        let read = async {
            let mut body = Limited::new(body, max);
            let mut buf = Vec::new();
            while let Some(frame) = body.frame().await {
                let Ok(data) = frame?.into_data() else {
                    continue;
                };
                // An answer on its way waits for room rather than fail:
                // its request may have acted.
                if let Some(h) = held.as_mut()
                    && !h.grow_by(data.len(), deadline).await
                {
                    return Ok(None);
                }
                buf.extend_from_slice(&data);
            }
            Ok(Some(buf))
        };
        let body = match tokio::time::timeout(
            deadline.saturating_duration_since(Instant::now()),
            read,
        )
        .await
        {
            Ok(Ok(Some(b))) => b,
            Ok(Ok(None)) => {
                log.lock().expect("call log").failed(
                    "the provider's answer did not arrive whole before the deadline: the host's byte budget had no room for it (server.max_buffered_mb)".into(),
                );
                return Err(HttpError::HttpResponseTimeout);
            }
            Ok(Err(e)) => {
                let reason = match response_body_error(e, max) {
                    HttpError::HttpResponseBodySize(_) => {
                        format!(
                            "the provider's answer was larger than the egress cap of {max} bytes (limits.egress.max_response_body)"
                        )
                    }
                    other => format!("the provider's answer broke off: {other}"),
                };
                log.lock().expect("call log").failed(reason);
                return Err(HttpError::HttpProtocolError);
            }
            Err(_) => {
                log.lock().expect("call log").failed(
                    "the provider's answer did not arrive whole before the deadline".into(),
                );
                return Err(HttpError::HttpResponseTimeout);
            }
        };
        let headers = parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        Ok((
            Answered {
                status: parts.status.as_u16(),
                headers,
                body,
            },
            held,
        ))
    }
}

/// The parts of a described request, checked: a method, an absolute URL,
/// headers within [`MAX_EXCHANGE_HEADERS`], a body within `max_body`.
pub(super) fn exchange_parts(
    r: &Described,
    max_body: usize,
) -> Result<http::request::Parts, String> {
    if r.body.len() > max_body {
        return Err(format!(
            "the request body was larger than the egress cap of {max_body} bytes (limits.egress.max_request_body)"
        ));
    }
    let size: usize = r
        .headers
        .iter()
        .map(|(k, v)| k.len().saturating_add(v.len()))
        .fold(0, usize::saturating_add);
    if size > MAX_EXCHANGE_HEADERS {
        return Err(format!(
            "the request's headers take {size} bytes; at most {MAX_EXCHANGE_HEADERS}"
        ));
    }
    let method = http::Method::from_bytes(r.method.as_bytes())
        .map_err(|_| format!("`{}` is not an HTTP method", r.method))?;
    let uri: http::Uri = r
        .url
        .parse()
        .map_err(|e| format!("`{}` is not a URL: {e}", r.url))?;
    if uri.scheme().is_none() || uri.authority().is_none() {
        return Err(format!("`{}` is not an absolute http(s) URL", r.url));
    }
    let mut builder = http::Request::builder().method(method).uri(uri);
    for (k, v) in &r.headers {
        let name = http::HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| format!("`{k}` is not a header name"))?;
        let value = http::HeaderValue::from_str(v)
            .map_err(|_| format!("the value of header `{k}` is not a header value"))?;
        builder = builder.header(name, value);
    }
    let (parts, ()) = builder
        .body(())
        .map_err(|e| format!("the request is not valid HTTP: {e}"))?
        .into_parts();
    Ok(parts)
}
