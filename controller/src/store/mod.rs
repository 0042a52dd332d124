//! Durable state: rollouts (with everything their status shows), the global generation, the data's
//! epoch, the events, the outbox of webhook deliveries and the judged intervals.
//!
//! [`Store`] is the one interface the state machine and the API use; behind it is SQLite (one file
//! under `--data`, [`sqlite`]) or a PostgreSQL database (`--database`, [`postgres`]), with the same
//! meaning for every method. Every change is one transaction, so a `kill -9` leaves either the old
//! or the new state, and a database from a newer fledge is refused with a clear error.
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

pub mod postgres;
pub mod sqlite;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

pub const SCHEMA_VERSION: i64 = 5;
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
    #[error("invalid PostgreSQL URL: {reason}")]
    PgUrl { reason: String },
    #[error("database {location} asks for TLS (sslmode={mode}), which this fledge does not support: use sslmode=disable or prefer, on loopback or a private network")]
    PgTls { location: String, mode: String },
    #[error("cannot connect to PostgreSQL at {location}: {}", postgres::message(source))]
    PgConnect { location: String, source: ::postgres::Error },
    #[error("cannot check or migrate the schema of database {location}: {}", postgres::message(source))]
    PgMigrate { location: String, source: ::postgres::Error },
    #[error("database {location} is not a fledge database: {reason}")]
    PgCorrupt { location: String, reason: String },
    #[error("database {location} has schema version {found}, newer than this fledge supports ({supported}); upgrade fledge")]
    PgNewerSchema { location: String, found: i64, supported: i64 },
    #[error("cannot start the PostgreSQL connection thread: {0}")]
    PgThread(std::io::Error),
    #[error("the PostgreSQL connection thread did not answer (it stopped, or the call failed in it)")]
    PgGone,
    #[error("PostgreSQL error: {}", postgres::message(.0))]
    Postgres(#[from] ::postgres::Error),
    #[error("stored record is unreadable: {0}")]
    Record(#[from] serde_json::Error),
    /// Another replica committed since this one looked: the decision was made on an old view.
    #[error("the database changed since this replica looked (another replica committed); look again")]
    Stale,
    /// The analysis' commit of a replica that no longer holds the leader's lease with its epoch.
    #[error("replica {replica} no longer holds the leader's lease of epoch {epoch}: its decision is not committed")]
    Fenced { replica: String, epoch: u64 },
    #[error("{0} needs the PostgreSQL backend (--database)")]
    NeedsPostgres(&'static str),
}

/// What a commit was decided on, re-checked inside its transaction so that a decision made on an old
/// view, or by a leader that lost its lease, is never written. SQLite has one writer, the process
/// itself, and checks nothing; on PostgreSQL several replicas write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expect {
    /// The generation and the rollout's revision (None: it did not exist) the decision saw.
    pub seen: Option<(u64, Option<u64>)>,
    /// The lease the deciding leader holds (the analysis' decisions; a user's change has none).
    pub fence: Option<Fence>,
}

/// A leader's fencing token: its replica id and the lease epoch it acquired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub replica: String,
    pub epoch: u64,
}

/// The leader's lease as one replica's renewal found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseState {
    /// This replica holds the lease with this epoch (acquired or renewed just now).
    pub mine: Option<u64>,
    /// The holder and epoch of the lease, if it is held and not expired.
    pub holder: Option<(String, u64)>,
}

/// One item of the shared data log (PostgreSQL): a report (deduplicated on `key`) or a batch of late
/// outcomes, as received by one replica and read back by every replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// (proxy, worker, seq) of a report; None for outcomes, which carry no identity.
    pub key: Option<(String, String, u64)>,
    pub kind: String,
    pub body: Vec<u8>,
}

/// The store of one controller: the same methods, with the same meaning, on every backend.
pub enum Store {
    Sqlite(SqliteStore),
    Postgres(PgStore),
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

/// What a follower of the database hears.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// A replica committed a change of rollouts.
    Committed,
    /// A replica appended data to the log.
    Data,
    /// The listening connection was (re)established: anything may have been missed.
    Reconnected,
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

