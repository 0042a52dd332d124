//! `POST /v1/logs`: an OTLP/HTTP logs receiver for evaluation results.
//!
//! Evaluators (LLM judges, user-feedback pipelines) speak OpenTelemetry: the GenAI semantic
//! conventions define the event `gen_ai.evaluation.result` with `gen_ai.evaluation.name`,
//! `gen_ai.evaluation.score.value`, `gen_ai.evaluation.score.label`, and a Collector's `otlphttp`
//! exporter can send them here as protobuf (its default) or OTLP JSON. Each such record becomes an
//! evaluation of one rollout's version, resolved in this order: the attributes `fledge.rollout` and
//! `fledge.version`; `gen_ai.agent.name` + `gen_ai.agent.version` (a rollout of that name, a version
//! it runs); the resource's `service.name` + `service.version`. Records that are not evaluations or
//! match nothing are counted in `partialSuccess.rejectedLogRecords` with the reason.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use fledge_core::analysis::VersionStats;
use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use prost::Message;

use crate::api::IngestBody;
use crate::error::ApiError;
use crate::ingest::Evaluation;
use crate::state::AppState;

pub const EVENT: &str = "gen_ai.evaluation.result";

#[derive(Clone, Copy, PartialEq)]
enum Encoding {
    Protobuf,
    Json,
}

pub async fn logs(
    State(state): State<AppState>,
    headers: HeaderMap,
    IngestBody { bytes: body, slot }: IngestBody,
) -> Result<Response, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let encoding = if content_type.starts_with("application/x-protobuf") {
        Encoding::Protobuf
    } else if content_type.starts_with("application/json") {
        Encoding::Json
    } else {
        return Err(ApiError::BadRequest(format!("content-type {content_type:?}: send application/x-protobuf or application/json (OTLP/HTTP)")));
    };
    let request: ExportLogsServiceRequest = match encoding {
        Encoding::Protobuf => Message::decode(body.as_ref()).map_err(|e| ApiError::BadRequest(format!("not an OTLP ExportLogsServiceRequest: {e}")))?,
        Encoding::Json => {
            let value: serde_json::Value = serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("not JSON: {e}")))?;
            check_shape(&value).map_err(|e| ApiError::BadRequest(format!("not OTLP JSON for logs: {e}")))?;
            serde_json::from_value(value).map_err(|e| ApiError::BadRequest(format!("not OTLP JSON for logs: {e}")))?
        }
    };
    let view = state.view();
    let resolve = |rollout: &str, version: &str| {
        view.rollout(rollout).filter(|r| r.spec.stable == version || r.spec.canary == version).map(|r| (r.name.clone(), r.status.window))
    };
    let mut accepted: HashMap<(String, u64), Vec<(String, VersionStats)>> = HashMap::new();
    let (mut rejected, mut reasons) = (0i64, Vec::<String>::new());
    let mut reject = |why: String| {
        rejected += 1;
        if reasons.len() < 3 && !reasons.contains(&why) {
            reasons.push(why);
        }
    };
    for rl in &request.resource_logs {
        let resource = rl.resource.as_ref().map(|r| r.attributes.as_slice()).unwrap_or_default();
        for sl in &rl.scope_logs {
            for record in &sl.log_records {
                let attrs = record.attributes.as_slice();
                let event = Some(record.event_name.as_str()).filter(|e| !e.is_empty()).map(str::to_string).or_else(|| text(attrs, "event.name"));
                if event.as_deref() != Some(EVENT) {
                    reject(format!("not a {EVENT} event"));
                    continue;
                }
                let target = [
                    (text(attrs, "fledge.rollout"), text(attrs, "fledge.version")),
                    (text(attrs, "gen_ai.agent.name"), text(attrs, "gen_ai.agent.version")),
                    (text(resource, "service.name"), text(resource, "service.version")),
                ]
                .into_iter()
                .find_map(|(r, v)| resolve(r.as_deref()?, v.as_deref()?).map(|found| (found, v)));
                let Some(((rollout, window), Some(version))) = target else {
                    reject("no rollout and version matched (fledge.rollout/fledge.version, gen_ai.agent.name/version, service.name/version)".into());
                    continue;
                };
                let Some(name) = text(attrs, "gen_ai.evaluation.name") else {
                    reject("gen_ai.evaluation.name is missing".into());
                    continue;
                };
                let evaluation = Evaluation { name, score: number(attrs, "gen_ai.evaluation.score.value"), label: text(attrs, "gen_ai.evaluation.score.label") };
                match evaluation.to_stats() {
                    Ok(stats) => accepted.entry((rollout, window)).or_default().push((version, stats)),
                    Err(why) => reject(why),
                }
            }
        }
    }
    drop((slot, body, request));
    for ((rollout, _window), items) in accepted {
        crate::ingest::add_outcomes(&state, &rollout, items).await?;
    }
    let response = ExportLogsServiceResponse {
        partial_success: (rejected > 0).then(|| ExportLogsPartialSuccess { rejected_log_records: rejected, error_message: reasons.join("; ") }),
    };
    Ok(match encoding {
        Encoding::Protobuf => (StatusCode::OK, [(header::CONTENT_TYPE, "application/x-protobuf")], response.encode_to_vec()).into_response(),
        Encoding::Json => {
            // OTLP JSON leaves an absent partial success out rather than writing null.
            let body = match &response.partial_success {
                Some(p) => serde_json::json!({"partialSuccess": {"rejectedLogRecords": p.rejected_log_records, "errorMessage": p.error_message}}),
                None => serde_json::json!({}),
            };
            let body = serde_json::to_vec(&body).map_err(|e| ApiError::Internal(e.to_string()))?;
            (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
    })
}

/// serde reads a struct from an array too; OTLP JSON's messages are objects, so check the nesting
/// (resourceLogs → scopeLogs → logRecords) first.
fn check_shape(v: &serde_json::Value) -> Result<(), String> {
    fn objects<'a>(v: Option<&'a serde_json::Value>, what: &str) -> Result<Vec<&'a serde_json::Map<String, serde_json::Value>>, String> {
        match v {
            None | Some(serde_json::Value::Null) => Ok(Vec::new()),
            Some(serde_json::Value::Array(items)) => items.iter().map(|i| i.as_object().ok_or_else(|| format!("{what} must hold objects"))).collect(),
            Some(_) => Err(format!("{what} must be an array")),
        }
    }
    let top = v.as_object().ok_or("the body must be an object")?;
    for rl in objects(top.get("resourceLogs"), "resourceLogs")? {
        for sl in objects(rl.get("scopeLogs"), "scopeLogs")? {
            objects(sl.get("logRecords"), "logRecords")?;
        }
    }
    Ok(())
}

fn find<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a Any> {
    attrs.iter().find(|kv| kv.key == key).and_then(|kv| kv.value.as_ref()).and_then(|v| v.value.as_ref())
}

fn text(attrs: &[KeyValue], key: &str) -> Option<String> {
    match find(attrs, key)? {
        Any::StringValue(s) => Some(s.clone()),
        Any::IntValue(i) => Some(i.to_string()),
        _ => None,
    }
}

fn number(attrs: &[KeyValue], key: &str) -> Option<f64> {
    match find(attrs, key)? {
        Any::DoubleValue(d) => Some(*d),
        Any::IntValue(i) => Some(*i as f64),
        Any::StringValue(s) => s.parse().ok(),
        _ => None,
    }
}
