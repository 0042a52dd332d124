//! Issue 3 acceptance: automated analysis with a real Envoy, filter and controller, and sample agents
//! whose errors, latency and outcomes are set per version.

use std::time::{Duration, Instant};

use fledge_integration::traffic::{Load, Traffic};
use fledge_integration::{Agent, Behaviour, Controller, Envoy};
use serde_json::{json, Value};

const HOST: &str = "support-agent";
const NAME: &str = "support";

struct Scenario {
    ctl: Controller,
    envoy: Envoy,
    stable: Agent,
    canary: Agent,
    traffic: Traffic,
}

impl Scenario {
    async fn start(stable: Behaviour, canary: Behaviour) -> Self {
        let stable = Agent::start(Behaviour { version: "v1".into(), ..stable }).await.unwrap();
        let canary = Agent::start(Behaviour { version: "v2".into(), ..canary }).await.unwrap();
        let ctl = Controller::builder().start().await.unwrap();
        let envoy = Envoy::for_versions(HOST, stable.addr, canary.addr, ctl.addr, json!({"report_interval_ms": 200})).start().await.unwrap();
        let traffic = Traffic::new(envoy.listener, HOST);
        Self { ctl, envoy, stable, canary, traffic }
    }

    async fn rollout(&self, extra: Value) {
        let mut spec = json!({"hosts": [HOST], "stable": "v1", "canary": "v2"});
        for (k, v) in extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        self.ctl.put_rollout(NAME, spec).await.unwrap();
    }

    fn load(&self, rps: u64) -> Load {
        Load::start(self.traffic.clone(), rps, 5_000)
    }

    async fn wait(&self, phase: &str, secs: u64) -> Value {
        self.ctl.wait_phase(NAME, phase, Duration::from_secs(secs)).await.unwrap()
    }
}

fn failing_gate(status: &Value) -> String {
    let gates = status["status"]["last_verdict"]["gates"].as_array().cloned().unwrap_or_default();
    gates.iter().find(|g| g["status"] == "fail").map(|g| g["metric"].as_str().unwrap_or_default().to_string()).unwrap_or_default()
}

fn kinds(events: &[Value]) -> Vec<String> {
    events.iter().map(|e| e["kind"].as_str().unwrap_or_default().to_string()).collect()
}

/// 1. A healthy canary goes through every step and becomes stable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_canary_is_promoted_through_every_step() {
    let s = Scenario::start(Behaviour::default(), Behaviour::default()).await;
    let _load = s.load(200);
    s.rollout(json!({"steps": [10, 50, 100], "step_seconds": 2, "min_requests": 50, "analysis": {"interval_seconds": 0.5}})).await;
    let done = s.wait("succeeded", 60).await;
    assert_eq!(done["spec"]["stable"], "v2", "the canary is the new stable");
    assert_eq!(done["status"]["weight"], json!(0.0));
    let events = s.ctl.events(NAME).await.unwrap();
    assert_eq!(kinds(&events), ["created", "started", "advanced", "advanced", "promoted"]);
    let weights: Vec<f64> = events.iter().map(|e| e["weight"].as_f64().unwrap()).collect();
    assert_eq!(weights, [0.0, 10.0, 50.0, 100.0, 0.0]);
    assert!(events[4]["verdict"]["gates"].as_array().unwrap().iter().all(|g| g["status"] == "pass"), "{}", events[4]);
    // v2 now serves all traffic.
    s.ctl.wait_confirmed(NAME, s.envoy.contexts, Duration::from_secs(5)).await.unwrap();
    let before = s.stable.requests();
    let replies = s.traffic.send_users(&fledge_integration::traffic::users("after", 200), 16).await.unwrap();
    assert!(replies.iter().all(|r| r.served_by.as_deref() == Some("v2")));
    assert_eq!(s.stable.requests(), before, "v1 gets nothing after promotion");
}

