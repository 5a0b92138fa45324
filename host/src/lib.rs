//! Switchyard routes calls to third-party providers (payments, SMS,
//! email...) through a resilience engine; every provider adapter is a
//! sandboxed WebAssembly component implementing the `switchyard:adapter`
//! WIT world.
//!
//! This crate is the host:
//! - [`runtime`]: loads adapter components and runs each call on a fresh,
//!   sandboxed instance ([`runtime::Runtime`], [`runtime::App`]);
//! - [`egress`]: the gate every outbound request of a guest passes
//!   (allowlist, private-address rule, credential injection, limits);
//! - [`adapter`]: the [`adapter::Adapter`] trait the engine calls, which
//!   [`runtime::App`] implements;
//! - [`grant`]: what an app is allowed.

pub mod adapter;
pub mod api;
pub mod cli;
pub mod config;
pub mod deployment;
pub mod egress;
pub mod engine;
pub mod grant;
pub mod mapping;
pub mod metrics;
pub mod runtime;
pub mod simulator;
pub mod store;
pub mod testing;

pub use adapter::{
    Adapter, AppInfo, AttemptError, CallRequest, CallResponse, ErrorClass, FailureKind,
};
pub use engine::{RunOptions, Switchyard};
pub use grant::Grant;
pub use runtime::{App, ComponentSource, LoadError, Runtime, RuntimeConfig};
