//! The filter module endpoints through `app(state).oneshot(..)`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use axum::body::Body;
use axum::http::{Request, StatusCode};
use fledge_controller::store::Store;
use fledge_controller::{app, AppState, Settings};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

async fn get(state: &AppState, uri: &str) -> (StatusCode, Option<String>, Vec<u8>) {
    let resp = app(state.clone()).oneshot(Request::get(uri).body(Body::empty()).unwrap()).await.unwrap();
    let status = resp.status();
    let ct = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_string());
    (status, ct, resp.into_body().collect().await.unwrap().to_bytes().to_vec())
}

/// Built with `FLEDGE_FILTER_WASM` (as `make` does) the module and its digest are served; without, both
/// endpoints say so with a 404 naming the reason.
#[tokio::test]
async fn filter_module_or_a_clear_404() {
    let state = AppState::new(Store::in_memory().unwrap(), Settings::default()).unwrap();
    let (status, ct, body) = get(&state, "/v1/filter.wasm").await;
    let (sum_status, _, sum) = get(&state, "/v1/filter.wasm.sha256").await;
    match fledge_controller::module::module() {
        Some(m) => {
            assert_eq!(status, StatusCode::OK);
            assert_eq!(ct.as_deref(), Some("application/wasm"));
            assert_eq!(body, m);
            assert!(body.starts_with(b"\0asm"));
            assert_eq!(sum_status, StatusCode::OK);
            let sum = String::from_utf8(sum).unwrap();
            assert_eq!(sum.len(), 65);
            assert!(sum.ends_with('\n') && sum[..64].bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        }
        None => {
            assert_eq!(status, StatusCode::NOT_FOUND);
            let v: Value = serde_json::from_slice(&body).unwrap();
            assert!(v["error"]["message"].as_str().unwrap().contains("built without the filter"), "{v}");
            assert_eq!(sum_status, StatusCode::NOT_FOUND);
        }
    }
}
