//! The pooled HTTP(S) client behind an app's egress: one per app, so its
//! DNS answers are checked against that app's policy before connecting.

use super::denial::Denial;
use super::policy::EgressPolicy;
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::TokioExecutor;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// Carried inside the `io::Error` when DNS answers only with addresses the
/// policy refuses; the gate turns it into a denial.
#[derive(Debug)]
pub struct ResolvedToForbidden(pub Denial);

impl std::fmt::Display for ResolvedToForbidden {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for ResolvedToForbidden {}

/// A name that did not resolve (no such host, no DNS answer): told apart
/// from a refused connection, which means the host exists.
#[derive(Debug)]
pub struct LookupFailed(pub String);

impl std::fmt::Display for LookupFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LookupFailed {}

/// Resolves names, then drops every address the app may not reach. Hyper
/// connects only to what this returns, so a name that resolves (or is
/// rebound) to a private address cannot sneak past the allowlist.
#[derive(Clone)]
pub struct GuardedResolver {
    policy: Arc<EgressPolicy>,
}

impl tower_service::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|e| {
                    io::Error::new(
                        io::ErrorKind::NotFound,
                        LookupFailed(format!("the name {host} did not resolve: {e}")),
                    )
                })?
                .collect();
            let mut refused = None;
            let allowed: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| match policy.check_ip(a.ip()) {
                    Ok(()) => true,
                    Err(why) => {
                        refused.get_or_insert(why);
                        false
                    }
                })
                .collect();
            if allowed.is_empty() {
                let Some(address) = refused else {
                    return Err(io::Error::new(
                        io::ErrorKind::NotFound,
                        LookupFailed(format!("the name {host} resolved to no address")),
                    ));
                };
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    ResolvedToForbidden(Denial::Resolved { host, address }),
                ));
            }
            Ok(allowed.into_iter())
        })
    }
}

/// The connector type of an app's client.
pub type Connector = hyper_rustls::HttpsConnector<HttpConnector<GuardedResolver>>;

/// An app's pooled client.
pub type PooledClient = Client<Connector, Full<Bytes>>;

/// Build a pooled client for `policy`: keep-alive, `TCP_NODELAY` (wasi-http
/// writes the body after the headers; with Nagle that costs ~40 ms), TLS
/// with the Mozilla roots.
pub fn pooled_client(policy: Arc<EgressPolicy>, connect_timeout: Duration) -> PooledClient {
    let mut http = HttpConnector::new_with_resolver(GuardedResolver { policy });
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(provider)
        .expect("ring supports the default TLS versions")
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(256)
        .build(https)
}
