//! The REST API: `fn app(state) -> Router`, one handler per endpoint, every error an [`ApiError`].
//!
//! Cross-cutting rules are layers, not code repeated per handler: the bearer token on mutating and
//! data-plane routes, and one body limit for every route (413 beyond it). How many report, outcome
//! and OTLP bodies are read and parsed at once is bounded too ([`IngestBody`]), so that a flood from
//! many connections queues instead of growing memory.

use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use fledge_core::rollout::{normalize_host, validate_name, RolloutSpec};
use serde_json::json;

use crate::error::{parse_json, ApiError, Body};
use crate::machine::{self, Input};
use crate::model::Rollout;
use crate::state::{now_ms, AppState, Change, View};

/// The largest request body any endpoint reads (a report of [`fledge_core::report::MAX_VERSION_ENTRIES`]
/// entries with full histograms fits several times over).
pub const MAX_BODY: usize = 1 << 20;
/// Report, outcome and OTLP bodies read and parsed at once; more wait their turn.
pub const INGEST_CONCURRENCY: usize = 8;

/// An ingest body, read and parsed under one of [`INGEST_CONCURRENCY`] slots. The handler drops
/// `slot` once the body is parsed: what follows (on several replicas, waiting up to a flush for the
/// shared log) holds no memory a flood could grow beyond the cluster queue's bound, and must not keep
/// the next reports from being read. Holding a slot across that wait made 1,000 proxies queue behind
/// eight flushes (p99 ack 3.7 s).
pub struct IngestBody {
    pub bytes: axum::body::Bytes,
    pub slot: tokio::sync::OwnedSemaphorePermit,
}

impl axum::extract::FromRequest<AppState> for IngestBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let slot = state
            .ingest_slots()
            .acquire_owned()
            .await
            .map_err(|_| ApiError::Unavailable("the controller is shutting down".into()))?;
        let Body(bytes) = Body::from_request(req, state).await?;
        Ok(Self { bytes, slot })
    }
}

pub fn app(state: AppState) -> Router {
    let auth = middleware::from_fn_with_state(state.clone(), require_token);
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(crate::scrape::metrics))
        .route("/v1/filter.wasm", get(crate::module::wasm))
        .route("/v1/filter.wasm.sha256", get(crate::module::wasm_sha256))
        .route("/v1/openapi.yaml", get(openapi))
        .route("/v1/rollouts", get(list))
        .route("/v1/rollouts/{name}", get(get_one).merge(put(put_rollout).delete(delete).route_layer(auth.clone())))
        .route("/v1/rollouts/{name}/events", get(crate::actions::events))
        .route("/v1/rollouts/{name}/shadow", get(crate::shadow::get))
        .route("/v1/rollouts/{name}/series", get(crate::series::get))
        .route("/v1/rollouts/{name}/export", get(crate::export::export))
        .route("/v1/rollouts/{name}/stream", get(crate::stream::one))
        .route("/v1/stream", get(crate::stream::all))
        .route("/ui", get(crate::ui::page))
        .route("/ui/", get(crate::ui::page))
        .route("/ui/rollouts/{name}", get(crate::ui::rollout_page))
        .route("/ui/assets/{file}", get(crate::ui::asset))
        .route(
            "/v1/rollouts/{name}/outcomes",
            post(crate::ingest::outcomes).route_layer(auth.clone()),
        )
        .route(
            "/v1/rollouts/{name}/{action}",
            post(crate::actions::act).route_layer(auth.clone()),
        )
        .route(
            "/v1/reports",
            post(crate::ingest::reports).route_layer(auth.clone()),
        )
        .route(
            "/v1/logs",
            post(crate::otlp::logs).route_layer(auth.clone()),
        )
        .route("/v1/config", get(crate::poll::config).route_layer(auth))
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// The API's OpenAPI description (the contract the schemathesis test checks this server against).
async fn openapi() -> impl IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "application/yaml")], include_str!("../openapi.yaml"))
}

