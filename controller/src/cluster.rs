//! Several controller replicas on one PostgreSQL database (docs/ha.md).
//!
//! Every replica serves the API, the config long polls and the reports; one of them, the leader,
//! runs the analysis and commits its decisions. This module is the replica's part in that:
//!
//! - **The lease.** Every [`RENEW`] each replica tries to acquire or renew the one lease row, on the
//!   database's clock, for [`LEASE_TTL`]. The epoch it gets is its fencing token: every decision the
//!   analysis commits re-checks, inside its transaction, that this replica still holds the lease with
//!   that epoch ([`crate::store::Expect::fence`]), so a paused or partitioned old leader can never
//!   commit. A leader also steps down on its own monotonic clock, [`STEP_DOWN`] after the start of
//!   its last successful renewal, before the lease can have expired on the database's clock.
//! - **Following.** A replica learns of other replicas' commits by `LISTEN` (and re-reads everything
//!   after any reconnect, since notifications are lost while disconnected, and every [`BACKSTOP`]),
//!   then swaps in the committed view and publishes its config to the proxies polling it.
//! - **The data log.** A report (or a batch of outcomes) received by any replica is appended to the
//!   shared log by a flush about every [`FLUSH`], and acknowledged only once that flush committed;
//!   the filter's outbox resends anything unacknowledged. A report's (proxy, worker, seq) is unique
//!   in the log, so a retry that reaches another replica is counted once. Every replica reads the
//!   log in commit order and merges it into its own windows, so each has the whole window — a new
//!   leader judges at once what the old one would have.
//!
//! SQLite has one replica: it is the leader, nothing is fenced, and reports merge directly.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{oneshot, Notify};

use crate::store::{Fence, LogEntry, StoreError};

/// How long a lease lasts on the database's clock once acquired or renewed.
pub const LEASE_TTL: Duration = Duration::from_secs(3);
/// How often every replica renews (or tries to take) the lease.
pub const RENEW: Duration = Duration::from_secs(1);
/// A leader considers itself one for this long after the start of its last successful renewal: a
/// third of the lease short of its expiry, so it stops before anyone else can start.
pub const STEP_DOWN: Duration = Duration::from_secs(2);
/// How often received reports are flushed to the shared log (and so acknowledged).
pub const FLUSH: Duration = Duration::from_millis(200);
/// The log is read at least this often, whatever the notifications say.
pub const TAIL: Duration = Duration::from_millis(250);
/// Everything committed is re-read at least this often (notifications can be lost).
pub const BACKSTOP: Duration = Duration::from_secs(1);
/// Log entries kept: a report's dedup holds for this long (filters give up resending after a minute).
pub const LOG_KEEP_MS: u64 = 10 * 60_000;
/// Entries flushed in one transaction at most, and their bytes; more wait for the next round.
pub const FLUSH_BATCH: usize = 2_000;
pub const FLUSH_BATCH_BYTES: usize = 16 << 20;
/// Entries, and bytes of them, waiting for a flush at most; past either a report is answered 503
/// and resent later. Report bodies are not held by the ingest slots while they wait (only while they
/// are read and parsed), so this is what bounds the memory of reports waiting to be acknowledged.
pub const MAX_QUEUED: usize = 20_000;
pub const MAX_QUEUED_BYTES: usize = 64 << 20;

/// This replica's view of who leads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Leader,
    Follower,
}

/// What the analysis may do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lead {
    /// The only replica (SQLite): decide, with nothing to fence.
    Alone,
    /// The leader: decide, each commit fenced by this token.
    Fenced(Fence),
    /// A follower: leave the deciding to the leader.
    No,
}

impl Lead {
    /// What a decision this replica may commit is fenced by: `None` when it may not decide at all
    /// (a follower), `Some(None)` alone on SQLite, `Some(Some(fence))` as the leader.
    pub fn decider(self) -> Option<Option<Fence>> {
        match self {
            Self::Alone => Some(None),
            Self::Fenced(f) => Some(Some(f)),
            Self::No => None,
        }
    }
}

#[derive(Debug, Default)]
struct Leadership {
    /// The epoch this replica holds and until when (its own clock) it may act on it.
    held: Option<(u64, Instant)>,
    /// The lease's holder and epoch as last read.
    leader: Option<(String, u64)>,
    /// The role last logged and counted (a leader whose time ran out while it was frozen finds
    /// out at its next renewal, and says so then).
    announced: Option<Role>,
}

