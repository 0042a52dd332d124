//! `GET /v1/config?since=N`: the long poll through which every proxy learns of a new generation.
//!
//! Answers at once when the published generation differs from `since` (newer, or older after the data
//! directory was reset: a proxy must never wait on a generation that will not come), otherwise holds the
//! request until a change, the hold time, or shutdown. A held request that times out gets 304.

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::api::{authorize, parse_since};
use crate::error::ApiError;
use crate::state::{AppState, Published};

pub async fn config(State(state): State<AppState>, headers: HeaderMap, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let since = parse_since(q.as_deref())?;
    let mut rx = state.subscribe();
    let mut shutdown = state.shutdown_signal();
    let deadline = tokio::time::Instant::now() + state.settings.poll_hold;
    loop {
        let current = rx.borrow_and_update().clone();
        if Some(current.generation) != since {
            return Ok(snapshot(&current));
        }
        tokio::select! {
            changed = rx.changed() => if changed.is_err() { return Ok(not_modified(&current)) },
            _ = tokio::time::sleep_until(deadline) => return Ok(not_modified(&current)),
            _ = shutdown.wait_for(|down| *down) => return Ok(not_modified(&current)),
        }
    }
}

fn snapshot(p: &Published) -> Response {
    let mut resp = (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], p.body.clone()).into_response();
    resp.headers_mut().insert("x-fledge-generation", HeaderValue::from(p.generation));
    resp
}

fn not_modified(p: &Published) -> Response {
    let mut resp = StatusCode::NOT_MODIFIED.into_response();
    resp.headers_mut().insert("x-fledge-generation", HeaderValue::from(p.generation));
    resp
}
