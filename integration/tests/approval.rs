//! Issue 12, manual and external approval steps, in a real Envoy with the real filter and controller:
//! a `pause: "manual"` step holds (phase `paused`) until `resume`; an approval URL answering 503 holds
//! its step and 200 advances it; a critical failure during a manual pause rolls back.

use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fledge_integration::traffic::{Load, Traffic};
use fledge_integration::{assert_eventually, Agent, Behaviour, Controller, Envoy};
use serde_json::{json, Value};

const HOST: &str = "support-agent";

/// An approval endpoint on 127.0.0.1 answering the status it is set to, counting the asks.
struct Approver {
    url: String,
    status: Arc<AtomicU16>,
    asked: Arc<AtomicU64>,
    _task: tokio::task::JoinHandle<()>,
}

impl Approver {
    async fn start(status: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (code, asked) = (Arc::new(AtomicU16::new(status)), Arc::new(AtomicU64::new(0)));
        let (c, a) = (code.clone(), asked.clone());
        let app = axum::Router::new().route(
            "/approve",
            axum::routing::post(move |body: axum::Json<Value>| {
                let (c, a) = (c.clone(), a.clone());
                async move {
                    assert_eq!(body["rollout"], "support", "the approver is told which rollout");
                    a.fetch_add(1, Ordering::Relaxed);
                    axum::http::StatusCode::from_u16(c.load(Ordering::Relaxed)).unwrap_or(axum::http::StatusCode::OK)
                }
            }),
        );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url: format!("http://{addr}/approve"), status: code, asked, _task: task }
    }
}

async fn setup() -> (Controller, Envoy, Agent, Agent, Load) {
    let v1 = Agent::start(Behaviour::version("v1")).await.unwrap();
    let v2 = Agent::start(Behaviour::version("v2")).await.unwrap();
    let ctl = Controller::builder().start().await.unwrap();
    let envoy = Envoy::for_versions(HOST, v1.addr, v2.addr, ctl.addr, json!({"report_interval_ms": 100})).start().await.unwrap();
    let load = Load::start(Traffic::new(envoy.listener, HOST), 150, 1_000);
    (ctl, envoy, v1, v2, load)
}

/// Error-rate gates only (latency through in-process agents on a loaded machine is not the point).
fn spec(steps: Value) -> Value {
    json!({
        "hosts": [HOST], "stable": "v1", "canary": "v2", "steps": steps, "step_seconds": 1, "min_requests": 30,
        "analysis": {"interval_seconds": 0.25, "failure_limit": 1},
        "gates": [{"metric": "error_rate", "max_increase": 0.05}, {"metric": "error_rate", "max": 0.2, "critical": true}]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_step_holds_until_resumed_and_an_approval_url_until_it_answers_2xx() {
    let (ctl, _envoy, _v1, _v2, _load) = setup().await;
    let approver = Approver::start(503).await;
    ctl.put_rollout("support", spec(json!([{"weight": 10, "pause": "manual"}, {"weight": 50, "approval": {"url": approver.url, "timeout_seconds": 2}}, 100])))
        .await
        .unwrap();

    // The manual step: paused once ready, and it stays paused.
    let paused = ctl.wait_phase("support", "paused", Duration::from_secs(30)).await.unwrap();
    assert_eq!(paused["status"]["weight"], json!(10.0));
    assert!(paused["status"]["message"].as_str().unwrap().contains("manual pause"), "{}", paused["status"]["message"]);
    let events_before = ctl.events("support").await.unwrap().len();
    let canary = |s: &Value| s["live"]["window"]["canary"]["requests"].as_u64().unwrap_or(0);
    let seen = canary(&paused);
    assert_eventually!(Duration::from_secs(10), "the window keeps counting while paused", async {
        let s = ctl.get("/v1/rollouts/support").await?;
        anyhow::ensure!(canary(&s) >= seen + 50, "{}", s["live"]["window"]["canary"]);
        Ok(())
    });
    assert_eq!(ctl.phase("support").await.unwrap(), "paused", "a manual step never resumes by itself");
    assert_eq!(ctl.events("support").await.unwrap().len(), events_before);

    // Resumed: on to the approval step, which holds while the URL answers 503.
    ctl.post("/v1/rollouts/support/resume", json!({})).await.unwrap();
    let (waiting, _) = assert_eventually!(Duration::from_secs(30), "waiting for approval at 50 %", async {
        let s = ctl.get("/v1/rollouts/support").await?;
        anyhow::ensure!(s["live"]["approval"]["last"] == json!("HTTP 503"), "{}", s["status"]["message"]);
        Ok(s)
    });
    assert_eq!((waiting["status"]["phase"].as_str(), waiting["status"]["weight"].as_f64()), (Some("progressing"), Some(50.0)));
    assert!(waiting["status"]["message"].as_str().unwrap().contains("waits for approval"), "{}", waiting["status"]["message"]);
    let asked = approver.asked.load(Ordering::Relaxed);
    assert_eventually!(Duration::from_secs(10), "asked again each interval", async {
        anyhow::ensure!(approver.asked.load(Ordering::Relaxed) >= asked + 3, "asked {} times", approver.asked.load(Ordering::Relaxed));
        Ok(())
    });
    assert_eq!(ctl.get("/v1/rollouts/support").await.unwrap()["status"]["weight"], json!(50.0), "a 503 holds the step");

    // 200: advances, and the rollout goes on to its end.
    approver.status.store(200, Ordering::Relaxed);
    let done = ctl.wait_phase("support", "succeeded", Duration::from_secs(30)).await.unwrap();
    assert_eq!(done["spec"]["stable"], "v2");
    let kinds: Vec<String> = ctl.events("support").await.unwrap().iter().map(|e| e["kind"].as_str().unwrap_or("").to_string()).collect();
    assert_eq!(kinds, ["created", "started", "paused", "resumed", "advanced", "advanced", "promoted"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_critical_failure_during_a_manual_pause_rolls_back() {
    let (ctl, _envoy, _v1, v2, _load) = setup().await;
    ctl.put_rollout("support", spec(json!([{"weight": 50, "pause": "manual"}, 100]))).await.unwrap();
    ctl.wait_phase("support", "paused", Duration::from_secs(30)).await.unwrap();
    v2.update(|b| b.error_rate = 0.5);
    let rolled = ctl.wait_phase("support", "rolled_back", Duration::from_secs(10)).await.unwrap();
    let message = rolled["status"]["message"].as_str().unwrap();
    assert!(message.starts_with("rolled back while paused: critical gate failed: error_rate"), "{message}");
    assert_eq!(rolled["status"]["weight"], json!(0.0));
}
