//! The dashboard's API through `app(state).oneshot(..)`: the server-sent event streams (the first event
//! arrives at once and parses, commits and sampled points follow, a client that falls behind skips to
//! the current state) and the time series endpoint.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use fledge_controller::state::NOTICES;
use fledge_controller::{app, AppState};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

mod common;

use common::call;

async fn put_manual(state: &AppState, weight: f64) {
    let spec = json!({"hosts": ["support-agent"], "stable": "v1", "canary": "v2", "weight": weight});
    let (code, body) = call(state, "PUT", "/v1/rollouts/support", Some(spec)).await;
    assert!(code.is_success(), "{code} {body}");
}

/// One server-sent event as a client parses it.
#[derive(Debug)]
struct Sse {
    event: String,
    data: Value,
    retry: Option<u64>,
}

/// Reads a stream's events as they come, with a deadline for each.
struct Events {
    body: Body,
    buffer: String,
}

impl Events {
    async fn open(state: &AppState, uri: &str) -> (StatusCode, String, Events) {
        let resp = app(state.clone()).oneshot(Request::get(uri).body(Body::empty()).unwrap()).await.unwrap();
        let content_type = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
        (resp.status(), content_type, Events { body: resp.into_body(), buffer: String::new() })
    }

    async fn next(&mut self) -> Sse {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut sse = Sse { event: "message".into(), data: Value::Null, retry: None };
                let mut data = String::new();
                for line in block.lines() {
                    match line.split_once(':') {
                        Some(("event", v)) => sse.event = v.trim().to_string(),
                        Some(("data", v)) => data.push_str(v.strip_prefix(' ').unwrap_or(v)),
                        Some(("retry", v)) => sse.retry = Some(v.trim().parse().unwrap()),
                        _ => {}
                    }
                }
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                sse.data = serde_json::from_str(&data).unwrap_or_else(|e| panic!("event data is not JSON ({e}): {data}"));
                return sse;
            }
            let frame = tokio::time::timeout(Duration::from_secs(5), self.body.frame()).await.expect("an event within 5 s");
            let bytes = frame.expect("the stream ended").unwrap().into_data().unwrap_or_default();
            self.buffer.push_str(std::str::from_utf8(&bytes).unwrap());
        }
    }
}

#[tokio::test]
async fn a_rollout_stream_starts_with_the_status_and_follows_every_commit() {
    let s = common::state(50);
    put_manual(&s, 10.0).await;
    let (code, content_type, mut events) = Events::open(&s, "/v1/rollouts/support/stream").await;
    assert_eq!(code, StatusCode::OK);
    assert!(content_type.starts_with("text/event-stream"), "{content_type}");

    // The first event at once: the same status as GET /v1/rollouts/{name}, and a retry hint.
    let first = events.next().await;
    assert_eq!(first.event, "rollout");
    assert!(first.retry.is_some(), "a retry hint");
    let (_, status) = call(&s, "GET", "/v1/rollouts/support", None).await;
    assert_eq!(first.data["rollout"]["status"], status["status"]);
    assert_eq!(first.data["rollout"]["live"]["summary"], status["live"]["summary"]);
    assert_eq!(first.data["event"], Value::Null);

    // A commit: the new status and the event record, as GET …/events lists it.
    put_manual(&s, 20.0).await;
    let replaced = events.next().await;
    assert_eq!(replaced.data["rollout"]["status"]["weight"], json!(20.0));
    assert_eq!(replaced.data["event"]["kind"], "replaced");
    let (_, listed) = call(&s, "GET", "/v1/rollouts/support/events", None).await;
    assert_eq!(replaced.data["event"], listed["events"][1], "the stream's record is the stored one, with its seq");

    // A sampled point: the series' gates and the point.
    fledge_controller::series::sample_once(&s, fledge_controller::state::now_ms());
    let sampled = events.next().await;
    assert_eq!(sampled.data["series"]["point"]["weight"], json!(20.0));
    assert_eq!(sampled.data["series"]["point"]["phase"], "manual");

    // Deleted.
    call(&s, "DELETE", "/v1/rollouts/support", None).await;
    let deleted = events.next().await;
    assert_eq!((deleted.event.as_str(), &deleted.data), ("deleted", &json!({"name": "support"})));

    let (code, _, _) = Events::open(&s, "/v1/rollouts/nope/stream").await;
    assert_eq!(code, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_all_rollouts_stream_starts_with_a_snapshot_even_when_empty() {
    let s = common::state(50);
    let (code, _, mut events) = Events::open(&s, "/v1/stream").await;
    assert_eq!(code, StatusCode::OK);
    let first = events.next().await;
    assert_eq!(first.event, "snapshot");
    assert_eq!(first.data["rollouts"], json!([]));
    put_manual(&s, 5.0).await;
    let created = events.next().await;
    assert_eq!((created.event.as_str(), created.data["event"]["kind"].as_str()), ("rollout", Some("created")));
    assert_eq!(created.data["rollout"]["name"], "support");
}

#[tokio::test]
async fn a_client_that_falls_behind_skips_to_the_current_status() {
    let s = common::state(50);
    put_manual(&s, 1.0).await;
    let (_, _, mut events) = Events::open(&s, "/v1/rollouts/support/stream").await;
    events.next().await;
    // More commits than the channel keeps, while the client reads nothing.
    for i in 0..(NOTICES + 20) {
        put_manual(&s, (i % 100) as f64).await;
    }
    let caught_up = events.next().await;
    assert!(caught_up.data["skipped"].as_u64().unwrap() >= 20, "{}", caught_up.data["skipped"]);
    assert_eq!(caught_up.data["rollout"]["status"]["weight"], json!(((NOTICES + 19) % 100) as f64), "the current status");
    // Then it follows again, one notice at a time.
    let next = events.next().await;
    assert!(next.data.get("skipped").is_none());
}

#[tokio::test]
async fn the_series_endpoint_serves_the_sampled_points() {
    let s = common::state(50);
    put_manual(&s, 10.0).await;
    let t0 = 1_700_000_000_000;
    fledge_controller::series::sample_once(&s, t0);
    fledge_controller::series::sample_once(&s, t0 + 1_000); // nothing moved: no point
    put_manual(&s, 30.0).await;
    fledge_controller::series::sample_once(&s, t0 + 2_000);
    let (code, series) = call(&s, "GET", "/v1/rollouts/support/series", None).await;
    assert_eq!(code, StatusCode::OK, "{series}");
    let weights: Vec<f64> = series["points"].as_array().unwrap().iter().map(|p| p["weight"].as_f64().unwrap()).collect();
    assert_eq!(weights, [10.0, 30.0]);
    assert_eq!(series["resolution_ms"]["fine"], json!(1_000));
    let (_, later) = call(&s, "GET", &format!("/v1/rollouts/support/series?since_ms={}", t0 + 1_000), None).await;
    assert_eq!(later["points"].as_array().unwrap().len(), 1);
    assert_eq!(call(&s, "GET", "/v1/rollouts/support/series?since_ms=x", None).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(call(&s, "GET", "/v1/rollouts/nope/series", None).await.0, StatusCode::NOT_FOUND);
}
