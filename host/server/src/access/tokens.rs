//! The tokens a server honours: those of the config file
//! (`[[server.tokens]]`, and `server.token_env` as `default`) and those
//! made through the API. A token made through the API is shown once; only
//! its SHA-256 is kept (in the store and, in cluster mode, in Redis).

use super::principal::{Principal, Role, Scope, check_token_name, constant_time_eq};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// Most tokens made through the API (the config's are not counted).
pub const MAX_API_TOKENS: usize = 1_000;
/// What every token made here starts with (so secret scanners find them).
pub const TOKEN_PREFIX: &str = "syt_";
/// Shortest and longest lifetime of a token made through the API, s.
pub const EXPIRY_RANGE_S: std::ops::RangeInclusive<u64> = 60..=10 * 366 * 24 * 3600;
/// Shortest token the config may name (a guessable one is refused).
pub const MIN_CONFIG_TOKEN_LEN: usize = 16;
/// Longest bearer token read from a request; longer is refused unread.
pub const MAX_PRESENTED_LEN: usize = 512;

/// The SHA-256 of a token.
pub fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A token of the config file, its secret resolved.
#[derive(Clone)]
pub struct ConfigToken {
    /// Its name.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// Products it may act on.
    pub products: Scope,
    /// Envs it may act in.
    pub envs: Scope,
    /// The token itself (hashed when taken in, then dropped).
    pub secret: String,
}

impl ConfigToken {
    /// An `admin` token over everything (as `server.token_env` gives).
    pub fn admin(name: &str, secret: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            role: Role::Admin,
            products: Scope::All,
            envs: Scope::All,
            secret: secret.into(),
        }
    }
}

impl std::fmt::Debug for ConfigToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigToken")
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// What is kept of a token made through the API: never the token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredToken {
    /// Its name.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// Products it may act on.
    pub products: Scope,
    /// Envs it may act in.
    pub envs: Scope,
    /// The SHA-256 of the token, hex.
    pub sha256: String,
    /// When it was made or last rotated (Unix ms).
    pub created_unix_ms: u64,
    /// When it stops working (Unix ms), if ever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_unix_ms: Option<u64>,
    /// The token that made it.
    pub created_by: String,
}

/// A request to make a token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// Its name.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// Products (`["*"]` for all).
    pub products: Vec<String>,
    /// Envs (default all).
    #[serde(default)]
    pub envs: Option<Vec<String>>,
    /// Lifetime in seconds (default: no expiry).
    #[serde(default)]
    pub expires_in_s: Option<u64>,
}

/// A token as the list shows it.
#[derive(Debug, Clone, Serialize)]
pub struct TokenInfo {
    /// Its name.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// Products.
    pub products: Scope,
    /// Envs.
    pub envs: Scope,
    /// `config` (the config file; change it there) or `api`.
    pub source: &'static str,
    /// When made or rotated (API tokens).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_unix_ms: Option<u64>,
    /// When it expires.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_unix_ms: Option<u64>,
    /// Past its expiry.
    pub expired: bool,
    /// Last accepted by this server (Unix ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_used_unix_ms: Option<u64>,
    /// The token that made it (API tokens).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
}

/// Why a token change was refused.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Bad name, role, scope or expiry.
    #[error("{0}")]
    Invalid(String),
    /// A token of that name exists.
    #[error("a token named `{0}` exists; revoke it first or pick another name")]
    Exists(String),
    /// No token of that name.
    #[error("no token named `{0}`")]
    NotFound(String),
    /// It comes from the config file.
    #[error("token `{0}` comes from the config file; change or remove it there and reload")]
    FromConfig(String),
    /// Too many.
    #[error(
        "{MAX_API_TOKENS} tokens were made through the API, the most a server keeps; revoke unused ones"
    )]
    Full,
}

/// Why a presented token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthFailure {
    /// No `Authorization: Bearer` header.
    Missing,
    /// No token matches.
    Unknown,
    /// It matched a token past its expiry.
    Expired(String),
}

