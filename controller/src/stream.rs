//! Server-sent events: `GET /v1/rollouts/{name}/stream` (one rollout) and `GET /v1/stream` (all).
//!
//! Every committed change of a rollout and every point its series gains (once a second while its
//! window's counts move) is announced as a [`Notice`] on one bounded broadcast channel
//! ([`crate::state::NOTICES`] entries of an `Arc`'d payload). Each stream turns the notices it
//! follows into events carrying the rollout's status as `GET /v1/rollouts/{name}` serves it, built
//! when the event is sent. A client that reads slower than notices arrive falls behind the channel:
//! it skips what it missed and gets the current status instead, so nothing ever queues for it.
//!
//! Events (`data` is one JSON object):
//! - `rollout`: `{"rollout": <status>, "event": <event record>|null, "series": {"gates", "point"}|null,
//!   "skipped": N}` — `event` when a transition caused it (as `GET …/events` lists it, with `seq`),
//!   `series` when a sampled point did, `skipped` (> 0) when the stream fell behind and lost notices.
//! - `snapshot` (first on `/v1/stream`, and after falling behind): `{"generation", "rollouts": [<status>…]}`.
//! - `deleted`: `{"name": …}`.
//!
//! The first event carries a `retry:` hint; keep-alive comments follow every [`KEEP_ALIVE`] of
//! silence; every stream ends when the controller shuts down.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::HeaderValue;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, watch};

use crate::error::ApiError;
use crate::state::AppState;

/// Silence after which a keep-alive comment is sent.
pub const KEEP_ALIVE: Duration = Duration::from_secs(10);
/// How long a browser waits before reconnecting a dropped stream.
pub const RETRY: Duration = Duration::from_secs(2);

/// What happened to a rollout, for the streams. Small: the payloads are shared.
#[derive(Debug, Clone)]
pub struct Notice {
    pub rollout: Arc<str>,
    pub what: What,
}

#[derive(Debug, Clone)]
pub enum What {
    /// A commit, with the event record it wrote, if any.
    Committed(Option<Arc<Value>>),
    /// A point the series gained: `{"gates": [...], "point": {...}}`.
    Sampled(Arc<Value>),
    Deleted,
}

impl Notice {
    pub fn committed(rollout: &str, event: Option<Value>) -> Self {
        Self { rollout: rollout.into(), what: What::Committed(event.map(Arc::new)) }
    }

    pub fn sampled(rollout: &str, series: Value) -> Self {
        Self { rollout: rollout.into(), what: What::Sampled(Arc::new(series)) }
    }

    pub fn deleted(rollout: &str) -> Self {
        Self { rollout: rollout.into(), what: What::Deleted }
    }
}

/// `GET /v1/rollouts/{name}/stream`.
pub async fn one(State(state): State<AppState>, Path(name): Path<String>) -> Result<Response, ApiError> {
    // Subscribed before the first status is built, so no change falls between the two.
    let rx = state.updates();
    let first = rollout_event(&state, &name, None, None, 0).ok_or_else(|| crate::api::not_found(&name))?;
    Ok(respond(Tail::new(state, rx, Some(name), first)))
}

/// `GET /v1/stream`.
pub async fn all(State(state): State<AppState>) -> Result<Response, ApiError> {
    let rx = state.updates();
    let first = snapshot_event(&state)?;
    Ok(respond(Tail::new(state, rx, None, first)))
}

fn respond(tail: Tail) -> Response {
    let events = futures_util::stream::unfold(tail, |mut t| async move { t.next().await.map(|e| (Ok::<_, Infallible>(e), t)) });
    let mut resp = Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive")).into_response();
    // Proxies that buffer responses (nginx) must pass events through as they come.
    resp.headers_mut().insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp
}

/// One client's stream: the notices it follows, and the first event still to send.
struct Tail {
    state: AppState,
    rx: broadcast::Receiver<Notice>,
    shutdown: watch::Receiver<bool>,
    /// One rollout, or all of them.
    only: Option<String>,
    first: Option<Event>,
}

impl Tail {
    fn new(state: AppState, rx: broadcast::Receiver<Notice>, only: Option<String>, first: Event) -> Self {
        let shutdown = state.shutdown_signal();
        Self { state, rx, shutdown, only, first: Some(first.retry(RETRY)) }
    }

    /// The next event to send; `None` ends the stream (shutdown).
    async fn next(&mut self) -> Option<Event> {
        if let Some(first) = self.first.take() {
            return Some(first);
        }
        loop {
            let received = tokio::select! {
                r = self.rx.recv() => r,
                _ = self.shutdown.wait_for(|down| *down) => return None,
            };
            match received {
                Ok(n) if self.only.as_deref().is_none_or(|o| o == &*n.rollout) => {
                    if let Some(e) = self.event_for(&n) {
                        return Some(e);
                    }
                }
                Ok(_) => {}
                Err(RecvError::Lagged(skipped)) => {
                    // Too slow for the channel: what it missed is gone; send where things stand now.
                    let current = match &self.only {
                        Some(name) => rollout_event(&self.state, name, None, None, skipped),
                        None => snapshot_event(&self.state).ok(),
                    };
                    if let Some(e) = current {
                        return Some(e);
                    }
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }

    fn event_for(&self, n: &Notice) -> Option<Event> {
        match &n.what {
            What::Deleted => Some(Event::default().event("deleted").data(json!({ "name": &*n.rollout }).to_string())),
            What::Committed(event) => rollout_event(&self.state, &n.rollout, event.as_deref(), None, 0),
            What::Sampled(series) => rollout_event(&self.state, &n.rollout, None, Some(series), 0),
        }
    }
}

/// A `rollout` event with the rollout's current status; `None` if it no longer exists.
fn rollout_event(state: &AppState, name: &str, event: Option<&Value>, series: Option<&Value>, skipped: u64) -> Option<Event> {
    let view = state.view();
    let status = crate::api::rollout_body(state, &view, name).ok()?;
    let mut data = json!({ "rollout": status, "event": event, "series": series });
    if skipped > 0 {
        if let Some(fields) = data.as_object_mut() {
            fields.insert("skipped".into(), json!(skipped));
        }
    }
    Some(Event::default().event("rollout").data(data.to_string()))
}

/// A `snapshot` event: every rollout's current status.
fn snapshot_event(state: &AppState) -> Result<Event, ApiError> {
    let view = state.view();
    let rollouts = view.rollouts().map(|r| crate::api::rollout_body(state, &view, &r.name)).collect::<Result<Vec<Value>, ApiError>>()?;
    let data = json!({ "generation": view.generation(), "rollouts": rollouts });
    Ok(Event::default().event("snapshot").data(data.to_string()))
}
