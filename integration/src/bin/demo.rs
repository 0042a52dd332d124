//! `make demo`: the real controller, a real Envoy with the fledge filter and two sample agents on
//! loopback. Ramps the canary weight through the API while driving traffic from many users, and prints
//! the live per-version split as routed by Envoy.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fledge_integration::traffic::Traffic;
use fledge_integration::{Agent, Behaviour, Controller, Envoy};
use serde_json::json;

const HOST: &str = "support-agent";

#[derive(Default)]
struct Counts {
    v1: AtomicU64,
    v2: AtomicU64,
    other: AtomicU64,
}

impl Counts {
    fn take(&self) -> (u64, u64, u64) {
        (self.v1.swap(0, Ordering::Relaxed), self.v2.swap(0, Ordering::Relaxed), self.other.swap(0, Ordering::Relaxed))
    }
}

/// ~`rps` requests per second from a pool of 10,000 users until `stop`.
fn drive(traffic: Traffic, counts: Arc<Counts>, rps: u64) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rps));
        let mut n: u64 = 0;
        loop {
            tick.tick().await;
            n += 1;
            let (t, c) = (traffic.clone(), counts.clone());
            let user = format!("user-{}", n.wrapping_mul(7919) % 10_000);
            tokio::spawn(async move {
                match t.send(Some(&user)).await.ok().and_then(|r| r.served_by) {
                    Some(v) if v == "v1" => c.v1.fetch_add(1, Ordering::Relaxed),
                    Some(v) if v == "v2" => c.v2.fetch_add(1, Ordering::Relaxed),
                    _ => c.other.fetch_add(1, Ordering::Relaxed),
                };
            });
        }
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let v1 = Agent::start(Behaviour::version("v1")).await?;
    let v2 = Agent::start(Behaviour::version("v2")).await?;
    let ctl = Controller::builder().start().await?;
    let envoy = Envoy::builder().route(HOST, &[("v1", v1.addr), ("v2", v2.addr)]).controller(ctl.addr).start().await?;
    println!("fledge demo");
    println!("  controller  http://{}   (try: curl http://{}/v1/rollouts)", ctl.addr, ctl.addr);
    println!("  envoy       http://{}   (try: curl -H 'host: {HOST}' -H 'x-user-id: alice' -i http://{}/)", envoy.listener, envoy.listener);
    println!("  agents      v1 http://{}  v2 http://{}\n", v1.addr, v2.addr);

    let counts = Arc::new(Counts::default());
    let driver = drive(Traffic::new(envoy.listener, HOST), counts.clone(), 200);
    let start = Instant::now();
    for weight in [0.0, 1.0, 5.0, 25.0, 50.0, 100.0] {
        ctl.put_rollout("support", json!({"hosts": [HOST], "stable": "v1", "canary": "v2", "weight": weight})).await?;
        println!("PUT /v1/rollouts/support weight={weight}");
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let (a, b, o) = counts.take();
            let total = (a + b).max(1) as f64;
            println!(
                "  t={:>5.1}s  weight {:>6.2}%  | last second: v1 {:>5.1}%  v2 {:>5.1}%  ({} requests{})",
                start.elapsed().as_secs_f64(),
                weight,
                a as f64 * 100.0 / total,
                b as f64 * 100.0 / total,
                a + b,
                if o > 0 { format!(", {o} failed") } else { String::new() },
            );
        }
    }
    driver.abort();
    println!("\ndone: the canary went 0 → 100 % with the same users staying on it at every step.");
    Ok(())
}
