//! Durable state: rollouts (with everything their status shows), the global generation, the data's
//! epoch, the events, the outbox of webhook deliveries and the judged intervals.
//!
//! [`Store`] is the one interface the state machine and the API use; behind it is SQLite (one file
//! under `--data`, [`sqlite`]). Every change is one transaction, so a `kill -9` leaves either the
//! old or the new state, and a database from a newer fledge is refused with a clear error.
//!
//! The outbox (schema version 3) holds each notification an event owes, written in the event's own
//! transaction: a committed event's deliveries survive any crash, and no delivery exists for an event
//! that was not committed. A row is deleted once delivered (or given up), and the table is bounded
//! ([`MAX_OUTBOX`]).
//!
//! The epoch is a random id created with the data: a proxy that holds generation N of another epoch
//! (before a data reset, or from before a restored backup) must not take this data's N for the same.

use std::path::{Path, PathBuf};

use crate::model::Rollout;
use crate::totals::IntervalRecord;

pub mod sqlite;

pub use sqlite::SqliteStore;

pub const SCHEMA_VERSION: i64 = 4;
/// Judged intervals kept per rollout (a day and a half of 1 s intervals); past it the oldest are
/// dropped, and the export's header says how many.
pub const MAX_INTERVALS: u64 = 131_072;
/// Undelivered notifications kept at most; past it the oldest are dropped (a receiver down for days).
pub const MAX_OUTBOX: i64 = 10_000;
pub const DB_FILE: &str = "fledge.db";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open data file {path}: {source}")]
    Open { path: PathBuf, source: rusqlite::Error },
    #[error("data file {path} is corrupt or not a fledge database: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("data file {path} has schema version {found}, newer than this fledge supports ({supported}); upgrade fledge")]
    NewerSchema { path: PathBuf, found: i64, supported: i64 },
    #[error("data file {path}: SQLite could not enable WAL journaling (got journal_mode={mode}); use a local file system")]
    JournalMode { path: PathBuf, mode: String },
    #[error("cannot create data directory {path}: {source}")]
    Dir { path: PathBuf, source: std::io::Error },
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("stored record is unreadable: {0}")]
    Record(#[from] serde_json::Error),
}

/// The store of one controller: the same methods, with the same meaning, on every backend.
pub enum Store {
    Sqlite(SqliteStore),
}

/// How hard each commit is pushed to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `synchronous=FULL`: a commit survives power loss.
    #[default]
    Full,
    /// `synchronous=NORMAL`: survives a crash of the process, may lose the last commits on power loss.
    Normal,
}

impl std::str::FromStr for Durability {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "full" => Ok(Self::Full),
            "normal" => Ok(Self::Normal),
            other => Err(format!("{other:?}: use full or normal")),
        }
    }
}

/// A delivery an event owes one receiver, rendered when the event is committed.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDelivery {
    /// `x-fledge-delivery`: the same on every attempt.
    pub delivery: String,
    pub kind: String,
    pub url: String,
    /// The exact bytes sent (and signed) on every attempt.
    pub body: Vec<u8>,
}

/// An undelivered notification at the head of its receiver's queue.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    pub id: i64,
    pub delivery: String,
    pub rollout: String,
    pub kind: String,
    pub url: String,
    pub body: Vec<u8>,
    pub created_ms: u64,
    pub attempts: u32,
    pub next_attempt_ms: u64,
}

/// What [`Store::put`] queued.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Queued {
    /// The event's sequence number, when there was an event.
    pub seq: Option<i64>,
    pub deliveries: usize,
    /// Undelivered notifications dropped to stay within [`MAX_OUTBOX`].
    pub dropped: usize,
}

/// What a restarted controller resumes from.
pub struct Loaded {
    pub epoch: String,
    pub generation: u64,
    pub rollouts: Vec<Rollout>,
}