/// 2. 10 % 5xx on the canary → rolled back within 3 s of its first bad answer, at ~200 rps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_canary_is_rolled_back_within_seconds() {
    let s = Scenario::start(Behaviour::default(), Behaviour { error_rate: 0.1, ..Behaviour::default() }).await;
    let load = s.load(200);
    // Only the gate under test: latency measured through the in-process agents can spike on a loaded
    // machine, and a stray latency rollback would hide what this test is about.
    s.rollout(json!({"steps": [50, 100], "step_seconds": 60, "min_requests": 50,
                     "analysis": {"interval_seconds": 0.25, "failure_limit": 1},
                     "gates": [{"metric": "error_rate", "max_ratio": 1.25}]})).await;
    let done = s.wait("rolled_back", 30).await;
    assert_eq!(failing_gate(&done), "error_rate", "{}", done["status"]["message"]);
    assert_eq!(done["status"]["weight"], json!(0.0));
    // Keep the load on until the proxies have confirmed, then check the canary is no longer called.
    s.ctl.wait_confirmed(NAME, s.envoy.contexts, Duration::from_secs(5)).await.unwrap();
    let after = s.canary.requests();
    let sent = load.sent();
    fledge_integration::assert_eventually!(Duration::from_secs(5), "more load sent", async {
        anyhow::ensure!(load.sent() > sent + 100, "waiting for load");
        Ok(())
    });
    assert_eq!(s.canary.requests(), after, "no canary request after the rollback was confirmed");
    let marks = s.canary.marks();
    let reaction = marks.last_request.unwrap() - marks.first_error.unwrap();
    println!("rollback reaction: first bad answer → last canary request = {reaction:?} at ~200 rps (canary 50 %)");
    assert!(reaction <= Duration::from_secs(3), "{reaction:?}");
    let c = &done["live"]["confirmation"];
    println!("status: {} ({})", done["live"]["summary"], c);
}

/// 3. +150 ms latency → rolled back on the latency gate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_canary_is_rolled_back_on_latency() {
    let s = Scenario::start(Behaviour::default(), Behaviour { latency_ms: 150, ..Behaviour::default() }).await;
    let _load = s.load(200);
    s.rollout(json!({"steps": [25, 100], "step_seconds": 60, "min_requests": 50, "analysis": {"interval_seconds": 0.5},
                     "gates": [{"metric": "latency_p99_ms", "max_ratio": 1.2}]})).await;
    let done = s.wait("rolled_back", 40).await;
    assert_eq!(failing_gate(&done), "latency_p99_ms", "{}", done["status"]["message"]);
}

/// 4. Task success 95 % → 80 % with HTTP 200 throughout → rolled back on task success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lower_task_success_is_rolled_back_despite_http_200() {
    let s = Scenario::start(Behaviour { success_rate: 0.95, ..Behaviour::default() }, Behaviour { success_rate: 0.80, ..Behaviour::default() }).await;
    let _load = s.load(200);
    s.rollout(json!({"steps": [25, 100], "step_seconds": 60, "min_requests": 50, "analysis": {"interval_seconds": 0.5},
                     "gates": [{"metric": "error_rate", "max_ratio": 1.25}, {"metric": "task_success_rate", "max_decrease": 0.02}]})).await;
    let done = s.wait("rolled_back", 40).await;
    assert_eq!(failing_gate(&done), "task_success_rate", "{}", done["status"]["message"]);
    assert_eq!(done["live"]["window"]["canary"]["errors"], json!(0), "no HTTP error at all");
}

/// 5. A critical zero-tolerance policy gate rolls back on the first violation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_policy_violation_rolls_back_a_critical_gate() {
    let s = Scenario::start(Behaviour::default(), Behaviour { violation_rate: 0.01, ..Behaviour::default() }).await;
    let _load = s.load(200);
    s.rollout(json!({"steps": [25, 100], "step_seconds": 60, "min_requests": 1000,
                     "gates": [{"metric": "policy_violation_rate", "max": 0, "critical": true}]})).await;
    let done = s.wait("rolled_back", 40).await;
    assert_eq!(failing_gate(&done), "policy_violation_rate", "{}", done["status"]["message"]);
    let canary = &done["live"]["window"]["canary"];
    assert!(canary["requests"].as_u64().unwrap() < 1000, "rolled back before min_requests: {canary}");
}

/// 6. No traffic → holds at the first step, never promotes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_traffic_holds_at_the_first_step() {
    let s = Scenario::start(Behaviour::default(), Behaviour::default()).await;
    s.rollout(json!({"steps": [10, 100], "step_seconds": 1, "min_requests": 20, "analysis": {"interval_seconds": 0.2}})).await;
    s.wait("progressing", 10).await;
    // Many analysis intervals and several step dwells pass without data.
    let deadline = Instant::now() + Duration::from_secs(4);
    while Instant::now() < deadline {
        let st = s.ctl.get(&format!("/v1/rollouts/{NAME}")).await.unwrap();
        assert_eq!(st["status"]["phase"], "progressing");
        assert_eq!(st["status"]["step"], json!(0));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let st = s.ctl.get(&format!("/v1/rollouts/{NAME}")).await.unwrap();
    let v = &st["status"]["last_verdict"];
    assert_eq!(v["action"], "hold");
    assert!(v["gates"].as_array().unwrap().iter().all(|g| g["status"] == "insufficient_data"), "{v}");
}

