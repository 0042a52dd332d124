//! Shared controller state: the rollouts, the store behind them, the published config snapshot and the
//! live windows.
//!
//! Every change of a rollout goes through [`AppState::commit`]: it runs the state machine's decision
//! against the current [`View`], writes the result (rollout, event, generation) in one store
//! transaction (SQLite or PostgreSQL), then swaps in a new immutable view and, if routing changed, publishes a new config
//! generation on a watch channel. Readers clone the current `Arc<View>` and never wait on a writer or
//! on the disk; writers queue on the store's mutex, held only for the decision and the transaction.
//! The same transaction writes the webhook deliveries the event owes to the outbox
//! ([`crate::notify`]), so a notification is never lost to a crash after its event, nor sent for an
//! event that was not committed. A panic anywhere leaves the last committed view in place, so no lock is ever left poisoned in a
//! state that matters (the store's connection needs no repair, and the live windows are counters).
//!
//! Every commit is also announced on a bounded broadcast channel of small [`Notice`]s, which the
//! server-sent event streams follow (a client that falls behind skips notices; nothing queues for it).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use fledge_core::snapshot::ConfigSnapshot;
use tokio::sync::{broadcast, watch, Notify};

use crate::cluster::Cluster;
use crate::error::ApiError;
use crate::events;
use crate::live::Live;
use crate::machine::{Input, Transition, WindowEffect};
use crate::model::Rollout;
use crate::notify::WebhookSettings;
use crate::scrape::Counters;
use crate::segments::SegmentCounts;
use crate::series::SeriesBook;
use crate::store::{Expect, Fence, LeaseState, LogEntry, Pending, Store, StoreError, Wake};
use crate::stream::Notice;

/// One generation of config as the proxies receive it.
#[derive(Debug)]
pub struct Published {
    pub epoch: String,
    pub generation: u64,
    pub body: Bytes,
}

/// An immutable snapshot of every rollout, as of one commit.
#[derive(Debug, Default)]
pub struct View {
    epoch: String,
    generation: u64,
    rollouts: BTreeMap<String, Arc<Rollout>>,
}

impl View {
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn rollout(&self, name: &str) -> Option<&Arc<Rollout>> {
        self.rollouts.get(name)
    }

    pub fn rollouts(&self) -> impl Iterator<Item = &Arc<Rollout>> {
        self.rollouts.values()
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    /// How long `GET /v1/config` holds a request when nothing changed.
    pub poll_hold: Duration,
    /// Bearer token required on mutating and data-plane endpoints, if set.
    pub token: Option<String>,
    /// How notifications are signed, retried and timed out.
    pub webhooks: WebhookSettings,
    /// This replica's id (`--replica-id`; a random one when empty).
    pub replica: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self { poll_hold: Duration::from_secs(30), token: None, webhooks: WebhookSettings::default(), replica: String::new() }
    }
}

/// A replica id for a replica given none: the host's name (a pod's name in Kubernetes) and a random
/// suffix, so two processes on one host differ.
pub fn default_replica_id() -> String {
    let host = std::env::var("HOSTNAME").ok().filter(|h| fledge_core::report::valid_identifier(h) && h.len() <= 200).unwrap_or_else(|| "fledge".into());
    format!("{host}-{:04x}", getrandom::u32().unwrap_or_else(|_| std::process::id()) & 0xffff)
}

struct Shared {
    store: Mutex<Store>,
    view: RwLock<Arc<View>>,
    published: watch::Sender<Arc<Published>>,
    shutdown: watch::Sender<bool>,
    live: Mutex<Live>,
    probes: Mutex<crate::readiness::Probes>,
    approvals: Mutex<crate::approval::Approvals>,
    segments: Mutex<SegmentCounts>,
    series: Mutex<SeriesBook>,
    updates: broadcast::Sender<Notice>,
    data_arrived: Notify,
    /// A commit queued notifications: the delivery task looks at the outbox.
    outbox_written: Notify,
    counters: Counters,
    pollers: crate::pollers::Pollers,
    ingest_slots: Arc<tokio::sync::Semaphore>,
    settings: Settings,
    cluster: Arc<Cluster>,
}