    /// The PostgreSQL database at `url` (`postgres://user[:password]@host[:port]/db`, or libpq's
    /// `key=value` form), migrated to this fledge's schema. `Durability::Normal` turns
    /// `synchronous_commit` off for the connection; `Full` keeps the server's setting.
    pub fn postgres(url: &str, durability: Durability) -> Result<Self, StoreError> {
        Ok(Self::Postgres(PgStore::connect(url, durability)?))
    }

    /// Which backend and where, for the log: never a password.
    pub fn describe(&self) -> String {
        match self {
            Self::Sqlite(s) => format!("sqlite {}", s.location()),
            Self::Postgres(p) => format!("postgres {}", p.location()),
        }
    }

    /// A trivial read: the database answers (for readiness checks).
    pub fn check(&self) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => s.check(),
            Self::Postgres(p) => p.check(),
        }
    }

    pub fn load(&self) -> Result<Loaded, StoreError> {
        match self {
            Self::Sqlite(s) => s.load(),
            Self::Postgres(p) => p.load(),
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
        self.put_checked(rollout, generation, event, interval, deliveries, &Expect::default())
    }

    /// As [`put`](Self::put), refused with [`StoreError::Stale`] or [`StoreError::Fenced`] (and nothing
    /// written) when the database no longer matches `expect` (PostgreSQL; SQLite checks nothing).
    pub fn put_checked(
        &mut self,
        rollout: &Rollout,
        generation: u64,
        event: Option<&serde_json::Value>,
        interval: Option<&IntervalRecord>,
        deliveries: &dyn Fn(i64) -> Vec<NewDelivery>,
        expect: &Expect,
    ) -> Result<Queued, StoreError> {
        match self {
            Self::Sqlite(s) => s.put(rollout, generation, event, interval, deliveries),
            Self::Postgres(p) => p.put(rollout, generation, event, interval, deliveries, expect),
        }
    }

    /// Several replicas can share this store (PostgreSQL).
    pub fn is_shared(&self) -> bool {
        matches!(self, Self::Postgres(_))
    }

    fn pg(&self, what: &'static str) -> Result<&PgStore, StoreError> {
        match self {
            Self::Postgres(p) => Ok(p),
            Self::Sqlite(_) => Err(StoreError::NeedsPostgres(what)),
        }
    }

    /// Acquires or renews the leader's lease for `replica` (this process: `instance`) for `ttl_ms` on
    /// the database's clock, and tells who holds it.
    pub fn lease_tick(&self, replica: &str, instance: &str, ttl_ms: u64) -> Result<LeaseState, StoreError> {
        self.pg("a leader's lease")?.lease_tick(replica, instance, ttl_ms)
    }

    /// Gives up this process' lease, if it holds it (a graceful shutdown).
    pub fn lease_release(&self, replica: &str, instance: &str) -> Result<(), StoreError> {
        self.pg("a leader's lease")?.lease_release(replica, instance)
    }

    /// Appends entries to the shared data log in one transaction; for each, whether it was new (a
    /// report's key already in the log, from a retry to any replica, is not appended again).
    pub fn log_append(&self, entries: Vec<LogEntry>, at_ms: u64) -> Result<Vec<bool>, StoreError> {
        self.pg("the shared data log")?.log_append(entries, at_ms)
    }

    /// Up to `limit` log entries after `after_id`, in commit order: (id, kind, body).
    pub fn log_after(&self, after_id: i64, limit: usize) -> Result<Vec<(i64, String, Vec<u8>)>, StoreError> {
        self.pg("the shared data log")?.log_after(after_id, limit)
    }

    /// The newest log entry's id (0 for an empty log).
    pub fn log_head(&self) -> Result<i64, StoreError> {
        self.pg("the shared data log")?.log_head()
    }

    /// Forgets log entries appended before `before_ms`; returns how many.
    pub fn log_prune(&self, before_ms: u64) -> Result<u64, StoreError> {
        self.pg("the shared data log")?.log_prune(before_ms)
    }

    /// Starts following commits of any replica: the receiver gets a message for each commit
    /// (`LISTEN`), and one after every reconnect (notifications sent meanwhile are lost).
    pub fn listen(&self) -> Result<tokio::sync::mpsc::Receiver<Wake>, StoreError> {
        self.pg("following other replicas")?.listen()
    }

    /// The oldest undelivered notification of every receiver (URL): deliveries to one receiver go
    /// out one at a time, in the order of their events.
    pub fn outbox_heads(&self) -> Result<Vec<Pending>, StoreError> {
        match self {
            Self::Sqlite(s) => s.outbox_heads(),
            Self::Postgres(p) => p.outbox_heads(),
        }
    }

    /// Removes a delivered (or given-up) notification.
    pub fn outbox_remove(&self, id: i64) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => s.outbox_remove(id),
            Self::Postgres(p) => p.outbox_remove(id),
        }
    }

    /// Records a failed attempt: the next one is due at `next_attempt_ms`.
    pub fn outbox_retry(&self, id: i64, attempts: u32, next_attempt_ms: u64, error: &str) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => s.outbox_retry(id, attempts, next_attempt_ms, error),
            Self::Postgres(p) => p.outbox_retry(id, attempts, next_attempt_ms, error),
        }
    }

    /// Undelivered notifications.
    pub fn outbox_len(&self) -> Result<u64, StoreError> {
        match self {
            Self::Sqlite(s) => s.outbox_len(),
            Self::Postgres(p) => p.outbox_len(),
        }
    }

    /// Deletes a rollout with its events and intervals, and writes the new generation, in one
    /// transaction.
    pub fn delete(&mut self, name: &str, generation: u64) -> Result<(), StoreError> {
        self.delete_checked(name, generation, &Expect::default())
    }

    /// As [`delete`](Self::delete), checked against `expect` as [`put_checked`](Self::put_checked) is.
    pub fn delete_checked(&mut self, name: &str, generation: u64, expect: &Expect) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => s.delete(name, generation),
            Self::Postgres(p) => p.delete(name, generation, expect),
        }
    }

    /// A rollout's events with their sequence numbers, oldest first.
    pub fn events(&self, rollout: &str) -> Result<Vec<(i64, serde_json::Value)>, StoreError> {
        match self {
            Self::Sqlite(s) => s.events(rollout),
            Self::Postgres(p) => p.events(rollout),
        }
    }

    /// Up to `limit` of a rollout's events after `after_seq` and at most `upto_seq`, oldest first (the
    /// export reads them a page at a time).
    pub fn events_page(&self, rollout: &str, after_seq: i64, upto_seq: i64, limit: usize) -> Result<Vec<(i64, serde_json::Value)>, StoreError> {
        match self {
            Self::Sqlite(s) => s.events_page(rollout, after_seq, upto_seq, limit),
            Self::Postgres(p) => p.events_page(rollout, after_seq, upto_seq, limit),
        }
    }

    /// The newest event's sequence number (0 without events).
    pub fn last_event_seq(&self) -> Result<i64, StoreError> {
        match self {
            Self::Sqlite(s) => s.last_event_seq(),
            Self::Postgres(p) => p.last_event_seq(),
        }
    }

    /// Up to `limit` of a rollout's judged intervals numbered after `after_n` and at most `upto_n`,
    /// oldest first.
    pub fn intervals_page(&self, rollout: &str, after_n: u64, upto_n: u64, limit: usize) -> Result<Vec<(u64, serde_json::Value)>, StoreError> {
        match self {
            Self::Sqlite(s) => s.intervals_page(rollout, after_n, upto_n, limit),
            Self::Postgres(p) => p.intervals_page(rollout, after_n, upto_n, limit),
        }
    }

    /// The number of the oldest interval kept of a rollout (None without any).
    pub fn first_interval(&self, rollout: &str) -> Result<Option<u64>, StoreError> {
        match self {
            Self::Sqlite(s) => s.first_interval(rollout),
            Self::Postgres(p) => p.first_interval(rollout),
        }
    }
}

