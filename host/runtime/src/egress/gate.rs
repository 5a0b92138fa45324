//! The gate's state: its limits, one app's egress (policy, credentials,
//! pooled client, counters), what one call saw, and one call's hooks.

use super::client;
use super::client::PooledClient;
use super::credentials::*;
use super::denial::*;
use super::memory::*;
use super::policy::*;
use http::HeaderName;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Size and count limits the gate enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EgressLimits {
    /// Outbound requests one call may make.
    pub max_requests_per_call: u32,
    /// Largest request body a guest may send.
    pub max_request_body: usize,
    /// Largest response body a guest may receive.
    pub max_response_body: usize,
    /// Longest time to establish a connection.
    pub connect_timeout: Duration,
}

impl Default for EgressLimits {
    fn default() -> Self {
        Self {
            max_requests_per_call: 8,
            max_request_body: 4 << 20,
            max_response_body: 8 << 20,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// Per-app egress counters.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) requests: AtomicU64,
    pub(super) denied: AtomicU64,
    pub(super) failed: AtomicU64,
    pub(super) micros: AtomicU64,
}

/// A snapshot of an app's egress counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct EgressStats {
    /// Requests sent to a provider (answered or not).
    pub requests: u64,
    /// Requests the gate refused.
    pub denied: u64,
    /// Sent requests that got no HTTP answer (refused, reset, timed out).
    pub failed: u64,
    /// Total time from send to response headers, over all sent requests.
    pub total_latency: Duration,
    /// OAuth2 tokens fetched (client credentials).
    pub token_fetches: u64,
    /// OAuth2 token fetches that failed.
    pub token_failures: u64,
}

/// An app's egress: its policy, credentials, pooled client and counters.
/// Shared by every call of the app.
pub struct AppEgress {
    pub(super) app: String,
    pub(super) policy: Arc<EgressPolicy>,
    /// Each credential with the origins it goes to.
    pub(super) credentials: Vec<(Vec<Origin>, Credential)>,
    /// For each OAuth2 credential (same index), its token.
    pub(super) tokens: Vec<Option<super::oauth2::TokenCache>>,
    pub(super) owned_headers: Vec<HeaderName>,
    pub(super) limits: EgressLimits,
    pub(super) client: PooledClient,
    pub(super) counters: Counters,
    /// The host-wide budget answers read whole are held under.
    pub(super) host_bytes: Option<Arc<crate::held::HostBytes>>,
}

impl std::fmt::Debug for AppEgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppEgress")
            .field("app", &self.app)
            .field("policy", &self.policy)
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

/// Headers no guest may set: the host owns authentication.
pub(super) const GUEST_FORBIDDEN: [&str; 5] = [
    "authorization",
    "proxy-authorization",
    "x-amz-date",
    "x-amz-security-token",
    "x-amz-content-sha256",
];

impl AppEgress {
    /// The egress of app `app`.
    pub fn new(
        app: impl Into<String>,
        policy: EgressPolicy,
        credentials: Vec<GrantCredential>,
        limits: EgressLimits,
    ) -> Result<Self, CredentialError> {
        let mut scoped = Vec::with_capacity(credentials.len());
        for (index, g) in credentials.into_iter().enumerate() {
            g.credential.validate()?;
            g.credential.check_token_url(index, &policy)?;
            scoped.push((g.scope(index, &policy)?, g.credential));
        }
        let credentials = scoped;
        let tokens = credentials
            .iter()
            .map(|(_, c)| {
                matches!(c, Credential::OAuth2ClientCredentials { .. })
                    .then(super::oauth2::TokenCache::default)
            })
            .collect();
        let mut owned_headers: Vec<HeaderName> = GUEST_FORBIDDEN
            .iter()
            .map(|h| HeaderName::from_static(h))
            .collect();
        owned_headers.extend(credentials.iter().flat_map(|(_, c)| c.owned_headers()));
        let policy = Arc::new(policy);
        Ok(Self {
            app: app.into(),
            client: client::pooled_client(policy.clone(), limits.connect_timeout),
            policy,
            credentials,
            tokens,
            owned_headers,
            limits,
            counters: Counters::default(),
            host_bytes: None,
        })
    }

