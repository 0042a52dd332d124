//! Controller ingest: simulated proxies each posting one telemetry report per second to
//! `POST /v1/reports`, as the filter's workers do, and what that costs the controller.
//!
//! Every simulated proxy has its own keep-alive connection (a real Envoy keeps one to the controller
//! cluster) and a phase spread evenly over the second, so the load is steady, not a burst per second.
//! Measured after a warm-up second: reports/s accepted, the controller's CPU from `/proc/<pid>/stat`
//! (all threads, as a share of one core), and client-side latency of each POST.
//!
//! Until the controller has `/v1/reports` (issue 3) it answers 404 and the run reports itself pending.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
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
    pub duration: Duration,
}

pub enum Ingest {
    Measured(Measured),
    Pending(String),
}

pub struct Measured {
    pub settings: Settings,
    pub reports_per_second: f64,
    pub rejected: u64,
    pub controller_cores: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// A report as a filter worker sends it: deltas for the stable and the canary version.
pub fn report(proxy: usize, seq: u64) -> Value {
    let version = |v: &str, requests: u64, errors: u64| {
        json!({"rollout": "support", "version": v, "stats": {
            "requests": requests, "status_2xx": requests - errors, "status_5xx": errors, "errors": errors,
            "outcome_success": requests - errors, "cost_count": requests, "cost_sum": 0.01 * requests as f64,
            "latency_headers": {"buckets": [[290, requests / 2], [300, requests - requests / 2]]},
            "latency_total": {"buckets": [[300, requests - 20], [310, 20]]}
        }})
    };
    json!({"proxy": format!("p-{proxy}"), "worker": "w0", "seq": seq, "generation": 3,
           "versions": [version("v1", 114, 1), version("v2", 120, 2)]})
}

/// Whether the controller takes reports at all.
pub async fn supported(ctl: &Controller) -> Result<(), String> {
    let (status, body) = ctl
        .call(reqwest::Method::POST, "/v1/reports", Some(report(0, 1)))
        .await
        .map_err(|e| e.to_string())?;
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(format!("POST /v1/reports answers {status}: {}", body["error"]["message"]))
    }
}

#[derive(Default)]
struct Tally {
    ok: u64,
    rejected: u64,
    latencies_us: Vec<u32>,
}

pub async fn run(settings: &Settings) -> anyhow::Result<Ingest> {
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
    Ok(Ingest::Measured(m))
}

async fn drive(addr: std::net::SocketAddr, pid: u32, settings: Settings) -> anyhow::Result<Measured> {
    let warmup = Duration::from_secs(1);
    let t0 = tokio::time::Instant::now() + Duration::from_millis(200);
    let measure_from = t0 + warmup;
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
        settings,
    })
}

async fn proxy(
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
        let body = serde_json::to_vec(&report(p, seq))?;
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
