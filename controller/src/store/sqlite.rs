//! The SQLite backend: one file, `DIR/fledge.db`, in WAL mode.
//!
//! Every change is one transaction, so a `kill -9` leaves either the old or the new state. WAL mode
//! with `synchronous=FULL` (the default) makes each commit durable before it is acknowledged, power
//! loss included; `--sync normal` trades the last commits before a power cut for fewer fsyncs. The
//! journal mode is read back at start: a file system where WAL cannot be used is refused, not
//! silently run in another mode. A file from a newer fledge, or one that is not a fledge database,
//! is refused with a clear error; an older one is migrated (`PRAGMA user_version` holds the version).

use std::path::Path;

use rusqlite::{params, Connection};

use super::{from_sql, new_epoch, to_sql, Durability, Loaded, NewDelivery, Pending, Queued, StoreError, DB_FILE, MAX_INTERVALS, MAX_OUTBOX, SCHEMA_VERSION};
use crate::model::Rollout;
use crate::totals::IntervalRecord;

pub struct SqliteStore {
    conn: Connection,
}

impl SqliteStore {
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

    /// The file, or `:memory:`.
    pub fn location(&self) -> String {
        match self.conn.path() {
            Some(p) if !p.is_empty() => p.to_string(),
            _ => ":memory:".to_string(),
        }
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

    /// Writes a rollout (insert or replace), the new generation, the event of the change, the judged
    /// interval it closed and the deliveries it owes in one transaction: after a crash, either all of
    /// them are there or none. `deliveries` renders them from the event's sequence number (called
    /// only with an event).
    pub fn put(
        &mut self,
        rollout: &Rollout,
        generation: u64,
        event: Option<&serde_json::Value>,
        interval: Option<&IntervalRecord>,
        deliveries: &dyn Fn(i64) -> Vec<NewDelivery>,
    ) -> Result<Queued, StoreError> {
        let body = serde_json::to_string(rollout)?;
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO rollouts (name, body) VALUES (?1, ?2) ON CONFLICT(name) DO UPDATE SET body = excluded.body",
            params![rollout.name, body],
        )?;
        if let Some(i) = interval {
            let n = to_sql(i.n);
            tx.execute("INSERT OR REPLACE INTO intervals (rollout, n, body) VALUES (?1, ?2, ?3)", params![rollout.name, n, i.body.to_string()])?;
            tx.execute("DELETE FROM intervals WHERE rollout = ?1 AND n <= ?2", params![rollout.name, n - MAX_INTERVALS as i64])?;
        }
        let mut queued = Queued::default();
        if let Some(e) = event {
            let at_ms = rollout.status.updated_at_ms as i64;
            tx.execute("INSERT INTO events (rollout, at_ms, body) VALUES (?1, ?2, ?3)", params![rollout.name, at_ms, e.to_string()])?;
            let seq = tx.last_insert_rowid();
            queued.seq = Some(seq);
            for d in deliveries(seq) {
                tx.execute(
                    "INSERT INTO outbox (delivery, rollout, kind, url, body, created_ms, attempts, next_attempt_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?6)",
                    params![d.delivery, rollout.name, d.kind, d.url, d.body, at_ms],
                )?;
                queued.deliveries += 1;
            }
            if queued.deliveries > 0 {
                queued.dropped = tx.execute("DELETE FROM outbox WHERE id <= (SELECT MAX(id) FROM outbox) - ?1", params![MAX_OUTBOX])?;
            }
        }
        tx.execute("UPDATE meta SET generation = ?1", params![generation as i64])?;
        tx.commit()?;
        Ok(queued)
    }

