//! What the handlers share ([`ApiState`]) and the OpenAPI document.

use crate::deployment::Deployment;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// The OpenAPI 3.1 description of this API.
pub const OPENAPI: &str = include_str!("openapi.json");

/// What the handlers share.
#[derive(Debug)]
pub struct ApiState {
    /// The running config.
    pub deployment: Arc<Deployment>,
    /// Serve HTTPS with this certificate (read again on SIGHUP).
    pub tls: Option<Arc<crate::tls::Tls>>,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Most `/v1/events` streams open at once.
    pub max_event_streams: usize,
    /// False once shutdown began (`/readyz` answers 503).
    pub ready: AtomicBool,
    /// How long a client may take to send a request's headers: a
    /// connection that trickles them (slow-loris) is closed, not held.
    pub header_read_timeout: Duration,
}
