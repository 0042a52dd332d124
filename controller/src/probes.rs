//! `GET /readyz`: whether this controller should receive traffic — its database answers and it is not
//! shutting down. Liveness (`/healthz`) stays separate: a slow disk must take the pod out of the
//! Service, not get it killed in a restart loop.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::state::AppState;

pub async fn readyz(State(state): State<AppState>) -> Response {
    match check(&state) {
        Ok(()) => Json(json!({ "status": "ready", "generation": state.current().generation })).into_response(),
        Err(message) => {
            tracing::warn!(%message, "not ready");
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "error": { "code": "unavailable", "message": message } })))
                .into_response()
        }
    }
}

fn check(state: &AppState) -> Result<(), String> {
    if *state.shutdown_signal().borrow() {
        return Err("shutting down".into());
    }
    let inner = state.lock().map_err(|e| e.to_string())?;
    inner.store.check().map_err(|e| format!("database not usable: {e}"))
}
