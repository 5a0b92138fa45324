//! Idempotency records of one replica in its SQLite file, so a caller's
//! retry is answered from the record after a restart too (`kill -9`
//! included): a finished key replays its outcome, a running key answers
//! `in-progress`, a key left unresolved at one app goes back there only.
//! The state machine is the engine's ([`Record`]); this is its storage.
//!
//! Bounded: at most `max_records` rows. Expired rows are swept every
//! [`SWEEP_EVERY`] claims; when the table is full of live rows a new key's
//! claim answers "unavailable" (and the engine's policy refuses the run)
//! rather than forget a record that keeps a key from running twice.

use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use switchyard_engine::{BoxFuture, Claim, Pin, Record, Records, Recover, Settlement};

/// Claims between two sweeps of expired rows.
pub const SWEEP_EVERY: u64 = 1_024;

/// Idempotency records in the store's SQLite file (a connection of their
/// own, so a keyed run never waits on a definition write).
#[derive(Debug)]
pub struct SqliteRecords {
    conn: Mutex<Connection>,
    max_records: u64,
    /// Rows now, as of the last sweep plus inserts since.
    rows: AtomicU64,
    claims: AtomicU64,
    errors: AtomicU64,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn at(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

impl SqliteRecords {
    /// Open the records table in the SQLite file at `path` (created if
    /// missing), holding at most `max_records` rows.
    pub fn open(path: &Path, max_records: u64) -> rusqlite::Result<Self> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(Duration::from_secs(2))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS idempotency (
                 key TEXT PRIMARY KEY,
                 value TEXT NOT NULL,
                 expires_ms INTEGER NOT NULL
             );
             CREATE INDEX IF NOT EXISTS idempotency_expiry ON idempotency (expires_ms);",
        )?;
        let rows: i64 = conn.query_row("SELECT COUNT(*) FROM idempotency", [], |r| r.get(0))?;
        Ok(Self {
            conn: Mutex::new(conn),
            max_records: max_records.max(1),
            rows: AtomicU64::new(u64::try_from(rows).unwrap_or(0)),
            claims: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        })
    }

    /// Rows held now (approximate between sweeps).
    pub fn rows(&self) -> u64 {
        self.rows.load(Ordering::Relaxed)
    }

    /// Store errors so far (each answered as "unavailable").
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    fn sweep(&self, conn: &Connection, now_ms: u64) -> rusqlite::Result<()> {
        conn.execute(
            "DELETE FROM idempotency WHERE expires_ms <= ?1",
            params![at(now_ms)],
        )?;
        let rows: i64 = conn.query_row("SELECT COUNT(*) FROM idempotency", [], |r| r.get(0))?;
        self.rows
            .store(u64::try_from(rows).unwrap_or(0), Ordering::Relaxed);
        Ok(())
    }

    fn current(conn: &Connection, key: &str, now_ms: u64) -> rusqlite::Result<Option<String>> {
        conn.query_row(
            "SELECT value FROM idempotency WHERE key = ?1 AND expires_ms > ?2",
            params![key, at(now_ms)],
            |r| r.get(0),
        )
        .optional()
    }

    fn try_claim(
        &self,
        key: &str,
        fence: &str,
        now_ms: u64,
        until_ms: u64,
        ttl: Duration,
    ) -> rusqlite::Result<Claim> {
        let conn = self.conn.locked();
        if self
            .claims
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(SWEEP_EVERY)
        {
            self.sweep(&conn, now_ms)?;
        }
        let current = Self::current(&conn, key, now_ms)?;
        if current.is_none() && self.rows() >= self.max_records {
            self.sweep(&conn, now_ms)?;
            if self.rows() >= self.max_records {
                return Ok(Claim::Unreachable);
            }
        }
        let (write, answer) = Record::claim(current.as_deref(), fence, now_ms, until_ms);
        if let Some(r) = write {
            let expires = at(now_ms).saturating_add(ms(ttl)).max(at(until_ms));
            let changed = conn.execute(
                "INSERT INTO idempotency (key, value, expires_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_ms = excluded.expires_ms",
                params![key, r.encode(), expires],
            )?;
            if current.is_none() && changed > 0 {
                self.rows.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(answer)
    }

    fn try_pin(&self, key: &str, fence: &str, pin: &Pin) -> rusqlite::Result<bool> {
        let conn = self.conn.locked();
        let current: Option<String> = conn
            .query_row(
                "SELECT value FROM idempotency WHERE key = ?1",
                params![key],
                |r| r.get(0),
            )
            .optional()?;
        let Some(r) = Record::pin(current.as_deref(), fence, pin) else {
            return Ok(false);
        };
        conn.execute(
            "UPDATE idempotency SET value = ?2 WHERE key = ?1",
            params![key, r.encode()],
        )?;
        Ok(true)
    }

    fn try_settle(
        &self,
        key: &str,
        fence: &str,
        settlement: &Settlement,
        now_ms: u64,
        ttl: Duration,
    ) -> rusqlite::Result<()> {
        let conn = self.conn.locked();
        let current = Self::current(&conn, key, now_ms)?;
        match Record::settle(current.as_deref(), fence, settlement) {
            Some(Some(r)) => {
                conn.execute(
                    "INSERT INTO idempotency (key, value, expires_ms) VALUES (?1, ?2, ?3)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_ms = excluded.expires_ms",
                    params![key, r.encode(), at(now_ms).saturating_add(ms(ttl))],
                )?;
                if current.is_none() {
                    self.rows.fetch_add(1, Ordering::Relaxed);
                }
            }
            Some(None) => {
                conn.execute("DELETE FROM idempotency WHERE key = ?1", params![key])?;
                let _ = self
                    .rows
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                        Some(n.saturating_sub(1))
                    });
            }
            None => {}
        }
        Ok(())
    }