/// 7. kill -9 mid-rollout: the restarted controller resumes at the same step; no event is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_crash_resumes_at_the_same_step() {
    let mut s = Scenario::start(Behaviour::default(), Behaviour::default()).await;
    let _load = s.load(200);
    s.rollout(json!({"steps": [10, 20, 100], "step_seconds": 1, "min_requests": 20, "analysis": {"interval_seconds": 0.5}})).await;
    fledge_integration::assert_eventually!(Duration::from_secs(30), "at step 2", async {
        let st = s.ctl.get(&format!("/v1/rollouts/{NAME}")).await?;
        anyhow::ensure!(st["status"]["step"] == json!(1), "step {}", st["status"]["step"]);
        Ok(())
    });
    // Freeze progress: pause, so the step we kill at is the step we must find again.
    s.ctl.post(&format!("/v1/rollouts/{NAME}/pause"), json!({})).await.unwrap();
    let before = s.ctl.events(NAME).await.unwrap();
    let status_before = s.ctl.get(&format!("/v1/rollouts/{NAME}")).await.unwrap()["status"].clone();
    s.ctl.kill().await.unwrap();
    s.ctl.restart().await.unwrap();
    let after = s.ctl.get(&format!("/v1/rollouts/{NAME}")).await.unwrap();
    assert_eq!(after["status"]["step"], status_before["step"]);
    assert_eq!(after["status"]["weight"], status_before["weight"]);
    assert_eq!(after["status"]["phase"], "paused");
    assert_eq!(s.ctl.events(NAME).await.unwrap(), before, "every event survived kill -9");
    // And it carries on from there.
    s.ctl.post(&format!("/v1/rollouts/{NAME}/resume"), json!({})).await.unwrap();
    let done = s.wait("succeeded", 60).await;
    let events = kinds(&s.ctl.events(NAME).await.unwrap());
    assert_eq!(events, ["created", "started", "advanced", "paused", "resumed", "advanced", "promoted"]);
    assert_eq!(done["spec"]["stable"], "v2");
}

/// 8. Outcomes posted later through the API move the task-success gate like header outcomes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_outcomes_move_the_task_success_gate() {
    let quiet = Behaviour { emit_outcome: false, ..Behaviour::default() };
    let s = Scenario::start(quiet.clone(), quiet).await;
    let _load = s.load(100);
    s.rollout(json!({"steps": [25, 100], "step_seconds": 60, "min_requests": 50, "analysis": {"interval_seconds": 0.5},
                     "gates": [{"metric": "task_success_rate", "max_decrease": 0.02}]})).await;
    s.wait("progressing", 10).await;
    let path = format!("/v1/rollouts/{NAME}/outcomes");
    // Late grading: stable 95 % success, canary 80 %.
    let batch = |version: &str, ok: usize, bad: usize| -> Value {
        let mut items: Vec<Value> = (0..ok).map(|_| json!({"version": version, "outcome": "success"})).collect();
        items.extend((0..bad).map(|_| json!({"version": version, "outcome": "failure", "cost": 0.02})));
        Value::Array(items)
    };
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        s.ctl.post(&path, batch("v1", 19, 1)).await.unwrap();
        s.ctl.post(&path, batch("v2", 8, 2)).await.unwrap();
        let st = s.ctl.get(&format!("/v1/rollouts/{NAME}")).await.unwrap();
        if st["status"]["phase"] == "rolled_back" {
            assert_eq!(failing_gate(&st), "task_success_rate");
            break;
        }
        assert!(Instant::now() < deadline, "not rolled back: {}", st["status"]["message"]);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, body) = s.ctl.call(reqwest::Method::POST, &path, Some(json!({"version": "v9", "outcome": "success"}))).await.unwrap();
    assert_eq!(code, 422, "{body}");
}

/// The rollout's phase now.
async fn phase(s: &Scenario) -> String {
    let st = s.ctl.get(&format!("/v1/rollouts/{NAME}")).await.unwrap();
    st["status"]["phase"].as_str().unwrap_or_default().to_string()
}

