//! Durable state in one SQLite file: rollouts (with everything their status shows), the global
//! generation, the data's epoch and the events.
//!
//! Every change is one transaction, so a `kill -9` leaves either the old or the new state. WAL mode
//! with `synchronous=FULL` (the default) makes each commit durable before it is acknowledged, power
//! loss included; `--sync normal` trades the last commits before a power cut for fewer fsyncs. The
//! journal mode is read back at start: a file system where WAL cannot be used is refused, not
//! silently run in another mode. A file from a newer fledge, or one that is not a fledge database,
//! is refused with a clear error.
//!
//! The epoch is a random id created with the data: a proxy that holds generation N of another epoch
//! (before a data reset, or from before a restored backup) must not take this data's N for the same.

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection};

use crate::model::Rollout;

pub const SCHEMA_VERSION: i64 = 2;
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

pub struct Store {
    conn: Connection,
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

/// What a restarted controller resumes from.
pub struct Loaded {
    pub epoch: String,
    pub generation: u64,
    pub rollouts: Vec<Rollout>,
}

impl Store {
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(dir, Durability::Full)
    }

    pub fn open_with(dir: &Path, durability: Durability) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir { path: dir.to_path_buf(), source })?;
        let path = dir.join(DB_FILE);
        let conn = Connection::open(&path).map_err(|source| StoreError::Open { path: path.clone(), source })?;
        let corrupt = |e: rusqlite::Error| StoreError::Corrupt { path: path.clone(), reason: e.to_string() };
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)).map_err(corrupt)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::JournalMode { path, mode });
        }
        let sync = match durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        };
        conn.pragma_update(None, "synchronous", sync).map_err(corrupt)?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(corrupt)?;
        let check: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0)).map_err(corrupt)?;
        if check != "ok" {
            return Err(StoreError::Corrupt { path, reason: check });
        }
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(corrupt)?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema { path, found: version, supported: SCHEMA_VERSION });
        }
        if version < SCHEMA_VERSION {
            migrate(&conn).map_err(corrupt)?;
        }
        Ok(Self { conn })
    }

    /// An in-memory store for tests of the API alone.
    pub fn in_memory() -> Result<Self, StoreError> {
        let conn = Connection::open_in_memory()?;
        migrate(&conn)?;
        Ok(Self { conn })
    }

    /// A trivial read: the database answers (for readiness checks).
    pub fn check(&self) -> Result<(), StoreError> {
        self.conn.query_row("SELECT generation FROM meta", [], |r| r.get::<_, i64>(0))?;
        Ok(())
    }

    pub fn load(&self) -> Result<Loaded, StoreError> {
        let (generation, epoch): (i64, String) =
            self.conn.query_row("SELECT generation, epoch FROM meta", [], |r| Ok((r.get(0)?, r.get(1)?)))?;
        let mut stmt = self.conn.prepare("SELECT body FROM rollouts ORDER BY name")?;
        let rollouts = stmt
            .query_map([], |r| r.get::<_, String>(0))?
            .map(|body| Ok(serde_json::from_str(&body?)?))
            .collect::<Result<Vec<Rollout>, StoreError>>()?;
        Ok(Loaded { epoch, generation: generation as u64, rollouts })
    }

    /// Writes a rollout (insert or replace), the new generation and the event of the change in one
    /// transaction: after a crash, either all of them are there or none.
    /// Writes the rollout, its event (if any) and the generation in one transaction; returns the
    /// event's `seq`.
    pub fn put(&mut self, rollout: &Rollout, generation: u64, event: Option<&serde_json::Value>) -> Result<Option<i64>, StoreError> {
        let body = serde_json::to_string(rollout)?;
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO rollouts (name, body) VALUES (?1, ?2) ON CONFLICT(name) DO UPDATE SET body = excluded.body",
            params![rollout.name, body],
        )?;
        let mut seq = None;
        if let Some(e) = event {
            tx.execute(
                "INSERT INTO events (rollout, at_ms, body) VALUES (?1, ?2, ?3)",
                params![rollout.name, rollout.status.updated_at_ms as i64, e.to_string()],
            )?;
            seq = Some(tx.last_insert_rowid());
        }
        tx.execute("UPDATE meta SET generation = ?1", params![generation as i64])?;
        tx.commit()?;
        Ok(seq)
    }

    pub fn delete(&mut self, name: &str, generation: u64) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        tx.execute("DELETE FROM rollouts WHERE name = ?1", params![name])?;
        tx.execute("DELETE FROM events WHERE rollout = ?1", params![name])?;
        tx.execute("UPDATE meta SET generation = ?1", params![generation as i64])?;
        tx.commit()?;
        Ok(())
    }

    pub fn events(&self, rollout: &str) -> Result<Vec<(i64, serde_json::Value)>, StoreError> {
        let mut stmt = self.conn.prepare("SELECT seq, body FROM events WHERE rollout = ?1 ORDER BY seq")?;
        let rows = stmt
            .query_map(params![rollout], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?
            .map(|row| {
                let (seq, body) = row?;
                Ok((seq, serde_json::from_str(&body)?))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(rows)
    }

}

/// Brings a file of any older schema to [`SCHEMA_VERSION`], in one transaction.
fn migrate(conn: &Connection) -> Result<(), rusqlite::Error> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    conn.execute_batch("BEGIN")?;
    let result = (|| {
        if version < 1 {
            conn.execute_batch(
                "CREATE TABLE IF NOT EXISTS meta (generation INTEGER NOT NULL);
                 INSERT INTO meta (generation) SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM meta);
                 CREATE TABLE IF NOT EXISTS rollouts (name TEXT PRIMARY KEY, body TEXT NOT NULL);
                 CREATE TABLE IF NOT EXISTS events (
                     seq INTEGER PRIMARY KEY AUTOINCREMENT, rollout TEXT NOT NULL, at_ms INTEGER NOT NULL, body TEXT NOT NULL);
                 CREATE INDEX IF NOT EXISTS events_by_rollout ON events (rollout, seq);",
            )?;
        }
        if version < 2 {
            // Version 2: the data's epoch.
            conn.execute_batch("ALTER TABLE meta ADD COLUMN epoch TEXT")?;
            conn.execute("UPDATE meta SET epoch = ?1", params![new_epoch()])?;
        }
        conn.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))
    })();
    match result {
        Ok(()) => conn.execute_batch("COMMIT"),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_newer_schema_and_garbage() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            s.conn.execute_batch("PRAGMA user_version = 99").unwrap();
        }
        let err = Store::open(dir.path()).err().unwrap().to_string();
        assert!(err.contains("newer than this fledge supports"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(DB_FILE), b"this is not sqlite, just some bytes that are long enough ......").unwrap();
        let err = Store::open(dir.path()).err().unwrap().to_string();
        assert!(err.contains("corrupt or not a fledge database"), "{err}");
    }

    #[test]
    fn epoch_is_kept_and_differs_between_data_directories() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let first = Store::open(a.path()).unwrap().load().unwrap().epoch;
        assert_eq!(first.len(), 16);
        assert_eq!(Store::open(a.path()).unwrap().load().unwrap().epoch, first, "kept across restarts");
        assert_ne!(Store::open(b.path()).unwrap().load().unwrap().epoch, first);
        let sync: i64 = Store::open(a.path()).unwrap().conn.query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap();
        assert_eq!(sync, 2, "FULL by default");
        let sync: i64 = Store::open_with(a.path(), Durability::Normal).unwrap().conn.query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap();
        assert_eq!(sync, 1);
    }

    #[test]
    fn a_version_1_file_is_migrated() {
        let dir = tempfile::tempdir().unwrap();
        {
            let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
            conn.execute_batch(
                "CREATE TABLE meta (generation INTEGER NOT NULL); INSERT INTO meta VALUES (7);
                 CREATE TABLE rollouts (name TEXT PRIMARY KEY, body TEXT NOT NULL);
                 CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, rollout TEXT NOT NULL, at_ms INTEGER NOT NULL, body TEXT NOT NULL);
                 PRAGMA user_version = 1;",
            )
            .unwrap();
        }
        let loaded = Store::open(dir.path()).unwrap().load().unwrap();
        assert_eq!((loaded.generation, loaded.epoch.len()), (7, 16));
    }
}
