//! Who may do what: API tokens with a role and a scope, the principal a
//! request acts as, and the throttle on failed authentication.
//!
//! Roles: `run` runs definitions; `read` reads definitions, provider
//! state, runs, events, the audit and metrics; `operate` is `read` plus
//! operator actions (check now, force, release, drain, restore); `define`
//! is `read` plus changing definitions and admission settings; `admin` may
//! do everything, reload and manage tokens included. A scope is a list of
//! products (and optionally envs), `*` for all.

mod principal;
mod throttle;
mod tokens;

pub use principal::{
    Actor, CHANNELS, Need, Principal, Role, Scope, breaker_scope, check_token_name,
    constant_time_eq,
};
pub use throttle::{FAILURES_PER_WINDOW, Throttle};
pub use tokens::{
    AuthFailure, ConfigToken, MAX_API_TOKENS, NewToken, StoredToken, TokenError, TokenInfo, Tokens,
    digest, marks,
};
