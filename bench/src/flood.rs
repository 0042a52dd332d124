//! A hostile flood of `POST /v1/reports` from many connections — oversized bodies, 10,000-entry
//! reports, deep nesting, garbage, wrong types, huge histogram indices — and what it does to the
//! controller's memory: resident set when idle, and its peak (`VmHWM`) by the end of the flood.
//! Every hostile request must get a 4xx; any other answer is counted.

use std::time::{Duration, Instant};

use fledge_integration::Controller;
use serde_json::json;

use crate::procstat::pid_with_arg;

#[derive(Clone)]
pub struct Settings {
    pub connections: usize,
    pub duration: Duration,
}

pub struct Measured {
    pub settings: Settings,
    pub idle_rss_mb: f64,
    pub peak_rss_mb: f64,
    pub requests: u64,
    pub four_xx: u64,
    /// Anything but a 4xx, transport errors included.
    pub other: u64,
}

/// `VmRSS` or `VmHWM` of `pid`, in MB.
fn status_mb(pid: u32, field: &str) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.trim().strip_suffix("kB")?.trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no {field} in /proc/{pid}/status"))?;
    Ok(kb / 1024.0)
}

fn hostile_bodies() -> Vec<Vec<u8>> {
    let entry = r#"{"rollout":"support","version":"v2","stats":{"requests":1}}"#;
    vec![
        vec![b' '; 2 << 20],
        format!(r#"{{"proxy":"x","worker":"y","seq":1,"generation":1,"versions":[{}]}}"#, vec![entry; 10_000].join(",")).into_bytes(),
        format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes(),
        b"\x00\xff{{{not json".to_vec(),
        br#"{"proxy":7,"worker":[],"seq":"one","generation":{}}"#.to_vec(),
        br#"{"proxy":"x","worker":"y","seq":2,"generation":1,"versions":[{"rollout":"support","version":"v2","stats":{"latency_total":{"buckets":[[65535,1]]}}}]}"#.to_vec(),
    ]
}

pub async fn run(settings: &Settings) -> anyhow::Result<Measured> {
    let ctl = Controller::builder().start().await?;
    ctl.put_rollout("support", json!({"hosts": ["support-agent"], "stable": "v1", "canary": "v2", "weight": 10})).await?;
    let pid = pid_with_arg(ctl.data_dir())?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_rss_mb = status_mb(pid, "VmRSS:")?;
    let url = ctl.url("/v1/reports");
    let bodies = std::sync::Arc::new(hostile_bodies());
    let end = Instant::now() + settings.duration;
    let tasks: Vec<_> = (0..settings.connections)
        .map(|i| {
            let (url, bodies) = (url.clone(), bodies.clone());
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                let (mut n, mut four, mut other) = (0u64, 0u64, 0u64);
                let mut k = i;
                while Instant::now() < end {
                    let body = bodies.get(k % bodies.len()).cloned().unwrap_or_default();
                    k += 1;
                    n += 1;
                    match http.post(&url).header("content-type", "application/json").body(body).send().await {
                        Ok(r) if r.status().is_client_error() => four += 1,
                        _ => other += 1,
                    }
                }
                (n, four, other)
            })
        })
        .collect();
    let (mut requests, mut four_xx, mut other) = (0, 0, 0);
    for t in tasks {
        let (n, f, o) = t.await?;
        requests += n;
        four_xx += f;
        other += o;
    }
    let peak_rss_mb = status_mb(pid, "VmHWM:")?;
    Ok(Measured { settings: settings.clone(), idle_rss_mb, peak_rss_mb, requests, four_xx, other })
}
