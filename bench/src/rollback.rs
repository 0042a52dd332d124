//! Rollback reaction: a canary at 5 % of 500 requests/s starts failing every request at t0; how long
//! until the last request reaches it?
//!
//! Real pieces throughout: two sample agents behind the harness's Envoy (the fledge filter reporting
//! every 100 ms), the controller analysing every 200 ms with a critical absolute error-rate gate (max 5 %), and the in-process
//! generator sending 500 rps of distinct users. t0 is the canary's first failed answer and the end its
//! last request at all (`Agent::marks`), so the number covers report delivery, analysis, the rollback
//! decision, the config push and the filters applying it. Each trial uses a fresh rollout, and the
//! controller's `rolled_back` event splits the time into deciding and applying.
//!
//! The analysis judges the window since the rollout started, so the canary's healthy history before t0
//! matters: it is a setting (`--rollback-healthy-secs`), and the report states it.
//!
//! A controller without automated analysis (before issue 3) refuses the spec's fields: the run then
//! reports itself pending instead of failing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use fledge_integration::{Agent, Behaviour, Controller, Envoy};
use serde_json::{json, Value};

use crate::envoy::{BENCH_HOST, CANARY, STABLE};
use crate::load::{self, LoadSpec};

pub const RATE: f64 = 500.0;
pub const CANARY_PERCENT: f64 = 5.0;

#[derive(Clone)]
pub struct Settings {
    pub trials: usize,
    /// Healthy canary traffic before t0, so the analysis has a baseline.
    pub healthy: Duration,
    /// Load kept on after the rollback, to catch late canary requests.
    pub tail: Duration,
}

pub struct Trial {
    /// Canary requests (all healthy) before t0.
    pub healthy_requests: u64,
    /// First failed canary answer → the controller's `rolled_back` event (ms): report delivery and analysis.
    pub decided_ms: f64,
    /// First failed canary answer → last canary request (ms): the budgeted number.
    pub reaction_ms: f64,
    /// The rollback event's message (the verdict).
    pub message: String,
}

pub enum Rollback {
    Measured { settings: Settings, trials: Vec<Trial> },
    Pending(String),
}

fn spec(hosts: &[&str]) -> Value {
    json!({
        "hosts": hosts, "stable": STABLE, "canary": CANARY,
        "steps": [CANARY_PERCENT, 100], "step_seconds": 3600, "min_requests": 20,
        "analysis": {"interval_seconds": 0.2, "failure_limit": 1},
        "gates": [{"metric": "error_rate", "max": 0.05, "critical": true}]
    })
}

/// Whether the controller takes a rollout with analysis and gates, and shows its phase.
pub async fn supported(ctl: &Controller) -> Result<(), String> {
    let name = "bench-probe";
    let (status, body) =
        ctl.call(reqwest::Method::PUT, &format!("/v1/rollouts/{name}"), Some(spec(&["bench-probe-host"]))).await.map_err(|e| e.to_string())?;
    if !(200..300).contains(&status) {
        return Err(format!("PUT /v1/rollouts with steps/analysis/gates answers {status}: {}", body["error"]["message"]));
    }
    let got = ctl.get(&format!("/v1/rollouts/{name}")).await.map_err(|e| e.to_string())?;
    let _ = ctl.call(reqwest::Method::DELETE, &format!("/v1/rollouts/{name}"), None).await;
    if got["status"]["phase"].is_string() {
        Ok(())
    } else {
        Err("GET /v1/rollouts/{name} has no status.phase".into())
    }
}

async fn phase(ctl: &Controller, name: &str) -> anyhow::Result<String> {
    let v = ctl.get(&format!("/v1/rollouts/{name}")).await?;
    Ok(v["status"]["phase"].as_str().unwrap_or_default().to_string())
}

