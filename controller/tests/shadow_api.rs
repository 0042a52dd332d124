//! Shadow through the API: validation naming the field, the derived shadow gates, what the proxies
//! are sent in each phase, and `GET /v1/rollouts/{name}/shadow`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use axum::http::StatusCode;
use serde_json::{json, Value};

mod common;

use common::call;

fn spec(extra: Value) -> Value {
    common::with_fields(json!({"hosts": ["support-agent"], "stable": "v1", "canary": "v2", "steps": [10, 100], "step_seconds": 60,
                          "shadow": {"cluster": "support_agent_v2", "percent": 10}, "shadow_seconds": 300}), extra)
}

#[tokio::test]
async fn a_bad_shadow_spec_is_a_422_naming_the_field() {
    let s = common::state(50);
    let cases = [
        (json!({"shadow": {"cluster": "", "percent": 10}}), "shadow.cluster"),
        (json!({"shadow": {"cluster": "c", "percent": 0}}), "shadow.percent"),
        (json!({"shadow": {"cluster": "c", "percent": 10, "timeout_ms": 0}}), "shadow.timeout_ms"),
        (json!({"shadow": {"cluster": "c", "percent": 10, "max_in_flight": 100000}}), "shadow.max_in_flight"),
        (json!({"shadow": {"cluster": "c", "percent": 10, "capture": {"samples": 1000}}}), "shadow.capture.samples"),
        (json!({"shadow": {"cluster": "c", "percent": 10, "mirror": true}}), "unknown field `mirror`"),
        (json!({"shadow": null}), "shadow_seconds needs shadow"),
        (json!({"shadow_seconds": 0}), "shadow_seconds = 0"),
        (json!({"steps": null, "step_seconds": null, "weight": 5}), "cannot be combined with shadow_seconds"),
        (json!({"shadow": null, "shadow_seconds": null, "gates": [{"metric": "shadow_error_rate", "max_ratio": 1.5}]}), "gates[0]: shadow_error_rate judges shadow copies; add shadow"),
        (json!({"gates": [{"metric": "shadow_mismatch_rate", "max_ratio": 1.5}]}), "a mismatch rate has no stable counterpart: use max"),
        (json!({"steps": null, "step_seconds": null, "shadow_seconds": null, "strategy": "blue_green", "preview_seconds": 0}), "shadow is not available with strategy \"blue_green\""),
    ];
    for (extra, want) in cases {
        let (code, body) = call(&s, "PUT", "/v1/rollouts/support", Some(spec(extra.clone()))).await;
        assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{extra}: {body}");
        let msg = body["error"]["message"].as_str().unwrap();
        assert!(msg.contains(want), "{extra}: {msg:?} does not contain {want:?}");
    }
}

#[tokio::test]
async fn shadowing_publishes_the_shadow_and_an_ended_rollout_does_not() {
    let s = common::state(50);
    let (code, body) = call(&s, "PUT", "/v1/rollouts/support", Some(spec(json!({})))).await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    // Pending: not yet copying.
    let (_, config) = call(&s, "GET", "/v1/config", None).await;
    assert!(config["rollouts"][0].get("shadow").is_none(), "{config}");
    fledge_controller::driver::tick_once(&s, fledge_controller::state::now_ms()).unwrap();
    let (_, st) = call(&s, "GET", "/v1/rollouts/support", None).await;
    assert_eq!((st["status"]["phase"].as_str(), st["status"]["weight"].as_f64()), (Some("shadowing"), Some(0.0)), "{st}");
    assert_eq!(st["live"]["shadow"]["active"], true);
    let (_, config) = call(&s, "GET", "/v1/config", None).await;
    assert_eq!(config["rollouts"][0]["shadow"]["cluster"], "support_agent_v2");
    assert_eq!(config["rollouts"][0]["shadow"]["max_body_bytes"], 65536, "defaults are filled in");
    let (code, shadow) = call(&s, "GET", "/v1/rollouts/support/shadow", None).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!((shadow["active"].as_bool(), shadow["window"]["sent"].as_u64(), shadow["samples"].as_array().map(Vec::len)), (Some(true), Some(0), Some(0)));
    let (code, err) = call(&s, "GET", "/v1/rollouts/nope/shadow", None).await;
    assert_eq!(code, StatusCode::NOT_FOUND, "{err}");
    assert!(err["error"]["message"].as_str().unwrap().contains("nope"));
    // Aborted: the copies stop.
    let (code, _) = call(&s, "POST", "/v1/rollouts/support/abort", None).await;
    assert_eq!(code, StatusCode::OK);
    let (_, config) = call(&s, "GET", "/v1/config", None).await;
    assert!(config["rollouts"][0].get("shadow").is_none(), "{config}");
}
