//! The state machine, unchanged, on a PostgreSQL store: a rollout driven through `AppState` and the
//! API (time and reports injected, as in rollouts_api.rs) to its promotion, then read back by a
//! restarted controller on the same database. The server is this binary's throwaway cluster
//! (tests/common/pg.rs); these tests fail, never skip, when it cannot be started.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use fledge_controller::driver::tick_once;
use fledge_controller::store::{Durability, Store};
use fledge_controller::{app, AppState, Settings};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

mod common;
#[path = "common/pg.rs"]
mod pg;

fn state_on(url: &str) -> AppState {
    let store = Store::postgres(url, Durability::Full).unwrap();
    AppState::new(store, Settings { poll_hold: Duration::from_millis(50), ..Settings::default() }).unwrap()
}

async fn call(state: &AppState, method: &str, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
    common::request(state, method, uri, body.map(|b| b.to_string().into_bytes())).await
}

fn report(seq: u64, version: &str, requests: u64, errors: u64) -> Value {
    json!({"proxy": "p1", "worker": "w1", "seq": seq, "generation": 1, "versions": [{
        "rollout": "support", "version": version,
        "stats": {"requests": requests, "status_2xx": requests - errors, "status_5xx": errors, "errors": errors,
                  "latency_total": {"buckets": [[300, requests]]}, "outcome_success": requests}}]})
}

const SPEC: &str = r#"{"hosts":["support-agent"],"stable":"v1","canary":"v2","steps":[10,100],"step_seconds":5,
    "min_requests":50,"gates":[{"metric":"error_rate","max_increase":0.01}]}"#;

async fn status(s: &AppState) -> Value {
    call(s, "GET", "/v1/rollouts/support", None).await.1
}

/// The export's lines, each parsed.
async fn export(state: &AppState) -> Vec<Value> {
    let req = Request::builder().uri("/v1/rollouts/support/export").body(Body::empty()).unwrap();
    let resp = app(state.clone()).oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[tokio::test]
async fn healthy_data_advances_then_promotes_on_postgres_and_survives_a_restart() {
    let url = pg::database();
    let s = state_on(&url);
    assert_eq!(call(&s, "GET", "/readyz", None).await.0, StatusCode::OK);
    let (code, body) = call(&s, "PUT", "/v1/rollouts/support", Some(serde_json::from_str(SPEC).unwrap())).await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    assert_eq!(body["status"]["phase"], "pending");
    tick_once(&s, 1_000).unwrap();
    let st = status(&s).await;
    assert_eq!((st["status"]["phase"].as_str(), st["status"]["weight"].as_f64()), (Some("progressing"), Some(10.0)));

    // Before min_requests: hold, whatever the dwell.
    call(&s, "POST", "/v1/reports", Some(report(1, "v2", 10, 0))).await;
    tick_once(&s, 60_000).unwrap();
    let st = status(&s).await;
    assert_eq!(st["status"]["last_verdict"]["action"], "hold");
    assert_eq!(st["status"]["step"], json!(0));

    call(&s, "POST", "/v1/reports", Some(report(2, "v2", 200, 0))).await;
    call(&s, "POST", "/v1/reports", Some(report(3, "v1", 2000, 0))).await;
    tick_once(&s, 61_000).unwrap();
    let st = status(&s).await;
    assert_eq!((st["status"]["step"].clone(), st["status"]["weight"].as_f64()), (json!(1), Some(100.0)), "{}", st["status"]["message"]);
    tick_once(&s, 62_000).unwrap();
    assert_eq!(status(&s).await["status"]["phase"], "progressing", "dwell at the last step first");
    tick_once(&s, 67_000).unwrap();
    let st = status(&s).await;
    assert_eq!(st["status"]["phase"], "succeeded");
    assert_eq!((st["spec"]["stable"].as_str(), st["spec"]["canary"].as_str()), (Some("v2"), Some("v1")));
    let (_, ev) = call(&s, "GET", "/v1/rollouts/support/events", None).await;
    let kinds: Vec<&str> = ev["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["created", "started", "advanced", "promoted"]);
    let lines = export(&s).await;
    assert!(lines.iter().any(|l| l["type"] == "interval"), "the judged intervals are stored: {lines:?}");
    assert_eq!(lines.iter().filter(|l| l["type"] == "event").count(), 4);
    let before = (s.current().epoch.clone(), s.current().generation);
    drop(s);
    // It is in the database, read without the controller.
    let direct = Store::postgres(&url, Durability::Full).unwrap();
    assert_eq!(direct.describe(), format!("postgres {url}"));
    assert_eq!((direct.events("support").unwrap().len(), direct.load().unwrap().generation), (4, before.1));
    drop(direct);

    // A restarted controller on the same database resumes from what was committed.
    let s = state_on(&url);
    assert_eq!((s.current().epoch.clone(), s.current().generation), before);
    let again = status(&s).await;
    assert_eq!(again["status"], st["status"], "the status as it was");
    assert_eq!(call(&s, "GET", "/v1/rollouts/support/events", None).await.1, ev);
    assert_eq!(export(&s).await.len(), lines.len());
    assert_eq!(call(&s, "DELETE", "/v1/rollouts/support", None).await.0, StatusCode::NO_CONTENT);
    assert_eq!(call(&s, "GET", "/v1/rollouts", None).await.1["rollouts"], json!([]));
}
