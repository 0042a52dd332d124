//! Automated rollouts through the API with time and reports injected: the driver's `tick_once` is called
//! with explicit clocks and the proxies' reports are posted by hand.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]


use axum::http::StatusCode;
use fledge_controller::driver::tick_once;
use fledge_controller::AppState;
use serde_json::json;

mod common;

fn state() -> AppState {
    common::state(50)
}

use common::{call, report, status, SPEC};

async fn create(s: &AppState) {
    let (code, body) = call(s, "PUT", "/v1/rollouts/support", Some(serde_json::from_str(SPEC).unwrap())).await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    assert_eq!(body["status"]["phase"], "pending");
}


#[tokio::test]
async fn healthy_data_advances_then_promotes() {
    common::promote_healthy(&state()).await;
}

#[tokio::test]
async fn regression_rolls_back_and_is_pushed_at_once() {
    let s = state();
    create(&s).await;
    tick_once(&s, 1_000).unwrap();
    let generation = status(&s).await["status"]["generation"].as_u64().unwrap();
    // Each interval's counts are its own evidence: the proxies report every interval.
    // failure_limit defaults to 3: two failing intervals hold, the third rolls back.
    let mut seq = 0;
    let mut interval = |s: AppState| {
        seq += 2;
        async move {
            call(&s, "POST", "/v1/reports", Some(report(seq - 1, "v2", 400, 80))).await;
            call(&s, "POST", "/v1/reports", Some(report(seq, "v1", 4000, 4))).await;
        }
    };
    for (at, failures) in [(2_000, 1), (2_500, 1), (3_000, 2)] {
        if at != 2_500 {
            interval(s.clone()).await;
        }
        tick_once(&s, at).unwrap();
        let st = status(&s).await;
        assert_eq!(st["status"]["phase"], "progressing");
        assert_eq!(st["status"]["consecutive_failures"], json!(failures), "at {at} ms (interval 1 s)");
    }
    let mut rx = s.subscribe();
    rx.borrow_and_update();
    interval(s.clone()).await;
    tick_once(&s, 4_000).unwrap();
    let st = status(&s).await;
    assert_eq!(st["status"]["phase"], "rolled_back", "{}", st["status"]["message"]);
    assert_eq!(st["status"]["weight"], json!(0.0));
    let gate = &st["status"]["last_verdict"]["gates"][0];
    assert_eq!((gate["metric"].as_str(), gate["status"].as_str()), (Some("error_rate"), Some("fail")));
    assert!(gate["canary"].as_f64().unwrap() > 0.19);
    assert!(rx.has_changed().unwrap(), "the rollback is published to long-polls in the same step");
    assert!(rx.borrow().generation > generation);
    let (_, snap) = call(&s, "GET", &format!("/v1/config?since={generation}"), None).await;
    assert_eq!(snap["rollouts"][0]["weight"], json!(0.0));
}

