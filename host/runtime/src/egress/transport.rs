//! What the transport's failures and bodies mean: the error a failed send
//! becomes, and reading an answer's body under its cap.

use super::client::{LookupFailed, ResolvedToForbidden};
use super::credentials::Credential;
use super::gate::*;
use super::memory::*;
use super::policy::*;
use http_body_util::{BodyExt, Full};
use std::error::Error as StdError;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};
use wasmtime_wasi_http::{Error as HttpError, WasiBody};

/// A request that got no HTTP answer: a denial after DNS, a name that did
/// not resolve, a refused or timed-out connection (none of which reached
/// the provider), or a connection that broke after sending (which may have).
pub(super) fn transport_failure(
    app: &AppEgress,
    log: &Mutex<CallLog>,
    authority: &str,
    e: &hyper_util::client::legacy::Error,
) -> HttpError {
    let mut log = log.lock().expect("call log");
    if let Some(ResolvedToForbidden(denial)) = find_source::<ResolvedToForbidden>(e) {
        app.counters.denied.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(app = %app.app, reason = %denial, "egress denied after DNS");
        log.reached = log.reached.saturating_sub(1);
        log.denials.push(denial.clone());
        return HttpError::DestinationIpProhibited;
    }
    app.counters.requests.fetch_add(1, Ordering::Relaxed);
    app.counters.failed.fetch_add(1, Ordering::Relaxed);
    if let Some(lookup) = find_source::<LookupFailed>(e) {
        log.reached = log.reached.saturating_sub(1);
        log.failed(lookup.to_string());
        return HttpError::DnsError {
            rcode: Some("NXDOMAIN or no answer".into()),
            info_code: None,
        };
    }
    if e.is_connect() {
        let timed_out = find_source::<std::io::Error>(e)
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut);
        log.reached = log.reached.saturating_sub(1);
        let what = if timed_out {
            "timed out"
        } else {
            "was refused"
        };
        log.failed(format!("connecting to {authority} {what}"));
        return if timed_out {
            HttpError::ConnectionTimeout
        } else {
            HttpError::ConnectionRefused
        };
    }
    log.failed(format!("the connection to {authority} broke: {e}"));
    HttpError::ConnectionTerminated
}

/// Why a request body was not buffered.
pub(super) enum BodyRefused {
    /// Over `limits.egress.max_request_body`.
    TooLarge,
    /// Over what the call's memory cap leaves.
    OverMemory(Refused),
    /// The guest's body stream failed.
    Broken(HttpError),
}

/// Collect a request body of at most `max` bytes, holding each chunk on
/// the call's memory account before keeping it.
pub(super) async fn buffer_body(
    body: &mut WasiBody,
    max: usize,
    held: &mut Held,
) -> Result<bytes::Bytes, BodyRefused> {
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(BodyRefused::Broken)?.into_data() else {
            continue;
        };
        if buf.len().saturating_add(data.len()) > max {
            return Err(BodyRefused::TooLarge);
        }
        held.grow(data.len()).map_err(BodyRefused::OverMemory)?;
        buf.extend_from_slice(&data);
    }
    Ok(buf.freeze())
}

pub(super) fn response_body_error(e: Box<dyn StdError + Send + Sync>, max: usize) -> HttpError {
    match e.downcast::<hyper::Error>() {
        Ok(h) => HttpError::Hyper(*h),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            HttpError::HttpResponseBodySize(Some(max as u64))
        }
        Err(e) => HttpError::InternalError(Some(e.to_string())),
    }
}

/// The first error of type `E` in `e`'s source chain.
pub(super) fn find_source<'a, E: StdError + 'static>(
    e: &'a (dyn StdError + 'static),
) -> Option<&'a E> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(found) = err.downcast_ref::<E>() {
            return Some(found);
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && let Some(found) = inner.downcast_ref::<E>()
        {
            return Some(found);
        }
        cur = err.source();
    }
    None
}

/// Send an admitted request with its whole body: credentials applied for
/// its origin, on the app's pooled client, within `timeout`, the outcome
/// counted and recorded in the call's log (reached, answered, why it
/// failed). Both adapter worlds send through here.
pub(super) async fn dispatch(
    app: &AppEgress,
    log: &Mutex<CallLog>,
    mut parts: http::request::Parts,
    body: bytes::Bytes,
    timeout: Duration,
) -> Result<http::Response<hyper::body::Incoming>, HttpError> {
    let authority = parts
        .uri
        .authority()
        .map_or_else(String::new, |a| a.to_string());
    let now = SystemTime::now();
    let origin = Origin::of_uri(&parts.uri);
    // What is needed to send it again with a fresh OAuth2 token after a
    // 401 (kept only for an app with such a credential: no copy on the
    // common path).
    let again = app.tokens.iter().any(Option::is_some).then(|| {
        (
            parts.method.clone(),
            parts.uri.clone(),
            parts.version,
            parts.headers.clone(),
        )
    });
    let used = authenticate(
        app,
        log,
        &mut parts,
        &body,
        origin.as_ref(),
        now,
        timeout,
        &[],
    )
    .await?;
    let first = send(app, log, parts, body.clone(), timeout, &authority).await?;
    let Some((method, uri, version, headers)) =
        again.filter(|_| first.status() == http::StatusCode::UNAUTHORIZED && !used.is_empty())
    else {
        return Ok(first);
    };
    // The provider refused the token (revoked, rotated early): fetch a
    // new one and send the request once more.
    drop(first);
    let mut again = http::Request::builder()
        .method(method)
        .uri(uri)
        .version(version)
        .body(())
        .expect("the parts of a request that was sent")
        .into_parts()
        .0;
    again.headers = headers;
    authenticate(
        app,
        log,
        &mut again,
        &body,
        origin.as_ref(),
        now,
        timeout,
        &used,
    )
    .await?;
    send(app, log, again, body, timeout, &authority).await
}

