//! `GET /v1/config?since=N&epoch=E`: the long poll through which every proxy learns of a new generation.
//!
//! Answers at once when the published config is not the one the proxy has — another generation, or the
//! same number from other data (another epoch: after a data reset or a restored backup, generation N
//! may well come round again with different weights). Otherwise holds the request until a change, the
//! hold time, or shutdown. A held request that times out gets 304, and so does one superseded by a
//! newer poll of the same proxy (`x-fledge-proxy`; see [`crate::pollers`]).

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::state::{AppState, Published};

/// The header naming the polling proxy (its report `proxy` id).
pub const PROXY_HEADER: &str = "x-fledge-proxy";
/// Set on the 304 of a poll answered early because a newer poll of its proxy arrived.
pub const SUPERSEDED_HEADER: &str = "x-fledge-superseded";

pub async fn config(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let (since, epoch) = parse_poll_query(q.as_deref())?;
    let proxy = poll_proxy(&headers)?;
    // Tracked for as long as this request lives, however it ends.
    let mut ticket = proxy
        .as_deref()
        .and_then(|p| state.pollers().hold(p, std::time::Instant::now()));
    let superseded = async {
        match ticket.as_mut() {
            Some(t) => t.superseded().await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(superseded);
    let mut rx = state.subscribe();
    let mut shutdown = state.shutdown_signal();
    let deadline = tokio::time::Instant::now() + state.settings().poll_hold;
    // Several replicas: a proxy that has seen a newer generation (from another replica) than this
    // replica has published is never answered with the older one; this replica first re-reads the
    // database, which is the truth either way.
    let ahead = |p: &Published| state.cluster().is_shared() && since.is_some_and(|n| n > p.generation) && epoch.as_deref().is_none_or(|e| e == p.epoch);
    if ahead(&state.current()) {
        let s = state.clone();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || s.refresh()).await {
            return Err(ApiError::Unavailable(format!("cannot read the current config from the database: {e}")));
        }
    }
    loop {
        let current = rx.borrow_and_update().clone();
        let same_data = epoch.as_deref().is_none_or(|e| e == current.epoch);
        if Some(current.generation) != since || !same_data {
            return Ok(snapshot(&current));
        }
        tokio::select! {
            changed = rx.changed() => if changed.is_err() { return Ok(not_modified(&current)) },
            _ = tokio::time::sleep_until(deadline) => return Ok(not_modified(&current)),
            _ = shutdown.wait_for(|down| *down) => return Ok(not_modified(&current)),
            () = &mut superseded => {
                tracing::debug!(proxy = proxy.as_deref().unwrap_or_default(), "config poll superseded by a newer one of the same proxy");
                let mut resp = not_modified(&current);
                resp.headers_mut().insert(SUPERSEDED_HEADER, HeaderValue::from_static("true"));
                return Ok(resp);
            }
        }
    }
}

/// The proxy a poll names, if any: its report id, so 1-253 printable characters.
fn poll_proxy(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get(PROXY_HEADER) else {
        return Ok(None);
    };
    match std::str::from_utf8(v.as_bytes()) {
        Ok(s) if fledge_core::report::valid_identifier(s) => Ok(Some(s.to_string())),
        _ => Err(ApiError::BadRequest(format!(
            "{PROXY_HEADER} must be 1-253 printable characters"
        ))),
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

/// `?since=N&epoch=E` of a config poll (an absent `since` means "answer now").
pub fn parse_poll_query(query: Option<&str>) -> Result<(Option<u64>, Option<String>), ApiError> {
    let (mut since, mut epoch) = (None, None);
    for pair in query.unwrap_or_default().split('&') {
        if let Some(v) = pair.strip_prefix("since=") {
            since = Some(v.parse().map_err(|_| ApiError::BadRequest(format!("since must be a non-negative integer, got {v:?}")))?);
        } else if let Some(v) = pair.strip_prefix("epoch=") {
            if !fledge_core::report::valid_identifier(v) {
                return Err(ApiError::BadRequest("epoch must be 1-253 printable characters".into()));
            }
            epoch = Some(v.to_string());
        }
    }
    Ok((since, epoch))
}