/// Notices kept for the event streams; a stream further behind than this skips to the current state.
pub const NOTICES: usize = 256;

#[derive(Clone)]
pub struct AppState {
    shared: Arc<Shared>,
}

/// What a commit's decision wants done with the rollout it looked at.
pub enum Change {
    /// Create the rollout (it did not exist), recording `input` as its first event.
    Create(Box<Rollout>, Input),
    /// Apply the state machine's transition, caused by `input`.
    Apply(Box<Transition>, Input),
    Delete,
}

impl AppState {
    pub fn new(store: Store, settings: Settings) -> Result<Self, StoreError> {
        let loaded = store.load()?;
        let view = View {
            epoch: loaded.epoch,
            generation: loaded.generation,
            rollouts: loaded.rollouts.into_iter().map(|r| (r.name.clone(), Arc::new(r))).collect(),
        };
        let (published, _) = watch::channel(Arc::new(publish(&view)?));
        let (shutdown, _) = watch::channel(false);
        let (updates, _) = broadcast::channel(NOTICES);
        let replica = if settings.replica.is_empty() { default_replica_id() } else { settings.replica.clone() };
        let cluster = Arc::new(Cluster::new(replica, store.is_shared()));
        if store.is_shared() {
            // A replica starting now merges what arrives from now on, as a restarted single one does.
            cluster.set_tailed(store.log_head()?);
        }
        Ok(Self {
            shared: Arc::new(Shared {
                store: Mutex::new(store),
                view: RwLock::new(Arc::new(view)),
                published,
                shutdown,
                live: Mutex::new(Live::default()),
                probes: Mutex::new(crate::readiness::Probes::default()),
                approvals: Mutex::new(crate::approval::Approvals::default()),
                segments: Mutex::new(SegmentCounts::default()),
                series: Mutex::new(SeriesBook::default()),
                updates,
                data_arrived: Notify::new(),
                outbox_written: Notify::new(),
                counters: Counters::default(),
                pollers: Default::default(),
                ingest_slots: Arc::new(tokio::sync::Semaphore::new(crate::api::INGEST_CONCURRENCY)),
                settings,
                cluster,
            }),
        })
    }

    pub fn settings(&self) -> &Settings {
        &self.shared.settings
    }

    /// This replica's place among the replicas sharing the store.
    pub fn cluster(&self) -> &Cluster {
        &self.shared.cluster
    }

    pub fn lease_tick(&self, replica: &str, instance: &str, ttl_ms: u64) -> Result<LeaseState, StoreError> {
        self.store().lease_tick(replica, instance, ttl_ms)
    }

    pub fn lease_release(&self, replica: &str, instance: &str) -> Result<(), StoreError> {
        self.store().lease_release(replica, instance)
    }

    pub fn log_append(&self, entries: Vec<LogEntry>, at_ms: u64) -> Result<Vec<bool>, StoreError> {
        self.store().log_append(entries, at_ms)
    }

    pub fn log_after(&self, after_id: i64, limit: usize) -> Result<Vec<(i64, String, Vec<u8>)>, StoreError> {
        self.store().log_after(after_id, limit)
    }

    pub fn log_prune(&self, before_ms: u64) -> Result<u64, StoreError> {
        self.store().log_prune(before_ms)
    }

    pub fn listen(&self) -> Result<tokio::sync::mpsc::Receiver<Wake>, StoreError> {
        self.store().listen()
    }