/// 16 random hex digits.
/// A count, sequence number or time in ms as SQL's signed 64-bit integer, saturating (nothing fledge
/// stores comes near 2^63).
fn to_sql(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Back from SQL: a negative value (never written by fledge) reads as 0.
fn from_sql(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn new_epoch() -> String {
    let random = getrandom::u64().unwrap_or_else(|_| {
        // No OS randomness: the clock and the process still tell two data directories apart.
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        nanos ^ u64::from(std::process::id()).rotate_left(32)
    });
    format!("{random:016x}")
}


#[cfg(test)]
#[path = "../../tests/common/pg.rs"]
mod pg_cluster;

#[cfg(test)]
impl Store {
    /// Runs raw SQL on either backend (tests only).
    pub(crate) fn execute_batch(&mut self, sql: &str) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => s.execute_batch(sql),
            Self::Postgres(p) => p.execute_batch(sql),
        }
    }
}

/// The store's behaviour, checked on both backends: each test below runs as `NAME::sqlite` and
/// `NAME::postgres` (on a fresh database of the test binary's PostgreSQL cluster).
#[cfg(test)]
mod tests {
    use super::*;

    /// Where one test's data lives; opening it again is a restart (a new connection).
    enum Backend {
        Sqlite(tempfile::TempDir),
        Postgres(String),
    }