#[tokio::test]
async fn actions_follow_the_phase_rules() {
    let s = state();
    create(&s).await;
    let (code, body) = call(&s, "POST", "/v1/rollouts/support/resume", None).await;
    assert_eq!(code, StatusCode::CONFLICT, "{body}");
    assert_eq!(call(&s, "POST", "/v1/rollouts/support/pause", None).await.0, StatusCode::OK);
    tick_once(&s, 1_000).unwrap();
    assert_eq!(status(&s).await["status"]["phase"], "paused", "a paused rollout is not driven");
    assert_eq!(call(&s, "POST", "/v1/rollouts/support/resume", None).await.0, StatusCode::OK);
    assert_eq!(call(&s, "POST", "/v1/rollouts/support/abort", None).await.0, StatusCode::OK);
    let st = status(&s).await;
    assert_eq!((st["status"]["phase"].as_str(), st["status"]["weight"].as_f64()), (Some("aborted"), Some(0.0)));
    assert_eq!(call(&s, "POST", "/v1/rollouts/support/promote", None).await.0, StatusCode::CONFLICT);
    assert_eq!(call(&s, "POST", "/v1/rollouts/support/explode", None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(call(&s, "POST", "/v1/rollouts/nope/pause", None).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn reports_and_outcomes_reject_bad_input() {
    let s = state();
    create(&s).await;
    let cases = [
        ("/v1/reports", json!({"proxy": "p"}), 422, "missing field"),
        ("/v1/reports", json!({"proxy": "p", "worker": "w", "seq": 1, "generation": 1,
            "versions": [{"rollout": "support", "version": "v2", "stats": {"latency_total": {"buckets": [[60000, 1]]}}}]}), 422, "bucket"),
        ("/v1/rollouts/support/outcomes", json!({"version": "v2", "outcome": "great"}), 422, "success"),
        ("/v1/rollouts/support/outcomes", json!([{"version": "v2", "outcome": "success"}, {"version": "v2", "cost": -1}]), 422, "[1]"),
        ("/v1/rollouts/support/outcomes", json!({"version": "v2"}), 422, "at least one"),
        ("/v1/rollouts/support/outcomes", json!({"version": "v2", "outcome": "success", "mood": "ok"}), 422, "mood"),
        ("/v1/rollouts/support/outcomes", json!(42), 422, "array"),
        ("/v1/rollouts/nope/outcomes", json!({"version": "v2", "outcome": "success"}), 404, "nope"),
    ];
    for (path, body, code, needle) in cases {
        let (got, resp) = call(&s, "POST", path, Some(body.clone())).await;
        assert_eq!(got.as_u16(), code, "{body} → {resp}");
        let msg = resp["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains(needle), "{body}: {msg:?} should mention {needle:?}");
    }
    let st = status(&s).await;
    assert_eq!(st["live"]["window"]["canary"]["requests"], json!(0), "rejected input counted nothing");
    assert_eq!(st["live"]["window"]["canary"]["outcomes"], json!(0));
    let (code, body) = call(&s, "POST", "/v1/rollouts/support/outcomes",
        Some(json!([{"version": "v2", "outcome": "failure", "cost": 0.5, "policy_violations": 2}, {"version": "v1", "outcome": "success"}]))).await;
    assert_eq!((code, body["accepted"].clone()), (StatusCode::ACCEPTED, json!(2)));
    let st = status(&s).await;
    assert_eq!(st["live"]["window"]["canary"]["task_success_rate"], json!(0.0));
    assert_eq!(st["live"]["window"]["stable"]["task_success_rate"], json!(1.0));
}

#[tokio::test]
async fn spec_validation_for_automated_rollouts() {
    let s = state();
    let cases = [
        (json!({"hosts": ["a"], "stable": "v1", "canary": "v2", "weight": 5, "steps": [1, 100]}), "cannot be combined with steps"),
        (json!({"hosts": ["a"], "stable": "v1", "canary": "v2", "steps": [50, 10]}), "step"),
        (json!({"hosts": ["a"], "stable": "v1", "canary": "v2", "gates": [{"metric": "error_rate"}]}), "gate"),
        (json!({"hosts": ["a"], "stable": "v1", "canary": "v2", "gates": [{"metric": "vibes", "max": 1}]}), "vibes"),
        (json!({"hosts": ["a"], "stable": "v1", "canary": "v2", "analysis": {"interval_seconds": 0}}), "interval"),
        (json!({"hosts": ["a"], "stable": "v1", "canary": "v2", "analysis": {"intervall": 1}}), "intervall"),
        (json!({"hosts": ["a"], "stable": "v1", "canary": "v2", "steps": [10, {"weight": 50, "pause": "forever"}]}), "steps[1]: unknown variant `forever`"),
        (json!({"hosts": ["a"], "stable": "v1", "canary": "v2", "steps": [10, {"weight": 50, "hold": true}]}), "steps[1]: unknown field `hold`"),
        (json!({"hosts": ["a"], "stable": "v1", "canary": "v2", "steps": [{"weight": 50, "pause": "manual", "approval": {"url": "http://a/"}}]}), "steps[0]: give either pause or approval"),
        (json!({"hosts": ["a"], "stable": "v1", "canary": "v2", "steps": [{"weight": 50, "approval": {"url": "ftp://a/"}}]}), "steps[0].approval.url"),
        (json!({"hosts": ["a"], "stable": "v1", "canary": "v2", "steps": [{"weight": 50, "approval": {"url": "http://user:pw@a/"}}]}), "no credentials"),
        (json!({"hosts": ["a"], "stable": "v1", "canary": "v2", "steps": [{"weight": 50, "approval": {"url": "http://a/", "timeout_seconds": 0}}]}), "steps[0].approval.timeout_seconds"),
        (json!({"hosts": ["a"], "stable": "v1", "canary": "v2", "steps": ["ten"]}), "steps[0]: a step is a weight or an object"),
    ];
    for (body, needle) in cases {
        let (code, resp) = call(&s, "PUT", "/v1/rollouts/x", Some(body.clone())).await;
        assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{body} → {resp}");
        let msg = resp["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains(needle), "{body}: {msg:?} should mention {needle:?}");
    }
}