    fn failed(&self, e: &rusqlite::Error) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        eprintln!("idempotency records: store error: {e}");
    }
}

impl Records for SqliteRecords {
    fn claim<'a>(
        &'a self,
        key: &'a str,
        fence: &'a str,
        now_ms: u64,
        until_ms: u64,
        ttl: Duration,
    ) -> BoxFuture<'a, Claim> {
        let answer = self
            .try_claim(key, fence, now_ms, until_ms, ttl)
            .unwrap_or_else(|e| {
                self.failed(&e);
                Claim::Unreachable
            });
        Box::pin(async move { answer })
    }

    fn pin<'a>(&'a self, key: &'a str, fence: &'a str, pin: &'a Pin) -> BoxFuture<'a, bool> {
        let written = self.try_pin(key, fence, pin).unwrap_or_else(|e| {
            self.failed(&e);
            false
        });
        Box::pin(async move { written })
    }

    fn settle<'a>(
        &'a self,
        key: &'a str,
        fence: &'a str,
        settlement: Settlement,
        now_ms: u64,
        ttl: Duration,
    ) -> BoxFuture<'a, bool> {
        let done = self
            .try_settle(key, fence, &settlement, now_ms, ttl)
            .map_err(|e| self.failed(&e))
            .is_ok();
        Box::pin(async move { done })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(60);

    fn pin(app: &str) -> Pin {
        Pin {
            app: app.into(),
            provider: app.into(),
        }
    }

    #[tokio::test]
    async fn a_record_survives_reopening_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        {
            let r = SqliteRecords::open(&path, 100).unwrap();
            assert_eq!(
                r.claim("k", "f1", 1_000, 2_000, TTL).await,
                Claim::Claimed { pin: None }
            );
            assert!(r.pin("k", "f1", &pin("main")).await);
            assert!(!r.pin("k", "other", &pin("backup")).await, "fenced");
            // The process dies here: no settle.
        }
        let r = SqliteRecords::open(&path, 100).unwrap();
        assert_eq!(r.claim("k", "f2", 1_500, 3_000, TTL).await, Claim::Running);
        // Once the hold lapses, the retry is pinned where the first run
        // may have acted.
        assert_eq!(
            r.claim("k", "f2", 2_000, 3_000, TTL).await,
            Claim::Claimed {
                pin: Some(pin("main"))
            }
        );
        assert!(
            r.settle("k", "f2", Settlement::Done("{}".into()), 2_100, TTL)
                .await
        );
        assert_eq!(
            r.claim("k", "f3", 2_200, 3_000, TTL).await,
            Claim::Done("{}".into())
        );
    }

    #[tokio::test]
    async fn full_of_live_records_it_refuses_new_keys_and_sweeps_expired_ones() {
        let dir = tempfile::tempdir().unwrap();
        let r = SqliteRecords::open(&dir.path().join("s.db"), 2).unwrap();
        let short = Duration::from_millis(10);
        assert!(matches!(
            r.claim("a", "f", 0, 5, short).await,
            Claim::Claimed { .. }
        ));
        assert!(matches!(
            r.claim("b", "f", 0, 5, short).await,
            Claim::Claimed { .. }
        ));
        assert_eq!(r.claim("c", "f", 1, 5, short).await, Claim::Unreachable);
        assert!(matches!(
            r.claim("c", "f", 100, 200, short).await,
            Claim::Claimed { .. }
        ));
    }
}
