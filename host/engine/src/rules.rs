//! Rules on provider errors: a platform team's table, per definition and
//! per option, that decides what a provider's error does before the
//! adapter's class does. A rule matches on the HTTP status, the
//! provider's error code (exact, or a prefix ending in `*`) and the class,
//! all that it names; the first matching rule of the option, else of the
//! definition, applies:
//!
//! - `stop`: the run ends now with that error (no retry, no failover);
//! - `retry`: the option retries it (its `retries`, the retry budget and
//!   backoff as usual), whatever the class says;
//! - `failover`: no more tries at this option; the next one is tried,
//!   even after a `rejected`;
//! - `cooldown`: the app's admission pauses for `cooldown_ms` (as a 429
//!   with Retry-After does), then as `failover`.
//!
//! `failover` may carry `cooldown_ms` too. No rule ever acts on an
//! `ambiguous` outcome of an action that is not safe: a key is honoured by
//! one app, so such an attempt decides the run as the idempotency model
//! says, and the trace notes the rule that was not applied.

use crate::adapter::{AttemptError, ErrorClass};
use crate::error::DefineError;
use serde::{Deserialize, Serialize};

/// Most rules on one definition or option.
pub const MAX_RULES: usize = 32;
/// Longest provider code a rule may name.
pub const MAX_RULE_CODE: usize = 128;

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RuleAction {
    /// End the run with this error.
    Stop,
    /// Retry at this option.
    Retry,
    /// Go on to the next option.
    Failover,
    /// Pause the app's admission for `cooldown_ms`, then fail over.
    Cooldown,
}

impl RuleAction {
    /// Its name in config.
    pub fn as_str(self) -> &'static str {
        match self {
            RuleAction::Stop => "stop",
            RuleAction::Retry => "retry",
            RuleAction::Failover => "failover",
            RuleAction::Cooldown => "cooldown",
        }
    }
}

/// One rule: `{ status = [402], then = "failover", cooldown_ms = 600000 }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorRule {
    /// HTTP statuses it matches (any of them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub status: Vec<u16>,
    /// The provider's error code: exact (`card_declined`), or a prefix
    /// ending in `*` (`card_*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// The class the adapter gave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<ErrorClass>,
    /// What it does: `stop`, `retry`, `failover` or `cooldown`.
    pub then: RuleAction,
    /// `cooldown` (required) and `failover`: pause the app's admission
    /// this long, ms (1 to 86 400 000; a longer Retry-After wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown_ms: Option<u64>,
}

impl ErrorRule {
    /// Whether it matches `e`: everything it names matches.
    pub fn matches(&self, e: &AttemptError) -> bool {
        (self.status.is_empty() || e.status.is_some_and(|s| self.status.contains(&s)))
            && self.code.as_deref().is_none_or(|want| {
                e.code
                    .as_deref()
                    .is_some_and(|got| match want.strip_suffix('*') {
                        Some(prefix) => got.starts_with(prefix),
                        None => got == want,
                    })
            })
            && self.class.is_none_or(|c| c == e.class)
    }

    /// What it matches and does, in words, for the trace.
    pub fn describe(&self) -> String {
        let mut what = Vec::new();
        if !self.status.is_empty() {
            let s: Vec<String> = self.status.iter().map(u16::to_string).collect();
            what.push(format!("status {}", s.join("|")));
        }
        if let Some(c) = &self.code {
            what.push(format!("code {c}"));
        }
        if let Some(c) = self.class {
            what.push(format!("class {}", c.as_str()));
        }
        let mut s = format!("{} → {}", what.join(", "), self.then.as_str());
        if let Some(ms) = self.cooldown_ms {
            s.push_str(&format!(" (cool down {ms} ms)"));
        }
        s
    }

    fn same_match(&self, other: &ErrorRule) -> bool {
        let mut a = self.status.clone();
        let mut b = other.status.clone();
        a.sort_unstable();
        b.sort_unstable();
        a == b && self.code == other.code && self.class == other.class
    }
}

