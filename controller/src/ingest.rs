//! Data in: `POST /v1/reports` from the filters, `POST /v1/rollouts/{name}/outcomes` from whoever
//! learns a task's outcome later (user feedback, offline grading).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use fledge_core::analysis::VersionStats;
use fledge_core::report::Report;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::{authorize, not_found};
use crate::error::{parse_json, ApiError};
use crate::live::Ingested;
use crate::state::{now_ms, AppState};

pub async fn reports(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<(StatusCode, Json<Ingested>), ApiError> {
    authorize(&state, &headers)?;
    let report: Report = parse_json(&body)?;
    let versions: std::collections::HashMap<String, (String, String)> = {
        let inner = state.lock()?;
        report
            .versions
            .iter()
            .filter_map(|v| inner.rollouts.get(&v.rollout).map(|r| (v.rollout.clone(), (r.spec.stable.clone(), r.spec.canary.clone()))))
            .collect()
    };
    let ingested = state.live()?.ingest(report, now_ms(), |name| versions.get(name).cloned());
    if ingested.merged > 0 {
        state.data_arrived.notify_one();
    }
    Ok((StatusCode::ACCEPTED, Json(ingested)))
}

/// One late outcome. At least one of `outcome`, `cost`, `policy_violations` is given.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Outcome {
    version: String,
    outcome: Option<String>,
    cost: Option<f64>,
    policy_violations: Option<u32>,
}

fn to_stats(o: &Outcome, i: usize) -> Result<VersionStats, ApiError> {
    let bad = |m: String| ApiError::Invalid(format!("outcome [{i}]: {m}"));
    let mut s = VersionStats::default();
    match o.outcome.as_deref() {
        Some("success") => s.outcome_success = 1,
        Some("failure") => s.outcome_failure = 1,
        Some(other) => return Err(bad(format!("outcome must be \"success\" or \"failure\", got {other:?}"))),
        None => {}
    }
    if let Some(c) = o.cost {
        if !(c.is_finite() && c >= 0.0) {
            return Err(bad(format!("cost must be a non-negative number, got {c}")));
        }
        s.cost_count = 1;
        s.cost_sum = c;
        s.cost_sum_sq = c * c;
    }
    if let Some(n) = o.policy_violations {
        s.policy_violations = u64::from(n);
        s.policy_violating_requests = u64::from(n > 0);
    }
    if o.outcome.is_none() && o.cost.is_none() && o.policy_violations.is_none() {
        return Err(bad("give at least one of outcome, cost, policy_violations".into()));
    }
    Ok(s)
}

pub async fn outcomes(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    authorize(&state, &headers)?;
    let value: Value = parse_json(&body)?;
    let items = match value {
        Value::Array(items) => items,
        one @ Value::Object(_) => vec![one],
        _ => return Err(ApiError::Invalid("body must be an outcome object or an array of them".into())),
    };
    let (stable, canary) = {
        let inner = state.lock()?;
        let r = inner.rollouts.get(&name).ok_or_else(|| not_found(&name))?;
        (r.spec.stable.clone(), r.spec.canary.clone())
    };
    // Validate everything before merging anything: a batch is all or nothing.
    let mut parsed = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let o: Outcome = serde_json::from_value(item).map_err(|e| ApiError::Invalid(format!("outcome [{i}]: {e}")))?;
        if o.version != stable && o.version != canary {
            return Err(ApiError::Invalid(format!(
                "outcome [{i}]: version {:?} is neither stable ({stable:?}) nor canary ({canary:?}) of {name:?}",
                o.version
            )));
        }
        let stats = to_stats(&o, i)?;
        parsed.push((o.version, stats));
    }
    let count = parsed.len();
    let mut live = state.live()?;
    let window = live.window_mut(&name, now_ms());
    for (version, stats) in parsed {
        window.versions.entry(version).or_default().merge(&stats);
    }
    window.fresh = true;
    drop(live);
    state.data_arrived.notify_one();
    Ok((StatusCode::ACCEPTED, Json(json!({ "accepted": count }))))
}
