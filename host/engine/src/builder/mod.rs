//! The code-first API: `yard.quota().define("sms", "send")
//! .provider("twilio").weight(70).app("twilio-app").action("send-sms")...
//! .create()`, and the same for fallbacks, healthchecks, features and
//! caches. Each kind also has `fetch`, `fetch_all`, `update` (through the
//! builder), `delete`, and for runnable kinds `run` and provider state.
//!
//! `route.rs`: quotas and fallbacks; `others.rs`: healthchecks, features
//! and caches; `commit.rs`: what each ends with; this file: the entry
//! points on [`Switchyard`].

mod commit;
mod others;
mod route;

use crate::definition::{
    CacheDef, DefineError, Definition, FeatureDef, HealthcheckDef, Kind, Meta,
};
use crate::provider_state::{LiveDefinition, ProviderState};
use crate::run::{RunError, RunOptions, RunResult};
use crate::schema::InputSchema;
use crate::switchyard::Switchyard;
pub use others::{CacheBuilder, FeatureBuilder, HealthcheckBuilder};
pub use route::RouteBuilder;
use serde_json::Value;

macro_rules! kind_api {
    ($name:ident, $kind:expr, $what:literal) => {
        #[doc = concat!("The ", $what, " definitions of an engine.")]
        #[derive(Debug, Clone, Copy)]
        pub struct $name<'a> {
            yard: &'a Switchyard,
        }

        impl<'a> $name<'a> {
            #[doc = concat!("One ", $what, ".")]
            pub fn fetch(&self, product: &str, tag: &str) -> Option<Definition> {
                self.yard.fetch(product, $kind, tag)
            }

            #[doc = concat!("One ", $what, " with each option's live state in `envs` (every env of the product when empty).")]
            pub fn fetch_live(
                &self,
                product: &str,
                tag: &str,
                envs: &[String],
            ) -> Option<LiveDefinition> {
                self.yard.fetch_live(product, $kind, tag, envs)
            }

            #[doc = concat!("Every ", $what, " of `product`.")]
            pub fn fetch_all(&self, product: &str) -> Vec<Definition> {
                self.yard.fetch_all(product, Some($kind))
            }

            #[doc = concat!("Delete a ", $what, " (refused while in use).")]
            pub fn delete(&self, product: &str, tag: &str) -> Result<Definition, DefineError> {
                self.yard.delete(product, $kind, tag)
            }
        }
    };
}

kind_api!(Quotas, Kind::Quota, "quota");
kind_api!(Fallbacks, Kind::Fallback, "fallback");
kind_api!(Healthchecks, Kind::Healthcheck, "healthcheck");
kind_api!(Features, Kind::Feature, "feature");
kind_api!(Caches, Kind::Cache, "cache");

macro_rules! runnable {
    ($name:ident, $kind:expr) => {
        impl<'a> $name<'a> {
            /// Run it.
            pub async fn run(
                self,
                product: &str,
                env: &str,
                tag: &str,
                input: Value,
                options: RunOptions,
            ) -> Result<RunResult, RunError> {
                self.yard
                    .run($kind, product, env, tag, input, options)
                    .await
            }
        }
    };
}

runnable!(Quotas, Kind::Quota);
runnable!(Fallbacks, Kind::Fallback);
runnable!(Features, Kind::Feature);

impl<'a> Quotas<'a> {
    /// Start a quota definition.
    pub fn define(&self, product: &str, tag: &str) -> RouteBuilder<'a> {
        RouteBuilder::new(self.yard, Kind::Quota, product, tag)
    }

    /// Health, breaker and counts of each provider in `env`.
    pub fn providers(
        &self,
        product: &str,
        env: &str,
        tag: &str,
    ) -> Result<Vec<ProviderState>, DefineError> {
        self.yard.provider_states(product, env, Kind::Quota, tag)
    }
}

impl<'a> Fallbacks<'a> {
    /// Start a fallback definition.
    pub fn define(&self, product: &str, tag: &str) -> RouteBuilder<'a> {
        RouteBuilder::new(self.yard, Kind::Fallback, product, tag)
    }

    /// Health, breaker and counts of each option in `env`.
    pub fn providers(
        &self,
        product: &str,
        env: &str,
        tag: &str,
    ) -> Result<Vec<ProviderState>, DefineError> {
        self.yard.provider_states(product, env, Kind::Fallback, tag)
    }
}

impl<'a> Healthchecks<'a> {
    /// Start a healthcheck definition.
    pub fn define(&self, product: &str, tag: &str) -> HealthcheckBuilder<'a> {
        HealthcheckBuilder {
            yard: self.yard,
            def: HealthcheckDef::new(Meta::new(product, tag), "", ""),
        }
    }
}

impl<'a> Features<'a> {
    /// Start a feature definition.
    pub fn define(&self, product: &str, tag: &str) -> FeatureBuilder<'a> {
        FeatureBuilder {
            yard: self.yard,
            def: FeatureDef {
                meta: Meta::new(product, tag),
                input: InputSchema::new(),
                steps: Vec::new(),
                output: None,
                deadline_ms: None,
            },
            error: None,
        }
    }
}

impl<'a> Caches<'a> {
    /// Start a result cache definition.
    pub fn define(&self, product: &str, tag: &str) -> CacheBuilder<'a> {
        CacheBuilder {
            yard: self.yard,
            def: CacheDef {
                meta: Meta::new(product, tag),
                ttl_ms: 60_000,
                max_entries: 10_000,
            },
        }
    }
}

impl Switchyard {
    /// Quotas: weighted choice among providers.
    pub fn quota(&self) -> Quotas<'_> {
        Quotas { yard: self }
    }

    /// Fallbacks: ordered options.
    pub fn fallback(&self) -> Fallbacks<'_> {
        Fallbacks { yard: self }
    }

    /// Healthchecks: provider probes.
    pub fn healthcheck(&self) -> Healthchecks<'_> {
        Healthchecks { yard: self }
    }

    /// Features: steps in sequence.
    pub fn feature(&self) -> Features<'_> {
        Features { yard: self }
    }

    /// Result caches.
    pub fn cache(&self) -> Caches<'_> {
        Caches { yard: self }
    }
}