    /// Re-reads the committed rollouts (another replica may have committed) and makes them this
    /// replica's view: windows restarted where the rollout's window moved, config published if the
    /// generation did, a notice for each rollout that changed. Returns whether anything changed.
    pub fn refresh(&self) -> Result<bool, StoreError> {
        let store = self.store();
        let loaded = store.load()?;
        let view = self.view();
        let now = now_ms();
        let rollouts: BTreeMap<String, Arc<Rollout>> = loaded.rollouts.into_iter().map(|r| (r.name.clone(), Arc::new(r))).collect();
        let changed: Vec<&Arc<Rollout>> = rollouts
            .values()
            .filter(|r| view.rollout(&r.name).is_none_or(|old| old.status.revision != r.status.revision || old.status.updated_at_ms != r.status.updated_at_ms))
            .collect();
        let removed: Vec<String> = view.rollouts().filter(|r| !rollouts.contains_key(&r.name)).map(|r| r.name.clone()).collect();
        if changed.is_empty() && removed.is_empty() && loaded.generation == view.generation && loaded.epoch == view.epoch {
            return Ok(false);
        }
        {
            let mut live = self.live();
            for r in &changed {
                live.window_for(&r.name, r.status.window, now);
            }
            for name in &removed {
                live.remove_window(name);
            }
        }
        for name in &removed {
            self.counters().forget(name);
        }
        let names: Vec<String> = changed.iter().map(|r| r.name.clone()).collect();
        let next = View { epoch: loaded.epoch, generation: loaded.generation, rollouts };
        let republish = next.generation != view.generation || next.epoch != view.epoch;
        let published = if republish { Some(publish(&next)?) } else { None };
        *self.shared.view.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(next);
        if let Some(p) = published {
            self.shared.published.send_replace(Arc::new(p));
        }
        drop(store);
        for name in names {
            self.notify(Notice::committed(&name, None));
        }
        for name in removed {
            self.notify(Notice::deleted(&name));
        }
        Ok(true)
    }

    /// The current rollouts, as of the last commit.
    pub fn view(&self) -> Arc<View> {
        self.shared.view.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The live windows and worker table. Counters only, consistent after any partial update, so a
    /// panic while it was held (a bug) must not turn every later request into a 500: poisoning is
    /// cleared.
    pub fn live(&self) -> MutexGuard<'_, Live> {
        self.shared.live.lock().unwrap_or_else(|poisoned| {
            self.shared.live.clear_poison();
            poisoned.into_inner()
        })
    }

