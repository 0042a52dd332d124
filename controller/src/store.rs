//! Durable state in one SQLite file: rollouts, the global generation and (later) events.
//!
//! Every change is one transaction, so a `kill -9` leaves either the old or the new state. WAL mode
//! with `synchronous=NORMAL` survives process crashes (only a power cut can lose the last commits).
//! A file from a newer fledge, or one that is not a fledge database, is refused with a clear error.

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection};

use crate::model::Rollout;

pub const SCHEMA_VERSION: i64 = 1;
pub const DB_FILE: &str = "fledge.db";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open data file {path}: {source}")]
    Open { path: PathBuf, source: rusqlite::Error },
    #[error("data file {path} is corrupt or not a fledge database: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("data file {path} has schema version {found}, newer than this fledge supports ({supported}); upgrade fledge")]
    NewerSchema { path: PathBuf, found: i64, supported: i64 },
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

/// What a restarted controller resumes from.
pub struct Loaded {
    pub generation: u64,
    pub rollouts: Vec<Rollout>,
}

impl Store {
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir { path: dir.to_path_buf(), source })?;
        let path = dir.join(DB_FILE);
        let conn = Connection::open(&path).map_err(|source| StoreError::Open { path: path.clone(), source })?;
        let corrupt = |e: rusqlite::Error| StoreError::Corrupt { path: path.clone(), reason: e.to_string() };
        conn.pragma_update(None, "journal_mode", "WAL").map_err(corrupt)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(corrupt)?;
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

    pub fn load(&self) -> Result<Loaded, StoreError> {
        let generation: i64 = self.conn.query_row("SELECT generation FROM meta", [], |r| r.get(0))?;
        let mut stmt = self.conn.prepare("SELECT body FROM rollouts ORDER BY name")?;
        let rollouts = stmt
            .query_map([], |r| r.get::<_, String>(0))?
            .map(|body| Ok(serde_json::from_str(&body?)?))
            .collect::<Result<Vec<Rollout>, StoreError>>()?;
        Ok(Loaded { generation: generation as u64, rollouts })
    }

    /// Writes a rollout (insert or replace), the new generation and the event of the change in one
    /// transaction: after a crash, either all of them are there or none.
    pub fn put(&mut self, rollout: &Rollout, generation: u64, event: Option<&serde_json::Value>) -> Result<(), StoreError> {
        let body = serde_json::to_string(rollout)?;
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO rollouts (name, body) VALUES (?1, ?2) ON CONFLICT(name) DO UPDATE SET body = excluded.body",
            params![rollout.name, body],
        )?;
        if let Some(e) = event {
            tx.execute(
                "INSERT INTO events (rollout, at_ms, body) VALUES (?1, ?2, ?3)",
                params![rollout.name, rollout.status.updated_at_ms as i64, e.to_string()],
            )?;
        }
        tx.execute("UPDATE meta SET generation = ?1", params![generation as i64])?;
        tx.commit()?;
        Ok(())
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

    /// A trivial read through the connection: readiness means the database answers.
    pub fn check(&self) -> Result<(), StoreError> {
        self.conn.query_row("SELECT generation FROM meta", [], |r| r.get::<_, i64>(0))?;
        Ok(())
    }
}

fn migrate(conn: &Connection) -> Result<(), rusqlite::Error> {
    conn.execute_batch(
        "BEGIN;
         CREATE TABLE IF NOT EXISTS meta (generation INTEGER NOT NULL);
         INSERT INTO meta (generation) SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM meta);
         CREATE TABLE IF NOT EXISTS rollouts (name TEXT PRIMARY KEY, body TEXT NOT NULL);
         CREATE TABLE IF NOT EXISTS events (
             seq INTEGER PRIMARY KEY AUTOINCREMENT, rollout TEXT NOT NULL, at_ms INTEGER NOT NULL, body TEXT NOT NULL);
         CREATE INDEX IF NOT EXISTS events_by_rollout ON events (rollout, seq);
         PRAGMA user_version = 1;
         COMMIT;",
    )
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
}