struct Waiting {
    entry: LogEntry,
    done: oneshot::Sender<Result<bool, String>>,
}

/// Entries waiting for the next flush, and the bytes of their bodies.
#[derive(Default)]
struct Queue {
    waiting: std::collections::VecDeque<Waiting>,
    bytes: usize,
}

/// One replica's membership of the cluster.
pub struct Cluster {
    replica: String,
    /// Random per process: a restarted replica with the same id gets a new epoch.
    instance: String,
    shared: bool,
    leadership: Mutex<Leadership>,
    changes: AtomicU64,
    queue: Mutex<Queue>,
    queued: Notify,
    /// The last log entry merged here.
    tailed: AtomicI64,
    /// Held while the log is read and merged: two readers would merge the same entries twice.
    tailing: Mutex<()>,
}

impl Cluster {
    /// `shared`: the store is PostgreSQL and other replicas may share it.
    pub fn new(replica: String, shared: bool) -> Self {
        Self {
            replica,
            instance: format!("{:016x}", getrandom::u64().unwrap_or_else(|_| u64::from(std::process::id()))),
            shared,
            leadership: Mutex::new(Leadership::default()),
            changes: AtomicU64::new(0),
            queue: Mutex::new(Queue::default()),
            queued: Notify::new(),
            tailed: AtomicI64::new(0),
            tailing: Mutex::new(()),
        }
    }

    pub fn replica(&self) -> &str {
        &self.replica
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    pub fn is_shared(&self) -> bool {
        self.shared
    }

    fn leadership(&self) -> std::sync::MutexGuard<'_, Leadership> {
        self.leadership.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether and how the analysis may decide now.
    pub fn lead(&self) -> Lead {
        if !self.shared {
            return Lead::Alone;
        }
        match self.leadership().held {
            Some((epoch, until)) if Instant::now() < until => Lead::Fenced(Fence { replica: self.replica.clone(), epoch }),
            _ => Lead::No,
        }
    }

    pub fn role(&self) -> Role {
        match self.lead() {
            Lead::Alone | Lead::Fenced(_) => Role::Leader,
            Lead::No => Role::Follower,
        }
    }

    /// The leader's replica id and lease epoch, as last read (this replica, alone, on SQLite).
    pub fn leader(&self) -> Option<(String, u64)> {
        if !self.shared {
            return Some((self.replica.clone(), 0));
        }
        self.leadership().leader.clone()
    }

    /// Times this replica became or stopped being the leader.
    pub fn leadership_changes(&self) -> u64 {
        self.changes.load(Ordering::Relaxed)
    }

    /// Records a renewal that started at `started` and found `state`.
    pub fn renewed(&self, started: Instant, state: &crate::store::LeaseState) {
        {
            let mut l = self.leadership();
            l.held = state.mine.map(|epoch| (epoch, started + STEP_DOWN));
            l.leader = state.holder.clone();
        }
        self.note_role();
    }

    /// A renewal failed: the leadership runs out on its own clock.
    pub fn renewal_failed(&self) {
        self.note_role();
    }

    fn note_role(&self) {
        let now = self.role();
        let was = self.leadership().announced.replace(now.clone());
        if was.as_ref().is_some_and(|w| *w != now) || (was.is_none() && now == Role::Leader) {
            self.changes.fetch_add(1, Ordering::Relaxed);
            let epoch = self.leadership().held.map(|(e, _)| e);
            match now {
                Role::Leader => tracing::info!(replica = %self.replica, epoch, "this replica is now the leader"),
                Role::Follower => tracing::warn!(replica = %self.replica, "this replica is no longer the leader"),
            }
        }
    }

    /// Queues `entry` for the next flush; the answer says whether it was new to the log. Refused
    /// (with the reason) when the queue is full by count or by bytes.
    pub fn enqueue(
        &self,
        entry: LogEntry,
    ) -> Result<oneshot::Receiver<Result<bool, String>>, String> {
        let (done, answer) = oneshot::channel();
        let mut q = self
            .queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let len = entry.body.len();
        if q.waiting.len() >= MAX_QUEUED || q.bytes.saturating_add(len) > MAX_QUEUED_BYTES {
            return Err(format!(
                "{} reports ({} bytes) wait to be written to the database",
                q.waiting.len(),
                q.bytes
            ));
        }
        q.bytes += len;
        q.waiting.push_back(Waiting { entry, done });
        let full = q.waiting.len() >= FLUSH_BATCH || q.bytes >= FLUSH_BATCH_BYTES;
        drop(q);
        if full {
            self.queued.notify_one();
        }
        Ok(answer)
    }

    /// The next transaction's worth: up to [`FLUSH_BATCH`] entries and [`FLUSH_BATCH_BYTES`] (at least one).
    fn take_batch(&self) -> Vec<Waiting> {
        let mut q = self
            .queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (mut batch, mut bytes) = (Vec::new(), 0usize);
        while batch.len() < FLUSH_BATCH && (batch.is_empty() || bytes < FLUSH_BATCH_BYTES) {
            let Some(w) = q.waiting.pop_front() else {
                break;
            };
            bytes += w.entry.body.len();
            batch.push(w);
        }
        q.bytes = q.bytes.saturating_sub(bytes);
        batch
    }

    /// Entries waiting for a flush, and their bytes.
    pub fn queued(&self) -> (usize, usize) {
        let q = self
            .queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (q.waiting.len(), q.bytes)
    }

    /// The right to read and merge the log (one reader at a time).
    pub fn tailing(&self) -> std::sync::MutexGuard<'_, ()> {
        self.tailing.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn tailed(&self) -> i64 {
        self.tailed.load(Ordering::Relaxed)
    }

    pub fn set_tailed(&self, id: i64) {
        self.tailed.store(id, Ordering::Relaxed);
    }
}

/// The replica's background work on a shared store: the lease, following commits, flushing and
/// reading the data log. Nothing to do on SQLite.
pub fn spawn(state: crate::AppState) -> Vec<tokio::task::JoinHandle<()>> {
    if !state.cluster().is_shared() {
        return Vec::new();
    }
    vec![tokio::spawn(lease(state.clone())), tokio::spawn(follow(state.clone())), tokio::spawn(flush(state))]
}

/// Runs store work off the runtime. A failure is logged as `failed` and is `None`; so is a panic.
async fn blocking<T: Send + 'static, E: std::fmt::Display + Send + 'static>(
    state: &crate::AppState,
    failed: &'static str,
    work: impl FnOnce(&crate::AppState) -> Result<T, E> + Send + 'static,
) -> Option<T> {
    let s = state.clone();
    match tokio::task::spawn_blocking(move || work(&s)).await {
        Ok(Ok(v)) => Some(v),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "{failed}");
            None
        }
        Err(_) => {
            tracing::error!("{failed}: the task panicked");
            None
        }
    }
}

