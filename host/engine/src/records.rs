//! Idempotency records: what keeps a caller's key to one execution, at one
//! app, across retries, restarts and replicas.
//!
//! A top-level run with the caller's idempotency key claims the key's
//! record first. The record is one of three states, written only by the
//! holder of the current claim (a *fence*: a token unique to the claim,
//! compared on every write, so a late or stale writer changes nothing):
//!
//! - `running`: a run holds the key until `until` (its deadline and a
//!   margin); it names the app its non-safe attempts went to (the *pin*),
//!   written before each such attempt is sent;
//! - `pinned`: the last run under the key ended unresolved (`ambiguous`)
//!   at the pinned app: the next claim is granted, but its run may only
//!   go to that app with that key;
//! - `done`: a run finished with an outcome a retry must get back.
//!
//! A `running` record whose holder died is claimed again once `until` has
//! passed, and keeps its pin: a retry after `kill -9` goes to the app that
//! may have acted, never to another. The state machine is written once
//! ([`Record`]'s steps) and used by the in-memory store here, the server's
//! SQLite store, and (as a Lua script mirroring it) the Redis store.

use crate::adapter::BoxFuture;
use crate::locks::Recover;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// The app a key is pinned to: where a run's non-safe attempt went, so
/// where a retry of the key must go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin {
    /// The app (one account at one provider).
    pub app: String,
    /// The definition's option that sent to it.
    pub provider: String,
}

/// What a record says when a run asks to claim its key.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// This run holds the key. `pin`: an earlier run under the key may have
    /// acted at that app; this run may only go there.
    Claimed {
        /// The app an earlier run may have acted at.
        pin: Option<Pin>,
    },
    /// Another run (here or on another replica) holds the key.
    Running,
    /// A run under this key finished: its stored outcome (JSON of
    /// [`StoredOutcome`]).
    Done(String),
    /// The store could not be asked in time (or is full): what the engine
    /// does then is its [`RecordsUnavailable`] policy.
    Unreachable,
}

/// How the holder of a claim leaves the record.
#[derive(Debug, Clone, PartialEq)]
pub enum Settlement {
    /// Keep this outcome (JSON of [`StoredOutcome`]) for the record's TTL.
    Done(String),
    /// The run ended unresolved at this app: the next run under the key
    /// goes there only.
    Pinned(Pin),
    /// Nothing took effect: free the key so a retry runs again.
    Free,
    /// The run never knew it held the key (its claim went unanswered, but
    /// may have landed): undo that claim only. A pin the claim took over
    /// from a dead run stays.
    Release,
}

/// What an idempotency record keeps of a finished run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum StoredOutcome {
    /// It served.
    Served(crate::run::RunResult),
    /// It failed in a way a retry must not undo (rejected, invalid input,
    /// a mapping error after the provider ran, an ambiguous feature).
    Failed(crate::run::RunError),
}

/// What the engine does when the record store cannot be read or written
/// for a keyed run whose definition has a non-safe action.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum RecordsUnavailable {
    /// Answer `idempotency-unavailable` (with Retry-After) and send
    /// nothing: a caller's retry can never become a second execution.
    #[default]
    Refuse,
    /// Run without the record (the behaviour before records were kept in
    /// one process): a retry of the key during the outage may run again,
    /// possibly on another app. Unsafe for payments.
    Run,
}

/// Where idempotency records live: [`MemoryRecords`] in one process by
/// default, the server's SQLite store, or Redis in a cluster. Every call
/// must finish within the implementation's own bound and answer
/// [`Claim::Unreachable`] / `false` when it could not.
pub trait Records: Send + Sync + 'static {
    /// Claim `key` for the run holding `fence` until `until_ms` (Unix ms);
    /// the record lives `ttl`. `now_ms`: the caller's wall clock.
    fn claim<'a>(
        &'a self,
        key: &'a str,
        fence: &'a str,
        now_ms: u64,
        until_ms: u64,
        ttl: Duration,
    ) -> BoxFuture<'a, Claim>;

    /// Before a non-safe attempt is sent: pin the claim to `pin`'s app.
    /// `false`: not written (the store is away, or the claim was lost);
    /// the attempt must not be sent.
    fn pin<'a>(&'a self, key: &'a str, fence: &'a str, pin: &'a Pin) -> BoxFuture<'a, bool>;

    /// Leave the record as `settlement` says, if `fence` still holds it (or
    /// nobody does); it then lives `ttl` from `now_ms`. `false`: the store
    /// could not be told now (an implementation with an outbox retries
    /// later).
    fn settle<'a>(
        &'a self,
        key: &'a str,
        fence: &'a str,
        settlement: Settlement,
        now_ms: u64,
        ttl: Duration,
    ) -> BoxFuture<'a, bool>;
}

