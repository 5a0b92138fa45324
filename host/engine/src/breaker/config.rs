//! A breaker's settings: the engine-wide defaults ([`BreakerConfig`]),
//! what a definition may override ([`BreakerSettings`]), and which errors
//! count against a breaker ([`Classifier`]).

use crate::adapter::{AttemptError, ErrorClass};
use std::time::Duration;

/// Breaker settings. Defaults: 60 s, 50 %, 5, 30 s, 5 %, probes 10 s.
#[derive(
    Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerConfig {
    /// Window in which failures are counted.
    #[serde(with = "millis")]
    #[schemars(with = "u64")]
    pub failure_timeout: Duration,
    /// Failure percentage that must be exceeded to open.
    pub failure_threshold: f64,
    /// Failures that must be exceeded to open.
    pub minimum_failure_count: u32,
    /// How long the breaker stays open.
    #[serde(with = "millis")]
    #[schemars(with = "u64")]
    pub open_timeout: Duration,
    /// Percentage of the window's requests allowed as half-open probes.
    pub half_open_threshold: f64,
    /// A probe that has not reported after this long releases its permit.
    #[serde(with = "millis")]
    #[schemars(with = "u64")]
    pub probe_timeout: Duration,
    /// The error classes that count as failures (the reference's
    /// `isSystemError`). Unset: the engine's classifier (by default
    /// unavailable, timeout, ambiguous and rate-limited).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_errors: Option<ErrorClasses>,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_timeout: Duration::from_secs(60),
            failure_threshold: 50.0,
            minimum_failure_count: 5,
            open_timeout: Duration::from_secs(30),
            half_open_threshold: 5.0,
            probe_timeout: Duration::from_secs(10),
            system_errors: None,
        }
    }
}

impl BreakerConfig {
    /// Every number within its bounds (durations up to a day, percentages
    /// 0-100, counts up to a million); `at` is the settings' field path.
    pub fn validate(&self, at: &str) -> Result<(), crate::error::DefineError> {
        let day = Duration::from_secs(86_400);
        let bad = |field: &str, why: &str| {
            Err(crate::error::DefineError::new(format!("{at}.{field}"), why))
        };
        for (field, d) in [
            ("failure_timeout", self.failure_timeout),
            ("open_timeout", self.open_timeout),
            ("probe_timeout", self.probe_timeout),
        ] {
            if d.is_zero() || d > day {
                return bad(field, "must be between 1 and 86400000 ms");
            }
        }
        for (field, pct) in [
            ("failure_threshold", self.failure_threshold),
            ("half_open_threshold", self.half_open_threshold),
        ] {
            if !(0.0..=100.0).contains(&pct) {
                return bad(field, "must be a percentage between 0 and 100");
            }
        }
        if self.minimum_failure_count > 1_000_000 {
            return bad("minimum_failure_count", "must be at most 1000000");
        }
        if let Some(set) = self.system_errors
            && set.contains(ErrorClass::Overloaded)
        {
            return bad(
                "system_errors",
                "cannot list `overloaded`: it is the host's own limit, never the provider's failure; remove it",
            );
        }
        Ok(())
    }
}

/// A set of error classes, written as a list (`["unavailable", "timeout"]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ErrorClasses(u8);

impl ErrorClasses {
    fn bit(class: ErrorClass) -> u8 {
        1 << (class as u8)
    }

    /// The set of `classes`.
    pub fn of(classes: &[ErrorClass]) -> Self {
        Self(classes.iter().fold(0, |m, c| m | Self::bit(*c)))
    }

    /// Whether `class` is in the set.
    pub fn contains(self, class: ErrorClass) -> bool {
        self.0 & Self::bit(class) != 0
    }

    /// The classes in the set, in declaration order.
    pub fn classes(self) -> Vec<ErrorClass> {
        ErrorClass::ALL
            .into_iter()
            .filter(|c| self.contains(*c))
            .collect()
    }
}

impl serde::Serialize for ErrorClasses {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.classes().serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for ErrorClasses {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::<ErrorClass>::deserialize(d).map(|v| Self::of(&v))
    }
}

impl schemars::JsonSchema for ErrorClasses {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ErrorClasses".into()
    }

    fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        <Vec<ErrorClass>>::json_schema(g)
    }
}

