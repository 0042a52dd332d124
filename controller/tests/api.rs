//! The REST API through `app(state).oneshot(..)`: contract, validation and the long poll.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use fledge_controller::store::Store;
use fledge_controller::{app, AppState, Settings};
use serde_json::{json, Value};
use tower::ServiceExt;

mod common;

use common::state_with;

fn state() -> AppState {
    common::state(300)
}

async fn call(state: &AppState, method: &str, uri: &str, body: Option<&str>) -> (StatusCode, Value) {
    common::request(state, method, uri, body.map(|b| b.as_bytes().to_vec())).await
}

const SPEC: &str = r#"{"hosts":["support-agent"],"stable":"v1","canary":"v2","weight":10}"#;

#[tokio::test]
async fn crud_bumps_generation() {
    let s = state();
    let (code, body) = call(&s, "PUT", "/v1/rollouts/support", Some(SPEC)).await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    assert_eq!(body["status"]["weight"], json!(10.0));
    assert_eq!(body["status"]["generation"], json!(1));
    let (code, _) = call(&s, "PUT", "/v1/rollouts/support", Some(&SPEC.replace("10", "12.5"))).await;
    assert_eq!(code, StatusCode::OK);
    let (_, one) = call(&s, "GET", "/v1/rollouts/support", None).await;
    assert_eq!(one["status"]["weight"], json!(12.5));
    let (_, all) = call(&s, "GET", "/v1/rollouts", None).await;
    assert_eq!(all["generation"], json!(2));
    assert_eq!(all["rollouts"].as_array().unwrap().len(), 1);
    let (code, _) = call(&s, "DELETE", "/v1/rollouts/support", None).await;
    assert_eq!(code, StatusCode::NO_CONTENT);
    let (code, body) = call(&s, "GET", "/v1/rollouts/support", None).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert!(body["error"]["message"].as_str().unwrap().contains("support"));
    let (code, _) = call(&s, "DELETE", "/v1/rollouts/support", None).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let (_, health) = call(&s, "GET", "/healthz", None).await;
    assert_eq!(health["generation"], json!(3));
    assert_eq!(health["held_polls"], json!(0), "no proxy polling");
}

