//! What the controller's API tests share: a state on an in-memory store, and one request through
//! `app(state).oneshot(..)` answering status and JSON body (Null when empty or not JSON).
#![allow(dead_code, clippy::unwrap_used)]

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use fledge_controller::driver::tick_once;
use fledge_controller::store::Store;
use fledge_controller::{app, AppState, Settings};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

pub fn state_with(settings: Settings) -> AppState {
    AppState::new(Store::in_memory().unwrap(), settings).unwrap()
}

/// A state whose long polls hold for `poll_hold_ms`.
pub fn state(poll_hold_ms: u64) -> AppState {
    state_with(Settings { poll_hold: Duration::from_millis(poll_hold_ms), ..Settings::default() })
}

pub async fn request(state: &AppState, method: &str, uri: &str, body: Option<Vec<u8>>) -> (StatusCode, Value) {
    let req = Request::builder().method(method).uri(uri).header("content-type", "application/json");
    let req = req.body(body.map(Body::from).unwrap_or_else(Body::empty)).unwrap();
    let resp = app(state.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// [`request`] with a JSON body.
pub async fn call(state: &AppState, method: &str, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
    request(state, method, uri, body.map(|b| b.to_string().into_bytes())).await
}

/// The export of rollout `name`: status, content type and lines, each parsed (every line of a 200
/// ends with a newline).
pub async fn export(state: &AppState, name: &str) -> (StatusCode, String, Vec<Value>) {
    let req = Request::builder().uri(format!("/v1/rollouts/{name}/export")).body(Body::empty()).unwrap();
    let resp = app(state.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let ct = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    assert!(status != StatusCode::OK || text.ends_with('\n'), "every line ends with a newline");
    let lines = text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    (status, ct, lines)
}

/// One worker's report of rollout `support`: `requests` of `version`, `errors` of them 5xx.
pub fn report(seq: u64, version: &str, requests: u64, errors: u64) -> Value {
    json!({"proxy": "p1", "worker": "w1", "seq": seq, "generation": 1, "versions": [{
        "rollout": "support", "version": version,
        "stats": {"requests": requests, "status_2xx": requests - errors, "status_5xx": errors, "errors": errors,
                  "latency_total": {"buckets": [[300, requests]]}, "outcome_success": requests}}]})
}

/// Rollout `support`: steps 10 → 100 % of 5 s, 50 canary requests at least, one error-rate gate.
pub const SPEC: &str = r#"{"hosts":["support-agent"],"stable":"v1","canary":"v2","steps":[10,100],"step_seconds":5,
    "min_requests":50,"gates":[{"metric":"error_rate","max_increase":0.01}]}"#;

pub async fn status(s: &AppState) -> Value {
    call(s, "GET", "/v1/rollouts/support", None).await.1
}

/// Creates [`SPEC`] and drives it with injected time and reports through a hold (too few canary
/// requests), an advance and the last step's dwell to its promotion, checking each stage. Returns the
/// final body of `GET /v1/rollouts/support` and of its events.
pub async fn promote_healthy(s: &AppState) -> (Value, Value) {
    let (code, body) = call(s, "PUT", "/v1/rollouts/support", Some(serde_json::from_str(SPEC).unwrap())).await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    assert_eq!(body["status"]["phase"], "pending");
    tick_once(s, 1_000).unwrap();
    let st = status(s).await;
    assert_eq!((st["status"]["phase"].as_str(), st["status"]["weight"].as_f64()), (Some("progressing"), Some(10.0)));

    // Before min_requests: hold, whatever the dwell.
    call(s, "POST", "/v1/reports", Some(report(1, "v2", 10, 0))).await;
    tick_once(s, 60_000).unwrap();
    let st = status(s).await;
    assert_eq!(st["status"]["last_verdict"]["action"], "hold");
    assert_eq!(st["status"]["step"], json!(0));

    call(s, "POST", "/v1/reports", Some(report(2, "v2", 200, 0))).await;
    call(s, "POST", "/v1/reports", Some(report(3, "v1", 2000, 0))).await;
    tick_once(s, 61_000).unwrap();
    let st = status(s).await;
    assert_eq!((st["status"]["step"].clone(), st["status"]["weight"].as_f64()), (json!(1), Some(100.0)), "{}", st["status"]["message"]);
    tick_once(s, 62_000).unwrap();
    assert_eq!(status(s).await["status"]["phase"], "progressing", "dwell at the last step first");
    tick_once(s, 67_000).unwrap();
    let st = status(s).await;
    assert_eq!(st["status"]["phase"], "succeeded");
    assert_eq!((st["spec"]["stable"].as_str(), st["spec"]["canary"].as_str()), (Some("v2"), Some("v1")));
    let (_, ev) = call(s, "GET", "/v1/rollouts/support/events", None).await;
    let kinds: Vec<&str> = ev["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["created", "started", "advanced", "promoted"]);
    (st, ev)
}

/// `spec` with the fields of `extra` set, a `null` in `extra` removing the field: one spec varied per
/// test case.
pub fn with_fields(mut spec: Value, extra: Value) -> Value {
    if let (Some(fields), Value::Object(extra)) = (spec.as_object_mut(), extra) {
        for (k, v) in extra {
            if v.is_null() {
                fields.remove(&k);
            } else {
                fields.insert(k, v);
            }
        }
    }
    spec
}