    /// The canaries' readiness probes (bookkeeping only; cleared of poisoning like `live`).
    pub fn probes(&self) -> MutexGuard<'_, crate::readiness::Probes> {
        self.shared.probes.lock().unwrap_or_else(|poisoned| {
            self.shared.probes.clear_poison();
            poisoned.into_inner()
        })
    }

    /// External approvals of steps (bookkeeping only; poisoning cleared like `probes`).
    pub fn approvals(&self) -> MutexGuard<'_, crate::approval::Approvals> {
        self.shared.approvals.lock().unwrap_or_else(|poisoned| {
            self.shared.approvals.clear_poison();
            poisoned.into_inner()
        })
    }

    /// Per-segment request counts (counters only: poisoning is cleared, as for [`live`](Self::live)).
    pub fn segment_counts(&self) -> MutexGuard<'_, SegmentCounts> {
        self.shared.segments.lock().unwrap_or_else(|poisoned| {
            self.shared.segments.clear_poison();
            poisoned.into_inner()
        })
    }

    /// The rollouts' time series (in memory, bounded; poisoning is cleared, as for [`live`](Self::live)).
    pub fn series(&self) -> MutexGuard<'_, SeriesBook> {
        self.shared.series.lock().unwrap_or_else(|poisoned| {
            self.shared.series.clear_poison();
            poisoned.into_inner()
        })
    }

    /// Follows the notices of committed changes and sampled points, from now on.
    pub fn updates(&self) -> broadcast::Receiver<Notice> {
        self.shared.updates.subscribe()
    }

    /// Announces a change to the event streams (nobody listening is fine).
    pub fn notify(&self, notice: Notice) {
        let _ = self.shared.updates.send(notice);
    }

    /// Wakes the analysis loop: data arrived that may fail a critical gate.
    pub fn data_arrived(&self) {
        self.shared.data_arrived.notify_one();
    }

    pub async fn wait_for_data(&self) {
        self.shared.data_arrived.notified().await;
    }

    /// The slots of [`crate::api::IngestBody`].
    pub fn ingest_slots(&self) -> Arc<tokio::sync::Semaphore> {
        self.shared.ingest_slots.clone()
    }

    /// The held config poll of each proxy that names itself.
    pub fn pollers(&self) -> &crate::pollers::Pollers {
        &self.shared.pollers
    }

    /// What `GET /metrics` counts besides the view and the live state.
    pub fn counters(&self) -> &Counters {
        &self.shared.counters
    }

    /// Waits until a commit queues notifications (a commit made before the call wakes it too).
    pub async fn outbox_written(&self) {
        self.shared.outbox_written.notified().await;
    }

    /// The next notification of every receiver (see [`Store::outbox_heads`]).
    pub fn outbox_heads(&self) -> Result<Vec<Pending>, StoreError> {
        self.store().outbox_heads()
    }

    pub fn outbox_remove(&self, id: i64) -> Result<(), StoreError> {
        self.store().outbox_remove(id)
    }

    pub fn outbox_retry(&self, id: i64, attempts: u32, next_attempt_ms: u64, error: &str) -> Result<(), StoreError> {
        self.store().outbox_retry(id, attempts, next_attempt_ms, error)
    }

    pub fn outbox_len(&self) -> Result<u64, StoreError> {
        self.store().outbox_len()
    }

    /// The database answers.
    pub fn check_store(&self) -> Result<(), StoreError> {
        self.store().check()
    }

    fn store(&self) -> MutexGuard<'_, Store> {
        // The connection is valid whatever a panicking holder was doing: SQLite rolls back an
        // unfinished transaction, and so does PostgreSQL's connection thread when its caller is gone.
        self.shared.store.lock().unwrap_or_else(|poisoned| {
            self.shared.store.clear_poison();
            poisoned.into_inner()
        })
    }

    pub fn events(&self, name: &str) -> Result<Vec<(i64, serde_json::Value)>, ApiError> {
        Ok(self.store().events(name)?)
    }

    /// Where an export of rollout `name` starts and ends: the rollout as committed, the newest event
    /// and the oldest interval kept, read together (under the store's lock, which every commit holds
    /// until its view is swapped in), so the export is one consistent snapshot.
    pub fn export_start(&self, name: &str) -> Result<(Arc<Rollout>, i64, Option<u64>), ApiError> {
        let store = self.store();
        let rollout = self.view().rollout(name).cloned().ok_or_else(|| crate::api::not_found(name))?;
        Ok((rollout, store.last_event_seq()?, store.first_interval(name)?))
    }

    pub fn events_page(&self, name: &str, after_seq: i64, upto_seq: i64, limit: usize) -> Result<Vec<(i64, serde_json::Value)>, StoreError> {
        self.store().events_page(name, after_seq, upto_seq, limit)
    }

    pub fn intervals_page(&self, name: &str, after_n: u64, upto_n: u64, limit: usize) -> Result<Vec<(u64, serde_json::Value)>, StoreError> {
        self.store().intervals_page(name, after_n, upto_n, limit)
    }

    /// Releases held long polls so a graceful shutdown does not wait out their hold time.
    pub fn begin_shutdown(&self) {
        self.shared.shutdown.send_replace(true);
    }

    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shared.shutdown.subscribe()
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<Published>> {
        self.shared.published.subscribe()
    }

    /// Config polls in progress: each connected proxy's fetcher holds one nearly all the time.
    pub fn held_polls(&self) -> usize {
        self.shared.published.receiver_count()
    }

    pub fn current(&self) -> Arc<Published> {
        self.shared.published.borrow().clone()
    }

    /// The one place rollouts change. `decide` looks at the rollout `name` as committed (None if it
    /// does not exist) and returns the change, or `None` for nothing to do. The change is persisted
    /// with its event in one transaction, then made visible; on any error nothing changes.
    /// Returns the rollout as committed (None after a delete or when nothing was done).
    pub fn commit(
        &self,
        name: &str,
        now_ms: u64,
        decide: impl FnMut(Option<&Rollout>) -> Result<Option<Change>, ApiError>,
    ) -> Result<Option<Arc<Rollout>>, ApiError> {
        self.commit_as(name, now_ms, None, decide)
    }

    /// As [`commit`](Self::commit), by the leader's analysis when `fence` is given: refused unless
    /// this replica still holds the lease with that epoch. On a store several replicas share, a
    /// decision made on a view another replica has since changed is not written: the view is re-read
    /// and `decide` asked again (a few times; then 409).
    pub fn commit_as(
        &self,
        name: &str,
        now_ms: u64,
        fence: Option<Fence>,
        mut decide: impl FnMut(Option<&Rollout>) -> Result<Option<Change>, ApiError>,
    ) -> Result<Option<Arc<Rollout>>, ApiError> {
        for _ in 0..4 {
            match self.commit_once(name, now_ms, fence.as_ref(), &mut decide) {
                Ok(committed) => return Ok(committed),
                Err(Failed::Stale) => {
                    self.refresh()?;
                }
                Err(Failed::Fenced(replica, epoch)) => {
                    return Err(ApiError::Conflict(format!("replica {replica} no longer leads (lease epoch {epoch}); its decision was not committed")))
                }
                Err(Failed::Api(e)) => return Err(e),
            }
        }
        Err(ApiError::Conflict(format!("rollout {name:?} kept changing on other replicas; try again")))
    }

    fn commit_once(
        &self,
        name: &str,
        now_ms: u64,
        fence: Option<&Fence>,
        decide: &mut impl FnMut(Option<&Rollout>) -> Result<Option<Change>, ApiError>,
    ) -> Result<Option<Arc<Rollout>>, Failed> {
        let mut store = self.store();
        let view = self.view();
        let before = view.rollout(name).map(Arc::as_ref);
        let Some(change) = decide(before)? else { return Ok(None) };
        let expect = Expect {
            seen: store.is_shared().then(|| (view.generation, before.map(|b| b.status.revision))),
            fence: fence.cloned(),
        };
        let mut rollouts = view.rollouts.clone();
        let mut generation = view.generation;
        let mut event = None;
        let committed = match change {
            Change::Delete => {
                if before.is_none() {
                    return Err(Failed::Api(crate::api::not_found(name)));
                }
                generation += 1;
                store.delete_checked(name, generation, &expect)?;
                rollouts.remove(name);
                self.live().remove_window(name);
                self.counters().forget(name);
                None
            }
            Change::Create(rollout, input) => {
                let t = Transition { rollout: *rollout, event: Some("created"), routing_changed: true, window: WindowEffect::Reset, interval: None };
                let (r, e) = self.write(&mut store, &view.epoch, None, t, &input, &mut generation, now_ms, &expect)?;
                event = e;
                Some(r)
            }
            Change::Apply(t, input) => {
                if before.is_some_and(|b| t.is_noop(b)) {
                    return Ok(None);
                }
                let (r, e) = self.write(&mut store, &view.epoch, before, *t, &input, &mut generation, now_ms, &expect)?;
                event = e;
                Some(r)
            }
        };
        if let Some(r) = &committed {
            rollouts.insert(name.to_string(), r.clone());
        }
        let next = View { epoch: view.epoch.clone(), generation, rollouts };
        if generation != view.generation {
            let published = publish(&next)?;
            *self.shared.view.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(next);
            self.shared.published.send_replace(Arc::new(published));
        } else {
            *self.shared.view.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(next);
        }
        // After the swap, so a stream that builds the status on this notice sees the commit.
        self.notify(match committed {
            Some(_) => Notice::committed(name, event),
            None => Notice::deleted(name),
        });
        Ok(committed)
    }

    /// Runs `input` through the state machine on rollout `name` and commits the transition. `None`
    /// when the rollout does not exist, when `applies` says the input no longer fits the rollout as
    /// committed (it changed since the caller looked), or when the transition changes nothing.
    pub fn apply(
        &self,
        name: &str,
        now_ms: u64,
        input: Input,
        applies: impl Fn(&Rollout) -> bool,
    ) -> Result<Option<Arc<Rollout>>, ApiError> {
        self.apply_as(name, now_ms, None, input, applies)
    }

    /// As [`apply`](Self::apply), fenced as [`commit_as`](Self::commit_as) is.
    pub fn apply_as(
        &self,
        name: &str,
        now_ms: u64,
        fence: Option<Fence>,
        input: Input,
        applies: impl Fn(&Rollout) -> bool,
    ) -> Result<Option<Arc<Rollout>>, ApiError> {
        self.commit_as(name, now_ms, fence, |current| {
            let Some(r) = current.filter(|r| applies(r)) else { return Ok(None) };
            let t = crate::machine::step(r, input.clone(), now_ms)?;
            Ok(Some(Change::Apply(Box::new(t), input.clone())))
        })
    }

    /// Numbers the transition (revision, window, generation), writes it with its event and the
    /// notifications the event owes, and resets its window. Returns the rollout as written and its
    /// event record (with its `seq`), if it has one.
    #[allow(clippy::too_many_arguments)]
    fn write(
        &self,
        store: &mut Store,
        epoch: &str,
        before: Option<&Rollout>,
        t: Transition,
        input: &Input,
        generation: &mut u64,
        now_ms: u64,
        expect: &Expect,
    ) -> Result<(Arc<Rollout>, Option<serde_json::Value>), Failed> {
        let mut r = t.rollout;
        if let Some(f) = &expect.fence {
            r.status.decided_by = Some(crate::model::DecidedBy { replica: f.replica.clone(), epoch: f.epoch });
        }
        let prior = before.map(|b| &b.status);
        r.status.revision = prior.map_or(0, |s| s.revision) + 1;
        r.status.window = prior.map_or(0, |s| s.window) + u64::from(t.window == WindowEffect::Reset);
        r.status.updated_at_ms = now_ms;
        if t.routing_changed {
            *generation += 1;
            r.status.generation = *generation;
        }
        let mut event = t.event.map(|kind| events::body(kind, &r, input));
        if self.cluster().is_shared() {
            // Which replica committed it, and for the analysis' decisions under which lease epoch.
            if let Some(fields) = event.as_mut().and_then(|e| e.as_object_mut()) {
                fields.insert("replica".into(), self.cluster().replica().into());
                if let Some(f) = &expect.fence {
                    fields.insert("lease_epoch".into(), f.epoch.into());
                }
            }
        }
        let deliveries = |seq: i64| match (t.event, &event) {
            (Some(kind), Some(body)) => crate::notify::deliveries(epoch, &r, kind, body, seq),
            _ => Vec::new(),
        };
        let queued = store.put_checked(&r, *generation, event.as_ref(), t.interval.as_ref(), &deliveries, expect)?;
        if let Some(kind) = t.event {
            self.counters().event(&r.name, kind);
        }
        if queued.dropped > 0 {
            self.counters().dropped(queued.dropped);
            tracing::warn!(dropped = queued.dropped, limit = crate::store::MAX_OUTBOX, "notification outbox full: the oldest undelivered notifications were dropped");
        }
        if queued.deliveries > 0 {
            self.shared.outbox_written.notify_one();
        }
        if let (Some(fields), Some(seq)) = (event.as_mut().and_then(|e| e.as_object_mut()), queued.seq) {
            fields.insert("seq".into(), seq.into());
        }
        if t.window == WindowEffect::Reset {
            self.live().window_for(&r.name, r.status.window, now_ms);
        }
        if let Some(kind) = t.event {
            tracing::info!(rollout = %r.name, event = kind, phase = r.status.phase.as_str(), weight = r.status.weight.percent(), generation = r.status.generation, message = %r.status.message, "rollout transition");
        }
        Ok((Arc::new(r), event))
    }
}

/// Why one attempt of a commit wrote nothing.
enum Failed {
    /// Another replica committed since this view: look again.
    Stale,
    /// This replica's lease (replica, epoch) is gone.
    Fenced(String, u64),
    Api(ApiError),
}

impl From<ApiError> for Failed {
    fn from(e: ApiError) -> Self {
        Self::Api(e)
    }
}

impl From<StoreError> for Failed {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Stale => Self::Stale,
            StoreError::Fenced { replica, epoch } => Self::Fenced(replica, epoch),
            other => Self::Api(other.into()),
        }
    }
}

fn publish(view: &View) -> Result<Published, StoreError> {
    let snapshot = ConfigSnapshot {
        epoch: view.epoch.clone(),
        generation: view.generation,
        rollouts: view.rollouts.values().map(|r| r.route()).collect(),
    };
    Ok(Published { epoch: view.epoch.clone(), generation: view.generation, body: Bytes::from(serde_json::to_vec(&snapshot)?) })
}

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
