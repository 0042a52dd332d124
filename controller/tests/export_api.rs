//! `GET /v1/rollouts/{name}/export`: JSON Lines of a rollout's judged intervals and events, whose
//! counts add up to `status.totals`. Time and reports are injected (`tick_once`, posted reports).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::BTreeMap;

use axum::http::StatusCode;
use fledge_controller::driver::tick_once;
use serde_json::{json, Value};

mod common;

use common::{call, export, SPEC};

/// [`common::report`] with task outcomes (failures = errors) and a cost of 0.01 per request.
fn report(seq: u64, version: &str, requests: u64, errors: u64) -> Value {
    json!({"proxy": "p1", "worker": "w1", "seq": seq, "generation": 1, "versions": [{
        "rollout": "support", "version": version,
        "stats": {"requests": requests, "status_2xx": requests - errors, "status_5xx": errors, "errors": errors,
                  "latency_total": {"buckets": [[300, requests]]}, "outcome_success": requests - errors,
                  "outcome_failure": errors, "cost_count": requests, "cost_sum": 0.01 * requests as f64}}]})
}

/// Per version, the sum of the interval lines' counts (the fields the status keeps).
fn summed(lines: &[Value]) -> BTreeMap<String, BTreeMap<String, f64>> {
    let mut sums: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    for l in lines.iter().filter(|l| l["type"] == "interval") {
        let v = sums.entry(l["version"].as_str().unwrap().to_string()).or_default();
        for (k, x) in l["counts"].as_object().unwrap() {
            if let Some(x) = x.as_f64() {
                *v.entry(k.clone()).or_default() += x;
            }
        }
        if let Some(evals) = l["counts"]["evaluations"].as_object() {
            for (name, e) in evals {
                for (k, x) in e.as_object().unwrap() {
                    *v.entry(format!("{name}.{k}")).or_default() += x.as_f64().unwrap();
                }
            }
        }
    }
    sums
}

fn totals_of(status: &Value) -> BTreeMap<String, BTreeMap<String, f64>> {
    let mut out = BTreeMap::new();
    for (version, counts) in status["status"]["totals"]["versions"].as_object().unwrap() {
        let mut v = BTreeMap::new();
        for (k, x) in counts.as_object().unwrap() {
            if let Some(x) = x.as_f64() {
                v.insert(k.clone(), x);
            }
        }
        for (name, e) in counts["evaluations"].as_object().into_iter().flatten() {
            for (k, x) in e.as_object().unwrap() {
                v.insert(format!("{name}.{k}"), x.as_f64().unwrap());
            }
        }
        out.insert(version.clone(), v);
    }
    out
}

