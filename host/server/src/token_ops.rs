//! Managing API tokens on a running server: make, rotate, revoke, list
//! (admin only), each kept in the store and, in cluster mode, shared
//! through Redis before it takes effect; and the start of authentication
//! when `serve` begins.

use crate::access::{Actor, ConfigToken, NewToken, StoredToken, TokenError, TokenInfo, marks};
use crate::deployment::Deployment;
use crate::store::StoreError;
use std::sync::atomic::Ordering;

/// A token change that was not made.
#[derive(Debug, thiserror::Error)]
pub enum TokenOpError {
    /// Refused as asked.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The cluster could not take it; nothing changed.
    #[error("{0}")]
    Unavailable(String),
    /// The store failed; nothing changed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Deployment {
    /// Authenticate from now on with `tokens` (the config's) and the
    /// API's tokens kept in the store. Returns warnings about stored
    /// tokens that do not read.
    pub fn enable_auth(&self, tokens: &[ConfigToken]) -> Result<Vec<String>, StoreError> {
        self.tokens.replace_config(tokens);
        *self.config_tokens_mut() = marks(tokens);
        let mut warnings = Vec::new();
        if let Some(s) = &self.store {
            let (kept, w) = s.tokens()?;
            warnings = w;
            self.tokens.replace_api(kept);
        }
        self.auth.store(true, Ordering::SeqCst);
        Ok(warnings)
    }

    /// Every token, without secrets.
    pub fn token_list(&self) -> Vec<TokenInfo> {
        self.tokens.list()
    }

    /// Make a token; the token is returned once and never kept.
    pub async fn token_create(
        &self,
        actor: &Actor,
        new: &NewToken,
    ) -> Result<(String, StoredToken), TokenOpError> {
        let config = self.config();
        let (secret, stored) = self
            .tokens
            .prepare(new, &actor.name, |p| config.file.products.contains_key(p))?;
        self.keep_token(&stored).await?;
        self.audit_token(actor, "token-create", &stored);
        Ok((secret, stored))
    }

    /// A new secret for token `name`; the old one stops working at once.
    pub async fn token_rotate(
        &self,
        actor: &Actor,
        name: &str,
    ) -> Result<(String, StoredToken), TokenOpError> {
        let (secret, stored) = self.tokens.prepare_rotate(name, &actor.name)?;
        self.keep_token(&stored).await?;
        self.audit_token(actor, "token-rotate", &stored);
        Ok((secret, stored))
    }

    /// Revoke token `name` at once (on every replica within the sync
    /// interval in cluster mode).
    pub async fn token_revoke(&self, actor: &Actor, name: &str) -> Result<(), TokenOpError> {
        self.tokens.check_revoke(name)?;
        if let Some(c) = &self.cluster {
            c.share_token(name, None)
                .await
                .map_err(TokenOpError::Unavailable)?;
        }
        if let Some(s) = &self.store {
            s.delete_token(name)?;
        }
        self.tokens.remove(name);
        let _ = self.audit(
            actor,
            "token-revoke",
            &format!("token/{name}"),
            String::new(),
        );
        Ok(())
    }

    async fn keep_token(&self, t: &StoredToken) -> Result<(), TokenOpError> {
        if let Some(c) = &self.cluster {
            let json = serde_json::to_string(t).map_err(|e| {
                TokenOpError::Unavailable(format!("token `{}` does not serialize: {e}", t.name))
            })?;
            c.share_token(&t.name, Some(json))
                .await
                .map_err(TokenOpError::Unavailable)?;
        }
        if let Some(s) = &self.store {
            s.put_token(t)?;
        }
        self.tokens.put(t.clone());
        Ok(())
    }

    fn audit_token(&self, actor: &Actor, action: &str, t: &StoredToken) {
        let detail = format!(
            "role {}, products {:?}, envs {:?}{}",
            t.role,
            Vec::<String>::from(t.products.clone()),
            Vec::<String>::from(t.envs.clone()),
            t.expires_unix_ms
                .map(|x| format!(", expires at {x} (Unix ms)"))
                .unwrap_or_default()
        );
        let _ = self.audit(actor, action, &format!("token/{}", t.name), detail);
    }

    /// Take the cluster's tokens (JSON by name) as this replica's, and
    /// keep them in the store.
    pub(crate) fn take_shared_tokens(&self, tokens: Vec<(String, String)>) {
        let mut list = Vec::new();
        for (name, json) in tokens {
            match serde_json::from_str::<StoredToken>(&json) {
                Ok(t) if t.name == name => list.push(t),
                Ok(_) | Err(_) => eprintln!("cluster: shared token `{name}` unreadable, skipped"),
            }
        }
        if list == self.tokens.stored() {
            return;
        }
        if let Some(s) = &self.store
            && let Err(e) = s.replace_tokens(&list)
        {
            eprintln!("cluster: the cluster's tokens could not be kept in the store: {e}");
        }
        self.tokens
            .replace_api(list.into_iter().map(|t| (t, None)).collect());
    }

    /// Write the API tokens' last-used times to the store, when one moved
    /// by more than a minute (called once a minute by `serve`).
    pub fn flush_token_use(&self) {
        if let (Some(s), Some(used)) = (&self.store, self.tokens.take_last_used())
            && let Err(e) = s.touch_tokens(&used)
        {
            tracing::warn!(error = %e, "tokens' last-used times not kept");
        }
    }
}