    impl Backend {
        fn open(&self) -> Result<Store, StoreError> {
            match self {
                Self::Sqlite(dir) => Store::open(dir.path()),
                Self::Postgres(url) => Store::postgres(url, Durability::Full),
            }
        }

        fn store(&self) -> Store {
            self.open().unwrap()
        }

        /// Makes every later insert into the outbox fail.
        fn break_outbox(&self, store: &mut Store) {
            store
                .execute_batch(match self {
                    Self::Sqlite(_) => "CREATE TRIGGER no_more BEFORE INSERT ON outbox BEGIN SELECT RAISE(ABORT, 'full'); END;",
                    Self::Postgres(_) => {
                        "CREATE FUNCTION no_more() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'full'; END $$;
                         CREATE TRIGGER no_more BEFORE INSERT ON outbox FOR EACH ROW EXECUTE FUNCTION no_more();"
                    }
                })
                .unwrap();
        }

        fn set_schema_version(&self, store: &mut Store, version: i64) {
            store
                .execute_batch(&match self {
                    Self::Sqlite(_) => format!("PRAGMA user_version = {version}"),
                    Self::Postgres(_) => format!("UPDATE fledge_schema SET version = {version}"),
                })
                .unwrap();
        }
    }

    macro_rules! on_both_backends {
        ($($name:ident),* $(,)?) => {$(
            mod $name {
                #[test]
                fn sqlite() {
                    super::$name(&super::Backend::Sqlite(tempfile::tempdir().unwrap()));
                }

                #[test]
                fn postgres() {
                    super::$name(&super::Backend::Postgres(super::super::pg_cluster::database()));
                }
            }
        )*};
    }

    on_both_backends!(
        a_new_store_is_empty_and_answers,
        epoch_is_kept_and_differs_between_databases,
        a_newer_schema_is_refused,
        a_committed_put_is_visible_after_reopening,
        deliveries_are_written_with_their_event_and_queued_per_receiver,
        events_are_numbered_paged_and_deleted_with_their_rollout,
        intervals_are_written_with_their_rollout_paged_bounded_and_deleted_with_it,
        the_outbox_is_bounded,
    );

    fn rollout(name: &str) -> Rollout {
        let spec = fledge_core::rollout::RolloutSpec::manual(&["a"], "v1", "v2", fledge_core::Weight::ZERO);
        Rollout::new(name, spec, 5).unwrap()
    }

    fn delivery(seq: i64, url: &str) -> NewDelivery {
        NewDelivery { delivery: format!("e-{seq}-0"), kind: "paused".into(), url: url.into(), body: format!("{{\"seq\":{seq}}}").into_bytes() }
    }

    fn a_new_store_is_empty_and_answers(b: &Backend) {
        let store = b.store();
        store.check().unwrap();
        let loaded = store.load().unwrap();
        assert_eq!((loaded.generation, loaded.rollouts.len()), (0, 0));
        assert_eq!((store.last_event_seq().unwrap(), store.outbox_len().unwrap()), (0, 0));
        assert_eq!(store.outbox_heads().unwrap(), []);
        assert_eq!(store.first_interval("support").unwrap(), None);
    }

    fn epoch_is_kept_and_differs_between_databases(b: &Backend) {
        let first = b.store().load().unwrap().epoch;
        assert_eq!(first.len(), 16);
        assert!(first.bytes().all(|c| c.is_ascii_hexdigit()), "{first}");
        assert_eq!(b.store().load().unwrap().epoch, first, "kept across restarts");
        let other = match b {
            Backend::Sqlite(_) => Backend::Sqlite(tempfile::tempdir().unwrap()),
            Backend::Postgres(_) => Backend::Postgres(pg_cluster::database()),
        };
        assert_ne!(other.store().load().unwrap().epoch, first);
    }

