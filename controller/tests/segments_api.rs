//! Segments and sessions through the API: validation naming the rule, the published snapshot, and the
//! per-segment counts in the status.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]


use axum::http::StatusCode;
use fledge_controller::AppState;
use serde_json::{json, Value};

mod common;

fn state() -> AppState {
    common::state(50)
}

use common::call;

fn spec(segments: Value) -> Value {
    json!({"hosts": ["support-agent"], "stable": "v1", "canary": "v2", "weight": 10, "segments": segments,
           "session": {"cookie": "sid", "max_age_seconds": 3600}})
}

fn good_segments() -> Value {
    json!([
        {"name": "employees", "match": {"header": {"name": "x-employee", "exact": "true"}}, "version": "canary"},
        {"name": "enterprise", "match": {"header": {"name": "x-plan", "exact": "enterprise"}}, "version": "stable"},
        {"name": "beta", "match": {"cookie": {"name": "beta", "exact": "1"}, "source_cidr": "10.0.0.0/8"}, "weight": 50}
    ])
}

#[tokio::test]
async fn a_bad_rule_is_a_422_naming_it() {
    let s = state();
    let cases = [
        (json!([{"name": "a", "match": {"path": {"prefix": "/"}}, "version": "canary"},
                {"name": "beta", "match": {"source_cidr": "10.0.0.0/33"}, "weight": 50}]),
         r#"segments[1] "beta": match.source_cidr "10.0.0.0/33" is not a CIDR"#),
        (json!([{"name": "beta", "match": {"header": {"name": "x", "exact": "1"}}, "version": "canry"}]), r#"segments[0] "beta": version "canry""#),
        (json!([{"name": "beta", "match": {"header": {"name": "x", "exact": "1"}}, "weight": 101}]), r#"segments[0] "beta": weight must be between 0 and 100"#),
        (json!([{"name": "beta", "match": {"header": {"name": "x", "exact": "1"}}, "weight": 5, "version": "canary"}]), r#"segments[0] "beta": give either version or weight"#),
        (json!([{"name": "beta", "mach": {}, "weight": 5}]), r#"segments[0] "beta": unknown field `mach`"#),
        (json!([{"name": "beta", "match": {"header": {"name": "x", "regex": "1"}}, "weight": 5}]), r#"segments[0] "beta": unknown field `regex`"#),
        (json!([{"name": "beta", "match": {"cookie": {"name": "c"}}, "weight": 5}]), r#"segments[0] "beta": missing field `exact`"#),
        (json!([{"name": "beta", "match": {}, "weight": 5}]), r#"segments[0] "beta": match must give at least one"#),
        (json!([{"name": "bad name", "match": {"path": {"prefix": "/"}}, "weight": 5}]), "segments[0]: name \"bad name\" is invalid"),
        (json!([{"name": "b", "match": {"path": {"prefix": "/"}}, "weight": 5}, {"name": "b", "match": {"path": {"prefix": "/x"}}, "weight": 5}]),
         r#"segments[1] "b": name is used by an earlier rule"#),
        (json!("not a list"), "segments"),
    ];
    for (segments, want) in cases {
        let (code, body) = call(&s, "PUT", "/v1/rollouts/support", Some(spec(segments.clone()))).await;
        assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{segments}: {body}");
        let msg = body["error"]["message"].as_str().unwrap();
        assert!(msg.contains(want), "{segments}: {msg:?} does not contain {want:?}");
    }
    let bad_session = |session: Value| json!({"hosts": ["a"], "stable": "v1", "canary": "v2", "weight": 1, "session": session});
    for (session, want) in [
        (json!({"cookie": "a b"}), "session.cookie"),
        (json!({"max_age_seconds": 0}), "session.max_age_seconds"),
        (json!({"same_site": "Sometimes"}), "session.same_site"),
        (json!({"same_site": "None"}), "session.secure"),
        (json!({"secure": "yes"}), "session: invalid type"),
        (json!({"cookei": "x"}), "cookei"),
    ] {
        let (code, body) = call(&s, "PUT", "/v1/rollouts/support", Some(bad_session(session.clone()))).await;
        assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{session}: {body}");
        assert!(body["error"]["message"].as_str().unwrap().contains(want), "{session}: {body}");
    }
    assert_eq!(call(&s, "GET", "/v1/rollouts/support", None).await.0, StatusCode::NOT_FOUND, "nothing was created");
}

#[tokio::test]
async fn segments_are_published_and_counted_per_version() {
    let s = state();
    let (code, body) = call(&s, "PUT", "/v1/rollouts/support", Some(spec(good_segments()))).await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    let (_, config) = call(&s, "GET", "/v1/config", None).await;
    let r = &config["rollouts"][0];
    assert_eq!(r["segments"].as_array().map(Vec::len), Some(3));
    assert_eq!(r["segments"][2]["match"]["source_cidr"], "10.0.0.0/8");
    assert_eq!(r["session"], json!({"cookie": "sid", "max_age_seconds": 3600, "secure": false, "same_site": "Lax"}));

    let report = |seq: u64, version: &str, segments: Value| {
        json!({"proxy": "p1", "worker": "w1", "seq": seq, "generation": 1, "versions": [
            {"rollout": "support", "version": version, "stats": {"requests": 10}, "segments": segments}]})
    };
    let post = |body: Value| {
        let s = s.clone();
        async move {
            let (code, resp) = call(&s, "POST", "/v1/reports", Some(body)).await;
            assert_eq!(code, StatusCode::ACCEPTED, "{resp}");
        }
    };
    post(report(1, "v2", json!({"employees": 7, "beta": 2, "nope": 99}))).await;
    post(report(1, "v2", json!({"employees": 7}))).await; // a duplicate: not counted again
    post(report(2, "v1", json!({"enterprise": 5, "beta": 1}))).await;
    post(report(3, "v9", json!({"employees": 50}))).await; // not one of the rollout's versions
    let (_, st) = call(&s, "GET", "/v1/rollouts/support", None).await;
    assert_eq!(st["live"]["session"], json!({"cookie": "sid"}));
    assert_eq!(
        st["live"]["segments"],
        json!([
            {"name": "employees", "applied": true, "requests": {"v1": 0, "v2": 7}},
            {"name": "enterprise", "applied": true, "requests": {"v1": 5, "v2": 0}},
            {"name": "beta", "applied": true, "requests": {"v1": 1, "v2": 2}},
        ])
    );

    // A report over the bound is refused whole.
    let many: serde_json::Map<String, Value> = (0..65).map(|i| (format!("s{i}"), json!(1))).collect();
    let (code, _) = call(&s, "POST", "/v1/reports", Some(report(4, "v2", Value::Object(many)))).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);

    // Once the rollout has ended its segments are no longer published (a canary pin must not outlive
    // an abort); the session cookie stays.
    let (code, _) = call(&s, "POST", "/v1/rollouts/support/abort", None).await;
    assert_eq!(code, StatusCode::OK);
    let (_, config) = call(&s, "GET", "/v1/config", None).await;
    assert!(config["rollouts"][0].get("segments").is_none(), "{config}");
    assert_eq!(config["rollouts"][0]["session"]["cookie"], "sid");
    let (_, st) = call(&s, "GET", "/v1/rollouts/support", None).await;
    assert_eq!(st["live"]["segments"][0]["applied"], false);
}

fn blue_green(extra: Value) -> Value {
    common::with_fields(json!({"hosts": ["support-agent"], "stable": "v1", "canary": "v2", "strategy": "blue_green",
                          "preview_seconds": 30, "bake_seconds": 60, "segments": good_segments()}), extra)
}

#[tokio::test]
async fn a_bad_blue_green_spec_is_a_422_naming_the_field() {
    let s = state();
    let cases = [
        (json!({"steps": [10, 100]}), "steps does not apply to strategy \"blue_green\""),
        (json!({"step_seconds": 10}), "step_seconds does not apply to strategy \"blue_green\""),
        (json!({"bake_seconds": 0}), "bake_seconds must be at least 1"),
        (json!({"preview_seconds": 90000}), "preview_seconds = 90000 must be at most 86400"),
        (json!({"segments": null}), "preview_seconds: a preview sends only segments with version \"canary\" to green, and there is none"),
        (json!({"strategy": "canary"}), "preview_seconds applies to strategy \"blue_green\" only"),
        (json!({"strategy": "red_black"}), "unknown variant `red_black`"),
        (json!({"weight": 10}), "weight sets manual weighting and cannot be combined with strategy"),
    ];
    for (extra, want) in cases {
        let body = blue_green(extra.clone());
        let (code, resp) = call(&s, "PUT", "/v1/rollouts/support", Some(body)).await;
        assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{extra}: {resp}");
        let msg = resp["error"]["message"].as_str().unwrap();
        assert!(msg.contains(want), "{extra}: {msg:?} does not contain {want:?}");
    }
    // No preview needs no segment.
    let (code, resp) = call(&s, "PUT", "/v1/rollouts/support", Some(blue_green(json!({"preview_seconds": 0, "segments": null})))).await;
    assert_eq!(code, StatusCode::CREATED, "{resp}");
}

#[tokio::test]
async fn a_blue_green_preview_publishes_only_what_reaches_green() {
    let s = state();
    let (code, resp) = call(&s, "PUT", "/v1/rollouts/support", Some(blue_green(json!({})))).await;
    assert_eq!(code, StatusCode::CREATED, "{resp}");
    fledge_controller::driver::tick_once(&s, fledge_controller::state::now_ms()).unwrap();
    let (_, st) = call(&s, "GET", "/v1/rollouts/support", None).await;
    assert_eq!((st["status"]["phase"].as_str(), st["status"]["weight"].as_f64()), (Some("previewing"), Some(0.0)), "{st}");
    assert!(st["live"]["switch"].is_null(), "no switch yet: {st}");
    let (_, config) = call(&s, "GET", "/v1/config", None).await;
    let segments = &config["rollouts"][0]["segments"];
    assert_eq!(segments[0]["version"], "canary");
    assert_eq!(segments[1]["version"], "stable");
    assert_eq!((segments[2]["version"].as_str(), segments[2].get("weight")), (Some("stable"), None), "beta's users stay on blue: {segments}");
    assert_eq!(st["live"]["segments"][2]["applied_as"], json!({"version": "stable"}));
}