impl AuthFailure {
    /// Its label in `switchyard_auth_failures_total`.
    pub fn label(&self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing",
            AuthFailure::Unknown => "unknown",
            AuthFailure::Expired(_) => "expired",
        }
    }
}

#[derive(Debug)]
struct Entry {
    principal: Principal,
    digest: [u8; 32],
    stored: Option<StoredToken>,
    last_used: AtomicU64,
}

/// Every token this server honours.
#[derive(Debug, Default)]
pub struct Tokens {
    entries: RwLock<Arc<Vec<Arc<Entry>>>>,
    /// Set when a last-used time moved by more than a minute since the
    /// store last had it.
    dirty: std::sync::atomic::AtomicBool,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Tokens {
    fn all(&self) -> Arc<Vec<Arc<Entry>>> {
        self.entries
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn set(&self, entries: Vec<Arc<Entry>>) {
        *self
            .entries
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(entries);
    }

    /// Whether any token is known (none: authentication is off).
    pub fn is_empty(&self) -> bool {
        self.all().is_empty()
    }

    /// Check the config's tokens: names, lengths, no name twice, no token
    /// twice. The error names the token at fault, never the secret.
    pub fn check_config(tokens: &[ConfigToken]) -> Result<(), String> {
        for (i, t) in tokens.iter().enumerate() {
            check_token_name(&t.name).map_err(|e| format!("server.tokens[{i}].name: {e}"))?;
            if t.secret.len() < MIN_CONFIG_TOKEN_LEN || t.secret.len() > MAX_PRESENTED_LEN {
                return Err(format!(
                    "server.tokens[{i}].token: token `{}` is {} bytes; use {MIN_CONFIG_TOKEN_LEN} to {MAX_PRESENTED_LEN} (e.g. `openssl rand -hex 24`)",
                    t.name,
                    t.secret.len()
                ));
            }
            if tokens[..i].iter().any(|o| o.name == t.name) {
                return Err(format!(
                    "server.tokens[{i}].name: `{}` names two tokens; names must differ",
                    t.name
                ));
            }
            if let Some(o) = tokens[..i].iter().find(|o| o.secret == t.secret) {
                return Err(format!(
                    "server.tokens[{i}].token: tokens `{}` and `{}` are the same secret; give each its own",
                    o.name, t.name
                ));
            }
        }
        Ok(())
    }

    /// Take the config's tokens (at start and at reload), keeping the API's.
    pub fn replace_config(&self, tokens: &[ConfigToken]) {
        let old = self.all();
        let mut entries: Vec<Arc<Entry>> = tokens
            .iter()
            .map(|t| {
                let d = digest(&t.secret);
                let last = old
                    .iter()
                    .find(|e| e.stored.is_none() && e.digest == d)
                    .map_or(0, |e| e.last_used.load(Ordering::Relaxed));
                Arc::new(Entry {
                    principal: Principal {
                        name: t.name.clone(),
                        role: t.role,
                        products: t.products.clone(),
                        envs: t.envs.clone(),
                        expires_unix_ms: None,
                    },
                    digest: d,
                    stored: None,
                    last_used: AtomicU64::new(last),
                })
            })
            .collect();
        // An API token whose name the config now takes steps aside.
        entries.extend(
            old.iter()
                .filter(|e| e.stored.is_some())
                .filter(|e| !tokens.iter().any(|t| t.name == e.principal.name))
                .cloned(),
        );
        self.set(entries);
    }

    /// Take the API's tokens as the store or the cluster holds them, with
    /// last-used times where known, keeping the config's.
    pub fn replace_api(&self, tokens: Vec<(StoredToken, Option<u64>)>) {
        let old = self.all();
        let mut entries: Vec<Arc<Entry>> =
            old.iter().filter(|e| e.stored.is_none()).cloned().collect();
        for (t, last_used) in tokens.into_iter().take(MAX_API_TOKENS) {
            if entries.iter().any(|e| e.principal.name == t.name) {
                continue;
            }
            let Some(d) = hex::decode(&t.sha256)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
            else {
                continue;
            };
            let last = old
                .iter()
                .find(|e| e.digest == d)
                .map(|e| e.last_used.load(Ordering::Relaxed))
                .unwrap_or_default()
                .max(last_used.unwrap_or_default());
            entries.push(Arc::new(Entry {
                principal: Principal {
                    name: t.name.clone(),
                    role: t.role,
                    products: t.products.clone(),
                    envs: t.envs.clone(),
                    expires_unix_ms: t.expires_unix_ms,
                },
                digest: d,
                stored: Some(t),
                last_used: AtomicU64::new(last),
            }));
        }
        self.set(entries);
    }

    /// The API's tokens as kept.
    pub fn stored(&self) -> Vec<StoredToken> {
        self.all().iter().filter_map(|e| e.stored.clone()).collect()
    }

    /// Who `presented` is. Every known digest is compared, in constant
    /// time, whatever matches.
    pub fn authenticate(&self, presented: Option<&str>) -> Result<Principal, AuthFailure> {
        let Some(presented) = presented else {
            return Err(AuthFailure::Missing);
        };
        if presented.is_empty() || presented.len() > MAX_PRESENTED_LEN {
            return Err(AuthFailure::Unknown);
        }
        let d = digest(presented);
        let all = self.all();
        let mut found: Option<&Arc<Entry>> = None;
        for e in all.iter() {
            if constant_time_eq(&e.digest, &d) {
                found = Some(e);
            }
        }
        let e = found.ok_or(AuthFailure::Unknown)?;
        let now = now_ms();
        if e.principal.expires_unix_ms.is_some_and(|x| now >= x) {
            return Err(AuthFailure::Expired(e.principal.name.clone()));
        }
        if now.saturating_sub(e.last_used.swap(now, Ordering::Relaxed)) > 60_000 {
            self.dirty.store(true, Ordering::Relaxed);
        }
        Ok(e.principal.clone())
    }

    /// The last-used times of API tokens, when one moved by more than a
    /// minute since the last call (for the store).
    pub fn take_last_used(&self) -> Option<Vec<(String, u64)>> {
        if !self.dirty.swap(false, Ordering::Relaxed) {
            return None;
        }
        Some(
            self.all()
                .iter()
                .filter(|e| e.stored.is_some())
                .map(|e| {
                    (
                        e.principal.name.clone(),
                        e.last_used.load(Ordering::Relaxed),
                    )
                })
                .filter(|(_, t)| *t > 0)
                .collect(),
        )
    }

    /// Every token, config's first, for the list.
    pub fn list(&self) -> Vec<TokenInfo> {
        let now = now_ms();
        self.all()
            .iter()
            .map(|e| {
                let last = e.last_used.load(Ordering::Relaxed);
                TokenInfo {
                    name: e.principal.name.clone(),
                    role: e.principal.role,
                    products: e.principal.products.clone(),
                    envs: e.principal.envs.clone(),
                    source: if e.stored.is_some() { "api" } else { "config" },
                    created_unix_ms: e.stored.as_ref().map(|s| s.created_unix_ms),
                    expires_unix_ms: e.principal.expires_unix_ms,
                    expired: e.principal.expires_unix_ms.is_some_and(|x| now >= x),
                    last_used_unix_ms: (last > 0).then_some(last),
                    created_by: e.stored.as_ref().map(|s| s.created_by.clone()),
                }
            })
            .collect()
    }

    /// Make a new token (not yet honoured: keep the returned record, then
    /// [`Tokens::put`] it). `products_known` says whether a product exists.
    /// Returns the token (shown once) and what is kept of it.
    pub fn prepare(
        &self,
        new: &NewToken,
        by: &str,
        products_known: impl Fn(&str) -> bool,
    ) -> Result<(String, StoredToken), TokenError> {
        check_token_name(&new.name).map_err(TokenError::Invalid)?;
        let all = self.all();
        if let Some(e) = all.iter().find(|e| e.principal.name == new.name) {
            return Err(if e.stored.is_none() {
                TokenError::FromConfig(new.name.clone())
            } else {
                TokenError::Exists(new.name.clone())
            });
        }
        if all.iter().filter(|e| e.stored.is_some()).count() >= MAX_API_TOKENS {
            return Err(TokenError::Full);
        }
        if new.products.is_empty() || new.products.len() > 100 {
            return Err(TokenError::Invalid(
                "products: name 1 to 100 products, or `[\"*\"]` for all".into(),
            ));
        }
        let products = Scope::from(new.products.clone());
        if let Scope::Only(names) = &products
            && let Some(p) = names.iter().find(|p| !products_known(p))
        {
            return Err(TokenError::Invalid(format!(
                "products: no product `{p}` in this server's config"
            )));
        }
        let envs = match &new.envs {
            None => Scope::All,
            Some(v) if v.is_empty() || v.len() > 100 => {
                return Err(TokenError::Invalid(
                    "envs: name 1 to 100 envs, or leave it out for all".into(),
                ));
            }
            Some(v) => Scope::from(v.clone()),
        };
        let now = now_ms();
        let expires_unix_ms = match new.expires_in_s {
            None => None,
            Some(s) if EXPIRY_RANGE_S.contains(&s) => Some(now.saturating_add(s * 1000)),
            Some(s) => {
                return Err(TokenError::Invalid(format!(
                    "expires_in_s is {s}; it must be between {} and {} (about 10 years), or left out for no expiry",
                    EXPIRY_RANGE_S.start(),
                    EXPIRY_RANGE_S.end()
                )));
            }
        };
        let secret = fresh_secret();
        let stored = StoredToken {
            name: new.name.clone(),
            role: new.role,
            products,
            envs,
            sha256: hex::encode(digest(&secret)),
            created_unix_ms: now,
            expires_unix_ms,
            created_by: by.into(),
        };
        Ok((secret, stored))
    }

    /// A new secret for API token `name` (what is kept of it, to
    /// [`Tokens::put`]); the old secret stops working when it is put.
    pub fn prepare_rotate(
        &self,
        name: &str,
        by: &str,
    ) -> Result<(String, StoredToken), TokenError> {
        let all = self.all();
        let e = all
            .iter()
            .find(|e| e.principal.name == name)
            .ok_or_else(|| TokenError::NotFound(name.into()))?;
        let Some(old) = &e.stored else {
            return Err(TokenError::FromConfig(name.into()));
        };
        let secret = fresh_secret();
        let now = now_ms();
        // The lifetime it had, counted again from now.
        let expires_unix_ms = old
            .expires_unix_ms
            .map(|x| now.saturating_add(x.saturating_sub(old.created_unix_ms)));
        Ok((
            secret.clone(),
            StoredToken {
                sha256: hex::encode(digest(&secret)),
                created_unix_ms: now,
                expires_unix_ms,
                created_by: by.into(),
                ..old.clone()
            },
        ))
    }

    /// That API token `name` may be revoked.
    pub fn check_revoke(&self, name: &str) -> Result<(), TokenError> {
        match self.all().iter().find(|e| e.principal.name == name) {
            None => Err(TokenError::NotFound(name.into())),
            Some(e) if e.stored.is_none() => Err(TokenError::FromConfig(name.into())),
            Some(_) => Ok(()),
        }
    }

    /// Honour `t` (replacing one of its name).
    pub fn put(&self, t: StoredToken) {
        let mut list: Vec<(StoredToken, Option<u64>)> = self
            .stored()
            .into_iter()
            .filter(|s| s.name != t.name)
            .map(|s| (s, None))
            .collect();
        list.push((t, None));
        self.replace_api(list);
    }

    /// Stop honouring API token `name`.
    pub fn remove(&self, name: &str) {
        let list = self
            .stored()
            .into_iter()
            .filter(|s| s.name != name)
            .map(|s| (s, None))
            .collect();
        self.replace_api(list);
    }
}

/// What identifies each config token (name, role, scope, digest), to
/// tell a reload's change.
pub fn marks(tokens: &[ConfigToken]) -> Vec<String> {
    tokens
        .iter()
        .map(|t| {
            format!(
                "{}:{:?}:{:?}:{:?}:{}",
                t.name,
                t.role,
                t.products,
                t.envs,
                hex::encode(digest(&t.secret))
            )
        })
        .collect()
}

/// `syt_` and 64 hex digits of the OS's randomness.
fn fresh_secret() -> String {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).expect("the OS gives random bytes");
    format!("{TOKEN_PREFIX}{}", hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(name: &str, secret: &str, role: Role) -> ConfigToken {
        ConfigToken {
            name: name.into(),
            role,
            products: Scope::All,
            envs: Scope::All,
            secret: secret.into(),
        }
    }

    #[test]
    fn made_tokens_are_shown_once_kept_hashed_rotated_and_revoked() {
        let t = Tokens::default();
        t.replace_config(&[config("default", "admin-token-0123456789", Role::Admin)]);
        let new = NewToken {
            name: "checkout".into(),
            role: Role::Run,
            products: vec!["shop".into()],
            envs: Some(vec!["prd".into()]),
            expires_in_s: None,
        };
        assert!(matches!(
            t.prepare(&new, "default", |p| p == "other"),
            Err(TokenError::Invalid(_))
        ));
        let (secret, stored) = t.prepare(&new, "default", |p| p == "shop").unwrap();
        assert!(secret.starts_with(TOKEN_PREFIX) && secret.len() == 68);
        assert!(!serde_json::to_string(&stored).unwrap().contains(&secret));
        assert!(
            t.authenticate(Some(&secret)).is_err(),
            "not honoured before put"
        );
        t.put(stored);
        let p = t.authenticate(Some(&secret)).unwrap();
        assert_eq!((p.name.as_str(), p.role), ("checkout", Role::Run));
        assert!(matches!(
            t.prepare(&new, "default", |_| true),
            Err(TokenError::Exists(_))
        ));
        let (again, rotated) = t.prepare_rotate("checkout", "default").unwrap();
        t.put(rotated);
        assert_eq!(t.authenticate(Some(&secret)), Err(AuthFailure::Unknown));
        assert!(t.authenticate(Some(&again)).is_ok());
        assert!(matches!(
            t.check_revoke("default"),
            Err(TokenError::FromConfig(_))
        ));
        t.remove("checkout");
        assert_eq!(t.authenticate(Some(&again)), Err(AuthFailure::Unknown));
        assert_eq!(t.authenticate(None), Err(AuthFailure::Missing));
        assert_eq!(
            t.authenticate(Some("admin-token-0123456789")).unwrap().role,
            Role::Admin
        );
    }

    #[test]
    fn an_expired_token_is_refused_by_name() {
        let t = Tokens::default();
        let secret = "syt_expired";
        t.replace_api(vec![(
            StoredToken {
                name: "old".into(),
                role: Role::Read,
                products: Scope::All,
                envs: Scope::All,
                sha256: hex::encode(digest(secret)),
                created_unix_ms: 1,
                expires_unix_ms: Some(2),
                created_by: "default".into(),
            },
            None,
        )]);
        assert_eq!(
            t.authenticate(Some(secret)),
            Err(AuthFailure::Expired("old".into()))
        );
        assert!(t.list()[0].expired);
    }

    #[test]
    fn config_tokens_are_checked_without_echoing_secrets() {
        let short = [config("a", "short", Role::Admin)];
        let e = Tokens::check_config(&short).unwrap_err();
        assert!(e.contains("server.tokens[0].token") && !e.contains("short\""));
        let twice = [
            config("a", "0123456789abcdef", Role::Admin),
            config("b", "0123456789abcdef", Role::Read),
        ];
        assert!(
            Tokens::check_config(&twice)
                .unwrap_err()
                .contains("same secret")
        );
    }
}