#[tokio::test]
async fn a_finished_rollouts_export_adds_up_to_its_status() {
    let s = common::state(50);
    let (code, body) = call(&s, "PUT", "/v1/rollouts/support", Some(serde_json::from_str(SPEC).unwrap())).await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    tick_once(&s, 1_000).unwrap();
    let mut seq = 0;
    let mut sent: BTreeMap<&str, u64> = BTreeMap::new();
    // Ten intervals at step 1, then the last step's dwell; evaluations arrive as late outcomes.
    let mut evaluations = 0;
    for at in (2_000..=30_000).step_by(1_000) {
        if call(&s, "GET", "/v1/rollouts/support", None).await.1["status"]["phase"] == "succeeded" {
            break;
        }
        for (version, requests, errors) in [("v1", 2_000, 1), ("v2", 200, 0)] {
            seq += 1;
            assert_eq!(call(&s, "POST", "/v1/reports", Some(report(seq, version, requests, errors))).await.0, StatusCode::ACCEPTED);
            *sent.entry(version).or_default() += requests;
        }
        let eval = json!({"version": "v2", "evaluation": {"name": "helpfulness", "score": 4.0, "label": "pass"}});
        assert_eq!(call(&s, "POST", "/v1/rollouts/support/outcomes", Some(eval)).await.0, StatusCode::ACCEPTED);
        evaluations += 1;
        tick_once(&s, at).unwrap();
    }
    let (_, st) = call(&s, "GET", "/v1/rollouts/support", None).await;
    assert_eq!(st["status"]["phase"], "succeeded", "{}", st["status"]["message"]);

    let (code, ct, lines) = export(&s, "support").await;
    assert_eq!((code, ct.as_str()), (StatusCode::OK, "application/jsonl"));
    let (first, last) = (lines.first().unwrap(), lines.last().unwrap());
    assert_eq!(first["type"], "rollout");
    assert_eq!(first["rollout"]["status"], st["status"], "the header is the rollout as committed");
    assert_eq!(first["intervals_dropped"], 0);
    let intervals: Vec<&Value> = lines.iter().filter(|l| l["type"] == "interval").collect();
    let events: Vec<&Value> = lines.iter().filter(|l| l["type"] == "event").collect();
    assert_eq!(last, &json!({"type": "end", "intervals": intervals.len(), "events": events.len()}));

    // Totals: the interval lines add up to the status, which holds every request sent.
    let totals = totals_of(&st);
    assert_eq!(summed(&lines), totals);
    assert_eq!((totals["v1"]["requests"] as u64, totals["v2"]["requests"] as u64), (sent["v1"], sent["v2"]));
    assert_eq!(totals["v2"]["helpfulness.count"], f64::from(evaluations));
    assert_eq!(st["status"]["totals"]["intervals"].as_u64(), Some(intervals.len() as u64 / 2), "one line per interval and version");
    assert!((totals["v2"]["cost_sum"] - 0.01 * sent["v2"] as f64).abs() < 1e-9);

    // Each interval names what was judged on it; the last one promoted.
    let n: Vec<u64> = intervals.iter().step_by(2).map(|l| l["n"].as_u64().unwrap()).collect();
    assert_eq!(n, (1..=n.len() as u64).collect::<Vec<_>>(), "numbered from 1, oldest first");
    let actions: Vec<&str> = intervals.iter().step_by(2).map(|l| l["action"].as_str().unwrap()).collect();
    assert_eq!(actions.first(), Some(&"hold"));
    assert_eq!(actions.iter().filter(|a| **a == "advance").count(), 1);
    assert_eq!(actions.last(), Some(&"promote"));
    let i = intervals[0];
    assert_eq!((i["version"].as_str(), i["role"].as_str(), i["phase"].as_str(), i["step"].as_u64()), (Some("v1"), Some("stable"), Some("progressing"), Some(0)));
    assert!(i["ended_at_ms"].as_u64() > i["started_at_ms"].as_u64());
    assert_eq!(i["latency_ms"]["p50"].as_f64().map(|ms| ms > 0.0 && ms < 10.0), Some(true), "{i}");
    assert_eq!(i["latency_ms"]["ttft_p99"], Value::Null, "no body timings were reported");

    // Every event, with its verdict, as GET …/events has them.
    let (_, ev) = call(&s, "GET", "/v1/rollouts/support/events", None).await;
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["created", "started", "advanced", "promoted"]);
    for (line, e) in events.iter().zip(ev["events"].as_array().unwrap()) {
        assert_eq!((&line["seq"], &line["verdict"]), (&e["seq"], &e["verdict"]));
    }
    assert_eq!(events[3]["verdict"]["action"], "promote");

    // Replaced, the rollout keeps its history; deleted, it is gone (and a new one starts empty).
    let spec: Value = serde_json::from_str(&SPEC.replace("\"v2\"", "\"v3\"").replace("\"v1\"", "\"v2\"")).unwrap();
    assert_eq!(call(&s, "PUT", "/v1/rollouts/support", Some(spec.clone())).await.0, StatusCode::OK);
    let (_, _, again) = export(&s, "support").await;
    assert_eq!(summed(&again), totals, "the old versions' counts stay with the rollout");
    assert_eq!(call(&s, "DELETE", "/v1/rollouts/support", None).await.0, StatusCode::NO_CONTENT);
    assert_eq!(export(&s, "support").await.0, StatusCode::NOT_FOUND);
    assert_eq!(call(&s, "PUT", "/v1/rollouts/support", Some(spec)).await.0, StatusCode::CREATED);
    let (_, _, fresh) = export(&s, "support").await;
    assert_eq!(fresh.iter().filter(|l| l["type"] == "interval").count(), 0);
    assert_eq!(fresh.iter().filter(|l| l["type"] == "event").count(), 1, "only its own created event");
}

#[tokio::test]
async fn a_critical_rollback_between_looks_keeps_the_data_that_failed_the_gate() {
    let s = common::state(50);
    let spec = common::with_fields(serde_json::from_str(SPEC).unwrap(), json!({"gates": [
        {"metric": "error_rate", "max_increase": 0.01},
        {"metric": "policy_violation_rate", "max": 0.0, "critical": true}]}));
    assert_eq!(call(&s, "PUT", "/v1/rollouts/support", Some(spec)).await.0, StatusCode::CREATED);
    tick_once(&s, 1_000).unwrap();
    call(&s, "POST", "/v1/reports", Some(report(1, "v1", 100, 0))).await;
    tick_once(&s, 2_000).unwrap();
    // Half an interval later, one unsafe tool call: the look between intervals rolls back.
    let mut bad = report(2, "v2", 7, 0);
    bad["versions"][0]["stats"]["policy_violations"] = json!(1);
    bad["versions"][0]["stats"]["policy_violating_requests"] = json!(1);
    call(&s, "POST", "/v1/reports", Some(bad)).await;
    tick_once(&s, 2_500).unwrap();
    let (_, st) = call(&s, "GET", "/v1/rollouts/support", None).await;
    assert_eq!(st["status"]["phase"], "rolled_back", "{}", st["status"]["message"]);
    let (_, _, lines) = export(&s, "support").await;
    let last: Vec<&Value> = lines.iter().filter(|l| l["type"] == "interval" && l["n"] == 2).collect();
    assert_eq!(last.len(), 2, "the cut-short interval is recorded");
    assert_eq!((last[1]["action"].as_str(), last[1]["counts"]["policy_violations"].as_u64()), (Some("rollback"), Some(1)));
    assert_eq!(summed(&lines), totals_of(&st));
    assert_eq!(totals_of(&st)["v2"]["requests"], 7.0);
}

#[tokio::test]
async fn unknown_rollouts_are_404() {
    let s = common::state(50);
    let (code, ct, _) = export(&s, "nope").await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_eq!(ct, "application/json");
}
