//! Why the gate refused a request: each denial's message, with its fix,
//! written once. Denials are the operator's business as much as the
//! adapter's, so they name the field of the grant to change.

use std::net::IpAddr;

/// A non-public address an app may not reach without a grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Restricted {
    /// The address (IPv4-mapped IPv6 shown as IPv4).
    pub ip: IpAddr,
    /// Its range (`loopback`, `private`, `link-local`...).
    pub range: &'static str,
}

impl std::fmt::Display for Restricted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}, a {} address", self.ip, self.range)
    }
}

/// Why a request did not leave.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    /// TRACE echoes the request (credentials included) back into the
    /// guest; CONNECT turns the gate into a tunnel.
    #[error("method {0} is not allowed through the egress gate")]
    Method(String),
    /// A URL with `user@` or `user:password@`.
    #[error(
        "the request URL carries a user name or password (`user@host`); credentials come from the app's grant, so remove it from the URL"
    )]
    Userinfo,
    /// A URI with no scheme or host.
    #[error("request URI `{0}` has no scheme and host")]
    NoOrigin(String),
    /// An origin the app's grant does not list. The grant's other origins
    /// are not named: they are not for whoever reads the run's error.
    #[error("{origin} is not on app `{app}`'s allowlist; add it to the app's `allow` list")]
    NotAllowed {
        /// The origin asked for.
        origin: String,
        /// The app.
        app: String,
    },
    /// A header the host owns (authentication).
    #[error(
        "the adapter set the `{0}` header; credentials are added by the host from the app's grant, so remove it from the adapter"
    )]
    OwnedHeader(String),
    /// More requests than the per-call cap.
    #[error("the adapter made more than {0} outbound requests in one call (the per-call cap)")]
    RequestCap(u32),
    /// A name that resolves only to addresses the policy refuses.
    #[error("{host} resolves to {address}; add it to the app's `private_networks` to allow it")]
    Resolved {
        /// The name.
        host: String,
        /// The first refused address.
        address: Restricted,
    },
}
