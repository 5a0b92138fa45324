//! Who a request acts as: roles and what each grants, scopes, the
//! principal a token names, the actor the audit records, and the rule for
//! token names.

use serde::{Deserialize, Serialize};

/// The channels a caller may name (`x-switchyard-actor`).
pub const CHANNELS: [&str; 3] = ["api", "cli", "dashboard"];

/// Who acted (a token's name) and through what channel: what the audit
/// records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The token's name (`anonymous` when auth is off).
    pub name: String,
    /// `api`, `cli`, `dashboard` or `signal`.
    pub channel: &'static str,
}

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Run definitions.
    Run,
    /// Read definitions, provider state, runs, events, the audit, metrics.
    Read,
    /// `read` plus operator actions.
    Operate,
    /// `read` plus changing definitions and admission settings.
    Define,
    /// Everything, reload and tokens included.
    Admin,
}

impl Role {
    /// Every role, weakest first.
    pub const ALL: [Role; 5] = [
        Role::Run,
        Role::Read,
        Role::Operate,
        Role::Define,
        Role::Admin,
    ];

    /// Its name in the config and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Run => "run",
            Role::Read => "read",
            Role::Operate => "operate",
            Role::Define => "define",
            Role::Admin => "admin",
        }
    }

    /// Parse a role's name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Whether this role grants what `need` asks.
    pub fn grants(self, need: Need) -> bool {
        match need {
            Need::Any => true,
            Need::Role(r) => {
                self == r
                    || self == Role::Admin
                    || (r == Role::Read && matches!(self, Role::Operate | Role::Define))
            }
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a route asks of the token that calls it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Any valid token (who am I).
    Any,
    /// This role (or one that includes it).
    Role(Role),
}

/// A list of names, or every name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Vec<String>", into = "Vec<String>")]
pub enum Scope {
    /// `["*"]`: every name.
    All,
    /// Only these.
    Only(Vec<String>),
}

impl From<Vec<String>> for Scope {
    fn from(v: Vec<String>) -> Self {
        if v.iter().any(|s| s == "*") {
            Scope::All
        } else {
            Scope::Only(v)
        }
    }
}

impl From<Scope> for Vec<String> {
    fn from(s: Scope) -> Self {
        match s {
            Scope::All => vec!["*".into()],
            Scope::Only(v) => v,
        }
    }
}

impl Scope {
    /// Whether `name` is in it.
    pub fn has(&self, name: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Only(v) => v.iter().any(|x| x == name),
        }
    }

    /// Whether it is every name.
    pub fn is_all(&self) -> bool {
        matches!(self, Scope::All)
    }
}

/// Who a request acts as: the token's name, role and scope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Principal {
    /// The token's name (the audit's actor).
    pub name: String,
    /// Its role.
    pub role: Role,
    /// The products it may act on.
    pub products: Scope,
    /// The envs it may act in.
    pub envs: Scope,
    /// When it expires (Unix ms), if ever.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_unix_ms: Option<u64>,
}

impl Principal {
    /// The principal of a server that runs with `server.auth = false`.
    pub fn open() -> Self {
        Self {
            name: "anonymous".into(),
            role: Role::Admin,
            products: Scope::All,
            envs: Scope::All,
            expires_unix_ms: None,
        }
    }

    /// Whether it may act on `product` (and `env`, when one is named).
    pub fn may(&self, product: &str, env: Option<&str>) -> bool {
        self.products.has(product) && env.is_none_or(|e| self.envs.has(e))
    }

    /// Whether it sees everything (every product and env).
    pub fn sees_all(&self) -> bool {
        self.products.is_all() && self.envs.is_all()
    }

    /// Whether it may act on the breaker `key` (`product/env/…`).
    pub fn may_breaker(&self, key: &str) -> bool {
        breaker_scope(key).is_some_and(|(p, e)| self.may(p, Some(e)))
    }

    /// Why it may not act on `product`/`env`, if it may not.
    pub fn refusal(&self, product: &str, env: Option<&str>) -> Option<String> {
        if !self.products.has(product) {
            return Some(format!(
                "token `{}` is scoped to products {:?}, not `{product}`",
                self.name,
                Vec::<String>::from(self.products.clone())
            ));
        }
        match env {
            Some(e) if !self.envs.has(e) => Some(format!(
                "token `{}` is scoped to envs {:?}, not `{e}`",
                self.name,
                Vec::<String>::from(self.envs.clone())
            )),
            _ => None,
        }
    }
}

/// The product and env of a breaker key (`product/env/app/action`, or
/// `product/env/<rendered breaker_key>`); `None` without both.
pub fn breaker_scope(key: &str) -> Option<(&str, &str)> {
    let mut parts = key.splitn(3, '/');
    Some((parts.next()?, parts.next()?))
}

/// The rule for names of tokens: 1 to 64 of `A-Z a-z 0-9 . _ -`, starting
/// with a letter or digit.
pub fn check_token_name(name: &str) -> Result<(), String> {
    let ok = (1..=64).contains(&name.len())
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "token name `{}` must be 1 to 64 of A-Z a-z 0-9 . _ -, starting with a letter or digit",
            name.chars().take(80).collect::<String>()
        ))
    }
}

/// Constant-time equality of two byte strings of the same length.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_include_read_where_they_should_and_nothing_else() {
        use Role::*;
        let table = [
            (Run, [true, false, false, false, true]),
            (Read, [false, true, true, true, true]),
            (Operate, [false, false, true, false, true]),
            (Define, [false, false, false, true, true]),
            (Admin, [false, false, false, false, true]),
        ];
        for (need, by) in table {
            for (role, expected) in Role::ALL.into_iter().zip(by) {
                assert_eq!(role.grants(Need::Role(need)), expected, "{role} for {need}");
            }
        }
        assert!(Role::ALL.iter().all(|r| r.grants(Need::Any)));
    }

    #[test]
    fn scopes_and_names() {
        let p = Principal {
            name: "checkout".into(),
            role: Role::Run,
            products: Scope::from(vec!["shop".to_string()]),
            envs: Scope::from(vec!["prd".to_string()]),
            expires_unix_ms: None,
        };
        assert!(p.may("shop", Some("prd")));
        assert!(p.may("shop", None));
        assert!(!p.may("shop", Some("stg")));
        assert!(p.refusal("other", None).unwrap().contains("products"));
        assert!(p.refusal("shop", Some("stg")).unwrap().contains("envs"));
        assert!(Scope::from(vec!["*".to_string()]).is_all());
        assert!(check_token_name("on-call.2").is_ok());
        assert!(check_token_name(".seeded").is_err());
        assert!(check_token_name("").is_err());
        assert!(check_token_name(&"x".repeat(65)).is_err());
    }
}
