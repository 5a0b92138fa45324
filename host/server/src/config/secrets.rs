//! Secret references in credentials: `{ env = "VAR" }` reads an
//! environment variable, `{ secret = "name" }` reads the secrets file.
//! A secret written inline is refused, so config files can be committed.

use std::collections::BTreeMap;
use std::path::Path;
use switchyard_runtime::{Credential, GrantCredential};

/// Credential fields that hold secrets.
const SECRET_FIELDS: &[&str] = &[
    "token",
    "password",
    "key",
    "secret_access_key",
    "session_token",
    "client_secret",
];

/// The secrets file: `name = "value"` lines.
#[derive(Default, Clone)]
pub struct Secrets {
    values: BTreeMap<String, String>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("names", &self.values.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Secrets {
    /// Read a secrets file.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read secrets file {}: {e}", path.display()))?;
        let table: toml::Table = toml::from_str(&text).map_err(|e| {
            format!(
                "secrets file {} is not TOML `name = \"value\"` lines: {}",
                path.display(),
                e.message()
            )
        })?;
        let mut values = BTreeMap::new();
        for (k, v) in table {
            let Some(s) = v.as_str() else {
                return Err(format!(
                    "secrets file {}: `{k}` must be a string",
                    path.display()
                ));
            };
            values.insert(k, s.to_string());
        }
        Ok(Self { values })
    }

    /// Resolve a credential table; on error, the field at fault and why
    /// (never the secret itself).
    pub fn credential(
        &self,
        table: &toml::Table,
    ) -> Result<GrantCredential, (Option<String>, String)> {
        let mut resolved = toml::Table::new();
        let mut origins = Vec::new();
        for (field, value) in table {
            if field == "origins" {
                let list = value.as_array().and_then(|a| {
                    a.iter()
                        .map(|o| o.as_str().map(str::to_string))
                        .collect::<Option<Vec<_>>>()
                });
                origins = list.ok_or_else(|| {
                    (
                        Some(field.clone()),
                        "must be a list of origins from the app's `allow` list, e.g. `[\"https://api.stripe.com\"]`".to_string(),
                    )
                })?;
                continue;
            }
            let v = match value {
                toml::Value::Table(r) => {
                    toml::Value::String(self.reference(r).map_err(|e| (Some(field.clone()), e))?)
                }
                // Any inline value of a secret field, a number too: the
                // error must not echo it.
                _ if SECRET_FIELDS.contains(&field.as_str()) => {
                    return Err((
                        Some(field.clone()),
                        "a secret written inline; reference it instead: `{ env = \"VAR\" }` (an environment variable) or `{ secret = \"name\" }` (from `secrets_file`)".into(),
                    ));
                }
                other => other.clone(),
            };
            resolved.insert(field.clone(), v);
        }
        let credential: Credential = toml::Value::Table(resolved).try_into().map_err(
            |e: toml::de::Error| {
                (
                    None,
                    format!(
                        "{}; schemes: bearer (token), basic (username, password), api-key-header (header, key), aws-sigv4 (access_key_id, secret_access_key, region, service), oauth2-client-credentials (token_url, client_id, client_secret, scope)",
                        e.message().trim_end()
                    ),
                )
            },
        )?;
        credential.validate().map_err(|e| (None, e.to_string()))?;
        Ok(GrantCredential {
            origins,
            credential,
        })
    }

    pub(crate) fn reference(&self, r: &toml::Table) -> Result<String, String> {
        let one = |k: &str| r.get(k).and_then(|v| v.as_str());
        match (one("env"), one("secret"), r.len()) {
            (Some(var), None, 1) => std::env::var(var).map_err(|_| {
                format!("environment variable `{var}` is not set; export it before starting switchyard")
            }),
            (None, Some(name), 1) => self.values.get(name).cloned().ok_or_else(|| {
                format!("no secret `{name}` in the secrets file; add `{name} = \"...\"` to it (and set `secrets_file`)")
            }),
            _ => Err("a secret reference is `{ env = \"VAR\" }` or `{ secret = \"name\" }`".into()),
        }
    }
}
