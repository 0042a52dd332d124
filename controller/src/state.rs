//! Shared controller state: the rollouts, the store behind them, and the published config snapshot.
//!
//! Every change goes through [`AppState::commit`]: validate, write to SQLite, then publish a new
//! generation on a watch channel. Long-polling proxies wait on that channel; the snapshot is serialized
//! once per generation, not once per proxy.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use fledge_core::snapshot::ConfigSnapshot;
use tokio::sync::watch;

use crate::error::ApiError;
use crate::live::Live;
use crate::model::Rollout;
use crate::store::{Store, StoreError};

/// One generation of config as the proxies receive it.
#[derive(Debug)]
pub struct Published {
    pub generation: u64,
    pub body: Bytes,
}

pub struct Inner {
    pub store: Store,
    pub rollouts: BTreeMap<String, Rollout>,
    pub generation: u64,
}

#[derive(Clone)]
pub struct AppState {
    inner: Arc<Mutex<Inner>>,
    published: Arc<watch::Sender<Arc<Published>>>,
    shutdown: Arc<watch::Sender<bool>>,
    pub live: Arc<Mutex<Live>>,
    /// Wakes the analysis loop when reports bring new data.
    pub data_arrived: Arc<tokio::sync::Notify>,
    pub settings: Arc<Settings>,
}

#[derive(Debug, Clone)]
pub struct Settings {
    /// How long `GET /v1/config` holds a request when nothing changed.
    pub poll_hold: Duration,
    /// Bearer token required on mutating and data-plane endpoints, if set.
    pub token: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self { poll_hold: Duration::from_secs(30), token: None }
    }
}

impl AppState {
    pub fn new(store: Store, settings: Settings) -> Result<Self, StoreError> {
        let loaded = store.load()?;
        let rollouts = loaded.rollouts.into_iter().map(|r| (r.name.clone(), r)).collect();
        let inner = Inner { store, rollouts, generation: loaded.generation };
        let first = Arc::new(publish(&inner)?);
        let (tx, _) = watch::channel(first);
        let (shutdown, _) = watch::channel(false);
        Ok(Self {
            inner: Arc::new(Mutex::new(inner)),
            published: Arc::new(tx),
            shutdown: Arc::new(shutdown),
            live: Arc::new(Mutex::new(Live::default())),
            data_arrived: Arc::new(tokio::sync::Notify::new()),
            settings: Arc::new(settings),
        })
    }

    /// Releases held long polls so a graceful shutdown does not wait out their hold time.
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    pub fn lock(&self) -> Result<MutexGuard<'_, Inner>, ApiError> {
        self.inner.lock().map_err(|_| ApiError::Internal("state lock poisoned".into()))
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<Published>> {
        self.published.subscribe()
    }

    /// Config polls in progress: each connected proxy's fetcher holds one nearly all the time.
    pub fn held_polls(&self) -> usize {
        self.published.receiver_count()
    }

    pub fn current(&self) -> Arc<Published> {
        self.published.borrow().clone()
    }

    /// Applies `change` to the state under the lock; if it returns Ok, bumps the generation, persists
    /// through `persist`, and publishes. On any error nothing is changed.
    pub fn commit<T>(
        &self,
        change: impl FnOnce(&mut Inner, u64) -> Result<(T, Persist), ApiError>,
    ) -> Result<T, ApiError> {
        let mut inner = self.lock()?;
        let next = inner.generation + 1;
        let before = inner.rollouts.clone();
        let (out, persist) = change(&mut inner, next)?;
        let written = match &persist {
            Persist::Put { name, event } => match inner.rollouts.get(name) {
                Some(r) => {
                    let r = r.clone();
                    let event = event.as_ref().map(|kind| crate::events::body(kind, &r));
                    inner.store.put(&r, next, event.as_ref())
                }
                None => Ok(()),
            },
            Persist::Delete(name) => inner.store.delete(name, next),
        };
        if let Err(e) = written {
            inner.rollouts = before;
            return Err(e.into());
        }
        inner.generation = next;
        let snapshot = publish(&inner)?;
        self.published.send_replace(Arc::new(snapshot));
        Ok(out)
    }
}

/// Which record a committed change writes, and the event it records in the same transaction.
pub enum Persist {
    Put { name: String, event: Option<&'static str> },
    Delete(String),
}

impl AppState {
    /// Live windows are counters only, consistent after any partial update, and restart freely: a panic
    /// while one was held (a bug) must not turn every later request into a 500, so poisoning is cleared.
    pub fn live(&self) -> Result<MutexGuard<'_, Live>, ApiError> {
        Ok(self.live.lock().unwrap_or_else(|poisoned| {
            self.live.clear_poison();
            poisoned.into_inner()
        }))
    }
}

fn publish(inner: &Inner) -> Result<Published, StoreError> {
    let snapshot = ConfigSnapshot {
        generation: inner.generation,
        rollouts: inner.rollouts.values().map(Rollout::route).collect(),
    };
    Ok(Published { generation: inner.generation, body: Bytes::from(serde_json::to_vec(&snapshot)?) })
}

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
