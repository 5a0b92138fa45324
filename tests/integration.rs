//! The integration tests, one module per subject, in one binary (each
//! test binary links wasmtime): real components against real loopback
//! servers and the providers' contract fakes.

mod contracts;
mod credentials;
mod exchange;
mod fixtures;
mod http_plugin;
mod payment_once;
mod polyglot;
mod provider_text;
mod routing;
