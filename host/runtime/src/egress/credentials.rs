//! Credentials the egress gate adds to an app's outbound requests, so that
//! secrets never enter guest memory.

use super::sigv4;
use http::HeaderValue;
use http::header::{AUTHORIZATION, HeaderName};
use serde::Deserialize;
use std::fmt;
use std::time::SystemTime;
use thiserror::Error;

/// A secret value. Its `Debug` and `Display` never show it.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value of environment variable `var`.
    pub fn from_env(var: &str) -> Result<Self, CredentialError> {
        std::env::var(var)
            .map(Self)
            .map_err(|_| CredentialError::MissingEnv(var.to_string()))
    }

    /// The secret itself; only the egress gate calls this.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A credential and the scheme that carries it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(tag = "scheme", rename_all = "kebab-case")]
pub enum Credential {
    /// `Authorization: Bearer <token>` (Stripe secret keys).
    Bearer {
        /// The token.
        token: Secret,
    },
    /// `Authorization: Basic base64(user:password)` (Twilio SID + token).
    Basic {
        /// User name (not secret: e.g. a Twilio Account SID).
        username: String,
        /// Password.
        password: Secret,
    },
    /// A header carrying an API key (`X-Api-Key: <key>`).
    ApiKeyHeader {
        /// Header name.
        header: String,
        /// The key.
        key: Secret,
    },
    /// AWS Signature Version 4 (SNS, SES, ...), signed over the exact request.
    #[serde(rename = "aws-sigv4")]
    AwsSigV4 {
        /// Access key id.
        access_key_id: String,
        /// Secret access key.
        secret_access_key: Secret,
        /// Session token for temporary credentials.
        #[serde(default)]
        session_token: Option<Secret>,
        /// Region (`us-east-1`).
        region: String,
        /// Service (`sns`).
        service: String,
    },
    /// OAuth2 client credentials (PayPal): the host fetches a bearer
    /// token from `token_url` with the client id and secret, keeps it
    /// until shortly before it expires, and sends `Authorization: Bearer`.
    #[serde(rename = "oauth2-client-credentials")]
    OAuth2ClientCredentials {
        /// The token endpoint (`https://api-m.paypal.com/v1/oauth2/token`);
        /// its origin must be on the app's `allow` list.
        token_url: String,
        /// The client id.
        client_id: Secret,
        /// The client secret.
        client_secret: Secret,
        /// The scope to ask for, if the provider wants one.
        #[serde(default)]
        scope: Option<String>,
    },
}

/// A credential in a grant: what it is and which of the app's origins it
/// goes to. With no `origins`, it goes to the app's only allowed origin; an
/// app allowed several origins must name them, so a key granted for one
/// provider never reaches another.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct GrantCredential {
    /// Origins (from the app's `allow` list) that receive it.
    #[serde(default)]
    pub origins: Vec<String>,
    /// The credential.
    #[serde(flatten)]
    pub credential: Credential,
}

impl GrantCredential {
    /// The origins it goes to, given the app's policy; `index` is its
    /// place in the grant, for the error.
    pub fn scope(
        &self,
        index: usize,
        policy: &super::policy::EgressPolicy,
    ) -> Result<Vec<super::policy::Origin>, CredentialError> {
        if self.origins.is_empty() {
            return match policy.allowed() {
                [] => Ok(Vec::new()),
                [only] => Ok(vec![only.clone()]),
                many => Err(CredentialError::Unscoped {
                    index,
                    count: many.len(),
                }),
            };
        }
        self.origins
            .iter()
            .map(|o| match super::policy::Origin::parse(o) {
                Some(origin) if policy.allows_origin(&origin) => Ok(origin),
                _ => Err(CredentialError::ScopeNotAllowed {
                    index,
                    origin: o.clone(),
                }),
            })
            .collect()
    }
}

impl From<Credential> for GrantCredential {
    fn from(credential: Credential) -> Self {
        Self {
            origins: Vec::new(),
            credential,
        }
    }
}

/// A credential that cannot be used.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CredentialError {
    /// Referenced environment variable is not set.
    #[error("environment variable `{0}` is not set; export it before starting the host")]
    MissingEnv(String),
    /// The API-key header name is not a valid header name.
    #[error("api-key header name {0:?} is not a valid HTTP header name")]
    BadHeaderName(String),
    /// The secret contains characters that cannot go in a header.
    #[error("the {0} credential contains characters not allowed in an HTTP header")]
    BadValue(&'static str),
    /// The app allows several origins and the credential names none.
    #[error(
        "credentials[{index}] names no `origins` but the app allows {count} origins; list the ones that get it, e.g. `origins = [\"https://api.stripe.com\"]`"
    )]
    Unscoped {
        /// Which credential.
        index: usize,
        /// How many origins the app allows.
        count: usize,
    },
    /// An origin the credential names is not one the app may reach.
    #[error(
        "credentials[{index}].origins: `{origin}` is not on the app's `allow` list; add it there or remove it here"
    )]
    ScopeNotAllowed {
        /// Which credential.
        index: usize,
        /// The origin as written.
        origin: String,
    },
    /// An OAuth2 token URL that is not an absolute http(s) URL, or plain
    /// `http:` to a host that is not loopback or private.
    #[error("credentials[{index}].token_url: `{url}` {why}")]
    BadTokenUrl {
        /// Which credential.
        index: usize,
        /// The URL as written.
        url: String,
        /// What is wrong.
        why: &'static str,
    },
    /// An AWS session token that cannot go in a header.
    #[error("the aws-sigv4 session_token contains characters not allowed in an HTTP header")]
    BadSessionToken,
}