/// One record's state, with its text form (the form every store keeps,
/// and the Redis script parses).
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// Held by `fence` until `until_ms`.
    Running {
        /// The holder's claim token.
        fence: String,
        /// When the hold lapses (Unix ms).
        until_ms: u64,
        /// The app a non-safe attempt of the holder went to.
        pin: Option<Pin>,
    },
    /// Unresolved at this app.
    Pinned(Pin),
    /// Finished: the stored outcome.
    Done(String),
}

impl Record {
    /// The text a store keeps: `running <until> <fence> <pin JSON|->`,
    /// `pinned <pin JSON>` or `done <outcome JSON>`.
    pub fn encode(&self) -> String {
        let pin = |p: &Pin| serde_json::to_string(p).unwrap_or_else(|_| "-".into());
        match self {
            Self::Running {
                fence,
                until_ms,
                pin: p,
            } => format!(
                "running {until_ms} {fence} {}",
                p.as_ref().map_or_else(|| "-".into(), pin)
            ),
            Self::Pinned(p) => format!("pinned {}", pin(p)),
            Self::Done(o) => format!("done {o}"),
        }
    }

    /// Read a stored text; `None` for anything unreadable (never a panic:
    /// the store is shared with other processes).
    pub fn decode(text: &str) -> Option<Self> {
        if let Some(o) = text.strip_prefix("done ") {
            return Some(Self::Done(o.to_string()));
        }
        if let Some(p) = text.strip_prefix("pinned ") {
            return serde_json::from_str(p).ok().map(Self::Pinned);
        }
        let rest = text.strip_prefix("running ")?;
        let mut parts = rest.splitn(3, ' ');
        let until_ms = parts.next()?.parse().ok()?;
        let fence = parts.next()?.to_string();
        let pin = match parts.next()? {
            "-" => None,
            p => Some(serde_json::from_str(p).ok()?),
        };
        Some(Self::Running {
            fence,
            until_ms,
            pin,
        })
    }

    /// A claim against `current`: the record to write (if any) and the
    /// answer. An unreadable record counts as held, never as free.
    pub fn claim(
        current: Option<&str>,
        fence: &str,
        now_ms: u64,
        until_ms: u64,
    ) -> (Option<Record>, Claim) {
        let take = |pin: Option<Pin>| {
            (
                Some(Record::Running {
                    fence: fence.to_string(),
                    until_ms,
                    pin: pin.clone(),
                }),
                Claim::Claimed { pin },
            )
        };
        let Some(text) = current else {
            return take(None);
        };
        match Self::decode(text) {
            None => (None, Claim::Running),
            Some(Self::Done(o)) => (None, Claim::Done(o)),
            Some(Self::Pinned(p)) => take(Some(p)),
            Some(Self::Running {
                until_ms: held,
                pin,
                ..
            }) if held <= now_ms => take(pin),
            Some(Self::Running { .. }) => (None, Claim::Running),
        }
    }

    /// Pin `fence`'s claim to `pin`: the record to write, or `None` when
    /// `fence` does not hold it.
    pub fn pin(current: Option<&str>, fence: &str, pin: &Pin) -> Option<Record> {
        match current.and_then(Self::decode) {
            Some(Self::Running {
                fence: f, until_ms, ..
            }) if f == fence => Some(Self::Running {
                fence: f,
                until_ms,
                pin: Some(pin.clone()),
            }),
            _ => None,
        }
    }

