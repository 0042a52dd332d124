//! Several controllers on one PostgreSQL database (issue 14, docs/ha.md).
//!
//! - **Load:** 1,000 simulated proxies (as in `ingest`), spread round-robin over 3 replicas, each
//!   posting one report per second. Measured after a warm-up: the acknowledgement latency of a report
//!   (it includes the flush to the shared log), each replica's CPU, PostgreSQL's CPU (every
//!   `postgres` process of the throwaway cluster), and the flush lag — how long after a report is
//!   acknowledged by one replica its counts show in another replica's status (a probe report every
//!   200 ms, on a rollout of its own).
//! - **Failover:** 3 replicas, a real Envoy reporting to and polling a follower, a canary failing half
//!   its requests at 25 %; the leader is killed (`kill -9`) as traffic starts, and the time from the
//!   kill to the canary's last request is the failover time (budget ≤ 10 s): the lease running out,
//!   a new leader judging the window the log gave it, the rollback reaching the Envoy.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fledge_integration::traffic::{Load, Traffic};
use fledge_integration::{Agent, Behaviour, Controller, Envoy};
use serde_json::{json, Value};
use tokio::sync::Mutex;

use crate::procstat::{cpu_seconds, pid_with_arg, CpuMeter};

#[path = "../../controller/tests/common/pg.rs"]
mod pg;

pub const FAILOVER_BUDGET: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct Settings {
    pub proxies: usize,
    pub warmup: Duration,
    pub duration: Duration,
    pub failovers: usize,
}

pub struct Measured {
    pub settings: Settings,
    pub reports_per_second: f64,
    pub rejected: u64,
    /// Each replica's CPU as a share of one core.
    pub replica_cores: Vec<f64>,
    pub database_cores: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Acknowledged on r1 → counted in r3's status, per probe (ms).
    pub flush_lag_ms: Vec<f64>,
    /// Kill of the leader → the canary's last request, per trial.
    pub failover: Vec<Duration>,
}

async fn replicas(url: &str, n: usize) -> anyhow::Result<Vec<Controller>> {
    let mut all: Vec<Controller> = Vec::new();
    for i in 1..=n {
        let c = Controller::builder().arg("--database").arg(url).arg("--replica-id").arg(format!("r{i}")).start().await?;
        all.push(c);
        if i == 1 {
            wait_leader(&all[0], "r1").await?;
        }
    }
    for c in &all {
        wait_leader(c, "r1").await?;
    }
    Ok(all)
}

async fn wait_leader(c: &Controller, id: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if c.get("/healthz").await.is_ok_and(|h| h["leader"] == id) {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "no leader {id} within 15 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// CPU seconds of every `postgres` process now (the cluster's postmaster and its backends).
fn postgres_cpu() -> f64 {
    let mut total = 0.0;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        if std::fs::read_to_string(entry.path().join("comm")).is_ok_and(|c| c.trim() == "postgres") {
            total += cpu_seconds(pid).unwrap_or(0.0);
        }
    }
    total
}

pub async fn run(settings: &Settings) -> anyhow::Result<Measured> {
    let url = pg::database();
    let ctls = replicas(&url, 3).await?;
    ctls[0].put_rollout("support", json!({"hosts": ["support-agent"], "stable": "v1", "canary": "v2", "weight": 10})).await?;
    ctls[0].put_rollout("probe", json!({"hosts": ["probe-agent"], "stable": "v1", "canary": "v2", "weight": 10})).await?;
    let pids: Vec<u32> = ctls.iter().map(|c| pid_with_arg(c.data_dir())).collect::<anyhow::Result<_>>()?;
    let addrs: Vec<std::net::SocketAddr> = ctls.iter().map(|c| c.addr).collect();
    let s = settings.clone();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new().name("fledge-bench-ha".into()).spawn(move || {
        let result = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(drive(addrs, pids, s)));
        let _ = tx.send(result);
    })?;
    let probe = tokio::spawn(flush_lag(ctls[0].url("/v1/reports"), ctls[2].url("/v1/rollouts/probe"), settings.warmup + settings.duration));
    let (reports_per_second, rejected, replica_cores, database_cores, p50_ms, p99_ms) = rx.await??;
    let flush_lag_ms = probe.await??;
    drop(ctls);
    let mut failover = Vec::new();
    for _ in 0..settings.failovers {
        failover.push(failover_trial().await?);
    }
    Ok(Measured { settings: settings.clone(), reports_per_second, rejected, replica_cores, database_cores, p50_ms, p99_ms, flush_lag_ms, failover })
}

type Load6 = (f64, u64, Vec<f64>, f64, f64, f64);

