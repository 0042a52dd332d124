//! Issue 15, agent-native signals, in a real Envoy with the real filter and controller: time to first
//! token is recorded per version and gated on.

use std::time::Duration;

use fledge_integration::traffic::{Load, Traffic};
use fledge_integration::{Agent, Behaviour, Controller, Envoy};
use serde_json::json;

const HOST: &str = "support-agent";

/// A streaming canary whose first token comes 300 ms later — headers at once, HTTP 200 throughout —
/// is rolled back on `latency_ttft_p99_ms`, while the same answers' status and task outcome are fine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_first_token_is_rolled_back_on_ttft() {
    let v1 = Agent::start(Behaviour::version("v1")).await.unwrap();
    let v2 = Agent::start(Behaviour { first_byte_ms: 300, ..Behaviour::version("v2") }).await.unwrap();
    let ctl = Controller::builder().start().await.unwrap();
    let envoy = Envoy::for_versions(HOST, v1.addr, v2.addr, ctl.addr, json!({"report_interval_ms": 100})).start().await.unwrap();
    ctl.put_rollout("support", json!({
        "hosts": [HOST], "stable": "v1", "canary": "v2", "steps": [50, 100], "step_seconds": 600, "min_requests": 30,
        "analysis": {"interval_seconds": 0.25, "failure_limit": 1},
        "gates": [{"metric": "error_rate", "max_increase": 0.05}, {"metric": "latency_ttft_p99_ms", "max_increase": 100}]
    })).await.unwrap();
    let _load = Load::start(Traffic::new(envoy.listener, HOST), 150, 1_000);
    let rolled = ctl.wait_phase("support", "rolled_back", Duration::from_secs(30)).await.unwrap();
    let gates = rolled["status"]["last_verdict"]["gates"].as_array().unwrap();
    let ttft = gates.iter().find(|g| g["metric"] == "latency_ttft_p99_ms").unwrap();
    assert_eq!(ttft["status"], "fail", "{ttft}");
    let errors = gates.iter().find(|g| g["metric"] == "error_rate").unwrap();
    assert_ne!(errors["status"], "fail", "HTTP stayed healthy: {errors}");
    let (canary, stable) = (ttft["canary"].as_f64().unwrap(), ttft["stable"].as_f64().unwrap());
    assert!(canary >= 300.0 && stable < 100.0, "canary p99 TTFT {canary} ms vs stable {stable} ms");
    println!("late first token: canary p99 TTFT {canary:.1} ms vs stable {stable:.1} ms → {}", rolled["status"]["message"]);
}