    /// Settle `fence`'s claim: `Some(new)` to write (`Some(None)`: delete),
    /// `None` to leave the record alone (another claim holds it, or it is
    /// already settled). A record nobody holds takes an outcome: a run that
    /// went on while the store was away still leaves its outcome.
    pub fn settle(
        current: Option<&str>,
        fence: &str,
        settlement: &Settlement,
    ) -> Option<Option<Record>> {
        let ours = match current {
            None => true,
            Some(text) => matches!(
                Self::decode(text),
                Some(Self::Running { fence: f, .. }) if f == fence
            ),
        };
        if !ours {
            return None;
        }
        Some(match settlement {
            Settlement::Done(o) => Some(Self::Done(o.clone())),
            Settlement::Pinned(p) => Some(Self::Pinned(p.clone())),
            Settlement::Free | Settlement::Release if current.is_none() => return None,
            Settlement::Free => None,
            Settlement::Release => match current.and_then(Self::decode) {
                Some(Self::Running { pin: Some(p), .. }) => Some(Self::Pinned(p)),
                _ => None,
            },
        })
    }
}

/// A run's hold on its key's record, as its attempts see it.
pub(crate) struct RunRecord {
    /// The record's key in the store.
    pub key: String,
    /// This run's claim token.
    pub fence: String,
    /// The app an earlier run under the key may have acted at: this run
    /// goes there only.
    pub pinned: Option<Pin>,
    /// The pin the record holds now (written before each non-safe attempt
    /// that goes to another app).
    pub written: Mutex<Option<Pin>>,
}

impl RunRecord {
    /// Make sure the record names `pin` before a non-safe attempt is sent
    /// to it; `false` when the store could not be told (send nothing).
    pub async fn pin_before_send(&self, records: &dyn Records, pin: Pin) -> bool {
        if self.written.locked().as_ref() == Some(&pin) {
            return true;
        }
        if !records.pin(&self.key, &self.fence, &pin).await {
            return false;
        }
        *self.written.locked() = Some(pin);
        true
    }
}

/// The most records [`MemoryRecords`] keeps by default.
pub const DEFAULT_MEMORY_RECORDS: usize = 100_000;

/// Records in this process's memory: the default of an engine with no
/// store. Bounded: past `capacity` live records (expired ones are swept
/// first) a claim answers [`Claim::Unreachable`] rather than forget a
/// record that keeps a key from running twice.
#[derive(Debug)]
pub struct MemoryRecords {
    capacity: usize,
    map: Mutex<HashMap<String, (String, u64)>>,
}

impl Default for MemoryRecords {
    fn default() -> Self {
        Self::new(DEFAULT_MEMORY_RECORDS)
    }
}

impl MemoryRecords {
    /// A store of at most `capacity` records.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            map: Mutex::new(HashMap::new()),
        }
    }

    /// Records held now (expired ones included until swept).
    pub fn len(&self) -> usize {
        self.map.locked().len()
    }

    /// Whether no record is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The stored text of `key`, if any (tests and diagnostics).
    pub fn get(&self, key: &str) -> Option<String> {
        self.map.locked().get(key).map(|(v, _)| v.clone())
    }
}

fn ttl_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)
}