pub async fn run(settings: &Settings) -> anyhow::Result<Rollback> {
    let ctl = Controller::builder().start().await?;
    if let Err(why) = supported(&ctl).await {
        return Ok(Rollback::Pending(why));
    }
    let stable = Agent::start(Behaviour::version(STABLE)).await?;
    let canary = Agent::start(Behaviour::version(CANARY)).await?;
    let envoy = Envoy::builder()
        .route(BENCH_HOST, &[(STABLE, stable.addr), (CANARY, canary.addr)])
        .controller(ctl.addr)
        .plugin_config(json!({"report_interval_ms": 100}))
        .start()
        .await?;

    let mut trials = Vec::new();
    let mut previous: Option<String> = None;
    for trial in 0..settings.trials {
        if let Some(p) = previous.take() {
            ctl.call(reqwest::Method::DELETE, &format!("/v1/rollouts/{p}"), None).await?;
        }
        let name = format!("rollback-{trial}");
        canary.update(|b| b.error_rate = 0.0);
        ctl.put_rollout(&name, spec(&[BENCH_HOST])).await?;
        previous = Some(name.clone());

        let stop = Arc::new(AtomicBool::new(false));
        let load = tokio::spawn(load::run(LoadSpec {
            target: envoy.listener,
            host: BENCH_HOST.into(),
            connections: 8,
            rate: Some(RATE),
            duration: Duration::from_secs(60),
            users: 20_000,
            user_prefix: format!("rb{trial}-user"),
            stop: Some(stop.clone()),
        }));
        let result = measure(&ctl, &canary, &name, settings).await;
        stop.store(true, Ordering::Relaxed);
        load.await??;
        let t = match result {
            Ok(t) => t,
            Err(e) => {
                eprintln!("envoy log:\n{}", envoy.log_tail(20));
                return Err(e.context(format!("trial {}", trial + 1)));
            }
        };
        eprintln!(
            "  trial {}/{}: rolled back {:.0} ms and last canary request {:.0} ms after the first failure ({})",
            trial + 1,
            settings.trials,
            t.decided_ms,
            t.reaction_ms,
            t.message
        );
        trials.push(t);
    }
    Ok(Rollback::Measured { settings: settings.clone(), trials })
}

async fn measure(ctl: &Controller, canary: &Agent, name: &str, settings: &Settings) -> anyhow::Result<Trial> {
    // Healthy canary traffic first: the routing is applied and the analysis has seen a clean baseline.
    let start = Instant::now();
    let before = canary.requests();
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if start.elapsed() >= settings.healthy && canary.requests() >= before + 20 {
            break;
        }
        anyhow::ensure!(start.elapsed() < settings.healthy + Duration::from_secs(20), "the canary got no traffic");
    }
    let p = phase(ctl, name).await?;
    anyhow::ensure!(p != "rolled_back", "rolled back while healthy");
    let healthy_requests = canary.requests() - before;

    canary.reset_marks();
    // The wall clock at a known instant, to place the controller's event timestamps on our clock.
    let (flipped, flipped_wall) = (Instant::now(), SystemTime::now());
    canary.update(|b| b.error_rate = 1.0);
    let deadline = flipped + Duration::from_secs(20);
    loop {
        if phase(ctl, name).await? == "rolled_back" {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "not rolled back within 20 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Keep the load on: a canary request after the rollback (a slow filter) must be counted.
    tokio::time::sleep(settings.tail).await;
    let marks = canary.marks();
    let first = marks.first_error.unwrap_or(flipped);
    let last = marks.last_request.unwrap_or(first);

    let events = ctl.events(name).await?;
    let event = events.iter().find(|e| e["kind"] == "rolled_back").context("no rolled_back event")?;
    let at_ms = event["at_ms"].as_u64().context("event without at_ms")?;
    let flipped_ms = flipped_wall.duration_since(UNIX_EPOCH)?.as_secs_f64() * 1e3;
    let first_ms = flipped_ms + first.saturating_duration_since(flipped).as_secs_f64() * 1e3;
    Ok(Trial {
        healthy_requests,
        decided_ms: at_ms as f64 - first_ms,
        reaction_ms: last.saturating_duration_since(first).as_secs_f64() * 1e3,
        message: event["message"].as_str().unwrap_or_default().to_string(),
    })
}
