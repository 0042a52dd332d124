//! `POST /v1/logs` (OTLP/HTTP) and evaluation outcomes through the API.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use axum::body::Body;
use axum::http::{Request, StatusCode};
use fledge_controller::app;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

mod common;

fn kv(key: &str, value: Value) -> Value {
    json!({"key": key, "value": value})
}

fn record(attrs: Vec<Value>) -> Value {
    json!({"eventName": "gen_ai.evaluation.result", "attributes": attrs})
}

fn evaluation(rollout: &str, version: &str, score: f64, label: &str) -> Value {
    record(vec![
        kv("fledge.rollout", json!({"stringValue": rollout})),
        kv("fledge.version", json!({"stringValue": version})),
        kv("gen_ai.evaluation.name", json!({"stringValue": "helpfulness"})),
        kv("gen_ai.evaluation.score.value", json!({"doubleValue": score})),
        kv("gen_ai.evaluation.score.label", json!({"stringValue": label})),
    ])
}

async fn post(state: &fledge_controller::AppState, content_type: &str, body: Vec<u8>) -> (StatusCode, Vec<u8>) {
    let req = Request::builder().method("POST").uri("/v1/logs").header("content-type", content_type).body(Body::from(body)).unwrap();
    let resp = app(state.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    (status, resp.into_body().collect().await.unwrap().to_bytes().to_vec())
}

#[tokio::test]
async fn evaluations_over_otlp_json_and_protobuf_reach_the_window() {
    let s = common::state(50);
    let spec = json!({"hosts": ["support-agent"], "stable": "v1", "canary": "v2", "weight": 10});
    let (code, _) = common::request(&s, "PUT", "/v1/rollouts/support", Some(spec.to_string().into_bytes())).await;
    assert_eq!(code, StatusCode::CREATED);
    // JSON: two matched by fledge.* attributes, one by the agent attributes, one by the resource; one
    // names no rollout, one is not an evaluation.
    let by_agent = record(vec![
        kv("gen_ai.agent.name", json!({"stringValue": "support"})),
        kv("gen_ai.agent.version", json!({"stringValue": "v2"})),
        kv("gen_ai.evaluation.name", json!({"stringValue": "helpfulness"})),
        kv("gen_ai.evaluation.score.value", json!({"intValue": "3"})),
        kv("gen_ai.evaluation.score.label", json!({"stringValue": "fail"})),
    ]);
    let by_resource = record(vec![kv("gen_ai.evaluation.name", json!({"stringValue": "helpfulness"})), kv("gen_ai.evaluation.score.value", json!({"doubleValue": 5.0}))]);
    let body = json!({"resourceLogs": [
        {"scopeLogs": [{"logRecords": [evaluation("support", "v1", 4.0, "pass"), evaluation("support", "v2", 4.5, "pass"), by_agent,
                                         evaluation("nope", "v2", 1.0, "fail"), {"body": {"stringValue": "just a log line"}}]}]},
        {"resource": {"attributes": [kv("service.name", json!({"stringValue": "support"})), kv("service.version", json!({"stringValue": "v2"}))]},
         "scopeLogs": [{"logRecords": [by_resource]}]}
    ]});
    let (code, resp) = post(&s, "application/json", body.to_string().into_bytes()).await;
    assert_eq!(code, StatusCode::OK, "{}", String::from_utf8_lossy(&resp));
    let resp: Value = serde_json::from_slice(&resp).unwrap();
    assert_eq!(resp["partialSuccess"]["rejectedLogRecords"], json!(2), "{resp}");
    assert!(resp["partialSuccess"]["errorMessage"].as_str().unwrap().contains("no rollout and version matched"), "{resp}");

    // Protobuf, the Collector exporter's default.
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use prost::Message;
    let proto: ExportLogsServiceRequest = serde_json::from_value(json!({"resourceLogs": [{"scopeLogs": [{"logRecords": [evaluation("support", "v1", 3.0, "fail")]}]}]})).unwrap();
    let (code, resp) = post(&s, "application/x-protobuf", proto.encode_to_vec()).await;
    assert_eq!(code, StatusCode::OK);
    let decoded = opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse::decode(resp.as_slice()).unwrap();
    assert!(decoded.partial_success.is_none(), "everything was accepted");

    let (_, st) = common::request(&s, "GET", "/v1/rollouts/support", None).await;
    let e = |side: &str| st["live"]["window"][side]["evaluations"]["helpfulness"].clone();
    assert_eq!((e("stable")["count"].as_u64(), e("stable")["mean"].as_f64(), e("stable")["pass_rate"].as_f64()), (Some(2), Some(3.5), Some(0.5)));
    assert_eq!((e("canary")["count"].as_u64(), e("canary")["mean"].as_f64(), e("canary")["labelled"].as_u64()), (Some(3), Some(12.5 / 3.0), Some(2)));

    // Malformed bodies are 400s; other content types too.
    for (ct, body) in [("application/x-protobuf", vec![0xff, 0xff, 0xff]), ("application/json", b"{\"resourceLogs\": 7}".to_vec()), ("text/plain", b"hi".to_vec())] {
        let (code, resp) = post(&s, ct, body).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{ct}: {}", String::from_utf8_lossy(&resp));
    }
}

#[tokio::test]
async fn outcomes_take_evaluations_too() {
    let s = common::state(50);
    let spec = json!({"hosts": ["support-agent"], "stable": "v1", "canary": "v2", "weight": 10});
    common::request(&s, "PUT", "/v1/rollouts/support", Some(spec.to_string().into_bytes())).await;
    let body = json!([{"version": "v2", "evaluation": {"name": "helpfulness", "score": 4.0, "label": "pass"}},
                      {"version": "v2", "evaluation": {"name": "helpfulness", "score": 2.0}}]);
    let (code, resp) = common::request(&s, "POST", "/v1/rollouts/support/outcomes", Some(body.to_string().into_bytes())).await;
    assert_eq!(code, StatusCode::ACCEPTED, "{resp}");
    let (_, st) = common::request(&s, "GET", "/v1/rollouts/support", None).await;
    let e = &st["live"]["window"]["canary"]["evaluations"]["helpfulness"];
    assert_eq!((e["count"].as_u64(), e["mean"].as_f64(), e["pass_rate"].as_f64()), (Some(2), Some(3.0), Some(1.0)));
    for (bad, want) in [
        (json!({"version": "v2", "evaluation": {"name": "a b", "score": 1}}), "evaluation name"),
        (json!({"version": "v2", "evaluation": {"name": "h"}}), "a score or a label"),
        (json!({"version": "v2", "evaluation": {"name": "h", "score": 1e300}}), "finite number"),
    ] {
        let (code, resp) = common::request(&s, "POST", "/v1/rollouts/support/outcomes", Some(bad.to_string().into_bytes())).await;
        assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {resp}");
        assert!(resp["error"]["message"].as_str().unwrap().contains(want), "{resp}");
    }
}
