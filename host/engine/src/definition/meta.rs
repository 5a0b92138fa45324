//! What every definition has: its kind and the fields of [`Meta`].

use serde::{Deserialize, Serialize};
use std::fmt;

/// The kinds of definitions.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A provider probe.
    Healthcheck,
    /// Weighted choice among providers.
    Quota,
    /// Ordered options.
    Fallback,
    /// Steps in sequence.
    Feature,
    /// A result cache with a TTL.
    Cache,
}

impl Kind {
    /// Lower-case singular name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthcheck => "healthcheck",
            Self::Quota => "quota",
            Self::Fallback => "fallback",
            Self::Feature => "feature",
            Self::Cache => "cache",
        }
    }

    /// The kind a plural names (`fallbacks`), if any.
    pub fn from_plural(s: &str) -> Option<Self> {
        [
            Self::Healthcheck,
            Self::Quota,
            Self::Fallback,
            Self::Feature,
            Self::Cache,
        ]
        .into_iter()
        .find(|k| k.plural() == s)
    }

    /// Plural, as in config tables and error paths (`fallbacks.pay`).
    pub fn plural(self) -> &'static str {
        match self {
            Self::Healthcheck => "healthchecks",
            Self::Quota => "quotas",
            Self::Fallback => "fallbacks",
            Self::Feature => "features",
            Self::Cache => "caches",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Fields every definition has. It is flattened into each definition and
/// refuses unknown fields for it (serde ignores `deny_unknown_fields` on a
/// struct with a flattened field, so the flattened part must do it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Meta {
    /// Namespace (`payments`). In a config file and on the HTTP API it
    /// comes from where the definition sits and may be left out.
    #[serde(default)]
    pub product: String,
    /// Identifier within the product and kind (`card-payment`). In a
    /// config file it is the table key and may be left out.
    #[serde(default)]
    pub tag: String,
    /// Human name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// What it is for.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

impl Meta {
    /// Meta with an empty name and description.
    pub fn new(product: impl Into<String>, tag: impl Into<String>) -> Self {
        Self {
            product: product.into(),
            tag: tag.into(),
            name: String::new(),
            description: String::new(),
        }
    }
}