impl Credential {
    /// Check what can be checked before the first request.
    pub fn validate(&self) -> Result<(), CredentialError> {
        match self {
            Self::ApiKeyHeader { header, key } => {
                HeaderName::from_bytes(header.as_bytes())
                    .map_err(|_| CredentialError::BadHeaderName(header.clone()))?;
                HeaderValue::from_str(key.expose())
                    .map_err(|_| CredentialError::BadValue("api-key"))?;
            }
            Self::Bearer { token } => {
                HeaderValue::from_str(token.expose())
                    .map_err(|_| CredentialError::BadValue("bearer"))?;
            }
            Self::AwsSigV4 {
                session_token: Some(t),
                ..
            } => {
                // Checked here: at signing time a bad value would be
                // dropped silently and the provider would see an unsigned
                // temporary key.
                HeaderValue::from_str(t.expose()).map_err(|_| CredentialError::BadSessionToken)?;
            }
            Self::OAuth2ClientCredentials {
                client_id,
                client_secret,
                ..
            } => {
                HeaderValue::from_str(client_id.expose())
                    .map_err(|_| CredentialError::BadValue("oauth2 client_id"))?;
                HeaderValue::from_str(client_secret.expose())
                    .map_err(|_| CredentialError::BadValue("oauth2 client_secret"))?;
            }
            Self::Basic { .. } | Self::AwsSigV4 { .. } => {}
        }
        Ok(())
    }

    /// An OAuth2 credential's token URL, checked against the app's policy:
    /// absolute, its origin allowed, and `https` unless the host is
    /// loopback or a private address (a secret never crosses the internet
    /// in clear).
    pub(crate) fn check_token_url(
        &self,
        index: usize,
        policy: &super::policy::EgressPolicy,
    ) -> Result<(), CredentialError> {
        let Self::OAuth2ClientCredentials { token_url, .. } = self else {
            return Ok(());
        };
        let bad = |why| CredentialError::BadTokenUrl {
            index,
            url: token_url.clone(),
            why,
        };
        let uri: http::Uri = token_url
            .parse()
            .map_err(|_| bad("is not a URL; write `https://api.example.com/oauth2/token`"))?;
        let origin = super::policy::Origin::of_uri(&uri)
            .ok_or_else(|| bad("is not an absolute http(s) URL"))?;
        if !policy.allows_origin(&origin) {
            return Err(bad(
                "is not on the app's `allow` list; add its origin there",
            ));
        }
        if origin.scheme == "http" {
            let near = match origin.host.parse::<std::net::IpAddr>() {
                Ok(std::net::IpAddr::V4(a)) => a.is_loopback() || a.is_private(),
                Ok(std::net::IpAddr::V6(a)) => a.is_loopback(),
                Err(_) => origin.host.eq_ignore_ascii_case("localhost"),
            };
            if !near {
                return Err(bad(
                    "is plain http to a public host; the client secret would cross the network in clear: use https",
                ));
            }
        }
        Ok(())
    }

    /// Headers the guest may not set itself, since this credential owns them.
    pub fn owned_headers(&self) -> Vec<HeaderName> {
        match self {
            Self::ApiKeyHeader { header, .. } => HeaderName::from_bytes(header.as_bytes())
                .into_iter()
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Add the credential to `request` (whose body is `body`).
    pub fn apply(&self, request: &mut http::request::Parts, body: &[u8], now: SystemTime) {
        let headers = &mut request.headers;
        match self {
            Self::Bearer { token } => {
                if let Ok(v) = HeaderValue::from_str(&format!("Bearer {}", token.expose())) {
                    headers.insert(AUTHORIZATION, sensitive(v));
                }
            }
            Self::Basic { username, password } => {
                let raw = format!("{username}:{}", password.expose());
                if let Ok(v) = HeaderValue::from_str(&format!("Basic {}", base64(raw.as_bytes()))) {
                    headers.insert(AUTHORIZATION, sensitive(v));
                }
            }
            // The token is the gate's to add (`transport::dispatch`).
            Self::OAuth2ClientCredentials { .. } => {}
            Self::ApiKeyHeader { header, key } => {
                if let (Ok(name), Ok(v)) = (
                    HeaderName::from_bytes(header.as_bytes()),
                    HeaderValue::from_str(key.expose()),
                ) {
                    headers.insert(name, sensitive(v));
                }
            }
            Self::AwsSigV4 {
                access_key_id,
                secret_access_key,
                session_token,
                region,
                service,
            } => sigv4::sign(
                request,
                body,
                &sigv4::Key {
                    access_key_id,
                    secret_access_key: secret_access_key.expose(),
                    session_token: session_token.as_ref().map(Secret::expose),
                    region,
                    service,
                },
                now,
            ),
        }
    }
}

fn sensitive(mut v: HeaderValue) -> HeaderValue {
    v.set_sensitive(true);
    v
}

/// Standard base64 with padding.
pub(super) fn base64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let c = Credential::Bearer {
            token: Secret::new("sk_live_123"),
        };
        assert!(!format!("{c:?}").contains("sk_live_123"));
    }

    #[test]
    fn basic_auth_header() {
        let (mut parts, ()) = http::Request::new(()).into_parts();
        Credential::Basic {
            username: "AC1".into(),
            password: Secret::new("tok"),
        }
        .apply(&mut parts, b"", SystemTime::now());
        assert_eq!(parts.headers[AUTHORIZATION], "Basic QUMxOnRvaw==");
    }
}
