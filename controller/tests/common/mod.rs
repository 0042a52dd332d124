//! What the controller's API tests share: a state on an in-memory store, and one request through
//! `app(state).oneshot(..)` answering status and JSON body (Null when empty or not JSON).
#![allow(dead_code, clippy::unwrap_used)]

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use fledge_controller::store::Store;
use fledge_controller::{app, AppState, Settings};
use http_body_util::BodyExt;
use serde_json::Value;
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
