//! `GET /v1/rollouts/{name}/shadow`: the shadow counters of the current window, both sides' metrics
//! on the shadowed requests, and the last mismatching pairs (redacted headers were never stored).

use axum::extract::{Path, State};
use axum::Json;
use fledge_core::shadow::ShadowStats;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::state::AppState;

pub async fn get(State(state): State<AppState>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    let view = state.view();
    let rollout = view.rollout(&name).ok_or_else(|| ApiError::NotFound(format!("no rollout named {name:?}")))?;
    let (stats, samples) = {
        let live = state.live();
        let stats = live.window(&name).filter(|w| w.seq() == rollout.status.window).map(|w| w.shadow().clone()).unwrap_or_default();
        (stats, live.shadow_samples(&name))
    };
    Ok(Json(json!({
        "rollout": name,
        "spec": rollout.spec.shadow,
        "active": rollout.shadow_active(),
        "window": summary(&rollout.spec.stable, &rollout.spec.canary, &stats),
        "samples": samples,
    })))
}

/// The counters and both sides' metrics, for the endpoint and the rollout's `live.shadow`.
pub fn summary(stable: &str, canary: &str, s: &ShadowStats) -> Value {
    let ratio = |num: u64, den: u64| (den > 0).then(|| num as f64 / den as f64);
    json!({
        "sent": s.sent, "answered": s.answered, "failed": s.failed, "timeouts": s.timeouts,
        "dropped": s.dropped, "too_large": s.too_large, "pairs": s.pairs,
        "mismatches": s.mismatch,
        "mismatch_rate": ratio(s.mismatch.any, s.pairs),
        "body_size_ratio": (s.body_ratio_count > 0).then(|| s.body_ratio_sum / s.body_ratio_count as f64),
        "shadow": crate::metrics::summary(canary, &s.canary_view()),
        "stable": crate::metrics::summary(stable, &s.stable_view()),
    })
}
