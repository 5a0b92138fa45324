//! What an app is allowed: where it may connect, the credentials the host
//! adds for it, and its plain settings.

use crate::egress::{Credential, GrantCredential};
use serde::Deserialize;
use std::collections::BTreeMap;

/// An app's grant for one environment.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// Origins the app may reach: `https://api.stripe.com`,
    /// `http://127.0.0.1:12111`. Everything else is denied.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Non-public networks (CIDR) the app may reach after DNS, e.g.
    /// `127.0.0.0/8` for a provider fake on loopback reached by name.
    /// An `allow` entry that is an IP literal opens that address by itself.
    #[serde(default)]
    pub private_networks: Vec<String>,
    /// Credentials the egress gate adds to the app's requests, each to the
    /// origins it names (or, if it names none, to the only allowed origin).
    #[serde(default)]
    pub credentials: Vec<GrantCredential>,
    /// Plain settings the adapter reads through the `config` interface.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

impl Grant {
    /// A grant that allows nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Allow an origin.
    pub fn allow(mut self, origin: impl Into<String>) -> Self {
        self.allow.push(origin.into());
        self
    }

    /// Open a non-public network (CIDR).
    pub fn private_network(mut self, cidr: impl Into<String>) -> Self {
        self.private_networks.push(cidr.into());
        self
    }

    /// Add a credential for the app's only allowed origin (an app allowed
    /// several origins must say which: [`Self::credential_for`]).
    pub fn credential(mut self, credential: Credential) -> Self {
        self.credentials.push(credential.into());
        self
    }

    /// Add a credential that goes to `origins` only (each on the `allow`
    /// list).
    pub fn credential_for<S: Into<String>>(
        mut self,
        origins: impl IntoIterator<Item = S>,
        credential: Credential,
    ) -> Self {
        self.credentials.push(GrantCredential {
            origins: origins.into_iter().map(Into::into).collect(),
            credential,
        });
        self
    }

    /// Set a plain setting.
    pub fn config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.insert(key.into(), value.into());
        self
    }
}
