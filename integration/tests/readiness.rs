//! Issue 10, readiness gate, in a real Envoy with the real filter and controller: a canary that fails
//! its readiness probe gets no user traffic and the rollout stays pending; when the probe recovers the
//! first step starts; a probe failing mid-rollout rolls the rollout back.

use std::time::Duration;

use fledge_integration::traffic::{Load, Traffic};
use fledge_integration::{assert_eventually, Agent, Behaviour, Controller, Envoy};
use serde_json::json;

const HOST: &str = "support-agent";

#[tokio::test]
async fn a_canary_that_is_not_ready_gets_no_traffic_and_a_failing_probe_rolls_back() {
    let v1 = Agent::start(Behaviour::version("v1")).await.unwrap();
    let v2 = Agent::start(Behaviour { healthy: false, ..Behaviour::version("v2") }).await.unwrap();
    let ctl = Controller::builder().start().await.unwrap();
    let envoy = Envoy::for_versions(HOST, v1.addr, v2.addr, ctl.addr, json!({"report_interval_ms": 200})).start().await.unwrap();
    ctl.put_rollout("support", json!({
        "hosts": [HOST], "stable": "v1", "canary": "v2", "steps": [50, 100], "step_seconds": 600,
        "readiness": {"url": format!("http://{}/healthz", v2.addr), "interval_seconds": 0.2,
                      "timeout_ms": 500, "success_threshold": 2, "failure_threshold": 2}
    })).await.unwrap();
    let load = Load::start(Traffic::new(envoy.listener, HOST), 100, 1_000);

    // Not ready: pending, and not one user request reaches the canary.
    let (status, _) = assert_eventually!(Duration::from_secs(5), "the probe reports not ready", async {
        let s = ctl.get("/v1/rollouts/support").await?;
        anyhow::ensure!(s["live"]["readiness"]["state"] == json!("not_ready"), "{}", s["live"]["readiness"]);
        Ok(s)
    });
    assert_eq!(status["status"]["phase"], json!("pending"), "{}", status["status"]["message"]);
    assert!(status["live"]["readiness"]["summary"].as_str().unwrap().contains("HTTP 503"), "{}", status["live"]["readiness"]);
    let served_before = v1.requests();
    assert_eventually!(Duration::from_secs(5), "users keep being served by stable", async {
        anyhow::ensure!(v1.requests() >= served_before + 100, "{} requests", v1.requests());
        Ok(())
    });
    assert_eq!(ctl.phase("support").await.unwrap(), "pending");
    assert_eq!(v2.requests(), 0, "the canary received user requests before it was ready");

    // Ready: the first step starts and the canary gets its share.
    v2.update(|b| b.healthy = true);
    let started = ctl.wait_phase("support", "progressing", Duration::from_secs(5)).await.unwrap();
    assert_eq!(started["status"]["weight"], json!(50.0));
    assert_eventually!(Duration::from_secs(5), "the canary is served", async {
        anyhow::ensure!(v2.requests() > 20, "{} canary requests", v2.requests());
        Ok(())
    });

    // Failing again mid-rollout: a critical failure, rolled back.
    v2.update(|b| b.healthy = false);
    let rolled = ctl.wait_phase("support", "rolled_back", Duration::from_secs(5)).await.unwrap();
    let message = rolled["status"]["message"].as_str().unwrap();
    assert!(message.contains("readiness probe") && message.contains("HTTP 503"), "{message}");
    assert_eq!(rolled["status"]["weight"], json!(0.0));
    let kinds: Vec<String> = ctl.events("support").await.unwrap().iter().map(|e| e["kind"].as_str().unwrap_or("").to_string()).collect();
    assert_eq!(kinds, ["created", "started", "rolled_back"]);
    drop(load);
}