    /// The oldest undelivered notification of every receiver (URL): deliveries to one receiver go
    /// out one at a time, in the order of their events.
    pub fn outbox_heads(&self) -> Result<Vec<Pending>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT o.id, o.delivery, o.rollout, o.kind, o.url, o.body, o.created_ms, o.attempts, o.next_attempt_ms
             FROM outbox o JOIN (SELECT MIN(id) AS id FROM outbox GROUP BY url) h ON h.id = o.id ORDER BY o.id",
        )?;
        let rows = stmt
            .query_map([], |r| {
                Ok(Pending {
                    id: r.get(0)?,
                    delivery: r.get(1)?,
                    rollout: r.get(2)?,
                    kind: r.get(3)?,
                    url: r.get(4)?,
                    body: r.get(5)?,
                    created_ms: from_sql(r.get::<_, i64>(6)?),
                    attempts: r.get::<_, i64>(7)?.clamp(0, i64::from(u32::MAX)) as u32,
                    next_attempt_ms: from_sql(r.get::<_, i64>(8)?),
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Removes a delivered (or given-up) notification.
    pub fn outbox_remove(&self, id: i64) -> Result<(), StoreError> {
        self.conn.execute("DELETE FROM outbox WHERE id = ?1", params![id])?;
        Ok(())
    }

    /// Records a failed attempt: the next one is due at `next_attempt_ms`.
    pub fn outbox_retry(&self, id: i64, attempts: u32, next_attempt_ms: u64, error: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE outbox SET attempts = ?2, next_attempt_ms = ?3, last_error = ?4 WHERE id = ?1",
            params![id, i64::from(attempts), next_attempt_ms as i64, error],
        )?;
        Ok(())
    }

    /// Undelivered notifications.
    pub fn outbox_len(&self) -> Result<u64, StoreError> {
        Ok(from_sql(self.conn.query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get::<_, i64>(0))?))
    }

    pub fn delete(&mut self, name: &str, generation: u64) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        tx.execute("DELETE FROM rollouts WHERE name = ?1", params![name])?;
        tx.execute("DELETE FROM events WHERE rollout = ?1", params![name])?;
        tx.execute("DELETE FROM intervals WHERE rollout = ?1", params![name])?;
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

    /// Up to `limit` of a rollout's events after `after_seq` and at most `upto_seq`, oldest first (the
    /// export reads them a page at a time).
    pub fn events_page(&self, rollout: &str, after_seq: i64, upto_seq: i64, limit: usize) -> Result<Vec<(i64, serde_json::Value)>, StoreError> {
        let mut stmt = self.conn.prepare_cached("SELECT seq, body FROM events WHERE rollout = ?1 AND seq > ?2 AND seq <= ?3 ORDER BY seq LIMIT ?4")?;
        let rows = stmt
            .query_map(params![rollout, after_seq, upto_seq, limit as i64], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?
            .map(|row| {
                let (seq, body) = row?;
                Ok((seq, serde_json::from_str(&body)?))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(rows)
    }

    /// The newest event's sequence number (0 without events).
    pub fn last_event_seq(&self) -> Result<i64, StoreError> {
        Ok(self.conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))?)
    }

    /// Up to `limit` of a rollout's judged intervals numbered after `after_n` and at most `upto_n`,
    /// oldest first.
    pub fn intervals_page(&self, rollout: &str, after_n: u64, upto_n: u64, limit: usize) -> Result<Vec<(u64, serde_json::Value)>, StoreError> {
        let mut stmt = self.conn.prepare_cached("SELECT n, body FROM intervals WHERE rollout = ?1 AND n > ?2 AND n <= ?3 ORDER BY n LIMIT ?4")?;
        let rows = stmt
            .query_map(params![rollout, to_sql(after_n), to_sql(upto_n), limit as i64], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?
            .map(|row| {
                let (n, body) = row?;
                Ok((from_sql(n), serde_json::from_str(&body)?))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(rows)
    }

    /// The number of the oldest interval kept of a rollout (None without any).
    pub fn first_interval(&self, rollout: &str) -> Result<Option<u64>, StoreError> {
        let n: Option<i64> = self.conn.query_row("SELECT MIN(n) FROM intervals WHERE rollout = ?1", params![rollout], |r| r.get(0))?;
        Ok(n.map(from_sql))
    }
}

#[cfg(test)]
impl SqliteStore {
    /// Runs raw SQL (tests only: to age the schema or make a transaction fail).
    pub(crate) fn execute_batch(&mut self, sql: &str) -> Result<(), StoreError> {
        Ok(self.conn.execute_batch(sql)?)
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
        if version < 3 {
            // Version 3: the outbox of webhook deliveries.
            conn.execute_batch(
                "CREATE TABLE outbox (
                     id INTEGER PRIMARY KEY AUTOINCREMENT, delivery TEXT NOT NULL UNIQUE, rollout TEXT NOT NULL,
                     kind TEXT NOT NULL, url TEXT NOT NULL, body BLOB NOT NULL, created_ms INTEGER NOT NULL,
                     attempts INTEGER NOT NULL, next_attempt_ms INTEGER NOT NULL, last_error TEXT);
                 CREATE INDEX outbox_by_url ON outbox (url, id);",
            )?;
        }
        if version < 4 {
            // Version 4: the judged intervals (the export's evidence), numbered per rollout.
            conn.execute_batch(
                "CREATE TABLE intervals (rollout TEXT NOT NULL, n INTEGER NOT NULL, body TEXT NOT NULL, PRIMARY KEY (rollout, n));",
            )?;
        }
        // Version 5 adds only what several replicas on PostgreSQL share (the lease, the data log):
        // one SQLite file has one writer, so nothing changes here but the number.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_newer_schema_and_garbage() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = SqliteStore::open(dir.path()).unwrap();
            s.conn.execute_batch("PRAGMA user_version = 99").unwrap();
        }
        let err = SqliteStore::open(dir.path()).err().unwrap().to_string();
        assert!(err.contains("newer than this fledge supports"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(DB_FILE), b"this is not sqlite, just some bytes that are long enough ......").unwrap();
        let err = SqliteStore::open(dir.path()).err().unwrap().to_string();
        assert!(err.contains("corrupt or not a fledge database"), "{err}");
    }

    #[test]
    fn durability_sets_synchronous() {
        let a = tempfile::tempdir().unwrap();
        let sync: i64 = SqliteStore::open(a.path()).unwrap().conn.query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap();
        assert_eq!(sync, 2, "FULL by default");
        let sync: i64 = SqliteStore::open_with(a.path(), Durability::Normal).unwrap().conn.query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap();
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
        let loaded = SqliteStore::open(dir.path()).unwrap().load().unwrap();
        assert_eq!((loaded.generation, loaded.epoch.len()), (7, 16));
    }

    fn rollout(name: &str) -> Rollout {
        let spec = fledge_core::rollout::RolloutSpec::manual(&["a"], "v1", "v2", fledge_core::Weight::ZERO);
        Rollout::new(name, spec, 5).unwrap()
    }

    fn delivery(seq: i64, url: &str) -> NewDelivery {
        NewDelivery { delivery: format!("e-{seq}-0"), kind: "paused".into(), url: url.into(), body: format!("{{\"seq\":{seq}}}").into_bytes() }
    }

    #[test]
    fn a_version_2_file_is_migrated_with_its_rollouts_and_events() {
        let dir = tempfile::tempdir().unwrap();
        let body = serde_json::to_string(&rollout("support")).unwrap();
        {
            let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
            conn.execute_batch(
                "CREATE TABLE meta (generation INTEGER NOT NULL, epoch TEXT); INSERT INTO meta VALUES (3, 'feedc0de00000000');
                 CREATE TABLE rollouts (name TEXT PRIMARY KEY, body TEXT NOT NULL);
                 CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, rollout TEXT NOT NULL, at_ms INTEGER NOT NULL, body TEXT NOT NULL);
                 CREATE INDEX events_by_rollout ON events (rollout, seq);
                 INSERT INTO events (rollout, at_ms, body) VALUES ('support', 5, '{\"kind\":\"created\"}');
                 PRAGMA user_version = 2;",
            )
            .unwrap();
            conn.execute("INSERT INTO rollouts VALUES ('support', ?1)", params![body]).unwrap();
        }
        let mut store = SqliteStore::open(dir.path()).unwrap();
        let version: i64 = store.conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let loaded = store.load().unwrap();
        assert_eq!((loaded.generation, loaded.epoch.as_str(), loaded.rollouts.len()), (3, "feedc0de00000000", 1));
        assert_eq!(store.events("support").unwrap().len(), 1);
        assert_eq!(store.outbox_len().unwrap(), 0);
        // The migrated file takes deliveries.
        let queued = store.put(&loaded.rollouts[0], 4, Some(&serde_json::json!({"kind": "paused"})), None, &|seq| vec![delivery(seq, "http://r/")]).unwrap();
        assert_eq!(queued, Queued { seq: Some(2), deliveries: 1, dropped: 0 });
        assert_eq!(store.outbox_heads().unwrap()[0].delivery, "e-2-0", "named by the event's seq");
    }

    #[test]
    fn a_version_3_file_gains_the_intervals_table() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SqliteStore::open(dir.path()).unwrap();
            store.conn.execute_batch("DROP TABLE intervals; PRAGMA user_version = 3;").unwrap();
        }
        let mut store = SqliteStore::open(dir.path()).unwrap();
        let version: i64 = store.conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let record = IntervalRecord { n: 1, body: serde_json::json!({}) };
        store.put(&rollout("support"), 1, None, Some(&record), &|_| Vec::new()).unwrap();
        assert_eq!(store.first_interval("support").unwrap(), Some(1));
    }
}