async fn lease(state: crate::AppState) {
    let mut tick = tokio::time::interval(RENEW);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shutdown = state.shutdown_signal();
    let mut last_prune = Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait_for(|down| *down) => break,
        }
        let started = Instant::now();
        let c = state.cluster();
        let (replica, instance) = (c.replica().to_string(), c.instance().to_string());
        let ttl = LEASE_TTL.as_millis() as u64;
        match blocking(&state, "cannot renew the leader's lease", move |s| {
            s.lease_tick(&replica, &instance, ttl)
        })
        .await
        {
            Some(found) => state.cluster().renewed(started, &found),
            None => state.cluster().renewal_failed(),
        }
        // The leader forgets old log entries (any replica could; one is enough).
        if state.cluster().role() == Role::Leader && last_prune.elapsed() >= Duration::from_secs(10) {
            last_prune = Instant::now();
            let before = crate::state::now_ms().saturating_sub(LOG_KEEP_MS);
            blocking(&state, "cannot prune the data log", move |s| {
                s.log_prune(before)
            })
            .await;
        }
    }
    // Going away: stop deciding, and hand the lease over at once rather than in LEASE_TTL.
    state.cluster().leadership().held = None;
    let (replica, instance) = (
        state.cluster().replica().to_string(),
        state.cluster().instance().to_string(),
    );
    let failed = "cannot release the leader's lease; it runs out on its own";
    if blocking(&state, failed, move |s| {
        s.lease_release(&replica, &instance)
    })
    .await
    .is_some()
    {
        tracing::info!("leader's lease released");
    }
}

