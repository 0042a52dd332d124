//! Human-readable window metrics for the status API.

use fledge_core::analysis::VersionStats;
use serde_json::{json, Value};

pub fn summary(version: &str, s: &VersionStats) -> Value {
    json!({
        "version": version,
        "requests": s.requests,
        "unmeasured": s.unmeasured,
        "errors": s.errors,
        "responses": {"2xx": s.status_2xx, "3xx": s.status_3xx, "4xx": s.status_4xx, "5xx": s.status_5xx},
        "error_rate": s.error_rate(),
        "latency_p50_ms": s.latency_p50_ms(),
        "latency_p99_ms": s.latency_p99_ms(),
        "outcomes": s.outcomes(),
        "task_success_rate": s.task_success_rate(),
        "cost_per_task": s.cost_per_task(),
        "policy_violation_rate": s.policy_violation_rate(),
        "latency_ttft_p99_ms": s.latency_ttft.quantile(0.99).map(|us| us / 1000.0),
        "evaluations": s.evaluations.iter().map(|(name, e)| (name.clone(), json!({
            "count": e.count, "mean": e.mean(), "labelled": e.labelled, "pass_rate": e.pass_rate(),
        }))).collect::<serde_json::Map<String, Value>>(),
        "malformed": {
            "outcome": s.outcome_malformed,
            "cost": s.cost_malformed,
            "policy_violations": s.policy_malformed,
        },
    })
}
