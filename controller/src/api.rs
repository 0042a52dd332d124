//! The REST API: `fn app(state) -> Router`, one handler per endpoint, every error an [`ApiError`].

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use axum::routing::post;
use fledge_core::rollout::{normalize_host, validate_name, RolloutSpec};
use serde_json::json;

use crate::error::{parse_json, ApiError};
use crate::model::Rollout;
use crate::state::{now_ms, AppState, Persist};

pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(crate::probes::readyz))
        .route("/v1/filter.wasm", get(crate::module::wasm))
        .route("/v1/filter.wasm.sha256", get(crate::module::wasm_sha256))
        .route("/v1/openapi.yaml", get(openapi))
        .route("/v1/rollouts", get(list))
        .route("/v1/rollouts/{name}", get(get_one).put(put).delete(delete))
        .route("/v1/rollouts/{name}/events", get(crate::actions::events))
        .route("/v1/rollouts/{name}/outcomes", post(crate::ingest::outcomes))
        .route("/v1/rollouts/{name}/{action}", post(crate::actions::act))
        .route("/v1/reports", post(crate::ingest::reports))
        .route("/v1/config", get(crate::poll::config))
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
        .with_state(state)
}

/// The API's OpenAPI description (the contract the schemathesis test checks this server against).
async fn openapi() -> impl IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "application/yaml")], include_str!("../openapi.yaml"))
}

async fn healthz(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({ "status": "ok", "generation": state.current().generation, "held_polls": state.held_polls() }))
}

/// Checks the bearer token where one is configured.
pub fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &state.settings.token else { return Ok(()) };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    // Compare without an early exit so response timing does not reveal a matching prefix.
    let ok = presented.is_some_and(|p| {
        p.len() == token.len() && p.bytes().zip(token.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    });
    if ok {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}

async fn list(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let inner = state.lock()?;
    let rollouts: Vec<&Rollout> = inner.rollouts.values().collect();
    Ok(Json(json!({ "generation": inner.generation, "rollouts": rollouts })))
}

async fn get_one(State(state): State<AppState>, Path(name): Path<String>) -> Result<Json<serde_json::Value>, ApiError> {
    let rollout = state.lock()?.rollouts.get(&name).cloned().ok_or_else(|| not_found(&name))?;
    let now = now_ms();
    let live = state.live()?;
    let window = live.windows.get(&name);
    let stats = |v: &str| window.map(|w| w.stats(v)).unwrap_or_default();
    let confirmation = live.confirmation(rollout.status.generation, now);
    let summary = format!(
        "{}; confirmed by {}/{} proxies",
        rollout.status.phase.as_str().replace('_', " "),
        confirmation.confirmed,
        confirmation.proxies
    );
    let mut body = serde_json::to_value(&rollout).map_err(|e| ApiError::Internal(e.to_string()))?;
    body["live"] = json!({
        "summary": summary,
        "window": {
            "started_at_ms": window.map(|w| w.started_at_ms),
            "stable": crate::metrics::summary(&rollout.spec.stable, &stats(&rollout.spec.stable)),
            "canary": crate::metrics::summary(&rollout.spec.canary, &stats(&rollout.spec.canary)),
        },
        "confirmation": confirmation,
    });
    Ok(Json(body))
}

async fn put(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    validate_name(&name).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let spec: RolloutSpec = parse_json(&body)?;
    spec.validate().map_err(|e| ApiError::Invalid(e.to_string()))?;
    let (created, rollout) = state.commit(|inner, generation| {
        if let Some((host, owner)) = host_conflict(inner.rollouts.values(), &name, &spec) {
            return Err(ApiError::Conflict(format!("host {host:?} is already owned by rollout {owner:?}")));
        }
        let rollout = Rollout::new(&name, spec, generation, now_ms());
        let created = inner.rollouts.insert(name.clone(), rollout.clone()).is_none();
        let event = if created { "created" } else { "replaced" };
        Ok(((created, rollout), Persist::Put { name: name.clone(), event: Some(event) }))
    })?;
    state.live()?.reset_window(&name, now_ms());
    tracing::info!(rollout = %name, phase = rollout.status.phase.as_str(), weight = %rollout.status.weight.percent(), generation = rollout.status.generation, created, "rollout written");
    let code = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((code, Json(rollout)).into_response())
}

async fn delete(State(state): State<AppState>, Path(name): Path<String>, headers: HeaderMap) -> Result<StatusCode, ApiError> {
    authorize(&state, &headers)?;
    state.commit(|inner, _| match inner.rollouts.remove(&name) {
        Some(_) => Ok(((), Persist::Delete(name.clone()))),
        None => Err(not_found(&name)),
    })?;
    state.live()?.windows.remove(&name);
    tracing::info!(rollout = %name, "rollout deleted");
    Ok(StatusCode::NO_CONTENT)
}

pub fn not_found(name: &str) -> ApiError {
    ApiError::NotFound(format!("rollout {name:?} does not exist"))
}

/// The first of `spec`'s hosts that another rollout already routes.
fn host_conflict<'a>(
    others: impl Iterator<Item = &'a Rollout>,
    name: &str,
    spec: &RolloutSpec,
) -> Option<(String, String)> {
    let wanted: Vec<String> = spec.hosts.iter().map(|h| normalize_host(h)).collect();
    others.filter(|r| r.name != name).find_map(|r| {
        r.spec.hosts.iter().find(|h| wanted.contains(&normalize_host(h))).map(|h| (h.clone(), r.name.clone()))
    })
}

/// Parses `?since=N` (absent means "answer now").
pub fn parse_since(query: Option<&str>) -> Result<Option<u64>, ApiError> {
    let Some(q) = query else { return Ok(None) };
    for pair in q.split('&') {
        if let Some(v) = pair.strip_prefix("since=") {
            return v
                .parse()
                .map(Some)
                .map_err(|_| ApiError::BadRequest(format!("since must be a non-negative integer, got {v:?}")));
        }
    }
    Ok(None)
}