    fn a_newer_schema_is_refused(b: &Backend) {
        {
            let mut store = b.store();
            store.put(&rollout("support"), 1, None, None, &|_| Vec::new()).unwrap();
            b.set_schema_version(&mut store, SCHEMA_VERSION + 95);
        }
        let err = b.open().err().unwrap().to_string();
        let expected = format!("has schema version {}, newer than this fledge supports ({SCHEMA_VERSION}); upgrade fledge", SCHEMA_VERSION + 95);
        assert!(err.contains(&expected), "{err}");
    }

    fn a_committed_put_is_visible_after_reopening(b: &Backend) {
        let mut r = rollout("support");
        {
            let mut store = b.store();
            store.put(&r, 1, Some(&serde_json::json!({"kind": "created"})), None, &|_| Vec::new()).unwrap();
            r.status.revision = 2;
            r.status.message = "ünïcode and \"quotes\"".into();
            store.put(&r, 3, None, None, &|_| Vec::new()).unwrap();
            store.put(&rollout("another"), 4, None, None, &|_| Vec::new()).unwrap();
        }
        let store = b.store();
        let loaded = store.load().unwrap();
        assert_eq!(loaded.generation, 4);
        let names: Vec<&str> = loaded.rollouts.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["another", "support"], "by name");
        assert_eq!(serde_json::to_value(&loaded.rollouts[1]).unwrap(), serde_json::to_value(&r).unwrap(), "the rollout as written");
        assert_eq!(store.events("support").unwrap(), [(1, serde_json::json!({"kind": "created"}))]);
    }

    fn deliveries_are_written_with_their_event_and_queued_per_receiver(b: &Backend) {
        let mut store = b.store();
        let r = rollout("support");
        let event = serde_json::json!({"kind": "paused"});
        // No event, no delivery; an event renders its deliveries from its own seq.
        store.put(&r, 1, None, None, &|seq| vec![delivery(seq, "http://a/")]).unwrap();
        assert_eq!(store.outbox_len().unwrap(), 0);
        for seq in 1..=3 {
            let queued = store.put(&r, 1, Some(&event), None, &|seq| vec![delivery(seq, "http://a/"), NewDelivery { delivery: format!("e-{seq}-1"), ..delivery(seq, "http://b/") }]).unwrap();
            assert_eq!(queued, Queued { seq: Some(seq), deliveries: 2, dropped: 0 });
        }
        assert_eq!(store.outbox_len().unwrap(), 6);
        let heads = store.outbox_heads().unwrap();
        let named: Vec<(&str, &str)> = heads.iter().map(|h| (h.url.as_str(), h.delivery.as_str())).collect();
        assert_eq!(named, [("http://a/", "e-1-0"), ("http://b/", "e-1-1")], "one head per receiver, oldest first");
        assert_eq!((heads[0].attempts, heads[0].next_attempt_ms, heads[0].created_ms), (0, 5, 5), "due at once");
        assert_eq!((heads[0].rollout.as_str(), heads[0].kind.as_str(), heads[0].body.as_slice()), ("support", "paused", b"{\"seq\":1}".as_slice()));
        store.outbox_retry(heads[0].id, 1, 900, "HTTP 503").unwrap();
        store.outbox_remove(heads[1].id).unwrap();
        drop(store);
        // Durable: a reopened store has the same queue.
        let mut store = b.store();
        let heads = store.outbox_heads().unwrap();
        let named: Vec<(&str, u32, u64)> = heads.iter().map(|h| (h.delivery.as_str(), h.attempts, h.next_attempt_ms)).collect();
        assert_eq!(named, [("e-1-0", 1, 900), ("e-2-1", 0, 5)]);
        assert_eq!(store.outbox_len().unwrap(), 5);
        // A failing transaction writes neither the rollout, the generation, the event nor its deliveries.
        b.break_outbox(&mut store);
        let mut changed = r.clone();
        changed.status.message = "not written".into();
        let err = store.put(&changed, 2, Some(&event), None, &|seq| vec![delivery(seq, "http://a/")]).unwrap_err();
        assert!(err.to_string().contains("full"), "{err}");
        assert_eq!((store.events("support").unwrap().len(), store.outbox_len().unwrap()), (3, 5));
        let loaded = store.load().unwrap();
        assert_eq!((loaded.generation, loaded.rollouts[0].status.message.as_str()), (1, r.status.message.as_str()));
        // The store is still usable after the failed transaction.
        store.put(&changed, 2, None, None, &|_| Vec::new()).unwrap();
        assert_eq!(store.load().unwrap().generation, 2);
    }

    fn events_are_numbered_paged_and_deleted_with_their_rollout(b: &Backend) {
        let mut store = b.store();
        let (a, z) = (rollout("a"), rollout("z"));
        for i in 0..5 {
            store.put(&a, 1, Some(&serde_json::json!({"i": i})), None, &|_| Vec::new()).unwrap();
            store.put(&z, 1, Some(&serde_json::json!({"i": i})), None, &|_| Vec::new()).unwrap();
        }
        let seqs: Vec<i64> = store.events("a").unwrap().iter().map(|(seq, _)| *seq).collect();
        assert_eq!(seqs, [1, 3, 5, 7, 9]);
        assert_eq!(store.last_event_seq().unwrap(), 10);
        let page = store.events_page("a", 1, 7, 2).unwrap();
        assert_eq!(page, [(3, serde_json::json!({"i": 1})), (5, serde_json::json!({"i": 2}))]);
        assert_eq!(store.events_page("a", 5, 7, 100).unwrap().len(), 1, "none past upto_seq");
        store.delete("a", 2).unwrap();
        assert_eq!((store.events("a").unwrap().len(), store.events("z").unwrap().len()), (0, 5));
        let loaded = store.load().unwrap();
        assert_eq!((loaded.generation, loaded.rollouts.len()), (2, 1));
    }

    fn intervals_are_written_with_their_rollout_paged_bounded_and_deleted_with_it(b: &Backend) {
        let mut store = b.store();
        let r = rollout("support");
        let record = |n: u64| IntervalRecord { n, body: serde_json::json!({"n": n}) };
        for n in 1..=10 {
            store.put(&r, 1, None, Some(&record(n)), &|_| Vec::new()).unwrap();
        }
        let page = store.intervals_page("support", 3, 8, 2).unwrap();
        assert_eq!(page.iter().map(|(n, b)| (*n, b["n"].as_u64().unwrap())).collect::<Vec<_>>(), [(4, 4), (5, 5)]);
        assert_eq!(store.intervals_page("support", 0, 3, 100).unwrap().len(), 3, "none past upto_n");
        assert_eq!(store.intervals_page("support", 0, u64::MAX, 100).unwrap().len(), 10, "bounds above i64 are clamped");
        assert_eq!(store.first_interval("support").unwrap(), Some(1));
        // The same number again replaces it.
        store.put(&r, 1, None, Some(&IntervalRecord { n: 10, body: serde_json::json!({"n": 10, "again": true}) }), &|_| Vec::new()).unwrap();
        assert_eq!(store.intervals_page("support", 9, 10, 100).unwrap()[0].1["again"], true);
        // The interval numbered MAX_INTERVALS + 5 leaves the newest MAX_INTERVALS: 1..=5 go.
        store.put(&r, 1, None, Some(&record(MAX_INTERVALS + 5)), &|_| Vec::new()).unwrap();
        assert_eq!(store.first_interval("support").unwrap(), Some(6));
        store.delete("support", 2).unwrap();
        assert_eq!(store.first_interval("support").unwrap(), None);
    }

    fn the_outbox_is_bounded(b: &Backend) {
        let mut store = b.store();
        let r = rollout("support");
        let event = serde_json::json!({"kind": "paused"});
        let mut dropped = 0;
        for _ in 0..(MAX_OUTBOX + 5) {
            dropped += store.put(&r, 1, Some(&event), None, &|seq| vec![delivery(seq, "http://a/")]).unwrap().dropped;
        }
        assert_eq!((store.outbox_len().unwrap(), dropped), (MAX_OUTBOX as u64, 5));
        assert_eq!(store.outbox_heads().unwrap()[0].delivery, "e-6-0", "the oldest went first");
    }
}
