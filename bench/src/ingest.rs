//! Controller ingest: simulated proxies each posting one telemetry report per second to
//! `POST /v1/reports`, as the filter's workers do, and what that costs the controller.
//!
//! Every simulated proxy has its own keep-alive connection (a real Envoy keeps one to the controller
//! cluster) and a phase spread evenly over the second, so the load is steady, not a burst per second.
//! Measured after a warm-up (every proxy connected and reporting): reports/s accepted, the controller's
//! CPU from `/proc/<pid>/stat` (all threads, as a share of one core), and client-side latency of each
//! POST. Report bodies are built with core's `Report` and `VersionStats`, so they are what filters send.
//!
//! A controller without `/v1/reports` (before issue 3) answers 404: the run then reports itself pending.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use fledge_core::analysis::VersionStats;
use fledge_core::report::{Report, VersionReport};
use fledge_integration::Controller;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::sync::Mutex;

use crate::procstat::{pid_with_arg, CpuMeter};

#[derive(Clone)]
pub struct Settings {
    pub proxies: usize,
    /// Before measuring: every simulated proxy has connected and sent its first report.
    pub warmup: Duration,
    pub duration: Duration,
}

pub enum Ingest {
    Measured(Measured, Flood),
    Pending(String),
}

/// The hostile flood measured after the steady run (bench/src/flood.rs), or why it could not run.
pub type Flood = Result<crate::flood::Measured, String>;

pub struct Measured {
    pub settings: Settings,
    pub reports_per_second: f64,
    pub rejected: u64,
    pub controller_cores: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Size of one report body.
    pub body_bytes: usize,
}

/// Counters of one version over one report interval, shaped like a busy worker's: a spread of
/// latencies (so the sparse histograms carry ~20 buckets each), a few errors, outcomes and costs.
fn stats(requests: u64, errors: u64) -> VersionStats {
    let mut s = VersionStats { requests, status_2xx: requests - errors, status_5xx: errors, errors, ..VersionStats::default() };
    let per = requests / 20;
    for i in 0..20 {
        let n = if i == 19 { requests - per * 19 } else { per };
        s.latency_headers.record_n(150 + 40 * i, n);
        s.latency_total.record_n(300 + 90 * i, n);
    }
    s.outcome_success = requests - errors - 3;
    s.outcome_failure = 3;
    s.cost_count = requests - errors;
    s.cost_sum = 0.01 * s.cost_count as f64;
    s.cost_sum_sq = 0.0001 * s.cost_count as f64;
    s
}

/// The JSON body of one report, built with core's own types: exactly what the filter sends.
pub fn report(proxy: usize, seq: u64) -> anyhow::Result<Vec<u8>> {
    let version = |v: &str, requests, errors| VersionReport {
        rollout: "support".into(),
        version: v.into(),
        stats: stats(requests, errors),
        segments: Default::default(),
    };
    let r = Report {
        proxy: format!("p-{proxy}"),
        worker: "w0".into(),
        seq,
        generation: Some(1),
        epoch: None,
        versions: vec![version("v1", 114, 1), version("v2", 120, 2)],
        shadow: Vec::new(),
        fallbacks: Vec::new(),
    };
    Ok(fledge_core::report::encode(&r)?)
}

/// Whether the controller takes reports at all.
pub async fn supported(ctl: &Controller) -> Result<(), String> {
    let body = report(0, 1).map_err(|e| e.to_string())?;
    let resp = reqwest::Client::new()
        .post(ctl.url("/v1/reports"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or_default();
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(format!("POST /v1/reports answers {status}: {}", body["error"]["message"]))
    }
}

#[derive(Default)]
pub(crate) struct Tally {
    pub ok: u64,
    pub rejected: u64,
    pub latencies_us: Vec<u32>,
}

pub async fn run(settings: &Settings, flood: &crate::flood::Settings) -> anyhow::Result<Ingest> {
    let ctl = Controller::builder().start().await?;
    ctl.put_rollout("support", json!({"hosts": ["support-agent"], "stable": "v1", "canary": "v2", "weight": 10}))
        .await?;
    if let Err(why) = supported(&ctl).await {
        return Ok(Ingest::Pending(why));
    }
    let pid = pid_with_arg(ctl.data_dir())?;
    let addr = ctl.addr;
    let s = settings.clone();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new().name("fledge-bench-ingest".into()).spawn(move || {
        let result = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(drive(addr, pid, s)));
        let _ = tx.send(result);
    })?;
    let m = rx.await.context("ingest thread died")??;
    drop(ctl);
    let flood = crate::flood::run(flood).await.map_err(|e| format!("{e:#}"));
    Ok(Ingest::Measured(m, flood))
}

async fn drive(addr: std::net::SocketAddr, pid: u32, settings: Settings) -> anyhow::Result<Measured> {
    let t0 = tokio::time::Instant::now() + Duration::from_millis(200);
    let measure_from = t0 + settings.warmup;
    let end = measure_from + settings.duration;
    let tally = Arc::new(Mutex::new(Tally::default()));
    let mut tasks = Vec::new();
    for p in 0..settings.proxies {
        let phase = Duration::from_secs(1).mul_f64(p as f64 / settings.proxies as f64);
        tasks.push(tokio::spawn(proxy(addr, p, t0 + phase, measure_from, end, tally.clone())));
    }
    tokio::time::sleep_until(measure_from).await;
    let meter = CpuMeter::start(pid)?;
    tokio::time::sleep_until(end).await;
    let cpu = meter.stop()?;
    for t in tasks {
        t.await??;
    }
    let mut t = tally.lock().await;
    t.latencies_us.sort_unstable();
    Ok(Measured {
        reports_per_second: t.ok as f64 / settings.duration.as_secs_f64(),
        rejected: t.rejected,
        controller_cores: cpu.cores,
        p50_ms: crate::stats::quantile_sorted(&t.latencies_us, 0.50) / 1e3,
        p99_ms: crate::stats::quantile_sorted(&t.latencies_us, 0.99) / 1e3,
        body_bytes: report(0, 1)?.len(),
        settings,
    })
}

pub(crate) async fn proxy(
    addr: std::net::SocketAddr,
    p: usize,
    first: tokio::time::Instant,
    measure_from: tokio::time::Instant,
    end: tokio::time::Instant,
    tally: Arc<Mutex<Tally>>,
) -> anyhow::Result<()> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut at = first;
    let mut seq = 1;
    while at < end {
        tokio::time::sleep_until(at).await;
        let body = report(p, seq)?;
        let req = hyper::Request::post("/v1/reports")
            .header(hyper::header::HOST, addr.to_string())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))?;
        sender.ready().await?;
        let t = Instant::now();
        let resp = sender.send_request(req).await?;
        let ok = resp.status().is_success();
        resp.into_body().collect().await?;
        let us = t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
        if at >= measure_from {
            let mut tally = tally.lock().await;
            if ok {
                tally.ok += 1;
            } else {
                tally.rejected += 1;
            }
            tally.latencies_us.push(us);
        }
        seq += 1;
        at += Duration::from_secs(1);
    }
    Ok(())
}