    /// Counters since the app was loaded.
    pub fn stats(&self) -> EgressStats {
        let c = &self.counters;
        EgressStats {
            requests: c.requests.load(Ordering::Relaxed),
            denied: c.denied.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            total_latency: Duration::from_micros(c.micros.load(Ordering::Relaxed)),
            token_fetches: self
                .tokens
                .iter()
                .flatten()
                .map(|t| t.fetches.load(Ordering::Relaxed))
                .sum(),
            token_failures: self
                .tokens
                .iter()
                .flatten()
                .map(|t| t.failures.load(Ordering::Relaxed))
                .sum(),
        }
    }

    /// Refuse a request: logged, counted, and recorded in the call's log
    /// (its reason is what the call reports).
    pub(super) fn deny(&self, log: &Mutex<CallLog>, reason: Denial) {
        tracing::warn!(app = %self.app, %reason, "egress denied");
        self.counters.denied.fetch_add(1, Ordering::Relaxed);
        log.lock().expect("call log").denials.push(reason);
    }

    /// Why a request with this method, URI and headers may not leave, if
    /// it may not.
    pub(super) fn admit(
        &self,
        method: &http::Method,
        uri: &http::Uri,
        headers: &http::HeaderMap,
    ) -> Result<(), Denial> {
        if method == http::Method::TRACE || method == http::Method::CONNECT {
            return Err(Denial::Method(method.to_string()));
        }
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err(Denial::Userinfo);
        }
        let Some(origin) = Origin::of_uri(uri) else {
            return Err(Denial::NoOrigin(uri.to_string()));
        };
        if !self.policy.allows_origin(&origin) {
            return Err(Denial::NotAllowed {
                origin: origin.to_string(),
                app: self.app.clone(),
            });
        }
        if let Some(h) = self.owned_headers.iter().find(|h| headers.contains_key(*h)) {
            return Err(Denial::OwnedHeader(h.to_string()));
        }
        // An IP-literal origin on the allowlist is the grant for its own
        // address (and only that origin); names are checked after DNS.
        Ok(())
    }
}

/// What the gate saw during one call.
#[derive(Debug, Default)]
pub struct CallLog {
    /// Refused requests, in order.
    pub denials: Vec<Denial>,
    /// Requests that may have reached a provider (sent, not refused at
    /// connect). After one, a failure is ambiguous.
    pub reached: u32,
    /// Requests that got an answer (status and headers) back.
    pub answered: u32,
    /// Why outbound requests failed in the host (not denials), in order:
    /// shown with a guest trap, which carries no reason of its own.
    pub failures: Vec<String>,
    /// Why a request body was refused for the call's memory cap: the call
    /// fails with the memory-limit error whatever the adapter does next.
    pub over_memory: Option<String>,
    /// Why a request was not sent because the host's byte budget had no
    /// room for its answer: the host's limit, not the provider's failure.
    pub host_full: Option<String>,
}

impl CallLog {
    /// Whether a request may have reached a provider and never answered:
    /// whatever the adapter says, the provider may have acted on it.
    pub fn unanswered(&self) -> bool {
        self.reached > self.answered
    }

    pub(super) fn failed(&mut self, reason: String) {
        if self.failures.len() < 8 {
            self.failures.push(reason);
        }
    }
}

/// The gate as seen by one call: the wasi-http hooks of its store.
pub struct CallEgress {
    pub(super) app: Arc<AppEgress>,
    pub(super) memory: Arc<CallMemory>,
    pub(super) deadline: Instant,
    pub(super) made: u32,
    pub(super) cap: u32,
    pub(super) log: Arc<Mutex<CallLog>>,
}

impl CallEgress {
    /// Hooks for one call of `app` that must finish by `deadline`, holding
    /// the bodies it sends on `memory`; `request_cap` lowers the app's
    /// per-call request cap (`describe` runs with 0).
    pub fn new(
        app: Arc<AppEgress>,
        memory: Arc<CallMemory>,
        deadline: Instant,
        log: Arc<Mutex<CallLog>>,
        request_cap: Option<u32>,
    ) -> Self {
        let cap = request_cap.unwrap_or(app.limits.max_requests_per_call);
        Self {
            app,
            memory,
            deadline,
            made: 0,
            cap,
            log,
        }
    }

    pub(super) fn deny(&self, reason: Denial) {
        self.app.deny(&self.log, reason);
    }
}
