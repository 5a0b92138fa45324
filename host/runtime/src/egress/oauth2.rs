//! OAuth2 client credentials held by the host: the egress gate fetches a
//! bearer token from the provider's token endpoint with the client id and
//! secret, keeps it until shortly before it expires, shares one fetch
//! among concurrent calls, and fetches a new one when the provider
//! answers 401 (the request is sent once more). Neither the secret nor
//! the token ever enters guest memory, a log, a trace or an answer.

use super::client::PooledClient;
use super::credentials::{Secret, base64};
use http::HeaderValue;
use http_body_util::{BodyExt, Full, Limited};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Largest token answer read, bytes.
pub const MAX_TOKEN_ANSWER: usize = 64 << 10;
/// Longest access token kept, bytes.
pub const MAX_TOKEN_BYTES: usize = 8 << 10;
/// Longest a token is kept, whatever `expires_in` says.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// What the credential says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCredentials<'a> {
    pub token_url: &'a str,
    pub client_id: &'a Secret,
    pub client_secret: &'a Secret,
    pub scope: Option<&'a str>,
}

#[derive(Clone)]
struct Token {
    value: Secret,
    refresh_at: Instant,
}

/// Why no token could be had; the message names no secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum TokenError {
    /// The endpoint could not be reached (the provider's `unavailable`).
    Unreachable(String),
    /// It answered, but not with a usable token (`internal`: a grant or
    /// provider problem, not the caller's).
    Refused(String),
}

impl TokenError {
    pub(super) fn message(&self) -> &str {
        match self {
            Self::Unreachable(m) | Self::Refused(m) => m,
        }
    }
}

/// One credential's token: kept, fetched once at a time, counted.
#[derive(Default)]
pub struct TokenCache {
    current: tokio::sync::Mutex<Option<Token>>,
    pub(super) fetches: AtomicU64,
    pub(super) failures: AtomicU64,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("fetches", &self.fetches.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl TokenCache {
    /// A token to send, fetching one if none is kept or it is due for
    /// refresh. Concurrent callers wait for the one fetch.
    pub(super) async fn bearer(
        &self,
        client: &PooledClient,
        c: &ClientCredentials<'_>,
        timeout: Duration,
    ) -> Result<Secret, TokenError> {
        let mut current = self.current.lock().await;
        if let Some(t) = current.as_ref()
            && Instant::now() < t.refresh_at
        {
            return Ok(t.value.clone());
        }
        self.fetches.fetch_add(1, Ordering::Relaxed);
        match fetch(client, c, timeout).await {
            Ok(t) => {
                let value = t.value.clone();
                *current = Some(t);
                Ok(value)
            }
            Err(e) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                *current = None;
                Err(e)
            }
        }
    }

    /// The provider refused `used` (401): forget it, unless another call
    /// already replaced it.
    pub(super) async fn refused(&self, used: &Secret) {
        let mut current = self.current.lock().await;
        if current.as_ref().is_some_and(|t| &t.value == used) {
            *current = None;
        }
    }
}

fn form(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// POST the client credentials grant to the token endpoint.
async fn fetch(
    client: &PooledClient,
    c: &ClientCredentials<'_>,
    timeout: Duration,
) -> Result<Token, TokenError> {
    let mut body = "grant_type=client_credentials".to_string();
    if let Some(scope) = c.scope {
        body.push_str("&scope=");
        body.push_str(&form(scope));
    }
    let basic = format!(
        "Basic {}",
        base64(format!("{}:{}", c.client_id.expose(), c.client_secret.expose()).as_bytes())
    );
    let mut auth = HeaderValue::from_str(&basic)
        .map_err(|_| TokenError::Refused("the client id or secret cannot go in a header".into()))?;
    auth.set_sensitive(true);
    let request = http::Request::post(c.token_url)
        .header(http::header::AUTHORIZATION, auth)
        .header(
            http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .header(http::header::ACCEPT, "application/json")
        .body(Full::new(bytes::Bytes::from(body)))
        .map_err(|_| TokenError::Refused(format!("`{}` is not a URL", c.token_url)))?;
    let started = Instant::now();
    let response = match tokio::time::timeout(timeout, client.request(request)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            return Err(TokenError::Unreachable(format!(
                "the OAuth2 token endpoint {} could not be reached: {}",
                c.token_url,
                if e.is_connect() {
                    "the connection was refused or timed out".to_string()
                } else {
                    e.to_string()
                }
            )));
        }
        Err(_) => {
            return Err(TokenError::Unreachable(format!(
                "the OAuth2 token endpoint {} did not answer within {timeout:?}",
                c.token_url
            )));
        }
    };
    let status = response.status();
    let read = Limited::new(response.into_body(), MAX_TOKEN_ANSWER)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .map_err(|_| {
            TokenError::Refused(format!(
                "the OAuth2 token endpoint's answer broke off or was larger than {MAX_TOKEN_ANSWER} bytes"
            ))
        })?;
    let json: serde_json::Value = serde_json::from_slice(&read).unwrap_or_default();
    if !status.is_success() {
        // The `error` code names what is wrong (`invalid_client`); the
        // description may echo what was sent, so it is left out.
        let code = json
            .get("error")
            .and_then(|e| e.as_str())
            .map(|e| e.chars().take(64).collect::<String>())
            .unwrap_or_default();
        let what = if status.is_server_error() {
            TokenError::Unreachable
        } else {
            TokenError::Refused
        };
        return Err(what(format!(
            "the OAuth2 token endpoint {} answered {status}{}",
            c.token_url,
            if code.is_empty() {
                String::new()
            } else {
                format!(" ({code})")
            }
        )));
    }
    let bad = |why: &str| {
        TokenError::Refused(format!(
            "the OAuth2 token endpoint {} answered without a usable token: {why}",
            c.token_url
        ))
    };
    let token = json
        .get("access_token")
        .and_then(|t| t.as_str())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| bad("no `access_token`"))?;
    if token.len() > MAX_TOKEN_BYTES {
        return Err(bad(&format!(
            "`access_token` is longer than {MAX_TOKEN_BYTES} bytes"
        )));
    }
    if HeaderValue::from_str(&format!("Bearer {token}")).is_err() {
        return Err(bad("`access_token` cannot go in a header"));
    }
    if let Some(kind) = json.get("token_type").and_then(|t| t.as_str())
        && !kind.eq_ignore_ascii_case("bearer")
    {
        return Err(bad("`token_type` is not Bearer"));
    }
    let expires_in = json
        .get("expires_in")
        .and_then(|e| {
            e.as_f64()
                .or_else(|| e.as_str().and_then(|s| s.parse().ok()))
        })
        .ok_or_else(|| bad("no `expires_in`"))?;
    if !(expires_in.is_finite() && expires_in > 0.0) {
        return Err(bad("`expires_in` is not a positive number of seconds"));
    }
    let lifetime = Duration::from_secs_f64(expires_in.min(MAX_TOKEN_LIFETIME.as_secs_f64()));
    // Refresh a tenth of its life early (at most a minute), so a call
    // never goes out with a token about to lapse.
    let early = (lifetime / 10).min(Duration::from_secs(60));
    Ok(Token {
        value: Secret::new(token),
        refresh_at: started + lifetime - early,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_form_encoded() {
        assert_eq!(form("a b/c:d"), "a+b%2Fc%3Ad");
    }
}
