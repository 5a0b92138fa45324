//! The embedded store: definitions and healthcheck history in one SQLite
//! file, so what the API creates survives a restart (including `kill -9`:
//! WAL journal, one transaction per change).

use rusqlite::{Connection, OptionalExtension, params};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};
use switchyard_engine::{AdmissionConfig, Definition, HealthKey, Kind, ProbeOutcome};
use thiserror::Error;

/// Schema version written to `PRAGMA user_version`.
const SCHEMA_VERSION: i64 = 3;

/// A store operation that failed.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The database file could not be opened or migrated.
    #[error(
        "cannot open the store {path}: {source}; check that its directory exists and is writable, or set `server.store` to another file"
    )]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        source: rusqlite::Error,
    },
    /// The file was written by a newer Switchyard.
    #[error(
        "the store {path} has schema version {found}, newer than this binary's {SCHEMA_VERSION}; upgrade switchyard or point `server.store` at another file"
    )]
    TooNew {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: i64,
    },
    /// A query failed.
    #[error("store query failed: {0}")]
    Sql(#[from] rusqlite::Error),
    /// A stored row does not parse (written by hand or by a different
    /// version).
    #[error("stored {kind} `{product}/{tag}` does not parse: {reason}")]
    Corrupt {
        /// Kind.
        kind: String,
        /// Product.
        product: String,
        /// Tag.
        tag: String,
        /// The parse error.
        reason: String,
    },
}

/// Definitions and healthcheck history on disk.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    conn: Mutex<Connection>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// API tokens as kept, each with when it was last used (Unix ms).
pub type KeptTokens = Vec<(crate::access::StoredToken, Option<u64>)>;

/// Audit entries kept (the oldest go past it).
pub const AUDIT_KEPT: i64 = 10_000;

/// One operator action, as the store keeps it and the API and page show it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AuditEntry {
    /// Its number (0 before it is stored).
    pub id: i64,
    /// When (Unix ms).
    pub at_unix_ms: u64,
    /// Who acted: the name of the token the request carried (`anonymous`
    /// when auth is off, `signal` for a SIGHUP reload).
    pub actor: String,
    /// Through what: `api`, `cli` or `dashboard` (the
    /// `x-switchyard-actor` header, a claim the caller makes), or `signal`.
    pub channel: String,
    /// `check-now`, `force-open`, `force-closed`, `release`, `drain` or
    /// `restore`.
    pub action: String,
    /// What it acted on: `product/env/healthcheck`, a breaker key, or
    /// `product/provider`.
    pub target: String,
    /// What came of it.
    pub detail: String,
}

