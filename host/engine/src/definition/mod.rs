//! Definitions: what a platform team declares. Healthchecks, quotas,
//! fallbacks, features and result caches, each namespaced by product and
//! named by a tag. They serialize to the same JSON/TOML shapes the config
//! file and the HTTP API use; `Switchyard` checks every
//! reference and compiles every mapping when one is created or updated.

//!
//! `meta.rs`: the kind and the fields every definition has; `option.rs`:
//! a provider option; `kinds.rs`: each kind's fields; this file: any
//! definition.

mod kinds;
mod meta;
mod option;

pub use kinds::{CacheDef, FallbackDef, FeatureDef, HealthcheckDef, QuotaDef, StepDef, StepKind};
pub use meta::{Kind, Meta};
pub use option::{OptionKind, ProviderOption};
use serde::{Deserialize, Serialize};

/// Any definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Definition {
    /// A healthcheck.
    Healthcheck(HealthcheckDef),
    /// A quota.
    Quota(QuotaDef),
    /// A fallback.
    Fallback(FallbackDef),
    /// A feature.
    Feature(FeatureDef),
    /// A result cache.
    Cache(CacheDef),
}

impl Definition {
    /// Its kind.
    pub fn kind(&self) -> Kind {
        match self {
            Self::Healthcheck(_) => Kind::Healthcheck,
            Self::Quota(_) => Kind::Quota,
            Self::Fallback(_) => Kind::Fallback,
            Self::Feature(_) => Kind::Feature,
            Self::Cache(_) => Kind::Cache,
        }
    }

    /// Product, tag, name and description.
    pub fn meta(&self) -> &Meta {
        match self {
            Self::Healthcheck(d) => &d.meta,
            Self::Quota(d) => &d.meta,
            Self::Fallback(d) => &d.meta,
            Self::Feature(d) => &d.meta,
            Self::Cache(d) => &d.meta,
        }
    }

    /// Product, tag, name and description, to change.
    pub fn meta_mut(&mut self) -> &mut Meta {
        match self {
            Self::Healthcheck(d) => &mut d.meta,
            Self::Quota(d) => &mut d.meta,
            Self::Fallback(d) => &mut d.meta,
            Self::Feature(d) => &mut d.meta,
            Self::Cache(d) => &mut d.meta,
        }
    }

    /// What identifies it: product, kind, tag.
    pub fn key(&self) -> (String, Kind, String) {
        let m = self.meta();
        (m.product.clone(), self.kind(), m.tag.clone())
    }

    /// `fallbacks.pay`, the root of error paths.
    pub fn path(&self) -> String {
        format!("{}.{}", self.kind().plural(), self.meta().tag)
    }
}

impl From<HealthcheckDef> for Definition {
    fn from(d: HealthcheckDef) -> Self {
        Self::Healthcheck(d)
    }
}
impl From<QuotaDef> for Definition {
    fn from(d: QuotaDef) -> Self {
        Self::Quota(d)
    }
}
impl From<FallbackDef> for Definition {
    fn from(d: FallbackDef) -> Self {
        Self::Fallback(d)
    }
}
impl From<FeatureDef> for Definition {
    fn from(d: FeatureDef) -> Self {
        Self::Feature(d)
    }
}
impl From<CacheDef> for Definition {
    fn from(d: CacheDef) -> Self {
        Self::Cache(d)
    }
}

pub use crate::error::DefineError;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_and_refuses_unknown_fields() {
        let d: Definition = serde_json::from_value(json!({
            "kind": "fallback", "product": "payments", "tag": "pay",
            "input": {"amount": {"type": "integer"}},
            "options": [{"provider": "stripe", "app": "stripe", "action": "charge", "retries": 2}]
        }))
        .unwrap();
        assert_eq!(d.path(), "fallbacks.pay");
        let Definition::Fallback(f) = &d else {
            panic!("{d:?}")
        };
        assert_eq!(f.options[0].input, json!("$Input{}"));
        assert_eq!(f.options[0].retries, 2);
        let back: Definition = serde_json::from_value(serde_json::to_value(&d).unwrap()).unwrap();
        assert_eq!(back, d);

        let e = serde_json::from_value::<Definition>(json!({
            "kind": "fallback", "product": "p", "tag": "t", "options": [], "panic": true
        }))
        .unwrap_err();
        assert!(e.to_string().contains("unknown field `panic`"), "{e}");
        let e = serde_json::from_value::<Definition>(json!({
            "kind": "fallback", "product": "p", "tag": "t", "optoins": []
        }))
        .unwrap_err();
        assert!(e.to_string().contains("options"), "{e}");
        let e = serde_json::from_value::<Definition>(json!({
            "kind": "fallback", "product": "p", "tag": "t",
            "options": [{"provider": "a", "app": "a", "action": "x", "retry": 1}]
        }))
        .unwrap_err();
        assert!(e.to_string().contains("retry"), "{e}");
    }
}