async fn drive(addrs: Vec<std::net::SocketAddr>, pids: Vec<u32>, settings: Settings) -> anyhow::Result<Load6> {
    let t0 = tokio::time::Instant::now() + Duration::from_millis(200);
    let measure_from = t0 + settings.warmup;
    let end = measure_from + settings.duration;
    let tally = Arc::new(Mutex::new(crate::ingest::Tally::default()));
    let mut tasks = Vec::new();
    for p in 0..settings.proxies {
        let phase = Duration::from_secs(1).mul_f64(p as f64 / settings.proxies as f64);
        let addr = addrs[p % addrs.len()];
        tasks.push(tokio::spawn(crate::ingest::proxy(addr, p, t0 + phase, measure_from, end, tally.clone())));
    }
    tokio::time::sleep_until(measure_from).await;
    let meters: Vec<CpuMeter> = pids.iter().map(|p| CpuMeter::start(*p)).collect::<anyhow::Result<_>>()?;
    let (db0, wall0) = (postgres_cpu(), Instant::now());
    tokio::time::sleep_until(end).await;
    let cores = meters.iter().map(|m| m.stop().map(|c| c.cores)).collect::<anyhow::Result<Vec<f64>>>()?;
    let database_cores = (postgres_cpu() - db0) / wall0.elapsed().as_secs_f64();
    for t in tasks {
        t.await??;
    }
    let mut t = tally.lock().await;
    t.latencies_us.sort_unstable();
    Ok((
        t.ok as f64 / settings.duration.as_secs_f64(),
        t.rejected,
        cores,
        database_cores,
        crate::stats::quantile_sorted(&t.latencies_us, 0.50) / 1e3,
        crate::stats::quantile_sorted(&t.latencies_us, 0.99) / 1e3,
    ))
}

/// Every 200 ms, one canary request reported to r1 for rollout `probe`; the time until r3's status
/// counts it.
async fn flush_lag(report_url: String, status_url: String, run: Duration) -> anyhow::Result<Vec<f64>> {
    let http = reqwest::Client::new();
    let end = Instant::now() + run;
    let (mut lags, mut seq) = (Vec::new(), 0u64);
    while Instant::now() < end {
        seq += 1;
        let body = json!({"proxy": "probe", "worker": "w", "seq": seq, "generation": null, "versions": [{"rollout": "probe", "version": "v2",
            "stats": {"requests": 1, "status_2xx": 1, "latency_total": {"buckets": [[300, 1]]}}}]});
        let resp = http.post(&report_url).json(&body).send().await?;
        anyhow::ensure!(resp.status().is_success(), "probe report: {}", resp.status());
        let acked = Instant::now();
        loop {
            let st: Value = http.get(&status_url).send().await?.json().await?;
            if st["live"]["window"]["canary"]["requests"].as_u64() >= Some(seq) {
                lags.push(acked.elapsed().as_secs_f64() * 1e3);
                break;
            }
            anyhow::ensure!(acked.elapsed() < Duration::from_secs(10), "probe {seq} not seen on r3 within 10 s: {}", st["live"]["window"]);
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(lags)
}

/// One failover: the leader killed as traffic to a canary failing half its requests starts.
async fn failover_trial() -> anyhow::Result<Duration> {
    let url = pg::database();
    let mut ctls = replicas(&url, 3).await?;
    let v1 = Agent::start(Behaviour::version("v1")).await?;
    let v2 = Agent::start(Behaviour { error_rate: 0.5, ..Behaviour::version("v2") }).await?;
    let host = "support-agent";
    let envoy = Envoy::for_versions(host, v1.addr, v2.addr, ctls[1].addr, json!({"report_interval_ms": 100})).start().await?;
    ctls[0]
        .put_rollout("support", json!({"hosts": [host], "stable": "v1", "canary": "v2", "steps": [25, 50, 100], "step_seconds": 600,
            "min_requests": 20, "analysis": {"interval_seconds": 0.5}, "gates": [{"metric": "error_rate", "max_increase": 0.05, "critical": true}]}))
        .await?;
    // On r1, which committed it (r2 learns of it a notification later; wait_confirmed retries).
    ctls[0].wait_phase("support", "progressing", Duration::from_secs(15)).await?;
    ctls[1].wait_confirmed("support", envoy.contexts, Duration::from_secs(15)).await?;
    ctls[0].kill().await?;
    let killed = Instant::now();
    let load = Load::start(Traffic::new(envoy.listener, host), 200, 1_000);
    ctls[1].wait_phase("support", "rolled_back", Duration::from_secs(30)).await?;
    // Quiet for a second: the rollback reached every worker.
    loop {
        let n = v2.requests();
        tokio::time::sleep(Duration::from_secs(1)).await;
        if v2.requests() == n {
            break;
        }
        anyhow::ensure!(killed.elapsed() < Duration::from_secs(60), "the canary still gets requests a minute after the kill");
    }
    drop(load);
    let last = v2.marks().last_request.ok_or_else(|| anyhow::anyhow!("the canary never got a request"))?;
    Ok(last.saturating_duration_since(killed))
}