#[tokio::test]
async fn bad_input_is_a_4xx_naming_the_problem_and_changes_nothing() {
    let s = state();
    call(&s, "PUT", "/v1/rollouts/taken", Some(r#"{"hosts":["shared"],"stable":"a","canary":"b"}"#)).await;
    let cases = [
        ("support", r#"{"hosts":["x"],"stable":"v1","canary":"v2","weight":101}"#, 422, "between 0 and 100"),
        ("support", r#"{"hosts":["x"],"stable":"v1","canary":"v2","weight":-1}"#, 422, "between 0 and 100"),
        ("support", r#"{"hosts":["x"],"stable":"v1","canary":"v2","weight":1.234}"#, 422, "two decimals"),
        ("support", r#"{"hosts":[],"stable":"v1","canary":"v2"}"#, 422, "hosts must not be empty"),
        ("support", r#"{"hosts":["x"],"stable":"v1","canary":"v1"}"#, 422, "different"),
        ("support", r#"{"hosts":["SHARED"],"stable":"v1","canary":"v2"}"#, 409, "already owned by rollout \"taken\""),
        ("support", r#"{"hosts":["x"],"stable":"v1","canary":"v2","colour":"red"}"#, 422, "colour"),
        ("support", r#"{"hosts":["x"],"stable":"v1""#, 400, "malformed JSON"),
        ("support", r#"{"hosts":"x","stable":"v1","canary":"v2"}"#, 422, "invalid type"),
        ("Bad Name", SPEC, 400, "name"),
        // Found by schemathesis: an interval this long overflowed the driver's schedule and killed it.
        ("support", r#"{"hosts":["x"],"stable":"v1","canary":"v2","analysis":{"interval_seconds":1e300}}"#, 422, "at most 3600"),
        ("support", r#"{"hosts":["x"],"stable":"v1","canary":"v2","notifications":[{"url":"https://u:p@hooks.example.com/","events":["paused"]}]}"#, 422, "notifications[0].url: has credentials"),
        ("support", r#"{"hosts":["x"],"stable":"v1","canary":"v2","notifications":[{"url":"http://r/","events":["paused","deleted"]}]}"#, 422, "notifications[0].events[1]: unknown event \"deleted\""),
        ("support", r#"{"hosts":["x"],"stable":"v1","canary":"v2","notifications":[{"url":"http://r/","events":["paused"],"format":"xml"}]}"#, 422, "notifications[0]: unknown variant `xml`"),
    ];
    for (name, body, code, needle) in cases {
        let uri = format!("/v1/rollouts/{}", name.replace(' ', "%20"));
        let (got, resp) = call(&s, "PUT", &uri, Some(body)).await;
        assert_eq!(got.as_u16(), code, "{body} → {resp}");
        let msg = resp["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains(needle), "{body}: message {msg:?} should mention {needle:?}");
    }
    let (_, all) = call(&s, "GET", "/v1/rollouts", None).await;
    assert_eq!(all["generation"], json!(1), "no rejected request changed anything");
    let (code, body) = call(&s, "GET", "/v1/config?since=abc", None).await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{body}");
    let (code, body) = call(&s, "GET", "/v1/nope", None).await;
    assert_eq!(code, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test]
async fn long_poll_answers_on_change_and_times_out_with_304() {
    let s = state();
    let (code, snap) = call(&s, "GET", "/v1/config?since=5", None).await;
    assert_eq!(code, StatusCode::OK, "a proxy ahead of the controller is answered at once");
    let epoch = snap["epoch"].as_str().unwrap().to_string();
    assert_eq!(snap, json!({"epoch": epoch, "generation": 0, "rollouts": []}));
    let (code, _) = call(&s, "GET", "/v1/config?since=0", None).await;
    assert_eq!(code, StatusCode::NOT_MODIFIED, "held for the hold time, then 304");
    let (code, _) = call(&s, "GET", &format!("/v1/config?since=0&epoch={epoch}"), None).await;
    assert_eq!(code, StatusCode::NOT_MODIFIED, "same data, same generation: held");
    let (code, snap) = call(&s, "GET", "/v1/config?since=0&epoch=0123456789abcdef", None).await;
    assert_eq!(code, StatusCode::OK, "generation 0 of other data is not ours: answered at once");
    assert_eq!(snap["epoch"], json!(epoch));

    // The hold (300 ms) is longer than the wait before the change, so the change is what answers.
    let waiter = tokio::spawn({
        let s = s.clone();
        async move { call(&s, "GET", "/v1/config?since=0", None).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    call(&s, "PUT", "/v1/rollouts/support", Some(SPEC)).await;
    let (code, snap) = waiter.await.unwrap();
    assert_eq!(code, StatusCode::OK);
    assert_eq!(snap["generation"], json!(1));
    assert_eq!(snap["rollouts"][0]["weight"], json!(10.0));
    assert_eq!(snap["rollouts"][0]["hosts"], json!(["support-agent"]));
    assert!(snap["rollouts"][0]["salt"].is_u64());
}

/// A config poll naming its proxy; returns the status and whether it was answered as superseded.
async fn poll_as(state: &AppState, proxy: &str) -> (StatusCode, bool) {
    let req = Request::builder()
        .uri("/v1/config?since=0")
        .header("x-fledge-proxy", proxy)
        .body(Body::empty())
        .unwrap();
    let resp = app(state.clone()).oneshot(req).await.unwrap();
    (
        resp.status(),
        resp.headers()
            .get("x-fledge-superseded")
            .is_some_and(|v| v == "true"),
    )
}

async fn wait_held(state: &AppState, n: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while state.held_polls() != n {
        assert!(
            std::time::Instant::now() < deadline,
            "{} polls held, expected {n}",
            state.held_polls()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A lease that changed hands inside one Envoy leaves the old context's poll held; the new holder's
/// poll (same `x-fledge-proxy`) has the controller answer it at once, so one poll per proxy is held.
#[tokio::test]
async fn a_newer_poll_of_the_same_proxy_supersedes_the_held_one() {
    let s = common::state(20_000);
    let started = std::time::Instant::now();
    let old = tokio::spawn({
        let s = s.clone();
        async move { poll_as(&s, "envoy-a").await }
    });
    wait_held(&s, 1).await;
    // Older than the minimum age, as a poll left behind by a lapsed lease always is.
    tokio::time::sleep(fledge_controller::pollers::MIN_AGE + Duration::from_millis(100)).await;
    let new = tokio::spawn({
        let s = s.clone();
        async move { poll_as(&s, "envoy-a").await }
    });
    assert_eq!(
        old.await.unwrap(),
        (StatusCode::NOT_MODIFIED, true),
        "the left-behind poll is answered"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "answered long before its 20 s hold"
    );
    wait_held(&s, 1).await;
    assert_eq!(s.pollers().superseded(), 1);

    // Another proxy's poll and a poll too young to supersede anything change nothing: two Envoys
    // sharing an id by mistake cannot answer each other's polls in a loop.
    let other = tokio::spawn({
        let s = s.clone();
        async move { poll_as(&s, "envoy-b").await }
    });
    let twin = tokio::spawn({
        let s = s.clone();
        async move { poll_as(&s, "envoy-a").await }
    });
    wait_held(&s, 3).await;
    assert_eq!(s.pollers().superseded(), 1);
    let (code, _) = call(&s, "PUT", "/v1/rollouts/support", Some(SPEC)).await;
    assert!(code.is_success());
    for poll in [new, other, twin] {
        assert_eq!(
            poll.await.unwrap(),
            (StatusCode::OK, false),
            "a change answers every held poll"
        );
    }
    assert_eq!(s.pollers().tracked(), 0, "answered polls are forgotten");

    let req = Request::builder()
        .uri("/v1/config?since=0")
        .header("x-fledge-proxy", "")
        .body(Body::empty())
        .unwrap();
    let resp = app(s.clone()).oneshot(req).await.unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::BAD_REQUEST,
        "an empty proxy id is refused"
    );
}

#[tokio::test]
async fn token_guards_mutations_and_config() {
    let s = state_with(Settings { poll_hold: Duration::from_millis(100), token: Some("s3cret".into()), ..Settings::default() });
    let (code, body) = call(&s, "PUT", "/v1/rollouts/support", Some(SPEC)).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED, "{body}");
    let (code, _) = call(&s, "GET", "/v1/config", None).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    let req = Request::builder()
        .method("PUT")
        .uri("/v1/rollouts/support")
        .header("authorization", "Bearer s3cret")
        .body(Body::from(SPEC))
        .unwrap();
    assert_eq!(app(s.clone()).oneshot(req).await.unwrap().status(), StatusCode::CREATED);
    let (code, _) = call(&s, "GET", "/v1/rollouts", None).await;
    assert_eq!(code, StatusCode::OK, "reads stay open");
}

#[tokio::test]
async fn state_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = AppState::new(Store::open(dir.path()).unwrap(), Settings::default()).unwrap();
        call(&s, "PUT", "/v1/rollouts/support", Some(SPEC)).await;
        call(&s, "PUT", "/v1/rollouts/support", Some(&SPEC.replace("10", "20"))).await;
    }
    let s = AppState::new(Store::open(dir.path()).unwrap(), Settings::default()).unwrap();
    assert_eq!(s.current().generation, 2);
    let (_, one) = call(&s, "GET", "/v1/rollouts/support", None).await;
    assert_eq!(one["status"]["weight"], json!(20.0));
}

async fn call_raw(state: &AppState, method: &str, uri: &str, body: Vec<u8>) -> (StatusCode, Value) {
    common::request(state, method, uri, Some(body)).await
}

#[tokio::test]
async fn hostile_reports_and_outcomes_are_refused_with_the_reason() {
    let s = state();
    call(&s, "PUT", "/v1/rollouts/support", Some(SPEC)).await;
    let cases: Vec<(&str, Vec<u8>, StatusCode, &str)> = vec![
        ("oversized", vec![b' '; 2 << 20], StatusCode::PAYLOAD_TOO_LARGE, "larger than the 1048576 bytes"),
        ("garbage", b"\x00{{".to_vec(), StatusCode::BAD_REQUEST, "malformed report"),
        ("wrong types", br#"{"proxy":1,"worker":"w","seq":1,"generation":1}"#.to_vec(), StatusCode::UNPROCESSABLE_ENTITY, "invalid type"),
        ("empty proxy", br#"{"proxy":"","worker":"w","seq":1,"generation":1}"#.to_vec(), StatusCode::UNPROCESSABLE_ENTITY, "proxy must be"),
        ("bucket", br#"{"proxy":"p","worker":"w","seq":1,"generation":1,"versions":[{"rollout":"support","version":"v2","stats":{"latency_total":{"buckets":[[9999,1]]}}}]}"#.to_vec(), StatusCode::UNPROCESSABLE_ENTITY, "bucket index 9999"),
    ];
    for (what, body, code, needle) in cases {
        let (got, body) = call_raw(&s, "POST", "/v1/reports", body).await;
        assert_eq!(got, code, "{what}: {body}");
        assert!(body["error"]["message"].as_str().unwrap_or_default().contains(needle), "{what}: {body}");
    }
    let many = format!("[{}]", vec![r#"{"version":"v2","outcome":"success"}"#; 10_001].join(","));
    let (code, body) = call_raw(&s, "POST", "/v1/rollouts/support/outcomes", many.into_bytes()).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("at most 10000"), "{body}");
    let (code, body) = call_raw(&s, "POST", "/v1/rollouts/support/outcomes", br#"[{"version":"v2","outcome":"success"},{"version":"v2","outcme":"x"}]"#.to_vec()).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("outcome [1]: unknown field `outcme`"), "{body}");
    let (_, status) = call(&s, "GET", "/v1/rollouts/support", None).await;
    assert_eq!(status["live"]["window"]["canary"]["requests"], json!(0), "nothing refused was merged");
}

/// Every Envoy restart brings new worker ids (random per VM); the controller's table of them stays
/// bounded however many come.
#[tokio::test]
async fn the_worker_table_stays_bounded_across_many_envoy_restarts() {
    let s = state();
    call(&s, "PUT", "/v1/rollouts/support", Some(SPEC)).await;
    let restarts = fledge_controller::live::MAX_WORKERS + 4_000;
    for i in 0..restarts {
        let report = json!({"proxy": "envoy-1", "worker": format!("{i:08x}"), "seq": 1, "generation": 1,
                            "versions": [{"rollout": "support", "version": "v1", "stats": {"requests": 1}}]});
        let (code, body) = call_raw(&s, "POST", "/v1/reports", report.to_string().into_bytes()).await;
        assert_eq!(code, StatusCode::ACCEPTED, "{body}");
    }
    let (_, health) = call(&s, "GET", "/healthz", None).await;
    assert_eq!(health["workers"].as_u64(), Some(fledge_controller::live::MAX_WORKERS as u64), "{health}");
    let (_, status) = call(&s, "GET", "/v1/rollouts/support", None).await;
    assert_eq!(status["live"]["window"]["stable"]["requests"].as_u64(), Some(restarts as u64), "every report still counted");
}

#[tokio::test]
async fn metrics_are_the_prometheus_text_format_from_the_committed_view() {
    let s = state();
    call(&s, "PUT", "/v1/rollouts/support", Some(SPEC)).await;
    let req = Request::builder().uri("/metrics").body(Body::empty()).unwrap();
    let resp = app(s.clone()).oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/plain; version=0.0.4");
    let text = String::from_utf8(http_body_util::BodyExt::collect(resp.into_body()).await.unwrap().to_bytes().to_vec()).unwrap();
    for line in [
        "# TYPE fledge_rollout_phase gauge",
        "fledge_rollout_phase{phase=\"manual\",rollout=\"support\"} 1",
        "fledge_rollout_phase{phase=\"progressing\",rollout=\"support\"} 0",
        "fledge_rollout_canary_weight_ratio{rollout=\"support\"} 0.1",
        "# TYPE fledge_rollbacks_total counter",
        "fledge_rollbacks_total{rollout=\"support\"} 0",
        "fledge_rollout_proxies_active{rollout=\"support\"} 0",
        "fledge_config_generation 1",
        "fledge_notifications_pending 0",
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} missing from\n{text}");
    }
    assert!(!text.contains("fledge_rollout_step{"), "a manual rollout has no step");
}