/// Follows other replicas: their commits (re-read into the view) and their data (merged here).
async fn follow(state: crate::AppState) {
    let mut wakes = match state.listen() {
        Ok(rx) => Some(rx),
        Err(e) => {
            tracing::error!(error = %e, "cannot follow other replicas' commits; re-reading every second only");
            None
        }
    };
    let mut shutdown = state.shutdown_signal();
    let mut tail = tokio::time::interval(TAIL);
    tail.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_refresh = Instant::now();
    loop {
        let mut refresh = last_refresh.elapsed() >= BACKSTOP;
        let mut read_log = true;
        tokio::select! {
            _ = tail.tick() => {}
            wake = async { match wakes.as_mut() { Some(rx) => rx.recv().await, None => std::future::pending().await } } => match wake {
                Some(crate::store::Wake::Committed) => { refresh = true; read_log = false; }
                Some(crate::store::Wake::Data) => {}
                Some(crate::store::Wake::Reconnected) => refresh = true,
                None => wakes = None,
            },
            _ = shutdown.wait_for(|down| *down) => return,
        }
        if refresh {
            last_refresh = Instant::now();
            blocking(&state, "cannot re-read the committed rollouts", |s| {
                s.refresh()
            })
            .await;
        }
        if read_log {
            let t0 = Instant::now();
            if let Some(n) = blocking(&state, "cannot read the data log", crate::ingest::tail).await
            {
                tracing::debug!(n, took = ?t0.elapsed(), "tail");
            }
        }
    }
}

/// Flushes queued entries to the log about every [`FLUSH`], answering each waiting report.
async fn flush(state: crate::AppState) {
    let mut tick = tokio::time::interval(FLUSH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shutdown = state.shutdown_signal();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = state.cluster().queued.notified() => {}
            _ = shutdown.wait_for(|down| *down) => return,
        }
        loop {
            let batch = state.cluster().take_batch();
            if batch.is_empty() {
                break;
            }
            let (entries, waiting): (Vec<LogEntry>, Vec<_>) = batch.into_iter().map(|w| (w.entry, w.done)).unzip();
            let s = state.clone();
            let result: Result<Vec<bool>, StoreError> = match tokio::task::spawn_blocking(move || s.log_append(entries, crate::state::now_ms())).await {
                Ok(r) => r,
                Err(_) => Err(StoreError::PgGone),
            };
            match result {
                Ok(fresh) => {
                    // Merged here before the answers go out: a report acknowledged by this replica is
                    // already in its own windows (the others merge it at their next read of the log).
                    blocking(&state, "cannot read the data log", crate::ingest::tail).await;
                    for (done, new) in waiting.into_iter().zip(fresh) {
                        let _ = done.send(Ok(new));
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot flush reports to the data log; they will be resent");
                    let why = e.to_string();
                    for done in waiting {
                        let _ = done.send(Err(why.clone()));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn entry(seq: u64, bytes: usize) -> LogEntry {
        LogEntry {
            key: Some(("p".into(), "w".into(), seq)),
            kind: "report".into(),
            body: vec![b' '; bytes],
        }
    }

    /// Reports no longer wait holding an ingest slot, so the queue's bytes are what bounds their memory.
    #[test]
    fn the_flush_queue_is_bounded_in_bytes_and_batches_are_too() {
        let c = Cluster::new("r1".into(), true);
        let mib = 1 << 20;
        let mut answers = Vec::new();
        for seq in 0..(MAX_QUEUED_BYTES / mib) as u64 {
            answers.push(c.enqueue(entry(seq, mib)).unwrap());
        }
        assert_eq!(c.queued(), (64, MAX_QUEUED_BYTES));
        let refused = c.enqueue(entry(1_000, 1)).err().unwrap();
        assert!(refused.contains("64 reports (67108864 bytes)"), "{refused}");
        let batch = c.take_batch();
        assert_eq!(
            batch.len(),
            FLUSH_BATCH_BYTES / mib,
            "a transaction takes at most FLUSH_BATCH_BYTES"
        );
        assert_eq!(c.queued(), (48, 48 * mib));
        assert!(
            c.enqueue(entry(1_001, mib)).is_ok(),
            "room again once a batch is taken"
        );
        // One entry larger than a batch still goes, alone.
        let c = Cluster::new("r1".into(), true);
        let _big = c.enqueue(entry(0, FLUSH_BATCH_BYTES + 1)).unwrap();
        let _small = c.enqueue(entry(1, 1)).unwrap();
        assert_eq!(c.take_batch().len(), 1);
        assert_eq!(c.queued(), (1, 1));
    }
}