/// Breaker settings a definition or one of its options sets; every field
/// left out keeps the engine's (`[engine.breaker]`). Same names and units
/// as [`BreakerConfig`].
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct BreakerSettings {
    /// Window in which failures are counted, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_timeout: Option<u64>,
    /// Failure percentage that must be exceeded to open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_threshold: Option<f64>,
    /// Failures that must be exceeded to open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_failure_count: Option<u32>,
    /// How long the breaker stays open, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_timeout: Option<u64>,
    /// Percentage of the window's requests allowed as half-open probes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub half_open_threshold: Option<f64>,
    /// A probe that has not reported after this long releases its permit, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_timeout: Option<u64>,
    /// The error classes that count as failures (`isSystemError`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_errors: Option<ErrorClasses>,
}

impl BreakerSettings {
    /// `self`'s fields over `under`'s: what an option sets wins over what
    /// its definition sets.
    pub fn over_settings(&self, under: &BreakerSettings) -> BreakerSettings {
        BreakerSettings {
            failure_timeout: self.failure_timeout.or(under.failure_timeout),
            failure_threshold: self.failure_threshold.or(under.failure_threshold),
            minimum_failure_count: self.minimum_failure_count.or(under.minimum_failure_count),
            open_timeout: self.open_timeout.or(under.open_timeout),
            half_open_threshold: self.half_open_threshold.or(under.half_open_threshold),
            probe_timeout: self.probe_timeout.or(under.probe_timeout),
            system_errors: self.system_errors.or(under.system_errors),
        }
    }

    /// The settings applied over the engine's `base`.
    pub fn over(&self, base: &BreakerConfig) -> BreakerConfig {
        let ms = Duration::from_millis;
        BreakerConfig {
            failure_timeout: self.failure_timeout.map_or(base.failure_timeout, ms),
            failure_threshold: self.failure_threshold.unwrap_or(base.failure_threshold),
            minimum_failure_count: self
                .minimum_failure_count
                .unwrap_or(base.minimum_failure_count),
            open_timeout: self.open_timeout.map_or(base.open_timeout, ms),
            half_open_threshold: self.half_open_threshold.unwrap_or(base.half_open_threshold),
            probe_timeout: self.probe_timeout.map_or(base.probe_timeout, ms),
            system_errors: self.system_errors.or(base.system_errors),
        }
    }

    /// The fields where `self` and `other` differ, by name.
    pub(crate) fn differences(&self, other: &BreakerSettings) -> Vec<&'static str> {
        let mut out = Vec::new();
        let mut diff = |name, same: bool| {
            if !same {
                out.push(name);
            }
        };
        diff(
            "failure_timeout",
            self.failure_timeout == other.failure_timeout,
        );
        diff(
            "failure_threshold",
            self.failure_threshold == other.failure_threshold,
        );
        diff(
            "minimum_failure_count",
            self.minimum_failure_count == other.minimum_failure_count,
        );
        diff("open_timeout", self.open_timeout == other.open_timeout);
        diff(
            "half_open_threshold",
            self.half_open_threshold == other.half_open_threshold,
        );
        diff("probe_timeout", self.probe_timeout == other.probe_timeout);
        diff("system_errors", self.system_errors == other.system_errors);
        out
    }

    /// Every number within the engine-wide bounds; `at` is the field path.
    pub fn validate(&self, at: &str) -> Result<(), crate::error::DefineError> {
        let too_long = |field: &str, v: Option<u64>| match v {
            Some(ms) if ms == 0 || ms > 86_400_000 => Err(crate::error::DefineError::new(
                format!("{at}.{field}"),
                format!("is {ms}; must be between 1 and 86400000 ms"),
            )),
            _ => Ok(()),
        };
        too_long("failure_timeout", self.failure_timeout)?;
        too_long("open_timeout", self.open_timeout)?;
        too_long("probe_timeout", self.probe_timeout)?;
        self.over(&BreakerConfig::default()).validate(at)
    }
}

mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// Decides whether an error counts against a breaker.
pub type Classifier = Box<dyn Fn(&AttemptError) -> bool + Send + Sync>;

/// The default classifier: unavailable, timeout, ambiguous and rate-limited
/// count; rejected and internal do not.
pub fn default_classifier(e: &AttemptError) -> bool {
    matches!(
        e.class,
        ErrorClass::Unavailable
            | ErrorClass::Timeout
            | ErrorClass::Ambiguous
            | ErrorClass::RateLimited
    )
}