async fn healthz(State(state): State<AppState>) -> Json<serde_json::Value> {
    let current = state.current();
    let workers = state.live().worker_count();
    let cluster = state.cluster();
    let leader = cluster.leader();
    Json(json!({
        "status": "ok", "epoch": current.epoch, "generation": current.generation,
        "held_polls": state.held_polls(), "workers": workers,
        "replica": cluster.replica(), "role": cluster.role(),
        "leader": leader.as_ref().map(|(id, _)| id), "lease_epoch": leader.as_ref().map(|(_, e)| e),
    }))
}

/// Ready when the database answers.
async fn readyz(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    state.check_store().map_err(|e| ApiError::Unavailable(format!("database not usable: {e}")))?;
    Ok(Json(json!({ "status": "ready" })))
}

/// The bearer token, where one is configured, as a route layer.
async fn require_token(State(state): State<AppState>, req: Request, next: Next) -> Response {
    match authorize(&state, req.headers()) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &state.settings().token else { return Ok(()) };
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

async fn list(State(state): State<AppState>) -> Json<serde_json::Value> {
    let view = state.view();
    let rollouts: Vec<&Rollout> = view.rollouts().map(|r| r.as_ref()).collect();
    Json(json!({ "generation": view.generation(), "rollouts": rollouts }))
}

async fn get_one(State(state): State<AppState>, Path(name): Path<String>) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(rollout_body(&state, &state.view(), &name)?))
}

/// The body of `GET /v1/rollouts/{name}`: the rollout as committed in `view`, with its `live` section
/// (also what every event of the streams carries).
pub fn rollout_body(state: &AppState, view: &View, name: &str) -> Result<serde_json::Value, ApiError> {
    let rollout = view.rollout(name).ok_or_else(|| not_found(name))?;
    let now = now_ms();
    let (stable, canary, started, confirmation, shadow) = {
        let live = state.live();
        let window = live.window(name).filter(|w| w.seq() == rollout.status.window);
        let stats = |v: &str| window.map(|w| w.stats(v)).unwrap_or_default();
        let confirmation = live.confirmation(view.epoch(), rollout.status.generation, now);
        let shadow = rollout.spec.shadow.is_some().then(|| {
            let s = window.map(|w| w.shadow().clone()).unwrap_or_default();
            crate::shadow::summary(&rollout.spec.stable, &rollout.spec.canary, &s)
        });
        (stats(&rollout.spec.stable), stats(&rollout.spec.canary), window.map(|w| w.started_at_ms()), confirmation, shadow)
    };
    let summary = format!(
        "{}; confirmed by {}/{} proxies",
        rollout.status.phase.as_str().replace('_', " "),
        confirmation.confirmed,
        confirmation.proxies
    );
    let mut body = serde_json::to_value(rollout.as_ref()).map_err(|e| ApiError::Internal(e.to_string()))?;
    let readiness = rollout.spec.readiness.as_ref().map(|spec| {
        let probes = state.probes();
        let probe = probes.get(name).filter(|p| p.url == spec.url);
        json!({
            "state": probe.map_or(crate::readiness::Readiness::Unknown, |p| p.state),
            "summary": probe.map(|p| p.describe(spec)),
            "probe": probe,
        })
    });
    // Blue-green after the switch: the generation that moved every request to green, and when the
    // last proxy confirmed it.
    let switch = rollout.switched().then(|| {
        let all = confirmation.proxies > 0 && confirmation.confirmed == confirmation.proxies;
        let confirmed_at_ms = all.then(|| confirmation.details.iter().filter_map(|d| d.confirmed_at_ms).max()).flatten();
        json!({
            "generation": rollout.status.generation,
            "bake_started_at_ms": rollout.status.step_started_at_ms,
            "confirmed": all,
            "confirmed_at_ms": confirmed_at_ms,
            "proxies_confirmed": confirmation.confirmed,
            "proxies": confirmation.proxies,
        })
    });
    let approval = state
        .approvals()
        .get(name)
        .filter(|a| Some(a.step) == rollout.status.step && a.step_started_at_ms == rollout.status.step_started_at_ms)
        .cloned();
    let live = json!({
        "approval": approval,
        "shadow": shadow.map(|mut s| {
            if let Some(fields) = s.as_object_mut() {
                fields.insert("active".into(), json!(rollout.shadow_active()));
            }
            s
        }),
        "switch": switch,
        "readiness": readiness,
        "summary": summary,
        "window": {
            "started_at_ms": started,
            "stable": crate::metrics::summary(&rollout.spec.stable, &stable),
            "canary": crate::metrics::summary(&rollout.spec.canary, &canary),
        },
        "confirmation": confirmation,
        "segments": state.segment_counts().status(rollout),
        "session": rollout.spec.session.as_ref().map(|s| json!({"cookie": s.cookie})),
    });
    if let Some(fields) = body.as_object_mut() {
        fields.insert("live".into(), live);
    }
    Ok(body)
}

