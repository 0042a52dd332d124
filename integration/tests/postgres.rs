//! The controller on PostgreSQL (`fledge serve --database`), through a real Envoy: a rollout
//! advances, survives `kill -9` of the controller with its state and events in the database, and is
//! promoted after the restart. The database is a throwaway cluster on loopback
//! (`controller/tests/common/pg.rs`, shared with the store's own tests).

use std::time::Duration;

use fledge_integration::traffic::{Load, Traffic};
use fledge_integration::{assert_eventually, Agent, Behaviour, Controller, Envoy};
use serde_json::json;

#[path = "../../controller/tests/common/pg.rs"]
mod pg;

const HOST: &str = "support-agent";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_on_postgres_survives_kill_9_and_is_promoted() {
    let url = pg::database();
    let (v1, v2) = (Agent::start(Behaviour::version("v1")).await.unwrap(), Agent::start(Behaviour::version("v2")).await.unwrap());
    let mut ctl = Controller::builder().arg("--database").arg(url.as_str()).start().await.unwrap();
    assert!(ctl.log().contains("PostgreSQL schema migrated"), "{}", ctl.log());
    let envoy = Envoy::for_versions(HOST, v1.addr, v2.addr, ctl.addr, json!({"report_interval_ms": 100})).start().await.unwrap();
    let _load = Load::start(Traffic::new(envoy.listener, HOST), 200, 1_000);
    ctl.put_rollout("support", json!({"hosts": [HOST], "stable": "v1", "canary": "v2", "steps": [10, 20, 100],
        "step_seconds": 1, "min_requests": 20, "analysis": {"interval_seconds": 0.5}})).await.unwrap();
    assert_eventually!(Duration::from_secs(30), "at step 2", async {
        let st = ctl.get("/v1/rollouts/support").await?;
        anyhow::ensure!(st["status"]["step"] == json!(1), "step {}", st["status"]["step"]);
        Ok(())
    });
    ctl.post("/v1/rollouts/support/pause", json!({})).await.unwrap();
    let before = ctl.events("support").await.unwrap();
    let status = ctl.get("/v1/rollouts/support").await.unwrap()["status"].clone();
    ctl.kill().await.unwrap();
    ctl.restart().await.unwrap();
    let after = ctl.get("/v1/rollouts/support").await.unwrap();
    assert_eq!((&after["status"]["phase"], &after["status"]["step"], &after["status"]["weight"]), (&json!("paused"), &status["step"], &status["weight"]));
    assert_eq!(after["status"]["totals"], status["totals"], "the judged totals are in the database too");
    assert_eq!(ctl.events("support").await.unwrap(), before, "every event survived kill -9");
    ctl.post("/v1/rollouts/support/resume", json!({})).await.unwrap();
    let done = ctl.wait_phase("support", "succeeded", Duration::from_secs(60)).await.unwrap();
    assert_eq!(done["spec"]["stable"], "v2");
    let kinds: Vec<String> = ctl.events("support").await.unwrap().iter().map(|e| e["kind"].as_str().unwrap_or("").to_string()).collect();
    assert_eq!(kinds, ["created", "started", "advanced", "paused", "resumed", "advanced", "promoted"]);
    // The proxies follow a controller whose data lives in PostgreSQL, epoch and generations included.
    ctl.wait_confirmed("support", envoy.contexts, Duration::from_secs(10)).await.unwrap();
}
