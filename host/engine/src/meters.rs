//! What the engine keeps per app action and per app gate: attempt counts
//! ([`Counts`]) and the admission gates with the names they are listed
//! under. The counting itself (`accounting.rs`) works on the engine's
//! state above.

use crate::admission::Gate;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Attempts and outcomes of one app action (in one product and env).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Attempts made.
    pub attempts: u64,
    /// Attempts that succeeded.
    pub successes: u64,
    /// Failed attempts by error class.
    pub failures: BTreeMap<String, u64>,
    /// Requests its breaker blocked (not tried, not in `attempts`).
    pub blocked: u64,
}

/// One app's gate in one env, with the names it is listed under.
pub(crate) struct GateEntry {
    pub(crate) product: String,
    pub(crate) env: String,
    pub(crate) app: String,
    pub(crate) gate: Arc<Gate>,
}
