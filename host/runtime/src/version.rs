//! The `switchyard:adapter` versions this host loads.

/// The WIT package versions this host accepts, for error messages.
pub const SUPPORTED_RANGE: &str = "switchyard:adapter >=0.2.0, <0.3.0";
