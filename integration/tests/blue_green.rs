//! Issue 10, blue-green, in a real Envoy with the real filter and controller: during the preview only
//! the `version: canary` segment reaches green; once the switch is confirmed no request reaches blue;
//! a failure injected in the bake switches every proxy back, and the time from the rollback event to
//! green's last request is printed and held to ≤ 1 s.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fledge_integration::traffic::Traffic;
use fledge_integration::{assert_eventually, Agent, Behaviour, Controller, Envoy};
use serde_json::{json, Value};

const HOST: &str = "support-agent";

fn wall_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// One answered request: when it was sent (wall clock, ms), whether it carried the employee header,
/// and which backend answered.
#[derive(Debug, Clone)]
struct Sent {
    at_ms: u64,
    employee: bool,
    served_by: String,
}

/// Steady load: `rps` requests a second, every `employee_every`-th one with `x-employee: true`.
struct Load {
    log: Arc<Mutex<Vec<Sent>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    fn start(traffic: Traffic, rps: u64, employee_every: u64) -> Self {
        let log = Arc::new(Mutex::new(Vec::new()));
        let l = log.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rps));
            for n in 0u64.. {
                tick.tick().await;
                let (traffic, log) = (traffic.clone(), l.clone());
                let employee = n % employee_every == 0;
                tokio::spawn(async move {
                    let at_ms = wall_ms();
                    let header = employee.then_some(("x-employee", "true"));
                    if let Ok(reply) = traffic.send_with(header).await {
                        let served_by = reply.served_by.unwrap_or_default();
                        if let Ok(mut log) = log.lock() {
                            log.push(Sent { at_ms, employee, served_by });
                        }
                    }
                });
            }
        });
        Self { log, task }
    }

    fn sent(&self) -> Vec<Sent> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn event(events: &[Value], kind: &str) -> Value {
    events.iter().find(|e| e["kind"] == kind).cloned().unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preview_then_switch_then_a_failing_bake_switches_back_within_a_second() {
    let blue = Agent::start(Behaviour::version("v1")).await.unwrap();
    let green = Agent::start(Behaviour::version("v2")).await.unwrap();
    let ctl = Controller::builder().start().await.unwrap();
    let envoy = Envoy::for_versions(HOST, blue.addr, green.addr, ctl.addr, json!({"report_interval_ms": 100})).start().await.unwrap();
    // Error-rate gates only: latency through in-process agents on a loaded machine is not what this
    // test is about.
    ctl.put_rollout("support", json!({
        "hosts": [HOST], "stable": "v1", "canary": "v2", "strategy": "blue_green",
        "preview_seconds": 3, "bake_seconds": 600, "min_requests": 30,
        "analysis": {"interval_seconds": 0.25, "failure_limit": 1},
        "segments": [{"name": "employees", "match": {"header": {"name": "x-employee", "exact": "true"}}, "version": "canary"}],
        "gates": [{"metric": "error_rate", "max_ratio": 1.5}, {"metric": "error_rate", "max": 0.1, "critical": true}]
    })).await.unwrap();
    let load = Load::start(Traffic::new(envoy.listener, HOST), 150, 3);

    // The preview: employees on green, everyone else on blue.
    let previewing = ctl.wait_phase("support", "previewing", Duration::from_secs(5)).await.unwrap();
    assert_eq!(previewing["status"]["weight"], json!(0.0));
    let baking = ctl.wait_phase("support", "baking", Duration::from_secs(60)).await.unwrap();
    assert_eq!(baking["status"]["weight"], json!(100.0));
    let events = ctl.events("support").await.unwrap();
    let started_ms = event(&events, "started")["at_ms"].as_u64().unwrap();
    let switched_ms = event(&events, "switched")["at_ms"].as_u64().unwrap();
    assert!(switched_ms >= started_ms + 3_000, "switched before the preview's 3 s");
    let preview: Vec<Sent> = load.sent().into_iter().filter(|s| s.at_ms > started_ms + 500 && s.at_ms < switched_ms).collect();
    let others_on_green = preview.iter().filter(|s| !s.employee && s.served_by == "v2").count();
    let employees: Vec<&Sent> = preview.iter().filter(|s| s.employee).collect();
    assert!(preview.len() > 200 && employees.len() > 60, "{} requests in the preview", preview.len());
    assert_eq!(others_on_green, 0, "a request outside the segment reached green during the preview");
    assert!(employees.iter().all(|s| s.served_by == "v2"), "an employee request reached blue during the preview");
    println!("preview: {} requests, {} employees all on green, none of the others", preview.len(), employees.len());

    // The switch: the status says when every proxy confirmed it; from then on nothing reaches blue.
    let (status, _) = assert_eventually!(Duration::from_secs(5), "every proxy confirmed the switch", async {
        let s = ctl.get("/v1/rollouts/support").await?;
        anyhow::ensure!(s["live"]["switch"]["confirmed"] == json!(true), "{}", s["live"]["switch"]);
        Ok(s)
    });
    let switch = &status["live"]["switch"];
    let confirmed_ms = switch["confirmed_at_ms"].as_u64().unwrap();
    assert_eq!(switch["generation"], status["status"]["generation"]);
    assert!(confirmed_ms >= switched_ms, "{switch}");
    println!("switch: generation {} committed at {switched_ms}, confirmed by every proxy {} ms later", switch["generation"], confirmed_ms - switched_ms);
    let blue_before = blue.requests();
    assert_eventually!(Duration::from_secs(10), "300 requests after the confirmation", async {
        let n = load.sent().iter().filter(|s| s.at_ms > confirmed_ms).count();
        anyhow::ensure!(n >= 300, "{n} so far");
        Ok(())
    });
    let after: Vec<Sent> = load.sent().into_iter().filter(|s| s.at_ms > confirmed_ms).collect();
    assert!(after.iter().all(|s| s.served_by == "v2"), "a request reached blue after the switch was confirmed");
    assert_eq!(blue.requests(), blue_before, "blue served requests after the switch was confirmed");
    // The bake's relative gate is judged against blue's pre-switch window, labelled not concurrent.
    let (ratio, _) = assert_eventually!(Duration::from_secs(5), "a verdict of the bake", async {
        let s = ctl.get("/v1/rollouts/support").await?;
        let gate = s["status"]["last_verdict"]["gates"][0].clone();
        anyhow::ensure!(gate["comparison"]["against"] == json!("blue_pre_switch"), "{gate}");
        Ok(gate)
    });
    assert_eq!(ratio["comparison"]["concurrent"], false, "{ratio}");
    assert!(ratio["comparison"]["baseline_n"].as_u64().unwrap() > 200, "{ratio}");

    // A failure in the bake: every proxy switches back to blue at once.
    green.update(|b| b.error_rate = 0.5);
    let rolled = ctl.wait_phase("support", "rolled_back", Duration::from_secs(10)).await.unwrap();
    assert_eq!(rolled["status"]["weight"], json!(0.0));
    let rollback_ms = event(&ctl.events("support").await.unwrap(), "rolled_back")["at_ms"].as_u64().unwrap();
    ctl.wait_confirmed("support", envoy.contexts, Duration::from_secs(5)).await.unwrap();
    let green_after = green.requests();
    let until = wall_ms();
    assert_eventually!(Duration::from_secs(10), "200 requests after the switch back was confirmed", async {
        let n = load.sent().iter().filter(|s| s.at_ms > until).count();
        anyhow::ensure!(n >= 200, "{n} so far");
        Ok(())
    });
    assert_eq!(green.requests(), green_after, "green served requests after the switch back was confirmed");
    assert!(load.sent().iter().filter(|s| s.at_ms > until).all(|s| s.served_by == "v1"));
    let last_green_ms = green.marks().last_request_at_ms.unwrap();
    let took = last_green_ms.saturating_sub(rollback_ms);
    println!("switch back: rollback event → last green request = {took} ms (at 150 rps, all on green)");
    assert!(took <= 1_000, "green kept receiving requests {took} ms after the rollback event");
    let events = ctl.events("support").await.unwrap();
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["kind"].as_str()).collect();
    assert_eq!(kinds, ["created", "started", "switched", "rolled_back"]);
}