impl Records for MemoryRecords {
    fn claim<'a>(
        &'a self,
        key: &'a str,
        fence: &'a str,
        now_ms: u64,
        until_ms: u64,
        ttl: Duration,
    ) -> BoxFuture<'a, Claim> {
        let mut map = self.map.locked();
        if map.get(key).is_some_and(|(_, exp)| *exp <= now_ms) {
            map.remove(key);
        }
        if !map.contains_key(key) && map.len() >= self.capacity {
            map.retain(|_, (_, exp)| *exp > now_ms);
            if map.len() >= self.capacity {
                return Box::pin(async { Claim::Unreachable });
            }
        }
        let (write, answer) = Record::claim(
            map.get(key).map(|(v, _)| v.as_str()),
            fence,
            now_ms,
            until_ms,
        );
        if let Some(r) = write {
            let exp = now_ms.saturating_add(ttl_ms(ttl)).max(until_ms);
            map.insert(key.to_string(), (r.encode(), exp));
        }
        Box::pin(async move { answer })
    }

    fn pin<'a>(&'a self, key: &'a str, fence: &'a str, pin: &'a Pin) -> BoxFuture<'a, bool> {
        let mut map = self.map.locked();
        let written = match map.get_mut(key) {
            Some((v, _)) => match Record::pin(Some(v), fence, pin) {
                Some(r) => {
                    *v = r.encode();
                    true
                }
                None => false,
            },
            None => false,
        };
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
        let mut map = self.map.locked();
        let current = map.get(key).map(|(v, _)| v.as_str());
        match Record::settle(current, fence, &settlement) {
            Some(Some(r)) => {
                map.insert(
                    key.to_string(),
                    (r.encode(), now_ms.saturating_add(ttl_ms(ttl))),
                );
            }
            Some(None) => {
                map.remove(key);
            }
            None => {}
        }
        Box::pin(async { true })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pin(app: &str) -> Pin {
        Pin {
            app: app.into(),
            provider: format!("{app}-option"),
        }
    }

    #[test]
    fn text_form_round_trips() {
        for r in [
            Record::Running {
                fence: "f1".into(),
                until_ms: 42,
                pin: None,
            },
            Record::Running {
                fence: "f1".into(),
                until_ms: 42,
                pin: Some(pin("stripe main")),
            },
            Record::Pinned(pin("a")),
            Record::Done("{\"outcome\":\"served\"} with spaces".into()),
        ] {
            assert_eq!(Record::decode(&r.encode()), Some(r));
        }
    }

    #[test]
    fn a_lapsed_hold_is_claimed_again_with_its_pin() {
        let held = Record::Running {
            fence: "old".into(),
            until_ms: 100,
            pin: Some(pin("main")),
        }
        .encode();
        assert_eq!(Record::claim(Some(&held), "new", 99, 500).1, Claim::Running);
        let (write, answer) = Record::claim(Some(&held), "new", 100, 500);
        assert_eq!(
            answer,
            Claim::Claimed {
                pin: Some(pin("main"))
            }
        );
        assert!(
            matches!(write, Some(Record::Running { fence, pin: Some(_), .. }) if fence == "new")
        );
    }

    #[test]
    fn only_the_fence_writes() {
        let held = Record::Running {
            fence: "mine".into(),
            until_ms: 100,
            pin: None,
        }
        .encode();
        assert!(Record::pin(Some(&held), "other", &pin("a")).is_none());
        assert!(Record::pin(Some(&held), "mine", &pin("a")).is_some());
        assert!(Record::settle(Some(&held), "other", &Settlement::Free).is_none());
        assert_eq!(
            Record::settle(Some(&held), "mine", &Settlement::Free),
            Some(None)
        );
        // A claim that landed unanswered over a dead run's pin gives the
        // pin back when released.
        let inherited = Record::Running {
            fence: "mine".into(),
            until_ms: 100,
            pin: Some(pin("main")),
        }
        .encode();
        assert_eq!(
            Record::settle(Some(&inherited), "mine", &Settlement::Release),
            Some(Some(Record::Pinned(pin("main"))))
        );
        let done = Record::Done("x".into()).encode();
        assert!(Record::settle(Some(&done), "mine", &Settlement::Done("y".into())).is_none());
        // A run that went on while the store was away still leaves its
        // outcome where nobody holds the key.
        assert_eq!(
            Record::settle(None, "mine", &Settlement::Done("y".into())),
            Some(Some(Record::Done("y".into())))
        );
    }

    #[tokio::test]
    async fn memory_records_are_bounded_and_never_forget_a_live_record() {
        let r = MemoryRecords::new(2);
        let ttl = Duration::from_secs(10);
        assert_eq!(
            r.claim("a", "f1", 0, 50, ttl).await,
            Claim::Claimed { pin: None }
        );
        assert_eq!(
            r.claim("b", "f2", 0, 50, ttl).await,
            Claim::Claimed { pin: None }
        );
        assert_eq!(r.claim("c", "f3", 0, 50, ttl).await, Claim::Unreachable);
        assert_eq!(r.claim("a", "f4", 10, 60, ttl).await, Claim::Running);
        // Past their TTL they make room.
        assert_eq!(
            r.claim("c", "f3", 20_000, 20_050, ttl).await,
            Claim::Claimed { pin: None }
        );
    }

    proptest! {
        #[test]
        fn decoding_any_text_never_panics(s in ".{0,200}") {
            let _ = Record::decode(&s);
            let _ = Record::claim(Some(&s), "f", 1, 2);
            let _ = Record::settle(Some(&s), "f", &Settlement::Free);
        }
    }
}