impl Store {
    /// The SQLite file `dir/fledge.db` (created if missing), every commit fully synced.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(dir, Durability::Full)
    }

    pub fn open_with(dir: &Path, durability: Durability) -> Result<Self, StoreError> {
        Ok(Self::Sqlite(SqliteStore::open_with(dir, durability)?))
    }

    /// An in-memory SQLite store for tests of the API alone.
    pub fn in_memory() -> Result<Self, StoreError> {
        Ok(Self::Sqlite(SqliteStore::in_memory()?))
    }

    /// A trivial read: the database answers (for readiness checks).
    pub fn check(&self) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => s.check(),
        }
    }

    pub fn load(&self) -> Result<Loaded, StoreError> {
        match self {
            Self::Sqlite(s) => s.load(),
        }
    }

    /// Writes a rollout (insert or replace), the new generation, the event of the change, the judged
    /// interval it closed and the deliveries it owes in one transaction: after a crash, either all of
    /// them are there or none. `deliveries` renders them from the event's sequence number (called
    /// only with an event, inside the transaction).
    pub fn put(
        &mut self,
        rollout: &Rollout,
        generation: u64,
        event: Option<&serde_json::Value>,
        interval: Option<&IntervalRecord>,
        deliveries: &dyn Fn(i64) -> Vec<NewDelivery>,
    ) -> Result<Queued, StoreError> {
        match self {
            Self::Sqlite(s) => s.put(rollout, generation, event, interval, deliveries),
        }
    }

    /// The oldest undelivered notification of every receiver (URL): deliveries to one receiver go
    /// out one at a time, in the order of their events.
    pub fn outbox_heads(&self) -> Result<Vec<Pending>, StoreError> {
        match self {
            Self::Sqlite(s) => s.outbox_heads(),
        }
    }

    /// Removes a delivered (or given-up) notification.
    pub fn outbox_remove(&self, id: i64) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => s.outbox_remove(id),
        }
    }

    /// Records a failed attempt: the next one is due at `next_attempt_ms`.
    pub fn outbox_retry(&self, id: i64, attempts: u32, next_attempt_ms: u64, error: &str) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => s.outbox_retry(id, attempts, next_attempt_ms, error),
        }
    }

    /// Undelivered notifications.
    pub fn outbox_len(&self) -> Result<u64, StoreError> {
        match self {
            Self::Sqlite(s) => s.outbox_len(),
        }
    }

    /// Deletes a rollout with its events and intervals, and writes the new generation, in one
    /// transaction.
    pub fn delete(&mut self, name: &str, generation: u64) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => s.delete(name, generation),
        }
    }

    /// A rollout's events with their sequence numbers, oldest first.
    pub fn events(&self, rollout: &str) -> Result<Vec<(i64, serde_json::Value)>, StoreError> {
        match self {
            Self::Sqlite(s) => s.events(rollout),
        }
    }

    /// Up to `limit` of a rollout's events after `after_seq` and at most `upto_seq`, oldest first (the
    /// export reads them a page at a time).
    pub fn events_page(&self, rollout: &str, after_seq: i64, upto_seq: i64, limit: usize) -> Result<Vec<(i64, serde_json::Value)>, StoreError> {
        match self {
            Self::Sqlite(s) => s.events_page(rollout, after_seq, upto_seq, limit),
        }
    }

    /// The newest event's sequence number (0 without events).
    pub fn last_event_seq(&self) -> Result<i64, StoreError> {
        match self {
            Self::Sqlite(s) => s.last_event_seq(),
        }
    }

    /// Up to `limit` of a rollout's judged intervals numbered after `after_n` and at most `upto_n`,
    /// oldest first.
    pub fn intervals_page(&self, rollout: &str, after_n: u64, upto_n: u64, limit: usize) -> Result<Vec<(u64, serde_json::Value)>, StoreError> {
        match self {
            Self::Sqlite(s) => s.intervals_page(rollout, after_n, upto_n, limit),
        }
    }

    /// The number of the oldest interval kept of a rollout (None without any).
    pub fn first_interval(&self, rollout: &str) -> Result<Option<u64>, StoreError> {
        match self {
            Self::Sqlite(s) => s.first_interval(rollout),
        }
    }
}

/// 16 random hex digits.
fn new_epoch() -> String {
    let random = getrandom::u64().unwrap_or_else(|_| {
        // No OS randomness: the clock and the process still tell two data directories apart.
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        nanos ^ u64::from(std::process::id()).rotate_left(32)
    });
    format!("{random:016x}")
}

