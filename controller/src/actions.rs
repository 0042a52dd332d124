//! `POST /v1/rollouts/{name}/pause | resume | promote | abort` and `GET /v1/rollouts/{name}/events`.
//! What an action does is the state machine's business ([`crate::machine`]); this is only HTTP.

use axum::extract::{Path, State};
use axum::Json;
use serde_json::{json, Value};

use crate::api::not_found;
use crate::error::ApiError;
use crate::machine::{Input, UserAction};
use crate::model::Rollout;
use crate::state::{now_ms, AppState};

pub async fn act(State(state): State<AppState>, Path((name, action)): Path<(String, String)>) -> Result<Json<Rollout>, ApiError> {
    let action = UserAction::parse(&action)
        .ok_or_else(|| ApiError::NotFound(format!("unknown action {action:?}: use pause, resume, promote or abort")))?;
    let now = now_ms();
    let input = Input::User { action };
    // Every user action records an event, so nothing committed means no such rollout.
    let rollout = state.apply(&name, now, input, |_| true)?.ok_or_else(|| not_found(&name))?;
    tracing::info!(rollout = %name, action = action.as_str(), phase = rollout.status.phase.as_str(), "user action");
    Ok(Json(Rollout::clone(&rollout)))
}

pub async fn events(State(state): State<AppState>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    if state.view().rollout(&name).is_none() {
        return Err(not_found(&name));
    }
    let events: Vec<Value> = state
        .events(&name)?
        .into_iter()
        .map(|(seq, mut body)| {
            if let Some(fields) = body.as_object_mut() {
                fields.insert("seq".into(), json!(seq));
            }
            body
        })
        .collect();
    Ok(Json(json!({ "rollout": name, "events": events })))
}
