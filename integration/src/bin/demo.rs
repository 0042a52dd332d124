//! `make demo`: two automated rollouts through a real Envoy with the fledge filter, the real
//! controller and sample agents on loopback — a good canary that is promoted step by step, and a canary
//! whose task success drops from 95 % to 80 % (HTTP 200 throughout) that fledge rolls back on its own.

use std::time::{Duration, Instant};

use fledge_integration::traffic::{Load, Traffic};
use fledge_integration::{Agent, Behaviour, Controller, Envoy};
use serde_json::{json, Value};

const ROLLOUTS: [(&str, &str); 2] = [("support", "support-agent"), ("planner", "planner-agent")];

fn agent(version: &str, success_rate: f64) -> Behaviour {
    Behaviour { version: version.into(), success_rate, latency_ms: 5, cost: 0.012, ..Behaviour::default() }
}

fn pct(v: &Value) -> String {
    v.as_f64().map_or("   -  ".into(), |x| format!("{:5.1}%", x * 100.0))
}

fn line(name: &str, st: &Value) -> String {
    let s = &st["status"];
    let w = &st["live"]["window"];
    format!(
        "  {name:<8} {:<12} weight {:>6.2}%  | canary n={:<5} success {} p99 {:>6}ms | stable n={:<5} success {} | {}",
        s["phase"].as_str().unwrap_or("?"),
        s["weight"].as_f64().unwrap_or(0.0),
        w["canary"]["requests"],
        pct(&w["canary"]["task_success_rate"]),
        w["canary"]["latency_p99_ms"].as_f64().map_or("-".into(), |x| format!("{x:.1}")),
        w["stable"]["requests"],
        pct(&w["stable"]["task_success_rate"]),
        s["message"].as_str().unwrap_or("").chars().take(110).collect::<String>(),
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let support = (Agent::start(agent("v1", 0.95)).await?, Agent::start(agent("v2", 0.96)).await?);
    let planner = (Agent::start(agent("v1", 0.95)).await?, Agent::start(agent("v2", 0.80)).await?);
    let ctl = Controller::builder().start().await?;
    let envoy = Envoy::builder()
        .route("support-agent", &[("v1", support.0.addr), ("v2", support.1.addr)])
        .route("planner-agent", &[("v1", planner.0.addr), ("v2", planner.1.addr)])
        .controller(ctl.addr)
        .plugin_config(json!({"report_interval_ms": 250}))
        .start()
        .await?;
    println!("fledge demo — two automated canary rollouts");
    println!("  controller  http://{0}   (curl http://{0}/v1/rollouts/support)", ctl.addr);
    println!("  envoy       http://{0}   (curl -i -H 'host: support-agent' -H 'x-user-id: alice' http://{0}/)", envoy.listener);
    println!("  support: v2 is as good as v1 (task success 96 % vs 95 %) → should be promoted");
    println!("  planner: v2 answers HTTP 200 but completes fewer tasks (80 % vs 95 %) → should be rolled back\n");

    let _loads: Vec<Load> = ROLLOUTS.iter().map(|(_, host)| Load::start(Traffic::new(envoy.listener, host), 150, 5_000)).collect();
    for (name, host) in ROLLOUTS {
        let spec = json!({"hosts": [host], "stable": "v1", "canary": "v2", "steps": [5, 25, 50, 100],
                          "step_seconds": 4, "min_requests": 50, "analysis": {"interval_seconds": 0.5}});
        ctl.put_rollout(name, spec).await?;
        println!("PUT /v1/rollouts/{name}  steps [5, 25, 50, 100], 4 s per step, default gates");
    }
    let start = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        println!("t={:>4.1}s", start.elapsed().as_secs_f64());
        let mut finished = 0;
        for (name, _) in ROLLOUTS {
            let st = ctl.get(&format!("/v1/rollouts/{name}")).await?;
            println!("{}", line(name, &st));
            if ["succeeded", "rolled_back", "aborted"].contains(&st["status"]["phase"].as_str().unwrap_or("")) {
                finished += 1;
            }
        }
        if finished == ROLLOUTS.len() || start.elapsed() > Duration::from_secs(120) {
            break;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!("\nresult");
    for (name, _) in ROLLOUTS {
        let st = ctl.get(&format!("/v1/rollouts/{name}")).await?;
        println!("  {name}: {} — {}", st["live"]["summary"].as_str().unwrap_or(""), st["status"]["message"].as_str().unwrap_or(""));
        for e in ctl.events(name).await? {
            println!("      #{:<3} {:<12} weight {:>6.2}%  {}", e["seq"], e["kind"].as_str().unwrap_or(""), e["weight"].as_f64().unwrap_or(0.0),
                     e["message"].as_str().unwrap_or("").chars().take(100).collect::<String>());
        }
    }
    Ok(())
}