async fn put_rollout(State(state): State<AppState>, Path(name): Path<String>, Body(body): Body) -> Result<Response, ApiError> {
    validate_name(&name).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let spec: RolloutSpec = parse_json(&body)?;
    let (created, rollout) = apply_spec(&state, &name, spec)?;
    let code = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((code, Json(rollout)).into_response())
}

/// Creates or replaces rollout `name` (shared by `PUT` and the directory watcher). Returns whether it
/// was created.
pub fn apply_spec(state: &AppState, name: &str, spec: RolloutSpec) -> Result<(bool, Rollout), ApiError> {
    let now = now_ms();
    let mut created = false;
    let committed = state.commit(name, now, |current| {
        if let Some((host, owner)) = host_conflict(state, name, &spec) {
            return Err(ApiError::Conflict(format!("host {host:?} is already owned by rollout {owner:?}")));
        }
        let input = Input::Replace { spec: Box::new(spec.clone()) };
        // Decided again if another replica committed meanwhile: what counts is the last decision.
        created = current.is_none();
        match current {
            None => {
                let r = Rollout::new(name, spec.clone(), now).map_err(|e| ApiError::Invalid(e.to_string()))?;
                Ok(Some(Change::Create(Box::new(r), input)))
            }
            Some(r) => Ok(Some(Change::Apply(Box::new(machine::step(r, input.clone(), now)?), input))),
        }
    })?;
    let rollout = committed.ok_or_else(|| ApiError::Internal("write committed nothing".into()))?;
    tracing::info!(rollout = %name, phase = rollout.status.phase.as_str(), weight = %rollout.status.weight.percent(), generation = rollout.status.generation, created, "rollout written");
    Ok((created, Rollout::clone(&rollout)))
}

async fn delete(State(state): State<AppState>, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    state.commit(&name, now_ms(), |_| Ok(Some(Change::Delete)))?;
    tracing::info!(rollout = %name, "rollout deleted");
    Ok(StatusCode::NO_CONTENT)
}

pub fn not_found(name: &str) -> ApiError {
    ApiError::NotFound(format!("rollout {name:?} does not exist"))
}

/// The first of `spec`'s hosts that another rollout already claims with the same pattern. (Overlapping
/// patterns — `*.example.com` and `chat.example.com` — are fine: the most specific one wins.)
fn host_conflict(state: &AppState, name: &str, spec: &RolloutSpec) -> Option<(String, String)> {
    let wanted: Vec<String> = spec.hosts.iter().map(|h| normalize_host(h)).collect();
    state.view().rollouts().filter(|r| r.name != name).find_map(|r| {
        r.spec.hosts.iter().find(|h| wanted.contains(&normalize_host(h))).map(|h| (h.clone(), r.name.clone()))
    })
}