/// Check a list of rules at `at` (`quotas.sms.on`); the error names the
/// rule's field and the fix.
pub fn validate(rules: &[ErrorRule], at: &str) -> Result<(), DefineError> {
    if rules.len() > MAX_RULES {
        return Err(DefineError::new(
            at,
            format!("has {} rules; at most {MAX_RULES}", rules.len()),
        ));
    }
    for (i, r) in rules.iter().enumerate() {
        let p = format!("{at}[{i}]");
        if r.status.is_empty() && r.code.is_none() && r.class.is_none() {
            return Err(DefineError::new(
                p,
                "matches nothing named; give it a `status`, a `code` or a `class`",
            ));
        }
        if let Some(s) = r.status.iter().find(|s| !(100..=599).contains(*s)) {
            return Err(DefineError::new(
                format!("{p}.status"),
                format!("{s} is not an HTTP status (100 to 599)"),
            ));
        }
        if let Some(c) = &r.code
            && (c.is_empty() || c == "*" || c.len() > MAX_RULE_CODE)
        {
            return Err(DefineError::new(
                format!("{p}.code"),
                format!(
                    "must be a provider error code of 1 to {MAX_RULE_CODE} bytes, or a prefix ending in `*` (`card_*`)"
                ),
            ));
        }
        match (r.then, r.cooldown_ms) {
            (RuleAction::Cooldown, None) => {
                return Err(DefineError::new(
                    format!("{p}.cooldown_ms"),
                    "`then = \"cooldown\"` needs `cooldown_ms` (how long the app pauses)",
                ));
            }
            (RuleAction::Stop | RuleAction::Retry, Some(_)) => {
                return Err(DefineError::new(
                    format!("{p}.cooldown_ms"),
                    format!(
                        "goes with `then = \"cooldown\"` or `\"failover\"`, not `\"{}\"`; remove it",
                        r.then.as_str()
                    ),
                ));
            }
            (_, Some(ms)) if !(1..=86_400_000).contains(&ms) => {
                return Err(DefineError::new(
                    format!("{p}.cooldown_ms"),
                    format!("is {ms}; it must be between 1 and 86400000"),
                ));
            }
            _ => {}
        }
        if let Some(j) = rules[..i].iter().position(|o| o.same_match(r)) {
            let o = &rules[j];
            return Err(DefineError::new(
                p,
                if o.then == r.then && o.cooldown_ms == r.cooldown_ms {
                    format!("repeats rule {j}; remove one")
                } else {
                    format!(
                        "matches exactly what rule {j} matches but says `{}` where it says `{}`; the first would always win: keep one",
                        r.then.as_str(),
                        o.then.as_str()
                    )
                },
            ));
        }
    }
    Ok(())
}

/// The rule that decides `e`: an option's own first, then its
/// definition's; with where it is written (`options[1].on[0]`, `on[2]`).
pub(crate) fn find<'a>(
    rules: &'a [(String, ErrorRule)],
    e: &AttemptError,
) -> Option<&'a (String, ErrorRule)> {
    rules.iter().find(|(_, r)| r.matches(e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapter::FailureKind;

    fn err(class: ErrorClass, status: Option<u16>, code: Option<&str>) -> AttemptError {
        let mut e = AttemptError::new(class, FailureKind::Provider, "x");
        e.status = status;
        e.code = code.map(str::to_string);
        e
    }

    fn rule(
        status: &[u16],
        code: Option<&str>,
        class: Option<ErrorClass>,
        then: RuleAction,
    ) -> ErrorRule {
        ErrorRule {
            status: status.to_vec(),
            code: code.map(str::to_string),
            class,
            then,
            cooldown_ms: None,
        }
    }

    #[test]
    fn a_rule_matches_everything_it_names() {
        let r = rule(&[402], None, None, RuleAction::Failover);
        assert!(r.matches(&err(ErrorClass::Rejected, Some(402), None)));
        assert!(!r.matches(&err(ErrorClass::Rejected, Some(400), None)));
        assert!(!r.matches(&err(ErrorClass::Rejected, None, None)));
        let r = rule(
            &[],
            Some("card_*"),
            Some(ErrorClass::Rejected),
            RuleAction::Stop,
        );
        assert!(r.matches(&err(ErrorClass::Rejected, Some(402), Some("card_declined"))));
        assert!(!r.matches(&err(
            ErrorClass::Unavailable,
            Some(402),
            Some("card_declined")
        )));
        assert!(!r.matches(&err(ErrorClass::Rejected, Some(402), Some("expired"))));
        let exact = rule(&[], Some("card_declined"), None, RuleAction::Stop);
        assert!(!exact.matches(&err(ErrorClass::Rejected, None, Some("card_declined_x"))));
        assert_eq!(
            rule(
                &[402, 403],
                None,
                Some(ErrorClass::Rejected),
                RuleAction::Failover
            )
            .describe(),
            "status 402|403, class rejected → failover"
        );
    }

    #[test]
    fn bad_rules_are_refused_naming_the_field() {
        let path = |rules: &[ErrorRule]| validate(rules, "quotas.q.on").unwrap_err().path;
        assert_eq!(
            path(&[rule(&[], None, None, RuleAction::Stop)]),
            "quotas.q.on[0]"
        );
        assert_eq!(
            path(&[rule(&[42], None, None, RuleAction::Stop)]),
            "quotas.q.on[0].status"
        );
        assert_eq!(
            path(&[rule(&[], Some("*"), None, RuleAction::Stop)]),
            "quotas.q.on[0].code"
        );
        assert_eq!(
            path(&[rule(&[500], None, None, RuleAction::Cooldown)]),
            "quotas.q.on[0].cooldown_ms"
        );
        let mut r = rule(&[500], None, None, RuleAction::Retry);
        r.cooldown_ms = Some(10);
        assert_eq!(path(&[r]), "quotas.q.on[0].cooldown_ms");
        let e = validate(
            &[
                rule(&[402, 403], None, None, RuleAction::Failover),
                rule(&[403, 402], None, None, RuleAction::Stop),
            ],
            "quotas.q.on",
        )
        .unwrap_err();
        assert_eq!(e.path, "quotas.q.on[1]");
        assert!(e.reason.contains("always win"), "{e}");
        assert!(validate(&[rule(&[402], None, None, RuleAction::Failover)], "x").is_ok());
    }
}
