//! Push latency: from `PUT /v1/rollouts/bench` with a new weight until every one of K Envoy processes
//! routes by it.
//!
//! The weight alternates between 40 and 60 %, and each Envoy is probed with a user whose bucket lies
//! in [4000, 6000): stable at 40 %, canary at 60 %, so the expected `x-fledge-version` flips with
//! every change and core's own bucketing (not the filter) says which. One task per Envoy probes over a
//! keep-alive connection every 2 ms, starting before the PUT is sent; the change's latency is the
//! slowest Envoy's first matching answer. Changes are spaced by a pseudo-random gap so they do not
//! lock onto the filters' tick phase.

use std::time::{Duration, Instant};

use anyhow::Context;
use fledge_core::rng::SplitMix64;
use fledge_core::rollout::default_salt;
use fledge_core::{Bucket, Weight};
use fledge_integration::Controller;
use serde_json::json;

use crate::envoy::{DirectEnvoy, Filter, BENCH_HOST, CANARY, STABLE};

const ROLLOUT: &str = "bench";
const LOW: f64 = 40.0;
const HIGH: f64 = 60.0;
const PROBE_EVERY: Duration = Duration::from_millis(2);

#[derive(Clone)]
pub struct Settings {
    pub proxies: usize,
    pub concurrency: u32,
    pub changes: usize,
}

pub struct Push {
    pub settings: Settings,
    pub tick_ms: u64,
    /// Per change: until every Envoy routes by it (ms).
    pub all_ms: Vec<f64>,
    /// Per change and Envoy (ms).
    pub each_ms: Vec<f64>,
    /// Per change: the PUT's own round trip (ms), part of `all_ms`.
    pub put_ms: Vec<f64>,
}

fn expected(weight: f64) -> &'static str {
    if weight == HIGH {
        CANARY
    } else {
        STABLE
    }
}

/// A user whose version differs between LOW and HIGH.
fn probe_user() -> anyhow::Result<String> {
    let (lo, hi) = (Weight::try_from_percent(LOW)?, Weight::try_from_percent(HIGH)?);
    (0..100_000)
        .map(|i| format!("probe-{i}"))
        .find(|u| {
            let b = Bucket::of_key(u.as_bytes(), default_salt(ROLLOUT));
            !lo.admits(b) && hi.admits(b)
        })
        .context("no probe key flips between the weights")
}

/// Probes one Envoy until it answers `want`; returns when that happened.
async fn until_routed(http: reqwest::Client, url: String, user: String, want: &'static str) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let resp = http.get(&url).header("host", BENCH_HOST).header("x-user-id", &user).send().await?;
        let got = resp.headers().get("x-fledge-version").map(|v| v.as_bytes() == want.as_bytes()).unwrap_or(false);
        let _ = resp.bytes().await?;
        if got {
            return Ok(Instant::now());
        }
        anyhow::ensure!(Instant::now() < deadline, "not routed to {want} within 10 s");
        tokio::time::sleep(PROBE_EVERY).await;
    }
}

pub async fn run(settings: &Settings) -> anyhow::Result<Push> {
    let ctl = Controller::builder().start().await?;
    let put = |weight: f64| {
        ctl.put_rollout(ROLLOUT, json!({"hosts": [BENCH_HOST], "stable": STABLE, "canary": CANARY, "weight": weight}))
    };
    put(LOW).await?;
    let filter = Filter::Fledge { path: fledge_integration::wasm_path(), config: json!({}), controller: ctl.addr, shadow_sink: None };
    let starting: Vec<_> = (0..settings.proxies)
        .map(|_| {
            let (filter, concurrency) = (filter.clone(), settings.concurrency);
            tokio::spawn(async move { DirectEnvoy::start(&filter, concurrency).await })
        })
        .collect();
    let mut envoys = Vec::new();
    for s in starting {
        envoys.push(s.await??);
    }
    let user = probe_user()?;
    let clients: Vec<(reqwest::Client, String)> =
        envoys.iter().map(|e| (reqwest::Client::new(), format!("http://{}/task", e.listener))).collect();

    // Every Envoy has its first config before the clock starts.
    for (http, url) in &clients {
        until_routed(http.clone(), url.clone(), user.clone(), expected(LOW)).await.context("initial config")?;
    }

    let mut rng = SplitMix64::new(0xbe9c);
    let (mut all_ms, mut each_ms, mut put_ms) = (Vec::new(), Vec::new(), Vec::new());
    for change in 0..settings.changes {
        tokio::time::sleep(Duration::from_millis(100 + rng.next_u64() % 150)).await;
        let weight = if change % 2 == 0 { HIGH } else { LOW };
        let want = expected(weight);
        let probes: Vec<_> = clients
            .iter()
            .map(|(http, url)| tokio::spawn(until_routed(http.clone(), url.clone(), user.clone(), want)))
            .collect();
        let t0 = Instant::now();
        put(weight).await?;
        put_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        let mut slowest: f64 = 0.0;
        for p in probes {
            let at = p.await??;
            let ms = at.saturating_duration_since(t0).as_secs_f64() * 1e3;
            each_ms.push(ms);
            slowest = slowest.max(ms);
        }
        all_ms.push(slowest);
    }
    let tick_ms = fledge_core::plugin::PluginConfig::parse(b"{}").map(|c| c.tick_ms).unwrap_or(50);
    Ok(Push { settings: settings.clone(), tick_ms, all_ms, each_ms, put_ms })
}
