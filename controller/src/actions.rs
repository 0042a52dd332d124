//! `POST /v1/rollouts/{name}/pause | resume | promote | abort` and `GET /v1/rollouts/{name}/events`.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;
use fledge_core::Weight;
use serde_json::{json, Value};

use crate::api::{authorize, not_found};
use crate::error::ApiError;
use crate::model::{Phase, Rollout};
use crate::state::{now_ms, AppState, Persist};

#[derive(Debug, Clone, Copy, PartialEq)]
enum UserAction {
    Pause,
    Resume,
    Promote,
    Abort,
}

impl UserAction {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "pause" => Some(Self::Pause),
            "resume" => Some(Self::Resume),
            "promote" => Some(Self::Promote),
            "abort" => Some(Self::Abort),
            _ => None,
        }
    }

    /// The event it records, and whether it applies in `phase`.
    fn event(self, phase: Phase) -> Option<&'static str> {
        use Phase::*;
        match (self, phase) {
            (Self::Pause, Pending | Progressing) => Some("paused"),
            (Self::Resume, Paused) => Some("resumed"),
            (Self::Promote, Manual | Pending | Progressing | Paused) => Some("promoted"),
            (Self::Abort, Manual | Pending | Progressing | Paused) => Some("aborted"),
            _ => None,
        }
    }
}

/// The rollout after a user action (pure).
fn apply(action: UserAction, r: &mut Rollout, now: u64) {
    let s = &mut r.status;
    match action {
        UserAction::Pause => {
            s.phase = Phase::Paused;
            s.message = format!("paused by the user at {}%", s.weight.percent());
        }
        UserAction::Resume => {
            // A pending rollout paused before its first step starts from the beginning.
            s.phase = if s.step.is_some() { Phase::Progressing } else { Phase::Pending };
            s.step_started_at_ms = now;
            s.consecutive_failures = 0;
            s.message = "resumed by the user; analysis window restarted".into();
        }
        UserAction::Promote => {
            s.phase = Phase::Succeeded;
            s.weight = Weight::ZERO;
            s.message = format!("promoted by the user: {} is now stable", r.spec.canary);
            std::mem::swap(&mut r.spec.stable, &mut r.spec.canary);
        }
        UserAction::Abort => {
            s.phase = Phase::Aborted;
            s.weight = Weight::ZERO;
            s.message = "aborted by the user; all traffic on stable".into();
        }
    }
}

pub async fn act(
    State(state): State<AppState>,
    Path((name, action)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<Rollout>, ApiError> {
    authorize(&state, &headers)?;
    let action = UserAction::parse(&action).ok_or_else(|| {
        ApiError::NotFound(format!("unknown action {action:?}: use pause, resume, promote or abort"))
    })?;
    let now = now_ms();
    let rollout = state.commit(|inner, generation| {
        let r = inner.rollouts.get_mut(&name).ok_or_else(|| not_found(&name))?;
        let event = action.event(r.status.phase).ok_or_else(|| {
            ApiError::Conflict(format!("cannot {action:?} a rollout that is {}", r.status.phase.as_str()).to_lowercase())
        })?;
        apply(action, r, now);
        r.status.generation = generation;
        r.status.updated_at_ms = now;
        Ok((r.clone(), Persist::Put { name: name.clone(), event: Some(event) }))
    })?;
    if matches!(action, UserAction::Resume | UserAction::Promote) {
        state.live()?.reset_window(&name, now);
    }
    tracing::info!(rollout = %name, action = ?action, phase = rollout.status.phase.as_str(), "user action");
    Ok(Json(rollout))
}

pub async fn events(State(state): State<AppState>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    let inner = state.lock()?;
    if !inner.rollouts.contains_key(&name) {
        return Err(not_found(&name));
    }
    let events: Vec<Value> = inner
        .store
        .events(&name)?
        .into_iter()
        .map(|(seq, mut body)| {
            body["seq"] = json!(seq);
            body
        })
        .collect();
    Ok(Json(json!({ "rollout": name, "events": events })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_only_where_they_make_sense() {
        assert_eq!(UserAction::Pause.event(Phase::Progressing), Some("paused"));
        assert_eq!(UserAction::Pause.event(Phase::Manual), None);
        assert_eq!(UserAction::Resume.event(Phase::Progressing), None);
        assert_eq!(UserAction::Promote.event(Phase::RolledBack), None);
        assert_eq!(UserAction::Abort.event(Phase::Succeeded), None);
    }
}