/// Add every credential scoped to `origin` to `parts`: an OAuth2
/// credential's token from its cache (forgetting first a token the
/// provider `refused`). Returns the tokens sent, by credential.
#[allow(clippy::too_many_arguments)]
async fn authenticate(
    app: &AppEgress,
    log: &Mutex<CallLog>,
    parts: &mut http::request::Parts,
    body: &[u8],
    origin: Option<&Origin>,
    now: SystemTime,
    timeout: Duration,
    refused: &[(usize, super::credentials::Secret)],
) -> Result<Vec<(usize, super::credentials::Secret)>, HttpError> {
    let mut used = Vec::new();
    for (i, (scope, c)) in app.credentials.iter().enumerate() {
        if !origin.is_some_and(|o| scope.contains(o)) {
            continue;
        }
        match (c, &app.tokens[i]) {
            (
                Credential::OAuth2ClientCredentials {
                    token_url,
                    client_id,
                    client_secret,
                    scope,
                },
                Some(cache),
            ) => {
                if let Some((_, old)) = refused.iter().find(|(j, _)| *j == i) {
                    cache.refused(old).await;
                }
                let cc = super::oauth2::ClientCredentials {
                    token_url,
                    client_id,
                    client_secret,
                    scope: scope.as_deref(),
                };
                let token = cache
                    .bearer(&app.client, &cc, timeout)
                    .await
                    .map_err(|e| token_failure(app, log, &e))?;
                set_bearer(&mut parts.headers, &token);
                used.push((i, token));
            }
            _ => c.apply(parts, body, now),
        }
    }
    Ok(used)
}

/// `Authorization: Bearer <token>`, marked sensitive.
fn set_bearer(headers: &mut http::HeaderMap, token: &super::credentials::Secret) {
    if let Ok(mut v) = http::HeaderValue::from_str(&format!("Bearer {}", token.expose())) {
        v.set_sensitive(true);
        headers.insert(http::header::AUTHORIZATION, v);
    }
}

/// No token, so nothing was sent: the call's log says why (never the
/// secret); an endpoint that could not be reached reads as a refused
/// connection (the provider's `unavailable`), a bad answer as the host's
/// internal error.
fn token_failure(
    app: &AppEgress,
    log: &Mutex<CallLog>,
    e: &super::oauth2::TokenError,
) -> HttpError {
    tracing::warn!(app = %app.app, reason = %e.message(), "oauth2 token not obtained");
    log.lock()
        .expect("call log")
        .failed(e.message().to_string());
    match e {
        super::oauth2::TokenError::Unreachable(_) => HttpError::ConnectionRefused,
        super::oauth2::TokenError::Refused(m) => HttpError::InternalError(Some(m.clone())),
    }
}

/// Send one request as it is, counted and logged.
async fn send(
    app: &AppEgress,
    log: &Mutex<CallLog>,
    parts: http::request::Parts,
    body: bytes::Bytes,
    timeout: Duration,
    authority: &str,
) -> Result<http::Response<hyper::body::Incoming>, HttpError> {
    let request = http::Request::from_parts(parts, Full::new(body));
    // Counted as possibly reaching the provider from the moment it is
    // sent: if the call's deadline cuts it off mid-flight, the attempt is
    // ambiguous, not a clean timeout. Only a refused connection or a
    // denial takes it back.
    log.lock().expect("call log").reached += 1;
    let started = Instant::now();
    let result = tokio::time::timeout(timeout, app.client.request(request)).await;
    let elapsed = started.elapsed().as_micros() as u64;
    app.counters.micros.fetch_add(elapsed, Ordering::Relaxed);
    match result {
        Ok(Ok(response)) => {
            app.counters.requests.fetch_add(1, Ordering::Relaxed);
            log.lock().expect("call log").answered += 1;
            Ok(response)
        }
        Ok(Err(e)) => Err(transport_failure(app, log, authority, &e)),
        Err(_elapsed) => {
            app.counters.requests.fetch_add(1, Ordering::Relaxed);
            app.counters.failed.fetch_add(1, Ordering::Relaxed);
            log.lock()
                .expect("call log")
                .failed(format!("{authority} did not answer within {timeout:?}"));
            Err(HttpError::HttpResponseTimeout)
        }
    }
}

/// Buffer the guest's request body, recording why it was refused. The
/// guest's stream stays open until the refusal is logged: a guest that
/// traps on the closed stream (componentize-js does) is then reported with
/// the reason.
pub(super) async fn collect_body(
    app: &AppEgress,
    log: &Mutex<CallLog>,
    stream: &mut WasiBody,
    held: &mut Held,
) -> Result<bytes::Bytes, HttpError> {
    let max = app.limits.max_request_body;
    match buffer_body(stream, max, held).await {
        Ok(b) => Ok(b),
        Err(BodyRefused::TooLarge) => {
            log.lock().expect("call log").failed(format!(
                "the request body was larger than the egress cap of {max} bytes (limits.egress.max_request_body)"
            ));
            Err(HttpError::HttpRequestBodySize(None))
        }
        Err(BodyRefused::OverMemory(refused)) => {
            let reason = format!("buffering the adapter's request body: {refused}");
            let mut log = log.lock().expect("call log");
            log.failed(reason.clone());
            log.over_memory.get_or_insert(reason);
            Err(HttpError::HttpRequestBodySize(None))
        }
        Err(BodyRefused::Broken(e)) => {
            log.lock()
                .expect("call log")
                .failed(format!("the adapter's request body broke off: {e}"));
            Err(e)
        }
    }
}