impl Store {
    /// Open (creating if needed) the store at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let open_err = |source| StoreError::Open {
            path: path.clone(),
            source,
        };
        let conn = Connection::open(&path).map_err(open_err)?;
        // WAL: a crash (even SIGKILL) loses no committed transaction and
        // readers never block the writer.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(open_err)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(open_err)?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                path,
                found: version,
            });
        }
        conn.execute_batch(
            "BEGIN;
             CREATE TABLE IF NOT EXISTS definitions (
                 product TEXT NOT NULL,
                 kind TEXT NOT NULL,
                 tag TEXT NOT NULL,
                 body TEXT NOT NULL,
                 updated_unix_ms INTEGER NOT NULL,
                 PRIMARY KEY (product, kind, tag)
             );
             CREATE TABLE IF NOT EXISTS health_history (
                 id INTEGER PRIMARY KEY AUTOINCREMENT,
                 product TEXT NOT NULL,
                 env TEXT NOT NULL,
                 tag TEXT NOT NULL,
                 outcome TEXT NOT NULL
             );
             CREATE INDEX IF NOT EXISTS health_history_key
                 ON health_history (product, env, tag, id);
             CREATE TABLE IF NOT EXISTS app_admission (
                 product TEXT NOT NULL,
                 app TEXT NOT NULL,
                 body TEXT NOT NULL,
                 updated_unix_ms INTEGER NOT NULL,
                 PRIMARY KEY (product, app)
             );
             CREATE TABLE IF NOT EXISTS operator_audit (
                 id INTEGER PRIMARY KEY AUTOINCREMENT,
                 at_unix_ms INTEGER NOT NULL,
                 actor TEXT NOT NULL,
                 action TEXT NOT NULL,
                 target TEXT NOT NULL,
                 detail TEXT NOT NULL
             );
             CREATE TABLE IF NOT EXISTS operator_state (
                 what TEXT NOT NULL,
                 product TEXT NOT NULL,
                 target TEXT NOT NULL,
                 value TEXT NOT NULL,
                 PRIMARY KEY (what, product, target)
             );
             CREATE TABLE IF NOT EXISTS api_tokens (
                 name TEXT PRIMARY KEY,
                 body TEXT NOT NULL,
                 last_used_unix_ms INTEGER
             );
             CREATE TABLE IF NOT EXISTS provider_history (
                 key TEXT NOT NULL,
                 product TEXT NOT NULL,
                 env TEXT NOT NULL,
                 at_unix_ms INTEGER NOT NULL,
                 ok INTEGER NOT NULL,
                 failed INTEGER NOT NULL,
                 rejected INTEGER NOT NULL,
                 latency TEXT NOT NULL,
                 PRIMARY KEY (key, at_unix_ms)
             );
             CREATE INDEX IF NOT EXISTS provider_history_at
                 ON provider_history (at_unix_ms);
             COMMIT;",
        )
        .map_err(open_err)?;
        // Version 2: the audit names the channel (api, cli, dashboard) apart
        // from the token that acted.
        let has_channel: bool = conn
            .prepare("SELECT 1 FROM pragma_table_info('operator_audit') WHERE name = 'channel'")
            .and_then(|mut st| st.exists([]))
            .map_err(open_err)?;
        if !has_channel {
            conn.execute_batch(
                "ALTER TABLE operator_audit ADD COLUMN channel TEXT NOT NULL DEFAULT 'api';",
            )
            .map_err(open_err)?;
        }
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(open_err)?;
        Ok(Self {
            path,
            conn: Mutex::new(conn),
        })
    }

    /// Keep minutes of providers' history (a minute already kept for a
    /// key is replaced).
    pub fn put_history(&self, rows: &[crate::history::Minute]) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut st = tx.prepare_cached(
                "INSERT OR REPLACE INTO provider_history
                 (key, product, env, at_unix_ms, ok, failed, rejected, latency)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            for r in rows {
                let latency =
                    serde_json::to_string(&r.latency.to_sparse()).expect("pairs serialize");
                st.execute(params![
                    r.key,
                    r.product,
                    r.env,
                    i64::try_from(r.at_unix_ms).unwrap_or(i64::MAX),
                    i64::try_from(r.ok).unwrap_or(i64::MAX),
                    i64::try_from(r.failed).unwrap_or(i64::MAX),
                    i64::try_from(r.rejected).unwrap_or(i64::MAX),
                    latency
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// `key`'s minutes from `from` (inclusive) to `to` (exclusive), Unix
    /// ms, oldest first.
    pub fn history(
        &self,
        key: &str,
        from: u64,
        to: u64,
    ) -> Result<Vec<crate::history::Minute>, StoreError> {
        let conn = self.conn();
        let mut st = conn.prepare_cached(
            "SELECT product, env, at_unix_ms, ok, failed, rejected, latency
             FROM provider_history WHERE key = ?1 AND at_unix_ms >= ?2 AND at_unix_ms < ?3
             ORDER BY at_unix_ms",
        )?;
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let rows = st.query_map(params![key, clamp(from), clamp(to)], |r| {
            let n = |i: usize| r.get::<_, i64>(i).map(|v| u64::try_from(v).unwrap_or(0));
            let latency: String = r.get(6)?;
            let pairs: Vec<(u16, u32)> = serde_json::from_str(&latency).unwrap_or_default();
            Ok(crate::history::Minute {
                key: key.to_string(),
                product: r.get(0)?,
                env: r.get(1)?,
                at_unix_ms: n(2)?,
                ok: n(3)?,
                failed: n(4)?,
                rejected: n(5)?,
                latency: switchyard_engine::LatencyHistogram::from_sparse(&pairs),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Forget history older than `before` (Unix ms), and the oldest past
    /// `max_rows`; how many rows went.
    pub fn prune_history(&self, before: u64, max_rows: u64) -> Result<usize, StoreError> {
        let conn = self.conn();
        let mut gone = conn.execute(
            "DELETE FROM provider_history WHERE at_unix_ms < ?1",
            params![i64::try_from(before).unwrap_or(i64::MAX)],
        )?;
        let kept: i64 =
            conn.query_row("SELECT COUNT(*) FROM provider_history", [], |r| r.get(0))?;
        let over = kept - i64::try_from(max_rows).unwrap_or(i64::MAX);
        if over > 0 {
            gone += conn.execute(
                "DELETE FROM provider_history WHERE rowid IN
                 (SELECT rowid FROM provider_history ORDER BY at_unix_ms LIMIT ?1)",
                params![over],
            )?;
        }
        Ok(gone)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent
        // (statements are atomic), so a poisoned lock is still usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Insert or replace `def`.
    pub fn put(&self, def: &Definition) -> Result<(), StoreError> {
        self.apply(&[switchyard_engine::Change::Put(Box::new(def.clone()))])
    }

    /// Put and delete definitions in one transaction: all are stored, or
    /// none (a config reload's batch).
    pub fn apply(&self, changes: &[switchyard_engine::Change]) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for c in changes {
            match c {
                switchyard_engine::Change::Put(def) => {
                    let m = def.meta();
                    let body = serde_json::to_string(def).expect("definitions serialize");
                    tx.execute(
                        "INSERT INTO definitions (product, kind, tag, body, updated_unix_ms)
                         VALUES (?1, ?2, ?3, ?4, ?5)
                         ON CONFLICT (product, kind, tag)
                         DO UPDATE SET body = excluded.body, updated_unix_ms = excluded.updated_unix_ms",
                        params![m.product, def.kind().as_str(), m.tag, body, now_ms()],
                    )?;
                }
                switchyard_engine::Change::Delete { product, kind, tag } => {
                    tx.execute(
                        "DELETE FROM definitions WHERE product = ?1 AND kind = ?2 AND tag = ?3",
                        params![product, kind.as_str(), tag],
                    )?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Remove a definition; whether it existed.
    pub fn delete(&self, product: &str, kind: Kind, tag: &str) -> Result<bool, StoreError> {
        let n = self.conn().execute(
            "DELETE FROM definitions WHERE product = ?1 AND kind = ?2 AND tag = ?3",
            params![product, kind.as_str(), tag],
        )?;
        Ok(n > 0)
    }

    /// One definition.
    pub fn get(
        &self,
        product: &str,
        kind: Kind,
        tag: &str,
    ) -> Result<Option<Definition>, StoreError> {
        let body: Option<String> = self
            .conn()
            .query_row(
                "SELECT body FROM definitions WHERE product = ?1 AND kind = ?2 AND tag = ?3",
                params![product, kind.as_str(), tag],
                |r| r.get(0),
            )
            .optional()?;
        body.map(|b| parse(product, kind.as_str(), tag, &b))
            .transpose()
    }

    /// Every definition, by product, kind and tag.
    pub fn all(&self) -> Result<Vec<Definition>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT product, kind, tag, body FROM definitions ORDER BY product, kind, tag",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (product, kind, tag, body) = row?;
            out.push(parse(&product, &kind, &tag, &body)?);
        }
        Ok(out)
    }

    /// Store `app`'s admission limits (set through the API).
    pub fn put_admission(
        &self,
        product: &str,
        app: &str,
        config: &AdmissionConfig,
    ) -> Result<(), StoreError> {
        let body = serde_json::to_string(config).expect("admission settings serialize");
        self.conn().execute(
            "INSERT INTO app_admission (product, app, body, updated_unix_ms)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (product, app)
             DO UPDATE SET body = excluded.body, updated_unix_ms = excluded.updated_unix_ms",
            params![product, app, body, now_ms()],
        )?;
        Ok(())
    }

    /// Every stored admission setting: (product, app, settings). Rows that
    /// no longer parse are skipped with a warning (the config's or the
    /// default settings then apply).
    pub fn admissions(&self) -> Result<Vec<(String, String, AdmissionConfig)>, StoreError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT product, app, body FROM app_admission ORDER BY product, app")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (product, app, body) = row?;
            match serde_json::from_str(&body) {
                Ok(c) => out.push((product, app, c)),
                Err(e) => {
                    tracing::warn!(%product, %app, error = %e, "stored admission settings do not parse; ignored")
                }
            }
        }
        Ok(out)
    }

    /// Forget every stored admission setting (a config with
    /// `seed = "overwrite"` wins).
    pub fn clear_admissions(&self) -> Result<(), StoreError> {
        self.conn().execute("DELETE FROM app_admission", [])?;
        Ok(())
    }

    /// Record an operator action, keeping the newest [`AUDIT_KEPT`].
    pub fn audit(&self, e: &AuditEntry) -> Result<AuditEntry, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO operator_audit (at_unix_ms, actor, action, target, detail, channel)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                e.at_unix_ms as i64,
                e.actor,
                e.action,
                e.target,
                e.detail,
                e.channel
            ],
        )?;
        let id = tx.last_insert_rowid();
        tx.execute(
            "DELETE FROM operator_audit WHERE id <= ?1",
            params![id - AUDIT_KEPT],
        )?;
        tx.commit()?;
        Ok(AuditEntry { id, ..e.clone() })
    }

    /// The newest `limit` audit entries, newest first.
    pub fn audit_log(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, at_unix_ms, actor, action, target, detail, channel FROM operator_audit
             ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map(params![limit.min(AUDIT_KEPT as usize) as i64], |r| {
            Ok(AuditEntry {
                id: r.get(0)?,
                at_unix_ms: r.get::<_, i64>(1)?.max(0) as u64,
                actor: r.get(2)?,
                action: r.get(3)?,
                target: r.get(4)?,
                detail: r.get(5)?,
                channel: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Keep (`Some`) or forget an operator state: `what` is `drain` (target
    /// a provider) or `force` (target a breaker key).
    pub fn put_operator_state(
        &self,
        what: &str,
        product: &str,
        target: &str,
        value: Option<&str>,
    ) -> Result<(), StoreError> {
        let conn = self.conn();
        match value {
            Some(v) => conn.execute(
                "INSERT INTO operator_state (what, product, target, value) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (what, product, target) DO UPDATE SET value = excluded.value",
                params![what, product, target, v],
            )?,
            None => conn.execute(
                "DELETE FROM operator_state WHERE what = ?1 AND product = ?2 AND target = ?3",
                params![what, product, target],
            )?,
        };
        Ok(())
    }

    /// Forget many operator states (`(what, product, target)`) in one
    /// transaction.
    pub fn forget_operator_states(
        &self,
        rows: &[(String, String, String)],
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare(
                "DELETE FROM operator_state WHERE what = ?1 AND product = ?2 AND target = ?3",
            )?;
            for (what, product, target) in rows {
                stmt.execute(params![what, product, target])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Every kept operator state: (what, product, target, value).
    pub fn operator_states(&self) -> Result<Vec<(String, String, String, String)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT what, product, target, value FROM operator_state ORDER BY what, product, target",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Keep API token `t` (what is kept of it: never the token).
    pub fn put_token(&self, t: &crate::access::StoredToken) -> Result<(), StoreError> {
        let body = serde_json::to_string(t).map_err(|e| StoreError::Corrupt {
            kind: "token".into(),
            product: String::new(),
            tag: t.name.clone(),
            reason: e.to_string(),
        })?;
        self.conn().execute(
            "INSERT INTO api_tokens (name, body) VALUES (?1, ?2)
             ON CONFLICT (name) DO UPDATE SET body = excluded.body",
            params![t.name, body],
        )?;
        Ok(())
    }

    /// Forget API token `name`.
    pub fn delete_token(&self, name: &str) -> Result<(), StoreError> {
        self.conn()
            .execute("DELETE FROM api_tokens WHERE name = ?1", params![name])?;
        Ok(())
    }

    /// Make the kept API tokens exactly `tokens` (the cluster's), keeping
    /// last-used times of those that stay; one transaction.
    pub fn replace_tokens(&self, tokens: &[crate::access::StoredToken]) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let names: Vec<&str> = tokens.iter().map(|t| t.name.as_str()).collect();
        let kept: Vec<String> = {
            let mut st = tx.prepare("SELECT name FROM api_tokens")?;
            st.query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<_, _>>()?
        };
        for name in kept.iter().filter(|n| !names.contains(&n.as_str())) {
            tx.execute("DELETE FROM api_tokens WHERE name = ?1", params![name])?;
        }
        for t in tokens {
            let body = serde_json::to_string(t).map_err(|e| StoreError::Corrupt {
                kind: "token".into(),
                product: String::new(),
                tag: t.name.clone(),
                reason: e.to_string(),
            })?;
            tx.execute(
                "INSERT INTO api_tokens (name, body) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET body = excluded.body",
                params![t.name, body],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Every kept API token with its last-used time (Unix ms). A row that
    /// does not read is skipped (and named in the warnings).
    pub fn tokens(&self) -> Result<(KeptTokens, Vec<String>), StoreError> {
        let conn = self.conn();
        let mut st =
            conn.prepare("SELECT name, body, last_used_unix_ms FROM api_tokens ORDER BY name")?;
        let rows: Vec<(String, String, Option<i64>)> = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<_, _>>()?;
        let mut out = Vec::new();
        let mut warnings = Vec::new();
        for (name, body, last) in rows {
            match serde_json::from_str(&body) {
                Ok(t) => out.push((t, last.map(|l| l.max(0) as u64))),
                Err(e) => warnings.push(format!("stored token `{name}` unreadable, skipped: {e}")),
            }
        }
        Ok((out, warnings))
    }

    /// Record when API tokens were last used.
    pub fn touch_tokens(&self, used: &[(String, u64)]) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for (name, at) in used {
            tx.execute(
                "UPDATE api_tokens SET last_used_unix_ms = ?2 WHERE name = ?1",
                params![name, *at as i64],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Append a healthcheck outcome, keeping the newest `keep` per check.
    pub fn record_health(
        &self,
        key: &HealthKey,
        outcome: &ProbeOutcome,
        keep: usize,
    ) -> Result<(), StoreError> {
        let body = serde_json::to_string(outcome).expect("outcomes serialize");
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO health_history (product, env, tag, outcome) VALUES (?1, ?2, ?3, ?4)",
            params![key.product, key.env, key.tag, body],
        )?;
        tx.execute(
            "DELETE FROM health_history WHERE product = ?1 AND env = ?2 AND tag = ?3
             AND id <= (SELECT id FROM health_history WHERE product = ?1 AND env = ?2 AND tag = ?3
                        ORDER BY id DESC LIMIT 1 OFFSET ?4)",
            params![key.product, key.env, key.tag, keep.max(1) as i64],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The stored outcomes of every healthcheck, oldest first.
    pub fn health_history(&self) -> Result<Vec<(HealthKey, Vec<ProbeOutcome>)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT product, env, tag, outcome FROM health_history ORDER BY product, env, tag, id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                HealthKey {
                    product: r.get(0)?,
                    env: r.get(1)?,
                    tag: r.get(2)?,
                },
                r.get::<_, String>(3)?,
            ))
        })?;
        let mut out: Vec<(HealthKey, Vec<ProbeOutcome>)> = Vec::new();
        for row in rows {
            let (key, body) = row?;
            // An outcome that does not parse is history, not state: skip it.
            let Ok(outcome) = serde_json::from_str::<ProbeOutcome>(&body) else {
                continue;
            };
            match out.last_mut() {
                Some((k, v)) if *k == key => v.push(outcome),
                _ => out.push((key, vec![outcome])),
            }
        }
        Ok(out)
    }
}

fn parse(product: &str, kind: &str, tag: &str, body: &str) -> Result<Definition, StoreError> {
    serde_json::from_str(body).map_err(|e| StoreError::Corrupt {
        kind: kind.into(),
        product: product.into(),
        tag: tag.into(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_engine::{CacheDef, Meta};

    fn cache(tag: &str, ttl: u64) -> Definition {
        CacheDef {
            meta: Meta::new("p", tag),
            ttl_ms: ttl,
            max_entries: 10,
        }
        .into()
    }

    #[test]
    fn definitions_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        {
            let s = Store::open(&path).unwrap();
            s.put(&cache("a", 1)).unwrap();
            s.put(&cache("b", 2)).unwrap();
            s.put(&cache("a", 3)).unwrap();
            assert!(s.delete("p", Kind::Cache, "b").unwrap());
            assert!(!s.delete("p", Kind::Cache, "b").unwrap());
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(s.all().unwrap(), vec![cache("a", 3)]);
        assert_eq!(s.get("p", Kind::Cache, "a").unwrap(), Some(cache("a", 3)));
        assert_eq!(s.get("p", Kind::Cache, "b").unwrap(), None);
    }

    #[test]
    fn health_history_is_bounded_per_check() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path().join("s.db")).unwrap();
        let key = |tag: &str| HealthKey {
            product: "p".into(),
            env: "dev".into(),
            tag: tag.into(),
        };
        for i in 0..10u64 {
            let o = ProbeOutcome {
                at_unix_ms: i,
                ok: i % 2 == 0,
                latency_ms: 1.0,
                tries: 1,
                error: None,
            };
            s.record_health(&key("a"), &o, 3).unwrap();
            s.record_health(&key("b"), &o, 5).unwrap();
        }
        let h = s.health_history().unwrap();
        assert_eq!(h.len(), 2);
        let at = |v: &[ProbeOutcome]| v.iter().map(|o| o.at_unix_ms).collect::<Vec<_>>();
        assert_eq!(at(&h[0].1), vec![7, 8, 9]);
        assert_eq!(at(&h[1].1), vec![5, 6, 7, 8, 9]);
    }

    #[test]
    fn a_newer_schema_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 9)
            .unwrap();
        let e = Store::open(&path).unwrap_err().to_string();
        assert!(e.contains("schema version 9"), "{e}");
        assert!(e.contains("server.store"), "{e}");
    }
}