/// 9 (issue 8, item 7). Both versions fail 10 % of requests for 20 s mid-rollout — a shared incident,
/// a model provider failing for everyone — and the rollout goes on: no rollback, then promoted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_incident_does_not_roll_back() {
    let s = Scenario::start(Behaviour::default(), Behaviour::default()).await;
    let _load = s.load(200);
    s.rollout(json!({"steps": [10, 50, 100], "step_seconds": 20, "min_requests": 50, "analysis": {"interval_seconds": 0.5},
                     "gates": [{"metric": "error_rate", "max_ratio": 1.25}, {"metric": "task_success_rate", "max_decrease": 0.02}]})).await;
    fledge_integration::assert_eventually!(Duration::from_secs(60), "at the 50 % step", async {
        let st = s.ctl.get(&format!("/v1/rollouts/{NAME}")).await?;
        anyhow::ensure!(st["status"]["step"] == json!(1), "step {}: {}", st["status"]["step"], st["status"]["message"]);
        Ok(())
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    s.stable.update(|b| b.error_rate = 0.1);
    s.canary.update(|b| b.error_rate = 0.1);
    let incident = Instant::now();
    while incident.elapsed() < Duration::from_secs(20) {
        assert_ne!(phase(&s).await, "rolled_back", "rolled back during a shared incident");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    s.stable.update(|b| b.error_rate = 0.0);
    s.canary.update(|b| b.error_rate = 0.0);
    let done = s.wait("succeeded", 120).await;
    let events = kinds(&s.ctl.events(NAME).await.unwrap());
    assert!(!events.iter().any(|k| k == "rolled_back"), "{events:?}");
    assert_eq!(done["spec"]["stable"], "v2");
    println!("shared incident (both 10 % errors for 20 s at 50 %): no rollback; events {events:?}");
}

/// 10 (issue 8, item 8). A canary 10 % slower, inside a `max_ratio` of 1.2 on p99, is promoted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_ten_percent_slower_inside_the_ratio_is_promoted() {
    let s = Scenario::start(Behaviour { latency_ms: 50, ..Behaviour::default() }, Behaviour { latency_ms: 55, ..Behaviour::default() }).await;
    let _load = s.load(200);
    s.rollout(json!({"steps": [25, 50, 100], "step_seconds": 10, "min_requests": 50, "analysis": {"interval_seconds": 0.5},
                     "gates": [{"metric": "latency_p99_ms", "max_ratio": 1.2}]})).await;
    let done = s.wait("succeeded", 120).await;
    assert_eq!(done["spec"]["stable"], "v2");
    let events = s.ctl.events(NAME).await.unwrap();
    let advanced = events.iter().find(|e| e["kind"] == "advanced").unwrap();
    let gate = &advanced["verdict"]["gates"][0];
    println!("canary 1.1× stable latency: promoted; at the first advance: canary p99 {} vs stable {} ms, bounds {}", gate["canary"], gate["stable"], gate["bounds"]);
}

/// 11 (issue 8, item 9). After more than 3 minutes of healthy history at 10 %, the canary starts
/// failing 10 % of its requests: rolled back, and the time from the first bad answer is printed. The
/// detector's evidence restarts at every look, so a long healthy past does not slow it down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_after_minutes_of_healthy_history_is_rolled_back() {
    let s = Scenario::start(Behaviour::default(), Behaviour::default()).await;
    let _load = s.load(200);
    s.rollout(json!({"steps": [10, 100], "step_seconds": 600, "min_requests": 50, "analysis": {"interval_seconds": 1},
                     "gates": [{"metric": "error_rate", "max_ratio": 1.25}]})).await;
    s.wait("progressing", 10).await;
    let healthy = Instant::now();
    while healthy.elapsed() < Duration::from_secs(185) {
        assert_eq!(phase(&s).await, "progressing", "a healthy canary is not rolled back");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let looks = s.ctl.get(&format!("/v1/rollouts/{NAME}")).await.unwrap()["status"]["evidence"]["looks"].clone();
    s.canary.reset_marks();
    s.canary.update(|b| b.error_rate = 0.1);
    let done = s.wait("rolled_back", 60).await;
    let seen = Instant::now();
    assert_eq!(failing_gate(&done), "error_rate", "{}", done["status"]["message"]);
    let onset = s.canary.marks().first_error.unwrap();
    let detection = seen.duration_since(onset);
    println!("after {looks} healthy looks (≥ 3 min), canary 10 % errors: rolled back {detection:?} after its first bad answer");
    assert!(detection <= Duration::from_secs(30), "{detection:?}");
}
